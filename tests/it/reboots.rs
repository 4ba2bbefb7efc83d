//! The reboot rules end to end: the real daemon, the supervisor simulator on a real
//! socket, licenses served over HTTP by a real nginx, and the test clock moved by the
//! test. Every scenario of issue 5: a site license ending during a call, an early
//! renewal, an expired license at start, polling for an enabled feature, BUSY, a
//! supervisor restart with a request pending, calls every 20 s, and an agent restart
//! within one boot versus a real reboot.
//!
//! Absence is checked at sync points, never by sleeping: `Sim::barrier` returns once
//! the agent has answered a line sent after everything before it, so any REBOOT it sent
//! earlier is already recorded.

use crate::common;

use common::nginx::Nginx;
use common::now;
use common::phone::{Daemon, Phone, Sim, DAY, MAC, PHONE_FILE, SITE_FILE};
use serde_json::Value;

/// The stagger delay of `mac` for `window`, computed here from the rule's words:
/// the first 8 bytes of SHA-256 over the MAC's 12 hex digits, big-endian, mod window.
fn stagger(mac: &str, window: u64) -> i64 {
    let hash = ring::digest::digest(&ring::digest::SHA256, mac.as_bytes());
    let first: [u8; 8] = hash.as_ref()[..8].try_into().unwrap();
    i64::try_from(u64::from_be_bytes(first) % window).unwrap()
}

fn secs(v: &Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp()
}

/// The instant the daemon last heard `CALL-STATE idle`.
fn idle_since(status: &Value) -> i64 {
    let call = status["daemon"]["call_state"].as_str().unwrap_or_default();
    let since = call
        .strip_prefix("idle since ")
        .unwrap_or_else(|| panic!("not idle: {call:?}"));
    secs(&Value::from(since))
}

fn reboot(status: &Value) -> &Value {
    &status["daemon"]["reboot"]
}

fn waiting_for(status: &Value) -> &str {
    reboot(status)["waiting_for"].as_str().unwrap_or("")
}

/// A phone with a supervisor simulator and a provisioning server (nginx, plain HTTP).
struct Bench {
    work: tempfile::TempDir,
    nginx: Nginx,
    phone: Phone,
}

impl Bench {
    fn new(extra: &str) -> Bench {
        let work = tempfile::tempdir().unwrap();
        let (_pki, nginx) = common::web_server(work.path());
        let phone = Phone::new(&format!(
            "server = \"{}\"\nsupervisor_socket = \"{}\"\n{extra}",
            nginx.http_url(),
            work.path().join("supervisor.sock").display()
        ));
        Bench { work, nginx, phone }
    }

    fn socket(&self) -> std::path::PathBuf {
        self.work.path().join("supervisor.sock")
    }

    fn sim(&self, name: &str, options: &[&str]) -> Sim {
        Sim::start_with(&self.socket(), self.work.path().join(name), options)
    }

    /// Posts a license on the provisioning server.
    fn post(&self, file: &str, kind: &str, features: &[(&str, i64, Option<i64>)]) {
        self.nginx.put(file, &self.phone.sign(kind, features));
    }
}

/// Waits until the daemon has heard the call state `word` from the supervisor.
fn heard_call(daemon: &Daemon, word: &str) -> Value {
    daemon.wait_status(&format!("call {word}"), |s| {
        s["daemon"]["call_state"]
            .as_str()
            .is_some_and(|c| c.starts_with(word))
    })
}

fn no_reboot_yet(sim: &mut Sim, when: &str) {
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 0, "{when}:\n{}", sim.record());
}

fn assert_no_violation(sim: &Sim) {
    let record = sim.record();
    assert!(!record.contains("violation"), "{record}");
}

