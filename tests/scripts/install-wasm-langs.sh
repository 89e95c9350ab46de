#!/usr/bin/env bash
# Installs the toolchains that build Warden's Python and JavaScript policy plugins, idempotently and
# into project-local places only (nothing global besides Debian packages when they are missing):
#  - PyPI componentize-py (pinned, with a pinned pip) in a venv under target/wasm-langs/venv
#  - npm @bytecodealliance/componentize-js + jco (pinned, lockfile) in
#    plugins/examples/assurance-floor-js/node_modules
# Safe to run again: each part is skipped when the pinned version is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

PIP_VERSION=26.0.1
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
PREVIEW2_SHIM_VERSION=0.17.9

venv=${WASM_LANGS_VENV:-$root/target/wasm-langs/venv}
js_dir=$root/plugins/examples/assurance-floor-js
PY=${PYTHON:-python3}

apt_install() {
    echo "install-wasm-langs.sh: installing $*"
    export DEBIAN_FRONTEND=noninteractive
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---- Python: componentize-py in a venv
need=()
command -v "$PY" >/dev/null 2>&1 || need+=(python3)
# Debian's python3 ships venv without ensurepip; python3-venv adds it.
if [ ${#need[@]} -gt 0 ] || ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need+=(python3-venv)
fi
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

have_py=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("componentize-py"), m.version("pip"))' 2>/dev/null || true)
if [ "$have_py" != "$COMPONENTIZE_PY_VERSION $PIP_VERSION" ]; then
    echo "install-wasm-langs.sh: componentize-py==$COMPONENTIZE_PY_VERSION, pip==$PIP_VERSION into $venv (found '${have_py:-none}')"
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pip==$PIP_VERSION"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
"$venv/bin/componentize-py" --version >/dev/null

# ---- JavaScript: componentize-js and jco from the committed lockfile
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
pkg_version() { node -p 'require(process.argv[1]).version' "$js_dir/node_modules/$1/package.json" 2>/dev/null || true; }
have_js="$(pkg_version @bytecodealliance/componentize-js) $(pkg_version @bytecodealliance/jco) $(pkg_version @bytecodealliance/preview2-shim)"
if [ "$have_js" != "$COMPONENTIZE_JS_VERSION $JCO_VERSION $PREVIEW2_SHIM_VERSION" ]; then
    echo "install-wasm-langs.sh: npm install in $js_dir (found '$have_js')"
    # `npm install`, not `npm ci`: npm 11 writes a lockfile without other platforms' optional native
    # packages (rolldown, jco-node-fs, ...) and then `npm ci` calls it out of sync. `npm install`
    # still follows the committed lockfile; the exact pins in package.json back it up. `--no-save`
    # leaves the committed lockfile as it is (a test run must not change the work tree).
    (cd "$js_dir" && npm install --no-save --no-audit --no-fund --loglevel=error)
fi
have_js="$(pkg_version @bytecodealliance/componentize-js) $(pkg_version @bytecodealliance/jco) $(pkg_version @bytecodealliance/preview2-shim)"
if [ "$have_js" != "$COMPONENTIZE_JS_VERSION $JCO_VERSION $PREVIEW2_SHIM_VERSION" ]; then
    echo "install-wasm-langs.sh: npm gave '$have_js', want $COMPONENTIZE_JS_VERSION $JCO_VERSION $PREVIEW2_SHIM_VERSION" >&2
    exit 1
fi
echo "install-wasm-langs.sh: $("$venv/bin/componentize-py" --version), componentize-js $COMPONENTIZE_JS_VERSION, jco $JCO_VERSION"
