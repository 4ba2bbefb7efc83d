#!/usr/bin/env bash
# The firmware check: for each board (default: every boards/*.toml) build and assemble
# its firmware drop with scripts/build.sh (cargo xtask build), then check what an
# integrator would ship:
#
#  1. the generated agent.toml works with the board's own binary (under QEMU for ARM):
#     the drop is copied into a scratch root, every absolute path of the config is moved
#     under it, the demo keyring stands in for the production one (the drop has none),
#     and `status` and `run --once` must succeed there, creating the state directory
#     and publishing the features file;
#  2. the BusyBox init script (sysv boards): `sh -n`, BusyBox `ash -n`, shellcheck, and
#     a real run in BusyBox ash with BusyBox's start-stop-daemon: start, status, the
#     agent killed with SIGKILL and restarted by the loop, reload, stop, nothing left;
#     LICENSE_AGENT_TEST_NOW set in the caller's environment must not reach the agent;
#  3. the systemd unit (systemd boards): `systemd-analyze verify` must pass and print
#     nothing (it exits 0 on unknown keys, so any output counts as a failure). It needs
#     the systemd package's tools only, no running systemd: fine in a container;
#  4. the DHCP client's hook (firmware/README.md, "The provisioning server from DHCP"):
#     udhcpc's in /usr/share/udhcpc/default.script.d/ (sysv boards), dhclient's in
#     /etc/dhcp/dhclient-exit-hooks.d/ (systemd boards), executable, the repository's
#     file byte for byte, `sh -n`, BusyBox `ash -n` (sysv), shellcheck; the hooks run
#     under the real clients in tests/it/dhcp_hooks.rs.
#
# Usage: scripts/firmware-check.sh [BOARD...]   (a name in boards/ or a board file)
# Needs what scripts/setup-cross.sh installs (Debian Rust, qemu-user, busybox, systemd).
set -euo pipefail

