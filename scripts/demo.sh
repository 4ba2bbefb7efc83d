#!/usr/bin/env bash
# The main job on its embedded default, the whole story in under a minute
# (examples/story/main.rs, narrated): a provisioning server on 127.0.0.1, the phone
# supervisor simulator and the daemon on the test clock; the boot fetch and the
# published set, a call starting, the site license ending during the call, no reboot
# until the call has ended and the idle grace passed, then the REBOOT, with
# `license-agent status` at each step. Everything it makes is in target/release/demo-story.
#
# `bash scripts/demo.sh --once`: the quick check instead, `license-agent run --once` for
# the demo phone of examples/demo/agent.toml, whose provisioning server is the bundled
# example folder (file://, licenses signed with the DEMO key): it fetches both files,
# verifies and stores them, publishes the feature set (target/demo/features) and prints
# the status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
# A fresh Debian 12 machine has no Rust: the test command's installer puts Debian's own
# (the phones' 1.85) in place first, with what the tests need (as root; idempotent).
if ! command -v cargo >/dev/null; then
    echo "demo: no cargo on this machine: installing Debian 12's Rust first (bash scripts/setup-cross.sh)"
    bash scripts/setup-cross.sh
fi
if [[ ${1:-} == --once ]]; then
    cargo build --release --quiet --locked --bin license-agent
    config=examples/demo/agent.toml
    echo "== license-agent run --once --config $config"
    target/release/license-agent run --once --config "$config"
    echo
    echo "== published feature set (target/demo/features)"
    cat target/demo/features
    exit 0
fi
cargo build --release --quiet --locked --bins --example story
target/release/examples/story target/release
