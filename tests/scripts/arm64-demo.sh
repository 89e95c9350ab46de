#!/usr/bin/env bash
# Runs the aarch64 `warden` (tests/scripts/build-arm64.sh) under qemu-aarch64-static: the demo for
# DEMO_S seconds (default 20) on free loopback ports, `warden status` (also the arm64 binary)
# answering at the start and at the end with the demo devices active, then a short `warden bench`.
#
#   tests/scripts/arm64-demo.sh [path/to/aarch64/warden]
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin=${1:-$root/target/arm64/aarch64-unknown-linux-gnu/release/warden}
DEMO_S=${DEMO_S:-20}
[ -x "$bin" ] || { echo "arm64-demo.sh: $bin missing: run tests/scripts/build-arm64.sh" >&2; exit 1; }
command -v qemu-aarch64-static >/dev/null || { echo "arm64-demo.sh: qemu-aarch64-static missing (Debian qemu-user-static)" >&2; exit 1; }
file -L "$bin" 2>/dev/null | grep -q 'ARM aarch64' || { echo "arm64-demo.sh: $bin is not an aarch64 binary" >&2; exit 1; }

q() { qemu-aarch64-static "$bin" "$@"; }
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
read -r mqtt api sim < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
cat >"$work/warden.toml" <<TOML
[api]
listen = "127.0.0.1:$api"
[mqtt.embedded]
listen = "127.0.0.1:$mqtt"
[sim]
control = "127.0.0.1:$sim"
TOML

echo "arm64-demo.sh: $(q --version) under $(qemu-aarch64-static --version | head -1)"
start=$(date +%s.%N)
qemu-aarch64-static "$bin" run --demo --config "$work/warden.toml" --data-dir "$work/data" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 1200); do
    if q status --data-dir "$work/data" >"$work/status" 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { tail -20 "$work/log"; echo "arm64-demo.sh: FAIL: the gateway exited" >&2; exit 1; }
    sleep 0.1
done
q status --data-dir "$work/data" >"$work/status" || { tail -20 "$work/log"; echo "arm64-demo.sh: FAIL: no status" >&2; exit 1; }
echo "arm64-demo.sh: status answered $(python3 -c "print(round($(date +%s.%N)-$start,1))") s after start"
end=$(( $(date +%s) + DEMO_S ))
while [ "$(date +%s)" -lt "$end" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$work/log"; echo "arm64-demo.sh: FAIL: the gateway exited during the demo" >&2; exit 1; }
    sleep 1
done
q status --data-dir "$work/data" >"$work/status" || { echo "arm64-demo.sh: FAIL: no status after ${DEMO_S} s" >&2; exit 1; }
q devices list --data-dir "$work/data" >"$work/devices"
grep -q 'active' "$work/devices" || { cat "$work/devices"; echo "arm64-demo.sh: FAIL: no active demo device" >&2; exit 1; }
echo "arm64-demo.sh: after ${DEMO_S} s: $(head -c 300 "$work/status")"
echo "arm64-demo.sh: RSS of the emulated gateway (qemu process): $(awk '/VmRSS/{print $2" "$3}' /proc/$pid/status)"
kill -TERM "$pid"; wait "$pid" || true; pid=""

echo "arm64-demo.sh: warden bench (small)"
q bench --devices 1000 --messages 20000 --publish-messages 2000 >"$work/bench" 2>&1 \
    || { cat "$work/bench"; echo "arm64-demo.sh: FAIL: bench" >&2; exit 1; }
grep -q '"phase":"publish"' "$work/bench" || { cat "$work/bench"; echo "arm64-demo.sh: FAIL: no publish phase" >&2; exit 1; }
tail -6 "$work/bench"
echo "arm64-demo.sh: ok"
