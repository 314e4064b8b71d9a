#!/usr/bin/env bash
# A local Kubernetes control plane built from Go modules, kwok simulating its nodes (see README).
#   ./scripts/sim-cluster.sh up            start or converge; prints `export KUBECONFIG=...`
#   ./scripts/sim-cluster.sh kserve [--stop]  run KServe's real controller in place of the chart's simulated pod
#   ./scripts/sim-cluster.sh status        what runs
#   ./scripts/sim-cluster.sh down [--purge] stop what `up` started, by PID (--purge: forget the cluster)
# Build the binaries first with `scripts/setup.sh cluster`. State: .local/sim-cluster/ or $SLUICE_SIM_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "error: no .venv yet: run scripts/setup.sh cluster first" >&2; exit 1; }
exec .venv/bin/python scripts/sim_cluster.py "$@"