#[test]
fn a_site_license_ending_during_a_call_reboots_once_after_the_call_the_grace_and_the_stagger() {
    let end = now() + 100 * DAY;
    let bench = Bench::new("");
    bench.post(SITE_FILE, "site", &[("vqmon", end - 200 * DAY, Some(end))]);
    bench.post(PHONE_FILE, "phone", &[("lync", end - 200 * DAY, None)]);
    let mut sim = bench.sim("sim.log", &[]);
    let daemon = bench.phone.start(Some(end - 120));
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    let s = daemon.status();
    assert_eq!(reboot(&s)["pending"], false, "{s:#}");
    assert_eq!(reboot(&s)["booted"], serde_json::json!(["vqmon", "lync"]));

    // A call begins; the site license ends during it, with no renewal on the server.
    sim.command("call active");
    heard_call(&daemon, "active");
    daemon.set_time(end - 2);
    sim.wait_for("recv FEATURES lync", 1);
    let s = daemon.wait_status("a pending reboot", |s| reboot(s)["pending"] == true);
    // The agent fetched both files once before deciding.
    assert!(secs(&s["daemon"]["last_fetch"]) >= end, "{s:#}");
    let need = &reboot(&s)["needs"][0];
    assert_eq!(need["cause"], "license-expired");
    assert_eq!(reboot(&s)["needs"].as_array().unwrap().len(), 1);
    let since = secs(&need["since"]);
    let not_before = secs(&need["not_before"]);
    let delay = stagger(MAC, 3_600);
    assert_eq!(not_before - since, delay, "the stagger delay of {MAC}");
    assert!(
        delay > 60,
        "this scenario needs a delay longer than the grace"
    );
    assert_eq!(waiting_for(&s), "idle");
    // What a field engineer sees over ssh.
    let out = common::run(
        common::agent(),
        [
            "status".as_ref(),
            "--config".as_ref(),
            bench.phone.config.as_os_str(),
        ],
    );
    let text = common::stdout(&out);
    for line in [
        "supervisor   connected (supervisor/1)",
        "call         active since ",
        "reboot       needed: license-expired since ",
        "  waits for  the phone to be idle (a call is on",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }

    // Still in the call ten seconds after the end: nothing is asked.
    daemon.set_time(end + 10);
    no_reboot_yet(&mut sim, "during the call");

    // The call ends: 30 s of idle are needed first...
    sim.command("call idle");
    let s = heard_call(&daemon, "idle");
    let idle = idle_since(&s);
    assert_eq!(waiting_for(&s), "idle-grace");
    assert_eq!(secs(&reboot(&s)["until"]), idle + 30);
    daemon.set_time(idle + 25);
    no_reboot_yet(&mut sim, "25 s after the call");
    // ...then this phone's stagger delay.
    let s = daemon.set_time(idle + 31);
    assert_eq!(waiting_for(&s), "stagger-delay", "{s:#}");
    assert_eq!(secs(&reboot(&s)["until"]), not_before);
    daemon.set_time(not_before - 5);
    no_reboot_yet(&mut sim, "5 s before the stagger delay ends");
    // The daemon's own timer asks when the delay ends.
    let record = sim.wait_for("recv REBOOT", 1);
    assert!(record.contains("recv REBOOT 1 license-expired"), "{record}");
    sim.wait_for("sent OK 1", 1);
    let s = daemon.wait_status("the OK", |s| reboot(s)["needs"][0]["phase"] == "accepted");
    assert_eq!(waiting_for(&s), "reboot-after-ok");
    // Exactly one: nothing more while the reboot is under way.
    daemon.set_time(not_before + 300);
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 1, "{}", sim.record());
    assert_no_violation(&sim);
}

