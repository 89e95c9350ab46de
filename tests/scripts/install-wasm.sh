#!/usr/bin/env bash
# Installs the Debian toolchain that builds Warden's Rust policy plugins for wasm32-wasip2,
# idempotently: rustc-web/cargo-web (a newer rustc than Debian's default), rust-web-src (the
# standard library's source, for -Zbuild-std: there is no prebuilt wasm32 std here), rust-web-llvm
# (wasm-component-ld, which turns the linked module into a component; only a Recommends of
# rustc-web, so named here), lld-19 (wasm-ld), wasi-libc and clang-19 (the C plugins). Safe to run again: apt is skipped when everything is present.
# plugins/build.sh uses these through their full paths (/usr/bin/cargo, /usr/bin/rustc).
set -euo pipefail

pkgs=(rustc-web cargo-web rust-web-src rust-web-llvm lld-19 wasi-libc clang-19)
need=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done

if [ ${#need[@]} -gt 0 ]; then
    echo "install-wasm.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# What build.sh relies on, checked so a broken install fails here and not mid-build.
for f in /usr/bin/rustc /usr/bin/cargo /usr/bin/wasm-ld-19 /usr/bin/clang-19 \
    /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld; do
    [ -x "$f" ] || { echo "install-wasm.sh: $f missing after install" >&2; exit 1; }
done
src=$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust/library
[ -d "$src" ] || { echo "install-wasm.sh: no standard library source at $src (rust-web-src)" >&2; exit 1; }
echo "install-wasm.sh: $(/usr/bin/rustc -V), $(/usr/bin/cargo -V | awk '{print $1, $2}'), $(/usr/bin/wasm-ld-19 --version | head -1)"
