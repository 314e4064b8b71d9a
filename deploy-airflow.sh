#!/usr/bin/env bash
# Install Airflow 3 (official chart, KubernetesExecutor, DAGs by git-sync) with its Secrets and
# the Role that lets task pods manage KServe objects in the models namespace.
#   ./deploy-airflow.sh [--dry-run|render] [--env dev|prod]
# Needs ./deploy-elasticsearch.sh first (task logs are read back from Elasticsearch).
# Secrets: deploy/secrets/airflow.env.template and elasticsearch.env.template.
# A dry run renders the real chart when its archive is available: AIRFLOW_CHART_ARCHIVE, default
# ../shared/charts/airflow-<AIRFLOW_CHART_VERSION>.tgz (or $SLUICE_SHARED_DIR/charts/...).
set -euo pipefail
# shellcheck source=deploy/lib/common.sh
source "$(dirname "$0")/deploy/lib/common.sh"
sluice_init airflow "$@"
load_secrets airflow
load_secrets elasticsearch

need_cluster_tools
need_tool base64
need_context
need_env SLUICE_GIT_REPO AIRFLOW_FERNET_KEY AIRFLOW_API_SECRET_KEY AIRFLOW_JWT_SECRET AIRFLOW_ADMIN_PASSWORD \
  AIRFLOW_CONN_WASB_DATALAKE ES_AIRFLOW_READER_PASSWORD
if [ "$SLUICE_ENV" = dev ]; then need_env AIRFLOW_DB_PASSWORD; else need_env AIRFLOW_DB_CONN; fi
if [ -n "${GIT_SYNC_USERNAME:-}${GIT_SYNC_PASSWORD:-}" ]; then need_env GIT_SYNC_USERNAME GIT_SYNC_PASSWORD; fi
# ECK's operator creates this Secret once Elasticsearch runs; in the simulated cluster none does.
if ! is_dry_run && ! is_simulated && ! "$KUBECTL" get secret sluice-es-http-certs-public -n logging > /dev/null 2>&1; then
  _MISSING+=("Elasticsearch CA secret logging/sluice-es-http-certs-public not found: run ./deploy-elasticsearch.sh first")
fi
chart_archive=${AIRFLOW_CHART_ARCHIVE:-${SLUICE_SHARED_DIR:-$SLUICE_ROOT/../shared}/charts/airflow-$AIRFLOW_CHART_VERSION.tgz}
if is_dry_run; then need_tool "$PYTHON"; fi
preflight_done

mapfile -t airflow_values < <(values_files "$DEPLOY_DIR/airflow" values)
# defaultAirflow* (not images.airflow) so every component and the task pod template run our image.
chart_sets=(--set "defaultAirflowRepository=$AIRFLOW_IMAGE_REPOSITORY,defaultAirflowTag=$AIRFLOW_IMAGE_TAG"
  --set "airflowVersion=$AIRFLOW_VERSION")
if [ -n "${SLUICE_GIT_REPO:-}" ]; then
  chart_sets+=(--set-string "dags.gitSync.repo=$SLUICE_GIT_REPO")
fi
if [ -n "${SLUICE_GIT_BRANCH:-}" ]; then
  chart_sets+=(--set-string "dags.gitSync.branch=$SLUICE_GIT_BRANCH,dags.gitSync.ref=$SLUICE_GIT_BRANCH")
fi
git_credentials=1
if ! is_dry_run && [ -z "${GIT_SYNC_USERNAME:-}" ]; then
  log "no GIT_SYNC_USERNAME/GIT_SYNC_PASSWORD: git-sync clones $SLUICE_GIT_REPO anonymously"
  git_credentials=0
  chart_sets+=(--set "dags.gitSync.credentialsSecret=")
fi

apply_kustomize airflow-kustomize "$(kustomize_dir airflow)"

