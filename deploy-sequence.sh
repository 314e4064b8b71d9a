#!/usr/bin/env bash
# Serve champion and challenger on KServe with the challenger receiving mirrored traffic, both ways:
# an InferenceGraph (Sequence: challenger as a Soft step, champion answers the original request)
# and an Istio Gateway + VirtualService (route to the champion, `mirror` a share to the challenger).
#   ./deploy-sequence.sh [--dry-run|render] [--env dev|prod] [--out DIR] [--namespace NS]
#                        [--champion-ref REF | --champion-uri URI] [--challenger-ref REF | --challenger-uri URI]
#                        [--mirror-percent 0-100]
# Refs (default: the champion / challenger aliases) are resolved in MLflow at $MLFLOW_TRACKING_URI.
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"

MODEL_NAME=${SLUICE_MODEL_NAME:-wachttijden}
NAMESPACE=${SLUICE_KSERVE_NAMESPACE:-models}
CHAMPION_REF=champion
CHALLENGER_REF=challenger
CHAMPION_URI=""
CHALLENGER_URI=""
MIRROR_PERCENT=100
common_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --champion-ref) [ $# -ge 2 ] || die "$1 needs a value"; CHAMPION_REF=$2; shift ;;
    --challenger-ref) [ $# -ge 2 ] || die "$1 needs a value"; CHALLENGER_REF=$2; shift ;;
    --champion-uri) [ $# -ge 2 ] || die "$1 needs a value"; CHAMPION_URI=$2; shift ;;
    --challenger-uri) [ $# -ge 2 ] || die "$1 needs a value"; CHALLENGER_URI=$2; shift ;;
    --mirror-percent) [ $# -ge 2 ] || die "$1 needs a value"; MIRROR_PERCENT=$2; shift ;;
    --namespace) [ $# -ge 2 ] || die "$1 needs a value"; NAMESPACE=$2; shift ;;
    *) common_args+=("$1") ;;
  esac
  shift
done
sluice_init sequence "${common_args[@]}"

need_context
if { [ -z "$CHAMPION_URI" ] || [ -z "$CHALLENGER_URI" ]; } && ! is_dry_run; then
  need_env MLFLOW_TRACKING_URI
fi
preflight_done

render_args=(--which mirror --model-name "$MODEL_NAME" --namespace "$NAMESPACE" --mirror-percent "$MIRROR_PERCENT")
if [ -n "$CHAMPION_URI" ] && [ -n "$CHALLENGER_URI" ]; then
  render_args+=(--champion-uri "$CHAMPION_URI" --challenger-uri "$CHALLENGER_URI")
elif [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
  [ -z "$CHAMPION_URI$CHALLENGER_URI" ] || die "give both --champion-uri and --challenger-uri, or neither"
  render_args+=(--resolve --champion-uri "$CHAMPION_REF" --challenger-uri "$CHALLENGER_REF")
else
  log "MLFLOW_TRACKING_URI is not set: rendering the example storageUris (dry run only)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PYTHONPATH="$SLUICE_ROOT/src" "$PYTHON" -m tasks.deploy.manifests render "$tmp" "${render_args[@]}" > /dev/null

ensure_namespace "$NAMESPACE"
apply_manifest servingruntime "$tmp/servingruntime.yaml"
apply_manifest inferenceservice-champion "$tmp/inferenceservice-champion.yaml"
apply_manifest inferenceservice-challenger "$tmp/inferenceservice-challenger.yaml"
# The graph controller resolves serviceName to the services' URLs, so they must be Ready first.
kube_wait --for=condition=Ready --timeout=600s -n "$NAMESPACE" \
  "inferenceservice/$MODEL_NAME" "inferenceservice/$MODEL_NAME-challenger"
apply_manifest inferencegraph-mirror "$tmp/inferencegraph-mirror.yaml"
apply_manifest gateway-mirror "$tmp/gateway-mirror.yaml"
apply_manifest virtualservice-mirror "$tmp/virtualservice-mirror.yaml"
kube_wait --for=condition=Ready --timeout=300s -n "$NAMESPACE" "inferencegraph/$MODEL_NAME-mirror"
run_cluster "$KUBECTL" get inferenceservice,inferencegraph,virtualservice -n "$NAMESPACE"
finish
