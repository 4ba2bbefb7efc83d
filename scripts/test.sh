#!/usr/bin/env bash
# Everything the tests need, then every test: the README's test command and what CI runs.
# On a fresh Debian 12 machine it installs (as root, only what is missing) Debian's Rust
# 1.85 cross toolchain for armv7/aarch64, qemu-user, openssl, nginx, file, strace,
# busybox, systemd (for systemd-analyze), shellcheck, debootstrap and systemd-nspawn,
# qemu-utils, qemu-system-arm, cpio, socat, e2fsprogs, iproute2 and dnsmasq-base (the
# emulated phone and its DHCP network), tftpd-hpa
# and vsftpd (the transport tests' servers), chromium and fonts-dejavu-core (the fleet
# page rendered headless, tests/it/fleet_page.rs) and time (scripts/bench-fleet.sh);
# then (scripts/setup-servers.sh) the interoperability matrix's servers: Apache,
# lighttpd (webdav, openssl), curl and dnsmasq-base installed, pure-ftpd, proftpd and
# atftpd unpacked under /opt/license-agent-servers (they conflict with vsftpd and
# tftpd-hpa as packages), isc-dhcp-client (dhclient) for the DHCP hooks' tests, and
# softhsm2 (the PKCS#11 token of license-issuer's token keys).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
start=$SECONDS

step "install what the tests need"
bash scripts/setup-cross.sh
bash scripts/setup-servers.sh

step "shellcheck scripts/*.sh, the init script, the DHCP hooks and the phone VM's scripts"
shellcheck -x scripts/*.sh firmware/init.d/S45license-agent firmware/dhcp/udhcpc-license-agent firmware/dhcp/dhclient-license-agent phone-vm/rootfs/etc/init.d/* phone-vm/rootfs/etc/phone/control phone-vm/rootfs/etc/phone/port phone-vm/rootfs/usr/share/udhcpc/default.script

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test --workspace (host: unit tests, tests/it with license-fleet's page in headless Chromium, the xtask's tests)"
cargo test --locked --workspace

step "the last release: the store across an upgrade from it and a rollback to it, with its real binary built from history"
bash scripts/compat-check.sh

step "ARM: the vvx-armv7 binary (Debian's Rust 1.85, static) against every binary test under qemu-arm"
bash scripts/arm-check.sh

step "ARM: the library's unit tests built for armv7, run under qemu-arm"
bash scripts/arm-unit.sh

step "boards: build vvx-armv7, arm64 and host, assemble and check each firmware drop"
bash scripts/firmware-check.sh

step "phone: the vvx-armv7 drop on an emulated ARM phone (qemu-system-arm): boots, reboots, power cuts, the clock to 2106, the server from DHCP"
bash scripts/phone-check.sh

step "systemd: the host board's drop booted under a real systemd (systemd-nspawn)"
bash scripts/systemd-check.sh

step "the demo, as a newcomer runs it (bash scripts/demo.sh): it fails if the story does not happen"
bash scripts/demo.sh >"${TMPDIR:-/tmp}/license-agent-demo.log" 2>&1 || {
    cat "${TMPDIR:-/tmp}/license-agent-demo.log"
    exit 1
}
tail -n 3 "${TMPDIR:-/tmp}/license-agent-demo.log"

step "figures (no assertions): memory, check-sync and verify times, binary sizes"
bash scripts/bench.sh

step "all green in $((SECONDS - start)) s"
