#!/usr/bin/env bash
# Figures, not verdicts: what one `license-agent run --once` over HTTPS costs the phone,
# an earlier commit's agent and the working tree's side by side in one run (issue 26:
# the boot path as lean as before issue 11). BEFORE is the release binary of --before
# (default a445567f, the last agent before issue 11 moved fetching onto threads), built
# in a temporary `git worktree` with the target folder target/bench-storm/build (shared
# with scripts/bench-storm.sh: another commit then builds only the crate) and kept as
# target/boot-figures/license-agent-<commit>, so a rerun does not build it again; AFTER
# is the working tree's release binary.
#
# The server: real nginx over HTTPS on 127.0.0.1 (a CA and a certificate for 127.0.0.1
# made with openssl here, as scripts/bench-storm.sh does; the agents' fetch.ca_file)
# serving the demo phone's two license files (examples/demo/provisioning, which both
# commits verify with examples/demo/keyring). Both agents get the same answers, two 200s
# each run: the working tree's agent never sends a validator (src/fetch/mod.rs, "Every
# file whole, every time"), so it can never get a 304, and this nginx answers the older
# agent's If-None-Match / If-Modified-Since with a 200 too (`etag off`,
# `if_modified_since off`). A second table gives BEFORE as it ran on a phone at a
# reboot, its validators answered with two 304s (a second nginx server, `etag on`,
# `if_modified_since exact`), beside the same AFTER.
#
# Each agent runs with a state folder of its own, filled by one unmeasured run first: the
# measured runs are reboots, both files fetched and found "unchanged". For each agent:
#   - threads started: the clone/clone3 calls with CLONE_THREAD (`strace -f -e
#     trace=clone,clone3`), the main thread not counted;
#   - system calls: `strace -f -c`'s total, execve included, median of 5 runs;
#   - wall time: $EPOCHREALTIME around the run (fork and exec included), median of
#     --runs runs (default 21), the agents and curl run in turn;
#   - peak resident memory: `/usr/bin/time -f %M` (the peak RSS, KiB), median of as
#     many runs, in the same turns;
#   - CPU time: user + system, the mean of as many runs back to back, from the shell's
#     `times` (getrusage of the children: their total, to the millisecond).
# curl (`curl --cacert ... -o /dev/null -o /dev/null` the two files over one connection)
# is measured the same way; the project holds the agent's peak to a third of curl's.
# The statuses nginx logged for each agent's measured runs are printed under the table.
# What it prints is also written to docs/figures/boot.md (scripts/lib-figures.sh: the
# commit, the date and the machine above it; rewritten whole, never edited by hand).
# About a minute once both binaries are built (a release build each). Run by hand, not
# by the test command (it builds the earlier commit); needs nginx, openssl, strace,
# curl and GNU time:
#   bash scripts/boot-figures.sh [--before COMMIT] [--runs N]
# With --layout it measures nothing and writes link/boot.ld instead: the functions of
# the working tree's agent that two boots run over the same HTTPS (a first run, both
# files accepted, then a reboot, both unchanged), as valgrind's callgrind saw them in
# the release build linked without link/boot.ld (target/boot-layout, with the linker's
# map), for the linker to put side by side (see link/boot.ld for why). Rerun it when the
# boot path's code changed much (the peak memory above then creeps back up), or a
# dependency or the compiler did; needs valgrind and the host's lld (Rust 1.90 on):
#   bash scripts/boot-figures.sh --layout
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/lib-figures.sh
. scripts/lib-figures.sh
figures_start
log() { printf 'bench: boot: %s\n' "$*"; }
die() {
    log "$*" >&2
    exit 1
}

usage() {
    sed -n '/^# About a minute/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}
before=a445567f
runs=21
layout=false
while (($#)); do
    case $1 in
    --before) before=${2:?--before needs a commit}; shift 2 ;;
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --layout) layout=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) log "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]{0,2}$ ]] || die "--runs: 1 to 999, not $runs"
export PATH=$PATH:/usr/sbin:/sbin
for tool in nginx openssl strace curl; do
    command -v "$tool" >/dev/null || die "no $tool (apt-get install nginx openssl strace curl)"
done
[[ -x /usr/bin/time ]] || die "no /usr/bin/time (apt-get install time)"
! $layout || command -v valgrind >/dev/null || die "no valgrind (apt-get install valgrind)"

