#!/usr/bin/env bash
# Send the sample rows through the traffic-mirroring entry point and print the (champion's) predictions.
#   scripts/perform-prediction-sequence.sh [--local | --cluster | --port-forward] [--data FILE] [--model NAME]
#     --local         (default) the local router: http://127.0.0.1:${SLUICE_ROUTER_PORT:-8082}; the
#                     challenger's mirrored answers land in <local_run_dir>/predictions.jsonl
#     --cluster       the Istio mirror VirtualService host <model>-shadow-<namespace>.<domain> via
#                     $INGRESS_HOST:$INGRESS_PORT (Host header overridable with SERVICE_HOSTNAME)
#     --port-forward  the same through `kubectl port-forward svc/istio-ingressgateway`
# To call the InferenceGraph (Sequence) instead: kubectl port-forward -n models svc/wachttijden-mirror 8082:80
# and run this script with --local.
set -euo pipefail
exec "$(dirname "$0")/perform-prediction.sh" --sequence "$@"
