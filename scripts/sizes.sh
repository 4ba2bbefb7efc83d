#!/usr/bin/env bash
# The flash each transport costs: builds the static armv7 release binary (Debian's Rust
# 1.85, Thumb-2, the vvx-armv7 board's way) with each set of transports and prints its
# size, then each board with the transports its file lists (issue 14: HTTP(S) alone at
# most 2,500,000 bytes, every transport at most 2,800,000). Figures, not a check: the
# boards' budgets are enforced by scripts/build.sh. About 1 to 2 minutes a set on 2 cores.
#
#   bash scripts/sizes.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf 'sizes: %s\n' "$*" >&2; }

target=armv7-unknown-linux-gnueabihf
bin=target/debian/$target/release/license-agent
row() { printf '| %-28s | %-22s | %9s |\n' "$1" "$2" "$3"; }

row "build" "transports" "bytes"
row "---" "---" "---:"
for set in "" "http" "ftp" "tftp" "http tftp" "http ftp tftp"; do
    log "armv7 with transports: ${set:-none}"
    bash scripts/build-arm.sh "$target" --no-default-features ${set:+--features "${set// /,}"} >/dev/null 2>&1 ||
        { log "build failed for '${set}'"; exit 1; }
    row "armv7 (Thumb-2, static)" "${set:-none (file: only)}" "$(stat -c %s "$bin")"
done
for board in boards/*.toml; do
    name=$(basename "$board" .toml)
    transports=$(sed -n -E 's/^transports[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' "$board")
    log "board $name"
    out=$(bash scripts/build.sh --no-assemble "$name" 2>/dev/null | grep -E '^license-agent .*bytes' | tail -n 1)
    bytes=$(sed -n -E 's/.*: ([0-9]+) bytes.*/\1/p' <<<"$out")
    row "board $name" "$transports" "${bytes:-?}"
done
