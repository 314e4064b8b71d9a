#!/usr/bin/env bash
# Install the ECK operator, then Elasticsearch, Kibana and Filebeat (ECK resources), our index
# templates and retention policy, and Kibana's saved data views and searches.
#   ./deploy-elasticsearch.sh [--dry-run|render] [--env dev|prod]
# Secrets: ES_FILEBEAT_PASSWORD, ES_AIRFLOW_READER_PASSWORD (deploy/secrets/elasticsearch.env.template).
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"
sluice_init elasticsearch "$@"
load_secrets elasticsearch

need_cluster_tools
need_tool base64
need_context
need_env ES_FILEBEAT_PASSWORD ES_AIRFLOW_READER_PASSWORD
preflight_done

ES_DIR="$DEPLOY_DIR/elasticsearch"
ES_LOCAL_PORT=${ES_LOCAL_PORT:-19200}
KIBANA_LOCAL_PORT=${KIBANA_LOCAL_PORT:-15601}
trap stop_port_forward EXIT

# elastic_api SERVICE LOCAL_PORT REMOTE_PORT METHOD PATH [curl args]: one authenticated HTTPS call
# through a port-forward, verifying the server against ECK's CA under the Service's own name.
# The elastic password goes to curl on stdin (--config -), never in argv or on screen.
elastic_api() {
  local service=$1 local_port=$2 remote_port=$3 method=$4 path=$5
  shift 5
  if is_dry_run; then
    local arg body=""
    for arg in "$@"; do
      case "$arg" in @*) body=${arg#@} ;; file=@*) body=${arg#file=@} ;; esac
    done
    if [ -n "$body" ]; then
      mkdir -p "$RENDER_DIR/api"
      cp "$body" "$RENDER_DIR/api/"
      body=" < render/$COMPONENT/api/$(basename "$body")"
    fi
    printf '# %s https://%s.logging.svc:%s%s (elastic user, via port-forward)%s\n' \
      "$method" "$service" "$remote_port" "$path" "$body" >> "$RENDER_DIR/commands.sh"
    return 0
  fi
  if is_simulated; then
    log "simulated cluster: skipped $method $path (no Elasticsearch or Kibana process runs there)"
    return 0
  fi
  local tmp password host="$service.logging.svc"
  tmp=$(mktemp -d)
  "$KUBECTL" get secret "${service%-http}-http-certs-public" -n logging -o jsonpath='{.data.ca\.crt}' |
    base64 -d > "$tmp/ca.crt"
  password=$("$KUBECTL" get secret sluice-es-elastic-user -n logging -o jsonpath='{.data.elastic}' | base64 -d)
  port_forward logging "svc/$service" "$local_port" "$remote_port"
  printf 'user = "elastic:%s"\n' "$password" |
    curl --config - --silent --show-error --fail-with-body --output /dev/null \
      --cacert "$tmp/ca.crt" --resolve "$host:$local_port:127.0.0.1" \
      -X "$method" "https://$host:$local_port$path" "$@"
  stop_port_forward
  rm -rf "$tmp"
  log "$method $path: ok"
}

helm_release elastic-operator elastic-system eck-operator "$ECK_OPERATOR_VERSION" --repo "$ECK_HELM_REPO" \
  -f "$ES_DIR/operator-values.yaml"
kube_wait --for=condition=Established --timeout=120s crd/elasticsearches.elasticsearch.k8s.elastic.co \
  crd/kibanas.kibana.k8s.elastic.co crd/beats.beat.k8s.elastic.co
run_cluster "$KUBECTL" rollout status statefulset/elastic-operator -n elastic-system --timeout=300s

# The file-realm users must exist before Elasticsearch starts reading them.
ensure_namespace logging
# shellcheck disable=SC2034 # read indirectly by apply_secret
filebeat_user=sluice-filebeat filebeat_roles=sluice_filebeat_writer
# shellcheck disable=SC2034
reader_user=sluice-airflow-log-reader reader_roles=sluice_airflow_log_reader
apply_secret sluice-filebeat-user logging --type=kubernetes.io/basic-auth \
  username=filebeat_user password=ES_FILEBEAT_PASSWORD roles=filebeat_roles
apply_secret sluice-airflow-log-reader logging --type=kubernetes.io/basic-auth \
  username=reader_user password=ES_AIRFLOW_READER_PASSWORD roles=reader_roles

# Elasticsearch and Kibana first; Filebeat only once our index templates exist, so that no daily
# index is ever created with guessed mappings (log_id must be a keyword, offset a long).
stack=$(mktemp)
build_overlay "$(kustomize_dir elasticsearch)" "$stack"
apply_manifest elasticsearch-stack "$stack" -l 'sluice.io/phase!=shipper'
stack_applied=$_TARGET
# ECK's operator writes these statuses; in the simulated cluster no operator runs, so the waits
# would never end (the objects were still validated and stored by the real API server).
wait_for_stack() { is_simulated || kube_wait "$@"; }
wait_for_stack --for=jsonpath='{.status.phase}'=Ready --timeout=900s elasticsearch/sluice -n logging

elastic_api sluice-es-http "$ES_LOCAL_PORT" 9200 PUT /_ilm/policy/sluice-logs \
  -H 'Content-Type: application/json' --data-binary "@$ES_DIR/ilm-policy.json"
for template in "$ES_DIR"/index-templates/*.json; do
  elastic_api sluice-es-http "$ES_LOCAL_PORT" 9200 PUT "/_index_template/$(basename "$template" .json)" \
    -H 'Content-Type: application/json' --data-binary "@$template"
done

if is_dry_run; then
  run_cluster "$KUBECTL" apply --server-side --field-manager=sluice -f "$stack_applied" -l 'sluice.io/phase=shipper'
else
  apply_manifest filebeat "$stack" -l 'sluice.io/phase=shipper'
fi
rm -f "$stack"

wait_for_stack --for=jsonpath='{.status.health}'=green --timeout=600s kibana/sluice -n logging
elastic_api sluice-kb-http "$KIBANA_LOCAL_PORT" 5601 POST '/api/saved_objects/_import?overwrite=true' \
  -H 'kbn-xsrf: true' --form "file=@$ES_DIR/kibana/saved-objects.ndjson"
wait_for_stack --for=jsonpath='{.status.health}'=green --timeout=600s beat/filebeat -n logging
finish
