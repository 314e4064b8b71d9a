#!/usr/bin/env bash
# Send the sample rows (src/tasks/deploy/smoke_request.json, the deploy smoke test's request) to the model's V2 endpoint and print the predictions.
#   scripts/perform-prediction.sh [--local | --cluster | --port-forward] [--data FILE] [--model NAME]
#     --local         (default) the local model server: http://127.0.0.1:${SLUICE_INFERENCE_PORT:-8081}
#     --cluster       through the Istio ingress gateway at $INGRESS_HOST:${INGRESS_PORT:-80}, with the
#                     Host header $SERVICE_HOSTNAME (default: the InferenceService's status.url host, else
#                     <isvc>-<namespace>.<domain>, KServe's host template in deploy/kserve/values.yaml)
#     --port-forward  like --cluster, through `kubectl port-forward svc/istio-ingressgateway` (no load
#                     balancer needed); stopped when the script exits
# Env: SLUICE_PREDICT_TARGET (local|cluster|port-forward), SLUICE_MODEL_NAME (wachttijden),
#      SLUICE_KSERVE_NAMESPACE (models), SLUICE_INGRESS_DOMAIN (sluice.example.com).
# scripts/perform-prediction-sequence.sh calls this with --sequence: the mirroring entry point instead.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

TARGET=${SLUICE_PREDICT_TARGET:-local}
MODEL=${SLUICE_MODEL_NAME:-wachttijden}
NAMESPACE=${SLUICE_KSERVE_NAMESPACE:-models}
DOMAIN=${SLUICE_INGRESS_DOMAIN:-sluice.example.com}
DATA=$ROOT/src/tasks/deploy/smoke_request.json
SEQUENCE=0
KUBECTL=${KUBECTL:-kubectl}
[ -x "$ROOT/.venv/bin/kubectl" ] && [ "$KUBECTL" = kubectl ] && KUBECTL=$ROOT/.venv/bin/kubectl

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --local) TARGET=local ;;
    --cluster) TARGET=cluster ;;
    --port-forward) TARGET=port-forward ;;
    --sequence) SEQUENCE=1 ;;
    --data) [ $# -ge 2 ] || die "--data needs a file"; DATA=$2; shift ;;
    --model) [ $# -ge 2 ] || die "--model needs a name"; MODEL=$2; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
command -v curl > /dev/null || die "curl is not installed"
[ -f "$DATA" ] || die "no request body at $DATA"

PATH_V2="/v2/models/$MODEL/infer"
HOST_HEADER=""
PF_PID=""
cleanup() { if [ -n "$PF_PID" ]; then kill "$PF_PID" 2> /dev/null || true; fi; }
trap cleanup EXIT

cluster_host() {  # the Host header the ingress gateway routes on
  if [ -n "${SERVICE_HOSTNAME:-}" ]; then
    printf '%s' "$SERVICE_HOSTNAME"
  elif [ "$SEQUENCE" = 1 ]; then
    # The Istio mirror VirtualService's host (deploy/model/virtualservice-mirror.yaml).
    printf '%s-shadow-%s.%s' "$MODEL" "$NAMESPACE" "$DOMAIN"
  else
    local url=""
    url=$("$KUBECTL" get inferenceservice "$MODEL" -n "$NAMESPACE" -o jsonpath='{.status.url}' 2> /dev/null) || true
    if [ -n "$url" ]; then
      url=${url#*://}
      printf '%s' "${url%%/*}"
    else
      printf '%s-%s.%s' "$MODEL" "$NAMESPACE" "$DOMAIN"
    fi
  fi
}

case "$TARGET" in
  local)
    if [ "$SEQUENCE" = 1 ]; then
      BASE="http://127.0.0.1:${SLUICE_ROUTER_PORT:-8082}"
    else
      BASE="http://127.0.0.1:${SLUICE_INFERENCE_PORT:-8081}"
    fi
    HINT="start it with ./deploy-local.sh up, or trigger the deploy DAG with deploy_target=local"
    ;;
  cluster)
    [ -n "${INGRESS_HOST:-}" ] || die "set INGRESS_HOST (and INGRESS_PORT) to the Istio ingress gateway's address, or use --port-forward"
    BASE="http://$INGRESS_HOST:${INGRESS_PORT:-80}"
    HOST_HEADER=$(cluster_host)
    HINT="check: kubectl get inferenceservice -n $NAMESPACE, and the gateway address"
    ;;
  port-forward)
    command -v "$KUBECTL" > /dev/null || die "kubectl is not installed"
    "$KUBECTL" config current-context > /dev/null 2>&1 || die "no current kubectl context"
    local_port=${SLUICE_PORT_FORWARD_PORT:-18080}
    "$KUBECTL" port-forward -n istio-system svc/istio-ingressgateway "$local_port:80" > /dev/null 2>&1 &
    PF_PID=$!
    for _ in $(seq 1 30); do
      curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$local_port/" && break
      kill -0 "$PF_PID" 2> /dev/null || die "kubectl port-forward to istio-system/svc/istio-ingressgateway exited"
      sleep 1
    done
    BASE="http://127.0.0.1:$local_port"
    HOST_HEADER=$(cluster_host)
    HINT="check: kubectl get inferenceservice -n $NAMESPACE"
    ;;
  *) die "unknown target '$TARGET' (local, cluster or port-forward)" ;;
esac

URL="$BASE$PATH_V2"
headers=(-H "Content-Type: application/json")
[ -n "$HOST_HEADER" ] && headers+=(-H "Host: $HOST_HEADER")
body=$(mktemp)
trap 'rm -f "$body"; cleanup' EXIT

echo "POST $URL${HOST_HEADER:+ (Host: $HOST_HEADER)}" >&2
set +e
code=$(curl -sS --max-time 60 -o "$body" -w '%{http_code}' "${headers[@]}" --data-binary "@$DATA" "$URL")
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  die "nothing answers at $URL (curl exit $rc); $HINT"
fi
if [ "$code" != 200 ]; then
  printf 'error: HTTP %s from %s:\n' "$code" "$URL" >&2
  cat "$body" >&2
  echo >&2
  exit 1
fi

if command -v jq > /dev/null; then
  jq . "$body"
  printf 'predictions (weeks): '
  jq -c '[.outputs[] | select(.name == "predictions") | .data[]]' "$body"
else
  python3 -m json.tool "$body"
  printf 'predictions (weeks): '
  python3 -c 'import json, sys; print([d for o in json.load(open(sys.argv[1]))["outputs"] if o["name"] == "predictions" for d in o["data"]])' "$body"
fi
