//! Reboot windows end to end (issue 29): the real daemon with `[reboot]` windows, the
//! supervisor simulator, licenses on nginx and the test clock moved by the test. A new
//! feature's reboot is asked inside the window only, at this phone's point in it (the
//! fleet spread over the window by the rule's words, computed here); a call through the
//! window waits for the next one and then the deadline; an ended license is asked when
//! idle as before; `status` and the report say what a reboot waits for.

use crate::common;

use common::nginx::Nginx;
use common::now;
use common::phone::{Daemon, Phone, Sim, DAY, MAC, PHONE_FILE, SITE_FILE};
use serde_json::Value;

/// The stagger of `mac` over a window of `length` seconds, from the rule's words: the
/// first 8 bytes of SHA-256 over the MAC's 12 hex digits, big-endian, mod the length.
fn spread(mac: &str, length: u64) -> i64 {
    let hash = ring::digest::digest(&ring::digest::SHA256, mac.as_bytes());
    let first: [u8; 8] = hash.as_ref()[..8].try_into().unwrap();
    i64::try_from(u64::from_be_bytes(first) % length).unwrap()
}

fn hm(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, s / 60 % 60)
}

/// A phone of MAC `mac` with a supervisor simulator, fetching from `nginx`, with the
/// daily window `[opens, opens + length)` (UTC), `extra` in `[reboot]`.
struct Bench {
    work: tempfile::TempDir,
    phone: Phone,
}

impl Bench {
    fn new(nginx: &Nginx, mac: &str, opens: i64, length: i64, extra: &str) -> Bench {
        let work = tempfile::tempdir().unwrap();
        let phone = Phone::new(&format!(
            "server = \"{}\"\nsupervisor_socket = \"{}\"\nenabled_features = [\"vqmon\", \"lync\"]\n\
             [reboot]\nwindows = [\"daily {}-{}\"]\ntimezone = \"UTC0\"\n{extra}",
            nginx.http_url(),
            work.path().join("supervisor.sock").display(),
            hm(opens),
            hm(opens + length),
        ));
        let text = std::fs::read_to_string(&phone.config).unwrap();
        std::fs::write(&phone.config, text.replace(MAC, mac)).unwrap();
        Bench { work, phone }
    }

    fn sim(&self) -> Sim {
        Sim::start(
            &self.work.path().join("supervisor.sock"),
            self.work.path().join("sim.log"),
        )
    }
}

fn reboot(s: &Value) -> &Value {
    &s["daemon"]["reboot"]
}

fn idle(sim: &mut Sim, daemon: &Daemon) {
    sim.command("call idle");
    daemon.wait_status("idle", |s| {
        s["daemon"]["call_state"]
            .as_str()
            .is_some_and(|c| c.starts_with("idle"))
    });
}

fn no_reboot(sim: &mut Sim, when: &str) {
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 0, "{when}:\n{}", sim.record());
}