#[test]
fn an_early_renewal_is_taken_with_no_reboot_and_the_feature_never_leaves() {
    let end = now() + 100 * DAY;
    let bench = Bench::new("");
    // On the server, and stored already: the daemon tells the supervisor the stored set
    // at once (before its boot fetch), and it must have vqmon from the first word on.
    let site = bench
        .phone
        .sign("site", &[("vqmon", end - 200 * DAY, Some(end))]);
    bench.nginx.put(SITE_FILE, &site);
    bench.phone.install_at(&site, end - 40 * DAY);
    let mut sim = bench.sim("sim.log", &[]);
    let daemon = bench.phone.start(Some(end - 40 * DAY));
    sim.wait_for("recv FEATURES vqmon", 1);
    // Not Expiring Shortly yet: no reason to poll.
    assert_eq!(daemon.status()["daemon"]["next_poll"], Value::Null);

    // The phone enters the 31-day window: it checks at once (its last fetch is days
    // old), finds nothing new, and checks again a day later.
    let s = daemon.set_time(end - 30 * DAY);
    assert!(
        s["daemon"]["poll_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("vqmon is Expiring Shortly"),
        "{s:#}"
    );
    let last = secs(&s["daemon"]["last_fetch"]);
    assert!(
        last >= end - 30 * DAY,
        "checked on entering the window: {s:#}"
    );
    let poll = secs(&s["daemon"]["next_poll"]);
    assert!(
        (last + DAY - DAY / 10..=last + DAY + DAY / 10).contains(&poll),
        "one day ± 10 %: {s:#}"
    );
    // The renewal is posted a month ahead; the next daily check finds it.
    bench.post(
        SITE_FILE,
        "site",
        &[("vqmon", end - 200 * DAY, Some(end + 365 * DAY))],
    );
    daemon.set_time(poll - 2);
    let s = daemon.wait_status("the renewal", |s| {
        s["features"][0]["end"].as_str() == Some(common::rfc(end + 365 * DAY).as_str())
    });
    assert_eq!(s["daemon"]["next_poll"], Value::Null, "{s:#}");

    // The old end passes: nothing changes, nothing is asked.
    daemon.set_time(end + 60);
    let s = daemon.status();
    assert_eq!(s["enabled"], serde_json::json!(["vqmon"]));
    assert_eq!(reboot(&s)["pending"], false, "{s:#}");
    assert!(bench.phone.features_file().contains("vqmon"));
    sim.barrier();
    let record = sim.record();
    assert_eq!(sim.count("recv REBOOT"), 0, "{record}");
    // Every feature set the supervisor was told had vqmon in it.
    let told: Vec<&str> = record
        .lines()
        .filter(|l| l.contains("recv FEATURES"))
        .collect();
    assert!(!told.is_empty());
    assert!(
        told.iter().all(|l| l.ends_with("FEATURES vqmon")),
        "{record}"
    );
}

#[test]
fn an_expired_license_at_start_asks_nothing_until_a_check_sync_brings_a_renewal() {
    let end = now() + 100 * DAY;
    let bench = Bench::new("");
    // Stored while it was in force; the phone boots after its end, and the server
    // still has only the expired file.
    let phone_license = bench
        .phone
        .sign("phone", &[("vqmon", end - 200 * DAY, Some(end))]);
    bench.phone.install_at(&phone_license, end - DAY);
    bench.nginx.put(PHONE_FILE, &phone_license);
    let mut sim = bench.sim("sim.log", &[]);
    let daemon = bench.phone.start(Some(end + DAY));
    sim.wait_for("recv FEATURES -", 1);
    let s = daemon.status();
    assert_eq!(reboot(&s)["pending"], false, "{s:#}");
    assert_eq!(reboot(&s)["booted"], serde_json::json!([]));
    // Well past the idle grace: still nothing.
    let idle = idle_since(&s);
    daemon.set_time(idle + 600);
    no_reboot_yet(&mut sim, "with an expired license at start");

    // A renewal is posted; the supervisor relays a check-sync.
    bench.post(
        PHONE_FILE,
        "phone",
        &[("vqmon", end - 200 * DAY, Some(end + 365 * DAY))],
    );
    sim.command("check-sync");
    sim.wait_for("recv FEATURES vqmon", 1);
    let s = daemon.wait_status("a pending reboot", |s| reboot(s)["pending"] == true);
    assert_eq!(reboot(&s)["needs"][0]["cause"], "license-changed");
    // A phone license: no stagger, and the phone has been idle long enough.
    let record = sim.wait_for("recv REBOOT", 1);
    assert!(record.contains("recv REBOOT 1 license-changed"), "{record}");
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 1);
    assert_no_violation(&sim);
}

