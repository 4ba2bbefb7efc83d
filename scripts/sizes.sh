#!/usr/bin/env bash
# The flash each transport costs: builds the static armv7 release binary (Debian's Rust
# 1.85, Thumb-2, the vvx-armv7 board's way) with each set of transports and prints its
# size, then each board with the transports its file lists (issue 14: HTTP(S) alone at
# most 2,500,000 bytes, every transport at most 2,800,000). Figures, not a check: the
# boards' budgets are enforced by scripts/build.sh. About 1 to 2 minutes a set on 2 cores.
# The table is also written to docs/figures/sizes.md (scripts/lib-figures.sh: the commit,
# the date and the machine above it; rewritten whole, never edited by hand).
#
#   bash scripts/sizes.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf 'sizes: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib-figures.sh
. scripts/lib-figures.sh
figures_start
work=$(mktemp -d /tmp/la-sizes.XXXXXX)
trap 'rm -rf -- "$work"' EXIT

target=armv7-unknown-linux-gnueabihf
bin=target/debian/$target/release/license-agent
# A row of the table, printed and kept for docs/figures/sizes.md.
row() { printf '| %-28s | %-22s | %9s | %11s |\n' "$1" "$2" "$3" "$4" | tee -a "$work/table"; }

row "build" "transports" "bytes" "beside none"
row "---" "---" "---:" "---:"
none=""
for set in "" "http" "ftp" "tftp" "http tftp" "http ftp tftp"; do
    log "armv7 with transports: ${set:-none}"
    bash scripts/build-arm.sh "$target" --no-default-features ${set:+--features "${set// /,}"} >/dev/null 2>&1 ||
        { log "build failed for '${set}'"; exit 1; }
    bytes=$(stat -c %s "$bin")
    none=${none:-$bytes}
    row "armv7 (Thumb-2, static)" "${set:-none (file: only)}" "$bytes" "$(printf '%+d' "$((bytes - none))")"
done
for board in boards/*.toml; do
    name=$(basename "$board" .toml)
    transports=$(cargo xtask board "$name" | sed -n 's/^transports=//p')
    log "board $name"
    out=$(bash scripts/build.sh --no-assemble "$name" 2>/dev/null | grep -E '^license-agent .*bytes' | tail -n 1)
    bytes=$(sed -n -E 's/.*: ([0-9]+) bytes.*/\1/p' <<<"$out")
    row "board $name" "$transports" "${bytes:-?}" ""
done

{
    cat <<EOF
The stripped static license-agent release binary: built for armv7 (Debian's Rust, Thumb-2,
the vvx-armv7 board's way) with each set of transports, then each board as
\`scripts/build.sh\` builds it with the transports its file lists. "beside none": the
bytes the transports add to the \`file:\`-only build. Figures, not a check: the budgets
are enforced by \`scripts/build.sh\`.

EOF
    cat "$work/table"
} >"$work/body"
figures_write sizes "bash scripts/sizes.sh" "$work/body"
