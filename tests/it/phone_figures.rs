//! Figures measured on the emulated phone (issue 13), printed by `scripts/bench.sh`,
//! never asserted (the machines are noisy): for a first boot (empty flash, both files
//! downloaded) and a reboot (the store held, both files unchanged on the server), the
//! time from power-on to the feature set published, and the agent's peak resident
//! memory and CPU time for that boot cycle, read inside the guest from `/proc` (the ARM
//! process's own, not QEMU's).
//!
//! Peak memory is the largest `Rss` of `/proc/PID/smaps_rollup`, sampled every 20 ms
//! from the agent's start until it has published: on this kernel `VmHWM` and `VmRSS` in
//! `/proc/PID/status` read 4 kB for the static agent (`shared/notes/phone-vm.md`).
//! CPU time is fields 14 and 15 of `/proc/PID/stat` (ticks of 10 ms) once it has
//! published. The clock is set as soon as the phone's control channel answers (SNTP at
//! once), so the boot waits for nothing but the agent.
//!
//! Needs the image (`scripts/phone-image.sh`), so its tests are `#[ignore]`d in a plain
//! `cargo test`: `scripts/bench.sh` runs them with `--ignored`.

use crate::common;

use std::time::{Duration, Instant};

use common::vm::{Lab, Vm};
use common::{now, rfc};

const DAY: i64 = 86_400;

/// Samples the agent from its start until the features file is there; prints
/// `uptime_at_published peak_rss_kb cpu_ticks`.
const SAMPLER: &str = r#"
f=/run/license-agent/features; p=/run/license-agent.child.pid; peak=0
until pid=$(cat $p 2>/dev/null) && [ -n "$pid" ]; do usleep 20000; done
until { IFS= read -r _ <$f; } 2>/dev/null; do
    rss=$(awk '/^Rss:/ { print $2 }' /proc/$pid/smaps_rollup 2>/dev/null)
    [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
    usleep 20000
done
read -r up _ </proc/uptime
rss=$(awk '/^Rss:/ { print $2 }' /proc/$pid/smaps_rollup)
[ "$rss" -gt "$peak" ] && peak=$rss
set -- $(cut -d')' -f2 /proc/$pid/stat)
echo "$up $peak $(( ${12} + ${13} ))"
"#;

/// One boot measured: (host seconds from power-on, guest uptime, peak kB, ticks).
fn measure(vm: &mut Vm, powered: Instant) -> (f64, f64, u64, u64) {
    vm.wait_boot();
    vm.set_clock(now());
    let out = vm.sh(SAMPLER);
    let host = powered.elapsed().as_secs_f64();
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "sampler: {out}");
    (
        host,
        fields[0].parse().unwrap(),
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
    )
}

#[test]
#[ignore = "the emulated phone: scripts/phone-check.sh builds its image and runs this with --ignored"]
fn figures_on_the_phone() {
    let mut lab = Lab::new();
    let t = now();
    let spec = |name: &str| format!("{name},new,{},{}", rfc(t - DAY), rfc(t + 365 * DAY));
    lab.post_phone(&[spec("vqmon")]);
    lab.post_site(&[spec("usb-call-recording")]);
    let mut vm = lab.power_on();
    let powered = vm.powered;
    let first = measure(&mut vm, powered);
    // A reboot by hand (QEMU restarts the machine): the host clock restarts here.
    let _ = vm.try_sh("sync; reboot -f", Duration::from_secs(2));
    let rebooted = Instant::now();
    let second = measure(&mut vm, rebooted);
    for (label, (host, uptime, peak, ticks)) in [
        ("first boot (empty flash, 2 downloads)", first),
        ("reboot (store held, 2 x 304)", second),
    ] {
        println!(
            "phone: {label}: power-on to published {uptime:.2} s (guest uptime; {host:.1} s on the host), agent peak RSS {peak} kB, agent CPU {:.2} s",
            ticks as f64 / 100.0
        );
    }
}
