#!/usr/bin/env bash
# Serve a registered model version on KServe: the project's ServingRuntime + the champion InferenceService.
#   ./deploy-model.sh [--dry-run|render] [--env dev|prod] [--out DIR]
#                     [--model-ref ALIAS|VERSION | --storage-uri URI] [--namespace NS]
# The manifests come from the same builders the deploy_model DAG uses (src/tasks/deploy/manifests.py).
# --model-ref (default: champion) is resolved in the MLflow registry at $MLFLOW_TRACKING_URI;
# --storage-uri skips MLflow. A dry run without either renders the example storageUri.
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"

MODEL_NAME=${SLUICE_MODEL_NAME:-wachttijden}
NAMESPACE=${SLUICE_KSERVE_NAMESPACE:-models}
MODEL_REF=champion
STORAGE_URI=""
common_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model-ref) [ $# -ge 2 ] || die "--model-ref needs a value"; MODEL_REF=$2; shift ;;
    --storage-uri) [ $# -ge 2 ] || die "--storage-uri needs a value"; STORAGE_URI=$2; shift ;;
    --namespace) [ $# -ge 2 ] || die "--namespace needs a value"; NAMESPACE=$2; shift ;;
    *) common_args+=("$1") ;;
  esac
  shift
done
sluice_init model "${common_args[@]}"

need_context
if [ -z "$STORAGE_URI" ] && ! is_dry_run; then
  need_env MLFLOW_TRACKING_URI
fi
preflight_done

render_args=(--which model --model-name "$MODEL_NAME" --namespace "$NAMESPACE")
if [ -n "$STORAGE_URI" ]; then
  render_args+=(--champion-uri "$STORAGE_URI")
elif [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
  render_args+=(--resolve --champion-uri "$MODEL_REF")
else
  log "MLFLOW_TRACKING_URI is not set: rendering the example storageUri (dry run only)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PYTHONPATH="$SLUICE_ROOT/src" "$PYTHON" -m tasks.deploy.manifests render "$tmp" "${render_args[@]}" > /dev/null

ensure_namespace "$NAMESPACE"
# The runtime first: an InferenceService naming a runtime that does not exist yet is rejected.
apply_manifest servingruntime "$tmp/servingruntime.yaml"
apply_manifest inferenceservice-champion "$tmp/inferenceservice-champion.yaml"
kube_wait --for=condition=Ready --timeout=600s -n "$NAMESPACE" "inferenceservice/$MODEL_NAME"
run_cluster "$KUBECTL" get inferenceservice "$MODEL_NAME" -n "$NAMESPACE"
finish
