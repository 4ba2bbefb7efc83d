#!/usr/bin/env bash
# Figures, not verdicts: the provisioning server's load in a boot storm, two agent
# binaries side by side. BEFORE is the release binary of an earlier commit (--before,
# default 75bfedcc: the agent that skips downloads on validators, HTTP If-None-Match /
# If-Modified-Since answered 304 and FTP SIZE+MDTM equal to the stored ones), built in a
# temporary `git worktree` with a target folder of its own (target/bench-storm/build,
# kept: another commit then builds only the crate) and kept as
# target/bench-storm/license-agent-<commit>, so a rerun does not build it again; AFTER is
# the working tree's release binary.
#
# N phones (--phones, default 100: each a `license-agent run` daemon with a folder,
# configuration, MAC and phone license of its own, the site license shared, no status
# report) boot at once against one server: real nginx over HTTP and over HTTPS (a CA and
# a certificate for 127.0.0.1 made with openssl here; the agents' fetch.ca_file), and
# vsftpd over FTP (the test user of test-servers/src/ftp.rs: bash scripts/setup-cross.sh
# makes it). Boot 1: no state, every file downloaded. Boot 2: the same daemons stopped
# (SIGTERM) and started again with their state (the features file removed, as /run is at
# a reboot). A daemon counts as booted when its features file appears (the daemon writes
# it only after its boot fetch); then it is stopped. For each binary, server and boot:
#   - requests: nginx's access log (status counts, connections); vsftpd's log with the
#     protocol logged (sessions, commands, SIZE and MDTM, RETR: a RETR is a download);
#   - bytes the server sent: the sum of nginx's $bytes_sent (headers and bodies, before
#     TLS); for FTP the file bytes vsftpd logged as downloaded (data connections only);
#   - bytes on loopback: /proc/net/dev `lo` before and after; the storm runs in a
#     network namespace of its own (unshare --net), so nothing else is counted: both
#     directions, TCP/IP and TLS included, FTP's control connections included;
#   - server CPU: the server runs in a cgroup (v2) of its own, whose cpu.stat usage_usec
#     counts nginx's master and worker and every vsftpd session process, exited ones
#     included; without a cgroup, the server's processes' utime+stime plus the reaped
#     children's cutime+cstime from /proc (clock ticks; an FTP session process nobody
#     reaped is missed), and the figures say which;
#   - wall time: from the first daemon started until the last features file written
#     (its modification time).
# The tables give before | after | after/before per boot. Compare within one run: the
# machines are noisy, and the servers and phones share its cores.
# What it prints is also written to docs/figures/storm.md (scripts/lib-figures.sh: the
# commit, the date and the machine above it; rewritten whole, never edited by hand).
# About a minute with 100 phones once both binaries are built (a release build each).
# Run by hand, as root (vsftpd, the network namespace, the cgroups), not by the test
# command (it builds the earlier commit):
#   bash scripts/bench-storm.sh [--before COMMIT] [--phones N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/lib-figures.sh
. scripts/lib-figures.sh
figures_start
log() { printf 'bench: storm: %s\n' "$*"; }
die() {
    log "$*" >&2
    exit 1
}

usage() {
    sed -n '/^# Run by hand/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}
before=75bfedcc
phones=100
while (($#)); do
    case $1 in
    --before) before=${2:?--before needs a commit}; shift 2 ;;
    --phones) phones=${2:?--phones needs a number}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) log "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $phones =~ ^[1-9][0-9]{0,3}$ ]] || die "--phones: 1 to 9999, not $phones"
((EUID == 0)) || die "run as root: vsftpd's PAM login and chroot, the network namespace, the cgroups"
export PATH=$PATH:/usr/sbin:/sbin
for tool in nginx vsftpd openssl unshare ip; do
    command -v "$tool" >/dev/null || die "no $tool (bash scripts/setup-cross.sh installs nginx, vsftpd and openssl)"
done
id lagent-ftp >/dev/null 2>&1 || die "no FTP test user lagent-ftp: run bash scripts/setup-cross.sh"