/// A phone site's fleet: three phones, a site license that licenses a configured
/// feature, posted at noon; each phone asks for its reboot inside the next night's
/// window at its own point (opens + the MAC's spread over the window), not before.
#[test]
fn a_new_feature_reboots_inside_the_window_only_each_phone_at_its_point() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    // The window opens six hours after `t`, rounded to the minute, for two hours.
    let opens = (t + 6 * 3600) / 60 * 60;
    let length = 2 * 3600;
    let keyed = Phone::new("");
    nginx.put(PHONE_FILE, &keyed.sign("phone", &[("lync", t - DAY, None)]));
    for (i, mac) in ["0004f2000001", "0004f20000a2", "0004f2000b03"]
        .into_iter()
        .enumerate()
    {
        let bench = Bench::new(&nginx, mac, opens, length, "");
        std::fs::copy(keyed.path("keyring"), bench.phone.path("keyring")).unwrap();
        let phone_file = format!("{mac}-license.cfg");
        if i == 0 {
            // The site license comes later; the phone license is this phone's.
            assert_eq!(phone_file, PHONE_FILE);
        }
        let mut sim = bench.sim();
        let daemon = bench.phone.start(Some(t));
        sim.wait_for("recv FEATURES", 1);
        idle(&mut sim, &daemon);
        // The site license licensing vqmon appears; a check-sync brings it.
        nginx.put(
            SITE_FILE,
            &keyed.sign("site", &[("vqmon", t - DAY, Some(t + 365 * DAY))]),
        );
        daemon.request(r#"{"cmd":"check-sync"}"#);
        let s = daemon.wait_status("a pending reboot", |s| reboot(s)["pending"] == true);
        assert_eq!(reboot(&s)["waiting_for"], "window", "{s:#}");
        let point = opens + spread(mac, length as u64);
        let detail = reboot(&s)["detail"].as_str().unwrap().to_string();
        assert!(
            detail.starts_with(&format!(
                "the window daily {}–{} UTC, opens ",
                hm(opens),
                hm(opens + length)
            )),
            "{detail}"
        );
        assert_eq!(
            reboot(&s)["until"],
            chrono::DateTime::from_timestamp(point, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "{s:#}"
        );
        // What a field engineer sees over ssh.
        let text = common::stdout(&common::run(
            common::agent(),
            [
                "status".as_ref(),
                "--config".as_ref(),
                bench.phone.config.as_os_str(),
            ],
        ));
        assert!(text.contains("the window daily"), "{text}");
        // Idle all afternoon: nothing; the window opens: nothing before this phone's point.
        daemon.set_time(opens - 60);
        no_reboot(&mut sim, "before the window");
        daemon.set_time(point - 5);
        no_reboot(&mut sim, "in the window, before this phone's point");
        // The daemon's own timer asks at the point.
        let record = sim.wait_for("recv REBOOT", 1);
        assert!(record.contains("recv REBOOT 1 "), "{record}");
        let s = daemon.status();
        let at = chrono::DateTime::parse_from_rfc3339(s["wall_clock"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert!(at >= point && at < opens + length, "asked at {at}: {s:#}");
        assert!(!record.contains("violation"), "{record}");
        nginx.remove(SITE_FILE);
    }
}

/// A call through the whole window: nothing; idle after it: the next night's window;
/// in a call through that one too and past the deadline: the next idle moment. An ended
/// license meanwhile is not held back by the window.
#[test]
fn a_call_through_the_window_waits_for_the_next_then_the_deadline() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let opens = (t + 3600) / 60 * 60;
    let length = 3600;
    let bench = Bench::new(&nginx, MAC, opens, length, "deadline = \"1d\"\n");
    nginx.put(
        PHONE_FILE,
        &bench.phone.sign("phone", &[("lync", t - DAY, None)]),
    );
    let mut sim = bench.sim();
    let daemon = bench.phone.start(Some(t));
    sim.wait_for("recv FEATURES lync", 1);
    nginx.put(
        PHONE_FILE,
        &bench.phone.sign(
            "phone",
            &[("lync", t - DAY, None), ("vqmon", t - DAY, None)],
        ),
    );
    sim.command("call active");
    daemon.request(r#"{"cmd":"check-sync"}"#);
    let s = daemon.wait_status("a pending reboot", |s| reboot(s)["pending"] == true);
    assert_eq!(reboot(&s)["waiting_for"], "window", "{s:#}");
    // Through the window in a call.
    daemon.set_time(opens + length - 10);
    no_reboot(&mut sim, "a call through the window");
    // Idle after it: waits for tomorrow's.
    daemon.set_time(opens + length + 10);
    idle(&mut sim, &daemon);
    let s = daemon.set_time(opens + length + 100);
    assert_eq!(reboot(&s)["waiting_for"], "window", "{s:#}");
    assert!(
        reboot(&s)["detail"].as_str().unwrap().contains(&format!(
            "opens {}",
            &chrono::DateTime::from_timestamp(opens + DAY, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M+00:00")
        )),
        "{s:#}"
    );
    no_reboot(&mut sim, "idle after the window");
    // In a call through tomorrow's window too, and on past the deadline (a day after
    // the need).
    sim.command("call active");
    daemon.set_time(opens + DAY + length + 10);
    no_reboot(&mut sim, "a call through the next window");
    daemon.set_time(t + DAY + 3 * 3600);
    idle(&mut sim, &daemon);
    let s = daemon.status();
    assert_eq!(
        reboot(&s)["waiting_for"],
        "idle-grace",
        "past the deadline: {s:#}"
    );
    daemon.set_time(t + DAY + 3 * 3600 + 40);
    let record = sim.wait_for("recv REBOOT", 1);
    assert!(!record.contains("violation"), "{record}");
}

/// An ended license is not held back by the window (by default): asked when idle.
#[test]
fn an_ended_license_is_asked_when_idle_whatever_the_window() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let opens = (t + 6 * 3600) / 60 * 60;
    let bench = Bench::new(&nginx, MAC, opens, 3600, "");
    let end = t + 600;
    nginx.put(
        PHONE_FILE,
        &bench.phone.sign(
            "phone",
            &[("lync", t - DAY, None), ("vqmon", t - DAY, Some(end))],
        ),
    );
    let mut sim = bench.sim();
    let daemon = bench.phone.start(Some(t));
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    idle(&mut sim, &daemon);
    daemon.set_time(end + 5);
    let s = daemon.wait_status("a pending reboot", |s| reboot(s)["pending"] == true);
    assert_eq!(reboot(&s)["needs"][0]["cause"], "license-expired", "{s:#}");
    assert_ne!(reboot(&s)["waiting_for"], "window", "{s:#}");
    daemon.set_time(end + 60);
    let record = sim.wait_for("recv REBOOT 1 license-expired", 1);
    assert!(!record.contains("violation"), "{record}");
}
