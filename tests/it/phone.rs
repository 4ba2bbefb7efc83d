//! The agent on a whole emulated phone (issue 13): Debian's armmp kernel and BusyBox
//! under `qemu-system-arm`, the vvx-armv7 firmware drop started by its own init script,
//! the phone supervisor stand-in really rebooting the machine, the flash an NBD server
//! that keeps only what the guest flushed, power cuts as SIGKILL to QEMU
//! (`tests/it/common/vm.rs`, `tests/it/common/nbd.rs`).
//!
//! Needs the image (`scripts/phone-image.sh`), so its tests are `#[ignore]`d in a plain
//! `cargo test`: `scripts/phone-check.sh` builds the image and runs this module and the
//! power cuts (`phone_cuts`) with `--ignored`.

use crate::common;

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
            let log = vm
                .try_sh("logread | tail -n 40", Duration::from_secs(10))
                .map(|(_, log)| log)
                .unwrap_or_default();
            panic!(
                "never {what} within {timeout:?}\n-- logread --\n{log}\n{}",
                vm.diagnostics()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
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
#[ignore = "the emulated phone: scripts/phone-check.sh builds its image and runs this with --ignored"]
fn a_cold_boot_at_1970_waits_for_the_clock_then_fetches_by_name_over_https() {
    let mut lab = Lab::new();
    let t = now();
    lab.post_phone(&[feature("vqmon", t - DAY, Some(t + 365 * DAY))]);
    lab.post_site(&[feature("usb-call-recording", t - DAY, None)]);
    let mut vm = lab.power_on();
    vm.wait_boot();
    assert!(vm.clock() < 3600, "the phone boots at 1970: {}", vm.clock());
    vm.wait_agent();

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
    if features != ["usb-call-recording", "vqmon"] {
        panic!(
            "the application started with {features:?}\n-- served --\n{:?}\n{}",
            served(&lab),
            why(&mut vm)
        );
    }
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

/// Waits for the next boot, sets the clock (the SNTP stand-in) to `clock`, and waits
/// until the application has started: the boot id, the application's start (seconds
/// since power-on) and the features it started with.
fn booted(vm: &mut Vm, clock: i64) -> (String, f64, Vec<String>) {
    let boot = vm.wait_boot();
    vm.set_clock(clock);
    let (uptime, features) =
        wait_until(vm, Duration::from_secs(120), "the app started", app_started);
    (boot, uptime, features)
}

/// What the phone says of itself when a test fails: the status, the agent's log and
/// the VM's own diagnostics.
fn why(vm: &mut Vm) -> String {
    let status = vm.sh("license-agent status");
    let log = vm
        .try_sh("logread | tail -n 80", Duration::from_secs(10))
        .map(|(_, log)| log)
        .unwrap_or_default();
    format!("{status}\n-- logread --\n{log}\n{}", vm.diagnostics())
}

/// The agent's process id on the phone.
fn agent_pid(vm: &mut Vm) -> u32 {
    let out = vm.sh("cat /run/license-agent.child.pid");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no agent pid: {out:?}"))
}

/// The agent's CPU time so far, in clock ticks (user + system, 100 per second):
/// fields 14 and 15 of `/proc/PID/stat`.
fn cpu_ticks(vm: &mut Vm, pid: u32) -> u64 {
    let stat = vm.sh(&format!("cat /proc/{pid}/stat"));
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0: utime (14) is index 11.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The agent's CPU ticks over `secs` seconds of the host's time, nothing asked of it
/// meanwhile.
fn idle_ticks(vm: &mut Vm, secs: u64) -> u64 {
    let pid = agent_pid(vm);
    let before = cpu_ticks(vm, pid);
    thread::sleep(Duration::from_secs(secs));
    assert_eq!(
        agent_pid(vm),
        pid,
        "the agent was restarted\n{}",
        vm.diagnostics()
    );
    cpu_ticks(vm, pid) - before
}

/// The line of `license-agent status` that starts with `key`.
fn status_line(status: &str, key: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} line in:\n{status}"))
        .to_string()
}

/// At most this many clock ticks (10 ms each) in 20 s count as idle: a wake-up or two
/// under emulation. A busy loop takes a thousand or more.
const IDLE_TICKS: u64 = 25;

#[test]
#[ignore = "the emulated phone: scripts/phone-check.sh builds its image and runs this with --ignored"]
fn the_clock_anywhere_from_1970_to_2106() {
    let mut lab = Lab::new();
    let t = now();
    let end_2040 = 2_222_121_600; // 2040-06-01T00:00:00Z
    lab.post_phone(&[feature("vqmon", t - DAY, Some(end_2040))]);
    lab.post_site(&[feature("usb-call-recording", t - DAY, None)]);
    let mut vm = lab.power_on();
    vm.wait_boot();
    vm.wait_agent();
    let mut figures = Vec::new();
    let mut idle = |vm: &mut Vm, label: &str| {
        let ticks = idle_ticks(vm, 20);
        figures.push(format!("{label}: {ticks} ticks"));
        assert!(
            ticks <= IDLE_TICKS,
            "{label}: the idle agent used {ticks} ticks in 20 s\n{}\n{}",
            vm.sh("logread | tail -n 30"),
            vm.diagnostics()
        );
    };
    // 1970: waiting for the clock (boot_clock_wait), then the stored set stands.
    idle(&mut vm, "1970");
    assert!(status_line(&vm.sh("license-agent status"), "clock").contains("unsynced"));

    vm.set_clock(t);
    wait_until(
        &mut vm,
        Duration::from_secs(120),
        "the app started",
        app_started,
    );
    // SNTP stepping the clock again and again while the agent works (a check-sync):
    // the agent never fails (it used to exit when a step came between two passes).
    let pid = agent_pid(&mut vm);
    vm.sh(&format!(
        "license-agent check-sync >/dev/null & i=0; while [ $i -lt 40 ]; do \
         phone-clock set $(({t} + i)); i=$((i + 1)); done; wait"
    ));
    assert_eq!(agent_pid(&mut vm), pid, "{}", vm.sh("logread | tail -n 20"));
    let mark = "next change  2040-05-01T00:00:00Z"; // 31 days before the end
    for (label, at) in [
        ("now", t),
        ("2038-01-19T03:13:58Z, crossing 2^31", 2_147_483_638),
    ] {
        vm.set_clock(at);
        thread::sleep(Duration::from_secs(2));
        idle(&mut vm, label);
        let status = vm.sh("license-agent status");
        assert!(
            status_line(&status, "clock").starts_with("clock        ok"),
            "{status}"
        );
        assert_eq!(status_line(&status, "next change"), mark, "{status}");
        assert!(
            status_line(&status, "  vqmon").contains("Active"),
            "{status}"
        );
    }

    // 2040: vqmon ends at its end, so the phone is rebooted (it is idle).
    let boot = vm.wait_boot_id();
    vm.set_clock(end_2040 - 10);
    vm.wait_events(
        1,
        Duration::from_secs(120),
        "the REBOOT at vqmon's end",
        |e| e.starts_with("recv REBOOT "),
    );
    let asked = vm
        .timed_events()
        .into_iter()
        .find(|(_, e)| e.starts_with("recv REBOOT "))
        .map(|(ms, _)| ms / 1000)
        .unwrap();
    assert!(
        asked >= end_2040,
        "REBOOT asked at {asked}, before the end {end_2040}"
    );
    let (second, _, features) = booted(&mut vm, end_2040 + 60);
    assert_ne!(second, boot);
    let status = vm.sh("license-agent status");
    assert_eq!(
        features,
        ["usb-call-recording"],
        "{status}\n{}",
        vm.sh("logread | grep license-agent | tail -n 40")
    );
    // Ended: the license is dropped, vqmon is enabled but not licensed (so polled).
    assert!(!status.contains("\n  vqmon "), "{status}");
    assert!(
        status_line(&status, "next poll").contains("vqmon is enabled but not licensed"),
        "{status}"
    );
    assert!(
        status.contains("dropped           phone license"),
        "{status}"
    );
    idle(&mut vm, "2040-06-01T00:01:00Z, vqmon ended");
    assert_eq!(vm.reboot_requests(), 1, "{:?}", vm.events());

    // 2106: past the last instant a license can name, the clock counts as not set.
    vm.set_clock(4_294_967_285);
    thread::sleep(Duration::from_secs(2));
    idle(&mut vm, "2106-02-07T06:28:05Z, crossing 2^32");
    let status = vm.sh("license-agent status");
    assert!(
        status_line(&status, "clock").contains("unsynced"),
        "{status}"
    );
    assert_eq!(
        names(&vm.sh("cat /run/license-agent/features")),
        ["usb-call-recording"]
    );
    assert_eq!(vm.reboot_requests(), 1, "{:?}", vm.events());
    eprintln!(
        "the idle agent's CPU time over 20 s: {}",
        figures.join(", ")
    );
}

/// Reboots the phone from its shell, as a person would (`reboot -f` does not return).
fn reboot_by_hand(vm: &mut Vm) {
    let _ = vm.try_sh("sync; reboot -f", Duration::from_secs(2));
}

/// The `recv REBOOT` events and the violations the supervisor stand-in saw.
fn reboots_and_violations(vm: &Vm) -> (usize, Vec<String>) {
    let violations = vm
        .events()
        .into_iter()
        .filter(|e| e.starts_with("violation"))
        .collect();
    (vm.reboot_requests(), violations)
}

#[test]
#[ignore = "the emulated phone: scripts/phone-check.sh builds its image and runs this with --ignored"]
fn an_expiry_during_a_call_reboots_the_phone_after_the_call_and_the_next_boot_takes_the_renewal() {
    let mut lab = Lab::new();
    let t = now();
    // vqmon ends 45 s after the clock is set: boot, fetch and a call start fit before.
    let end = t + 45;
    lab.post_phone(&[feature("vqmon", t - DAY, Some(end))]);
    let mut vm = lab.power_on();
    let (first, _, features) = booted(&mut vm, t);
    assert_eq!(features, ["vqmon"], "{}", why(&mut vm));

    vm.supervisor("call active");
    vm.wait_events(1, Duration::from_secs(30), "the call", |e| {
        e == "state active"
    });
    // vqmon ends during the call: the agent fetches once (nothing new), then needs a
    // reboot, but not now.
    wait_until(&mut vm, Duration::from_secs(120), "a reboot needed", |vm| {
        let status = vm.sh("license-agent status");
        status_line(&status, "reboot")
            .starts_with("reboot       needed: ")
            .then_some(())
    });
    assert!(!published(&mut vm).contains(&"vqmon".to_string()));
    // The renewal is posted meanwhile: only a fetch after this can find it.
    lab.post_phone(&[feature("vqmon", t - DAY, Some(t + 365 * DAY))]);
    thread::sleep(Duration::from_secs(10));
    assert_eq!(
        reboots_and_violations(&vm),
        (0, vec![]),
        "{}",
        vm.diagnostics()
    );

    // The call ends; after the idle grace (5 s) the supervisor reboots the phone.
    vm.supervisor("call idle");
    vm.wait_events(1, Duration::from_secs(60), "the REBOOT", |e| {
        e.starts_with("recv REBOOT ")
    });
    // The next boot fetches the renewal and the application starts with it.
    let (second, _, features) = booted(&mut vm, now());
    assert_ne!(first, second);
    assert_eq!(features, ["vqmon"], "{}", why(&mut vm));
    let status = vm.sh("license-agent status");
    assert!(
        status_line(&status, "  vqmon").contains("Active"),
        "{status}"
    );
    // No second reboot.
    thread::sleep(Duration::from_secs(10));
    assert_eq!(
        reboots_and_violations(&vm),
        (1, vec![]),
        "{}",
        vm.diagnostics()
    );
}

#[test]
#[ignore = "the emulated phone: scripts/phone-check.sh builds its image and runs this with --ignored"]
fn a_phone_booted_expired_does_not_reboot_loop_and_a_renewal_comes_back_with_one_reboot() {
    let mut lab = Lab::new();
    let t = now();
    lab.post_phone(&[feature("vqmon", t - 10 * DAY, Some(t + 20 * DAY))]);
    let mut vm = lab.power_on();
    let (_, _, features) = booted(&mut vm, t);
    assert_eq!(features, ["vqmon"], "{}", why(&mut vm));

    // Switched off for a month: vqmon ended meanwhile, and no renewal is posted.
    let later = t + 30 * DAY;
    for boot in 1..=3 {
        reboot_by_hand(&mut vm);
        let (_, _, features) = booted(&mut vm, later + boot * 600);
        assert!(features.is_empty(), "boot {boot}: {features:?}");
        thread::sleep(Duration::from_secs(8)); // more than the idle grace
        assert_eq!(
            reboots_and_violations(&vm),
            (0, vec![]),
            "boot {boot}\n{}",
            vm.diagnostics()
        );
    }

    // A renewal is posted; the supervisor asks for a check-sync: one reboot brings it.
    lab.post_phone(&[feature("vqmon", t, Some(later + 365 * DAY))]);
    vm.supervisor("check-sync");
    vm.wait_events(1, Duration::from_secs(60), "the REBOOT", |e| {
        e.starts_with("recv REBOOT ")
    });
    let (_, _, features) = booted(&mut vm, later + 3600);
    assert_eq!(features, ["vqmon"], "{}", why(&mut vm));
    thread::sleep(Duration::from_secs(10));
    assert_eq!(
        reboots_and_violations(&vm),
        (1, vec![]),
        "{}",
        vm.diagnostics()
    );
}

/// A reboot window on the phone (issue 29): the deployment's configuration names a
/// daily window a couple of minutes ahead; a license for the enabled feature arrives
/// while the phone is idle, and the reboot is asked inside the window only, at this
/// phone's point in it (its MAC's spread over the window, from the rule's words), then
/// the next boot starts the application with the feature. The agent, started by its
/// init script, sends its log to rsyslog on the host (TCP through QEMU's user network):
/// the license taken and the reboot asked arrive as notices of the facility configured,
/// from the phone's MAC.
#[test]
#[ignore = "the emulated phone: scripts/phone-check.sh builds its image and runs this with --ignored"]
fn a_new_feature_reboots_the_phone_inside_its_window_only() {
    let hm = |t: i64| format!("{:02}:{:02}", t.rem_euclid(86_400) / 3600, t / 60 % 60);
    let t = now();
    let opens = (t + 150) / 60 * 60;
    let length = 120;
    let work = tempfile::tempdir().unwrap();
    let rsyslog = test_servers::rsyslog::Rsyslog::start(
        &work.path().join("rsyslog"),
        test_servers::rsyslog::Listen::Tcp,
        None,
    );
    let toml = format!(
        "{}\n[reboot]\nwindows = [\"daily {}-{}\"]\ntimezone = \"UTC0\"\n\
         [syslog]\nserver = \"tcp://10.0.2.101:514\"\nfacility = \"local4\"\n",
        common::vm::image_agent_toml(),
        hm(opens),
        hm(opens + length)
    );
    let mut lab = Lab::with_agent_toml(&toml);
    lab.forward("10.0.2.101:514", rsyslog.port());
    let mut vm = lab.power_on();
    let (first, _, features) = booted(&mut vm, t);
    assert!(features.is_empty(), "{features:?}");
    lab.post_phone(&[feature("vqmon", t - DAY, None)]);
    vm.supervisor("check-sync");
    let waits = wait_until(
        &mut vm,
        Duration::from_secs(60),
        "a reboot waiting for the window",
        |vm| {
            let status = vm.sh("license-agent status");
            status
                .lines()
                .find(|l| l.contains("waits for  the window daily"))
                .map(str::to_string)
        },
    );
    assert!(
        waits.contains(&format!("{}–{} UTC", hm(opens), hm(opens + length))),
        "{waits}"
    );
    let hash = ring::digest::digest(&ring::digest::SHA256, MAC.as_bytes());
    let first8: [u8; 8] = hash.as_ref()[..8].try_into().unwrap();
    let point = opens + i64::try_from(u64::from_be_bytes(first8) % length as u64).unwrap();
    vm.wait_events(1, Duration::from_secs(400), "the REBOOT", |e| {
        e.starts_with("recv REBOOT ")
    });
    let (at_ms, _) = vm
        .timed_events()
        .into_iter()
        .find(|(_, e)| e.starts_with("recv REBOOT "))
        .unwrap();
    assert!(
        at_ms >= point * 1000 && at_ms < (opens + length) * 1000,
        "REBOOT at {at_ms} ms: the window [{opens}, {}) s, this phone's point {point} s\n{}",
        opens + length,
        vm.diagnostics()
    );
    let (second, _, features) = booted(&mut vm, now());
    assert_ne!(first, second);
    assert_eq!(features, ["vqmon"], "{}", why(&mut vm));
    // What the host's syslog server received from the phone.
    let wait = Duration::from_secs(30);
    let accepted = rsyslog.wait_for(wait, |r| r.msg.contains(": accepted phone license"));
    let asked = rsyslog.wait_for(wait, |r| {
        r.msg.starts_with("asked the supervisor for a reboot")
    });
    let all = rsyslog.received();
    for line in [accepted, asked] {
        let line = line.unwrap_or_else(|| panic!("not received: {all:#?}"));
        assert_eq!(
            (
                line.facility.as_str(),
                line.severity.as_str(),
                line.host.as_str()
            ),
            ("local4", "notice", MAC),
            "{line:?}"
        );
    }
}
