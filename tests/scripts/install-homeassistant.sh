#!/usr/bin/env bash
# Installs what the Home Assistant discovery test needs, idempotently: the Python `jsonschema`
# and `jinja2` packages (pinned): tests/peers/homeassistant/validate.py checks Warden's discovery
# configs against the schemas kept there and renders their templates as Home Assistant does. Safe
# to run again.
set -euo pipefail

JSONSCHEMA_VERSION=4.26.0
# renders the configs' templates as Home Assistant does (Jinja2, sandboxed)
JINJA2_VERSION=3.1.6
PY=${PYTHON:-python3}

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "install-homeassistant.sh: installing python3"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends python3 python3-pip
fi

have=$("$PY" -c 'import importlib.metadata as m; print(m.version("jsonschema"), m.version("jinja2"))' 2>/dev/null || true)
if [ "$have" != "$JSONSCHEMA_VERSION $JINJA2_VERSION" ]; then
    echo "install-homeassistant.sh: installing jsonschema==$JSONSCHEMA_VERSION jinja2==$JINJA2_VERSION (found '${have:-none}')"
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq --no-install-recommends python3-pip
    fi
    # Debian marks its Python as externally managed; the pin keeps this reproducible.
    "$PY" -m pip install --quiet --disable-pip-version-check "jsonschema==$JSONSCHEMA_VERSION" \
        "jinja2==$JINJA2_VERSION" \
        || "$PY" -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "jsonschema==$JSONSCHEMA_VERSION" "jinja2==$JINJA2_VERSION"
fi
echo "install-homeassistant.sh: jsonschema and jinja2 $("$PY" -c 'import importlib.metadata as m; print(m.version("jsonschema"), m.version("jinja2"))')"
