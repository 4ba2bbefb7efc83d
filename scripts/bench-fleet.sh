#!/usr/bin/env bash
# Figures, not verdicts: license-fleet at scale. Generates the reports of a fleet of
# 100,000 phones (examples/fleet_gen: a few site licenses shared across the fleet, a
# phone license of each phone's own with varied ends, phones booted with an expired
# license or waiting to reboot, refusals, stale reports, clock problems; every license
# really signed by one key, its signed content in the reports, and the keyring that
# trusts the key beside them; about 430 MB of pretty-printed JSON), then prints:
#   - the time to generate them (100,000 signatures, on every core);
#   - license-fleet over the folder (release build): wall time and peak resident memory
#     (ru_maxrss, from /usr/bin/time), writing the HTML page and the CSV summary, then
#     again printing the whole fleet as JSON, then again as JSON with --keyring (every
#     license's signature verified: 100,000 and more Ed25519 verifications), and the
#     time and memory of --keyring over those of the same run without (target on 2
#     cores, with --keyring too: under 10 s, 500 MB). The --keyring run must show every
#     license verified (the fleet and every row "verified": true, no unverified-license
#     or forged-license group): the script fails loudly if not;
#   - the page's size and headless Chromium's time to render it: a screenshot, and the
#     DOM after the page's script filtered the licenses Expiring Shortly and sorted them.
# What it prints is also written to docs/figures/fleet.md (scripts/lib-figures.sh: the
# commit, the date and the machine above it; rewritten whole, never edited by hand).
# Called by scripts/bench.sh --fleet; alone: bash scripts/bench-fleet.sh [PHONES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/lib-figures.sh
. scripts/lib-figures.sh
figures_start

phones=${1:-100000}
cargo build --release --quiet --locked --bin license-fleet --example fleet_gen
fleet=$PWD/target/release/license-fleet
work=$(mktemp -d /tmp/la-fleet.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
# Every line printed is a figure, also kept for docs/figures/fleet.md.
log() { printf 'bench: fleet: %s\n' "$*" | tee -a "$work/figures"; }

now=$(date +%s)
log "$(target/release/examples/fleet_gen "$work/uploads" "$phones" "$now")"

# Wall seconds and peak RSS of one license-fleet run; its stdout to $work/out.
measure() {
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f '%e s, peak RSS %M KiB' -o "$work/time" "$fleet" --at "$now" "$@" "$work/uploads" >"$work/out"
        cat "$work/time"
    else
        local start=$SECONDS
        "$fleet" --at "$now" "$@" "$work/uploads" >"$work/out"
        printf '%s s (no /usr/bin/time: peak memory not measured)' "$((SECONDS - start))"
    fi
}
log "license-fleet --html --csv=summary: $(measure --html "$work/fleet.html" --csv=summary)"
log "summary: $(tail -n 1 "$work/out" | tr -d '\r') (at,phones,all,active,expiring_shortly,impending,inactive,attention,unreadable)"
plain=$(measure --json)
log "license-fleet --json: $plain, $(stat -c %s "$work/out") bytes of JSON"
keyring=$work/uploads/keyring.txt
verified=$(measure --keyring "$keyring" --json)
log "license-fleet --keyring --json: $verified, $(stat -c %s "$work/out") bytes of JSON"
# Every license verified, or the figure is not the one asked for: the fleet and each of
# its rows say "verified": true, and no license is doubted (jq; without it, by counting).
if command -v jq >/dev/null; then
    rows=$(jq '.fleet.rows | length' "$work/out")
    check=$(jq -r '[(.fleet.verified == true), ([.fleet.rows[] | select(.verified != true)] | length),
        ([.fleet.attention[] | select(.what == "unverified-license" or .what == "forged-license")] | length)]
        | @tsv' "$work/out")
    [[ $check == $'true\t0\t0' ]] && ok=1 || ok=0
else
    rows=$(grep -m 1 -oE '"all": ?[0-9]+' "$work/out" | grep -oE '[0-9]+$' || echo 0)
    yes=$(grep -oE '"verified": ?true' "$work/out" | wc -l)
    no=$(grep -cE '"verified": ?false' "$work/out" || true)
    doubted=$(grep -cE '"what": ?"(unverified|forged)-license"' "$work/out" || true)
    check="$yes true (want $((rows + 1))), $no false, $doubted doubted"
    ((yes == rows + 1 && no == 0 && doubted == 0)) && ok=1 || ok=0
fi
if ((ok == 0 || rows == 0)); then
    printf 'bench-fleet: FAILED: license-fleet --keyring did not verify every license (%s rows; fleet verified, rows not verified, unverified-license or forged-license groups: %s)\n' \
        "$rows" "$check" >&2
    exit 1
fi
log "license-fleet --keyring: the fleet and all $rows rows verified, no unverified-license or forged-license"
# "12.3 s, peak RSS 456 KiB" -> "12.3 456"
split_figure() { sed -E 's/^([0-9.]+) s, peak RSS ([0-9]+) KiB.*/\1 \2/' <<<"$1"; }
if [[ $plain == *"peak RSS"* && $verified == *"peak RSS"* ]]; then
    read -r t0 m0 <<<"$(split_figure "$plain")"
    read -r t1 m1 <<<"$(split_figure "$verified")"
    log "--keyring over without: $(awk -v a="$t1" -v b="$t0" -v c="$m1" -v d="$m0" 'BEGIN { printf "%.2fx the time (+%.2f s), %.2fx the peak memory", a / b, a - b, c / d }')"
fi
log "target on 2 cores: under 10 s and under 500 MB (512000 KiB) for 100000 reports, with --keyring too"
log "page: $(stat -c %s "$work/fleet.html") bytes"

render() {
    size=1280,1400
    chrome=(chromium --headless=new --disable-gpu --no-sandbox --no-first-run --hide-scrollbars
        --user-data-dir="$work/chromium" --window-size="$size")
    start=$(date +%s.%N)
    "${chrome[@]}" --screenshot="$work/fleet.png" "file://$work/fleet.html" >/dev/null 2>&1
    end=$(date +%s.%N)
    log "chromium: page loaded, rendered and screenshot in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s (browser start included)"
    start=$(date +%s.%N)
    "${chrome[@]}" --dump-dom "file://$work/fleet.html#status=expiring-shortly&sort=end" >"$work/dom.html" 2>/dev/null
    end=$(date +%s.%N)
    matching=$(grep -o 'id="license-matching">[0-9]*' "$work/dom.html" | grep -o '[0-9]*$' || echo "?")
    log "chromium: filtered (Expiring Shortly: $matching rows) and sorted by end, DOM dumped in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s"
}
if command -v chromium >/dev/null; then
    render
else
    log "no chromium (scripts/setup-cross.sh installs it): the page was not rendered"
fi

{
    cat <<EOF
license-fleet (release build) over $phones generated reports (examples/fleet_gen), and its
HTML page in headless Chromium (the header of \`scripts/bench-fleet.sh\` says how each is
measured). Figures, not verdicts: they vary from run to run.

\`\`\`text
EOF
    cat "$work/figures"
    printf '%s\n' "\`\`\`"
} >"$work/body"
figures_write fleet "bash scripts/bench-fleet.sh${1:+ $1}" "$work/body"
