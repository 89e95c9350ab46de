#!/usr/bin/env bash
# Builds every Rust policy plugin into $WARDEN_PLUGIN_OUT/<crate_name>.wasm (dashes become
# underscores: least_privilege.wasm, hostile.wasm, …): the examples (plugins/examples/* with a
# Cargo.toml) as contract 0.2.0 core modules (wasm32-unknown-unknown), the hostile test guest and
# a second least-privilege (least_privilege_component.wasm, for the benchmark and the 0.1.0
# compatibility test) as contract 0.1.1 components (wasm32-wasip2); then the C example, the
# Python and JavaScript examples if their build scripts are there, then runs the SDK's and the
# examples' native unit tests.
#
#   bash plugins/build.sh               # everything
#   bash plugins/build.sh --no-test     # skip the native unit tests
#   bash plugins/build.sh --rust-only   # skip the Python/JavaScript plugins
#
# Environment:
#   WARDEN_PLUGIN_OUT     where the .wasm files go       (default <repo>/target/plugins)
#   WARDEN_PLUGIN_TARGET  cargo target dir for wasm      (default <repo>/target/wasm)
#   CARGO_TARGET_DIR      cargo target dir for the tests (default <repo>/target/plugins-native)
#
# The wasm build uses Debian's toolchain (tests/scripts/install-wasm.sh installs it): rustc-web with
# -Zbuild-std, because there is no prebuilt wasm32 standard library here. Keep one target dir: the
# standard library is compiled once per target dir (about a minute), then reused.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
plugins=$repo/plugins
out=${WARDEN_PLUGIN_OUT:-$repo/target/plugins}
wasm_target=${WARDEN_PLUGIN_TARGET:-$repo/target/wasm}
native_target=${CARGO_TARGET_DIR:-$repo/target/plugins-native}

run_tests=1
other_langs=1
for arg in "$@"; do
    case "$arg" in
        --no-test) run_tests=0 ;;
        --rust-only) other_langs=0 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

for f in /usr/bin/rustc /usr/bin/cargo /usr/bin/wasm-ld-19; do
    if [ ! -x "$f" ]; then
        echo "build.sh: $f missing: run tests/scripts/install-wasm.sh first" >&2
        exit 1
    fi
done

# Debian's cargo and rustc by full path (rustup's cargo comes first in PATH). RUSTFLAGS from the
# environment would replace the target's flags, and a wrapper would see the wrong rustc: drop both.
deb_cargo() {
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER \
        RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
        CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-Clink-arg=--wasm-ld-path=/usr/bin/wasm-ld-19" \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/bin/wasm-ld-19 \
        /usr/bin/cargo "$@"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { local ms=$(( $(now_ms) - $1 )); printf '%d.%d s' $(( ms / 1000 )) $(( ms % 1000 / 100 )); }
t_all=$(now_ms)
t0=$t_all
step() { echo "=== build.sh: $1"; t0=$(now_ms); }
done_() { echo "    ($(secs "$t0"))"; }

# The example crates (contract 0.2.0) and the hostile test guest (0.1.0).
crates=()
for manifest in "$plugins"/examples/*/Cargo.toml; do
    [ -f "$manifest" ] || continue
    name=$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$manifest" | head -1)
    [ -n "$name" ] || { echo "build.sh: no package name in $manifest" >&2; exit 1; }
    crates+=("$name")
done
build_std=(-Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem)
mkdir -p "$out"
copy() { # target file [name]
    cp "$wasm_target/$1/release/$2" "$out/${3:-$2}"
    printf '    %-32s %8d bytes\n' "${3:-$2}" "$(stat -c %s "$out/${3:-$2}")"
}

step "contract 0.2.0 (wasm32-unknown-unknown) release build of ${crates[*]} ($(/usr/bin/rustc -V | awk '{print $1, $2}'))"
pkg_args=()
for c in "${crates[@]}"; do pkg_args+=(-p "$c"); done
deb_cargo build --release --locked --target wasm32-unknown-unknown "${build_std[@]}" \
    --manifest-path "$plugins/Cargo.toml" --target-dir "$wasm_target" "${pkg_args[@]}"
for c in "${crates[@]}"; do copy wasm32-unknown-unknown "${c//-/_}.wasm"; done
done_

step "contract 0.1.0 (wasm32-wasip2) release build of hostile and least-privilege"
deb_cargo build --release --locked --target wasm32-wasip2 "${build_std[@]}" \
    --manifest-path "$plugins/Cargo.toml" --target-dir "$wasm_target" -p hostile -p least-privilege
copy wasm32-wasip2 hostile.wasm
copy wasm32-wasip2 least_privilege.wasm least_privilege_component.wasm
done_

step "C example (clang-19, contract 0.2.0)"
bash "$plugins/examples/least-privilege-c/build.sh" "$out"
done_

# Hooks for the other languages' examples: each build script takes the output directory, and
# WIT_DIR names the contract (plugins/wit).
if [ "$other_langs" = 1 ]; then
    export WIT_DIR=${WIT_DIR:-$plugins/wit}
    for lang in py js; do
        script=$plugins/examples/assurance-floor-$lang/build.sh
        [ -f "$script" ] || continue
        step "assurance-floor-$lang ($script)"
        bash "$script" "$out"
        done_
    done
fi

if [ "$run_tests" = 1 ]; then
    step "native unit tests of the SDK and the plugins (cargo test, host target)"
    cargo test --manifest-path "$plugins/Cargo.toml" --locked --target-dir "$native_target"
    done_
fi

echo "=== build.sh: done in $(secs "$t_all"); plugins in $out"