# The binaries.
commit=$(git rev-parse --verify --quiet "$before^{commit}") || die "no commit $before"
short=$(git rev-parse --short "$commit")
old=$PWD/target/boot-figures/license-agent-$commit
if $layout; then
    : # only the working tree's agent
elif [[ -x $old ]]; then
    log "BEFORE: $old (built earlier)"
else
    log "BEFORE: building $short in a temporary worktree (target/bench-storm/build)"
    src=$(mktemp -d /tmp/la-boot-src.XXXXXX)
    trap 'git worktree remove --force "$src" 2>/dev/null || rm -rf -- "$src"' EXIT
    git worktree add --quiet --detach "$src" "$commit"
    build=$PWD/target/bench-storm/build
    (cd "$src" && CARGO_TARGET_DIR=$build cargo build --release --quiet --locked --bin license-agent)
    mkdir -p "$(dirname "$old")"
    cp "$build/release/license-agent" "$old.tmp"
    mv -f "$old.tmp" "$old"
    git worktree remove --force "$src"
    trap - EXIT
fi
if $layout; then
    # The release build as shipped, only linked without link/boot.ld and with the
    # linker's map, which names the section of each function (build.rs).
    mkdir -p target/boot-layout
    LICENSE_AGENT_BOOT_PROFILE=$PWD/target/boot-layout/license-agent.map CARGO_TARGET_DIR=$PWD/target/boot-layout \
        cargo build --release --quiet --locked --bin license-agent
    new=$PWD/target/boot-layout/release/license-agent
else
    cargo build --release --quiet --locked --bin license-agent
    new=${CARGO_TARGET_DIR:-$PWD/target}/release/license-agent
fi

