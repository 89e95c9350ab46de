#!/usr/bin/env bash
# Installs Warden's .deb on this machine and checks it: the `warden` user in `dialout`, the conffile,
# the unit (systemd-analyze verify, and the security exposure score), the gateway started as
# `warden` with the unit's environment and state directory (systemd is not PID 1 in the test
# machines, so the unit's user, groups, umask and environment are applied with setpriv), the master
# key created 0600, `warden status` answering; an upgrade keeping data and a config edit; `remove`
# keeping data and config, `purge` removing them. Leaves the machine without the package.
#
#   tests/scripts/deb-test.sh [path/to/warden_*.deb]     (default: PROFILE=dev build-deb.sh)
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
deb=${1:-$(PROFILE=${PROFILE:-dev} bash "$root/tests/scripts/build-deb.sh" | tail -1)}
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
unit=/lib/systemd/system/warden.service
state=/var/lib/warden
step() { echo "deb-test.sh: $*"; }
fail() {
    echo "deb-test.sh: FAIL: $*" >&2
    [ -f "${log:-}" ] && tail -20 "$log" >&2
    exit 1
}
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    dpkg -P warden >/dev/null 2>&1 || true
}
trap cleanup EXIT

command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (Debian package systemd)"
if dpkg -s warden >/dev/null 2>&1; then
    step "purging a warden package left installed"
    dpkg -P warden >/dev/null
fi

step "installing $(basename "$deb") ($(stat -c %s "$deb") bytes)"
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/warden ] || fail "/usr/bin/warden missing"
getent passwd warden >/dev/null || fail "no warden user"
id -nG warden | tr ' ' '\n' | grep -qx dialout || fail "warden is not in dialout: $(id -nG warden)"
[ "$(getent passwd warden | cut -d: -f7)" = /usr/sbin/nologin ] || fail "warden has a login shell"
[ "$(stat -c '%U:%G %a' /etc/warden/warden.toml)" = "root:warden 640" ] \
    || fail "/etc/warden/warden.toml is $(stat -c '%U:%G %a' /etc/warden/warden.toml)"
dpkg-query -W -f='${Conffiles}\n' warden | grep -q ' */etc/warden/warden.toml ' \
    || fail "/etc/warden/warden.toml is not a conffile"
[ "$(stat -c '%U %a' $state)" = "warden 700" ] || fail "$state is $(stat -c '%U %a' $state)"

step "systemd-analyze verify $unit"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "verify: $out"
[ -z "$out" ] || fail "verify printed: $out"
security=$(systemd-analyze security --offline=true "$unit" 2>&1) || true
score=$(printf '%s\n' "$security" | grep -o 'Overall exposure level for warden.service: .*' || true)
[ -n "$score" ] || fail "no exposure score: $security"
step "$score"

# The unit's environment, as systemd would give it.
mapfile -t unit_env < <(sed -n 's/^Environment=//p' "$unit")
data=$(printf '%s\n' "${unit_env[@]}" | sed -n 's/^WARDEN_DATA_DIR=//p')
[ "$data" = "$state/data" ] || fail "unexpected WARDEN_DATA_DIR=$data"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
# User=, Group=, SupplementaryGroups=dialout, NoNewPrivileges=, an empty bounding set, UMask=0077,
# WorkingDirectory=/ and only the unit's Environment=: each step execs the next, so the gateway keeps
# the background job's pid.
warden_cmd=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${unit_env[@]}"
    setpriv --reuid=warden --regid=warden --groups="$(getent group dialout | cut -d: -f3)"
    --no-new-privs --bounding-set=-all --inh-caps=-all --
    /bin/sh -c 'umask 0077 && cd / && exec "$@"' sh)
as_warden() { "${warden_cmd[@]}" "$@"; }

# Free loopback ports in the conffile (other test runs may hold 1883/7878): an operator's edit, which
# the upgrade below must keep.
read -r mqtt api < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
sed -i "s/127.0.0.1:1883/127.0.0.1:$mqtt/; s/127.0.0.1:7878/127.0.0.1:$api/" /etc/warden/warden.toml
grep -q "127.0.0.1:$api" /etc/warden/warden.toml || fail "could not edit the conffile"

step "ExecStartPre: check-config as warden"
as_warden /usr/bin/warden check-config /etc/warden/warden.toml >/dev/null || fail "check-config"

start_gateway() {
    log=$(mktemp)
    # shellcheck disable=SC2086 # ExecStart is a command line, split as systemd would (no quoting in it)
    (exec "${warden_cmd[@]}" $exec_start) >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        if as_warden /usr/bin/warden status >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || fail "the gateway exited"
        sleep 0.1
    done
    fail "warden status did not answer within 60 s"
}
stop_gateway() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}

step "starting the gateway as warden: $exec_start"
start_gateway
[ "$(stat -c %U "/proc/$pid")" = warden ] || fail "the gateway runs as $(stat -c %U "/proc/$pid")"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "no_new_privs not set"
grep -q '^CapBnd:[[:space:]]*0000000000000000' "/proc/$pid/status" || fail "capabilities left in the bounding set"
key="$state/data.master.key"
[ "$(stat -c '%U %a' "$key")" = "warden 600" ] || fail "master key is $(stat -c '%U %a' "$key")"
[ "$(stat -c '%U %a' "$state/data")" = "warden 700" ] || fail "data dir is $(stat -c '%U %a' "$state/data")"
status=$(as_warden /usr/bin/warden status)
step "warden status: $(printf '%s' "$status" | head -c 200)"
stop_gateway
key_sum=$(sha256sum "$key")

step "upgrade (the same package again): data and the config edit kept"
dpkg -i "$deb" >/dev/null
[ "$(sha256sum "$key")" = "$key_sum" ] || fail "the master key changed on upgrade"
grep -q "127.0.0.1:$api" /etc/warden/warden.toml || fail "the config edit was lost on upgrade"
start_gateway
stop_gateway

step "remove: binary and unit gone, data and config kept"
dpkg -r warden >/dev/null
[ ! -e /usr/bin/warden ] || fail "/usr/bin/warden left after remove"
[ ! -e "$unit" ] || fail "$unit left after remove"
[ -f "$key" ] || fail "remove deleted the master key"
[ -f /etc/warden/warden.toml ] || fail "remove deleted the conffile"

step "purge: data, config and user gone"
dpkg -P warden >/dev/null
[ ! -e "$state" ] || fail "$state left after purge"
[ ! -e /etc/warden ] || fail "/etc/warden left after purge"
! getent passwd warden >/dev/null || fail "warden user left after purge"
! dpkg -s warden >/dev/null 2>&1 || fail "package still known to dpkg"
step "ok"
