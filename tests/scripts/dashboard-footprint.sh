#!/usr/bin/env bash
# Resident memory of `warden run --demo` with the dashboard on or off: after SETTLE_S idle, then
# (when the binary serves the dashboard) with an operator logged in, every page file fetched, the
# device page's kept values read, and the live-decision and live-point streams held open for
# another SETTLE_S. Compare a default build with one built `--no-default-features` (no dashboard),
# or pass API_EXTRA='dashboard = false'.
#
#   tests/scripts/dashboard-footprint.sh [warden-binary]
#   SETTLE_S=30  API_EXTRA='dashboard = false'
# Prints one JSON line: binary bytes, VmRSS idle, after the login, and VmRSS and VmHWM while
# viewed (KiB). The environment passes on to the gateway (e.g. MALLOC_MMAP_THRESHOLD_=131072).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin=${1:-$root/target/release/warden}
SETTLE_S=${SETTLE_S:-30}
API_EXTRA=${API_EXTRA:-}
[ -x "$bin" ] || { echo "dashboard-footprint.sh: $bin missing: cargo build --release -p warden" >&2; exit 1; }

work=$(mktemp -d)
pid=""
streams=()
cleanup() {
    for s in "${streams[@]}"; do kill "$s" 2>/dev/null || true; done
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); mqtt=$(free_port); sim=$(free_port)
printf '[api]\nlisten = "127.0.0.1:%s"\n%s\n[mqtt.embedded]\nlisten = "127.0.0.1:%s"\n[sim]\ncontrol = "127.0.0.1:%s"\n' \
    "$api" "$API_EXTRA" "$mqtt" "$sim" >"$work/ports.toml"
"$bin" --data-dir "$work/data" run --config "$work/ports.toml" --demo 2>"$work/log" >/dev/null &
pid=$!
base="http://127.0.0.1:$api"
for _ in $(seq 1 300); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.1
done
rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }

sleep "$SETTLE_S"
idle=$(rss VmRSS)

ui=false
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/ui/login")" = 200 ]; then
    ui=true
    token=$(cat "$work/data/api.token")
    curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d '{"name":"footprint","role":"viewer","password":"footprint password 1"}' \
        "$base/api/operators" >/dev/null
    curl -fsS -c "$work/jar" -H 'Content-Type: application/json' \
        -d '{"name":"footprint","password":"footprint password 1"}' "$base/ui/login" >/dev/null
    # the operator's password was hashed once and checked once (argon2, 19 MiB each)
    login=$(rss VmRSS)
    for f in / devices pending quarantine live audit plugins adapters devices/sim:meter-1; do
        curl -fsS -b "$work/jar" "$base/ui/$f" >/dev/null
    done
    for f in style.css login.js lib.js app.js overview.js devices.js device.js pending.js \
        quarantine.js live.js audit.js plugins.js adapters.js; do
        curl -fsS -b "$work/jar" "$base/ui/assets/$f" >/dev/null
    done
    curl -fsS -b "$work/jar" "$base/api/devices/sim:meter-1/points" >/dev/null
    curl -sN -b "$work/jar" "$base/api/live" >/dev/null &
    streams+=($!)
    curl -sN -b "$work/jar" "$base/api/devices/sim:meter-1/points/live" >/dev/null &
    streams+=($!)
    sleep "$SETTLE_S"
fi
printf '{"binary":"%s","binary_bytes":%s,"api_extra":"%s","dashboard_served":%s,"rss_idle_kib":%s,"rss_after_login_kib":%s,"rss_viewed_kib":%s,"hwm_kib":%s}\n' \
    "$bin" "$(stat -c %s "$bin")" "$API_EXTRA" "$ui" "$idle" "${login:-$idle}" "$(rss VmRSS)" "$(rss VmHWM)"
