//! The daemon end to end, as the real binary, against real servers: nginx over HTTPS
//! with mutual TLS (boot fetch, check-sync picking up a renewal, a second boot answered
//! 304), Basic auth, every fault of the fault server and of bad certificates (the
//! daemon keeps running, keeps its licenses, and says what went wrong), an idle daemon
//! making no system calls, a wake-up when a license ends (the test clock), and the
//! control socket refusing other users and bad requests.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::faults::{Fault, FaultServer};
use common::phone::{fault_case, Phone, Sim, DAY, MAC, PHONE_FILE, SITE_FILE};
use common::pki::Pki;
use common::{agent, now, rfc, run, stdout};
use serde_json::Value;

fn outcomes(status: &Value) -> Vec<(String, String)> {
    status["daemon"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn tls_config(pki: &Pki, server: &str, client: bool) -> String {
    let mut c = format!(
        "server = \"{server}\"\n[fetch]\nca_file = \"{}\"\n",
        pki.ca_pem.display()
    );
    if client {
        c.push_str(&format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"\n",
            pki.client_cert.display(),
            pki.client_key.display()
        ));
    }
    c
}

#[test]
fn nginx_mutual_tls_boot_check_sync_and_a_second_boot_answered_304() {
    let work = tempfile::tempdir().unwrap();
    let (pki, nginx) = common::web_server(work.path());
    let phone = Phone::new(&tls_config(&pki, &nginx.mtls_url(), true));
    let t = now();
    nginx.put(
        SITE_FILE,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]),
    );
    nginx.put(
        PHONE_FILE,
        &phone.sign("phone", &[("usb-call-recording", t - DAY, None)]),
    );

    // Boot: fetch, verify, store, publish.
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(s["source"], "daemon");
    assert_eq!(
        outcomes(&s),
        [
            (SITE_FILE.into(), "accepted".into()),
            (PHONE_FILE.into(), "accepted".into())
        ]
    );
    assert_eq!(
        s["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon"])
    );
    assert!(
        phone
            .features_file()
            .contains(&format!("vqmon {}", rfc(t + 100 * DAY))),
        "{}",
        phone.features_file()
    );
    let boot = nginx.wait_access_entries(2, Duration::from_secs(5));
    assert_eq!(
        boot.iter().map(|e| e.status).collect::<Vec<_>>(),
        [200, 200]
    );
    assert_eq!(
        boot[0].connection, boot[1].connection,
        "both files over one keep-alive connection"
    );
    assert!(
        boot[0].user_agent.contains("license-agent/") && boot[0].user_agent.contains(MAC),
        "{}",
        boot[0].user_agent
    );

    // The server's site file is replaced by a renewal; check-sync over the control
    // socket (the real CLI) picks it up.
    nginx.put(
        SITE_FILE,
        &phone.sign(
            "site",
            &[
                ("vqmon", t - DAY, Some(t + 400 * DAY)),
                ("lync", t - DAY, Some(t + 400 * DAY)),
            ],
        ),
    );
    let out = run(
        agent(),
        [
            "check-sync".as_ref(),
            "--config".as_ref(),
            phone.config.as_os_str(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("000000000000-license.cfg accepted"), "{text}");
    assert!(
        text.contains("0004f2000001-license.cfg unchanged"),
        "{text}"
    );
    assert!(
        text.contains("+ lync until") && text.contains("~ vqmon"),
        "{text}"
    );
    // A figure, not a verdict: the process's memory after an mTLS boot fetch and a
    // check-sync (under LICENSE_AGENT_RUNNER it is QEMU's, not the agent's).
    println!(
        "daemon memory after an HTTPS mutual-TLS boot fetch and a check-sync{}: {}",
        if std::env::var_os("LICENSE_AGENT_RUNNER").is_some() {
            " (QEMU included)"
        } else {
            ""
        },
        daemon.memory()
    );
    assert!(phone.features_file().contains("lync"));
    // status through the CLI now comes from the daemon.
    let out = run(
        agent(),
        [
            "status".as_ref(),
            "--config".as_ref(),
            phone.config.as_os_str(),
        ],
    );
    assert!(
        stdout(&out).contains("read from    the running daemon"),
        "{}",
        stdout(&out)
    );
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0), "SIGTERM stops it cleanly");
    assert!(
        !phone.path("control.sock").exists(),
        "the socket is removed"
    );

    // Without a daemon, status falls back to the store and says so.
    let out = run(
        agent(),
        [
            "status".as_ref(),
            "--config".as_ref(),
            phone.config.as_os_str(),
        ],
    );
    assert!(
        stdout(&out).contains("read from    the store (no daemon answered"),
        "{}",
        stdout(&out)
    );

    // A second boot with unchanged files downloads both whole (never a conditional
    // request: a renewal may carry the old file's validators) and finds them the ones
    // held.
    nginx.clear_access_log();
    let daemon = phone.start(None);
    let second = nginx.wait_access_entries(2, Duration::from_secs(5));
    assert_eq!(
        second.iter().map(|e| e.status).collect::<Vec<_>>(),
        [200, 200],
        "{}",
        nginx.access_log()
    );
    assert_eq!(
        outcomes(&daemon.status()),
        [
            (SITE_FILE.into(), "unchanged".into()),
            (PHONE_FILE.into(), "unchanged".into())
        ]
    );
    assert_eq!(
        daemon.status()["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon", "lync"])
    );

    // The server drops the phone file: 404 keeps the stored phone license.
    nginx.remove(PHONE_FILE);
    let v = daemon.request(r#"{"cmd":"check-sync"}"#);
    assert_eq!(v["check_sync"]["files"][1]["outcome"], "absent", "{v}");
    assert_eq!(
        daemon.status()["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon", "lync"])
    );
}

