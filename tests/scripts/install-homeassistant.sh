#!/usr/bin/env bash
# Installs what the Home Assistant discovery test needs, idempotently: the Python `jsonschema`
# and `jinja2` packages (pinned): tests/peers/homeassistant/validate.py checks Warden's discovery
# configs against the schemas kept there and renders their templates as Home Assistant does. Safe
# to run again.
set -euo pipefail
# shellcheck source=tests/scripts/install-common.inc
. "$(dirname "$0")/install-common.inc"

JSONSCHEMA_VERSION=4.26.0
# renders the configs' templates as Home Assistant does (Jinja2, sandboxed)
JINJA2_VERSION=3.1.6
PY=${PYTHON:-python3}

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "install-homeassistant.sh: installing python3"
    apt_install python3 python3-pip
fi

have=$("$PY" -c 'import importlib.metadata as m; print(m.version("jsonschema"), m.version("jinja2"))' 2>/dev/null || true)
if [ "$have" != "$JSONSCHEMA_VERSION $JINJA2_VERSION" ]; then
    echo "install-homeassistant.sh: installing jsonschema==$JSONSCHEMA_VERSION jinja2==$JINJA2_VERSION (found '${have:-none}')"
    pip_install "$PY" "jsonschema==$JSONSCHEMA_VERSION" "jinja2==$JINJA2_VERSION"
fi
echo "install-homeassistant.sh: jsonschema and jinja2 $("$PY" -c 'import importlib.metadata as m; print(m.version("jsonschema"), m.version("jinja2"))')"
