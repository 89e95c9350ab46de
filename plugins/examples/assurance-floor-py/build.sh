#!/usr/bin/env bash
# Builds the assurance-floor Python plugin into OUT_DIR/assurance_floor_py.wasm with the project-local
# componentize-py (tests/scripts/install-wasm-langs.sh installs it; set WASM_LANGS_VENV to use another venv).
#   bash plugins/examples/assurance-floor-py/build.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:?usage: build.sh OUT_DIR}
venv=${WASM_LANGS_VENV:-$root/target/wasm-langs/venv}
wit=${WIT_DIR:-$root/plugins/wit}
if [ ! -x "$venv/bin/componentize-py" ]; then
    echo "build.sh: $venv/bin/componentize-py missing; run tests/scripts/install-wasm-langs.sh" >&2
    exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Built from a scratch copy of the source so that nothing (e.g. __pycache__) lands in the source tree.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/assurance_floor.py" "$work/"
(cd "$work" && "$venv/bin/componentize-py" -d "$wit" -w plugin componentize assurance_floor \
    -o "$out/assurance_floor_py.wasm")
echo "build.sh: $out/assurance_floor_py.wasm ($(stat -c %s "$out/assurance_floor_py.wasm") bytes)"
