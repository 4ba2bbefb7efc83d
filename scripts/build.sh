#!/usr/bin/env bash
# The build entry point per board: reads boards/BOARD.toml, builds the statically linked
# release `license-agent` for the board's target, strips it, reports its size in bytes
# and MB (and fails when it is over the board's budget: an armv7 binary may never exceed
# 3,000,000 bytes, issue 6), checks that it starts on the board's CPU (under QEMU for
# ARM), then assembles the firmware drop in target/firmware/BOARD/: a tree laid out as
# the phone's root file system (binary, generated agent.toml, init script or systemd
# unit, docs), to be copied into the firmware image. See firmware/README.md.
#
# Usage: scripts/build.sh [--keyring FILE] [--no-assemble] BOARD
#   BOARD          a name from boards/ (vvx-armv7, arm64, host) or a path to a board file
#   --keyring FILE put FILE into the drop as the keyring (the production keyring; by
#                  default the drop has none, so an image without one fails loudly)
#   --no-assemble  build and check the binary only
#
# ARM targets are built with Debian's Rust 1.85 (scripts/build-arm.sh, output in
# target/debian/); the host board with the host cargo, static glibc
# (-C target-feature=+crt-static, output in target/x86_64-unknown-linux-gnu/).
set -euo pipefail

log() { printf 'build: %s\n' "$*"; }
die() {
    printf 'build: error: %s\n' "$*" >&2
    exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"

# Every armv7 binary, whatever its board file says (issue 6: "at most 3 MB").
ARMV7_MAX_BYTES=3000000

keyring_src="" assemble=1 board_arg=""
while (($#)); do
    case $1 in
        --keyring)
            (($# >= 2)) || die "--keyring needs a file"
            keyring_src=$(realpath -e "$2") || die "no keyring file $2"
            shift 2
            ;;
        --no-assemble)
            assemble=0
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            [[ -z $board_arg ]] || die "one board only"
            board_arg=$1
            shift
            ;;
    esac
done
# shellcheck source=scripts/board.sh
source "$script_dir/board.sh"
[[ -n $board_arg ]] || die "usage: scripts/build.sh [--keyring FILE] [--no-assemble] BOARD (boards: $(board_names "$repo_root"))"
board_load "$board_arg" "$repo_root" || die "unusable board file"
cd "$repo_root"
board=${B[name]}
target=${B[target]}
log "board $board ($BOARD_FILE): ${B[description]}"
if [[ -n $keyring_src ]]; then
    # The demo key's private half is public (examples/demo): never on a phone.
    demo_key=$(awk '$1 == "ed25519" { print $2; exit }' "$repo_root/examples/demo/keyring" 2>/dev/null || true)
    if [[ -n $demo_key ]] && grep -qi -- "$demo_key" "$keyring_src"; then
        [[ $target == x86_64-* ]] || die "$keyring_src trusts the DEMO key (its private key is public): never in a phone's firmware"
        log "warning: $keyring_src trusts the DEMO key: for a development machine only"
    fi
fi

# -- Build ----------------------------------------------------------------------------
# Exactly the transports the board ships (cargo features; folders always work).
features=(--no-default-features --features "${B[transports]// /,}")
log "transports: ${B[transports]}"
# The board's name goes into the binary: the status report says what was built.
export LICENSE_AGENT_BOARD=$board
start=$SECONDS
case $target in
    armv7-unknown-linux-gnueabihf | aarch64-unknown-linux-gnu)
        bash "$script_dir/build-arm.sh" "$target" "${features[@]}"
        bin=$repo_root/target/debian/$target/release/license-agent
        case $target in
            armv7*) strip_tool=arm-linux-gnueabihf-strip ;;
            *) strip_tool=aarch64-linux-gnu-strip ;;
        esac
        ;;
    x86_64-unknown-linux-gnu)
        [[ $(uname -m) == x86_64 ]] || die "the host board builds on an x86_64 machine"
        for var in RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR; do
            if [[ -n ${!var+x} ]]; then
                log "ignoring $var=${!var}"
                unset "$var"
            fi
        done
        # With an explicit --target the flags reach only the agent, not build scripts.
        export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
        log "$(cargo --version), $(rustc --version); CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='$CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS'"
        cargo build --release --locked --target "$target" --bin license-agent "${features[@]}"
        bin=$repo_root/target/$target/release/license-agent
        strip_tool="strip"
        ;;
    *) die "no build for target $target" ;;
