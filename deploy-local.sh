#!/usr/bin/env bash
# The whole platform on this machine: MLflow, Airflow, the reference data, the pipelines, the model server
# and the web app.
#   ./deploy-local.sh [up] [--mirror] [--rows N]   start (or converge) everything and run the pipelines
#                     [--with-xray]                also the image use case (or SLUICE_WITH_XRAY=1; port SLUICE_XRAY_PORT, 8084)
#   ./deploy-local.sh status                       what is running
#   ./deploy-local.sh down                         stop everything it started
# Ports: SLUICE_AIRFLOW_PORT (8080), SLUICE_MLFLOW_PORT (5000), SLUICE_INFERENCE_PORT (8081),
# SLUICE_ROUTER_PORT (8082), SLUICE_UI_PORT (8501: the web app). State, data and logs live in .local/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")"

case "${1:-up}" in
  up|--mirror|--rows|--with-xray) scripts/setup.sh runtime ;;
  down|status) [ -x .venv/bin/python ] || { echo "nothing is installed yet: run ./deploy-local.sh first"; exit 0; } ;;
  -h|--help) ;;
  *) echo "usage: $0 [up [--mirror] [--rows N] [--with-xray] | status | down]" >&2; exit 2 ;;
esac
[ "${1:-}" = "up" ] && shift
case "${1:-}" in
  down|status|-h|--help) exec .venv/bin/python scripts/local_platform.py "$@" ;;
  *) exec .venv/bin/python scripts/local_platform.py up "$@" ;;
esac