demo=$PWD/examples/demo
work=$(mktemp -d /tmp/la-boot.XXXXXX)
chmod 755 "$work"
nginx_pid=""
cleanup() {
    if [[ -n $nginx_pid ]]; then
        kill "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
# Every table printed, also kept for docs/figures/boot.md.
figures=$work/figures
fig() {
    printf 'bench: boot: %s\n' "$*" | sed 's/ *$//' | tee -a "$figures"
}

# The provisioning folder: the demo phone's two files.
root=$work/root
mkdir -p "$root"
cp "$demo"/provisioning/*-license.cfg "$root/"
chmod 755 "$root"
chmod 644 "$root"/*.cfg
site=000000000000-license.cfg
phone=0004f2000001-license.cfg

# TLS: a CA and a server certificate for 127.0.0.1 (and localhost), as bench-storm.sh.
tls=$work/tls
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=boot-figures CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$tls/key.pem" -out "$tls/req.pem" 2>/dev/null
printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth \
    subjectAltName=IP:127.0.0.1,DNS:localhost >"$tls/ext"
openssl x509 -req -in "$tls/req.pem" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
    -days 30 -extfile "$tls/ext" -out "$tls/cert.pem" 2>/dev/null

# Two free ports on 127.0.0.1: nothing accepts there.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=()
for p in $(seq 18443 18543); do
    listening "$p" || ports+=("$p")
    ((${#ports[@]} < 2)) || break
done
((${#ports[@]} == 2)) || die "no two free ports in 18443-18543"
port_200=${ports[0]} port_304=${ports[1]}

# nginx: one worker; on port_200 every request is answered whole (no validator is
# honoured), on port_304 a matching validator is answered 304 (as on the phones' servers).
mkdir -p "$work/nginx/tmp"
user_line=""
((EUID != 0)) || user_line="user root root;"
cat >"$work/nginx/nginx.conf" <<EOF
# Written by scripts/boot-figures.sh.
$user_line
worker_processes 1;
pid $work/nginx/nginx.pid;
lock_file $work/nginx/nginx.lock;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
    default_type application/octet-stream;
    types { text/plain cfg; }
    log_format boot "\$server_port \$status \$request";
    access_log $work/nginx/access.log boot;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    server_tokens off;
    keepalive_timeout 30s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $tls/cert.pem;
    ssl_certificate_key $tls/key.pem;
    root $root;
    server {
        listen 127.0.0.1:$port_200 ssl;
        etag off;
        if_modified_since off;
    }
    server {
        listen 127.0.0.1:$port_304 ssl;
        etag on;
        if_modified_since exact;
    }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' </dev/null >"$work/nginx.out" 2>&1 &
nginx_pid=$!
for _ in $(seq 1 200); do
    listening "$port_200" && listening "$port_304" && break
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.05
done
if ! { listening "$port_200" && listening "$port_304"; }; then
    cat "$work/nginx.out" "$work/nginx/error.log" >&2 2>/dev/null || true
    die "nginx does not listen on 127.0.0.1:$port_200 and :$port_304"
fi

# The agents: NAME BINARY PORT. Each has a folder and a state of its own.
declare -A bin=() conf=()
# Put before the first run of each agent (the callgrind of --layout).
first_run=()
agent() {
    local name=$1 binary=$2 port=$3 dir=$work/agents/$1
    mkdir -p "$dir"
    # `report` is the working tree's (the earlier agent knows no such key); `run --once`
    # uploads no report anyway.
    local report=""
    [[ $binary != "$new" ]] || report='report = false'
    cat >"$dir/agent.toml" <<EOF
mac = "0004f2000001"
site_serial = "100000000001"
keyring = "$demo/keyring"
state_dir = "$dir/state"
server = "https://127.0.0.1:$port/"
$report
enabled_features = ["vqmon", "usb-call-recording"]
supervisor = "none"
control_socket = "$dir/control.sock"
features_file = "$dir/features"
[fetch]
ca_file = "$tls/ca.pem"
EOF
    bin[$name]=$binary
    conf[$name]=$dir/agent.toml
    # The first boot: both files accepted into the state; unmeasured.
    RUST_LOG=warn "${first_run[@]}" "$binary" run --once --config "$dir/agent.toml" >"$dir/first.out" 2>&1 ||
        { cat "$dir/first.out" >&2; die "$name: the first run --once failed"; }
    grep -q "$phone accepted" "$dir/first.out" ||
        { cat "$dir/first.out" >&2; die "$name: the first run --once did not accept $phone"; }
}

if $layout; then
    first_run=(valgrind -q --tool=callgrind --dump-instr=yes --callgrind-out-file="$work/callgrind.first")
    agent after "$new" "$port_200"
else
    agent before "$old" "$port_200"
    agent after "$new" "$port_200"
    agent before304 "$old" "$port_304"
fi
names=(before after before304 curl)
# command NAME: sets cmd to NAME's command line.
command_of() {
    if [[ $1 == curl ]]; then
        cmd=(curl -sS --fail --cacert "$tls/ca.pem" -o /dev/null -o /dev/null
            "https://127.0.0.1:$port_200/$site" "https://127.0.0.1:$port_200/$phone")
    else
        cmd=(env RUST_LOG=warn "${bin[$1]}" run --once --config "${conf[$1]}")
    fi
}

# The nginx log lines written since offset $1, as "port status" counts.
log_since() { tail -c +$(($1 + 1)) "$work/nginx/access.log"; }

declare -A m=()
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
# seconds "0m0.012s" -> milliseconds
to_ms() { awk '{ split($0, a, "m"); sub("s", "", a[2]); printf "%.1f\n", (a[1] * 60 + a[2]) * 1000 }'; }

# A run still correct: both files fetched and unchanged (the agents), or curl's success.
check_out() {
    local name=$1 out=$2
    [[ $name == curl ]] && return 0
    if ! { grep -qE "$site (unchanged|not-modified)" "$out" && grep -qE "$phone (unchanged|not-modified)" "$out"; }; then
        cat "$out" >&2
        die "$name: run --once did not find both files unchanged (or not modified)"
    fi
}

# --layout: the first boot (above) and a reboot under callgrind, then link/boot.ld from
# the section of every function of the agent they ran.
if $layout; then
    RUST_LOG=warn valgrind -q --tool=callgrind --dump-instr=yes --callgrind-out-file="$work/callgrind.reboot" \
        "$new" run --once --config "${conf[after]}" >"$work/out.after" 2>&1
    check_out after "$work/out.after"
    # The map (lld's: VMA, LMA, size, alignment, then FILE:(SECTION)) gives where each
    # function's section is; callgrind gives, object by object (`ob=(ID) FILE`, then
    # `ob=(ID)`), the address of each instruction run: `0xADDRESS`, or `+N`, `-N`, `*`
    # from the one before (the `calls=` lines aside). Hashes are left out of the names
    # (`17h<hash>E` of the legacy mangling, `Cs<hash>_` of the v0 one for the crates of
    # the standard library), and so are the numbers LLVM puts after the copies of a
    # function it made local (`NAME.123`; each name matches with or without one): they
    # change with the compiler, the target and the versions; the names rarely do.
    awk -v bin="$new" '
        function num(h,    n, i) {
            n = 0
            h = tolower(h)
            sub(/^0x/, "", h)
            for (i = 1; i <= length(h); i++) n = n * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
            return n
        }
        FILENAME ~ /\.map$/ {
            if ($0 !~ /:\(\.text\.[^)]*\)$/) next
            name = $0
            sub(/.*:\(/, "", name)
            sub(/\)$/, "", name)
            n++
            start[n] = num($1)
            size[n] = num($3)
            sec[n] = name
            next
        }
        FNR == 1 { split("", obname); cur = "" }
        /^c?ob=\(/ {
            id = $1
            sub(/^c?ob=\(/, "", id)
            sub(/\).*/, "", id)
            if (NF > 1) obname[id] = $2
            if ($0 ~ /^ob=/) cur = obname[id]
            next
        }
        /^(0x|[-+*])/ {
            t = $1
            if (t ~ /^0x/) at = num(t)
            else if (t ~ /^\+/) at += substr(t, 2) + 0
            else if (t ~ /^-/) at -= substr(t, 2) + 0
            if (cur == bin) ran[at] = 1
        }
        END {
            for (a in ran) {
                lo = 1
                hi = n
                while (lo < hi) {
                    mid = int((lo + hi + 1) / 2)
                    if (start[mid] <= a + 0) lo = mid; else hi = mid - 1
                }
                if (n && start[lo] <= a + 0 && a + 0 < start[lo] + size[lo]) hit[sec[lo]] = 1
            }
            for (p in hit) {
                sub(/^\.text\.(unlikely\.|hot\.|startup\.)?/, "", p)
                sub(/\.(llvm\.)?[0-9]+$/, "", p)
                if (p ~ /^_ZN/) sub(/17h[0-9a-f]+E$/, "17h*E", p)
                else if (p ~ /^_R/) gsub(/Cs[0-9A-Za-z]+_/, "Cs*_", p)
                if (p ~ /^[A-Za-z0-9_$.*]+$/) print p
            }
        }' target/boot-layout/license-agent.map "$work/callgrind.first" "$work/callgrind.reboot" |
        LC_ALL=C sort -u >"$work/ran"
    [[ -s $work/ran ]] || die "--layout: no function of the agent found run (is the map lld's?)"
    {
        sed -n '/^\/\*/,/^\*\//p' link/boot.ld
        printf 'SECTIONS\n{\n  .text.boot :\n  {\n'
        # ring's assembly, one section per file: all of it (about 120 kB), for the
        # boot runs its AES-GCM, SHA-2 and P-256.
        printf '    *libring-*.rlib:*(.text)\n'
        awk '{ printf "    *(.text.%s .text.%s.* .text.unlikely.%s .text.unlikely.%s.*)\n", $0, $0, $0, $0 }' "$work/ran"
        printf '  }\n}\nINSERT BEFORE .text;\n'
    } >"$work/boot.ld"
    mv -f "$work/boot.ld" link/boot.ld
    log "--layout: link/boot.ld, $(wc -l <"$work/ran") functions"
    exit 0
