#!/usr/bin/env bash
# The main job on its embedded default: `license-agent run --once` for the demo phone of
# examples/demo/agent.toml, whose provisioning server is the bundled example folder
# (file://, licenses signed with the DEMO key). It fetches both files, verifies and
# stores them, publishes the feature set (target/demo/features) and prints the status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --locked --bin license-agent
config=examples/demo/agent.toml
echo "== license-agent run --once --config $config"
target/release/license-agent run --once --config "$config"
echo
echo "== published feature set (target/demo/features)"
cat target/demo/features
