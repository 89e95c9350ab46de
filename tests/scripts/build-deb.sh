#!/usr/bin/env bash
# Builds Warden's Debian package with cargo-deb (pinned below; installed with `cargo install --locked`
# on first use). Package metadata, the unit, the conffile and the maintainer scripts are in
# gateway/Cargo.toml [package.metadata.deb] and gateway/packaging/.
#
#   tests/scripts/build-deb.sh                 # amd64 from a release build
#   PROFILE=dev tests/scripts/build-deb.sh     # amd64 from the debug build (quick; what the suite's
#                                              # install test uses)
#   ARCH=arm64 tests/scripts/build-deb.sh      # arm64 from tests/scripts/build-arm64.sh's binary
# Prints the path of the .deb on its last line.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0
root="$(cd "$(dirname "$0")/../.." && pwd)"
PROFILE=${PROFILE:-release}
ARCH=${ARCH:-amd64}
cd "$root"

if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "build-deb.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked "cargo-deb@$CARGO_DEB_VERSION" >&2
fi
command -v dpkg-shlibdeps >/dev/null 2>&1 || {
    echo "build-deb.sh: installing dpkg-dev (dpkg-shlibdeps works out the package's dependencies)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dpkg-dev >&2
}

case "$ARCH" in
amd64)
    if [ "$PROFILE" = release ]; then
        cargo build --locked --release -p warden --bin warden >&2
        cargo deb -p warden --no-build --strip --output target/debian/ >&2
    else
        # The dev profile's binary, packaged as the release one would be (cargo-deb strips it).
        cargo build --locked -p warden --bin warden >&2
        cargo deb -p warden --no-build --profile dev --strip --output target/debian/ >&2
    fi
    ;;
arm64)
    bin="target/arm64/aarch64-unknown-linux-gnu/release/warden"
    [ -x "$bin" ] || bash tests/scripts/build-arm64.sh >&2
    CARGO_TARGET_DIR="$root/target/arm64" cargo deb -p warden --no-build \
        --target aarch64-unknown-linux-gnu --strip --output target/debian/ >&2
    ;;
*)
    echo "build-deb.sh: ARCH must be amd64 or arm64" >&2
    exit 2
    ;;
esac
ls -t target/debian/warden_*_"$ARCH".deb | head -1
