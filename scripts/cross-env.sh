# shellcheck shell=bash
# Sourced, not run: the environment for building with Debian's own Rust 1.85 (installed
# by scripts/setup-cross.sh) for an ARM phone target. One place for it, shared by
# build-arm.sh (release binary; `cargo xtask build` runs it for ARM boards) and
# arm-unit.sh (unit tests under qemu).
#
#   source scripts/cross-env.sh
#   cross_env TARGET REPO_ROOT   # exports; sets CROSS_GNU (e.g. arm-linux-gnueabihf)
#
# Why (see shared/notes/cross-toolchain.md): rustup's cargo comes first on PATH but has
# no ARM standard library, so /usr/bin/cargo and /usr/bin/rustc are used by full path;
# ring compiles C and assembly, so CC/AR point at the GNU cross tools; the binaries are
# statically linked (crt-static) so they do not depend on the phone's glibc. The output
# goes to target/debian/ so rustup's host builds in target/ are left alone.

# Sets CROSS_GNU (GNU triplet), CROSS_UPPER (target for CARGO_TARGET_<X>_* names) and
# CROSS_ENV_SUMMARY (what was set, for the log). Returns 1 when something is missing.
cross_env() {
    local target=$1 repo_root=$2 var upper lower tool
    case $target in
        armv7-unknown-linux-gnueabihf) CROSS_GNU=arm-linux-gnueabihf ;;
        aarch64-unknown-linux-gnu) CROSS_GNU=aarch64-linux-gnu ;;
        *)
            printf 'cross-env: error: unsupported target %s (armv7-unknown-linux-gnueabihf or aarch64-unknown-linux-gnu)\n' "$target" >&2
            return 1
            ;;
    esac
    for tool in /usr/bin/cargo /usr/bin/rustc "/usr/bin/$CROSS_GNU-gcc" "/usr/bin/$CROSS_GNU-ar" "/usr/lib/rustlib/$target/lib"; do
        if [[ ! -e $tool ]]; then
            printf 'cross-env: error: %s is missing: run scripts/setup-cross.sh first\n' "$tool" >&2
            return 1
        fi
    done

    # Debian's toolchain, not rustup's proxies in ~/.cargo/bin.
    export PATH="/usr/bin:$PATH"
    export RUSTC=/usr/bin/rustc
    export RUSTDOC=/usr/bin/rustdoc
    export CARGO_TARGET_DIR="$repo_root/target/debian"
    # RUSTFLAGS would override the per-target flags below and also hit host build
    # scripts; drop them (and a rustup-specific toolchain choice).
    for var in RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET RUSTUP_TOOLCHAIN; do
        if [[ -n ${!var+x} ]]; then
            printf 'cross-env: ignoring %s=%s\n' "$var" "${!var}" >&2
            unset "$var"
        fi
    done

    upper=$(tr 'a-z-' 'A-Z_' <<<"$target") # ARMV7_UNKNOWN_LINUX_GNUEABIHF
    lower=${target//-/_}                    # armv7_unknown_linux_gnueabihf
    export "CARGO_TARGET_${upper}_LINKER=$CROSS_GNU-gcc"
    local rustflags="-C target-feature=+crt-static"
    # armv7: Thumb-2 code for the agent and every crate built here (Debian's std stays
    # A32; the linker interworks). Measured: 2,668,584 -> 2,201,640 bytes (-17.5 %).
    # rustc warns that thumb-mode is an unstable target feature: it is LLVM's
    # long-standing Thumb-2 code generation, fixed here by the pinned 1.85, and every
    # test of the armv7 binary (arm-check, arm-unit, the phone VM) runs on it.
    [[ $target == armv7-* ]] && rustflags+=" -C target-feature=+thumb-mode"
    export "CARGO_TARGET_${upper}_RUSTFLAGS=$rustflags"
    export "CC_${lower}=$CROSS_GNU-gcc"
    export "AR_${lower}=$CROSS_GNU-ar"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    CROSS_ENV_SUMMARY="RUSTC=$RUSTC CARGO_TARGET_DIR=$CARGO_TARGET_DIR CARGO_TARGET_${upper}_LINKER=$CROSS_GNU-gcc CARGO_TARGET_${upper}_RUSTFLAGS='$rustflags' CC_${lower}=$CROSS_GNU-gcc AR_${lower}=$CROSS_GNU-ar"
    # shellcheck disable=SC2034
    CROSS_UPPER=$upper
}
