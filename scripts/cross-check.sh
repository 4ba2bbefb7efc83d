#!/usr/bin/env bash
# Checks Cross.toml with the real cross-rs and a real Docker engine: `cross build` with
# no --target builds the VVX board's target (default-target), and for armv7 and
# aarch64 the result is a static binary (the crt-static flags Cross.toml hands into
# the container); for armv7 it is within the 3 MB budget, it verifies a vector under
# qemu-arm here, and `cross test --lib` passes inside the container under QEMU.
#
# NOT part of the test command (scripts/test.sh): it needs a Docker daemon, which CI
# machines need not allow, and the cross-rs images (ghcr.io/cross-rs/...), which no
# registry this project reaches serves. So the image is a stand-in with the same
# contents, made here from Debian 12: the base packages of cross-rs's docker/common.sh
# that matter here (gcc and libc6-dev for build scripts, ca-certificates, which brings
# the openssl tool a fetch test runs, file, make), the GNU cross linkers, the target's
# libc, and qemu-user as the test runner, with the environment the cross-rs images set
# (linker, C compiler for ring, runner). Everything else is Cross.toml's own: default-target,
# the passthrough variables, and cross's own plumbing (the mounted rustup toolchain,
# the cargo home, the target folder). Set CROSS_CHECK_REAL_IMAGES=1 on a machine that
# reaches ghcr.io to use the images Cross.toml names instead.
#
# Caution: cross runs `rustup toolchain add` and `rustup target add` for the active
# rustup toolchain (it downloads armv7 and aarch64 standard libraries into it); with a
# channel name such as `stable` as the default, that updates the channel.
#
# Usage (as root; installs docker.io and starts dockerd when missing):
#   bash scripts/cross-check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'cross-check: %s\n' "$*"; }
die() { printf 'cross-check: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (Docker, debootstrap, chroot)"
start=$SECONDS
work=target/cross-check
mkdir -p "$work"
cross_version=0.2.5
armv7="armv7-unknown-linux-gnueabihf"
aarch64="aarch64-unknown-linux-gnu"
budget=$(sed -n 's/^max_bytes = "\([0-9]*\)".*/\1/p' boards/vvx-armv7.toml)
[[ -n $budget ]] || die "no max_bytes in boards/vvx-armv7.toml"

# -- Docker -------------------------------------------------------------------------
if ! command -v dockerd >/dev/null; then
    log "installing docker.io"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >"$work/apt.log" 2>&1 ||
        { tail -n 20 "$work/apt.log" >&2; die "apt-get install docker.io failed"; }
fi
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $work/dockerd.log)"
    dockerd >"$work/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { tail -n 20 "$work/dockerd.log" >&2; die "dockerd did not start"; }
fi

# -- cross ------------------------------------------------------------------------------
cross=$work/tools/bin/cross
# (Not `cross --version`: it runs rustup.)
if ! grep -qs "^\"cross $cross_version " "$work/tools/.crates.toml"; then
    log "cargo install cross $cross_version"
    cargo install -q --locked cross --version "$cross_version" --root "$work/tools"
fi

# -- The stand-in image ---------------------------------------------------------------
image=license-agent-cross-standin:bookworm
if [[ ${CROSS_CHECK_REAL_IMAGES:-0} != 1 ]] && ! docker image inspect "$image" >/dev/null 2>&1; then
    base=target/systemd-root/base # made by scripts/systemd-check.sh; made here if missing
    if [[ ! -e $base/.complete ]]; then
        log "debootstrap bookworm (minbase) into $base"
        rm -rf "$base"
        debootstrap --variant=minbase bookworm "$base" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
            >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
        touch "$base/.complete"
    fi
    root=$work/image-root
    rm -rf "$root"
    cp -a "$base" "$root"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    log "installing the cross linkers and qemu-user into the image root"
    chroot "$root" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev ca-certificates file make gcc-arm-linux-gnueabihf libc6-dev-armhf-cross gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user && apt-get clean' \
        >"$work/image-apt.log" 2>&1 || { tail -n 20 "$work/image-apt.log" >&2; die "apt-get in the image root failed"; }
    # What the cross-rs images set, for these two targets.
    env_changes=()
    for pair in "$armv7 arm-linux-gnueabihf qemu-arm" "$aarch64 aarch64-linux-gnu qemu-aarch64"; do
        read -r triple gnu qemu <<<"$pair"
        upper=$(tr 'a-z-' 'A-Z_' <<<"$triple")
        lower=${triple//-/_}
        env_changes+=(--change "ENV CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
            --change "ENV CC_${lower}=$gnu-gcc" --change "ENV AR_${lower}=$gnu-ar"
            --change "ENV CARGO_TARGET_${upper}_RUNNER=$qemu")
    done
    tar -C "$root" -cf - . | docker import "${env_changes[@]}" - "$image" >/dev/null
    rm -rf "$root"
    log "image $image made"
fi
overrides=()
if [[ ${CROSS_CHECK_REAL_IMAGES:-0} != 1 ]]; then
    # cross's own override of Cross.toml's image key, per target.
    overrides=("CROSS_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_IMAGE=$image"
        "CROSS_TARGET_AARCH64_UNKNOWN_LINUX_GNU_IMAGE=$image")
fi

# -- Builds and tests through cross ---------------------------------------------------
# Crates are fetched here, so the container needs no network (cross mounts ~/.cargo).
cargo fetch -q --locked
# The target folder through CARGO_TARGET_DIR, not --target-dir: cross 0.2.5 takes any
# argument starting with "--target" for a target and then ignores default-target.
targets=$PWD/$work/target
run_cross() {
    env "${overrides[@]}" CROSS_CONTAINER_ENGINE=docker CARGO_TARGET_DIR="$targets" \
        "$cross" "$@" --locked --offline
}

log "cross build --release (no --target: Cross.toml's default-target)"
run_cross build -q --release --bin license-agent
armv7_bin=$targets/$armv7/release/license-agent
[[ -x $armv7_bin ]] || die "no $armv7_bin: default-target is not $armv7"
log "cross build --release --target $aarch64"
run_cross build -q --release --bin license-agent --target "$aarch64"
aarch64_bin=$targets/$aarch64/release/license-agent

for pair in "$armv7_bin ARM," "$aarch64_bin ARM aarch64"; do
    read -r bin arch <<<"$pair"
    description=$(file -b "$bin")
    grep -q "$arch" <<<"$description" || die "$bin is not $arch: $description"
    grep -q "statically linked" <<<"$description" || die "$bin is not static: $description"
    log "ok: $bin: $(stat -c %s "$bin") bytes, $description"
done
size=$(stat -c %s "$armv7_bin")
((size <= budget)) || die "$armv7_bin is $size bytes, over the budget of $budget"
verdict=$(qemu-arm -cpu cortex-a9 "$armv7_bin" verify --keyring tests/vectors/keyring \
    tests/vectors/valid-site-two-features.cfg)
grep -q "valid" <<<"$verdict" || die "the cross-built armv7 binary under qemu-arm: $verdict"
log "ok: the armv7 binary under qemu-arm -cpu cortex-a9: $verdict"

log "cross test --lib --target $armv7 (in the container, under QEMU with Cross.toml's QEMU_CPU)"
run_cross test -q --lib --target "$armv7" >"$work/test.log" 2>&1 ||
    { grep -v '^\.*$' "$work/test.log" | tail -n 40 >&2; die "cross test failed (log: $work/test.log)"; }
grep '^test result' "$work/test.log"
log "ok: Cross.toml works with cross $cross_version, in $((SECONDS - start)) s"