#[test]
fn an_enabled_feature_without_a_license_is_polled_for_and_licensed_with_a_reboot() {
    let t = now();
    let bench = Bench::new("enabled_features = [\"vqmon\", \"lync\"]\n");
    bench.post(PHONE_FILE, "phone", &[("lync", t - DAY, None)]);
    let sim = bench.sim("sim.log", &[]);
    let daemon = bench.phone.start(Some(t));
    sim.wait_for("recv FEATURES lync", 1);
    let s = daemon.status();
    assert!(
        s["daemon"]["poll_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("vqmon is enabled but not licensed"),
        "{s:#}"
    );
    let poll = secs(&s["daemon"]["next_poll"]);
    let last = secs(&s["daemon"]["last_fetch"]);
    assert!(
        (last + 3_240..=last + 3_960).contains(&poll),
        "one hour ± 10 %: {s:#}"
    );

    // The license appears on the server; the hourly poll picks it up.
    bench.post(
        PHONE_FILE,
        "phone",
        &[("lync", t - DAY, None), ("vqmon", t - DAY, None)],
    );
    daemon.set_time(poll - 2);
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    let s = daemon.wait_status("a pending reboot", |s| reboot(s)["pending"] == true);
    assert_eq!(reboot(&s)["needs"][0]["cause"], "feature-licensed");
    assert_eq!(
        s["daemon"]["next_poll"],
        Value::Null,
        "nothing left to poll for"
    );
    let record = sim.wait_for("recv REBOOT", 1);
    assert!(
        record.contains("recv REBOOT 1 feature-licensed"),
        "{record}"
    );
    assert_no_violation(&sim);
}

/// A pending `license-changed` reboot on a phone whose supervisor answers as `options`
/// say; returns the bench, the simulator, the daemon and the instant the need arose.
fn pending_change(options: &[&str]) -> (Bench, Sim, Daemon, i64) {
    let t = now();
    let bench = Bench::new("");
    bench.post(PHONE_FILE, "phone", &[("lync", t - DAY, None)]);
    let mut sim = bench.sim("sim.log", options);
    let daemon = bench.phone.start(Some(t));
    sim.wait_for("recv FEATURES lync", 1);
    bench.post(
        PHONE_FILE,
        "phone",
        &[("lync", t - DAY, None), ("vqmon", t - DAY, None)],
    );
    sim.command("check-sync");
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    let s = daemon.wait_status("a pending reboot", |s| reboot(s)["pending"] == true);
    let since = secs(&reboot(&s)["needs"][0]["since"]);
    (bench, sim, daemon, since)
}

#[test]
fn busy_means_asking_again_only_after_the_next_idle_period() {
    let (_bench, mut sim, daemon, _) = pending_change(&["--answer", "busy"]);
    let s = daemon.status();
    let idle = idle_since(&s);
    daemon.set_time(idle + 31);
    sim.wait_for("recv REBOOT 1 license-changed", 1);
    sim.wait_for("sent BUSY 1", 1);
    // BUSY means a call: nothing more until CALL-STATE idle and 30 s of it.
    let s = daemon.wait_status("the BUSY", |s| waiting_for(s) == "idle");
    assert!(s["daemon"]["call_state"]
        .as_str()
        .unwrap()
        .starts_with("active"));
    daemon.set_time(idle + 3_600);
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 1, "{}", sim.record());

    // The call the supervisor meant starts and ends.
    sim.command("answer ok");
    sim.command("call active");
    heard_call(&daemon, "active");
    sim.command("call idle");
    let s = heard_call(&daemon, "idle");
    let idle = idle_since(&s);
    daemon.set_time(idle + 25);
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 1, "asked again before the grace");
    daemon.set_time(idle + 30);
    let record = sim.wait_for("recv REBOOT 2 license-changed", 1);
    sim.wait_for("sent OK 2", 1);
    // The second request came after the idle: its line follows the CALL-STATE idle.
    let busy_at = record.find("sent BUSY 1").unwrap();
    let idle_at = record[busy_at..].find("sent CALL-STATE idle").unwrap() + busy_at;
    assert!(record.find("recv REBOOT 2").unwrap() > idle_at, "{record}");
    assert_no_violation(&sim);
}

#[test]
fn a_supervisor_restart_with_a_request_outstanding_is_greeted_and_asked_again() {
    // The first supervisor never answers a REBOOT: it was not counted.
    let (bench, sim, daemon, _) = pending_change(&["--answer", "busy"]);
    drop(sim);
    let mut sim = bench.sim("sim-2.log", &["--call", "active"]);
    sim.wait_for("recv HELLO license-agent/1", 1);
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    let s = heard_call(&daemon, "active");
    assert_eq!(waiting_for(&s), "idle");
    sim.command("call idle");
    let idle = idle_since(&heard_call(&daemon, "idle"));
    daemon.set_time(idle + 30);
    sim.wait_for("recv REBOOT", 1);
    assert_no_violation(&sim);
}

#[test]
fn calls_every_20_seconds_never_see_a_reboot_mid_call_or_before_30_s_of_idle() {
    let (_bench, mut sim, daemon, _) = pending_change(&["--call", "active"]);
    // The phone is in a call from the start of the connection: waiting for idle.
    assert_eq!(waiting_for(&daemon.status()), "idle");
    for round in 0..6 {
        let s = daemon.status();
        let t = secs(&s["evaluated_at"]);
        // 20 s of call...
        daemon.set_time(t + 20);
        sim.command("call idle");
        let idle = idle_since(&heard_call(&daemon, "idle"));
        // ...then 20 s of idle, and the next call.
        daemon.set_time(idle + 20);
        no_reboot_yet(&mut sim, &format!("round {round}, 20 s idle"));
        sim.command("call active");
        heard_call(&daemon, "active");
        no_reboot_yet(&mut sim, &format!("round {round}, in a call"));
    }
    // The calls stop: 30 s of idle, and the reboot is asked.
    sim.command("call idle");
    let idle = idle_since(&heard_call(&daemon, "idle"));
    daemon.set_time(idle + 29 - 3);
    no_reboot_yet(&mut sim, "26 s after the last call");
    daemon.set_time(idle + 30);
    sim.wait_for("recv REBOOT 1 license-changed", 1);
    assert_no_violation(&sim);
}

