//! The agent on a whole emulated phone (issue 13): Debian's armmp kernel and BusyBox
//! under `qemu-system-arm`, the vvx-armv7 firmware drop started by its own init script,
//! the phone supervisor stand-in really rebooting the machine, the flash an NBD server
//! that keeps only what the guest flushed, power cuts as SIGKILL to QEMU
//! (`tests/common/vm.rs`, `tests/common/nbd.rs`).
//!
//! Needs the image (`scripts/phone-image.sh`), so it is not part of a plain `cargo
//! test` (`test = false` in Cargo.toml): `scripts/phone-check.sh` builds the image and
//! runs `cargo test --test phone`. `PHONE_CUTS` sets the number of power cuts (25;
//! `scripts/phone-soak.sh` runs 500).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::vm::{Lab, Vm, MAC};
use common::{now, rfc};

const DAY: i64 = 86_400;
const PHONE_FILE: &str = "0004f2000001-license.cfg";
const SITE_FILE: &str = "000000000000-license.cfg";

/// A `--feature` argument of `license-issuer sign`.
fn feature(name: &str, start: i64, end: Option<i64>) -> String {
    let end = end.map_or_else(|| "never".to_string(), rfc);
    format!("{name},new,{},{end}", rfc(start))
}

/// The feature names in the phone's features file (empty when there is none).
fn published(vm: &mut Vm) -> Vec<String> {
    names(&vm.sh("cat /run/license-agent/features 2>/dev/null; true"))
}

fn names(file: &str) -> Vec<String> {
    file.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.starts_with("started "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// What the phone application stand-in started with, once it has.
fn app_started(vm: &mut Vm) -> Option<(f64, Vec<String>)> {
    let text = vm.sh("cat /run/phone-app.started 2>/dev/null; true");
    let first = text.lines().next()?;
    let uptime = first.strip_prefix("started ")?.parse().ok()?;
    Some((uptime, names(&text)))
}

/// Polls `check` every half second until it gives a value, at most `timeout`.
fn wait_until<T>(
    vm: &mut Vm,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&mut Vm) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check(vm) {
            return value;
        }
        if Instant::now() > deadline {
            panic!("never {what} within {timeout:?}\n{}", vm.diagnostics());
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the agent answers on its control socket.
fn wait_agent(vm: &mut Vm) {
    wait_until(vm, Duration::from_secs(120), "the agent answering", |vm| {
        let (status, _) = vm
            .try_sh("license-agent status >/dev/null", Duration::from_secs(30))
            .ok()?;
        (status == 0).then_some(())
    });
}

/// The requests nginx served, as `path status` (a TLS handshake refused for a clock
/// before the certificate's start leaves no line).
fn served(lab: &Lab) -> Vec<String> {
    lab.nginx
        .access_entries()
        .iter()
        .map(|e| format!("{} {} {}", e.path, e.status, e.ssl_protocol))
        .collect()
}

#[test]
fn a_cold_boot_at_1970_waits_for_the_clock_then_fetches_by_name_over_https() {
    let mut lab = Lab::new();
    let t = now();
    lab.post_phone(&[feature("vqmon", t - DAY, Some(t + 365 * DAY))]);
    lab.post_site(&[feature("usb-call-recording", t - DAY, None)]);
    let mut vm = lab.power_on();
    vm.wait_boot();
    assert!(vm.clock() < 3600, "the phone boots at 1970: {}", vm.clock());
    wait_agent(&mut vm);

    // 1970: nothing time-based is decided, nothing fetched, nothing published, so the
    // application (next in the boot order) has not started.
    let status = vm.sh("license-agent status");
    assert!(status.contains("unsynced"), "{status}");
    thread::sleep(Duration::from_secs(3));
    assert!(published(&mut vm).is_empty());
    assert_eq!(app_started(&mut vm), None);
    assert!(served(&lab).is_empty(), "{:?}", served(&lab));

    // SNTP sets the clock: both files are fetched by name over HTTPS, the set is
    // published, the application starts with it.
    vm.set_clock(t);
    let (uptime, features) = wait_until(
        &mut vm,
        Duration::from_secs(120),
        "the app started",
        app_started,
    );
    assert_eq!(features, ["usb-call-recording", "vqmon"]);
    let served = served(&lab);
    for file in [PHONE_FILE, SITE_FILE] {
        assert!(
            served
                .iter()
                .any(|s| s.starts_with(&format!("/{file} 200 TLS"))),
            "{file} not fetched over HTTPS: {served:?}"
        );
    }
    eprintln!("cold boot: the application started {uptime:.1} s after power-on (guest uptime), with {features:?}");
    // The boot took the licenses: no reboot asked (idle grace 5 s).
    thread::sleep(Duration::from_secs(8));
    assert_eq!(vm.reboot_requests(), 0, "{:?}", vm.events());
    let status = vm.sh("license-agent status");
    assert!(status.contains(MAC), "{status}");
}