# Stage 1, outside the network namespace (cargo may need the network): the binaries.
if [[ -z ${BENCH_STORM_BEFORE_BIN:-} ]]; then
    commit=$(git rev-parse --verify --quiet "$before^{commit}") || die "no commit $before"
    cache=$PWD/target/bench-storm/license-agent-$commit
    if [[ -x $cache ]]; then
        log "BEFORE: $cache (built earlier)"
    else
        log "BEFORE: building $(git rev-parse --short "$commit") in a temporary worktree (target/bench-storm/build)"
        src=$(mktemp -d /tmp/la-storm-src.XXXXXX)
        trap 'git worktree remove --force "$src" 2>/dev/null || rm -rf -- "$src"' EXIT
        git worktree add --quiet --detach "$src" "$commit"
        build=$PWD/target/bench-storm/build
        (cd "$src" && CARGO_TARGET_DIR=$build cargo build --release --quiet --locked --bin license-agent)
        mkdir -p "$(dirname "$cache")"
        cp "$build/release/license-agent" "$cache.tmp"
        mv -f "$cache.tmp" "$cache"
        git worktree remove --force "$src"
        trap - EXIT
    fi
    cargo build --release --quiet --locked --bin license-agent --bin license-issuer
    out=${CARGO_TARGET_DIR:-$PWD/target}/release
    unshare --net true 2>/dev/null || die "unshare --net failed: the storm needs a network namespace of its own"
    exec env BENCH_STORM_BEFORE_BIN="$cache" BENCH_STORM_AFTER_BIN="$out/license-agent" \
        BENCH_STORM_ISSUER="$out/license-issuer" BENCH_STORM_BEFORE="$(git rev-parse --short "$commit")" \
        unshare --net -- bash "${BASH_SOURCE[0]}" --before "$before" --phones "$phones"
fi

# Stage 2, in a network namespace of its own: loopback carries only the storm, and the
# servers' ports are fixed.
ip link set lo up
declare -A bin=([before]=$BENCH_STORM_BEFORE_BIN [after]=$BENCH_STORM_AFTER_BIN)
issuer=$BENCH_STORM_ISSUER
demo=$PWD/examples/demo
work=$(mktemp -d /tmp/la-storm.XXXXXX)
chmod 755 "$work"
declare -A server_pid=() cgroup=()
daemons=()
cleanup() {
    local p
    for p in "${daemons[@]}" "${server_pid[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${daemons[@]}" "${server_pid[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${cgroup[@]}"; do rmdir "$p" 2>/dev/null || true; done
    rm -rf -- "$work"
}
trap cleanup EXIT
# Every table printed, also kept for docs/figures/storm.md.
figures=$work/figures
fig() {
    printf 'bench: storm: %s\n' "$*" | sed 's/ *$//' | tee -a "$figures"
}

# The provisioning folder: the site license and one phone license per phone (the
# demo key; examples/demo/keyring trusts it). MACs 0004f2100001, 0004f2100002...
root=$work/root
mkdir -p "$root"
mac() { printf '0004f2%06d' $((100000 + $1)); }
"$issuer" sign --key "$demo/DEMO-signing-key.der" --serial 100000000001 --kind site \
    --feature vqmon,new,2026-01-01T00:00:00Z,never -o "$root/000000000000-license.cfg"
for i in $(seq 1 "$phones"); do
    "$issuer" sign --key "$demo/DEMO-signing-key.der" --serial "$(mac "$i")" --kind phone \
        --feature usb-call-recording,new,2026-01-01T00:00:00Z,never -o "$root/$(mac "$i")-license.cfg"
