#!/usr/bin/env bash
# Install cert-manager, then KServe in Standard mode, and the models namespace it serves.
#   ./deploy-kserve.sh [--dry-run|render] [--env dev|prod]
# Needs Istio first (./deploy-istio.sh): InferenceServices are published as Ingress of class istio.
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"
sluice_init kserve "$@"

need_cluster_tools
need_context
if ! is_dry_run && ! "$KUBECTL" get ingressclass istio > /dev/null 2>&1; then
  _MISSING+=("IngressClass 'istio' not found: run ./deploy-istio.sh first")
fi
preflight_done

mapfile -t kserve_values < <(values_files "$DEPLOY_DIR/kserve" values)

helm_release cert-manager cert-manager "$CERT_MANAGER_CHART" "$CERT_MANAGER_VERSION" \
  -f "$DEPLOY_DIR/cert-manager/values.yaml"
# KServe's chart creates an Issuer and a Certificate for its webhook: cert-manager's CRDs and
# webhook must answer before that release is applied.
kube_wait --for=condition=Established --timeout=120s \
  crd/certificates.cert-manager.io crd/issuers.cert-manager.io
kube_wait --for=condition=Available --timeout=300s -n cert-manager \
  deployment/cert-manager deployment/cert-manager-webhook deployment/cert-manager-cainjector

helm_release kserve-crd kserve "$KSERVE_CRD_CHART" "$KSERVE_VERSION"
kube_wait --for=condition=Established --timeout=120s \
  crd/inferenceservices.serving.kserve.io crd/inferencegraphs.serving.kserve.io \
  crd/servingruntimes.serving.kserve.io crd/clusterservingruntimes.serving.kserve.io

helm_release kserve kserve "$KSERVE_CHART" "$KSERVE_VERSION" "${kserve_values[@]}"
kube_wait --for=condition=Available --timeout=300s deployment/kserve-controller-manager -n kserve

apply_kustomize kserve-kustomize "$(kustomize_dir kserve)"
finish