#[test]
fn basic_auth_with_and_without_the_password() {
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let phone = Phone::new(&format!(
        "server = \"{}\"\n[fetch]\nusername = \"phone\"\npassword = \"s3cret\"\n",
        nginx.basic_url()
    ));
    let t = now();
    nginx.put(
        SITE_FILE,
        &phone.sign("site", &[("h323", t - DAY, Some(t + 50 * DAY))]),
    );
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(
        outcomes(&s),
        [
            (SITE_FILE.into(), "accepted".into()),
            (PHONE_FILE.into(), "absent".into())
        ]
    );
    drop(daemon);
    // The wrong password: a failure, reported; the stored license stays in force.
    phone.configure(&format!(
        "server = \"{}\"\n[fetch]\nusername = \"phone\"\npassword = \"wrong\"\n",
        nginx.basic_url()
    ));
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(s["daemon"]["files"][0]["outcome"], "failed");
    assert!(
        s["daemon"]["files"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{s}"
    );
    assert_eq!(s["enabled"], serde_json::json!(["h323"]));
    drop(daemon);
    // The credentials may also be the URL's user info; the status never shows them.
    let with_userinfo = nginx
        .basic_url()
        .replacen("http://", "http://phone:s3cret@", 1);
    phone.configure(&format!("server = \"{with_userinfo}\"\n"));
    nginx.put(
        SITE_FILE,
        &phone.sign("site", &[("h323", t - DAY, Some(t + 80 * DAY))]),
    );
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(s["daemon"]["files"][0]["outcome"], "accepted", "{s}");
    assert!(
        !s.to_string().contains("s3cret"),
        "the password is never shown"
    );
}

/// A phone holding licenses, whose server misbehaves: the daemon keeps running, keeps
/// its licenses, reports the failure, and retries.
#[test]
fn fault_500() {
    let server = FaultServer::start(Fault::Status(500));
    fault_case(&server.url(), "", "500");
}

#[test]
fn fault_stall() {
    let server = FaultServer::start(Fault::Stall);
    fault_case(&server.url(), "", "time");
}

#[test]
fn fault_body_cut_midway() {
    let server = FaultServer::start(Fault::CutBody);
    fault_case(&server.url(), "", "cut");
}

#[test]
fn fault_slow_drip() {
    let server = FaultServer::start(Fault::SlowDrip);
    fault_case(&server.url(), "", "time");
}

#[test]
fn fault_oversize_body_is_abandoned_while_streaming() {
    for content_length in [true, false] {
        let server = FaultServer::start(Fault::Oversize { content_length });
        fault_case(&server.url(), "", "65536");
        assert!(
            server.bytes_sent() < 4 << 20,
            "{} bytes of 10 MiB sent",
            server.bytes_sent()
        );
    }
}

#[test]
fn fault_redirect_loop() {
    let server = FaultServer::start(Fault::RedirectLoop);
    fault_case(&server.url(), "", "redirect");
}

#[test]
fn fault_bad_certificates() {
    let work = tempfile::tempdir().unwrap();
    let (pki, nginx) = common::web_server(work.path());
    let ca = format!("ca_file = \"{}\"\n", pki.ca_pem.display());
    fault_case(&nginx.untrusted_url(), &ca, "unknownissuer");
    fault_case(&nginx.wrong_host_url(), &ca, "not valid for name");
    fault_case(&nginx.expired_url(), &ca, "expired");
    // The right server with the wrong CA trusted.
    fault_case(
        &nginx.https_url(),
        &format!("ca_file = \"{}\"\n", pki.other_ca_pem.display()),
        "unknownissuer",
    );
    // Mutual TLS without a client certificate.
    fault_case(&nginx.mtls_url(), &ca, "400");
}

/// `strace -c -f -p PID` for `time`, counting every system call of every thread; its
/// report.
fn strace_for(pid: &str, time: Duration) -> String {
    let out = Command::new("strace")
        .args(["-c", "-f", "-p", pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace is installed by the README's test command");
    std::thread::sleep(time);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(out.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = out.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr).to_string();
    println!("strace -c -f -p {pid} over {time:?}:\n{report}");
    assert!(
        report.contains("attached"),
        "strace did not attach: {report}"
    );
    report
}

/// The wall clock minus the monotonic clock, in milliseconds: it changes when the
/// machine's clock is stepped.
fn realtime_offset_ms() -> i64 {
    use nix::time::{clock_gettime, ClockId};
    let ms = |id| {
        let t = clock_gettime(id).unwrap();
        t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000
    };
    ms(ClockId::CLOCK_REALTIME) - ms(ClockId::CLOCK_MONOTONIC)
}

#[test]
fn an_idle_daemon_makes_no_system_calls() {
    let phone = Phone::new("");
    let t = now();
    phone.install(&phone.sign("phone", &[("lync", t - DAY, None)]));
    let daemon = phone.start(None);
    let pid = daemon.child.id().to_string();
    // A step of the machine's clock (a VM snapshot restored, seen in CI) wakes the
    // daemon, rightly: a window in which the clock was stepped proves nothing, so it is
    // measured again (three windows at most).
    for window in 1..=3 {
        let before = realtime_offset_ms();
        let report = strace_for(&pid, Duration::from_secs(30));
        let stepped = (realtime_offset_ms() - before).abs();
        // With no call at all, strace prints no table.
        let calls: Vec<&str> = report
            .lines()
            .filter(|l| {
                l.trim_start()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
            .collect();
        if calls.is_empty() {
            break;
        }
        assert!(
            stepped > 50 && window < 3,
            "system calls while idle (the clock moved {stepped} ms against the monotonic clock):\n{report}"
        );
        println!(
            "window {window}: the machine's clock was stepped by {stepped} ms: measuring again"
        );
    }
    drop(daemon);
}

#[test]
fn the_daemon_wakes_when_a_license_ends() {
    let phone = Phone::new("");
    let t = now() + 100 * DAY;
    phone.install(&phone.sign("site", &[("vqmon", t - 200 * DAY, Some(t))]));
    phone.install(&phone.sign("phone", &[("lync", t - 200 * DAY, None)]));
    // The test clock starts two minutes before the end...
    let daemon = phone.start(Some(t - 120));
    assert!(phone.features_file().contains("vqmon"));
    assert_eq!(daemon.status()["daemon"]["next_wake"], rfc(t));
    // ...and is moved to two seconds before it: the daemon's own timer does the rest.
    let v = daemon.request(&format!(r#"{{"cmd":"test-set-time","now":{}}}"#, t - 2));
    assert_eq!(v["ok"], true, "{v}");
    let moved = Instant::now();
    let deadline = moved + Duration::from_secs(10);
    while phone.features_file().contains("vqmon") {
        assert!(
            Instant::now() < deadline,
            "vqmon still published 10 s after its end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = moved.elapsed().as_secs_f64();
    println!(
        "vqmon unpublished {after:.2} s after the test clock was set 2 s before its end \
         (the daemon's clock counts whole seconds, so the end fell 1 to 2 s after setting)"
    );
    let s = daemon.status();
    assert_eq!(s["enabled"], serde_json::json!(["lync"]));
    assert!(phone.features_file().contains("lync"));
    // test-set-time is a test aid only: a daemon on the real clock refuses it.
    drop(daemon);
    let real = phone.start(None);
    let v = real.request(r#"{"cmd":"test-set-time","now":0}"#);
    assert_eq!(v["ok"], false);
}

#[test]
fn an_unsynced_clock_at_boot_fetches_once_the_clock_is_set() {
    let t = now();
    let site = tempfile::tempdir().unwrap();
    let phone = Phone::new(&format!("server = \"file://{}/\"\n", site.path().display()));
    std::fs::write(
        site.path().join(SITE_FILE),
        phone.sign("site", &[("vqmon", t - DAY, Some(t + 50 * DAY))]),
    )
    .unwrap();
    // 1970 at boot: nothing fetched or judged, and nothing published yet: the features
    // file (which the phone application waits for) waits for the clock and the boot
    // fetch, so the application starts with a license posted meanwhile, not without
    // it and a reboot later (boot_clock_wait).
    let daemon = phone.start(Some(0));
    let s = daemon.status();
    assert_eq!(s["clock"], "unsynced");
    assert!(s["licenses"].as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !phone.path("run/features").exists(),
        "published before the clock was set: {}",
        phone.features_file()
    );
    // SNTP sets the clock (here the test clock): the boot fetch happens at once.
    daemon.set_time(t);
    let s = daemon.wait_status("the boot fetch over", |s| s["daemon"]["fetching"] == false);
    assert_eq!(s["clock"], "ok");
    assert_eq!(s["enabled"], serde_json::json!(["vqmon"]));
    assert_eq!(phone.published(), ["vqmon"]);
}

#[test]
fn without_a_clock_the_stored_set_is_published_after_boot_clock_wait() {
    let t = now();
    let phone = Phone::new("[timing]\nboot_clock_wait = \"2s\"\n");
    phone.install_at(
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 50 * DAY))]),
        t,
    );
    // The set published at the last run (vqmon), then a reboot: /run is empty again.
    let daemon = phone.start(Some(t));
    assert_eq!(phone.published(), ["vqmon"]);
    drop(daemon);
    std::fs::remove_file(phone.path("run/features")).unwrap();
    let started = Instant::now();
    let daemon = phone.start(Some(0));
    assert!(!phone.path("run/features").exists());
    // No SNTP: after boot_clock_wait the stored set stands, unjudged.
    while !phone.path("run/features").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never published"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(phone.published(), ["vqmon"]);
    assert_eq!(daemon.status()["clock"], "unsynced");
}

#[test]
fn the_control_socket_refuses_other_users_and_bad_requests() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the README's test command runs as root (CI does)"
    );
    let phone = Phone::new("");
    let daemon = phone.start(None);
    let mode = std::fs::metadata(phone.path("control.sock"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Let another user read the configuration, as on a phone where it is world-readable.
    for p in [
        phone.dir.path().to_path_buf(),
        phone.config.clone(),
        phone.path("keyring"),
    ] {
        let m = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        let exe = std::env::var("LICENSE_AGENT_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_license-agent").to_string());
        if let Ok(runner) = std::env::var("LICENSE_AGENT_RUNNER") {
            cmd.args(runner.split_whitespace());
        }
        cmd.arg(exe).args(args);
        cmd.output().unwrap()
    };
    // The socket's mode keeps them out...
    let out = as_nobody(&["check-sync", "--config", phone.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and so does the peer check, even on a socket opened to everyone.
    std::fs::set_permissions(
        phone.path("control.sock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let out = as_nobody(&["check-sync", "--config", phone.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Malformed, unknown, oversize and empty requests get an error, never a crash.
    for bad in [
        "not json".to_string(),
        r#"{"cmd":"reboot"}"#.to_string(),
        r#"{"cmd":"install","file":"a.cfg","license":"not hex"}"#.to_string(),
        "x".repeat(150_000),
        String::new(),
    ] {
        let v = daemon.request(&bad);
        assert_eq!(v["ok"], false, "{bad:.40}: {v}");
        assert!(v["error"].is_string());
    }
    // Bytes handed over for install that are no license: refused, and said why.
    for (bytes, why) in [
        (b"junk".to_vec(), "malformed"),
        (vec![b' '; 65_537], "at most 65536 bytes"),
    ] {
        let line = format!(
            r#"{{"cmd":"install","file":"junk.cfg","license":"{}"}}"#,
            hex::encode(&bytes)
        );
        let v = daemon.request(&line);
        assert_eq!(v["install"]["code"], 1, "{v}");
        assert!(
            v["install"]["stderr"].as_str().unwrap().contains(why),
            "{v}"
        );
    }
    // A client that connects and says nothing is cut off; the daemon goes on.
    let silent = UnixStream::connect(phone.path("control.sock")).unwrap();
    assert_eq!(daemon.status()["source"], "daemon");
    drop(silent);
    assert_eq!(daemon.status()["mac"], MAC);
}

#[test]
fn sighup_reads_the_configuration_again() {
    let t = now();
    let site = tempfile::tempdir().unwrap();
    let phone = Phone::new("");
    std::fs::write(
        site.path().join(SITE_FILE),
        phone.sign("site", &[("vqmon", t - DAY, Some(t + 50 * DAY))]),
    )
    .unwrap();
    let daemon = phone.start(None);
    assert!(daemon.status()["daemon"]["server"]
        .as_str()
        .unwrap()
        .starts_with("none"));
    phone.configure(&format!("server = \"file://{}/\"\n", site.path().display()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.try_request(r#"{"cmd":"status"}"#).is_ok_and(|v| {
        v["status"]["daemon"]["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("file://"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the new configuration was not read"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = daemon.request(r#"{"cmd":"check-sync"}"#);
    assert_eq!(v["check_sync"]["files"][0]["outcome"], "accepted", "{v}");
}

#[test]
fn a_hand_install_while_the_daemon_runs_is_seen_and_never_overwritten() {
    let t = now();
    let (phone, server) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 50 * DAY))]);
    // No daemon yet: install says when the license will apply.
    let out = phone.install(&phone.sign("site", &[("vqmon", t - DAY, Some(t + 40 * DAY))]));
    assert!(
        out.contains("no daemon is running: it applies the license when it starts"),
        "{out}"
    );
    let daemon = phone.start(None);
    // A field engineer installs a phone license by hand over ssh: the daemon applies it
    // at once (it is published before install returns)...
    let out = phone.install(&phone.sign("phone", &[("lync", t - DAY, Some(t + 100 * DAY))]));
    assert!(
        out.contains("the running daemon applied it: enabled now vqmon, lync"),
        "{out}"
    );
    assert!(
        phone.features_file().contains("lync"),
        "{}",
        phone.features_file()
    );
    // ...and the server then offers a renewal of it that starts later: both are kept
    // (the hand-installed one bridges), so the daemon must not write over it.
    std::fs::write(
        server.path().join(PHONE_FILE),
        phone.sign("phone", &[("lync", t + 60 * DAY, Some(t + 400 * DAY))]),
    )
    .unwrap();
    let v = daemon.request(r#"{"cmd":"check-sync"}"#);
    assert_eq!(v["check_sync"]["files"][1]["outcome"], "accepted", "{v}");
    let s = daemon.status();
    let kinds: Vec<&str> = s["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["site", "phone", "phone"], "{s:#}");
    assert_eq!(s["enabled"], serde_json::json!(["vqmon", "lync"]));
    let stored = std::fs::read_dir(phone.path("state/phone"))
        .unwrap()
        .count();
    assert_eq!(stored, 2, "both phone licenses are on disk");
}

#[test]
fn the_supervisor_is_greeted_told_the_features_and_may_ask_for_a_check_sync() {
    let t = now();
    let server = tempfile::tempdir().unwrap();
    let socket = server.path().join("supervisor.sock");
    let mut sim = Sim::start(&socket, server.path().join("sim-1.log"));
    let phone = Phone::new(&format!(
        "server = \"file://{}/\"\nsupervisor_socket = \"{}\"\n",
        server.path().display(),
        socket.display()
    ));
    std::fs::write(
        server.path().join(SITE_FILE),
        phone.sign("site", &[("vqmon", t - DAY, Some(t + 50 * DAY))]),
    )
    .unwrap();
    let daemon = phone.start(None);
    sim.wait_for("recv HELLO license-agent/1", 1);
    sim.wait_for("recv FEATURES vqmon", 1);

    // CHECK-SYNC from the supervisor: the daemon fetches, and tells the new set.
    std::fs::write(
        server.path().join(PHONE_FILE),
        phone.sign("phone", &[("lync", t - DAY, None)]),
    )
    .unwrap();
    sim.command("check-sync");
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    assert_eq!(
        daemon.status()["enabled"],
        serde_json::json!(["vqmon", "lync"])
    );

    // Garbage gets ERR, and the connection stays.
    sim.command("send WHAT IS THIS");
    sim.wait_for("recv ERR", 1);
    // An overlong line (2,000 bytes, over the 1,024 limit) gets one ERR too.
    sim.command(&format!("send-hex {}0a", "41".repeat(2_000)));
    sim.wait_for("recv ERR", 2);
    sim.command("call active");
    sim.wait_for("sent CALL-STATE active", 1);
    // The supervisor closes in the middle of a line: the half line is dropped, the
    // daemon reconnects.
    sim.command("send-hex 43414c4c2d53");
    sim.command("disconnect");
    sim.wait_for("recv HELLO license-agent/1", 2);
    sim.wait_for("recv FEATURES vqmon,lync", 2);

    // A dropped connection: the daemon comes back, greets again, tells the set again.
    sim.command("disconnect");
    sim.wait_for("recv HELLO license-agent/1", 3);
    let record = sim.wait_for("recv FEATURES vqmon,lync", 3);
    assert!(!record.contains("violation"), "{record}");

    // The supervisor restarts: the daemon reconnects to the new one.
    drop(sim);
    let sim = Sim::start(&socket, server.path().join("sim-2.log"));
    sim.wait_for("recv HELLO license-agent/1", 1);
    sim.wait_for("recv FEATURES vqmon,lync", 1);
    drop(daemon);
}

#[test]
fn a_sighup_while_the_agent_starts_is_kept_for_the_loop() {
    let phone = Phone::new("");
    // The store's writer lock is held here, so the agent, once it has read its
    // configuration (signals blocked first), waits for it (up to 5 s): a SIGHUP sent
    // then reaches a starting agent. (A FIFO keyring, which an earlier version of this
    // test used to know when the agent reads its configuration, is now refused.)
    let state = phone.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let lock = std::fs::File::create(state.join("lock")).unwrap();
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let child = phone.spawn(None);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::sleep(Duration::from_millis(1_500));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    drop(lock);
    let mut daemon = phone.attach(child);
    assert!(daemon.alive());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("SIGHUP: reading the configuration again"),
        "{log}"
    );
}

/// One writer per store: while the daemon runs, a second daemon or `run --once` on the
/// same state folder is refused, and `install` hands the file to the daemon (which
/// judges it, records the verdict and applies it), so two processes never write
/// `meta.json` or a license number beside each other. Without a daemon, install waits
/// for a short holder of the lock, and says so when the holder never lets go.
#[test]
fn one_writer_per_store() {
    let t = now();
    let (phone, _server) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 50 * DAY))]);
    let daemon = phone.start(None);

    // Another daemon, or a one-off pass, with their own control socket: refused.
    let second = phone.path("second.toml");
    let text = std::fs::read_to_string(&phone.config).unwrap();
    std::fs::write(&second, text.replace("control.sock", "second.sock")).unwrap();
    for args in [vec!["run"], vec!["run", "--once"]] {
        let mut all = args.clone();
        all.extend(["--config", second.to_str().unwrap()]);
        let out = run(agent(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("another license-agent process holds it"),
            "{args:?}: {stderr}"
        );
    }

    // A refused install goes through the daemon too: its verdict on stderr, exit 1,
    // and the daemon recorded it.
    let stderr = install_fails(
        &phone,
        &phone.sign("phone", &[("lync", t - 10 * DAY, Some(t - DAY))]),
    );
    assert!(
        stderr.contains("refused") && stderr.contains("expired"),
        "{stderr}"
    );
    // (The daemon's status comes from its memory: it holds the verdict it recorded.)
    let events = daemon.status()["events"].to_string();
    assert!(
        events.contains(r#""what":"refused""#) && events.contains("has not expired"),
        "{events}"
    );
    // An accepted one is applied at once, and the daemon's own records survive it.
    let out = phone.install(&phone.sign("phone", &[("lync", t - DAY, None)]));
    assert!(
        out.contains("installed: phone license")
            && out.contains("the running daemon applied it: enabled now vqmon, lync"),
        "{out}"
    );
    let (_, log) = daemon.stop();
    assert!(
        log.contains("install "),
        "the daemon did the install:\n{log}"
    );
    let meta = std::fs::read_to_string(phone.path("state/meta.json")).unwrap();
    assert!(
        meta.contains("has not expired") && meta.contains("\"published\""),
        "{meta}"
    );

    // No daemon, but the lock is held for a moment (a daemon starting, another
    // install): install waits for it, then installs itself.
    let state = phone.path("state");
    let held = license_agent::storage::WriterLock::try_acquire(&state)
        .unwrap()
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(held);
    });
    let renewal = phone.sign("site", &[("vqmon", t - DAY, Some(t + 90 * DAY))]);
    let out = phone.install(&renewal);
    assert!(out.contains("no daemon is running"), "{out}");
    release.join().unwrap();
    // Held for good and no daemon answers: nothing installed, and it says why.
    let _held = license_agent::storage::WriterLock::try_acquire(&state)
        .unwrap()
        .unwrap();
    let before = std::fs::read_to_string(phone.path("state/meta.json")).unwrap();
    let stderr = install_fails(
        &phone,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 99 * DAY))]),
    );
    assert!(
        stderr.contains("nothing installed: another license-agent process holds the store"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(phone.path("state/meta.json")).unwrap(),
        before,
        "the store is untouched"
    );
    // Something that takes the file and closes without an answer (a daemon dying in
    // the middle): install cannot know whether it was stored, and says so.
    let listener = std::os::unix::net::UnixListener::bind(phone.path("control.sock")).unwrap();
    let mute = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line).unwrap();
        line
    });
    let stderr = install_fails(
        &phone,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 98 * DAY))]),
    );
    assert!(stderr.contains("it may still install it"), "{stderr}");
    assert!(mute.join().unwrap().starts_with(r#"{"cmd":"install""#));
}

/// `license-agent install` of `bytes`, which must fail (exit 1); its standard error.
fn install_fails(phone: &Phone, bytes: &[u8]) -> String {
    let file = phone.path("refused.cfg");
    std::fs::write(&file, bytes).unwrap();
    let config = phone.config.to_str().unwrap();
    let out = run(
        agent(),
        ["install", "--config", config, file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

/// A SIGHUP whose configuration names a control socket that cannot be bound leaves the
/// daemon running and answering on the socket it has (it used to exit).
#[test]
fn a_reload_with_an_unusable_control_socket_keeps_the_old_one() {
    let (phone, _server) = Phone::with_folder_server(&[("vqmon", now() - DAY, None)]);
    let mut daemon = phone.start(None);
    let config = std::fs::read_to_string(&phone.config).unwrap();
    std::fs::write(
        &phone.config,
        config.replace(
            "control_socket = \"control.sock\"",
            "control_socket = \"/proc/no-such-dir/control.sock\"",
        ),
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(daemon.alive(), "the daemon stopped on the reload");
    assert_eq!(daemon.status()["enabled"], serde_json::json!(["vqmon"]));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("the control socket stays at"), "{log}");
}

/// Status reports: several agents (their own MACs, one site license, one stale keyring)
/// upload `<mac>-license-status.json` to nginx (WebDAV PUT with Basic auth), after the
/// boot cycle and again only when the report changes; `license-fleet` reads the upload
/// folder. An agent whose server takes no uploads (405) asks once and stops.
#[test]
fn agents_upload_their_status_reports_and_the_fleet_view_reads_them() {
    use common::nginx::{BASIC_PASSWORD, BASIC_USER};
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let root = nginx.root.clone();
    let server = format!(
        "server = \"{}\"\nreport = true\n[fetch]\nusername = \"{BASIC_USER}\"\npassword = \"{BASIC_PASSWORD}\"\n",
        nginx.basic_url()
    );
    let macs = ["0004f2000001", "0004f2000002", "0004f2000003"];
    let phones: Vec<Phone> = macs.iter().map(|_| Phone::new(&server)).collect();
    // One vendor: every phone trusts the first phone's key, except the third, whose
    // keyring is stale (its own key only).
    for phone in &phones[1..2] {
        std::fs::copy(phones[0].path("keyring"), phone.path("keyring")).unwrap();
    }
    for (phone, mac) in phones.iter().zip(macs) {
        let text = std::fs::read_to_string(&phone.config).unwrap();
        std::fs::write(&phone.config, text.replace(MAC, mac)).unwrap();
    }
    let t = now();
    nginx.put(
        SITE_FILE,
        &phones[0].sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]),
    );
    nginx.put(
        PHONE_FILE,
        &phones[0].sign("phone", &[("lync", t - DAY, Some(t + 10 * DAY))]),
    );

    let daemons: Vec<_> = phones.iter().map(|p| p.start(None)).collect();
    let report_of = |mac: &str| root.join(format!("{mac}-license-status.json"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !macs.iter().all(|mac| report_of(mac).exists()) {
        assert!(Instant::now() < deadline, "{}", nginx.access_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let uploads = nginx.uploads();
    assert_eq!(uploads.len(), 3, "{}", nginx.access_log());
    assert!(
        uploads
            .iter()
            .all(|u| u.remote_user == BASIC_USER && matches!(u.status, 201 | 204)),
        "{uploads:?}"
    );
    let first: Value = serde_json::from_slice(&std::fs::read(report_of(macs[0])).unwrap()).unwrap();
    assert_eq!(first["mac"], macs[0]);
    assert_eq!(first["licenses"].as_array().unwrap().len(), 2, "{first:#}");
    assert!(
        !std::fs::read_to_string(report_of(macs[0]))
            .unwrap()
            .contains(BASIC_PASSWORD),
        "no secret in a report"
    );
    let status = daemons[0].status();
    assert_eq!(
        status["daemon"]["report"],
        format!(
            "{}{}-license-status.json (the report of {})",
            nginx.basic_url(),
            macs[0],
            first["reported_at"].as_str().unwrap()
        ),
        "{status:#}"
    );

    // Unchanged: asking the status again and again sends nothing.
    for daemon in &daemons {
        for _ in 0..5 {
            daemon.status();
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(nginx.uploads().len(), 3, "{}", nginx.access_log());

    // A change (a renewal of the phone license, fetched by a check-sync) is sent.
    nginx.put(
        PHONE_FILE,
        &phones[0].sign("phone", &[("lync", t - DAY, Some(t + 400 * DAY))]),
    );
    let v = daemons[0].request(r#"{"cmd":"check-sync"}"#);
    assert_eq!(v["check_sync"]["files"][1]["outcome"], "accepted", "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while nginx.uploads().len() < 4 {
        assert!(Instant::now() < deadline, "{}", nginx.access_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let renewed: Value =
        serde_json::from_slice(&std::fs::read(report_of(macs[0])).unwrap()).unwrap();
    let phone_ends: Vec<_> = renewed["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "phone")
        .map(|l| l["end"].as_str().unwrap().to_string())
        .collect();
    assert!(phone_ends.contains(&rfc(t + 400 * DAY)), "{renewed:#}");

    // The fleet view of the upload folder: three phones, the site license once.
    let out = run(common::fleet(), ["--json".as_ref(), root.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fleet: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(fleet["fleet"]["phones"], 3, "{fleet:#}");
    let site_rows = fleet["fleet"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "site")
        .map(|l| l["phones"].clone())
        .collect::<Vec<_>>();
    assert_eq!(site_rows, [serde_json::json!(2)], "{fleet:#}");
    let attention = fleet["fleet"]["attention"].as_array().unwrap();
    assert!(
        attention.iter().any(|g| g["what"] == "unknown-key"
            && g["phones"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["mac"] == macs[2])),
        "{fleet:#}"
    );

    // A server without uploads (plain nginx: 405): asked once, then left alone.
    let plain = Phone::new(&format!(
        "server = \"{}\"\nreport = true\n",
        nginx.http_url()
    ));
    let text = std::fs::read_to_string(&plain.config).unwrap();
    std::fs::write(&plain.config, text.replace(MAC, "0004f2000009")).unwrap();
    let daemon = plain.start(None);
    let refused = daemon.wait_status("the report refused", |s| {
        s["daemon"]["report"]
            .as_str()
            .is_some_and(|r| r.starts_with("off: "))
    });
    assert!(
        refused["daemon"]["report"]
            .as_str()
            .unwrap()
            .contains("405"),
        "{refused:#}"
    );
    daemon.request(r#"{"cmd":"check-sync"}"#);
    std::thread::sleep(Duration::from_millis(500));
    let refused_puts = nginx.uploads().iter().filter(|u| u.status == 405).count();
    assert_eq!(refused_puts, 1, "{}", nginx.access_log());
}

/// A report upload that stalls, or fails, is the uploader's business only: the daemon
/// answers and fetches meanwhile, the upload gives up within the fetch timeout, and is
/// tried again after its back-off.
#[test]
fn a_stalled_or_failing_report_upload_never_holds_the_daemon_and_is_tried_again() {
    let t = now();
    let (phone, folder) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 100 * DAY))]);
    for fault in [Fault::Stall, Fault::Status(500)] {
        let server = FaultServer::start(fault);
        phone.configure(&format!(
            "server = \"file://{}/\"\nreport = \"{}\"\n[fetch]\ntotal_timeout = \"3s\"\n\
             [timing]\nretry_initial = \"2s\"\nretry_max = \"4s\"\n",
            folder.path().display(),
            server.url()
        ));
        let daemon = phone.start(None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.requests() == 0 {
            assert!(
                Instant::now() < deadline,
                "no upload: {:#}",
                daemon.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever the upload does, the loop answers and a check-sync runs to its end.
        let v = daemon.request(r#"{"cmd":"check-sync"}"#);
        assert_eq!(v["check_sync"]["files"][0]["outcome"], "unchanged", "{v}");
        let failing = daemon.wait_status("the upload failed", |s| {
            s["daemon"]["report"]
                .as_str()
                .is_some_and(|r| r.contains("failing (1 in a row)"))
        });
        assert_eq!(failing["enabled"], serde_json::json!(["vqmon"]));
        // Tried again after the back-off (1 to 2 s), the same report.
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.requests() < 2 {
            assert!(
                Instant::now() < deadline,
                "never again: {:#}",
                daemon.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for seen in server.seen() {
            assert_eq!(
                (seen.method.as_str(), seen.path.as_str()),
                ("PUT", "/0004f2000001-license-status.json")
            );
        }
        let (code, _) = daemon.stop();
        assert_eq!(code, Some(0));
    }
}
