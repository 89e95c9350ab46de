#!/usr/bin/env bash
# Installs what Warden's tests need on Debian 12, idempotently: the real third-party peers
# (mosquitto broker and clients) and the tools the tests call. Safe to run again.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)

if [ ${#need[@]} -gt 0 ]; then
    echo "install.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The Debian package may start a system broker on 1883 where an init system exists; the tests start
# their own brokers on free ports and the gateway's embedded broker defaults to 1883, so stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    systemctl stop mosquitto || true
fi
# Protocol peers each have their own installer (install-modbus.sh, install-lorawan.sh, …), and the
# dashboard's browser test has install-dashboard.sh (chromium, chromium-driver, selenium).
for extra in "$(dirname "$0")"/install-*.sh; do
    [ -e "$extra" ] || continue
    echo "install.sh: running $(basename "$extra")"
    bash "$extra"
done
echo "install.sh: mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}' || /usr/sbin/mosquitto -h | head -1 | awk '{print $3}'), clients at $(command -v mosquitto_sub)"
