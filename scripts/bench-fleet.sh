#!/usr/bin/env bash
# Figures, not verdicts: license-fleet at scale. Generates the reports of a fleet of
# 100,000 phones (examples/fleet_gen: a few site licenses shared across the fleet, a
# phone license of each phone's own with varied ends, phones booted with an expired
# license or waiting to reboot, refusals, stale reports, clock problems; about 350 MB of
# pretty-printed JSON), then prints:
#   - the time to generate them;
#   - license-fleet over the folder (release build): wall time and peak resident memory
#     (ru_maxrss, from /usr/bin/time), writing the HTML page and the CSV summary, then
#     again printing the whole fleet as JSON (target on 2 cores: under 10 s, 500 MB);
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
log "license-fleet --json: $(measure --json), $(stat -c %s "$work/out") bytes of JSON"
log "target on 2 cores: under 10 s and under 500 MB (512000 KiB) for 100000 reports"
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
