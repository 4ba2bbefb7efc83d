#!/usr/bin/env bash
# The emulated phone's image, from Debian 12 packages and this project only: an ARMv7
# phone for qemu-system-arm (-M virt -cpu cortex-a15) booting BusyBox init, with the
# vvx-armv7 firmware drop installed as firmware/README.md tells an integrator.
#
# Output, in target/phone/:
#   vmlinuz        Debian's armmp kernel (linux-image-6.1.0-NN-armmp:armhf)
#   initrd.cpio    the phone's firmware, the root file system (made read-only at boot):
#                  busybox-static:armhf as init and every tool, the kernel modules
#                  rcS loads, phone-vm/rootfs (inittab, rcS, the stand-ins' scripts,
#                  udhcpc's default.script), the drop (binary, S45license-agent,
#                  agent.toml) and its udhcpc hook, supervisor-sim
#                  built for armv7 (the phone supervisor stand-in) and phone-clock
#                  (the SNTP stand-in, 64-bit time)
#   flash.img      a blank 64 MiB ext4 file system: the data partition (/data)
#   agent.toml     a copy of the image's /etc/license-agent/agent.toml (for tests that
#                  boot it with another deployment's configuration)
#   trust.cpio is NOT made here: the deployment's trust (the provisioning CA and the
#                  keyring) is a second cpio archive appended by whoever boots the phone
#                  (the kernel unpacks concatenated archives), so the image itself holds
#                  no key and any test can bring its own PKI.
#
# The deployment settings are written into the drop's agent.toml, as the README says
# ("in the generated agent.toml"): server https://prov.example.test/ (the host's nginx,
# reached through QEMU's user network), the site serial, the CA file, vqmon enabled,
# short timings so the tests run in seconds (idle_grace 5s, stagger_window 10s), and
# a long wait for the clock at boot (boot_clock_wait 120s: the tests' SNTP stand-in may
# come late when many emulated phones share two cores).
#
# Usage: scripts/phone-image.sh   (needs what scripts/setup-cross.sh installs)
set -euo pipefail

log() { printf 'phone-image: %s\n' "$*"; }
die() {
    printf 'phone-image: error: %s\n' "$*" >&2
    exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"
out=$repo_root/target/phone
debs=$out/debs
mkdir -p "$out" "$debs"
start=$SECONDS

for tool in qemu-system-arm cpio mkfs.ext4 arm-linux-gnueabihf-gcc apt-get dpkg-deb qemu-arm; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup-cross.sh"
done

# -- Debian's packages: the kernel (newest armmp ABI apt offers) and BusyBox ----------
kernel_pkg=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-armmp$' |
    awk '{ print $1 }' | sort -V | tail -n 1)
[[ -n $kernel_pkg ]] || die "apt offers no linux-image-*-armmp (is the armhf architecture added? scripts/setup-cross.sh)"
fetch_deb() { # PACKAGE: downloads PACKAGE:armhf into $debs once, prints the file
    local pkg=$1 name
    name=$(apt-get download --print-uris -q "$pkg:armhf" 2>/dev/null | awk '{ print $2; exit }')
    [[ -n $name ]] || die "apt offers no $pkg:armhf"
    if [[ ! -s $debs/$name ]]; then
        (cd "$debs" && apt-get download -q "$pkg:armhf" >/dev/null 2>&1) || die "apt-get download $pkg:armhf failed"
    fi
    [[ -s $debs/$name ]] || die "$pkg:armhf: $name was not downloaded"
    printf '%s\n' "$debs/$name"
}
kernel_deb=$(fetch_deb "$kernel_pkg")
busybox_deb=$(fetch_deb busybox-static)
log "kernel $(basename "$kernel_deb"), busybox $(basename "$busybox_deb")"

# -- This project's parts ----------------------------------------------------------------
bash "$script_dir/build.sh" vvx-armv7 | sed 's/^/  /'
drop=$repo_root/target/firmware/vvx-armv7
# The supervisor stand-in: supervisor-sim, built like the agent (Debian's Rust, static).
# shellcheck source=scripts/cross-env.sh
source "$script_dir/cross-env.sh"
(
    cross_env armv7-unknown-linux-gnueabihf "$repo_root" || exit 1
    /usr/bin/cargo build -q --release --locked --target armv7-unknown-linux-gnueabihf --bin supervisor-sim
) || die "building supervisor-sim for armv7 failed"
sim=$repo_root/target/debian/armv7-unknown-linux-gnueabihf/release/supervisor-sim

