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

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "${REPO_ROOT:-$script_dir/..}" && pwd)
cd "$repo_root"
[[ -f Cargo.toml ]] || die "no Cargo.toml in $repo_root"
[[ -f Cargo.lock ]] || die "no Cargo.lock in $repo_root (the build uses --locked)"

# Debian's toolchain, linkers, crt-static and target/debian: shared with arm-unit.sh.
# shellcheck source=scripts/cross-env.sh
source "$script_dir/cross-env.sh"
cross_env "$target" "$repo_root" || die "cannot build for $target"
gnu=$CROSS_GNU

log "repo $repo_root, target $target"
log "$(/usr/bin/cargo --version), $(/usr/bin/rustc --version)"
log "env: $CROSS_ENV_SUMMARY"

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
