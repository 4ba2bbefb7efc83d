#!/usr/bin/env bash
# Soak the power-cut scenario of the emulated phone (tests/it/phone_cuts.rs, issue 13):
# CUTS power cuts (500 by default; the test command runs 25) while the agent is storing
# licenses and meta.json, each followed by a boot that must find the store in the old
# or the new state: nothing torn, no license lost that the agent had reported stored,
# nothing set aside that verifies; and, once the clock is set, the newest license of
# each kind held and both features published.
#
# The disk model (tests/it/common/nbd.rs): the phone's flash is an NBD server with a
# volatile write cache. A write only joins the pending writes; a flush makes every
# pending write durable, in order, and is the one promise the drive makes. A power cut
# is QEMU killed with SIGKILL; the flash then either loses every unflushed write (even
# cuts) or keeps a seeded random half of their 4 KiB pieces, applied in arrival order
# (odd cuts): an eMMC that had written back part of its cache, page by page. It never
# keeps what it was not given and never loses what was flushed. Half the cuts (a coin
# decides) come at an instant drawn from 0 to 4 s into the round's writing, the other
# half the moment the n-th write (n from 1 to 60) reaches the flash, so that most of
# those find writes the guest had not flushed yet.
#
# A run that finds nothing writes its figures, the lines this prints (one per phone),
# to docs/figures/soak.md (scripts/lib-figures.sh: the commit, the date and the machine
# above them; rewritten whole, never edited by hand). A phone stops at its first finding
# and prints it with its evidence; PHONE_CUTS_SEED=<seed> replays its random choices
# (the instants still depend on the machine's speed).
#
#   bash scripts/phone-soak.sh [CUTS]      (default 500; about 12 s a cut on 2 cores)
#   PHONE_SOAK_JOBS=2 bash scripts/phone-soak.sh    (two phones at once, 250 cuts each)
#
# Builds the phone image first if target/phone/initrd.cpio is missing. The whole log
# is kept in target/phone-soak.N.log (one per phone).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'phone-soak: %s\n' "$*"; }
# shellcheck source=scripts/lib-figures.sh
. scripts/lib-figures.sh
figures_start

cuts=${1:-500}
[[ $cuts =~ ^[0-9]+$ && $cuts -gt 0 ]] || {
    log "usage: $0 [CUTS]"
    exit 2
}
if [[ ! -f target/phone/initrd.cpio ]]; then
    log "no phone image yet: building it (scripts/phone-image.sh)"
    bash scripts/phone-image.sh
fi
# PHONE_SOAK_JOBS phones at once (default 1), each with its own flash and its share
# of the cuts: two on two cores halve the time (most of a cut is a boot).
jobs=${PHONE_SOAK_JOBS:-1}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || {
    log "PHONE_SOAK_JOBS must be a positive count"
    exit 2
}
cargo build -q --locked --tests --test it
log "$cuts power cuts on $jobs phone(s)${PHONE_CUTS_SEED:+, seed $PHONE_CUTS_SEED}; the logs go to target/phone-soak.*.log"
start=$SECONDS
pids=()
for ((j = 1; j <= jobs; j++)); do
    share=$((cuts / jobs + (j <= cuts % jobs ? 1 : 0)))
    ((share > 0)) || continue
    PHONE_CUTS=$share cargo test -q --locked --test it -- --ignored --nocapture phone_cuts:: >"target/phone-soak.$j.log" 2>&1 &
    pids+=("$!")
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
failed=0
kept=$(mktemp -d /tmp/la-soak.XXXXXX)
trap 'rm -rf -- "$kept"' EXIT
for ((j = 1; j <= ${#pids[@]}; j++)); do
    out=target/phone-soak.$j.log
    # A finding: what it is and the evidence, up to the phone's console.
    sed -n '/^POWER-CUT FINDING/,/^-- console/p' "$out"
    figures=$(grep -E '^power cuts: [0-9]+ cuts \(' "$out" || true)
    if [[ -z $figures ]]; then
        tail -n 60 "$out"
        log "FAIL: phone $j did not run to its figures"
        failed=1
    else
        log "phone $j: $figures" | tee -a "$kept/lines"
    fi
done
log "$((SECONDS - start)) s in all (build included)" | tee -a "$kept/lines"
((rc == 0 && failed == 0)) || exit 1
command="bash scripts/phone-soak.sh $cuts"
[[ $jobs == 1 ]] || command="PHONE_SOAK_JOBS=$jobs $command"
[[ -z ${PHONE_CUTS_SEED:-} ]] || command="PHONE_CUTS_SEED=$PHONE_CUTS_SEED $command"
{
    cat <<EOF
Power cuts on the emulated phone (\`tests/it/phone_cuts.rs\`; the flash model and what is
checked after each cut: the header of \`scripts/phone-soak.sh\`), one line per phone,
each with its share of the cuts. Every line is a run that found nothing: 0 torn, 0 lost,
0 set aside.

\`\`\`text
EOF
    cat "$kept/lines"
    printf '%s\n' "\`\`\`"
} >"$kept/body"
figures_write soak "$command" "$kept/body"
