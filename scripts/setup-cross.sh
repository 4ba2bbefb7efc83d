#!/usr/bin/env bash
# Install Debian 12's own Rust toolchain as a cross compiler for the ARM desk
# phones (armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-gnu), the GNU
# cross linkers, qemu-user to run the results, openssl + nginx for tests, and for the
# firmware check (scripts/firmware-check.sh): busybox (the phones' ash and
# start-stop-daemon, to run the init script), systemd (only for `systemd-analyze
# verify` of the unit; it works without systemd running, e.g. in a container), the
# shell linter (package shellcheck), and for scripts/systemd-check.sh debootstrap and
# systemd-nspawn (package systemd-container), to boot the unit under a real systemd,
# qemu-io (package qemu-utils), QEMU's own NBD client, with which
# tests/it/flash_model.rs checks the flash model of tests/it/common/nbd.rs, and for the
# emulated phone (scripts/phone-image.sh, tests/it/phone.rs) qemu-system-arm, cpio (the
# initramfs), socat (QEMU's guestfwd to nginx) and e2fsprogs (mkfs.ext4, the flash),
# and for its DHCP network (tests/it/phone_dhcp.rs) iproute2 (`ip netns`, the tap) and
# dnsmasq-base (the dnsmasq binary without the system service: the phone's DHCP and DNS),
# and the provisioning servers other than nginx that the transport tests start on
# 127.0.0.1 (tests/it/transports.rs): tftpd-hpa and vsftpd, with vsftpd's test user (a
# system user with a password, no login shell use) and the PAM service it checks the
# password with (test-servers/src/ftp.rs); chromium and fonts-dejavu-core, in which
# tests/it/fleet_page.rs renders license-fleet's HTML page (headless) and screenshots it, and
# time (/usr/bin/time: license-fleet's peak memory in scripts/bench-fleet.sh).
#
# Idempotent: when everything is already installed it does nothing (not even
# apt-get update) and exits 0. Run as root on a Debian 12 (bookworm) amd64 host.
#
# Why it looks like this (see shared/notes/cross-toolchain.md):
#  - the host compiler (rustc-web, cargo-web) and every foreign-arch standard
#    library (libstd-rust-web-dev:armhf/:arm64) must be the same version V, and
#    the security suite's armhf index sometimes fails to download, so V is the
#    best version apt offers for libstd-rust-web-dev:armhf that amd64 and arm64
#    offer too, in the 1.85 series: the Rust the phones' builds use, which is also
#    Cargo.toml's rust-version, so the ARM builds prove it (the security suite
#    offered 1.96 from late 2026);
#  - every QEMU package comes from one source package at one version: a machine
#    image with a newer qemu-utils (e.g. from backports) would make qemu-system-arm
#    uninstallable, so qemu-utils is pinned to apt's version for qemu-system-arm;
#  - the armhf std pulls libllvm -> libxml2 -> liblzma5:armhf, which must equal
#    the amd64 liblzma5 (multi-arch: same), so liblzma5 (all arches) and
#    liblzma-dev (if installed) are pinned to the armhf version.
set -euo pipefail

log() { printf 'setup-cross: %s\n' "$*"; }
die() { printf 'setup-cross: error: %s\n' "$*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive

NATIVE_ARCH=amd64
FOREIGN_ARCHES=(armhf arm64)
RUST_SERIES=1.85
RUST_PKGS=(rustc-web cargo-web "libstd-rust-web-dev:$NATIVE_ARCH" libstd-rust-web-dev:armhf libstd-rust-web-dev:arm64)
QEMU_PKGS=(qemu-utils qemu-system-arm)
TOOL_PKGS=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user openssl nginx file strace busybox systemd shellcheck debootstrap systemd-container cpio socat e2fsprogs iproute2 dnsmasq-base tftpd-hpa vsftpd chromium fonts-dejavu-core time)
TOOL_BINS=(/usr/bin/rustc /usr/bin/cargo /usr/bin/arm-linux-gnueabihf-gcc /usr/bin/aarch64-linux-gnu-gcc /usr/bin/qemu-arm /usr/bin/qemu-aarch64 /usr/bin/openssl /usr/sbin/nginx /usr/bin/file /usr/bin/strace /bin/busybox /usr/bin/systemd-analyze /usr/bin/shellcheck /usr/sbin/debootstrap /usr/bin/systemd-nspawn /usr/bin/qemu-io /usr/bin/qemu-system-arm /usr/bin/cpio /usr/bin/socat /sbin/mkfs.ext4 /sbin/ip /usr/sbin/dnsmasq /usr/sbin/in.tftpd /usr/sbin/vsftpd /usr/bin/chromium /usr/bin/time)
RUST_STD_DIRS=(/usr/lib/rustlib/armv7-unknown-linux-gnueabihf/lib /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib)

# Installed version of a package ("" when not fully installed). Never fails.
installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev}|${Version}\n' "$1" 2>/dev/null |
        awk -F'|' '$1 ~ /^ii/ { print $2; exit }' || true
}

