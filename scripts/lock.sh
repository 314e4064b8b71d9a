#!/usr/bin/env bash
# Recompile the pinned requirement files from the *.in files. Run after editing a *.in file.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/uv.sh
compile() { "$UV" pip compile --quiet --python-version 3.11 --no-header "$@"; }
compile requirements.in -o requirements.txt
compile requirements-gpu.in -c requirements.txt --excludes <(echo tensorflow-cpu) -o requirements-gpu.txt
compile requirements-serving.in -o requirements-serving.txt
compile requirements-dev.in -c requirements.txt -o requirements-dev.txt
compile requirements-tools.in -o requirements-tools.txt
compile requirements-app.in -o requirements-app.txt
