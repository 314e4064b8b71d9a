#!/usr/bin/env bash
# Create or update the project's virtual environments from the pinned requirement files.
#   scripts/setup.sh runtime   .venv (pipelines) + .venv-serving (model server) + .venv-app (web app)
#   scripts/setup.sh dev       the same, plus test/lint tools in .venv, checkov in .venv-tools and,
#                              as root, shellcheck and chromium (the browser tests) from Debian
#   scripts/setup.sh cluster   .venv, plus the local Kubernetes control plane, kwok, helm and KServe's
#                              controller and router built from Go modules into ~/.cache/sluice/bin
#                              (cold: tens of minutes once per machine; warm: a second)
# Re-running is cheap: an environment is only synced when its requirement file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/uv.sh
source scripts/lib/uv.sh

is_synced() {  # is_synced DIR REQUIREMENTS_FILE: installed from exactly this file's content
  local stamp
  stamp="$1/.sluice-$(basename "$2").sha256"
  [ -f "$stamp" ] && sha256sum --status -c "$stamp" 2>/dev/null
}

sync_venv() {  # sync_venv DIR REQUIREMENTS_FILE [SUPERSET_FILE]
  local dir=$1 req=$2 superset=${3:-} stamp
  stamp="$dir/.sluice-$(basename "$req").sha256"
  # A venv synced from a superset (dev = runtime + tools) already satisfies the runtime:
  # syncing it down would uninstall the test tools.
  if is_synced "$dir" "$req" || { [ -n "$superset" ] && is_synced "$dir" "$superset"; }; then
    return 0
  fi
  # A dev venv whose superset file changed (a pull, another branch) is brought up to that file,
  # not synced down to the runtime: ./deploy-local.sh must not uninstall the test tools.
  if [ -n "$superset" ] && [ -f "$dir/.sluice-$(basename "$superset").sha256" ]; then
    req=$superset
    stamp="$dir/.sluice-$(basename "$req").sha256"
  fi
  echo "==> installing $req into $dir (first time takes a few minutes)"
  [ -x "$dir/bin/python" ] || "$UV" venv --quiet --python "$PYTHON" "$dir"
  "$UV" pip sync --quiet --python "$dir/bin/python" "$req"
  # Several files may share a venv; record each file's hash separately.
  rm -f "$dir"/.sluice-*.sha256
  sha256sum "$req" > "$stamp"
}

install_node_tools() {  # Azurite (Azure Blob emulator) for the data lake tests, pinned in package-lock.json
  [ -f package-lock.json ] || return 0
  local stamp=node_modules/.sluice-package-lock.sha256
  if [ -f "$stamp" ] && sha256sum --status -c "$stamp" 2>/dev/null; then
    return 0
  fi
  echo "==> npm ci (Azurite)"
  npm ci --no-audit --no-fund --loglevel=error
  sha256sum package-lock.json > "$stamp"
}

install_system_tools() {  # Debian packages the tests use, installed as root only (idempotent)
  apt_install shellcheck shellcheck "the shell lint tests will skip"
  # The browser tests drive Debian's Chromium by its path; Playwright's own browser download is never used.
  apt_install /usr/bin/chromium chromium "the browser tests of the web app will fail"
}

apt_install() {  # apt_install COMMAND_OR_PATH PACKAGE CONSEQUENCE
  local what=$1 package=$2 consequence=$3
  if [ -x "$what" ] || command -v "$what" >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "==> apt-get install $package"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package") >/dev/null
  else
    echo "note: $package is not installed and this is not root; $consequence" >&2
  fi
}

mode=${1:-runtime}
case "$mode" in
  runtime)
    sync_venv .venv requirements.txt requirements-dev.txt
    sync_venv .venv-serving requirements-serving.txt
    sync_venv .venv-app requirements-app.txt ;;
  dev)
    sync_venv .venv requirements-dev.txt
    sync_venv .venv-serving requirements-serving.txt
    sync_venv .venv-tools requirements-tools.txt
    sync_venv .venv-app requirements-app.txt
    install_node_tools
    install_system_tools ;;
  cluster)
    sync_venv .venv requirements.txt requirements-dev.txt
    scripts/build-cluster-tools.sh ;;
  *) echo "usage: $0 [runtime|dev|cluster]" >&2; exit 2 ;;
esac
