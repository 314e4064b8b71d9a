#!/usr/bin/env bash
# Deploy the web app (src/app): its namespace, ConfigMap (model server and MLflow URLs), Deployment,
# Service, NetworkPolicy and its route on the Istio ingress gateway (host app.sluice.example.com).
#   ./deploy-app.sh [--dry-run|render] [--env dev|prod]
# Needs Istio first (./deploy-istio.sh: the Gateway and VirtualService kinds). Build and push the
# image first: docker build -f src/app/Dockerfile -t "$APP_IMAGE_REPOSITORY:$APP_IMAGE_TAG" .
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"
sluice_init app "$@"

need_cluster_tools
need_context
if ! is_dry_run && ! "$KUBECTL" get crd virtualservices.networking.istio.io > /dev/null 2>&1; then
  _MISSING+=("Istio's VirtualService kind not found: run ./deploy-istio.sh first")
fi
preflight_done

apply_kustomize app-kustomize "$(kustomize_dir app)"
kube_wait --for=condition=Available --timeout=300s deployment/sluice-app -n app
finish
