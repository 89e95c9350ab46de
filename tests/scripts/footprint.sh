#!/usr/bin/env bash
# Native footprint of `warden run`, with where the resident memory sits: the same runs as
# arm64-footprint.sh (counter devices registered and approved, one message each per INTERVAL_MS;
# least-privilege plugins bound to every device), measured on this machine's own binary, so no qemu
# share muddles the figures. After SETTLE_S it reads /proc/PID/status and /proc/PID/smaps and splits
# the resident set by what holds it:
#   binary     the warden executable's pages (code and read-only data actually touched)
#   libs       other file-backed mappings (libc, the SQLite WAL's -shm, ...)
#   heap       [heap]: glibc's main arena (the process's first thread and small allocations)
#   arenas     64 MiB-aligned anonymous regions: glibc's per-thread malloc arenas
#   wasm-mem   anonymous reservations >= 1 GiB: wasmtime linear memories (and their guard regions)
#   jit        anonymous executable mappings: compiled plugin code
#   stacks     thread stacks (an anonymous region directly above a one-page guard), and [stack]
#   other-anon the rest: large malloc blocks served by mmap, wasmtime's tables and metadata, ...
#
#   tests/scripts/footprint.sh [warden] [least_privilege.wasm]
#   RUNS="0:0 0:1 10000:0 10000:1"  devices:plugins per run
#   WARM=1        start each run twice on the same data dir and measure the second start (plugins
#                 load from the AOT cache instead of being compiled, as on every start but the first)
#   ENV="MALLOC_ARENA_MAX=2 ..."    extra environment for the gateway
#   KEEP_SMAPS=dir                   copy each run's smaps there
# Prints one JSON line per run and a table.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin=${1:-$root/target/release/warden}
wasm=${2:-$root/target/plugins/least_privilege.wasm}
INTERVAL_MS=${INTERVAL_MS:-10000}
SETTLE_S=${SETTLE_S:-40}
RUNS=${RUNS:-"0:0 0:1 10000:0 10000:1"}
WARM=${WARM:-0}
ENV=${ENV:-}
[ -x "$bin" ] || { echo "footprint.sh: $bin missing: cargo build --release -p warden --bin warden" >&2; exit 1; }
[ -f "$wasm" ] || { echo "footprint.sh: $wasm missing: run plugins/build.sh" >&2; exit 1; }
command -v mosquitto_sub >/dev/null || { echo "footprint.sh: mosquitto_sub missing (tests/scripts/install.sh)" >&2; exit 1; }

work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

free3() { python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])'; }

cat >"$work/split.py" <<'EOF'
import json, re, sys
pid, exe = sys.argv[1], sys.argv[2]
maps = []
cur = None
for line in open(f"/proc/{pid}/smaps"):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        cur = {"lo": int(m[1], 16), "hi": int(m[2], 16), "perm": m[3], "name": m[4].strip()}
        maps.append(cur)
        continue
    k, _, v = line.partition(":")
    if v.strip().endswith("kB"):
        cur[k] = int(v.split()[0])
out = dict.fromkeys(["binary", "libs", "heap", "arenas", "wasm-mem", "jit", "stacks", "other-anon"], 0)
arenas = 0
for i, m in enumerate(maps):
    rss = m.get("Rss", 0)
    n = m["name"]
    prev = maps[i - 1] if i > 0 and maps[i - 1]["hi"] == m["lo"] else None
    nxt = maps[i + 1] if i + 1 < len(maps) and maps[i + 1]["lo"] == m["hi"] else None
    if n == exe:
        out["binary"] += rss
    elif n == "[heap]":
        out["heap"] += rss
    elif n == "[stack]":
        out["stacks"] += rss
    elif n.startswith("/") or n.startswith("memfd:"):
        out["libs"] += rss
    elif n and not n.startswith("[anon"):
        out["other-anon"] += rss  # [vdso], [vvar], ...
    elif "x" in m["perm"]:
        out["jit"] += rss
    elif m["perm"].startswith("rw") and m["lo"] % (64 << 20) == 0:
        out["arenas"] += rss  # glibc aligns each arena's heap to its 64 MiB maximum
        arenas += 1
    elif m["perm"].startswith("rw") and nxt and nxt["perm"].startswith("---") and nxt["hi"] - nxt["lo"] >= 1 << 30:
        out["wasm-mem"] += rss  # the accessible head of a linear-memory reservation
    elif m["perm"].startswith("rw") and prev and prev["perm"].startswith("---") and prev["hi"] - prev["lo"] == 4096:
        out["stacks"] += rss  # a thread stack above its guard page
    else:
        out["other-anon"] += rss
status = open(f"/proc/{pid}/status").read()
f = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M)[1])
out.update({"rss_kib": f("VmRSS"), "hwm_kib": f("VmHWM"), "threads": f("Threads"),
            "rss_anon_kib": f("RssAnon"), "rss_file_kib": f("RssFile"), "rss_shmem_kib": f("RssShmem"),
            "arena_count": arenas})
print(json.dumps(out))
EOF

cols="binary libs heap arenas wasm-mem jit stacks other-anon"
printf '| devices | plugins | env | RSS (MiB) | peak | threads | %s |\n' "$(echo $cols | sed 's/ / | /g')" >"$work/table"
printf '|---|---|---|---|---|---|%s\n' "$(for _ in $cols; do printf -- '---|'; done)" >>"$work/table"
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
    starts=1; [ "$WARM" = 1 ] && starts=2
    for s in $(seq 1 "$starts"); do
        rm -f "$d/data/mqtt-operator.password"
        # shellcheck disable=SC2086
        env $ENV "$bin" run --config "$d/warden.toml" --data-dir "$d/data" >"$d/log" 2>&1 &
        pid=$!
        for _ in $(seq 1 3000); do
            [ -s "$d/data/mqtt-operator.password" ] && break
            kill -0 "$pid" 2>/dev/null || { tail -20 "$d/log"; echo "footprint.sh: FAIL: the gateway exited" >&2; exit 1; }
            sleep 0.1
        done
        if [ "$n" -gt 0 ]; then
            timeout 600 mosquitto_sub -h 127.0.0.1 -p "$mqtt" -V mqttv311 -u operator \
                -P "$(cat "$d/data/mqtt-operator.password")" -t 'warden/devices/+/telemetry/#' -C 1 >/dev/null
        fi
        if [ "$s" -lt "$starts" ]; then
            sleep 5
            kill -TERM "$pid"; wait "$pid" || true; pid=""
        fi
    done
    sleep "$SETTLE_S"
    kill -0 "$pid" 2>/dev/null || { tail -20 "$d/log"; echo "footprint.sh: FAIL: the gateway exited" >&2; exit 1; }
    split=$(python3 "$work/split.py" "$pid" "$bin")
    [ -n "${KEEP_SMAPS:-}" ] && mkdir -p "$KEEP_SMAPS" && cp "/proc/$pid/smaps" "$KEEP_SMAPS/smaps-$n-$k"
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    echo "{\"devices\":$n,\"plugins\":$k,\"warm\":$WARM,\"env\":\"$ENV\",\"split\":$split}"
    python3 - "$split" "$n" "$k" "${ENV:--}" "$cols" >>"$work/table" <<'EOF'
import json, sys
s = json.loads(sys.argv[1]); mib = lambda v: f"{v/1024:.1f}"
print("| " + " | ".join([sys.argv[2], sys.argv[3], sys.argv[4], mib(s["rss_kib"]), mib(s["hwm_kib"]), str(s["threads"])]
                        + [mib(s[c]) for c in sys.argv[5].split()]) + " |")
EOF
done
cat "$work/table"