done
chmod 755 "$root"
chmod 644 "$root"/*.cfg

# TLS: a CA and a server certificate for 127.0.0.1 (and localhost).
tls=$work/tls
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=bench-storm CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$tls/key.pem" -out "$tls/req.pem" 2>/dev/null
printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth \
    subjectAltName=IP:127.0.0.1,DNS:localhost >"$tls/ext"
openssl x509 -req -in "$tls/req.pem" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
    -days 30 -extfile "$tls/ext" -out "$tls/cert.pem" 2>/dev/null

# Each server runs in a cgroup of its own when cgroup v2 is mounted and writable.
cgroup_root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
cpu_method="cgroup v2 cpu.stat usage_usec"
# spawn NAME COMMAND...: starts the server NAME in the background.
spawn() {
    local name=$1 cg=""
    shift
    if [[ -n $cgroup_root ]] && mkdir "$cgroup_root/la-storm-$$-$name" 2>/dev/null; then
        cg=$cgroup_root/la-storm-$$-$name
        cgroup[$name]=$cg
    else
        cpu_method="/proc utime+stime, cutime+cstime (clock ticks; no cgroup v2 here)"
    fi
    # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
    bash -c 'if [[ -n $0 ]]; then echo $$ >"$0/cgroup.procs"; fi; exec "$@"' "$cg" "$@" \
        </dev/null >"$work/$name.out" 2>&1 &
    server_pid[$name]=$!
}
# The processes of server NAME: its main one, and its children and theirs.
tree() {
    local p=$1 c kids=()
    printf '%s\n' "$p"
    read -r -a kids < <(cat "/proc/$p/task/"*/children 2>/dev/null; echo)
    for c in "${kids[@]}"; do tree "$c"; done
}
# cpu_us NAME: the CPU time server NAME has used so far, in microseconds.
cpu_us() {
    local name=$1 p ticks=0 stat
    if [[ -n ${cgroup[$name]:-} ]]; then
        awk '$1 == "usage_usec" { print $2 }' "${cgroup[$name]}/cpu.stat"
        return
    fi
    for p in $(tree "${server_pid[$name]}"); do
        stat=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        read -r -a f <<<"$stat"
        ticks=$((ticks + f[11] + f[12]))
        [[ $p != "${server_pid[$name]}" ]] || ticks=$((ticks + f[13] + f[14]))
    done
    echo $((ticks * 1000000 / $(getconf CLK_TCK)))
}
# The bytes carried by loopback so far (received = sent on lo: each byte once).
lo_bytes() { awk -F '[: ]+' '$2 == "lo" { print $3 }' /proc/net/dev; }
# ready PORT: true once something accepts connections on 127.0.0.1:PORT.
ready() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_ready() {
    local name=$1 port=$2
    for _ in $(seq 1 200); do
        ready "$port" && return 0
        kill -0 "${server_pid[$name]}" 2>/dev/null || break
        sleep 0.05
    done
    cat "$work/$name.out" "$work"/nginx/error.log 2>/dev/null >&2 || true
    die "$name does not listen on 127.0.0.1:$port"
}

# nginx (as test-servers/src/nginx.rs starts it): HTTP on 8080, HTTPS on 8443, one
# worker; static files with ETag and Last-Modified, 304 to a matching validator.
mkdir -p "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<EOF
# Written by scripts/bench-storm.sh.
user root root;
worker_processes 1;
pid $work/nginx/nginx.pid;
lock_file $work/nginx/nginx.lock;
error_log $work/nginx/error.log warn;
events { worker_connections 2048; }
http {
    default_type application/octet-stream;
    types { text/plain cfg; }
    log_format storm "\$status \$connection \$bytes_sent \$request_time \$request";
    access_log $work/nginx/access.log storm;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    server_tokens off;
    etag on;
    if_modified_since exact;
    keepalive_timeout 30s;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $root;
    server { listen 127.0.0.1:8080; }
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_certificate $tls/cert.pem;
        ssl_certificate_key $tls/key.pem;
    }
}
EOF
spawn nginx nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;'
wait_ready nginx 8080
wait_ready nginx 8443

# vsftpd (as test-servers/src/ftp.rs starts it) on 2121, every command logged, no limit
# of sessions per address (Debian's vsftpd allows 50: every phone here is 127.0.0.1).
mkdir -p "$work/ftp-empty"
cat >"$work/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=2121
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=NO
pam_service_name=license-agent-test-ftp
userlist_enable=NO
check_shell=NO
local_root=$root
chroot_local_user=YES
allow_writeable_chroot=YES
secure_chroot_dir=$work/ftp-empty
seccomp_sandbox=NO
pasv_enable=YES
pasv_address=127.0.0.1
use_localtime=NO
delay_failed_login=0
max_clients=0
max_per_ip=0
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file=$work/vsftpd.log
EOF
spawn vsftpd vsftpd "$work/vsftpd.conf"
wait_ready vsftpd 2121
# Whether vsftpd has sessions still open (a process per session; nginx has none).
sessions() {
    local name=$1
    [[ $name == vsftpd ]] || return 1
    if [[ -n ${cgroup[$name]:-} ]]; then
        (($(wc -l <"${cgroup[$name]}/cgroup.procs") > 1))
    else
        (($(tree "${server_pid[$name]}" | wc -l) > 1))
    fi
}

