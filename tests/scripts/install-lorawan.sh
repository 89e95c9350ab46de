#!/bin/bash
# Installs the third-party peers the LoRaWAN e2e tests use; safe to run again.
#  - npm lora-packet 0.9.3 (pinned, lockfile) into tests/peers/lorawan
#  - Debian tshark (its LoRaWAN dissector checks the MIC of Warden's downlinks)
set -euo pipefail
here="$(cd "$(dirname "$0")/../peers/lorawan" && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f "$here/node_modules/lora-packet/package.json" ] \
  || [ "$(node -p 'require(process.argv[1]).version' "$here/node_modules/lora-packet/package.json")" != "0.9.3" ]; then
  (cd "$here" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi)
fi
node -e 'require(process.argv[1]); console.log("lora-packet ok")' "$here/node_modules/lora-packet"
if ! command -v tshark >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq && apt-get install -y -qq --no-install-recommends tshark >/dev/null
fi
tshark --version | head -1