#[test]
fn an_agent_restart_does_not_ask_twice_and_a_real_reboot_starts_afresh() {
    let (bench, mut sim, daemon, _) = pending_change(&[]);
    let idle = idle_since(&daemon.status());
    daemon.set_time(idle + 30);
    sim.wait_for("recv REBOOT 1 license-changed", 1);
    sim.wait_for("sent OK 1", 1);
    let s = daemon.wait_status("the OK", |s| waiting_for(s) == "reboot-after-ok");
    let t = secs(&s["evaluated_at"]);
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));

    // The agent restarts within the same boot: the need stays accepted, nothing is
    // asked again before the 10 minutes after OK.
    let daemon = bench.phone.start(Some(t + 60));
    sim.wait_for("recv HELLO license-agent/1", 2);
    let s = daemon.status();
    assert_eq!(reboot(&s)["needs"][0]["phase"], "accepted", "{s:#}");
    assert_eq!(reboot(&s)["booted"], serde_json::json!(["lync"]));
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 1);
    // Still running 10 minutes after OK: asked again (logged by the agent).
    daemon.set_time(t + 600);
    sim.wait_for("recv REBOOT", 2);
    let (_, log) = daemon.stop();
    assert!(log.contains("asking again"), "{log}");

    // The phone really rebooted: the set it boots with is the new one, nothing needed.
    bench.phone.pretend_reboot();
    let daemon = bench.phone.start(Some(t + 900));
    sim.wait_for("recv HELLO license-agent/1", 3);
    let s = daemon.status();
    assert_eq!(reboot(&s)["pending"], false, "{s:#}");
    assert_eq!(reboot(&s)["booted"], serde_json::json!(["vqmon", "lync"]));
    daemon.set_time(t + 4_000);
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 2);
    assert_no_violation(&sim);
}

#[test]
fn a_board_without_supervisor_logs_the_reboot_it_would_ask_for() {
    let end = now() + 100 * DAY;
    let (phone, _server) = Phone::with_folder_server(&[("vqmon", end - 200 * DAY, Some(end))]);
    let daemon = phone.start(Some(end - 60));
    let s = daemon.set_time(end + 1);
    assert_eq!(reboot(&s)["needs"][0]["cause"], "license-expired", "{s:#}");
    assert_eq!(waiting_for(&s), "supervisor-connection");
    assert_eq!(s["daemon"]["supervisor"], "none on this board");
    let (_, log) = daemon.stop();
    assert!(
        log.contains("no supervisor on this board: would ask for a reboot (license-expired)"),
        "{log}"
    );
}

#[test]
fn a_hand_install_while_the_daemon_runs_applies_at_once_and_asks_for_a_reboot() {
    let t = now();
    let bench = Bench::new("");
    bench.post(PHONE_FILE, "phone", &[("lync", t - DAY, None)]);
    let sim = bench.sim("sim.log", &[]);
    let daemon = bench.phone.start(None);
    sim.wait_for("recv FEATURES lync", 1);
    // A field engineer installs a site license by hand over ssh.
    let site = bench
        .phone
        .sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]);
    let out = bench.phone.install(&site);
    assert!(
        out.contains("the running daemon applied it: enabled now vqmon, lync"),
        "{out}"
    );
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    let s = daemon.status();
    let need = &reboot(&s)["needs"][0];
    assert_eq!(need["cause"], "license-changed", "{s:#}");
    // A site license's doing: this phone's stagger delay applies.
    assert_eq!(
        secs(&need["not_before"]) - secs(&need["since"]),
        stagger(MAC, 3_600)
    );
    assert_no_violation(&sim);
}

/// An `OK` or `BUSY` that answers no REBOOT the agent sent is ignored, and the log says
/// so (it used to log "the supervisor accepted REBOOT 999"). Issue 12.
#[test]
fn an_answer_to_no_reboot_sent_is_ignored_and_logged_as_such() {
    let bench = Bench::new("");
    let mut sim = bench.sim("sim.log", &[]);
    let daemon = bench.phone.start(Some(now()));
    sim.wait_for("recv FEATURES", 1);
    sim.command("send OK 999");
    sim.command("send BUSY 998");
    sim.barrier();
    let s = daemon.status();
    assert_eq!(reboot(&s)["pending"], false, "{s:#}");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(!log.contains("accepted REBOOT 999"), "{log}");
    assert!(!log.contains("BUSY to REBOOT 998"), "{log}");
    assert!(
        log.contains("OK 999 answers no outstanding REBOOT"),
        "{log}"
    );
    assert!(
        log.contains("BUSY 998 answers no outstanding REBOOT"),
        "{log}"
    );
    assert_no_violation(&sim);
}
