#!/usr/bin/env bash
# Send the sample rows (src/tasks/deploy/smoke_request.json, the deploy smoke test's request) to the model's V2 endpoint and print the predictions.
#   scripts/perform-prediction.sh [--local | --cluster | --port-forward] [--data FILE] [--model NAME]
#   scripts/perform-prediction.sh --model xray [--explain] SCAN.png [SCAN2.jpg ...]
#     image files (PNG/JPEG) are sent base64 in one V2 BYTES input; prints each image's class probabilities.
#     --explain       V1 :explain instead: also writes each scan's occlusion heat map to ./<name>.heatmap.png
#     --model xray    locally the xray model server: http://127.0.0.1:${SLUICE_XRAY_PORT:-8084}
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
EXPLAIN=0
IMAGES=()
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
    --explain) EXPLAIN=1 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) die "unknown argument: $1 (see --help)" ;;
    *) IMAGES+=("$1") ;;
  esac
  shift
done
command -v curl > /dev/null || die "curl is not installed"
if [ "$MODEL" = xray ] && [ ${#IMAGES[@]} -eq 0 ]; then
  die "--model xray needs one or more PNG/JPEG files: $0 --model xray scan.png"
fi
if [ ${#IMAGES[@]} -gt 0 ]; then
  for image in "${IMAGES[@]}"; do [ -f "$image" ] || die "no image file at $image"; done
  command -v python3 > /dev/null || die "python3 is needed to encode the images"
else
  [ "$EXPLAIN" = 0 ] || die "--explain needs image files (the tabular model's :explain takes V1 rows)"
  [ -f "$DATA" ] || die "no request body at $DATA"
fi

PATH_V2="/v2/models/$MODEL/infer"
[ "$EXPLAIN" = 1 ] && PATH_V2="/v1/models/$MODEL:explain"
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
    elif [ "$MODEL" = xray ]; then
      BASE="http://127.0.0.1:${SLUICE_XRAY_PORT:-8084}"
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
request=$(mktemp)
trap 'rm -f "$body" "$request"; cleanup' EXIT
if [ ${#IMAGES[@]} -gt 0 ]; then
  # One V2 BYTES input of base64 files (V1 instances of {"b64": ...} for :explain).
  python3 - "$EXPLAIN" "${IMAGES[@]}" > "$request" << 'PY'
import base64, json, sys
explain, files = sys.argv[1] == "1", sys.argv[2:]
data = [base64.b64encode(open(f, "rb").read()).decode("ascii") for f in files]
if explain:
    print(json.dumps({"instances": [{"b64": d} for d in data]}))
else:
    print(json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]}))
PY
  DATA=$request
fi

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

if [ ${#IMAGES[@]} -gt 0 ]; then
  # Per image: the predicted class and every class probability; with --explain the heat map file too
  # (written beside, then renamed, so a failed run leaves no half-written PNG).
  python3 - "$body" "$EXPLAIN" "${IMAGES[@]}" << 'PY'
import base64, json, os, sys
answer, explain, files = json.load(open(sys.argv[1])), sys.argv[2] == "1", sys.argv[3:]
if explain:
    rows = [(e["class"], e["probabilities"], e) for e in answer["explanations"]]
else:
    outputs = {o["name"]: o for o in answer["outputs"]}
    probs, labels = outputs["probabilities"], outputs["class"]["data"]
    classes = probs["parameters"]["classes"].split(",")
    width = probs["shape"][1]
    rows = [(labels[i], dict(zip(classes, probs["data"][i * width:(i + 1) * width])), None) for i in range(len(labels))]
print(f"model {answer.get('model_name')} version {answer.get('model_version')}")
for path, (label, probabilities, explanation) in zip(files, rows):
    shown = ", ".join(f"{name} {p:.4f}" for name, p in probabilities.items())
    line = f"{path}: {label} ({shown})"
    if explanation is not None:
        out = os.path.splitext(os.path.basename(path))[0] + ".heatmap.png"
        with open(out + ".part", "wb") as handle:
            handle.write(base64.b64decode(explanation["heat_map_png"]))
        os.replace(out + ".part", out)
        line += f"; heat map of {explanation['explained_class']}: {out}"
    print(line)
PY
  exit 0
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
