# shellcheck shell=bash
# Sourced by the setup scripts: provides $UV (a pinned uv in a project-local tool venv)
# and $PYTHON (the Python 3.11 interpreter the virtual environments are built from).
# uv, not pip: it resolves and installs the ~300 packages of the Airflow side in a
# fraction of pip's time, which keeps a fresh setup and CI short.
UV_VERSION=0.13.8
SLUICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${SLUICE_PYTHON:-$(command -v python3.11 || command -v python3)}"
UV_TOOL_DIR="$SLUICE_ROOT/.local/uv"
UV="$UV_TOOL_DIR/bin/uv"
if [ ! -x "$UV" ] || [ "$("$UV" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  mkdir -p "$SLUICE_ROOT/.local"
  "$PYTHON" -m venv "$UV_TOOL_DIR"
  "$UV_TOOL_DIR/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
export UV PYTHON SLUICE_ROOT
