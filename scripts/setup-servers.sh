#!/usr/bin/env bash
# The provisioning servers the tests start on 127.0.0.1 besides those of
# scripts/setup-cross.sh (test-servers/src/*.rs), and the DHCP clients of the hooks'
# tests, one section per kind below, each self-contained: it checks what it needs and
# installs only what is missing.
#
# The tests run each server from a configuration of their own, on ports they choose; the
# packages' system services are not wanted: nothing is started while installing (a
# policy-rc.d that refuses, as in setup-cross.sh), and a section disables at boot, and
# stops if running, the services its packages enable (they would take port 80).
#
# Servers of one kind conflict as Debian packages (vsftpd, pure-ftpd and proftpd-core
# all Provide/Conflict ftp-server; atftpd and tftpd-hpa conflict): installing one
# removes another. So the FTP and TFTP servers the tests do not install are downloaded
# (`apt-get download`) and unpacked (`dpkg-deb -x`) under SERVERS_DIR, one folder per
# package, and run from there; only plain libraries they need, which conflict with
# nothing, are apt-get installed (../shared/notes/servers.md).
#
# Idempotent: when everything is there it changes nothing (no apt-get update) and
# exits 0. Run as root on Debian 12 (bookworm), after scripts/setup-cross.sh.
set -euo pipefail

log() { printf 'setup-servers: %s\n' "$*"; }
die() { printf 'setup-servers: error: %s\n' "$*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive

# Installed version of a package ("" when not fully installed). Never fails.
installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev}|${Version}\n' "$1" 2>/dev/null |
        awk -F'|' '$1 ~ /^ii/ { print $2; exit }' || true
}

# Prints the packages among "$@" that are not installed.
missing_packages() {
    local pkg
    for pkg in "$@"; do
        [[ -n $(installed_version "$pkg") ]] || printf '%s\n' "$pkg"
    done
}

# Prints the paths among "$@" that do not exist.
missing_files() {
    local f
    for f in "$@"; do
        [[ -e $f ]] || printf '%s\n' "$f"
    done
}

# A policy-rc.d refusing every start while installing (removed on exit if ours).
POLICY_RC=/usr/sbin/policy-rc.d
no_service_starts() {
    [[ -e $POLICY_RC ]] && return 0
    printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    trap 'rm -f "$POLICY_RC"' EXIT
}