log() { printf 'firmware-check: %s\n' "$*"; }
fail() {
    printf 'firmware-check: FAIL: %s\n' "$*" >&2
    exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
# The agent's test aid must never be needed here; the init test sets it on purpose.
unset LICENSE_AGENT_TEST_NOW

# The checked board, as the associative array B (`cargo xtask board`: every key of the
# board file, phone_app_unit defaulted, and file).
declare -A B=()
board_load() {
    local out line
    out=$(cargo xtask board "$1") || return 1
    B=()
    while IFS= read -r line; do B[${line%%=*}]=${line#*=}; done <<<"$out"
}

for tool in busybox systemd-analyze file; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/setup-cross.sh"
done

boards=("$@")
if ((${#boards[@]} == 0)); then
    names=$(cargo xtask boards) || fail "cannot list the boards"
    read -r -a boards <<<"$names"
fi

# Short: socket paths under it must fit a Unix socket address (107 bytes).
scratch=$(mktemp -d /tmp/fwcheck.XXXXXX)
started_pids=() pidfiles=()
cleanup() {
    local pid f
    # The supervising loop first (so it starts nothing more), then what it started.
    for pid in "${started_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for f in "${pidfiles[@]}"; do
        pid=$(cat "$f" 2>/dev/null) || continue
        if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    rm -rf -- "$scratch"
}
trap cleanup EXIT

# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}
alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

check_board() {
    local name=$1 drop root work config runner=() out rc iface
    log "== board $name"
    board_load "$name" || fail "board $name"
    bash "$script_dir/build.sh" "$name" | sed 's/^/  /'
    name=${B[name]}
    drop=$repo_root/target/firmware/$name
    work=$scratch/$name
    root=$work/root
    mkdir -p "$work"
    cp -a "$drop" "$root"
    [[ -n ${B[qemu]} ]] && runner=("${B[qemu]}" -cpu "${B[qemu_cpu]}")
    local bin=$root${B[binary]}
    [[ -x $bin ]] || fail "$name: no executable ${B[binary]} in the drop"
    file -b "$bin" | grep -Eq 'statically linked|static-pie linked' || fail "$name: ${B[binary]} is not static"

    # -- 1. The configuration, with its paths moved into the scratch root --------------
    local shipped=$root${B[config]}
    [[ -f $shipped ]] || fail "$name: no ${B[config]} in the drop"
    grep -q "^interface = \"${B[interface]}\"$" "$shipped" || fail "$name: the config does not read the MAC from ${B[interface]}"
    ! grep -q 'LICENSE_AGENT_TEST_NOW' "$shipped" || fail "$name: the config mentions LICENSE_AGENT_TEST_NOW"
    config=$work/agent.toml
    sed -E "s|^([a-z_]+ = \")/|\1$root/|" "$shipped" >"$config"
    iface=${B[interface]}
    if [[ ! -r /sys/class/net/$iface/address ]] || [[ $(cat "/sys/class/net/$iface/address") == 00:00:00:00:00:00 ]]; then
        log "$name: no interface $iface with a MAC on this machine: the scratch config uses mac = \"0004f2000001\""
        sed -i -E "s|^interface = \".*\"$|mac = \"0004f2000001\"|" "$config"
    fi
    if grep -E '^[a-z_]+ = "/' "$config" | grep -v "= \"$root/" | grep -q .; then
        fail "$name: a path was not moved into the scratch root: $(grep -E '^[a-z_]+ = "/' "$config" | grep -v "= \"$root/")"
    fi
    install -D -m 0644 examples/demo/keyring "$root${B[keyring]}"
    # The init script's own path to syslog (logger) is what is checked here: the agent
    # is kept off a /dev/log the build machine may have.
    printf '\n[syslog]\nlocal = "off"\n' >>"$config"

    rc=0
    out=$("${runner[@]}" "$bin" status --config "$config" 2>&1) || rc=$?
    ((rc == 0)) || fail "$name: license-agent status on the generated config: exit $rc: $out"
    grep -q 'read from' <<<"$out" || fail "$name: unexpected status output: $out"
    rc=0
    out=$("${runner[@]}" "$bin" run --once --config "$config" 2>&1) || rc=$?
    ((rc == 0)) || fail "$name: license-agent run --once on the generated config: exit $rc: $out"
    [[ -d $root${B[state_dir]} ]] || fail "$name: run --once did not create the state directory ${B[state_dir]}"
    [[ -f $root${B[features_file]} ]] || fail "$name: run --once did not publish ${B[features_file]}"
    log "$name: the generated agent.toml works with the board's binary${runner:+ under ${runner[*]}} (status, run --once)"

    # -- 2. / 3. How it is started ----------------------------------------------------
    case ${B[init]} in
        sysv) check_init_script "$name" "$work" "$root" "$config" ;;
        systemd) check_unit "$name" "$work" "$root" ;;
    esac

    # -- 4. The DHCP client's hook ----------------------------------------------------
    check_dhcp_hook "$name" "$root"
    log "$name: ok"
}

check_init_script() {
    local name=$1 work=$2 root=$3 config=$4 script bindir agent pid new out
    script=$root/etc/init.d/S45license-agent
    [[ -x $script ]] || fail "$name: no executable /etc/init.d/S45license-agent in the drop"
    sh -n "$script" || fail "$name: sh -n $script"
    busybox ash -n "$script" || fail "$name: busybox ash -n $script"
    if command -v shellcheck >/dev/null; then
        shellcheck -s sh "$script" || fail "$name: shellcheck $script"
    fi
    log "$name: init script syntax ok (sh -n, busybox ash -n$(command -v shellcheck >/dev/null && echo ', shellcheck'))"

    # A BusyBox userland first on PATH; logger is replaced by one that writes a file.
    bindir=$work/bin
    mkdir -p "$bindir"
    busybox --install -s "$bindir"
    rm -f "$bindir/logger"
    cat >"$bindir/logger" <<EOF
#!$bindir/sh
# Test stand-in for syslog: "logger [-t TAG] [-p PRIO] [MESSAGE]" appends to a file.
tag=logger
while getopts t:p:s opt; do [ "\$opt" = t ] && tag=\$OPTARG; done
shift \$((OPTIND - 1))
if [ \$# -gt 0 ]; then echo "\$tag: \$*" >>"$work/syslog"
else while IFS= read -r line; do echo "\$tag: \$line"; done >>"$work/syslog"; fi
EOF
    chmod +x "$bindir/logger"
    # The agent, started the way the phone would, but through QEMU for ARM.
    local daemon=$root${B[binary]}
    if [[ -n ${B[qemu]} ]]; then
        daemon=$work/agent-under-qemu
        printf '#!/bin/sh\nexec %s -cpu %s %s "$@"\n' "${B[qemu]}" "${B[qemu_cpu]}" "$root${B[binary]}" >"$daemon"
        chmod +x "$daemon"
    fi
    mkdir -p "$root/etc/default" "$root/run"
    cat >"$root/etc/default/license-agent" <<EOF
DAEMON=$daemon
CONFIG=$config
RUNDIR=$root/run
SH=$bindir/sh
STOP_TIMEOUT=20
FEATURES=$root${B[features_file]}
EOF
    # Only the defaults file's path is changed in the shipped script.
    local test_script=$work/S45license-agent
    sed "s|^DEFAULTS=/etc/default/license-agent$|DEFAULTS=$root/etc/default/license-agent|" "$script" >"$test_script"
    [[ $(grep -c "^DEFAULTS=$root/" "$test_script") == 1 ]] || fail "$name: DEFAULTS= line not found in the init script"
    chmod +x "$test_script"
    local pidfile=$root/run/license-agent.pid child=$root/run/license-agent.child.pid
    local socket=$root${B[control_socket]}
    pidfiles+=("$pidfile" "$child")
    init() { env PATH="$bindir:$PATH" LICENSE_AGENT_TEST_NOW=2000000000 "$bindir/sh" "$test_script" "$@"; }
    # Up means answering on the control socket (the killed agent left its socket file).
    answers() { "${runner[@]}" "$root${B[binary]}" status --config "$config" 2>/dev/null | grep -q 'read from    the running daemon'; }
    rm -f "$socket" "$root${B[features_file]}" # run --once published it

    # An agent that cannot start (a bad configuration): "start" stops waiting for the
    # feature set as soon as the agent has failed, and says so.
    local good_config=$config
    printf 'bogus = 1\n' >"$work/bad.toml"
    sed -i "s|^CONFIG=.*|CONFIG=$work/bad.toml|" "$root/etc/default/license-agent"
    out=$(init start 2>&1) || fail "$name: init script start (bad configuration)"
    grep -q 'the agent failed to start' <<<"$out" || fail "$name: start with a bad configuration: $out"
    init stop >/dev/null || fail "$name: stop after the bad configuration"
    sed -i "s|^CONFIG=.*|CONFIG=$good_config|" "$root/etc/default/license-agent"

    # "start" returns once the boot set is published (the phone application is next).
    init start || fail "$name: init script start"
    [[ -s $root${B[features_file]} ]] || fail "$name: start returned before the agent published ${B[features_file]}"
    pid=$(cat "$pidfile") && started_pids+=("$pid")
    wait_for 60 test -S "$socket" || fail "$name: the agent did not open its control socket; log: $(cat "$work/syslog" 2>/dev/null)"
    agent=$(cat "$child") && started_pids+=("$agent")
    init status >/dev/null || fail "$name: status after start: $(init status)"
    init start | grep -q 'already running' || fail "$name: a second start did not say already running"
    answers || fail "$name: license-agent status did not reach the daemon started by the init script"

    # Restart on failure: SIGKILL the agent; the loop starts a new one.
    kill -KILL "$agent"
    new=""
    restarted() {
        new=$(cat "$child" 2>/dev/null) && [[ -n $new && $new != "$agent" ]] && alive "$new" && answers
    }
    wait_for 60 restarted || fail "$name: the agent was not restarted after SIGKILL; log: $(cat "$work/syslog")"
    started_pids+=("$new")
    grep -q 'supervisor: license-agent failed (exit status 137' "$work/syslog" || fail "$name: the restart was not logged"

    init reload || fail "$name: reload"
    reloaded() { grep -q 'SIGHUP: reading the configuration again' "$work/syslog"; }
    wait_for 20 reloaded || fail "$name: reload (SIGHUP) did not reach the agent; log: $(cat "$work/syslog")"
    alive "$new" || fail "$name: the agent died on reload"

    init stop || fail "$name: stop"
    ! alive "$pid" || fail "$name: the supervising loop still runs after stop"
    ! alive "$new" || fail "$name: the agent still runs after stop"
    rc=0
    init status >/dev/null || rc=$?
    ((rc == 3)) || fail "$name: status after stop: exit $rc (want 3)"
    [[ ! -e $pidfile && ! -e $child ]] || fail "$name: pid files left after stop"
    ! grep -q 'TEST CLOCK' "$work/syslog" || fail "$name: LICENSE_AGENT_TEST_NOW reached the agent"
    grep -q 'license-agent: .*started for MAC' "$work/syslog" || fail "$name: the agent's log did not reach syslog (logger)"
    log "$name: init script ran in BusyBox ash: start (returns once the set is published; at once when the agent fails), status, restart after SIGKILL, reload, stop; log to syslog; test clock kept out"
}

check_unit() {
    local name=$1 work=$2 root=$3 unit out
    unit=$root/lib/systemd/system/license-agent.service
    [[ -f $unit ]] || fail "$name: no /lib/systemd/system/license-agent.service in the drop"
    [[ $(readlink "$root/etc/systemd/system/multi-user.target.wants/license-agent.service") == /lib/systemd/system/license-agent.service ]] ||
        fail "$name: the unit is not enabled (multi-user.target.wants link)"
    grep -q '^UnsetEnvironment=LICENSE_AGENT_TEST_NOW$' "$unit" || fail "$name: the unit does not unset LICENSE_AGENT_TEST_NOW"
    grep -q "^ExecStart=${B[binary]} run --config ${B[config]}$" "$unit" || fail "$name: unexpected ExecStart="
    # verify wants ExecStart= to exist on this machine: point it at the drop's binary.
    mkdir -p "$work/units"
    sed "s|^ExecStart=${B[binary]} |ExecStart=$root${B[binary]} |" "$unit" >"$work/units/license-agent.service"
    out=$(systemd-analyze verify --man=no "$work/units/license-agent.service" 2>&1) ||
        fail "$name: systemd-analyze verify: $out"
    [[ -z $out ]] || fail "$name: systemd-analyze verify complained: $out"
    log "$name: systemd unit ok ($(systemd-analyze --version | head -n1) verify, no warnings)"
}

check_dhcp_hook() {
    local name=$1 root=$2 on_phone source hook
    case ${B[init]} in
        sysv) on_phone=/usr/share/udhcpc/default.script.d/license-agent source=firmware/dhcp/udhcpc-license-agent ;;
        systemd) on_phone=/etc/dhcp/dhclient-exit-hooks.d/license-agent source=firmware/dhcp/dhclient-license-agent ;;
    esac
    hook=$root$on_phone
    [[ -f $hook && -x $hook ]] || fail "$name: no executable $on_phone in the drop"
    cmp -s "$hook" "$source" || fail "$name: $on_phone is not $source"
    sh -n "$hook" || fail "$name: sh -n $on_phone"
    if [[ ${B[init]} == sysv ]]; then
        busybox ash -n "$hook" || fail "$name: busybox ash -n $on_phone"
    fi
    if command -v shellcheck >/dev/null; then
        shellcheck -s sh "$hook" || fail "$name: shellcheck $on_phone"
    fi
    log "$name: DHCP hook $on_phone ok (executable, sh -n$([[ ${B[init]} == sysv ]] && echo ', busybox ash -n')$(command -v shellcheck >/dev/null && echo ', shellcheck'))"
}

start=$SECONDS
for board in "${boards[@]}"; do
    check_board "$board"
done
log "ok: ${boards[*]} in $((SECONDS - start)) s"