# Print what is missing; return 0 only when everything is in place.
check_present() {
    local missing=() arch pkg v f rust_v=""
    local foreign
    foreign=$(dpkg --print-foreign-architectures)
    for arch in "${FOREIGN_ARCHES[@]}"; do
        grep -qx "$arch" <<<"$foreign" || missing+=("architecture $arch")
    done
    for pkg in "${RUST_PKGS[@]}"; do
        v=$(installed_version "$pkg")
        if [[ -z $v ]]; then
            missing+=("$pkg")
        elif [[ -z $rust_v ]]; then
            rust_v=$v
            [[ $v == "$RUST_SERIES".* ]] || missing+=("$pkg $RUST_SERIES (has $v)")
        elif [[ $v != "$rust_v" ]]; then
            missing+=("$pkg at $rust_v (has $v)")
        fi
    done
    for pkg in "${TOOL_PKGS[@]}" "${QEMU_PKGS[@]}"; do
        [[ -n $(installed_version "$pkg") ]] || missing+=("$pkg")
    done
    for f in "${TOOL_BINS[@]}"; do
        [[ -x $f ]] || missing+=("$f")
    done
    for f in "${RUST_STD_DIRS[@]}"; do
        [[ -d $f ]] || missing+=("$f")
    done
    if ((${#missing[@]})); then
        log "missing: ${missing[*]}"
        return 1
    fi
    RUST_VERSION=$rust_v
    return 0
}

# Versions apt offers for PKG (may be arch-qualified), best first.
apt_versions() {
    apt-cache policy "$1" 2>/dev/null | awk '
        /Version table:/ { t = 1; next }
        t && $1 == "***" && NF == 3 { print $2; next }
        t && /^     [^ ]/ && NF == 2 { print $1 }' || true
}

apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/^ +Candidate:/ { print $2; exit }' || true
}

# The version of PKG to install on all of amd64, armhf, arm64: apt's candidate
# for PKG:armhf if amd64 and arm64 offer it too, else the best armhf version
# that all three offer; with SERIES (e.g. 1.85), only versions SERIES.*.
common_version() {
    local pkg=$1 series=${2:-} cand v
    local -a armhf_vs
    cand=$(apt_candidate "$pkg:armhf")
    [[ -n $cand && $cand != "(none)" ]] || return 1
    mapfile -t armhf_vs < <(printf '%s\n' "$cand"; apt_versions "$pkg:armhf")
    local amd64_vs arm64_vs
    amd64_vs=$(apt_versions "$pkg:$NATIVE_ARCH")
    arm64_vs=$(apt_versions "$pkg:arm64")
    for v in "${armhf_vs[@]}"; do
        [[ -z $series || $v == "$series".* ]] || continue
        if grep -qxF -- "$v" <<<"$amd64_vs" && grep -qxF -- "$v" <<<"$arm64_vs"; then
            printf '%s\n' "$v"
            return 0
        fi
    done
    return 1
}

# apt-get update that tolerates a partly failed update (the security suite's
# armhf index is known to fail with "File has unexpected size ... Mirror sync
# in progress?"), but fails when no index at all could be fetched or checked.
apt_update() {
    local out rc=0 ok errs
    out=$(mktemp)
    apt-get update >"$out" 2>&1 || rc=$?
    # Items are numbered: Hit:N / Get:N succeeded unless an Err:N follows.
    ok=$(awk '
        /^(Hit|Get):[0-9]+ / { split($1, a, ":"); good[a[2]] = 1 }
        /^Err:[0-9]+ /       { split($1, a, ":"); bad[a[2]] = 1 }
        END { n = 0; for (k in good) if (!(k in bad)) n++; print n }' "$out")
    errs=$(grep -E '^(Err:|E:|W:)' "$out" || true)
    if ((ok == 0)); then
        cat "$out" >&2
        rm -f "$out"
        die "apt-get update could not update any index (exit $rc)"
    fi
    if [[ $rc -ne 0 || -n $errs ]]; then
        log "apt-get update partly failed (exit $rc, $ok indexes fine); going on:"
        grep -E -A1 '^Err:' "$out" | sed 's/^/setup-cross:   /' || true
        grep -E '^(E|W):' "$out" | sed 's/^/setup-cross:   /' || true
        if grep -E '^Err:' "$out" | grep -vq -- '-security'; then
            log "warning: a failure is not in the security suite; the version checks below decide"
        fi
    else
        log "apt-get update ok ($ok indexes)"
    fi
    rm -f "$out"
}

start=$SECONDS

# The FTP tests' user and PAM service (test-servers/src/ftp.rs): made when missing, password
# set every time (so a machine image's copy cannot differ).
FTP_USER=lagent-ftp
FTP_PASSWORD=ftp-Secret-1
FTP_PAM=/etc/pam.d/license-agent-test-ftp
ftp_test_user() {
    [[ $(id -u) -eq 0 ]] || { log "not root: the FTP test user is not made"; return 0; }
    if ! id "$FTP_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$FTP_USER"
        log "made the FTP test user $FTP_USER"
    fi
    printf '%s:%s\n' "$FTP_USER" "$FTP_PASSWORD" | chpasswd
    # nodelay: a wrong password is answered at once (the tests' fetches have 3 s).
    local pam='auth required pam_unix.so nodelay
account required pam_unix.so
session required pam_permit.so'
    if [[ $(cat "$FTP_PAM" 2>/dev/null) != "$pam" ]]; then
        printf '%s\n' "$pam" >"$FTP_PAM"
        log "wrote the PAM service $FTP_PAM"
    fi
}
ftp_test_user

if check_present; then
    log "everything present: rustc-web/cargo-web/libstd-rust-web-dev (amd64, armhf, arm64) $RUST_VERSION, cross gcc, qemu-user, openssl, nginx, busybox, systemd-analyze, shellcheck, debootstrap, systemd-nspawn, qemu-io, qemu-system-arm, cpio, socat, mkfs.ext4, ip, dnsmasq, in.tftpd, vsftpd, chromium, time; nothing to do"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get, dpkg)"
[[ $(dpkg --print-architecture) == "$NATIVE_ARCH" ]] ||
    die "host architecture is $(dpkg --print-architecture); this script supports $NATIVE_ARCH hosts only"
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    [[ $codename == bookworm ]] || log "warning: made for Debian 12 (bookworm), this is '${codename:-unknown}'"
fi

foreign=$(dpkg --print-foreign-architectures)
for arch in "${FOREIGN_ARCHES[@]}"; do
    if ! grep -qx "$arch" <<<"$foreign"; then
        log "dpkg --add-architecture $arch"
        dpkg --add-architecture "$arch"
    fi
done

log "apt-get update"
apt_update

V=$(common_version libstd-rust-web-dev "$RUST_SERIES") ||
    die "no $RUST_SERIES version of libstd-rust-web-dev is offered for all of $NATIVE_ARCH, armhf and arm64 (apt-cache policy libstd-rust-web-dev:armhf)"
for pkg in "rustc-web:$NATIVE_ARCH" "cargo-web:$NATIVE_ARCH"; do
    apt_versions "$pkg" | grep -qxF -- "$V" || die "$pkg $V is not offered (apt-cache policy $pkg)"
done
log "Rust version V=$V (apt's best $RUST_SERIES version for libstd-rust-web-dev:armhf)"

pkgs=(
    "rustc-web=$V" "cargo-web=$V"
    "libstd-rust-web-dev=$V" "libstd-rust-web-dev:armhf=$V" "libstd-rust-web-dev:arm64=$V"
    "${TOOL_PKGS[@]}"
)

VQ=$(apt_candidate qemu-system-arm)
[[ -n $VQ && $VQ != "(none)" ]] || die "qemu-system-arm is not offered (apt-cache policy qemu-system-arm)"
for pkg in "${QEMU_PKGS[@]}"; do
    apt_versions "$pkg" | grep -qxF -- "$VQ" || die "$pkg $VQ is not offered, cannot match qemu-system-arm"
    pkgs+=("$pkg=$VQ")
done
log "pinning ${QEMU_PKGS[*]} to $VQ (apt's version for qemu-system-arm)"

VL=$(common_version liblzma5) ||
    die "no version of liblzma5 is offered for all of $NATIVE_ARCH, armhf and arm64"
pkgs+=("liblzma5=$VL" "liblzma5:armhf=$VL" "liblzma5:arm64=$VL")
pinned="liblzma5 (amd64, armhf, arm64)"
if [[ -n $(installed_version "liblzma-dev:$NATIVE_ARCH") ]]; then
    apt_versions "liblzma-dev:$NATIVE_ARCH" | grep -qxF -- "$VL" ||
        die "liblzma-dev $VL is not offered, cannot match liblzma5"
    pkgs+=("liblzma-dev=$VL")
    pinned+=", liblzma-dev"
fi
log "pinning $pinned to $VL (apt's version for liblzma5:armhf)"

# Do not start nginx (or anything else) as a service while installing.
policy_rc=/usr/sbin/policy-rc.d
if [[ ! -e $policy_rc ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod 755 "$policy_rc"
    trap 'rm -f "$policy_rc"' EXIT
fi

log "apt-get install ${pkgs[*]}"
aptlog=$(mktemp)
rc=0
apt-get install -y -q --no-install-recommends --allow-downgrades \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${pkgs[@]}" >"$aptlog" 2>&1 || rc=$?
if ((rc != 0)); then
    tail -n 40 "$aptlog" | sed 's/^/setup-cross:   /' >&2
    rm -f "$aptlog"
    die "apt-get install failed (exit $rc)"
fi
grep -E '^[0-9]+ upgraded, ' "$aptlog" | sed 's/^/setup-cross:   /' || true
rm -f "$aptlog"

check_present || die "installation finished but something is still missing"
log "installed: $(/usr/bin/rustc --version), $(/usr/bin/cargo --version)"
log "done in $((SECONDS - start)) s"