# apt-get install "$@" without starting services; apt-get update (once) only if the
# first attempt fails (setup-cross.sh has just updated the indexes).
APT_UPDATED=0
install_packages() {
    [[ $(id -u) -eq 0 ]] || die "must run as root to install: $*"
    no_service_starts
    local aptlog rc=0
    aptlog=$(mktemp)
    local -a apt=(apt-get install -y -q --no-install-recommends
        -o DPkg::Lock::Timeout=600
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    log "apt-get install $*"
    "${apt[@]}" "$@" >"$aptlog" 2>&1 || rc=$?
    if ((rc != 0 && APT_UPDATED == 0)); then
        log "apt-get install failed (exit $rc); apt-get update and again"
        APT_UPDATED=1
        apt-get update -q -o DPkg::Lock::Timeout=600 >"$aptlog" 2>&1 ||
            log "apt-get update partly failed; going on"
        rc=0
        "${apt[@]}" "$@" >"$aptlog" 2>&1 || rc=$?
    fi
    if ((rc != 0)); then
        tail -n 40 "$aptlog" | sed 's/^/setup-servers:   /' >&2
        rm -f "$aptlog"
        die "apt-get install $* failed (exit $rc)"
    fi
    grep -E '^[0-9]+ upgraded, ' "$aptlog" | sed 's/^/setup-servers:   /' || true
    rm -f "$aptlog"
}

# True if the system service NAME runs: under a running systemd, its unit is active;
# otherwise its init script's pid file (PIDFILE) names a live process. Never a test's
# own server (those have no such pid file).
service_running() {
    local name=$1 pidfile=$2 pid
    if [[ -d /run/systemd/system ]]; then
        systemctl is-active --quiet "$name" 2>/dev/null
        return
    fi
    [[ -r $pidfile ]] || return 1
    pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# True if the service NAME starts at boot (systemd unit enabled, or a SysV S link).
service_enabled() {
    local name=$1
    if command -v systemctl >/dev/null 2>&1 &&
        [[ $(systemctl is-enabled "$name" 2>/dev/null || true) == enabled ]]; then
        return 0
    fi
    compgen -G "/etc/rc[2-5].d/S??$name" >/dev/null
}

# The system service NAME (init script pid file PIDFILE) stopped and not started at
# boot; nothing when it already is so.
no_system_service() {
    local name=$1 pidfile=$2
    if service_running "$name" "$pidfile"; then
        [[ $(id -u) -eq 0 ]] || die "must run as root to stop the $name service"
        log "stopping the $name service (the tests run their own)"
        if [[ -d /run/systemd/system ]]; then
            systemctl stop "$name"
        else
            service "$name" stop || log "warning: service $name stop failed"
        fi
    fi
    if service_enabled "$name"; then
        [[ $(id -u) -eq 0 ]] || die "must run as root to disable the $name service"
        log "disabling the $name service at boot"
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable --quiet "$name" 2>/dev/null || true
        fi
        if compgen -G "/etc/rc[2-5].d/S??$name" >/dev/null; then
            update-rc.d "$name" disable >/dev/null 2>&1 || true
        fi
        service_enabled "$name" && log "warning: could not disable the $name service"
    fi
    return 0
}

# Where the unpacked packages live: SERVERS_DIR/<package>/ holds the package's files
# (SERVERS_DIR/pure-ftpd/usr/sbin/pure-ftpd, ...), and .version the version unpacked.
SERVERS_DIR=/opt/license-agent-servers

# True when the package PKG is unpacked under SERVERS_DIR and FILE (a path inside
# the package) is there.
unpacked() {
    local pkg=$1 file=$2
    [[ -s $SERVERS_DIR/$pkg/.version && -e $SERVERS_DIR/$pkg/$file ]]
}

# Download PKG's .deb (apt's candidate) and unpack it into SERVERS_DIR/PKG, replacing
# what was there; FILE must be in it.
unpack() {
    local pkg=$1 file=$2 tmp deb version
    [[ $(id -u) -eq 0 ]] || die "must run as root to unpack $pkg into $SERVERS_DIR"
    tmp=$(mktemp -d)
    # apt-get download runs as _apt when it can: let it write there.
    chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1); then
        if ((APT_UPDATED == 0)); then
            log "apt-get download $pkg failed; apt-get update and again"
            APT_UPDATED=1
            apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 ||
                log "apt-get update partly failed; going on"
        fi
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

# --- HTTP servers ---
# Apache (apache2, with mod_dav/mod_dav_fs and mod_ssl built in the package), lighttpd
# with mod_webdav and mod_openssl (separate packages in Debian 12), BusyBox httpd, and
# curl (the unit tests' client): test-servers/src/{apache,lighttpd,busybox_httpd}.rs.
# apache2 and lighttpd enable a service on port 80 at boot: disabled here.
HTTP_PKGS=(apache2 lighttpd lighttpd-mod-webdav lighttpd-mod-openssl busybox curl util-linux)
HTTP_FILES=(
    /usr/sbin/apache2
    /usr/lib/apache2/modules/mod_mpm_event.so
    /usr/lib/apache2/modules/mod_dav_fs.so
    /usr/lib/apache2/modules/mod_ssl.so
    /usr/lib/apache2/modules/mod_socache_shmcb.so
    /usr/sbin/lighttpd
    /usr/lib/lighttpd/mod_webdav.so
    /usr/lib/lighttpd/mod_openssl.so
    /usr/lib/lighttpd/mod_accesslog.so
    /bin/busybox
    /usr/bin/curl
    /usr/bin/setpriv
)
http_servers() {
    local -a pkgs files
    mapfile -t pkgs < <(missing_packages "${HTTP_PKGS[@]}")
    mapfile -t files < <(missing_files "${HTTP_FILES[@]}")
    if ((${#pkgs[@]} + ${#files[@]})); then
        log "HTTP servers: missing ${pkgs[*]} ${files[*]}"
        install_packages "${HTTP_PKGS[@]}"
        mapfile -t files < <(missing_files "${HTTP_FILES[@]}")
        ((${#files[@]} == 0)) || die "installed, but still missing: ${files[*]}"
        log "HTTP servers installed: $(apache2 -v | head -n 1), $(lighttpd -v | head -n 1)"
    else
        log "HTTP servers: apache2, lighttpd (webdav, openssl), busybox, curl present"
    fi
    no_system_service apache2 /run/apache2/apache2.pid
    no_system_service apache-htcacheclean /run/apache2/htcacheclean/pid
    no_system_service lighttpd /run/lighttpd.pid
}
http_servers
# --- end of HTTP servers ---

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
    local entry pkg file present=1
    local -a missing
    mapfile -t missing < <(missing_packages "${FTP_LIBS[@]}" "${FTP_PKGS[@]}")
    if ((${#missing[@]})); then
        install_packages "${missing[@]}"
        present=0
    fi
    for entry in "${FTP_UNPACK[@]}"; do
        read -r pkg file <<<"$entry"
        if ! unpacked "$pkg" "$file"; then
            unpack "$pkg" "$file"
            present=0
        fi
    done
    ((present == 0)) || log "FTP and TFTP servers: pure-ftpd, proftpd, atftpd unpacked; dnsmasq, curl present"
}
ftp_tftp_servers
# --- end of FTP and TFTP servers ---

# --- DHCP clients ---
# For tests/it/dhcp_hooks.rs: the firmware's DHCP hooks run by the real clients,
# BusyBox udhcpc (busybox) and ISC dhclient (isc-dhcp-client: the systemd boards'),
# against dnsmasq (dnsmasq-base), each in a network namespace (ip, iproute2). No
# service: ifupdown runs dhclient, and nothing here starts it.
DHCP_PKGS=(isc-dhcp-client busybox dnsmasq-base iproute2)
DHCP_FILES=(/sbin/dhclient /bin/busybox /usr/sbin/dnsmasq /usr/sbin/ip)
dhcp_clients() {
    local -a pkgs files
    mapfile -t pkgs < <(missing_packages "${DHCP_PKGS[@]}")
    mapfile -t files < <(missing_files "${DHCP_FILES[@]}")
    if ((${#pkgs[@]} + ${#files[@]})); then
        log "DHCP clients: missing ${pkgs[*]} ${files[*]}"
        install_packages "${DHCP_PKGS[@]}"
        mapfile -t files < <(missing_files "${DHCP_FILES[@]}")
        ((${#files[@]} == 0)) || die "installed, but still missing: ${files[*]}"
    fi
    log "DHCP clients: $(dhclient --version 2>&1), $(busybox | head -n 1 | cut -d' ' -f1-2), dnsmasq present"
}
dhcp_clients
# --- end of DHCP clients ---

# --- PKCS#11 token ---
# For tests/it/issuer_pkcs11.rs: license-issuer's token keys in SoftHSM2 (softhsm2: the
# module /usr/lib/softhsm/libsofthsm2.so and softhsm2-util). No service; each test
# makes its own token directory (SOFTHSM2_CONF), so the system's token store is unused.
TOKEN_PKGS=(softhsm2)
TOKEN_FILES=(/usr/lib/softhsm/libsofthsm2.so /usr/bin/softhsm2-util)
pkcs11_token() {
    local -a pkgs files
    mapfile -t pkgs < <(missing_packages "${TOKEN_PKGS[@]}")
    mapfile -t files < <(missing_files "${TOKEN_FILES[@]}")
    if ((${#pkgs[@]} + ${#files[@]})); then
        log "PKCS#11 token: missing ${pkgs[*]} ${files[*]}"
        install_packages "${TOKEN_PKGS[@]}"
        mapfile -t files < <(missing_files "${TOKEN_FILES[@]}")
        ((${#files[@]} == 0)) || die "installed, but still missing: ${files[*]}"
    fi
    log "PKCS#11 token: SoftHSM2 $(softhsm2-util --version)"
}
pkcs11_token
# --- end of PKCS#11 token ---

# --- syslog server ---
# For tests/it/syslog.rs (test-servers/src/rsyslog.rs): rsyslogd receiving the agent's
# RFC 5424 lines over UDP, TCP and TLS (rsyslog-openssl: the ossl netstream driver).
# Each test runs its own rsyslogd in the foreground with its own configuration; the
# system service is stopped and disabled (it would own /dev/log).
SYSLOG_PKGS=(rsyslog rsyslog-openssl)
SYSLOG_FILES=(/usr/sbin/rsyslogd /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so)
syslog_server() {
    local -a pkgs files
    mapfile -t pkgs < <(missing_packages "${SYSLOG_PKGS[@]}")
    if ((${#pkgs[@]})); then
        log "syslog server: missing ${pkgs[*]}"
        install_packages "${SYSLOG_PKGS[@]}"
    fi
    mapfile -t files < <(missing_files "${SYSLOG_FILES[@]}")
    ((${#files[@]} == 0)) || log "warning: rsyslog installed, but not at the usual place: ${files[*]}"
    no_system_service rsyslog /run/rsyslogd.pid
    log "syslog server: $(rsyslogd -v | head -n 1)"
}
syslog_server
# --- end of syslog server ---

log "done in $((SECONDS - start)) s"
