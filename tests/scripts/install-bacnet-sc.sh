#!/usr/bin/env bash
# Installs the BACnet/SC test peers idempotently: a venv at tests/peers/bacnet-sc/.venv holding
# bac-py 1.5.7 with its `secure` extra (websockets + cryptography) pinned in
# tests/peers/bacnet-sc/requirements.txt, and openssl (the test checks its certificates with
# `openssl verify -x509_strict`, as bac-py's OpenSSL will). bac-py 1.5.x requires Python >= 3.13,
# which Debian 12 does not ship: a pyenv 3.13 (or PYTHON=/path/to/python3.13) is used.
# Quick when present.
set -euo pipefail

BAC_PY_VERSION=1.5.7
here="$(cd "$(dirname "$0")/../peers/bacnet-sc" && pwd)"
venv="$here/.venv"

if ! command -v openssl >/dev/null 2>&1; then
    echo "install-bacnet-sc.sh: installing openssl"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends openssl
fi

have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("bac-py"))' 2>/dev/null || true)
if [ "$have" != "$BAC_PY_VERSION" ]; then
    PY=${PYTHON:-}
    if [ -z "$PY" ]; then
        # a pyenv shim can exist and still fail: run each candidate
        for c in python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 python3.14 python3; do
            if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 13))' >/dev/null 2>&1; then
                PY=$("$c" -c 'import sys; print(sys.executable)')
                break
            fi
        done
    fi
    if [ -z "$PY" ]; then
        echo "install-bacnet-sc.sh: bac-py $BAC_PY_VERSION needs Python >= 3.13 (pyenv install 3.13, or set PYTHON=)" >&2
        exit 1
    fi
    [ -x "$venv/bin/python" ] || { echo "install-bacnet-sc.sh: creating $venv with $PY"; "$PY" -m venv "$venv"; }
    echo "install-bacnet-sc.sh: installing bac-py[secure]==$BAC_PY_VERSION (found '${have:-none}')"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi
echo "install-bacnet-sc.sh: bac-py $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("bac-py"))') on $("$venv/bin/python" -V), $(command -v openssl)"
