#!/usr/bin/env bash
# The fuzzing soak: every target of src/fuzzing.rs under libFuzzer (cargo fuzz, on the
# nightly toolchain), each for SECONDS (default 1800), growing the corpora under
# fuzz/corpus/ and leaving any crash under fuzz/artifacts/<target>/. It prints, per
# target, the executions, the corpus size and the crashes found. Not part of the test
# command (the unit tests replay the committed corpora without any fuzzing toolchain).
#
#   bash scripts/fuzz.sh [--seconds N] [--jobs J] [--minimize] [TARGET...]
#
# --jobs runs that many targets at once; --minimize merges each corpus down to the inputs
# that add coverage afterwards (cargo fuzz cmin), the form in which corpora are committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'fuzz: %s\n' "$*"; }

seconds=1800 jobs=1 minimize=0 targets=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --minimize) minimize=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^license-agent-fuzz$')
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || { echo "fuzz.sh: needs the nightly toolchain (rustup)" >&2; exit 1; }
cargo +nightly fuzz build -O

mkdir -p fuzz/logs
run_one() {
    local t=$1
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$t/" >"fuzz/logs/$t.log" 2>&1 || true
}

running=0
for t in "${targets[@]}"; do
    log "$t: ${seconds} s"
    run_one "$t" &
    running=$((running + 1))
    if [[ $running -ge $jobs ]]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

printf '\n%-14s %14s %10s %8s\n' target executions corpus crashes
failed=0
for t in "${targets[@]}"; do
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/logs/$t.log" | tail -1)
    crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
    if [[ $minimize -eq 1 ]]; then
        cargo +nightly fuzz cmin -O "$t" "fuzz/corpus/$t" >>"fuzz/logs/$t.log" 2>&1 || true
    fi
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    printf '%-14s %14s %10s %8s\n' "$t" "${execs:-?}" "$corpus" "$crashes"
    [[ $crashes -eq 0 && -n ${execs:-} ]] || failed=1
done
exit $failed
