#!/usr/bin/env bash
# Cross-compiles the `warden` binary for a Raspberry Pi-class board (aarch64-unknown-linux-gnu) with
# Debian's rustc-web, its arm64 standard library and the aarch64 GNU linker, installing them when
# missing. The result is target/arm64/aarch64-unknown-linux-gnu/<profile>/warden; it runs here under
# qemu-aarch64-static (binfmt not needed: tests/scripts/arm64-demo.sh calls qemu directly).
#
#   tests/scripts/build-arm64.sh            # release build (what a package ships)
#   PROFILE=dev tests/scripts/build-arm64.sh  # debug build, quicker, for a compile check
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
PROFILE=${PROFILE:-release}
TARGET=aarch64-unknown-linux-gnu

need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
[ -x /usr/bin/rustc ] && /usr/bin/rustc --print sysroot >/dev/null 2>&1 || need+=(rustc-web)
[ -d /usr/lib/rustlib/$TARGET/lib ] || need+=(libstd-rust-web-dev:arm64)
# The BLE adapter links libdbus (btleplug → BlueZ over D-Bus): the arm64 library and its .pc file.
[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/dbus-1.pc ] || need+=(libdbus-1-dev:arm64)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
[ -e /lib/ld-linux-aarch64.so.1 ] || need+=(libc6:arm64)
if [ ${#need[@]} -gt 0 ]; then
    echo "build-arm64.sh: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Debian's rustc (rustc-web) compiles both the build scripts (host) and the target code, so the host
# and target standard libraries come from the same release. cargo stays the rustup one.
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# pkg-config answers for arm64 from Debian's multiarch directory (the sysroot is / on Debian).
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_PATH_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
export CARGO_TARGET_DIR="${ARM64_TARGET_DIR:-$root/target/arm64}"

start=$(date +%s)
cd "$root"
cargo build --locked --profile "$PROFILE" --target "$TARGET" -p warden --bin warden
dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
bin="$CARGO_TARGET_DIR/$TARGET/$dir/warden"
echo "build-arm64.sh: $bin ($(stat -c %s "$bin") bytes) in $(( $(date +%s) - start )) s"
file "$bin" 2>/dev/null || true
