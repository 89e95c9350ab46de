#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, idempotently: Debian's chromium and its
# chromedriver, and selenium (pinned) in the Python the other peers use. The test points selenium
# at /usr/bin/chromedriver itself, so selenium-manager never downloads a browser or a driver.
set -euo pipefail
# shellcheck source=tests/scripts/install-common.inc
. "$(dirname "$0")/install-common.inc"

SELENIUM_VERSION=4.51.0
PY=${PYTHON:-python3}

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v "$PY" >/dev/null 2>&1 || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-dashboard.sh: installing ${need[*]}"
    apt_install "${need[@]}"
fi

have=$("$PY" -c 'import selenium; print(selenium.__version__)' 2>/dev/null || true)
if [ "$have" != "$SELENIUM_VERSION" ]; then
    echo "install-dashboard.sh: installing selenium==$SELENIUM_VERSION (found '${have:-none}')"
    pip_install "$PY" "selenium==$SELENIUM_VERSION"
fi
echo "install-dashboard.sh: selenium $("$PY" -c 'import selenium; print(selenium.__version__)'), $(chromium --version 2>/dev/null || echo 'chromium ?'), $(/usr/bin/chromedriver --version 2>/dev/null | head -1)"
