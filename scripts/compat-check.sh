#!/usr/bin/env bash
# The store across a firmware upgrade and a rollback to the last release, with that
# release's real binary: builds the license-agent of the commit named in
# .ci/previous-release from this repository's history (a checkout without that commit
# fetches the history first, and fails if it cannot), then runs
# tests/it/previous_release.rs with LICENSE_AGENT_PREVIOUS set to it.
#
# The build has a target folder of its own (target/previous-release/build): sharing
# target/ would replace this tree's binaries with the old one. Its binary is kept as
# target/previous-release/<commit>/license-agent, so a second run does not build again.
#
# Usage: scripts/compat-check.sh
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'compat-check: %s\n' "$*"; }
die() { printf 'compat-check: error: %s\n' "$*" >&2; exit 1; }

commit=$(grep -E '^[0-9a-f]{40}$' .ci/previous-release | head -n 1) ||
    die ".ci/previous-release names no commit"
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    log "$commit is not in this checkout: fetching the history"
    if [[ $(git rev-parse --is-shallow-repository) == true ]]; then
        git fetch --quiet --unshallow || true
    fi
    git fetch --quiet origin "$commit" 2>/dev/null || true
    git cat-file -e "$commit^{commit}" 2>/dev/null ||
        die "the last release ($commit) is not in this repository's history and could not be fetched"
fi

out="target/previous-release/$commit"
if [[ ! -x $out/license-agent ]]; then
    src=$(mktemp -d /tmp/previous-release.XXXXXX)
    trap 'rm -rf -- "$src"' EXIT
    log "building the last release, $(git log -1 --format='%h %cs' "$commit"), in $src"
    git archive "$commit" | tar -x -C "$src"
    mkdir -p target/previous-release/build "$out"
    # No debug information: the test needs only the binary, and it halves the folder.
    CARGO_TARGET_DIR="$repo_root/target/previous-release/build" CARGO_PROFILE_DEV_DEBUG=0 \
        cargo build --locked --quiet --manifest-path "$src/Cargo.toml" --bin license-agent
    cp target/previous-release/build/debug/license-agent "$out/license-agent"
fi
LICENSE_AGENT_PREVIOUS="$repo_root/$out/license-agent" \
    cargo test --locked --test it -- --ignored --nocapture previous_release::
log "the store survived an upgrade from and a rollback to $(git log -1 --format=%h "$commit")"
