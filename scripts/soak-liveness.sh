#!/usr/bin/env bash
# Soak the daemon's liveness: many more seeded interleavings (tests/it/liveness.rs,
# issue 11 point 5) than the test command runs, against the real binary. Each seed
# draws a schedule of calls, CHECK-SYNC, BUSY/OK answers, supervisor restarts,
# stalled and failing fetches, silent, slow and dripping control clients, clock
# steps, SIGHUP and SIGHUP storms, a supervisor that stops reading for a while (with
# or without a junk flood), and a quarter of the phones under a low descriptor limit
# (issue 23), and checks: no REBOOT mid-call or before the idle grace, none twice for a
# cause, status within 1 s, SIGTERM within 1 s. Every seed runs (no fail-fast); the
# failing ones are printed with their event log (replay one with LIVENESS_SEED=<n>).
#
#   bash scripts/soak-liveness.sh [SEEDS [FIRST_SEED]]     (default 2000 seeds from 1000)
#
# LIVENESS_JOBS sets how many run at once (default 16, 8 under a runner);
# LICENSE_AGENT_BIN and LICENSE_AGENT_RUNNER soak the armv7 binary under qemu-arm as
# the tests do.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'soak-liveness: %s\n' "$*"; }

seeds=${1:-2000}
first=${2:-1000}
[[ $seeds =~ ^[0-9]+$ && $first =~ ^[0-9]+$ ]] || { log "usage: $0 [SEEDS [FIRST_SEED]]"; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

log "$seeds seeds from $first, binary ${LICENSE_AGENT_BIN:-host build} ${LICENSE_AGENT_RUNNER:+under $LICENSE_AGENT_RUNNER}"
start=$SECONDS
rc=0
LIVENESS_SEEDS=$seeds LIVENESS_SEED_BASE=$first LIVENESS_MAX_FAILURES=0 \
    cargo test --locked --test it -- --nocapture liveness::seeded >"$out" 2>&1 || rc=$?
# The failing seeds' logs (the first three) and the list of all of them.
sed -n '/^=== seed /,/^--- daemon log/p' "$out"
grep -E '^seed [0-9]+:|failing seeds' "$out" || true
figures=$(grep -E '^liveness: ' "$out" || true)
if [[ -z $figures ]]; then
    tail -n 40 "$out"
    log "FAIL: the test did not run to its figures (exit $rc)"
    exit 1
fi
log "${figures#liveness: }"
log "$((SECONDS - start)) s in all (build included); exit $rc"
exit "$rc"
