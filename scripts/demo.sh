#!/usr/bin/env bash
# The main job on its embedded default: the agent checks the bundled example
# provisioning folder (signed with the DEMO key) and shows what it found.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --locked --bin license-agent
agent=target/release/license-agent
demo=examples/demo
echo "== license-agent verify --keyring $demo/keyring $demo/provisioning/*.cfg"
"$agent" verify --keyring "$demo/keyring" "$demo"/provisioning/*.cfg
echo
echo "== license-agent inspect --keyring $demo/keyring $demo/provisioning/*.cfg"
"$agent" inspect --keyring "$demo/keyring" "$demo"/provisioning/*.cfg
