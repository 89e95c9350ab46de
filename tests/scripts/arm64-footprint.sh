#!/usr/bin/env bash
# Footprint of the aarch64 `warden` under qemu-aarch64-static: RSS with 0 / 1,000 / 10,000 simulated
# devices (registered, approved, each sending every INTERVAL_MS) and 0, 1 or 5 Wasm policy plugins
# bound to every device; start-up to the first MQTT publish; the stripped binary's size.
# Under qemu the memory figures are meaningful (guest heap and mappings are the process's), the
# times are not (emulation is 5–20× slower). The qemu process's RSS also holds qemu itself and its
# translated code: a trivial aarch64 program's RSS under the same qemu is printed as the baseline.
#
#   tests/scripts/arm64-footprint.sh [aarch64 warden] [least_privilege.wasm]
# Prints one JSON line per run and a table.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin=${1:-$root/target/arm64/aarch64-unknown-linux-gnu/release/warden}
wasm=${2:-$root/target/plugins/least_privilege.wasm}
INTERVAL_MS=${INTERVAL_MS:-10000}
SETTLE_S=${SETTLE_S:-60}
RUNS=${RUNS:-"0:0 0:1 1000:1 10000:1 10000:5 10000:0"}
[ -x "$bin" ] || { echo "arm64-footprint.sh: $bin missing: run tests/scripts/build-arm64.sh" >&2; exit 1; }
[ -f "$wasm" ] || { echo "arm64-footprint.sh: $wasm missing: run plugins/build.sh" >&2; exit 1; }
command -v mosquitto_sub >/dev/null || { echo "arm64-footprint.sh: mosquitto_sub missing (tests/scripts/install.sh)" >&2; exit 1; }

work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

stripped="$work/warden.stripped"
aarch64-linux-gnu-strip -o "$stripped" "$bin"
echo "arm64-footprint.sh: binary $(stat -c %s "$bin") bytes, stripped $(stat -c %s "$stripped") bytes ($(python3 -c "print(round($(stat -c %s "$stripped")/1048576,1))") MiB)"

# qemu's own share: a C program that only waits, under the same qemu.
printf '#include <unistd.h>\nint main(void){pause();return 0;}\n' >"$work/idle.c"
aarch64-linux-gnu-gcc -O2 -o "$work/idle" "$work/idle.c"
qemu-aarch64-static "$work/idle" &
pid=$!
sleep 1
base=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
echo "arm64-footprint.sh: qemu baseline (an idle aarch64 C program): $base KiB"

free3() { python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])'; }

printf '| devices | plugins | RSS after %s s (MiB) | peak (MiB) | minus qemu baseline (MiB) | start → first publish (s, emulated) |\n|---|---|---|---|---|---|\n' "$SETTLE_S" >"$work/table"
for run in $RUNS; do
    n=${run%%:*}; k=${run##*:}
    d="$work/run-$n-$k"; mkdir -p "$d/plugins"
    read -r mqtt api sim < <(free3)
    {
        printf '[api]\nlisten = "127.0.0.1:%s"\n[mqtt.embedded]\nlisten = "127.0.0.1:%s"\n' "$api" "$mqtt"
        printf '[sim]\ncontrol = "127.0.0.1:%s"\n' "$sim"
        printf '[profiles.counter]\npoints = ["n"]\ncommands = ["reset"]\n'
        printf '[plugins]\ndir = "%s"\nrequire_signature = false\nwatch = false\n' "$d/plugins"
        for i in $(seq 1 "$k"); do
            cp "$wasm" "$d/plugins/lp$i.wasm"
            printf '[[plugins.load]]\nname = "lp%s"\nconfig = { default_role = "sensor", roles = { sensor = { points = ["n"], commands = [] } } }\n' "$i"
            printf '[[plugins.bind]]\nplugin = "lp%s"\n' "$i"
        done
        if [ "$n" -gt 0 ]; then
            printf '[[sim.devices]]\naddress = "c"\nkind = "counter"\ncount = %s\ninterval_ms = %s\nprofile = "counter"\nprovision = true\n' "$n" "$INTERVAL_MS"
        fi
    } >"$d/warden.toml"
    t0=$(date +%s.%N)
    qemu-aarch64-static "$bin" run --config "$d/warden.toml" --data-dir "$d/data" >"$d/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 3000); do
        [ -s "$d/data/mqtt-operator.password" ] && break
        kill -0 "$pid" 2>/dev/null || { tail -20 "$d/log"; echo "arm64-footprint.sh: FAIL: the gateway exited" >&2; exit 1; }
        sleep 0.1
    done
    first=null
    if [ "$n" -gt 0 ]; then
        # retained state would arrive at once; telemetry is never retained
        timeout 600 mosquitto_sub -h 127.0.0.1 -p "$mqtt" -V mqttv311 -u operator \
            -P "$(cat "$d/data/mqtt-operator.password")" -t 'warden/devices/+/telemetry/#' -C 1 >/dev/null
        first=$(python3 -c "print(round($(date +%s.%N)-$t0,1))")
    fi
    sleep "$SETTLE_S"
    kill -0 "$pid" 2>/dev/null || { tail -20 "$d/log"; echo "arm64-footprint.sh: FAIL: the gateway exited" >&2; exit 1; }
    rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    mib() { python3 -c "print(round($1/1024,1))"; }
    echo "{\"devices\":$n,\"plugins\":$k,\"rss_kib\":$rss,\"hwm_kib\":$hwm,\"qemu_baseline_kib\":$base,\"first_publish_s\":$first}"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$n" "$k" "$(mib "$rss")" "$(mib "$hwm")" "$(mib $((rss - base)))" "$first" >>"$work/table"
done
cat "$work/table"
