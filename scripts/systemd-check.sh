#!/usr/bin/env bash
# Boots the host board's firmware drop under a real systemd and checks the unit at run
# time, which `systemd-analyze verify` cannot: the sandbox lets the agent fetch, store,
# publish and serve its control socket; READY=1 comes after the boot set is published,
# so the phone application (ordered after the agent) starts with it; reload (SIGHUP)
# works; a SIGKILL is restarted; a second daemon is refused; the test clock is kept out;
# a stop is clean and keeps the published set.
#
# The machine is a minimal Debian 12 root (debootstrap, kept in target/systemd-root/base
# and reused) booted with systemd-nspawn (its own network: loopback only); each run
# works on a fresh copy. The agent is the host board's static binary with the demo
# keyring, and the demo licenses already stored (a phone that booted before). Its
# provisioning server accepts connections and never answers (a socket unit whose
# service never accepts), so the boot fetch takes its whole timeout: the phone
# application must still wait for the published set, which only Type=notify gives.
# Run as root (scripts/setup-cross.sh installs debootstrap and systemd-nspawn).
#
# Usage: bash scripts/systemd-check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf 'systemd-check: %s\n' "$*"; }
die() { printf 'systemd-check: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, systemd-nspawn)"
command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing: bash scripts/setup-cross.sh"
command -v debootstrap >/dev/null || die "debootstrap missing: bash scripts/setup-cross.sh"
start=$SECONDS

drop=target/firmware/host
bash scripts/build.sh host >/dev/null
cargo build -q --bin license-issuer
issuer=target/debug/license-issuer

# The Debian root, made once.
cache=target/systemd-root
base=$cache/base
if [[ ! -e $base/.complete ]]; then
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    log "debootstrap bookworm (minbase + systemd) from $mirror into $base"
    rm -rf "$base" "$base.partial"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm \
        "$base.partial" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed"; }
    mv "$base.partial" "$base"
    touch "$base/.complete"
fi

# A fresh copy with the firmware drop installed as an integrator would.
root=$cache/run
rm -rf "$root"
cp -a "$base" "$root"
# /lib is a link to usr/lib in Debian 12: keep the root's links, add the drop's files.
tar -C "$drop" -cf - . | tar -C "$root" --keep-directory-symlink -xf -
cp examples/demo/keyring "$root/etc/license-agent/keyring"
# Stored at an earlier boot: the demo site and phone licenses, as the store keeps them.
state=$root/var/lib/license-agent
mkdir -p "$state/site" "$state/phone"
cp examples/demo/provisioning/000000000000-license.cfg "$state/site/0000000001.cfg"
cp examples/demo/provisioning/0004f2000001-license.cfg "$state/phone/0000000002.cfg"
# The container has no eth0: the MAC is given. A server that never answers, 3 s timeouts.
port=47913
config=$root/etc/license-agent/agent.toml
sed -i -e 's|^interface = .*|mac = "0004f2000001"|' \
    -e "s|^# server = .*|server = \"http://127.0.0.1:$port/\"|" \
    -e 's|^enabled_features = .*|enabled_features = ["vqmon", "usb-call-recording", "lync"]|' \
    "$config"
printf '\n[fetch]\nconnect_timeout = "3s"\ntotal_timeout = "3s"\n' >>"$config"
grep -q "^server = \"http://127.0.0.1:$port/\"" "$config" ||
    die "the generated agent.toml no longer has the lines this check edits"
printf '[Socket]\nListenStream=127.0.0.1:%s\n[Install]\nWantedBy=sockets.target\n' "$port" \
    >"$root/etc/systemd/system/silent-server.socket"
printf '[Service]\nExecStart=/bin/sleep infinity\n' >"$root/etc/systemd/system/silent-server.service"
# A start timeout shorter than the boot fetch: the agent must extend it, not get killed.
mkdir -p "$root/etc/systemd/system/license-agent.service.d"
printf '[Service]\nTimeoutStartSec=2s\n' >"$root/etc/systemd/system/license-agent.service.d/short.conf"
mkdir -p "$root/etc/systemd/system/sockets.target.wants"
ln -sf /etc/systemd/system/silent-server.socket \
    "$root/etc/systemd/system/sockets.target.wants/silent-server.socket"
"$issuer" sign --key examples/demo/DEMO-signing-key.der --serial 0004f2000001 --kind phone \
    --feature lync,new,2026-01-01T00:00:00Z,never -o "$root/root/lync.cfg" >/dev/null

# The phone application: records whether the set was published when it started.
cat >"$root/etc/systemd/system/phone-app.service" <<'EOF'
[Unit]
Description=stand-in for the phone application
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'if test -s /run/license-agent/features; then echo published; else echo missing; fi >/root/phone-app-saw'
[Install]
WantedBy=multi-user.target
EOF
cat >"$root/etc/systemd/system/check.service" <<'EOF'
[Unit]
Description=check the license agent under systemd
After=license-agent.service phone-app.service
[Service]
Type=oneshot
ExecStart=/root/check.sh
[Install]
WantedBy=multi-user.target
EOF
for unit in phone-app check; do
    ln -sf "/etc/systemd/system/$unit.service" \
        "$root/etc/systemd/system/multi-user.target.wants/$unit.service"
done
cat >"$root/root/check.sh" <<'EOF'
#!/bin/bash
out=/root/result.txt detail=/root/detail.txt
check() {
    local what=$1
    shift
    echo "== $what: $*" >>$detail
    if "$@" >>$detail 2>&1; then echo "ok: $what" >>$out; else echo "FAIL: $what" >>$out; fi
}
active() { for _ in $(seq 1 80); do systemctl is-active -q license-agent && return 0; sleep 0.25; done; return 1; }
mainpid() { systemctl show -p MainPID --value license-agent; }
: >$out
check "active at boot (READY=1 after the boot cycle)" systemctl is-active -q license-agent
check "a boot fetch longer than TimeoutStartSec extended it, never killed" sh -c 'test "$(systemctl show -p NRestarts --value license-agent)" = 0 && ! journalctl -u license-agent | grep -q "start operation timed out"'
check "the phone application started after the set was published" grep -qx published /root/phone-app-saw
check "the stored set published though the server never answered" grep -q '^vqmon ' /run/license-agent/features
check "the boot fetch waited for the server, then gave up" sh -c 'journalctl -u license-agent | grep -q "boot: 000000000000-license.cfg failed"'
check "status answered by the daemon through the sandbox" sh -c 'license-agent status | grep -q "read from    the running daemon"'
check "install handed over to the daemon and applied" sh -c 'license-agent install /root/lync.cfg | grep -q "the running daemon applied it: enabled now .*lync"'
check "the store written in the state directory" test -s /var/lib/license-agent/meta.json -a -e /var/lib/license-agent/lock
check "reload (SIGHUP) succeeds" systemctl reload license-agent
sleep 1
check "reload read the configuration again, still active" sh -c 'journalctl -u license-agent | grep -q "SIGHUP: reading the configuration again" && systemctl is-active -q license-agent'
check "a second daemon is refused" sh -c 'timeout 30 license-agent run --config /etc/license-agent/agent.toml 2>&1 | grep -q "another license-agent process holds it"'
systemctl set-environment LICENSE_AGENT_TEST_NOW=1000000000
systemctl restart license-agent
check "the test clock is kept out of the agent" sh -c 'pid=$(systemctl show -p MainPID --value license-agent); test "$pid" -gt 0 && ! tr "\0" "\n" </proc/$pid/environ | grep -q LICENSE_AGENT_TEST_NOW'
systemctl unset-environment LICENSE_AGENT_TEST_NOW
before=$(mainpid)
systemctl kill -s KILL license-agent
sleep 11
check "restarted after SIGKILL" bash -c "$(declare -f active); active && test \"\$(systemctl show -p NRestarts --value license-agent)\" -ge 1 && test \"\$(systemctl show -p MainPID --value license-agent)\" != $before"
check "status again after the restart" sh -c 'license-agent status | grep -q "read from    the running daemon"'
systemctl stop license-agent
check "a stop is clean (exit 0, not restarted)" sh -c 'sleep 1; test "$(systemctl is-active license-agent)" = inactive && test "$(systemctl show -p ExecMainStatus --value license-agent)" = 0'
check "the published set stays after a stop" grep -q '^vqmon ' /run/license-agent/features
journalctl -u license-agent --no-pager >>$detail 2>&1
echo done >>$out
systemctl poweroff
EOF
chmod 755 "$root/root/check.sh"

# Without systemd on the host, nspawn needs its propagation folder on a tmpfs.
if [[ ! -d /run/systemd/system ]]; then
    mkdir -p /run/systemd/nspawn
    mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn
fi
log "booting the host board's drop under systemd (systemd-nspawn)"
rc=0
timeout 300 systemd-nspawn -q --keep-unit --register=no --private-network -D "$root" -b \
    >"$cache/boot.log" 2>&1 || rc=$?
result=$root/root/result.txt
[[ -s $result ]] || { tail -n 30 "$cache/boot.log" >&2; die "the container gave no result (nspawn exit $rc)"; }
sed 's/^/systemd-check:   /' "$result"
if grep -q '^FAIL' "$result" || ! grep -qx 'done' "$result"; then
    sed 's/^/systemd-check:   | /' "$root/root/detail.txt" >&2
    die "the unit does not work under systemd (details above; boot log: $cache/boot.log)"
fi
log "ok: $(grep -c '^ok' "$result") checks under systemd $(chroot "$root" systemctl --version | head -n 1 | cut -d' ' -f2) in $((SECONDS - start)) s"
