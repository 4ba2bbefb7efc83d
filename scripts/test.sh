#!/usr/bin/env bash
# Everything the tests need, then every test: the README's test command and what CI runs.
# On a fresh Debian 12 machine it installs (as root, only what is missing) Debian's Rust
# 1.85 cross toolchain for armv7/aarch64, qemu-user, openssl, nginx and file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n== %s\n' "$*"; }

step "install what the tests need"
bash scripts/setup-cross.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked

step "ARM: static armv7 build with Debian's Rust 1.85, checked under qemu-arm"
bash scripts/arm-check.sh
