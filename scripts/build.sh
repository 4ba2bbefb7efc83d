#!/usr/bin/env bash
# The build entry point per board, kept for the scripts and docs that call it:
# `scripts/build.sh [--keyring FILE] [--no-assemble] BOARD` is `cargo xtask build ...`
# (xtask/src/main.rs reads the board file, builds, checks and assembles the firmware
# drop; `--help` says it all). Works from any directory; relative paths stay the caller's.
set -euo pipefail
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
exec cargo run --quiet --locked --manifest-path "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml" --package xtask -- build "$@"