apply_secret sluice-airflow-fernet-key airflow fernet-key=AIRFLOW_FERNET_KEY
apply_secret sluice-airflow-api-secret-key airflow api-secret-key=AIRFLOW_API_SECRET_KEY
apply_secret sluice-airflow-jwt-secret airflow jwt-secret=AIRFLOW_JWT_SECRET
apply_secret sluice-airflow-admin airflow password=AIRFLOW_ADMIN_PASSWORD
apply_secret sluice-airflow-connections airflow AIRFLOW_CONN_WASB_DATALAKE=AIRFLOW_CONN_WASB_DATALAKE
# Optional: the alert mails' SMTP server (connection smtp_default); the pods read this Secret if it exists.
if [ -n "${AIRFLOW_CONN_SMTP_DEFAULT:-}" ]; then
  apply_secret sluice-airflow-smtp airflow AIRFLOW_CONN_SMTP_DEFAULT=AIRFLOW_CONN_SMTP_DEFAULT
fi
if [ "$SLUICE_ENV" = dev ]; then
  apply_secret sluice-airflow-postgresql airflow postgres-password=AIRFLOW_DB_PASSWORD
  # shellcheck disable=SC2034 # read indirectly by apply_secret
  metadata_url="postgresql://postgres:${AIRFLOW_DB_PASSWORD:-}@airflow-postgresql.airflow.svc.cluster.local:5432/postgres?sslmode=disable"
else
  # shellcheck disable=SC2034
  metadata_url=${AIRFLOW_DB_CONN:-}
fi
apply_secret sluice-airflow-metadata airflow connection=metadata_url
# shellcheck disable=SC2034
es_url="https://sluice-airflow-log-reader:${ES_AIRFLOW_READER_PASSWORD:-}@sluice-es-http.logging.svc:9200"
apply_secret sluice-airflow-elasticsearch airflow connection=es_url
if [ "$git_credentials" = 1 ]; then
  # git-sync v4 reads GITSYNC_*, v3 GIT_SYNC_*: both, so a chart default change cannot break it.
  apply_secret sluice-git-credentials airflow GITSYNC_USERNAME=GIT_SYNC_USERNAME GITSYNC_PASSWORD=GIT_SYNC_PASSWORD \
    GIT_SYNC_USERNAME=GIT_SYNC_USERNAME GIT_SYNC_PASSWORD=GIT_SYNC_PASSWORD
fi

# Airflow verifies Elasticsearch's certificate: copy ECK's CA (public) into the airflow namespace.
if is_dry_run; then
  printf '%s\n' "kubectl get secret sluice-es-http-certs-public -n logging -o jsonpath='{.data.ca\\.crt}' | base64 -d > ca.crt" \
    "kubectl create secret generic sluice-es-ca -n airflow --from-file=ca.crt=ca.crt --dry-run=client -o yaml | kubectl apply --server-side --field-manager=sluice -f -" \
    >> "$RENDER_DIR/commands.sh"
elif is_simulated; then
  log "simulated cluster: no ECK CA to copy (no Elasticsearch runs); the pods that mount sluice-es-ca are scheduled, never started"
else
  ca_dir=$(mktemp -d)
  "$KUBECTL" get secret sluice-es-http-certs-public -n logging -o jsonpath='{.data.ca\.crt}' | base64 -d > "$ca_dir/ca.crt"
  "$KUBECTL" create secret generic sluice-es-ca -n airflow --from-file=ca.crt="$ca_dir/ca.crt" --dry-run=client -o yaml |
    "$KUBECTL" apply --server-side --field-manager=sluice -f - > /dev/null
  rm -rf "$ca_dir"
fi

if is_dry_run; then
  if [ -f "$chart_archive" ]; then
    render_helm helm-airflow "$chart_archive" airflow airflow "${airflow_values[@]}" "${chart_sets[@]}"
  else
    log "chart archive $chart_archive not found: recording the helm command only"
  fi
fi
helm_release airflow airflow airflow "$AIRFLOW_CHART_VERSION" --repo "$AIRFLOW_HELM_REPO" \
  "${airflow_values[@]}" "${chart_sets[@]}"
kube_wait --for=condition=Available --timeout=600s -n airflow deployment/airflow-scheduler \
  deployment/airflow-api-server deployment/airflow-dag-processor
finish
