#!/usr/bin/env bash
# The ARM check: build the static armv7 release binary with Debian's Rust 1.85 (the
# vvx-armv7 board: size printed, 3 MB budget enforced), then show that under qemu-arm
# (Cortex-A9, the VVX class) it gives every vector the same verdict as the host binary,
# byte for byte, and passes every test suite that drives the agent binary: the CLI,
# install/status, robustness, and the whole end-to-end suite of the daemon (fetching
# from nginx over HTTP, HTTPS and mutual TLS, from vsftpd over FTP and FTPS, from
# tftpd-hpa over TFTP directly and
# through a lossy relay, a list of servers, faults, the control socket, the supervisor
# link and every reboot scenario) with its liveness (stalled fetches, silent clients,
# signals, seeded interleavings). The tests run on the host and start the agent as
# `qemu-arm -cpu cortex-a9 <armv7 binary>` (no binfmt_misc here: an ARM program cannot
# start another one). Needs what scripts/setup-cross.sh installs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'arm-check: %s\n' "$*"; }

target=armv7-unknown-linux-gnueabihf
bash scripts/build.sh --no-assemble vvx-armv7
arm_bin=target/debian/$target/release/license-agent
runner="qemu-arm -cpu cortex-a9"

cargo build --release --quiet --locked --bin license-agent
host_bin=target/release/license-agent

dirs=(tests/vectors)
[[ -f ../shared/vectors/keyring ]] && dirs+=(../shared/vectors)
for dir in "${dirs[@]}"; do
    files=("$dir"/*.cfg)
    host_out=$(mktemp) arm_out=$(mktemp)
    host_rc=0 arm_rc=0
    "$host_bin" verify --json --keyring "$dir/keyring" "${files[@]}" >"$host_out" || host_rc=$?
    # shellcheck disable=SC2086 # the runner is words
    $runner "$arm_bin" verify --json --keyring "$dir/keyring" "${files[@]}" >"$arm_out" || arm_rc=$?
    if ! diff -u "$host_out" "$arm_out"; then
        log "FAIL: armv7 and host verdicts differ for $dir"
        exit 1
    fi
    [[ $host_rc -eq $arm_rc ]] || { log "FAIL: exit status host $host_rc, armv7 $arm_rc"; exit 1; }
    log "$dir: ${#files[@]} files, armv7 output identical to host (exit $arm_rc)"
    rm -f "$host_out" "$arm_out"
done

log "binary-driving tests against the armv7 binary under $runner"
start=$SECONDS
LICENSE_AGENT_BIN=$arm_bin LICENSE_AGENT_RUNNER=$runner \
    cargo test --locked --test it -- vectors:: cli:: install_status:: daemon:: reboots:: \
    liveness:: neighbours:: config_paths:: report_upload:: hostile:: fault_suite:: transports:: \
    renewals:: interop:: \
    robustness::the_binary_never_panics robustness::neither_binary_panics
log "ok: armv7 binary tests in $((SECONDS - start)) s"
