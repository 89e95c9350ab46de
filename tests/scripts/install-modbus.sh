#!/usr/bin/env bash
# Installs the Modbus test peers idempotently: pymodbus (pinned) for the servers the e2e tests start,
# socat for RTU pty pairs, and mbpoll as an independent Modbus client. Safe to run again.
set -euo pipefail
# shellcheck source=tests/scripts/install-common.inc
. "$(dirname "$0")/install-common.inc"

PYMODBUS_VERSION=3.16.1
PY=${PYTHON:-python3}

need=()
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll)
command -v "$PY" >/dev/null 2>&1 || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-modbus.sh: installing ${need[*]}"
    apt_install "${need[@]}"
fi

have=$("$PY" -c 'import pymodbus, serial; print(pymodbus.__version__)' 2>/dev/null || true)
if [ "$have" != "$PYMODBUS_VERSION" ]; then
    echo "install-modbus.sh: installing pymodbus[serial]==$PYMODBUS_VERSION (found '${have:-none}')"
    pip_install "$PY" "pymodbus[serial]==$PYMODBUS_VERSION"
fi
echo "install-modbus.sh: pymodbus $("$PY" -c 'import pymodbus; print(pymodbus.__version__)'), $(command -v socat), $(command -v mbpoll)"
