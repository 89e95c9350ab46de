#!/usr/bin/env bash
# The whole test suite: installs the peers the tests need, builds, checks formatting and lints, runs
# unit tests and the end-to-end tests against real mosquitto, and exercises the benchmark briefly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/scripts/install.sh

echo "== fmt"
cargo fmt --all -- --check
echo "== build"
cargo build --workspace --bins --locked
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests (unit + end-to-end)"
cargo test --workspace --locked
echo "== bench smoke (small, debug build: correctness of the bench path, not figures)"
./target/debug/warden bench --devices 1000 --messages 20000 --publish-messages 2000 >/tmp/warden-bench-smoke.txt
grep -q '"phase":"publish"' /tmp/warden-bench-smoke.txt
tail -6 /tmp/warden-bench-smoke.txt
