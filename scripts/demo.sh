#!/usr/bin/env bash
# The main job on its embedded default: the phone of examples/demo/agent.toml takes the
# bundled example provisioning folder (signed with the DEMO key) and shows its status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --locked --bin license-agent
agent=target/release/license-agent
demo=examples/demo
config=$demo/agent.toml

echo "== license-agent verify --keyring $demo/keyring $demo/provisioning/*.cfg"
"$agent" verify --keyring "$demo/keyring" "$demo"/provisioning/*.cfg
for file in "$demo"/provisioning/000000000000-license.cfg "$demo"/provisioning/0004f2000001-license.cfg; do
    echo
    echo "== license-agent install --config $config $file"
    "$agent" install --config "$config" "$file"
done
echo
echo "== license-agent status --config $config"
"$agent" status --config "$config"
