#!/usr/bin/env bash
# Serve a registered model version on KServe: the project's ServingRuntime + the champion InferenceService.
#   ./deploy-model.sh [--dry-run|render] [--env dev|prod] [--out DIR]
#                     [--model-ref ALIAS|VERSION | --storage-uri URI] [--namespace NS]
# Rendered, applied and waited for by `python -m tasks.deploy.render --apply`, the same code the
# deploy_model DAG runs (src/tasks/deploy/). --model-ref (default: champion) is resolved in the
# MLflow registry at $MLFLOW_TRACKING_URI; --storage-uri skips MLflow. A dry run without either
# renders the example storageUri.
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"

MODEL_REF=champion
STORAGE_URI=""
model_args "--model-ref=MODEL_REF --storage-uri=STORAGE_URI" "$@"
sluice_init model "${COMMON_ARGS[@]}"
needs_registry=1
[ -z "$STORAGE_URI" ] || needs_registry=0
model_preflight "$needs_registry"

render_args=(--which model)
if [ -n "$STORAGE_URI" ]; then
  render_args+=(--champion-uri "$STORAGE_URI")
elif uses_registry; then
  render_args+=(--resolve --champion-uri "$MODEL_REF")
fi
deploy_models "${render_args[@]}"
run_cluster "$KUBECTL" get inferenceservice "$MODEL_NAME" -n "$NAMESPACE"
finish
