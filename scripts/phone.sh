#!/usr/bin/env bash
# A phone to try by hand: the emulated ARM phone of scripts/phone-image.sh booted
# under qemu-system-arm with an interactive console (you are root on the phone's serial
# console), the license agent started by its init script, and a provisioning server
# on this machine serving it two licenses over HTTPS. Try:
#
#   license-agent status          license-agent check-sync
#   cat /run/license-agent/features   logread | grep license-agent
#   phone-clock set 2222121600    (2040-06-01: vqmon ends; the supervisor stand-in
#                                  reboots the phone once it is idle)
#
# Quit with Ctrl-A then X. The flash (the phone's /data) is kept in
# target/phone/by-hand/ between runs; --fresh starts from a blank one.
#
# The supervisor stand-in's events go to target/phone/by-hand/supervisor.log, and it
# takes commands appended to target/phone/by-hand/supervisor.in, from another terminal:
#   echo "call active" >> target/phone/by-hand/supervisor.in    (call idle, check-sync)
#
# Usage: scripts/phone.sh [--fresh] [--1970]
#   --1970   boot with the clock at 1970, as a phone before SNTP: the agent waits for
#            the clock (boot_clock_wait); set it with `phone-clock set SECONDS`
# Needs what scripts/setup-cross.sh installs; run as root (nginx binds 127.0.0.1 only).
set -euo pipefail

log() { printf 'phone: %s\n' "$*" >&2; }
die() {
    printf 'phone: error: %s\n' "$*" >&2
    exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"

fresh=0 rtc=base=utc
for arg in "$@"; do
    case $arg in
        --fresh) fresh=1 ;;
        --1970) rtc=base=1970-01-01T00:00:10 ;;
        -h | --help)
            sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done

image=$repo_root/target/phone
[[ -f $image/initrd.cpio ]] || bash "$script_dir/phone-image.sh"
cargo build -q --locked --bin license-issuer
issuer=$repo_root/target/debug/license-issuer
dir=$image/by-hand
mkdir -p "$dir"
((fresh)) && rm -rf "${dir:?}"/*

# -- The deployment: a private CA, a vendor key, two licenses (once) -------------------
if [[ ! -f $dir/trust.cpio ]]; then
    log "making a private CA, a server certificate for prov.example.test and a vendor key in $dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=license-agent by-hand CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=prov.example.test" \
        -keyout "$dir/server-key.pem" -out "$dir/server.csr" 2>/dev/null
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -days 3650 -out "$dir/server-cert.pem" \
        -extfile <(printf 'subjectAltName=DNS:prov.example.test\n') 2>/dev/null
    rm -f "$dir/vendor.key"
    "$issuer" keygen -o "$dir/vendor.key" >"$dir/keyring"
    mkdir -p "$dir/www" "$dir/trust/etc/license-agent" "$dir/trust/usr/share/license-agent"
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    year=$(date -u -d '+1 year' +%Y-%m-%dT%H:%M:%SZ)
    "$issuer" sign --key "$dir/vendor.key" --serial 0004f2000001 --kind phone \
        --feature "vqmon,new,$now,2040-06-01T00:00:00Z" -o "$dir/www/0004f2000001-license.cfg"
    "$issuer" sign --key "$dir/vendor.key" --serial 100000000001 --kind site \
        --feature "usb-call-recording,new,$now,$year" -o "$dir/www/000000000000-license.cfg"
    cp "$dir/ca.pem" "$dir/trust/etc/license-agent/provisioning-ca.pem"
    cp "$dir/keyring" "$dir/trust/usr/share/license-agent/keyring"
    (cd "$dir/trust" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$dir/trust.cpio"
fi
[[ -f $dir/flash.img ]] || cp "$image/flash.img" "$dir/flash.img"
cat "$image/initrd.cpio" "$dir/trust.cpio" >"$dir/initrd.cpio"

# -- The provisioning server: nginx on 127.0.0.1, a free port ----------------------------
port=18443
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<EOF
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events {}
http {
    access_log $dir/nginx/access.log;
    client_body_temp_path $dir/nginx;
    proxy_temp_path $dir/nginx;
    fastcgi_temp_path $dir/nginx;
    uwsgi_temp_path $dir/nginx;
    scgi_temp_path $dir/nginx;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $dir/server-cert.pem;
        ssl_certificate_key $dir/server-key.pem;
        root $dir/www;
    }
}
EOF
nginx -c "$dir/nginx/nginx.conf" &
nginx_pid=$!
trap 'kill "$nginx_pid" 2>/dev/null || true' EXIT
log "provisioning server: https://127.0.0.1:$port/ ($dir/www), the phone's https://prov.example.test/"
log "booting the phone (Ctrl-A then X quits); the supervisor: $dir/supervisor.in (commands), $dir/supervisor.log (events)"

# The supervisor port's host side: commands from supervisor.in, events to
# supervisor.log (someone must read the port, or the stand-in would block writing).
rm -f "$dir/supervisor.sock"
: >"$dir/supervisor.in"
(
    for _ in $(seq 1 100); do
        [[ -S $dir/supervisor.sock ]] && break
        sleep 0.1
    done
    tail -n 0 -f "$dir/supervisor.in" | socat - "UNIX-CONNECT:$dir/supervisor.sock" >>"$dir/supervisor.log"
) &
relay=$!
trap 'kill "$nginx_pid" 2>/dev/null || true; pkill -P "$relay" 2>/dev/null || true' EXIT
qemu-system-arm -M virt -cpu cortex-a15 -m 256 -nographic \
    -kernel "$image/vmlinuz" -initrd "$dir/initrd.cpio" -append "console=ttyAMA0 quiet" \
    -rtc "$rtc" \
    -drive "file=$dir/flash.img,format=raw,if=none,id=flash" -device virtio-blk-device,drive=flash \
    -netdev "user,id=net,restrict=on,guestfwd=tcp:10.0.2.100:443-cmd:socat - TCP:127.0.0.1:$port" \
    -device virtio-net-device,netdev=net,mac=00:04:f2:00:00:01 \
    -device virtio-rng-device -device virtio-serial-device \
    -chardev "socket,id=supervisor,path=$dir/supervisor.sock,server=on,wait=off" \
    -device virtserialport,chardev=supervisor,name=supervisor,nr=2
