#!/usr/bin/env bash
# Serve champion and challenger on KServe with the challenger receiving mirrored traffic, both ways:
# an InferenceGraph (Sequence: challenger as a Soft step, champion answers the original request)
# and an Istio Gateway + VirtualService (route to the champion, `mirror` a share to the challenger).
#   ./deploy-sequence.sh [--dry-run|render] [--env dev|prod] [--out DIR] [--namespace NS]
#                        [--champion-ref REF | --champion-uri URI] [--challenger-ref REF | --challenger-uri URI]
#                        [--mirror-percent 0-100]
# Refs (default: the champion / challenger aliases) are resolved in MLflow at $MLFLOW_TRACKING_URI.
# Rendered, applied and waited for by `python -m tasks.deploy.render --apply`, the same code the
# deploy_traffic_mirroring DAG runs: the services first, the mirroring objects once they are Ready.
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"

CHAMPION_REF=champion
CHALLENGER_REF=challenger
CHAMPION_URI=""
CHALLENGER_URI=""
MIRROR_PERCENT=100
model_args "--champion-ref=CHAMPION_REF --challenger-ref=CHALLENGER_REF --champion-uri=CHAMPION_URI
  --challenger-uri=CHALLENGER_URI --mirror-percent=MIRROR_PERCENT" "$@"
sluice_init sequence "${COMMON_ARGS[@]}"
if [ -n "$CHAMPION_URI" ] && [ -n "$CHALLENGER_URI" ]; then
  needs_registry=0
elif [ -z "$CHAMPION_URI$CHALLENGER_URI" ]; then
  needs_registry=1
else
  die "give both --champion-uri and --challenger-uri, or neither"
fi
model_preflight "$needs_registry"

render_args=(--which mirror --mirror-percent "$MIRROR_PERCENT")
if [ "$needs_registry" = 0 ]; then
  render_args+=(--champion-uri "$CHAMPION_URI" --challenger-uri "$CHALLENGER_URI")
elif uses_registry; then
  render_args+=(--resolve --champion-uri "$CHAMPION_REF" --challenger-uri "$CHALLENGER_REF")
fi
deploy_models "${render_args[@]}"
run_cluster "$KUBECTL" get inferenceservice,inferencegraph,virtualservice -n "$NAMESPACE"
finish
