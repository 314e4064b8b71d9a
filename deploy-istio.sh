#!/usr/bin/env bash
# Install Istio (CRDs, istiod, ingress gateway) and the "istio" IngressClass KServe publishes on.
#   ./deploy-istio.sh [--dry-run|render] [--env dev|prod]
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"
sluice_init istio "$@"

need_cluster_tools
need_context
preflight_done

mapfile -t istiod_values < <(values_files "$DEPLOY_DIR/istio" istiod)
mapfile -t gateway_values < <(values_files "$DEPLOY_DIR/istio" gateway)

helm_release istio-base istio-system base "$ISTIO_VERSION" --repo "$ISTIO_HELM_REPO" \
  --set defaultRevision=default
# istiod's validation webhook and the gateway need Istio's CRDs to be served first.
kube_wait --for=condition=Established --timeout=120s \
  crd/virtualservices.networking.istio.io crd/gateways.networking.istio.io \
  crd/destinationrules.networking.istio.io crd/peerauthentications.security.istio.io

helm_release istiod istio-system istiod "$ISTIO_VERSION" --repo "$ISTIO_HELM_REPO" "${istiod_values[@]}"
kube_wait --for=condition=Available --timeout=300s deployment/istiod -n istio-system

helm_release istio-ingressgateway istio-system gateway "$ISTIO_VERSION" --repo "$ISTIO_HELM_REPO" \
  "${gateway_values[@]}"
kube_wait --for=condition=Available --timeout=300s deployment/istio-ingressgateway -n istio-system

apply_kustomize istio-kustomize "$(kustomize_dir istio)"
finish