fi

for name in "${names[@]}"; do
    command_of "$name"
    # Threads started: clone/clone3 with CLONE_THREAD, in every process of the run.
    strace -f -qq -e trace=clone,clone3 -e signal=none -o "$work/clone.$name" "${cmd[@]}" >"$work/out.$name" 2>&1
    check_out "$name" "$work/out.$name"
    m[$name threads]=$(grep -c 'CLONE_THREAD' "$work/clone.$name" || true)
    # System calls: strace -c's total.
    for _ in 1 2 3 4 5; do
        strace -f -qq -c -U calls,name -o "$work/calls.$name" "${cmd[@]}" >/dev/null 2>&1
        awk '$2 == "total" { print $1 }' "$work/calls.$name"
    done | median >"$work/calls-median.$name"
    m[$name calls]=$(cat "$work/calls-median.$name")
done

# Wall, CPU and peak memory: the agents and curl in turn, runs times each.
for name in "${names[@]}"; do
    : >"$work/wall.$name"
    : >"$work/rss.$name"
done
offset=$(stat -c %s "$work/nginx/access.log")
for _ in $(seq 1 "$runs"); do
    for name in "${names[@]}"; do
        command_of "$name"
        (
            s=$EPOCHREALTIME
            "${cmd[@]}" >"$work/out.$name" 2>&1
            e=$EPOCHREALTIME
            awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f\n", (e - s) * 1000 }' >>"$work/wall.$name"
        )
        check_out "$name" "$work/out.$name"
        /usr/bin/time -f %M -o "$work/rss1" "${cmd[@]}" >/dev/null 2>&1
        cat "$work/rss1" >>"$work/rss.$name"
    done
