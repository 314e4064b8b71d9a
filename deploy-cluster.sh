#!/usr/bin/env bash
# Bootstrap a whole cluster in dependency order: Istio -> cert-manager + KServe -> ECK
# (Elasticsearch, Kibana, Filebeat) -> MLflow -> Airflow -> the web app. Each step is re-runnable on its own.
#   ./deploy-cluster.sh [--dry-run|render] [--env dev|prod] [--out DIR]
# With --dry-run every component renders into DIR/<component>/ (default render/).
set -euo pipefail
cd "$(dirname "$0")"

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "error: --out needs a value" >&2; exit 1; }; export SLUICE_RENDER_DIR=$2; shift ;;
    --out=*) export SLUICE_RENDER_DIR=${1#--out=} ;;
    -h | --help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done

for component in istio kserve elasticsearch mlflow airflow app; do
  printf '\n######## deploy-%s.sh\n' "$component" >&2
  "./deploy-$component.sh" "${args[@]}"
done
