#!/usr/bin/env bash
# Figures, not verdicts: what the agent costs on the machine it runs on, measured on the
# host binary natively (memory under qemu-user would be QEMU's own, see
# ../shared/notes/cross-toolchain.md). Prints:
#   - the daemon's memory (VmHWM, the peak resident set since start, and VmRSS) after
#     its boot cycle and after 200 check-syncs, fetching from the demo provisioning
#     folder (file://);
#   - the time of one check-sync through the control socket (CLI process included);
#   - the time to verify one license file (all the vectors, many times, one process);
#   - the size of every release binary already built (scripts/build.sh BOARD builds them);
#   - on the emulated ARM phone (when its image is built, scripts/phone-image.sh), for a
#     first boot and a reboot: power-on to the feature set published, and the agent's
#     peak resident memory and CPU time for its boot cycle, read inside the guest
#     (tests/it/phone_figures.rs);
#   - with --fleet, license-fleet over 100,000 generated reports: time, peak memory,
#     and the HTML page rendered in headless Chromium (scripts/bench-fleet.sh; about
#     two minutes, so the test command leaves it out).
# What it prints is also written to docs/figures/bench.md (scripts/lib-figures.sh: the
# commit, the date and the machine above it; rewritten whole, never edited by hand), and
# the fleet's to docs/figures/fleet.md. A failed phone figures run is written as failed,
# and the script then fails.
# Not run from here: `bash scripts/bench-storm.sh` (a boot storm of 100 phones against
# nginx and vsftpd, the server's load with an earlier commit's agent and this tree's side
# by side) writes docs/figures/storm.md; it is run by hand, never by the test command,
# because it builds the earlier commit.
# No assertion: the machines are noisy. Run: bash scripts/bench.sh [--fleet]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/lib-figures.sh
. scripts/lib-figures.sh
figures_start
log() { printf 'bench: %s\n' "$*"; }

cargo build --release --quiet --locked --bin license-agent
bin=$PWD/target/release/license-agent
demo=$PWD/examples/demo
work=$(mktemp -d /tmp/la-bench.XXXXXX)
pid=""
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf -- "$work"
}
trap cleanup EXIT
# Every figure printed, also kept for docs/figures/bench.md.
figures=$work/figures
fig() {
    log "$*"
    printf 'bench: %s\n' "$*" >>"$figures"
}

cat >"$work/agent.toml" <<EOF
mac = "0004f2000001"
site_serial = "100000000001"
keyring = "$demo/keyring"
state_dir = "$work/state"
server = "file://$demo/provisioning/"
report = "file://$work/"
enabled_features = ["vqmon", "usb-call-recording"]
supervisor = "none"
control_socket = "$work/control.sock"
features_file = "$work/features"
EOF

memory() {
    awk '/^VmHWM|^VmRSS/ { printf "%s %s %s  ", $1, $2, $3 }' "/proc/$pid/status"
}

RUST_LOG=warn "$bin" run --config "$work/agent.toml" 2>"$work/daemon.log" &
pid=$!
# `status` answers from the store until the daemon listens: wait for the daemon's answer.
daemon_answers() {
    "$bin" status --config "$work/agent.toml" 2>/dev/null | grep -q "read from    the running daemon"
}
for _ in $(seq 1 600); do
    daemon_answers && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
daemon_answers || { log "the daemon did not answer within 30 s"; cat "$work/daemon.log"; exit 1; }
fig "daemon after its boot cycle: $(memory)"

rounds=200
TIMEFORMAT=%R
secs=$( { time for _ in $(seq 1 "$rounds"); do
    "$bin" check-sync --config "$work/agent.toml" >/dev/null
done; } 2>&1 )
fig "daemon after $rounds check-syncs: $(memory)"
fig "check-sync: $(awk -v s="$secs" -v n="$rounds" 'BEGIN { printf "%.2f ms", 1000 * s / n }') each (CLI start, control socket, two file:// fetches, verification, decision)"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=""

vectors=(tests/vectors/*.cfg)
repeat=40
args=()
for _ in $(seq 1 "$repeat"); do args+=("${vectors[@]}"); done
secs=$( { time "$bin" verify --keyring tests/vectors/keyring "${args[@]}" >/dev/null || true; } 2>&1 )
files=$((repeat * ${#vectors[@]}))
fig "verify: $files files in ${secs} s, $(awk -v s="$secs" -v n="$files" 'BEGIN { printf "%.1f µs", 1e6 * s / n }') per file (read, parse, Ed25519 check)"

for b in target/debian/*/release/license-agent target/x86_64-unknown-linux-gnu/release/license-agent "$bin"; do
    [[ -f $b ]] || continue
    fig "size: $(stat -c %s "$b") bytes  $b"
done

phone_failed=""
if [[ -f target/phone/initrd.cpio ]]; then
    cargo test --quiet --locked --test it -- --ignored --nocapture phone_figures:: 2>&1 | grep '^phone: ' | sed 's/^/bench: /' |
        tee -a "$figures" || phone_failed=1
    if [[ -n $phone_failed ]]; then
        fig "phone: FAILED: the emulated phone's figures did not run to the end (cargo test --test it -- --ignored phone_figures::)"
    fi
else
    fig "phone: no image (bash scripts/phone-image.sh): no figures from the emulated phone"
fi

{
    cat <<'EOF'
Memory and times of the host release binary run natively, the size of every release
binary already built, and the emulated ARM phone when its image is built (the header
of `scripts/bench.sh` says how each is measured). Figures, not verdicts: they vary
from run to run.

```text
EOF
    cat "$figures"
    printf '```\n'
} >"$work/body"
figures_write bench "bash scripts/bench.sh" "$work/body"
[[ -z $phone_failed ]] || exit 1

if [[ ${1:-} == --fleet ]]; then
    bash scripts/bench-fleet.sh
fi