# -- The root file system ----------------------------------------------------------------
root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf -- "$root"' EXIT
dpkg-deb -x "$busybox_deb" "$root/.busybox"
dpkg-deb -x "$kernel_deb" "$root/.kernel"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,data,root,lib/modules}
install -m 0755 "$root/.busybox/bin/busybox" "$root/bin/busybox"
# Every applet as a link, where BusyBox itself would install it.
while read -r applet; do
    [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done < <(qemu-arm "$root/bin/busybox" --list-full)
ln -s /bin/busybox "$root/init" # the kernel starts /init of an initramfs: BusyBox init

version=$(basename "$(find "$root/.kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d)")
cp "$(find "$root/.kernel/boot" -name 'vmlinuz-*')" "$out/vmlinuz"
while read -r module; do
    install -D -m 0644 "$root/.kernel/lib/modules/$version/kernel/$module" "$root/lib/modules/$version/kernel/$module"
done <phone-vm/rootfs/etc/phone/modules
rm -rf "$root/.busybox" "$root/.kernel"

cp -a phone-vm/rootfs/. "$root/"
cp -a "$drop/." "$root/"
# The license agent's DHCP hook, where the phone's udhcpc script runs its hooks (rcS
# starts udhcpc when the kernel command line says phone.net=dhcp): the drop's copy when
# the drop ships it, else the project's file (firmware/README.md, "The hooks in the drop").
hook=$root/usr/share/udhcpc/default.script.d/license-agent
[[ -e $hook ]] || install -D -m 0755 firmware/dhcp/udhcpc-license-agent "$hook"
[[ -x $hook ]] || die "the DHCP hook $hook is not executable"
install -m 0755 "$sim" "$root/usr/bin/supervisor-sim"
arm-linux-gnueabihf-gcc -O2 -Wall -Wextra -Werror -static -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64 \
    -s -o "$root/usr/bin/phone-clock" phone-vm/phone-clock.c

# The deployment's settings in the drop's agent.toml (firmware/README.md, "After installing").
config=$root/etc/license-agent/agent.toml
sed -i -e 's|^# site_serial = .*|site_serial = "100000000001"|' \
    -e 's|^# server = .*|server = "https://prov.example.test/"|' \
    -e 's|^enabled_features = .*|enabled_features = ["vqmon"]|' "$config"
cat >>"$config" <<'EOF'

# -- The emulated phone's deployment (scripts/phone-image.sh) ---------------------------
[fetch]
ca_file = "/etc/license-agent/provisioning-ca.pem"   # appended at boot (trust.cpio)
connect_timeout = "5s"
total_timeout = "20s"

[timing]
idle_grace = "5s"        # tests run in seconds, not the default 30s
stagger_window = "10s"
boot_clock_wait = "120s" # SNTP (the test) may come late on a loaded machine; the init
                         # script's READY_WAIT (180 s) covers it and two fetches
EOF
for key in 'site_serial = "100000000001"' 'server = "https://prov.example.test/"' 'enabled_features = \["vqmon"\]'; do
    grep -q "^$key$" "$config" || die "agent.toml: could not set $key"
done

# A copy of the deployment's agent.toml beside the image: a test that boots the phone
# with another deployment (the DHCP tests: [provisioning] source = "dhcp") starts from
# it and appends its own to the firmware, as it appends the trust.
cp "$config" "$out/agent.toml"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out/initrd.cpio.new"
mv "$out/initrd.cpio.new" "$out/initrd.cpio"

# -- The flash: a blank ext4 data partition ------------------------------------------------
rm -f "$out/flash.img"
truncate -s 64M "$out/flash.img"
mkfs.ext4 -q -F -L data "$out/flash.img"

log "kernel $version, $(stat -c %s "$out/initrd.cpio") bytes of initramfs, flash 64 MiB; in $out ($((SECONDS - start)) s)"
