#!/usr/bin/env bash
# The library's unit tests (`cargo test --lib`) built for armv7-unknown-linux-gnueabihf
# with Debian's Rust 1.85 and run under qemu-arm as a Cortex-A9 (the VVX class): the
# engine, the storage, the config parser, the fetcher... checked on the phone's own
# architecture (32-bit time_t and usize, ARM atomics, ring's ARM assembly), not only
# on the x86_64 host. Dev-dependencies (proptest, tempfile, rcgen, test-servers) build with 1.85 too.
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
/usr/bin/cargo test --locked --lib --target "$target" --no-run "$@"
# A watchdog on the run itself: once in many runs, qemu-user left one test thread
# waiting for ever (the HTTPS test, then against openssl s_server, at 01:07 on 2026-12-01, after ~0.6 s
# runs in every other try). A hung run is said loudly and run once more; a failure is
# a failure.
rc=0
# The simulator's search is the host's (100,000 seeds, and the planted bugs it must
# find, in the test command): here a sample of it shows the core deciding alike on
# 32-bit ARM (time_t, usize), within the watchdog's time.
export SIM_SEEDS=${SIM_SEEDS:-1000}
[[ $# -eq 0 ]] && set -- -- --skip daemon::sim::a_reboot
timeout --kill-after=10 600 /usr/bin/cargo test --locked --lib --target "$target" "$@" || rc=$?
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    log "WARNING: the unit tests under $runner hung for 600 s (a qemu-user hang); running them once more"
    /usr/bin/cargo test --locked --lib --target "$target" "$@"
elif [[ $rc -ne 0 ]]; then
    exit "$rc"
fi
log "ok: unit tests for $target under $runner in $((SECONDS - start)) s (build included)"
