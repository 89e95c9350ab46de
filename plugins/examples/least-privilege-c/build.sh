#!/usr/bin/env bash
# Builds least_privilege_c.wasm (contract 0.2.0, a freestanding core module) into OUT_DIR
# (default: target/plugins of the repository) with Debian's clang-19 and wasm-ld-19
# (tests/scripts/install-wasm.sh installs both).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../../target/plugins}
mkdir -p "$out"
clang-19 --target=wasm32 -O2 -std=c11 -Wall -Wextra -Werror -nostdlib -ffreestanding \
    -fuse-ld=/usr/bin/wasm-ld-19 -Wl,--no-entry -Wl,--export-dynamic -Wl,--strip-debug \
    -o "$out/least_privilege_c.wasm" "$here/least_privilege.c"
printf '    %-32s %8d bytes\n' least_privilege_c.wasm "$(stat -c %s "$out/least_privilege_c.wasm")"
