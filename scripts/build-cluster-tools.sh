#!/usr/bin/env bash
# Build the local Kubernetes control plane and its tools from Go modules, at the versions pinned in
# deploy/versions.env, into a cache outside the repository:
#   ${SLUICE_CACHE:-~/.cache/sluice}/bin/<component>-<version>/<binary>
# A component whose binaries are all present is skipped, so a warm run takes a second.
# Called by `scripts/setup.sh cluster`.
#
# k8s.io/kubernetes, etcd's server module and KServe carry `replace` directives in their go.mod
# (`go install mod@version` refuses those), so each is built from a small wrapper module that
# requires it and pins every replaced module at a real published version.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/versions.env
source deploy/versions.env

CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
BIN=$CACHE/bin
WORK=$CACHE/build
export PATH=/usr/local/go/bin:$PATH
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
command -v go >/dev/null || { echo "error: Go is not installed (expected /usr/local/go/bin/go)" >&2; exit 1; }

have_all() {  # have_all DIR BINARY...: every binary already built
  local dir=$1; shift
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

wrapper_module() {  # wrapper_module NAME MODULE VERSION [REPLACED_MODULE=VERSION ...]: prints its dir
  local name=$1 module=$2 version=$3; shift 3
  local dir=$WORK/$name-$version
  mkdir -p "$dir"
  {
    echo "module sluice.local/build/$name"
    echo
    echo "go 1.26"
    echo
    echo "require $module $version"
    for pin in "$@"; do echo "replace ${pin%%=*} => ${pin%%=*} ${pin#*=}"; done
  } > "$dir/go.mod"
  echo "$dir"
}

build_in() {  # build_in WRAPPER_DIR OUT_DIR LDFLAGS PACKAGE...
  local dir=$1 out=$2 ldflags=$3; shift 3
  mkdir -p "$out"
  (cd "$dir" && for pkg in "$@"; do go get "$pkg@$(sed -n 's/^require [^ ]* //p' go.mod | head -1)" >/dev/null 2>&1 || go get "$pkg"; done)
  for pkg in "$@"; do
    echo "    go build ${pkg##*/}"
    (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/${pkg##*/}" "$pkg")
  done
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION out=$BIN/kubernetes-$KUBERNETES_VERSION
  have_all "$out" kube-apiserver kube-controller-manager kube-scheduler kubectl && return 0
  echo "==> building Kubernetes $v (control plane + kubectl; cold: tens of minutes)"
  # The staging modules are published as k8s.io/<name> v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>.
  local staging_version=v0.${v#v1.} pins=() gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  while read -r mod; do pins+=("$mod=$staging_version"); done \
    < <(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  local dir major minor ldflags=""
  dir=$(wrapper_module kubernetes k8s.io/kubernetes "$v" "${pins[@]}")
  major=${v#v}; major=${major%%.*}; minor=${v#v*.}; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  build_in "$dir" "$out" "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local v=$ETCD_VERSION out=$BIN/etcd-$ETCD_VERSION
  have_all "$out" etcd && return 0
  echo "==> building etcd $v"
  local dir
  dir=$(wrapper_module etcd go.etcd.io/etcd/server/v3 "$v" \
    go.etcd.io/etcd/api/v3="$v" go.etcd.io/etcd/client/pkg/v3="$v" \
    go.etcd.io/etcd/client/v3="$v" go.etcd.io/etcd/pkg/v3="$v")
  build_in "$dir" "$out" "" go.etcd.io/etcd/server/v3
  mv "$out/v3" "$out/etcd"
}

build_plain() {  # build_plain NAME VERSION LDFLAGS PACKAGE...: modules without replace directives
  local name=$1 v=$2 ldflags=$3; shift 3
  local out=$BIN/$name-$v bins=()
  for pkg in "$@"; do bins+=("${pkg##*/}"); done
  have_all "$out" "${bins[@]}" && return 0
  echo "==> building $name $v"
  mkdir -p "$out"
  for pkg in "$@"; do
    GOBIN=$out go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$v"
  done
}

copy_kwok_stages() {  # kwok >= 0.8 simulates nothing without stages: keep the module's own next to the binary
  local out=$BIN/kwok-$KWOK_VERSION/stages dir stage
  [ -f "$out/.complete" ] && return 0
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  mkdir -p "$out"
  # Nodes become Ready and keep a lease; pods run, Job pods complete, deleted pods go; PVCs bind.
  for stage in node/fast node/heartbeat-with-lease pod/fast volume/fast; do
    find "$dir/kustomize/stage/$stage" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml \
      -exec cp {} "$out/" \;
  done
  chmod u+w "$out"/*.yaml
  touch "$out/.complete"
}

build_kserve() {
  local v=$KSERVE_CONTROLLER_VERSION out=$BIN/kserve-$KSERVE_CONTROLLER_VERSION
  have_all "$out" manager router && return 0
  echo "==> building KServe $v (controller manager + InferenceGraph router)"
  local gomod pins=()
  gomod=$(go mod download -json "github.com/kserve/kserve@$v" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  # Copy the module's own replace directives (single-line and block form) into the wrapper.
  while read -r mod ver; do pins+=("$mod=$ver"); done \
    < <(go mod edit -json "$gomod" | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    print(r["Old"]["Path"], r["New"]["Version"])')
  local dir
  dir=$(wrapper_module kserve github.com/kserve/kserve "$v" "${pins[@]}")
  build_in "$dir" "$out" "" github.com/kserve/kserve/cmd/manager github.com/kserve/kserve/cmd/router
}

module_dir() {  # module_dir MODULE@VERSION: where the Go module cache holds it (downloaded if needed)
  go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p'
}

# The upstream charts deploy-*.sh install are only reachable here inside their Go modules: copy them
# into one folder, named the way deploy/lib/common.sh's local_chart looks them up (SLUICE_CHARTS_DIR).
collect_charts() {
  local out=$CACHE/charts stamp istio kserve certmanager eck archive
  stamp="$ISTIO_CHART_MODULE_VERSION $KSERVE_CONTROLLER_VERSION $CERT_MANAGER_VERSION $ECK_OPERATOR_VERSION $AIRFLOW_CHART_VERSION"
  [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  echo "==> collecting charts from Go modules into $out"
  istio=$(module_dir "istio.io/istio@$ISTIO_CHART_MODULE_VERSION")/manifests/charts
  kserve=$(module_dir "github.com/kserve/kserve@$KSERVE_CONTROLLER_VERSION")/charts
  certmanager=$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")/deploy/charts/cert-manager
  eck=$(module_dir "github.com/elastic/cloud-on-k8s/v3@v$ECK_OPERATOR_VERSION")/deploy/eck-operator
  rm -rf "$out" && mkdir -p "$out"
  cp -r "$istio/base" "$out/base"
  cp -r "$istio/istio-control/istio-discovery" "$out/istiod"
  cp -r "$istio/gateway" "$out/gateway"
  cp -r "$kserve/kserve-crd" "$out/kserve-crd"
  # Published to the OCI registry as "kserve"; in the source tree it is kserve-resources.
  cp -r "$kserve/kserve-resources" "$out/kserve"
  cp -r "$eck" "$out/eck-operator"
  cp -r "$certmanager" "$out/cert-manager"
  # cert-manager's release tool fills in Chart.yaml from this template.
  sed -e "s/{{IS_PRERELEASE}}/false/" -e "s/^version: v0.0.0/version: $CERT_MANAGER_VERSION/" \
    -e "s/^appVersion: v0.0.0/appVersion: $CERT_MANAGER_VERSION/" \
    "$out/cert-manager/Chart.template.yaml" > "$out/cert-manager/Chart.yaml"
  chmod -R u+w "$out"
  # The Airflow chart is not in any Go module: take the archive deploy-airflow.sh also renders from.
  archive=${AIRFLOW_CHART_ARCHIVE:-${SLUICE_SHARED_DIR:-../shared}/charts/airflow-$AIRFLOW_CHART_VERSION.tgz}
  if [ -f "$archive" ]; then
    cp "$archive" "$out/airflow-$AIRFLOW_CHART_VERSION.tgz"
  else
    echo "note: $archive not found: put the Airflow chart into $out (helm pull --untar) before deploy-airflow.sh" >&2
  fi
  echo "$stamp" > "$out/.stamp"
}

only=${1:-all}
case "$only" in
  all|kubernetes) build_kubernetes ;;&
  all|etcd) build_etcd ;;&
  all|kwok) build_plain kwok "$KWOK_VERSION" "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
            copy_kwok_stages ;;&
  all|helm) build_plain helm "$HELM_VERSION" "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" helm.sh/helm/v4/cmd/helm ;;&
  all|kserve) build_kserve ;;&
  all|charts) collect_charts ;;&
  all|kubernetes|etcd|kwok|helm|kserve|charts) ;;
  *) echo "usage: $0 [all|kubernetes|etcd|kwok|helm|kserve|charts]" >&2; exit 2 ;;
esac
du -sh "$BIN" 2>/dev/null | awk '{print "cluster tools cache: " $1 " in " $2}'
