#!/usr/bin/env bash
# The phone check: the agent on a whole emulated ARM phone (issue 13). Builds the image
# (scripts/phone-image.sh: Debian's armmp kernel, BusyBox init, the vvx-armv7 firmware
# drop) and runs its scenarios under qemu-system-arm, each test on its own phone:
#
#   tests/it/phone.rs       cold boot at 1970; expiry during a call and the real reboot
#                        after it; booted expired three times, no reboot loop; the
#                        clock from 1970 to 2106 (idle CPU, statuses, a 2040 end);
#                        a new feature's reboot inside a reboot window only (issue 29)
#   tests/it/phone_cuts.rs  power cuts (PHONE_CUTS, 25 here; scripts/phone-soak.sh: 500)
#   tests/it/phone_trust_cuts.rs  power cuts during a trust update (issue 28: versions 1
#                        and 2 taken, a license key removed; PHONE_TRUST_CUTS, 8)
#   tests/it/phone_dhcp.rs  the phone on a DHCP network of its own (a network namespace,
#                        dnsmasq, udhcpc and the agent's hook): the server from options
#                        66 and 160, the master file's folders, a renewal followed, the
#                        remembered and the static server (needs root: ip netns)
#
# Every scenario and the cuts run at once, each on its own phone: most of a scenario is
# the phone waiting (a call, an idle grace, 20 s of idle CPU), so five phones share two
# cores, and the stage takes about as long as the cuts alone. The DHCP phones come after
# the scenarios (beside the cuts still running), so no more than five phones share the
# cores at once. The trust update's cuts (one phone at a time, about two minutes) run
# from the start beside the license cuts, which take the longest: six phones while the
# scenarios wait, five or fewer after.
#
# Usage: scripts/phone-check.sh   (needs what scripts/setup-cross.sh installs)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'phone-check: %s\n' "$*"; }
start=$SECONDS

bash "$script_dir/phone-image.sh"
cargo build --locked --tests --test it --bins

logs=$(mktemp -d /tmp/phone-check.XXXXXX)
trap 'rm -rf -- "$logs"' EXIT
cargo test --locked --test it -- --ignored --nocapture phone_cuts:: >"$logs/cuts.log" 2>&1 &
cuts=$!
cargo test --locked --test it -- --ignored --nocapture phone_trust_cuts:: >"$logs/trust.log" 2>&1 &
trust=$!
rc=0
cargo test --locked --test it -- --ignored --nocapture --test-threads 4 phone:: 2>&1 | tee "$logs/phone.log" || rc=$?
dhcp_rc=0
cargo test --locked --test it -- --ignored --nocapture --test-threads 4 phone_dhcp:: 2>&1 | tee "$logs/dhcp.log" || dhcp_rc=$?
cuts_rc=0
wait "$cuts" || cuts_rc=$?
grep -E '^(power cuts|test |test result)' "$logs/cuts.log" || true
if ((cuts_rc != 0)); then
    cat "$logs/cuts.log"
    log "FAIL: the power cuts (tests/it/phone_cuts.rs)"
fi
trust_rc=0
wait "$trust" || trust_rc=$?
grep -E '^(trust power cuts|test |test result)' "$logs/trust.log" || true
if ((trust_rc != 0)); then
    cat "$logs/trust.log"
    log "FAIL: the power cuts during a trust update (tests/it/phone_trust_cuts.rs)"
fi
((rc == 0)) || log "FAIL: the phone scenarios (tests/it/phone.rs)"
((dhcp_rc == 0)) || log "FAIL: the phone on a DHCP network (tests/it/phone_dhcp.rs)"
((rc == 0 && cuts_rc == 0 && trust_rc == 0 && dhcp_rc == 0)) || exit 1
log "ok in $((SECONDS - start)) s"