declare -A url=(
    [http]=http://127.0.0.1:8080/
    [https]=https://127.0.0.1:8443/
    [ftp]=ftp://lagent-ftp:ftp-Secret-1@127.0.0.1:2121/
)
declare -A process=([http]=nginx [https]=nginx [ftp]=vsftpd)
declare -A log_file=([http]=$work/nginx/access.log [https]=$work/nginx/access.log [ftp]=$work/vsftpd.log)

# phones DIR SERVER: writes the configuration of every phone under DIR.
make_phones() {
    local dir=$1 server=$2 i
    for i in $(seq 1 "$phones"); do
        mkdir -p "$dir/$i"
        cat >"$dir/$i/agent.toml" <<EOF
mac = "$(mac "$i")"
site_serial = "100000000001"
keyring = "$demo/keyring"
state_dir = "state"
server = "${url[$server]}"
report = false
enabled_features = ["vqmon", "usb-call-recording"]
supervisor = "none"
control_socket = "control.sock"
features_file = "run/features"
EOF
        [[ $server != https ]] || printf '[fetch]\nca_file = "%s"\n' "$tls/ca.pem" >>"$dir/$i/agent.toml"
    done
}

# The figures of one storm, by "SERVER BINARY BOOT METRIC".
declare -A m=()
# boot DIR SERVER BINARY BOOT: starts every phone of DIR at once, waits until each has
# published its features, stops them; keeps the figures in m.
boot() {
    local dir=$1 server=$2 which=$3 n=$4 i start last cpu0 lo0 off
    local name=${process[$server]}
    local k="$server $which $n"
    rm -f "$dir"/*/run/features
    off=$(stat -c %s "${log_file[$server]}")
    lo0=$(lo_bytes)
    cpu0=$(cpu_us "$name")
    daemons=()
    start=$(date +%s.%N)
    for i in $(seq 1 "$phones"); do
        RUST_LOG=warn "${bin[$which]}" run --config "$dir/$i/agent.toml" 2>"$dir/$i/daemon.log" &
        daemons+=($!)
    done
    local deadline=$((SECONDS + 120)) missing
    while :; do
        missing=0
        for i in $(seq 1 "$phones"); do
            [[ -e $dir/$i/run/features ]] || { missing=$i; break; }
        done
        ((missing)) || break
        if ((SECONDS > deadline)); then
            log "phone $missing did not publish within 120 s ($which, $server, boot $n):" >&2
            tail -n 20 "$dir/$missing/daemon.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    last=$(stat -c %.9Y "$dir"/*/run/features | sort -n | tail -n 1)
    kill "${daemons[@]}"
    wait "${daemons[@]}" 2>/dev/null || true
    daemons=()
    for _ in $(seq 1 200); do
        sessions "$name" || break
        sleep 0.05
    done
    m[$k wall]=$(awk -v a="$start" -v b="$last" 'BEGIN { printf "%.2f", b - a }')
    m[$k cpu]=$(awk -v a="$cpu0" -v b="$(cpu_us "$name")" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
    m[$k lo]=$(($(lo_bytes) - lo0))
    # A boot fetch that failed still ends in a published set (the stored one).
    m[$k failed]=$( { grep -l 'fetch failed' "$dir"/*/daemon.log || true; } | wc -l)
    tail -c +$((off + 1)) "${log_file[$server]}" >"$work/log"
    if [[ $server == ftp ]]; then
        # vsftpd: `FTP command: Client "127.0.0.1", "RETR name"`, `CONNECT: Client ...`,
        # `OK DOWNLOAD: Client "127.0.0.1", "/name", 470 bytes, ...`.
        m[$k sessions]=$(grep -c '\] CONNECT: ' "$work/log" || true)
        m[$k commands]=$(grep -c 'FTP command: ' "$work/log" || true)
        m[$k sizemdtm]=$(grep -cE 'FTP command: .*, "(SIZE|MDTM) ' "$work/log" || true)
        m[$k retr]=$(grep -c 'FTP command: .*, "RETR ' "$work/log" || true)
        m[$k sent]=$(awk -F ', ' '/OK DOWNLOAD: / { s += $3 + 0 } END { print s + 0 }' "$work/log")
    else
        m[$k requests]=$(wc -l <"$work/log")
        m[$k 200]=$(awk '$1 == 200' "$work/log" | wc -l)
        m[$k 304]=$(awk '$1 == 304' "$work/log" | wc -l)
        m[$k other]=$(awk '$1 != 200 && $1 != 304' "$work/log" | wc -l)
        m[$k connections]=$(awk '{ print $2 }' "$work/log" | sort -u | wc -l)
        m[$k sent]=$(awk '{ s += $3 } END { print s + 0 }' "$work/log")
    fi
    log "$server, $which, boot $n: $phones phones published in ${m[$k wall]} s"
}

for server in http https ftp; do
    for which in before after; do
        make_phones "$work/phones/$server-$which" "$server"
        boot "$work/phones/$server-$which" "$server" "$which" 1
        boot "$work/phones/$server-$which" "$server" "$which" 2
    done
done

# The tables: one per server, a row per figure, before | after | after/before per boot.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0) print (b == 0 ? "=" : "-"); else printf "%.2f", b / a }'; }
row() {
    local server=$1 key=$2 label=$3 n line
    line=$(printf '%-34s' "$label")
    for n in 1 2; do
        local a=${m[$server before $n $key]} b=${m[$server after $n $key]}
        line+=$(printf ' %12s %12s %6s' "$a" "$b" "$(ratio "$a" "$b")")
        [[ $n == 2 ]] || line+=" |"
    done
    fig "$line"
}
fig "$phones phones booting at once; BEFORE = ${BENCH_STORM_BEFORE} (release), AFTER = the working tree (release)"
fig "server CPU: $cpu_method; loopback: a network namespace of the storm's own"
for server in http https ftp; do
    fig ""
    case $server in
    http) fig "nginx over HTTP" ;;
    https) fig "nginx over HTTPS (a P-256 certificate; a full handshake per daemon)" ;;
    ftp) fig "vsftpd over FTP (plain, passive; every command logged)" ;;
    esac
    fig "$(printf '%-34s %12s %12s %6s | %12s %12s %6s' "" "boot 1" "" "" "boot 2" "" "")"
    fig "$(printf '%-34s %12s %12s %6s | %12s %12s %6s' "" before after ratio before after ratio)"
    row "$server" failed "phones whose boot fetch failed"
    if [[ $server == ftp ]]; then
        row ftp sessions "sessions (logins)"
        row ftp commands "commands"
        row ftp sizemdtm "SIZE and MDTM"
        row ftp retr "RETR (downloads)"
        row ftp sent "file bytes sent (vsftpd log)"
    else
        row "$server" requests "requests"
        row "$server" 200 "200 (whole file)"
        row "$server" 304 "304 (not modified)"
        row "$server" other "other statuses"
        row "$server" connections "connections"
        row "$server" sent "bytes sent (nginx \$bytes_sent)"
    fi
    row "$server" lo "bytes on loopback (both ways)"
    row "$server" cpu "server CPU (ms)"
    row "$server" wall "wall, start to last publish (s)"
done

{
    cat <<EOF
The provisioning server's load in a boot storm of $phones phones, BEFORE (the release
binary of commit ${BENCH_STORM_BEFORE}) and AFTER (the working tree's), boot 1 with no
state and boot 2 with the state of boot 1; ratio is after/before (the header of
\`scripts/bench-storm.sh\` says how each is measured). Figures, not verdicts: compare
within one run, they vary from run to run.

\`\`\`text
EOF
    cat "$figures"
    printf '%s\n' "\`\`\`"
} >"$work/body"
args=""
[[ $before == 75bfedcc ]] || args+=" --before $before"
[[ $phones == 100 ]] || args+=" --phones $phones"
figures_write storm "bash scripts/bench-storm.sh$args" "$work/body"
