#!/usr/bin/env bash
# Builds the benchmark's record-contract guest (guest-record/, world wit-record/) into
#   ${WARDEN_PLUGIN_OUT:-<repo>/target/plugins}/least_privilege_record.wasm
# with Debian's rustc-web and -Zbuild-std, like plugins/build.sh (which can call this script).
#
# Environment (the same as plugins/build.sh):
#   WARDEN_PLUGIN_OUT     where the .wasm goes           (default <repo>/target/plugins)
#   WARDEN_PLUGIN_TARGET  cargo target dir for wasm      (default <repo>/target/wasm)
# Its native unit tests: cargo test --manifest-path gateway/plugin-bench/guest-record/Cargo.toml
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${WARDEN_PLUGIN_OUT:-$repo/target/plugins}"
tdir="${WARDEN_PLUGIN_TARGET:-$repo/target/wasm}"
for tool in /usr/bin/cargo /usr/bin/rustc /usr/bin/wasm-ld-19; do
  if [[ ! -x "$tool" ]]; then
    echo "build-guest.sh: $tool missing: run tests/scripts/install-wasm.sh first" >&2
    exit 1
  fi
done
mkdir -p "$out"
locked=()
[[ -f "$here/guest-record/Cargo.lock" ]] && locked=(--locked)
(cd "$here/guest-record" &&
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u CARGO_TARGET_DIR \
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
    CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-Clink-arg=--wasm-ld-path=/usr/bin/wasm-ld-19" \
    /usr/bin/cargo build --release --target wasm32-wasip2 "${locked[@]}" \
      -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem --target-dir "$tdir")
cp "$tdir/wasm32-wasip2/release/least_privilege_record.wasm" "$out/least_privilege_record.wasm"
echo "built $out/least_privilege_record.wasm ($(stat -c %s "$out/least_privilege_record.wasm") bytes)"
