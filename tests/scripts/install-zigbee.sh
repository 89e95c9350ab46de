#!/usr/bin/env bash
# Installs the Zigbee test peers idempotently: a venv at tests/peers/zigbee/venv with zigpy, bellows and
# zigpy-znp pinned (their frame classes build every byte the simulators send), and socat for pty pairs.
# Safe to run again: the pip step is skipped when the venv already holds these exact versions.
set -euo pipefail

ZIGPY_VERSION=2.4.0
BELLOWS_VERSION=1.2.1
ZIGPY_ZNP_VERSION=1.1.1
PY=${PYTHON:-python3}
here="$(cd "$(dirname "$0")/../peers/zigbee" && pwd)"
venv="$here/venv"

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

need=()
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v "$PY" >/dev/null 2>&1 || need+=(python3)
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-zigbee.sh: installing ${need[*]}"
    apt_install "${need[@]}"
fi

want="zigpy=$ZIGPY_VERSION bellows=$BELLOWS_VERSION zigpy-znp=$ZIGPY_ZNP_VERSION"
have_versions() {
    "$venv/bin/python" - <<'PY' 2>/dev/null || true
from importlib.metadata import version
print(" ".join(f"{n}={version(n)}" for n in ("zigpy", "bellows", "zigpy-znp")))
PY
}

if [ ! -x "$venv/bin/python" ]; then
    echo "install-zigbee.sh: creating $venv"
    "$PY" -m venv "$venv"
fi
have=$(have_versions)
if [ "$have" != "$want" ]; then
    echo "install-zigbee.sh: installing $want (found '${have:-none}')"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "zigpy==$ZIGPY_VERSION" "bellows==$BELLOWS_VERSION" "zigpy-znp==$ZIGPY_ZNP_VERSION"
fi
"$venv/bin/python" -c 'import zigpy, bellows, zigpy_znp' \
    && echo "install-zigbee.sh: $(have_versions), $(command -v socat)"
