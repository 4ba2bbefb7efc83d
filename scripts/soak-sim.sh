#!/usr/bin/env bash
# Soak the simulated daemon (src/daemon/sim): the real core driven from a seed on
# virtual time, with a simulated supervisor, server, clients, clocks, signals and a
# failing flash. The test command runs 100,000 seeds; this runs many more (10,000,000
# by default), in release mode, on every core, and prints seeds per second and what the
# runs did. A failing seed prints its trace and the line that replays it, with the
# build time the run depends on:
#   SOURCE_DATE_EPOCH=<t> SIM_SEED=<seed> cargo test --lib daemon::sim::replay -- --ignored --nocapture
#
#   bash scripts/soak-sim.sh [SEEDS [FIRST_SEED]]     (default 10000000 from 1000000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
seeds=${1:-10000000}
first=${2:-1000000}
[[ $seeds =~ ^[0-9]+$ && $first =~ ^[0-9]+$ ]] || { echo "usage: $0 [SEEDS [FIRST_SEED]]" >&2; exit 2; }
echo "soak-sim: $seeds seeds from $first"
# Optimised for speed, not for the phone's size (the release profile's `z`): 1.6 times
# the seeds per second.
CARGO_PROFILE_RELEASE_OPT_LEVEL=3 SIM_SEEDS=$seeds SIM_FIRST=$first cargo test --locked --release --lib \
    daemon::sim::soak -- --ignored --nocapture 2>&1 | grep -E '^simulated|broke a rule|^replay|^  |test result'