done
# CPU: runs times back to back in a subshell, whose children's user and system time
# `times` then gives (to the millisecond: their sum over all the runs, divided by runs).
# `times` redirected runs in that subshell; a pipe would fork, and a fork has no
# children's times.
for name in "${names[@]}"; do
    command_of "$name"
    (
        for _ in $(seq 1 "$runs"); do "${cmd[@]}" >/dev/null 2>&1; done
        times >"$work/times"
    )
    m[$name cpu]=$(sed -n 2p "$work/times" | tr ' ' '\n' | to_ms |
        awk -v n="$runs" '{ t += $1 } END { printf "%.2f\n", t / n }')
done
log_since "$offset" >"$work/log"
for name in "${names[@]}"; do
    m[$name wall]=$(median <"$work/wall.$name")
    m[$name rss]=$(median <"$work/rss.$name")
done
# The answers nginx gave on PORT in the measured runs (wall, peak and CPU: 3 x runs
# runs of each, two files each), as "STATUS x COUNT".
answers_of() {
    local port=$1
    awk -v p="$port" '$1 == p { print $2 }' "$work/log" | sort | uniq -c | awk '{ printf "%s%s x %s", sep, $2, $1; sep = ", " }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0) print (b == 0 ? "=" : "-"); else printf "%.2f", b / a }'; }
# table BEFORE_NAME TITLE
table() {
    local b=$1 key label line
    fig ""
    fig "$2"
    fig "$(printf '%-36s %10s %10s %8s %10s %10s' "" before after "after/" curl "")"
    fig "$(printf '%-36s %10s %10s %8s %10s %10s' "" "" "" before "" "after/curl")"
    for key in threads calls wall cpu rss; do
        case $key in
        threads) label="threads started (not the main one)" ;;
        calls) label="system calls (strace -f -c)" ;;
        wall) label="wall time (ms, median)" ;;
        cpu) label="CPU time, user+system (ms, mean)" ;;
        rss) label="peak resident memory (KiB, median)" ;;
        esac
        line=$(printf '%-36s %10s %10s %8s %10s' "$label" "${m[$b $key]}" "${m[after $key]}" \
            "$(ratio "${m[$b $key]}" "${m[after $key]}")" "${m[curl $key]}")
        [[ $key != rss ]] || line+=$(printf ' %10s' "$(ratio "${m[curl $key]}" "${m[after $key]}")")
        fig "$line"
    done
}
fig "run --once over HTTPS (nginx, a P-256 certificate), a reboot with the state of a first run"
fig "BEFORE = $short (release), AFTER = the working tree (release); $runs runs each, in turn"
table before "both agents answered 200 for both files (nginx: etag off, if_modified_since off)"
fig "  nginx's answers in the measured runs, BEFORE, AFTER and curl: $(answers_of "$port_200")"
table before304 "BEFORE as at a phone's reboot, its validators answered 304; AFTER as above (200s)"
fig "  nginx's answers to BEFORE's validators in the measured runs: $(answers_of "$port_304")"
fig ""
fig "peak resident memory BEFORE/curl: $(ratio "${m[curl rss]}" "${m[before rss]}") (200s), $(ratio "${m[curl rss]}" "${m[before304 rss]}") (304s)"

{
    cat <<EOF
One \`license-agent run --once\` over HTTPS at a reboot (the state of a first run kept),
BEFORE (the release binary of commit $short) and AFTER (the working tree's) side by
side, and curl fetching the same two files; the header of \`scripts/boot-figures.sh\`
says how each is measured. Figures, not verdicts: compare within one run, they vary
from run to run.

\`\`\`text
EOF
    cat "$figures"
    printf '%s\n' "\`\`\`"
} >"$work/body"
args=""
[[ $before == a445567f ]] || args+=" --before $before"
[[ $runs == 21 ]] || args+=" --runs $runs"
figures_write boot "bash scripts/boot-figures.sh$args" "$work/body"