esac
[[ -f $bin ]] || die "build finished but $bin is missing"
log "built in $((SECONDS - start)) s: $bin"

info=$(file -b "$bin")
case $info in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$bin is not statically linked: $info" ;;
esac
if [[ $info == *"not stripped"* ]]; then
    log "stripping with $strip_tool"
    "$strip_tool" "$bin"
fi
log "file: $(file -b "$bin")"

bytes=$(stat -c %s "$bin")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1000000 }')
max=${B[max_bytes]}
[[ $target == armv7-* ]] && { [[ -z $max ]] || ((max > ARMV7_MAX_BYTES)); } && max=$ARMV7_MAX_BYTES
if [[ -n $max ]]; then
    if ((bytes > max)); then
        printf 'license-agent %s (%s): %s bytes (%s MB), OVER the budget of %s bytes\n' "$board" "$target" "$bytes" "$mb" "$max"
        die "the binary is $((bytes - max)) bytes over the budget of $max bytes"
    fi
    budget="budget $max bytes: ok, $((max - bytes)) bytes to spare"
else
    budget="no budget set"
fi
printf 'license-agent %s (%s): %s bytes (%s MB), stripped, static; %s\n' "$board" "$target" "$bytes" "$mb" "$budget"

# It starts on the board's CPU.
runner=()
[[ -n ${B[qemu]} ]] && runner=("${B[qemu]}" -cpu "${B[qemu_cpu]}")
version=$("${runner[@]}" "$bin" --version) || die "$bin --version failed${runner:+ under ${runner[*]}}"
log "runs${runner:+ under ${runner[*]}}: $version"

((assemble)) || exit 0

# -- Firmware drop ----------------------------------------------------------------------
drop=$repo_root/target/firmware/$board
rm -rf -- "$drop"
mkdir -p "$drop"
put() { # put MODE SOURCE PATH-ON-PHONE
    install -D -m "$1" "$2" "$drop$3"
}

put 0755 "$bin" "${B[binary]}"
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
board_config >"$tmp/agent.toml"
put 0644 "$tmp/agent.toml" "${B[config]}"
if [[ -n $keyring_src ]]; then
    put 0644 "$keyring_src" "${B[keyring]}"
    keyring_note="keyring from $keyring_src"
else
    keyring_note="NO keyring in the drop: the image must provide ${B[keyring]} (the production keyring)"
fi
case ${B[init]} in
    sysv)
        board_render "$repo_root/firmware/init.d/S45license-agent" >"$tmp/S45license-agent"
        put 0755 "$tmp/S45license-agent" /etc/init.d/S45license-agent
        ;;
    systemd)
        board_render "$repo_root/firmware/systemd/license-agent.service" >"$tmp/license-agent.service"
        put 0644 "$tmp/license-agent.service" /lib/systemd/system/license-agent.service
        mkdir -p "$drop/etc/systemd/system/multi-user.target.wants"
        ln -s /lib/systemd/system/license-agent.service "$drop/etc/systemd/system/multi-user.target.wants/license-agent.service"
        ;;
esac
doc=/usr/share/doc/license-agent
put 0644 "$repo_root/firmware/README.md" "$doc/README.md"
put 0644 "$repo_root/src/config/example.toml" "$doc/agent.toml.example"
put 0644 "$BOARD_FILE" "$doc/board.toml"
{
    printf 'board        %s (%s)\n' "$board" "${B[description]}"
    printf 'target       %s\n' "$target"
    printf 'version      %s\n' "$version"
    printf 'commit       %s\n' "$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo unknown)"
    printf 'binary       %s: %s bytes (%s MB), sha256 %s\n' "${B[binary]}" "$bytes" "$mb" "$(sha256sum "$bin" | cut -d' ' -f1)"
    printf 'keyring      %s\n' "$keyring_note"
    printf 'built        %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$tmp/BUILD-INFO"
put 0644 "$tmp/BUILD-INFO" "$doc/BUILD-INFO"

log "firmware drop for $board: $drop"
(cd "$drop" && find . -mindepth 1 | sort | while read -r f; do
    if [[ -L $f ]]; then
        printf '  %-60s -> %s\n' "${f#./}" "$(readlink "$f")"
    elif [[ -d $f ]]; then
        printf '  %s/\n' "${f#./}"
    else
        printf '  %-60s %s %9s bytes\n' "${f#./}" "$(stat -c %a "$f")" "$(stat -c %s "$f")"
    fi
done)
[[ -n $keyring_src ]] || log "warning: $keyring_note"
