#!/usr/bin/env bash
# Install Sluice's MLflow chart (charts/mlflow): tracking server, registry, PostgreSQL backend.
#   ./deploy-mlflow.sh [--dry-run|render] [--env dev|prod]
# Secrets: MLFLOW_DB_PASSWORD and the artifact store credentials (deploy/secrets/mlflow.env.template).
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"
sluice_init mlflow "$@"
load_secrets mlflow

need_cluster_tools
need_context
need_env MLFLOW_DB_PASSWORD
artifact_keys=()
if [ -n "${AZURE_STORAGE_CONNECTION_STRING:-}" ]; then
  artifact_keys=(AZURE_STORAGE_CONNECTION_STRING=AZURE_STORAGE_CONNECTION_STRING)
elif [ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ -n "${AWS_SECRET_ACCESS_KEY:-}" ]; then
  artifact_keys=(AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=AWS_SECRET_ACCESS_KEY)
  [ -n "${MLFLOW_S3_ENDPOINT_URL:-}" ] && artifact_keys+=(MLFLOW_S3_ENDPOINT_URL=MLFLOW_S3_ENDPOINT_URL)
elif is_dry_run; then
  artifact_keys=(AZURE_STORAGE_CONNECTION_STRING=AZURE_STORAGE_CONNECTION_STRING)
else
  _MISSING+=("artifact store credentials: set AZURE_STORAGE_CONNECTION_STRING, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
fi
if is_dry_run; then need_tool "$PYTHON"; fi
preflight_done

mapfile -t mlflow_values < <(values_files "$DEPLOY_DIR/mlflow" values)
image_sets=(--set "image.repository=$MLFLOW_IMAGE_REPOSITORY,image.tag=$MLFLOW_IMAGE_TAG"
  --set "postgresql.image.repository=$POSTGRES_IMAGE_REPOSITORY,postgresql.image.tag=$POSTGRES_IMAGE_TAG")

apply_kustomize mlflow-kustomize "$(kustomize_dir mlflow)"
apply_secret sluice-mlflow-db mlflow password=MLFLOW_DB_PASSWORD
apply_secret sluice-mlflow-artifacts mlflow "${artifact_keys[@]}"

if is_dry_run; then
  render_helm helm-mlflow "$SLUICE_ROOT/charts/mlflow" mlflow mlflow "${mlflow_values[@]}" "${image_sets[@]}"
fi
# A chart in this repository: its version is charts/mlflow/Chart.yaml (MLFLOW_CHART_VERSION).
helm_release mlflow mlflow "$SLUICE_ROOT/charts/mlflow" "" "${mlflow_values[@]}" "${image_sets[@]}"
kube_wait --for=condition=Available --timeout=300s deployment/mlflow -n mlflow
finish
