#!/usr/bin/env bash
# The library's unit tests (`cargo test --lib`) built for armv7-unknown-linux-gnueabihf
# with Debian's Rust 1.85 and run under qemu-arm as a Cortex-A9 (the VVX class): the
# engine, the storage, the config parser, the fetcher... checked on the phone's own
# architecture (32-bit time_t and usize, ARM atomics, ring's ARM assembly), not only
# on the x86_64 host. Dev-dependencies (proptest, tempfile, rcgen) build with 1.85 too.
#
# Usage: scripts/arm-unit.sh [extra `cargo test` args, e.g. -- engine::]
# Needs what scripts/setup-cross.sh installs. Output in target/debian (not target/).
set -euo pipefail

log() { printf 'arm-unit: %s\n' "$*"; }
die() { printf 'arm-unit: error: %s\n' "$*" >&2; exit 1; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"

target=armv7-unknown-linux-gnueabihf
# shellcheck source=scripts/cross-env.sh
source "$script_dir/cross-env.sh"
cross_env "$target" "$repo_root" || die "cannot set up the cross environment"
command -v qemu-arm >/dev/null || die "qemu-arm is missing: run scripts/setup-cross.sh first"

# No binfmt_misc here: cargo starts each test binary through qemu-arm itself.
runner="qemu-arm -cpu cortex-a9"
export "CARGO_TARGET_${CROSS_UPPER}_RUNNER=$runner"
log "$(/usr/bin/cargo --version), $(/usr/bin/rustc --version), runner '$runner'"
log "env: $CROSS_ENV_SUMMARY"

start=$SECONDS
/usr/bin/cargo test --locked --lib --target "$target" "$@"
log "ok: unit tests for $target under $runner in $((SECONDS - start)) s (build included)"
