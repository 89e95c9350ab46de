#!/usr/bin/env bash
# Installs the BACnet/IP test peers idempotently: a venv at tests/peers/bacnet/.venv holding
# bacpypes3 pinned at 0.0.108 (0.0.110 drops datagrams from other 127.x peers on its own port, so
# loopback devices never answer), and tshark as the independent dissector. Quick when present.
set -euo pipefail

BACPYPES3_VERSION=0.0.108
PY=${PYTHON:-python3}
here="$(cd "$(dirname "$0")/../peers/bacnet" && pwd)"
venv="$here/.venv"

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
    $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v "$PY" >/dev/null 2>&1 || need+=(python3)
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-bacnet.sh: installing ${need[*]}"
    apt_install "${need[@]}"
fi

have=$("$venv/bin/python" -c 'import bacpypes3; print(bacpypes3.__version__)' 2>/dev/null || true)
if [ "$have" != "$BACPYPES3_VERSION" ]; then
    [ -x "$venv/bin/python" ] || { echo "install-bacnet.sh: creating $venv"; "$PY" -m venv "$venv"; }
    echo "install-bacnet.sh: installing bacpypes3==$BACPYPES3_VERSION (found '${have:-none}')"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "bacpypes3==$BACPYPES3_VERSION"
fi
echo "install-bacnet.sh: bacpypes3 $("$venv/bin/python" -c 'import bacpypes3; print(bacpypes3.__version__)'), $(command -v tshark)"
