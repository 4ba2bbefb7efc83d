#!/usr/bin/env bash
# The test servers that cannot simply be apt-get installed next to the ones
# scripts/setup-cross.sh installs (test-servers/src/*.rs start them on 127.0.0.1).
#
# Servers of one kind conflict as Debian packages (vsftpd, pure-ftpd and proftpd-core
# all Provide/Conflict ftp-server; atftpd and tftpd-hpa conflict): installing one
# removes another. So the ones the tests do not install are downloaded
# (`apt-get download`) and unpacked (`dpkg-deb -x`) under SERVERS_DIR, one folder
# per package, and run from there; only plain libraries they need, which conflict
# with nothing, are apt-get installed. See shared/notes/servers.md.
#
# Idempotent: when everything is there it does nothing (not even apt-get update)
# and exits 0. Run as root on a Debian 12 (bookworm) amd64 host, after setup-cross.sh.
set -euo pipefail

log() { printf 'setup-servers: %s\n' "$*"; }
die() { printf 'setup-servers: error: %s\n' "$*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive

# Where the unpacked packages live: SERVERS_DIR/<package>/ holds the package's files
# (SERVERS_DIR/pure-ftpd/usr/sbin/pure-ftpd, ...), and .version the version unpacked.
SERVERS_DIR=/opt/license-agent-servers

# Installed version of a package ("" when not fully installed). Never fails.
installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev}|${Version}\n' "$1" 2>/dev/null |
        awk -F'|' '$1 ~ /^ii/ { print $2; exit }' || true
}

# True when the package PKG is unpacked under SERVERS_DIR and FILE (a path inside
# the package) is there.
unpacked() {
    local pkg=$1 file=$2
    [[ -s $SERVERS_DIR/$pkg/.version && -e $SERVERS_DIR/$pkg/$file ]]
}

APT_UPDATED=0
apt_update_once() {
    ((APT_UPDATED)) && return 0
    log "apt-get update"
    apt-get update -q >/dev/null 2>&1 || log "apt-get update failed partly; going on"
    APT_UPDATED=1
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (apt-get, dpkg, $SERVERS_DIR)"
}

# apt-get install the packages given (only those not installed yet).
apt_install() {
    local missing=() pkg out rc=0
    for pkg in "$@"; do
        [[ -n $(installed_version "$pkg") ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    need_root
    apt_update_once
    log "apt-get install ${missing[*]}"
    out=$(mktemp)
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >"$out" 2>&1 || rc=$?
    if ((rc != 0)); then
        tail -n 30 "$out" | sed 's/^/setup-servers:   /' >&2
        rm -f "$out"
        die "apt-get install ${missing[*]} failed (exit $rc)"
    fi
    rm -f "$out"
}

# Download PKG's .deb (apt's candidate) and unpack it into SERVERS_DIR/PKG, replacing
# what was there; FILE must be in it.
unpack() {
    local pkg=$1 file=$2 tmp deb version
    need_root
    tmp=$(mktemp -d)
    # apt-get download runs as _apt when it can: let it write there.
    chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1); then
        apt_update_once
        (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
            { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
    fi
    deb=$(find "$tmp" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
    [[ -n $deb ]] || { rm -rf "$tmp"; die "no .deb for $pkg after apt-get download"; }
    version=$(dpkg-deb -f "$deb" Version)
    mkdir -p "$SERVERS_DIR"
    rm -rf "$SERVERS_DIR/$pkg.new"
    dpkg-deb -x "$deb" "$SERVERS_DIR/$pkg.new"
    printf '%s\n' "$version" >"$SERVERS_DIR/$pkg.new/.version"
    rm -rf "$tmp"
    [[ -e $SERVERS_DIR/$pkg.new/$file ]] || die "$pkg $version has no $file"
    rm -rf "${SERVERS_DIR:?}/${pkg:?}"
    mv "$SERVERS_DIR/$pkg.new" "$SERVERS_DIR/$pkg"
    log "unpacked $pkg $version into $SERVERS_DIR/$pkg"
}

start=$SECONDS
did=0

# --- FTP and TFTP servers ---
# For test-servers/src/pure_ftpd.rs, proftpd.rs, atftpd.rs and dnsmasq_tftp.rs:
#  - pure-ftpd, proftpd-core (+ proftpd-mod-crypto: mod_tls) and atftpd unpacked under
#    SERVERS_DIR (they conflict with vsftpd / tftpd-hpa, which setup-cross installs);
#    proftpd's libraries apt-get installed (plain libraries: no conflict);
#  - dnsmasq-base installed: the dnsmasq binary without the system service (the same
#    package the phone VM's DHCP uses, shared/notes/phone-vm.md);
#  - curl, the tests' FTP/TFTP client.
FTP_UNPACK=(
    "pure-ftpd usr/sbin/pure-ftpd"
    "proftpd-core usr/sbin/proftpd"
    "proftpd-mod-crypto usr/lib/proftpd/mod_tls.so"
    "atftpd usr/sbin/atftpd"
)
FTP_LIBS=(libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3 libsodium23 libwrap0 libcap2)
FTP_PKGS=(dnsmasq-base curl)

ftp_tftp_servers() {
    local entry pkg file missing=()
    for pkg in "${FTP_LIBS[@]}" "${FTP_PKGS[@]}"; do
        [[ -n $(installed_version "$pkg") ]] || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
        did=1
    fi
    for entry in "${FTP_UNPACK[@]}"; do
        read -r pkg file <<<"$entry"
        if ! unpacked "$pkg" "$file"; then
            unpack "$pkg" "$file"
            did=1
        fi
    done
}
ftp_tftp_servers
# --- end of FTP and TFTP servers ---

if ((did)); then
    log "done in $((SECONDS - start)) s"
else
    log "everything present; nothing to do"
fi
