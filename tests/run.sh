#!/usr/bin/env bash
# The whole test suite: installs the peers and toolchains the tests need, builds, checks formatting
# and lints, builds every policy plugin example from source (Rust, Python, JavaScript), runs unit
# tests and the end-to-end tests (against real mosquitto, pymodbus, lora-packet, … and the plugins
# in the real host), and exercises the benchmarks briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ -z "$(git status --porcelain)" ]; then
    export WARDEN_CLEAN_AT_START=1
fi

# mosquitto, and every tests/scripts/install-*.sh (Modbus and LoRaWAN peers, the Debian wasm
# toolchain, componentize-py and componentize-js)
bash tests/scripts/install.sh

echo "== fmt"
cargo fmt --all -- --check
cargo fmt --all --manifest-path plugins/Cargo.toml -- --check
echo "== build"
cargo build --workspace --bins --locked
echo "== plugins: every example and the hostile test guest, built from source"
bash plugins/build.sh
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# the gateway without the dashboard's pages (`api.dashboard` off at build time) must build clean too
cargo clippy -p warden --no-default-features --locked -- -D warnings
echo "== tests (unit + end-to-end)"
cargo test --workspace --locked
echo "== Debian package: built from the debug binary with cargo-deb, installed, run as warden, upgraded, removed, purged"
bash tests/scripts/deb-test.sh
echo "== bench smoke (small, debug build: correctness of the bench paths, not figures)"
./target/debug/warden bench --devices 1000 --messages 20000 --publish-messages 2000 \
    --plugin target/plugins/least_privilege.wasm --plugin-config tests/bench/least-privilege.json \
    >/tmp/warden-bench-smoke.txt
grep -q '"phase":"publish"' /tmp/warden-bench-smoke.txt
grep -q '"phase":"pipeline+plugin"' /tmp/warden-bench-smoke.txt
tail -7 /tmp/warden-bench-smoke.txt
echo "== the work tree is as the run found it"
# A test run must leave a checkout clean: no rewritten lockfile, no stray output outside ignored
# directories. Checked only when the run started from a clean git work tree.
if [ -n "${WARDEN_CLEAN_AT_START:-}" ]; then
    left=$(git status --porcelain)
    if [ -n "$left" ]; then
        echo "run.sh: the test run changed the work tree:" >&2
        echo "$left" >&2
        exit 1
    fi
fi
