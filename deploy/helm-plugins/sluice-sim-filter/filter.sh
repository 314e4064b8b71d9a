#!/usr/bin/env sh
# Rendered manifests on stdin, filtered manifests on stdout (deploy/lib/sim_filter.py).
exec "${SLUICE_FILTER_PYTHON:-python3}" "$HELM_PLUGIN_DIR/../../lib/sim_filter.py"
