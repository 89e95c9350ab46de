#!/usr/bin/env bash
# Builds the assurance-floor JavaScript plugin into OUT_DIR/assurance_floor_js.wasm with the
# componentize-js pinned in package.json/package-lock.json (tests/scripts/install-wasm-langs.sh runs
# the npm install into ./node_modules).
#   bash plugins/examples/assurance-floor-js/build.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:?usage: build.sh OUT_DIR}
wit=${WIT_DIR:-$root/plugins/wit}
if [ ! -x "$here/node_modules/.bin/componentize-js" ]; then
    echo "build.sh: $here/node_modules missing; run tests/scripts/install-wasm-langs.sh" >&2
    exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Every optional engine feature is disabled (stdio, random, clocks, http, fetch-event), so the
# component imports nothing but the world's own interfaces: no WASI at all. The catch: an uncaught
# exception traps instead of printing, which the host treats like any other trap.
(cd "$here" && node_modules/.bin/componentize-js assurance_floor.js --wit "$wit" --world-name plugin \
    --disable stdio random clocks http fetch-event -o "$out/assurance_floor_js.wasm")
echo "build.sh: $out/assurance_floor_js.wasm ($(stat -c %s "$out/assurance_floor_js.wasm") bytes)"
