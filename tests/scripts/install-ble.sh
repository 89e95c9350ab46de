#!/usr/bin/env bash
# Installs the BLE test peers idempotently:
#  - Debian: dbus (a private dbus-daemon stands in for the system bus), python3-dbusmock +
#    python3-dbus (a mock org.bluez that plays bluetoothd: this kernel has no Bluetooth), and
#    libdbus-1-dev + pkg-config, which btleplug (libdbus-sys) needs to build.
#  - PyPI, in a venv at tests/peers/ble/venv: bthome-ble pinned (its dependencies pinned by
#    tests/peers/ble/constraints.txt) — Home Assistant's BTHome v2 parser and its AES-CCM encoder,
#    the oracle the e2e test checks Warden's decoding against.
# Safe to run again: each step is skipped when what it installs is already there.
set -euo pipefail

BTHOME_BLE_VERSION=3.25.0
PY=${PYTHON:-python3}
here="$(cd "$(dirname "$0")/../peers/ble" && pwd)"
venv="$here/venv"

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

need=()
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists dbus-1 2>/dev/null || need+=(libdbus-1-dev)
/usr/bin/python3 -c 'import dbus' >/dev/null 2>&1 || need+=(python3-dbus)
/usr/bin/python3 -c 'import dbusmock' >/dev/null 2>&1 || need+=(python3-dbusmock)
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-ble.sh: installing ${need[*]}"
    apt_install "${need[@]}"
fi

want="bthome-ble=$BTHOME_BLE_VERSION"
have_versions() {
    "$venv/bin/python" -c 'from importlib.metadata import version; print("bthome-ble=" + version("bthome-ble"))' \
        2>/dev/null || true
}
if [ ! -x "$venv/bin/python" ]; then
    echo "install-ble.sh: creating $venv"
    "$PY" -m venv "$venv"
fi
have=$(have_versions)
if [ "$have" != "$want" ]; then
    echo "install-ble.sh: installing $want (found '${have:-none}')"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$here/constraints.txt" \
        "bthome-ble==$BTHOME_BLE_VERSION"
fi
"$venv/bin/python" -c 'import bthome_ble.bthome_v2_encryption, bthome_ble.parser'
/usr/bin/python3 -c 'import dbus, dbusmock' \
    && echo "install-ble.sh: $(have_versions), dbusmock $(/usr/bin/python3 -c 'import dbusmock; print(dbusmock.__version__)'), libdbus $(pkg-config --modversion dbus-1)"
