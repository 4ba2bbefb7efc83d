#!/usr/bin/env bash
# Build the license-agent release binary for an ARM desk phone with Debian's
# own Rust (installed by scripts/setup-cross.sh), statically linked.
#
# Usage: scripts/build-arm.sh [TARGET] [extra cargo build args...]
#   TARGET: armv7-unknown-linux-gnueabihf (default) or aarch64-unknown-linux-gnu
#
# Works from any directory. The output goes to target/debian/TARGET/release/
# so that rustup's host builds in target/ are left alone. REPO_ROOT overrides
# the crate directory (default: the parent of this script's directory).
set -euo pipefail

log() { printf 'build-arm: %s\n' "$*"; }
die() { printf 'build-arm: error: %s\n' "$*" >&2; exit 1; }

target=${1:-armv7-unknown-linux-gnueabihf}
if (($# > 0)); then shift; fi
case $target in
    armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf ;;
    aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu ;;
    *) die "unsupported target '$target' (armv7-unknown-linux-gnueabihf or aarch64-unknown-linux-gnu)" ;;
esac

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "${REPO_ROOT:-$script_dir/..}" && pwd)
cd "$repo_root"
[[ -f Cargo.toml ]] || die "no Cargo.toml in $repo_root"
[[ -f Cargo.lock ]] || die "no Cargo.lock in $repo_root (the build uses --locked)"

for tool in /usr/bin/cargo /usr/bin/rustc "/usr/bin/$gnu-gcc" "/usr/bin/$gnu-ar" "/usr/lib/rustlib/$target/lib"; do
    [[ -e $tool ]] || die "$tool is missing: run scripts/setup-cross.sh first"
done

# Debian's toolchain, not rustup's proxies in ~/.cargo/bin.
export PATH="/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc
export RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR="$repo_root/target/debian"
# RUSTFLAGS would override the per-target flags below and also hit host build
# scripts; drop them (and a rustup-specific toolchain choice).
for var in RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET RUSTUP_TOOLCHAIN; do
    if [[ -n ${!var+x} ]]; then
        log "ignoring $var=${!var}"
        unset "$var"
    fi
done

upper=$(tr 'a-z-' 'A-Z_' <<<"$target")   # ARMV7_UNKNOWN_LINUX_GNUEABIHF
lower=${target//-/_}                      # armv7_unknown_linux_gnueabihf
export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
export "CARGO_TARGET_${upper}_RUSTFLAGS=-C target-feature=+crt-static"
export "CC_${lower}=$gnu-gcc"
export "AR_${lower}=$gnu-ar"

log "repo $repo_root, target $target"
log "$(/usr/bin/cargo --version), $(/usr/bin/rustc --version)"
log "env: RUSTC=$RUSTC CARGO_TARGET_DIR=$CARGO_TARGET_DIR CARGO_TARGET_${upper}_LINKER=$gnu-gcc CARGO_TARGET_${upper}_RUSTFLAGS='-C target-feature=+crt-static' CC_${lower}=$gnu-gcc AR_${lower}=$gnu-ar"

start=$SECONDS
/usr/bin/cargo build --release --locked --target "$target" --bin license-agent "$@"
log "cargo build took $((SECONDS - start)) s"

bin="$CARGO_TARGET_DIR/$target/release/license-agent"
[[ -f $bin ]] || die "build finished but $bin is missing"

info=$(file -b "$bin")
log "file: $info"
case $info in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$bin is not statically linked" ;;
esac
if [[ $info == *"not stripped"* ]]; then
    log "not stripped by the release profile: stripping with $gnu-strip"
    "/usr/bin/$gnu-strip" "$bin"
fi

bytes=$(stat -c %s "$bin")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1000000 }')
log "binary: $bin"
printf 'license-agent %s size: %s bytes (%s MB)\n' "$target" "$bytes" "$mb"
