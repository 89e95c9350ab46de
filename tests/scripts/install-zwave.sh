#!/usr/bin/env bash
# Installs the Z-Wave test peer idempotently: zwave-js and @zwave-js/testing (versions pinned in
# tests/peers/zwave/package.json and package-lock.json) into tests/peers/zwave/node_modules, from the
# npm registry. Skipped when node_modules already holds the locked zwave-js version.
set -euo pipefail

here="$(cd "$(dirname "$0")/../peers/zwave" && pwd)"
want=$(node -e 'console.log(require(process.argv[1]).dependencies["zwave-js"])' "$here/package.json")
have=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
    "$here/node_modules/zwave-js/package.json" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    echo "install-zwave.sh: installing zwave-js $want (found '${have:-none}')"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$here" && node -e 'require("zwave-js/Testing"); require("@zwave-js/serial/mock")') \
    && echo "install-zwave.sh: zwave-js $want and its mock controller load"
