//! Liveness of the real daemon (issue 11): the loop that holds the supervisor link, the
//! control socket, signals and the timer is never held by a slow server or a slow
//! client, and a REBOOT is decided on fresh facts. The real `license-agent` binary (or
//! the armv7 one under qemu-arm, through `LICENSE_AGENT_BIN` / `LICENSE_AGENT_RUNNER`),
//! an in-process test supervisor that stamps every line with a monotonic instant
//! (`common::supervisor`), stalling and failing servers (`common::faults`), and the test
//! clock moved by the test. It shows:
//!
//! - a call that starts while the expiry's fetch is stalled gets no REBOOT until the
//!   call ends and the idle grace has passed;
//! - `status` answers within 1 s with 200 silent clients connected;
//! - SIGTERM stops the daemon within 1 s while a fetch is stalled (the boot fetch, and a
//!   check-sync);
//! - HELLO and FEATURES (with the stored set) go out within 1 s of start with a dead
//!   server (one that stalls, and one that never accepts the connection);
//! - with `idle_grace = "3s"` no REBOOT comes sooner than 3.0 s after `CALL-STATE idle`;
//! - seeded interleavings (point 5): a schedule drawn from a seed mixes calls,
//!   CHECK-SYNC, BUSY / OK / no answer, supervisor restarts, stalled and failing fetches,
//!   silent, slow and dripping control clients, clock steps, SIGHUP and SIGHUP storms,
//!   a supervisor that stops reading for a while (issue 23; a REBOOT read after such a
//!   pause may have been written any time during it, and is judged so), and a quarter
//!   of the phones under a low descriptor limit; throughout, no REBOOT
//!   while the supervisor's last word is `active`, none before the grace (real time,
//!   but a forward step of the test clock is time passing: see [`check_reboots`]), none
//!   twice for a cause, `status` within 1 s, and SIGTERM within 1 s at the end.
//!   `LIVENESS_SEEDS` (how many), `LIVENESS_SEED_BASE` (the first), `LIVENESS_JOBS` (in
//!   parallel), `LIVENESS_SEED=<n>` (replay one); `scripts/soak-liveness.sh` runs many.
//!
//! Intervals are measured the way that never flatters the daemon: from the instant the
//! supervisor's `write` returned (the daemon cannot have read a line earlier) to the
//! instant the daemon's line was read. Bounds of "within 1 s of start" add the time the
//! runner (qemu-arm) takes to start the binary, measured with `--version`.

use crate::common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::control::{self, Blackhole};
use common::faults::{Fault, FaultServer};
use common::now;
use common::phone::{Phone, DAY, PHONE_FILE, SITE_FILE};
use common::supervisor::{Answer, Event, Sent, TestSupervisor};
use serde_json::Value;

/// What "within 1 s" means throughout the issue.
pub(crate) const SECOND: Duration = Duration::from_secs(1);
/// How long a test waits for something a correct daemon does at once, before it calls
/// it missing (generous: the armv7 binary runs under qemu on a loaded machine).
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// How long the runner takes to start the binary (qemu-arm: tens of ms; none on the
/// host): the slowest of three `license-agent --version`.
pub(crate) fn start_overhead() -> Duration {
    static OVERHEAD: OnceLock<Duration> = OnceLock::new();
    *OVERHEAD.get_or_init(|| {
        let runner = std::env::var("LICENSE_AGENT_RUNNER").unwrap_or_default();
        if runner.trim().is_empty() {
            return Duration::ZERO;
        }
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let out = common::run(common::agent(), ["--version"]);
                assert!(out.status.success());
                t.elapsed()
            })
            .max()
            .unwrap_or_default()
    })
}

/// A daemon process started by a test; killed on drop. Its standard error goes to a
/// file (a pipe nobody reads would fill and block it).
pub(crate) struct Proc {
    child: Child,
    spawned: Instant,
    log: PathBuf,
    control: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(phone: &Phone, test_now: Option<i64>) -> Proc {
        Proc::spawn_with(phone, test_now, |_| {})
    }

    /// [`spawn`](Self::spawn), the command set up further by `setup` (last: it may send
    /// standard error elsewhere).
    pub(crate) fn spawn_with(
        phone: &Phone,
        test_now: Option<i64>,
        setup: impl FnOnce(&mut std::process::Command),
    ) -> Proc {
        let log = phone.path("daemon.log");
        let mut cmd = common::agent();
        cmd.args([
            "run".as_ref(),
            "--config".as_ref(),
            phone.config.as_os_str(),
        ])
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
        if let Some(t) = test_now {
            cmd.env("LICENSE_AGENT_TEST_NOW", t.to_string());
        }
        setup(&mut cmd);
        let spawned = Instant::now();
        let child = cmd.spawn().expect("start the daemon");
        Proc {
            child,
            spawned,
            log,
            control: phone.path("control.sock"),
        }
    }

    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("signal the daemon");
    }

    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The daemon's log so far (its last `lines` lines).
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `status` answers (the control socket is up); the status.
    pub(crate) fn wait_control(&mut self) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok((s, _)) = control::status(&self.control, Duration::from_secs(2)) {
                return s;
            }
            assert!(self.alive(), "the daemon ended:\n{}", self.log_tail(30));
            assert!(
                Instant::now() < deadline,
                "the control socket never answered:\n{}",
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls the status (each answer within 2 s) until `ok`; the status, or `None` after
    /// `PATIENCE`.
    pub(crate) fn wait_status(&mut self, ok: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline && self.alive() {
            if let Ok((s, _)) = control::status(&self.control, Duration::from_secs(2)) {
                if ok(&s) {
                    return Some(s);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then how long until the process was gone (`None`: still there after
    /// `wait`, when it is killed) and its exit code.
    pub(crate) fn terminate(&mut self, wait: Duration) -> (Option<Duration>, Option<i32>) {
        let sent = Instant::now();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        while sent.elapsed() < wait {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (Some(sent.elapsed()), status.code());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (None, None)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A phone whose configuration is `extra` plus a supervisor socket in its folder.
pub(crate) fn phone_with_supervisor(extra: &str) -> (Phone, PathBuf) {
    let phone = Phone::new("");
    let socket = phone.path("supervisor.sock");
    phone.configure(&format!(
        "supervisor_socket = \"{}\"\n{extra}",
        socket.display()
    ));
    (phone, socket)
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[test]
fn a_call_that_starts_while_the_expiry_fetch_is_stalled_gets_no_reboot_until_it_ends_and_the_grace_passed(
) {
    let grace = Duration::from_secs(2);
    let stall = FaultServer::start(Fault::Stall);
    let (phone, socket) = phone_with_supervisor(&format!(
        "server = \"{}\"\n[fetch]\nconnect_timeout = \"1s\"\ntotal_timeout = \"3s\"\n\
         [timing]\nidle_grace = \"2s\"\n",
        stall.url()
    ));
    // A phone license (no stagger delay) that ends at `end` on the test clock.
    let end = now() + 100 * DAY;
    let license = phone.sign("phone", &[("vqmon", end - 200 * DAY, Some(end))]);
    phone.install_at(&license, end - 100);
    let sup = TestSupervisor::start(&socket, "idle");
    let mut daemon = Proc::spawn(&phone, Some(end - 60));
    assert!(sup.wait_connected(PATIENCE), "{}", daemon.log_tail(30));
    assert!(sup.wait_line("FEATURES vqmon", 1, PATIENCE).is_some());
    // The boot fetch (stalled too) has given up: the next fetch is the expiry's.
    daemon
        .wait_status(|s| {
            s["daemon"]["consecutive_failures"].as_u64() >= Some(1)
                && s["daemon"]["fetching"] != true
        })
        .expect("the boot fetch gives up");
    let before = stall.requests();

    // The license ends: the daemon fetches once before deciding, and the server stalls.
    // Not waited for: a correct daemon answers at once, today's only after the fetch.
    let control_path = phone.path("control.sock");
    let set_time = std::thread::spawn(move || {
        control::request(
            &control_path,
            &format!(r#"{{"cmd":"test-set-time","now":{}}}"#, end + 1),
            Duration::from_secs(30),
        )
    });
    let deadline = Instant::now() + PATIENCE;
    while stall.requests() <= before {
        assert!(Instant::now() < deadline, "the expiry fetch never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A call begins while the fetch hangs.
    std::thread::sleep(Duration::from_millis(300));
    let active = sup.call("active").expect("connected");

    // The fetch gives up; the need for a reboot is there, but the phone is in a call.
    let s = daemon
        .wait_status(|s| s["daemon"]["reboot"]["pending"] == true)
        .expect("a reboot is needed once the fetch gave up");
    assert!(sup.barrier(PATIENCE), "the daemon reads its supervisor");
    let _ = set_time.join();
    if let Some((at, line)) = sup.wait_line("REBOOT", 1, Duration::ZERO) {
        panic!(
            "{line} came {} after CALL-STATE active was sent: the daemon decided without \
             reading it\nreboot: {:#}\n{}",
            secs(at.saturating_duration_since(active.at)),
            s["daemon"]["reboot"],
            daemon.log_tail(30)
        );
    }
    // The call goes on past the grace: still nothing.
    std::thread::sleep(grace + Duration::from_millis(500));
    assert!(sup.barrier(PATIENCE));
    assert_eq!(sup.count("REBOOT"), 0, "{}", daemon.log_tail(30));

    // The call ends: the REBOOT comes, and not before the whole grace.
    let idle = sup.call("idle").expect("connected");
    let (at, line) = sup
        .wait_line("REBOOT", 1, PATIENCE)
        .unwrap_or_else(|| panic!("no REBOOT after the call:\n{}", daemon.log_tail(30)));
    assert!(line.ends_with(" license-expired"), "{line}");
    let after = at.saturating_duration_since(idle.at);
    assert!(
        after >= grace,
        "{line} came {} after CALL-STATE idle, grace {}",
        secs(after),
        secs(grace)
    );
}

#[test]
fn status_answers_within_1_s_with_200_silent_clients_connected() {
    let (phone, _server) = Phone::with_folder_server(&[("vqmon", now() - DAY, None)]);
    let mut daemon = Proc::spawn(&phone, None);
    daemon.wait_control();
    let socket = phone.path("control.sock");
    let clients = control::silent_clients(&socket, 200, Instant::now() + Duration::from_secs(10));
    let connected = clients.len();
    // Generous for the read (5 s), strict in the assertion (1 s).
    let answer = control::status(&socket, Duration::from_secs(5));
    let second = control::status(&socket, Duration::from_secs(5));
    drop(clients);
    assert_eq!(
        connected, 200,
        "only {connected} silent clients could connect within 10 s"
    );
    for (which, answer) in [("first", answer), ("second", second)] {
        match answer {
            Ok((s, took)) => {
                assert_eq!(s["source"], "daemon", "{s:#}");
                assert!(
                    took < SECOND,
                    "the {which} status took {} with 200 silent clients",
                    secs(took)
                );
                println!(
                    "figure: the {which} status with 200 silent clients: {}",
                    secs(took)
                );
            }
            Err(e) => panic!(
                "the {which} status with 200 silent clients: {e}\n{}",
                daemon.log_tail(20)
            ),
        }
    }
    assert!(daemon.alive());
}

#[test]
fn sigterm_stops_the_daemon_within_1_s_during_a_stalled_boot_fetch() {
    let stall = FaultServer::start(Fault::Stall);
    // The default timeouts: a boot fetch that would hang for minutes.
    let phone = Phone::new(&format!("server = \"{}\"\n", stall.url()));
    let mut daemon = Proc::spawn(&phone, None);
    let deadline = Instant::now() + PATIENCE;
    while stall.requests() == 0 {
        assert!(Instant::now() < deadline, "{}", daemon.log_tail(20));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (took, code) = daemon.terminate(Duration::from_secs(5));
    let took = took.unwrap_or_else(|| {
        panic!(
            "still running 5 s after SIGTERM during the boot fetch:\n{}",
            daemon.log_tail(20)
        )
    });
    assert!(took < SECOND, "SIGTERM took {} to stop it", secs(took));
    println!("figure: SIGTERM stopped it in {}", secs(took));
    assert_eq!(code, Some(0), "{}", daemon.log_tail(20));
}

#[test]
fn sigterm_stops_the_daemon_within_1_s_during_a_stalled_check_sync() {
    let folder = tempfile::tempdir().unwrap();
    let phone = Phone::new(&format!(
        "server = \"file://{}/\"\n",
        folder.path().display()
    ));
    std::fs::write(
        folder.path().join(SITE_FILE),
        phone.sign("site", &[("vqmon", now() - DAY, None)]),
    )
    .unwrap();
    let mut daemon = Proc::spawn(&phone, None);
    daemon.wait_control();
    // The server becomes one that stalls (default timeouts); SIGHUP reads it.
    let stall = FaultServer::start(Fault::Stall);
    phone.configure(&format!("server = \"{}\"\n", stall.url()));
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon
        .wait_status(|s| s["daemon"]["server"].as_str() == Some(stall.url().as_str()))
        .expect("the new server after SIGHUP");
    let control_path = phone.path("control.sock");
    let client = std::thread::spawn(move || {
        control::request(
            &control_path,
            r#"{"cmd":"check-sync"}"#,
            Duration::from_secs(10),
        )
    });
    let deadline = Instant::now() + PATIENCE;
    while stall.requests() == 0 {
        assert!(Instant::now() < deadline, "{}", daemon.log_tail(20));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (took, code) = daemon.terminate(Duration::from_secs(5));
    let _ = client.join();
    let took = took.unwrap_or_else(|| {
        panic!(
            "still running 5 s after SIGTERM during a check-sync:\n{}",
            daemon.log_tail(20)
        )
    });
    assert!(took < SECOND, "SIGTERM took {} to stop it", secs(took));
    println!("figure: SIGTERM stopped it in {}", secs(took));
    assert_eq!(code, Some(0), "{}", daemon.log_tail(20));
}

/// HELLO and FEATURES (the stored set) within 1 s of start, whatever the server does.
fn hello_and_features_within_1_s(server: &str) {
    let (phone, socket) = phone_with_supervisor(&format!("server = \"{server}\"\n"));
    phone.install(&phone.sign("phone", &[("lync", now() - DAY, None)]));
    let bound = SECOND + start_overhead();
    let sup = TestSupervisor::start(&socket, "idle");
    let daemon = Proc::spawn(&phone, None);
    let wait = bound + Duration::from_secs(4);
    let hello = sup.wait_line("HELLO", 1, wait);
    let features = sup.wait_line("FEATURES", 1, wait);
    let since = |x: &Option<(Instant, String)>| {
        x.as_ref()
            .map(|(at, _)| at.saturating_duration_since(daemon.spawned))
    };
    let (hello_after, features_after) = (since(&hello), since(&features));
    let hello_after = hello_after.unwrap_or_else(|| {
        panic!(
            "no HELLO within {} of start (server {server}):\n{}",
            secs(wait),
            daemon.log_tail(20)
        )
    });
    assert!(
        hello_after <= bound,
        "HELLO {} after start, bound {}",
        secs(hello_after),
        secs(bound)
    );
    let features_after = features_after.unwrap_or_else(|| {
        panic!(
            "no FEATURES within {} of start:\n{}",
            secs(wait),
            daemon.log_tail(20)
        )
    });
    assert_eq!(
        features.unwrap().1,
        "FEATURES lync",
        "the stored set at once"
    );
    println!(
        "figure: HELLO {} and FEATURES {} after start (server {server})",
        secs(hello_after),
        secs(features_after)
    );
    assert!(
        features_after <= bound,
        "FEATURES {} after start, bound {}",
        secs(features_after),
        secs(bound)
    );
}

#[test]
fn hello_and_features_go_out_within_1_s_of_start_with_a_stalling_server() {
    let stall = FaultServer::start(Fault::Stall);
    hello_and_features_within_1_s(&stall.url());
}

#[test]
fn hello_and_features_go_out_within_1_s_of_start_with_a_server_that_never_accepts() {
    let hole = Blackhole::start();
    hello_and_features_within_1_s(&hole.url());
}

#[test]
fn with_idle_grace_3s_no_reboot_comes_sooner_than_3_s_after_call_state_idle() {
    let grace = Duration::from_secs(3);
    let folder = tempfile::tempdir().unwrap();
    let (phone, socket) = phone_with_supervisor(&format!(
        "server = \"file://{}/\"\n[timing]\nidle_grace = \"3s\"\n",
        folder.path().display()
    ));
    let t = now();
    let post = |features: &[(&str, i64, Option<i64>)]| {
        let bytes = phone.sign("phone", features);
        std::fs::write(folder.path().join(PHONE_FILE), bytes).unwrap();
    };
    post(&[("lync", t - DAY, None)]);
    // In a call from the start, so the grace starts at our CALL-STATE idle.
    let sup = TestSupervisor::start(&socket, "active");
    let mut daemon = Proc::spawn(&phone, None);
    daemon.wait_control();
    assert!(sup.wait_line("FEATURES lync", 1, PATIENCE).is_some());
    // A new phone license: a reboot is needed (license-changed, no stagger delay).
    post(&[("lync", t - DAY, None), ("h323", t - DAY, None)]);
    sup.send("CHECK-SYNC");
    assert!(sup.wait_line("FEATURES h323,lync", 1, PATIENCE).is_some());
    assert!(sup.barrier(PATIENCE));
    assert_eq!(sup.count("REBOOT"), 0, "asked during a call");

    // Twice: answered BUSY, then (after a call) OK.
    let mut measured = Vec::new();
    for (n, answer) in [(1, Answer::Busy), (2, Answer::Ok)] {
        sup.set_answer(answer);
        if n > 1 {
            sup.call("active");
        }
        let idle: Sent = sup.call("idle").expect("connected");
        let (at, line) = sup
            .wait_line("REBOOT", n, PATIENCE)
            .unwrap_or_else(|| panic!("no REBOOT {n}:\n{}", daemon.log_tail(30)));
        assert!(line.ends_with(" license-changed"), "{line}");
        measured.push(at.saturating_duration_since(idle.at));
    }
    let shown: Vec<String> = measured.iter().map(|d| secs(*d)).collect();
    println!("figure: REBOOT after CALL-STATE idle (grace 3 s): {shown:?}");
    assert!(
        measured.iter().all(|d| *d >= grace),
        "REBOOT after CALL-STATE idle: {shown:?}, grace {}",
        secs(grace)
    );
}

// ---------------------------------------------------------------------------------
// Seeded interleavings.

/// SplitMix64: a tiny deterministic generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// An index drawn with these weights.
    fn pick(&mut self, weights: &[u64]) -> usize {
        let mut x = self.next() % weights.iter().sum::<u64>();
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Which provisioning server the configuration names.
#[derive(Debug, Clone, Copy)]
enum Server {
    Folder,
    Stall,
    Failing,
    Refused,
}

/// What the folder server holds.
#[derive(Debug, Clone, Copy)]
enum SiteFile {
    Ending,
    Renewed,
    Absent,
}

#[derive(Debug, Clone, Copy)]
enum PhoneFile {
    Lync,
    LyncH323,
    Absent,
}

/// One step of a schedule.
#[derive(Debug, Clone)]
enum Step {
    Call(&'static str),
    CheckSync,
    Answer(Answer),
    SupervisorRestart {
        pause_ms: u64,
    },
    /// Rewrite the configuration for this server, then SIGHUP.
    Server(Server),
    Post {
        site: SiteFile,
        phone: PhoneFile,
    },
    SilentClients {
        n: usize,
        hold_ms: u64,
    },
    SlowClient {
        byte_ms: u64,
    },
    /// `test-set-time` to the site license's end plus this (negative: before it).
    Clock(i64),
    Sighup,
    Sleep(u64),
    /// The supervisor stops reading for a while (with a junk flood first: the agent's
    /// answers pile up in its socket and its own buffer).
    Deaf {
        ms: u64,
        flood: bool,
    },
    /// Clients that drip their requests a byte at a time, reconnecting when dropped.
    Drippers {
        n: usize,
        ms: u64,
    },
    /// SIGHUPs in a burst (during whatever fetch runs: a stall's, often).
    SighupStorm(u32),
    /// The issue's case: idle past the grace, the server becomes one that stalls, a
    /// fetch starts (CHECK-SYNC, or the clock past the license's end), and a call
    /// begins `after_ms` into it.
    CallDuringStalledFetch {
        clock: Option<i64>,
        after_ms: u64,
    },
}

/// The schedule of a seed, the idle grace its phone is configured with, and its
/// descriptor limit (if any).
fn schedule(seed: u64) -> (Duration, Option<u64>, Vec<Step>) {
    let mut rng = Rng(seed);
    let grace = Duration::from_secs(rng.range(1, 2));
    let len = rng.range(8, 14);
    let mut steps = Vec::new();
    for _ in 0..len {
        let step = match rng.pick(&[12, 14, 5, 6, 3, 6, 5, 3, 3, 8, 4, 3, 14, 4, 4, 3, 3]) {
            0 => Step::Call("active"),
            1 => Step::Call("idle"),
            2 => Step::CheckSync,
            3 => Step::Answer(match rng.pick(&[3, 6, 2]) {
                0 => Answer::Ok,
                1 => Answer::Busy,
                _ => Answer::Silent,
            }),
            4 => Step::SupervisorRestart {
                pause_ms: rng.range(0, 800),
            },
            5 => Step::Server(match rng.pick(&[4, 3, 2, 1]) {
                0 => Server::Folder,
                1 => Server::Stall,
                2 => Server::Failing,
                _ => Server::Refused,
            }),
            6 => Step::Post {
                site: match rng.pick(&[2, 2, 1]) {
                    0 => SiteFile::Ending,
                    1 => SiteFile::Renewed,
                    _ => SiteFile::Absent,
                },
                phone: match rng.pick(&[2, 2, 1]) {
                    0 => PhoneFile::Lync,
                    1 => PhoneFile::LyncH323,
                    _ => PhoneFile::Absent,
                },
            },
            7 => Step::SilentClients {
                n: rng.range(1, 30) as usize,
                hold_ms: rng.range(200, 3000),
            },
            8 => Step::SlowClient {
                byte_ms: rng.range(20, 150),
            },
            9 => Step::Clock(rng.range(1, 3600) as i64),
            10 => Step::Clock(-(rng.range(1, 3600) as i64)),
            11 => Step::Sighup,
            12 => Step::Sleep(rng.range(100, 1500)),
            13 => Step::CallDuringStalledFetch {
                clock: (rng.range(0, 1) == 1).then(|| rng.range(1, 3600) as i64),
                after_ms: rng.range(50, 800),
            },
            14 => Step::Deaf {
                ms: rng.range(200, 2500),
                flood: rng.range(0, 1) == 1,
            },
            15 => Step::Drippers {
                n: rng.range(10, 120) as usize,
                ms: rng.range(300, 2000),
            },
            _ => Step::SighupStorm(rng.range(5, 60) as u32),
        };
        steps.push(step);
    }
    // A quarter of the phones run with few descriptors (the limit above what they need
    // at rest, so that clients and fetches exhaust them).
    let nofile = (rng.range(0, 3) == 0).then(|| rng.range(40, 64));
    (grace, nofile, steps)
}

/// The licenses every seed's phone uses (one vendor key, signed once).
struct Licenses {
    dir: tempfile::TempDir,
    /// The site license's end (vqmon).
    end: i64,
    site_ending: Vec<u8>,
    site_renewed: Vec<u8>,
    phone_lync: Vec<u8>,
    phone_lync_h323: Vec<u8>,
}

impl Licenses {
    fn new() -> Licenses {
        let phone = Phone::new("");
        let end = now() + 100 * DAY;
        let start = end - 200 * DAY;
        Licenses {
            end,
            site_ending: phone.sign("site", &[("vqmon", start, Some(end))]),
            site_renewed: phone.sign("site", &[("vqmon", start, Some(end + 365 * DAY))]),
            phone_lync: phone.sign("phone", &[("lync", start, None)]),
            phone_lync_h323: phone.sign("phone", &[("lync", start, None), ("h323", start, None)]),
            dir: phone.dir,
        }
    }
}

/// A folder write the daemon never sees half done.
fn put(dir: &Path, name: &str, bytes: Option<&[u8]>) {
    let path = dir.join(name);
    match bytes {
        Some(bytes) => {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// What one seeded run saw.
struct Outcome {
    seed: u64,
    violations: Vec<String>,
    reboots: usize,
    busy: usize,
    oks: usize,
    /// The slowest status answer, and after which step.
    slowest_status: (Duration, String),
    /// With a descriptor limit: the daemon's CPU time and the run's length.
    limited_cpu: Option<(Duration, Duration)>,
    log: String,
}

/// A REBOOT older than this is judged on everything sent this long before it: a
/// daemon that answers `status` within 1 s reads its supervisor within 1 s too.
const STALE: Duration = Duration::from_secs(1);

/// The call state the daemon knows after reading a prefix of what was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    Unknown,
    Active,
    /// Idle since this line was sent.
    Idle(Instant),
}

/// A `test-set-time` request: sent, and answered (`None`: no answer, so it may have
/// taken effect any time after).
type ClockStep = (Instant, Option<Instant>);

/// A supervisor's answer to a REBOOT, and when it was sent.
type Answered = (&'static str, Instant);

/// Whether a clock step may have taken effect between `from` and `to`.
fn stepped(steps: &[ClockStep], from: Instant, to: Instant) -> bool {
    steps
        .iter()
        .any(|(sent, answered)| *sent < to && answered.is_none_or(|a| a > from))
}

/// Checks the REBOOT rules against the record of one run. A REBOOT may have been
/// decided on any prefix of the lines sent before it arrived, but on no less than
/// what the daemon had acknowledged (its ERR to a later SYNC) nor than what had been
/// waiting for it for [`STALE`]; it is right if some such prefix leaves the phone idle
/// for the whole grace. The grace is real time, except across a step of the test
/// clock: setting the test clock forward is time passing, by design of the test aid
/// (`daemon/mod.rs`: that is how `tests/it/reboots.rs` crosses a 30 s grace), so a grace
/// or an OK's 10 min spanning a step is not judged here (the real-time grace is, in
/// every other interleaving, and to the millisecond in the `idle_grace = "3s"` test).
/// Returns the violations and the REBOOTs seen.
fn check_reboots(
    events: &[Event],
    grace: Duration,
    steps: &[ClockStep],
    origin: Instant,
) -> (Vec<String>, usize) {
    #[derive(Default)]
    struct Conn {
        sent: Vec<Sent>,
        errs: u64,
        /// cause → the id of its last REBOOT, and its answer (`OK`, `BUSY`) with
        /// when it was sent.
        causes: std::collections::HashMap<String, (String, Option<Answered>)>,
        ids: std::collections::HashSet<String>,
    }
    let ms = |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let mut conns: std::collections::HashMap<u64, Conn> = Default::default();
    let mut violations = Vec::new();
    let mut reboots = 0;
    // The supervisor's last deaf period: (stopped reading, read again).
    let mut deaf: (Option<Instant>, Option<Instant>) = (None, None);
    for event in events {
        match event {
            Event::Deaf { deaf: true, at } => deaf = (Some(*at), None),
            Event::Deaf { deaf: false, at } => deaf.1 = Some(*at),
            Event::Connected { conn, .. } => {
                conns.insert(*conn, Conn::default());
            }
            Event::Sent(s) => {
                let c = conns.entry(s.conn).or_default();
                let mut words = s.line.split(' ');
                if let (Some(answer @ ("OK" | "BUSY")), Some(id)) = (words.next(), words.next()) {
                    let answer: &'static str = if answer == "OK" { "OK" } else { "BUSY" };
                    for (asked, said) in c.causes.values_mut() {
                        if asked == id {
                            *said = Some((answer, s.at));
                        }
                    }
                }
                c.sent.push(s.clone());
            }
            Event::Recv { conn, at, line } => {
                let c = conns.entry(*conn).or_default();
                if line.starts_with("ERR") {
                    // Only the answers to SYNC number them (a flood's are others).
                    if line.contains(&format!("\"{}\"", common::supervisor::SYNC)) {
                        c.errs += 1;
                    }
                    continue;
                }
                let mut words = line.split(' ');
                let (Some("REBOOT"), Some(id), Some(cause)) =
                    (words.next(), words.next(), words.next())
                else {
                    continue;
                };
                reboots += 1;
                let r = *at;
                let at_ms = ms(r);
                if !c.ids.insert(id.to_string()) {
                    violations.push(format!("{at_ms:.1} ms: {line}: id {id} used twice"));
                }
                if let Some((asked, said)) = c.causes.get(cause) {
                    let again = match said {
                        None => Some("unanswered".to_string()),
                        Some(("BUSY", _)) => None,
                        // Asking again 10 min after OK is the rule: only a clock step
                        // makes that within a run.
                        Some((_, ok)) => {
                            (!stepped(steps, *ok, r)).then(|| "answered OK".to_string())
                        }
                    };
                    if let Some(state) = again {
                        violations.push(format!(
                            "{at_ms:.1} ms: {line}: {cause} asked again while REBOOT {asked} was {state}"
                        ));
                    }
                }
                c.causes.insert(cause.to_string(), (id.to_string(), None));
                // The call state after each prefix of the lines sent.
                let mut known = vec![Known::Unknown];
                for s in &c.sent {
                    let last = *known.last().unwrap();
                    let next = match s.line.as_str() {
                        "CALL-STATE idle" => match last {
                            Known::Idle(_) => last,
                            _ => Known::Idle(s.at),
                        },
                        "CALL-STATE active" => Known::Active,
                        l if l.starts_with("BUSY ") => Known::Active,
                        _ => last,
                    };
                    known.push(next);
                }
                let acked = c.sent.iter().filter(|s| s.sync <= c.errs).count();
                // Read while deaf, or within STALE of reading again: it may have been
                // written any time since the supervisor stopped reading.
                let written_by = match deaf {
                    (Some(stopped), None) => stopped.min(r),
                    (Some(stopped), Some(again)) if r < again + STALE => stopped.min(r),
                    _ => r,
                };
                let waited = c.sent.iter().filter(|s| s.at + STALE <= written_by).count();
                let lower = acked.max(waited);
                let fine = known[lower..]
                    .iter()
                    .any(|k| matches!(k, Known::Idle(since)
                        if r.saturating_duration_since(*since) >= grace || stepped(steps, *since, r)));
                if !fine {
                    let why = match known[lower..].iter().rev().find_map(|k| match k {
                        Known::Idle(since) => Some(*since),
                        _ => None,
                    }) {
                        Some(since) => format!(
                            "only {:.1} ms after CALL-STATE idle (grace {} s)",
                            r.saturating_duration_since(since).as_secs_f64() * 1000.0,
                            grace.as_secs()
                        ),
                        None => match known[lower] {
                            Known::Unknown => "before any CALL-STATE on this connection".into(),
                            _ => {
                                let last = c.sent[..lower]
                                    .iter()
                                    .rev()
                                    .find(|s| {
                                        s.line == "CALL-STATE active" || s.line.starts_with("BUSY ")
                                    })
                                    .expect("a line made the phone busy");
                                format!(
                                    "while the phone was in a call: {} was sent at {:.1} ms, {}",
                                    last.line,
                                    ms(last.at),
                                    if acked >= lower {
                                        "and the daemon had acknowledged it"
                                    } else {
                                        "more than 1 s before: decided on stale facts"
                                    }
                                )
                            }
                        },
                    };
                    violations.push(format!("{at_ms:.1} ms: {line} {why}"));
                }
            }
            Event::Closed { .. } => {}
        }
    }
    (violations, reboots)
}

/// `test-set-time` (answered at once by a correct daemon; waited for within reason),
/// noted in the run's log and its clock steps.
fn set_clock(
    control_path: &Path,
    t: i64,
    log: &Mutex<Vec<(Instant, String)>>,
    steps: &Mutex<Vec<ClockStep>>,
) {
    let sent = Instant::now();
    let r = control::request(
        control_path,
        &format!(r#"{{"cmd":"test-set-time","now":{t}}}"#),
        Duration::from_secs(10),
    );
    let answered = r.is_ok().then(Instant::now);
    steps.lock().unwrap().push((sent, answered));
    let what = match r {
        Ok((v, took)) => format!("ok={} in {}", v["ok"], secs(took)),
        Err(e) => e,
    };
    log.lock()
        .unwrap()
        .push((Instant::now(), format!("test-set-time: {what}")));
}

/// Runs one seed's schedule against a daemon of its own.
fn run_seed(seed: u64, licenses: &Licenses) -> Outcome {
    let (grace, nofile, steps) = schedule(seed);
    let end = licenses.end;
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("www");
    std::fs::create_dir_all(&folder).unwrap();
    put(&folder, SITE_FILE, Some(&licenses.site_ending));
    put(&folder, PHONE_FILE, Some(&licenses.phone_lync));
    std::fs::copy(
        licenses.dir.path().join("keyring"),
        work.path().join("keyring"),
    )
    .unwrap();
    // Only the servers the schedule names (each costs a polling thread).
    let uses = |f: fn(&Step) -> bool| steps.iter().any(f);
    let stall = uses(|s| {
        matches!(
            s,
            Step::Server(Server::Stall) | Step::CallDuringStalledFetch { .. }
        )
    })
    .then(|| FaultServer::start(Fault::Stall));
    let failing = uses(|s| matches!(s, Step::Server(Server::Failing)))
        .then(|| FaultServer::start(Fault::Status(500)));
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let socket = work.path().join("supervisor.sock");
    let phone = Phone {
        key: licenses.dir.path().join("vendor.key"),
        config: work.path().join("agent.toml"),
        dir: work,
    };
    let configure = |server: Server| {
        let url = match server {
            Server::Folder => format!("file://{}/", folder.display()),
            Server::Stall => stall.as_ref().map_or_else(String::new, FaultServer::url),
            Server::Failing => failing.as_ref().map_or_else(String::new, FaultServer::url),
            Server::Refused => refused.clone(),
        };
        phone.configure(&format!(
            "server = \"{url}\"\nsupervisor_socket = \"{}\"\n\
             [fetch]\nconnect_timeout = \"1s\"\ntotal_timeout = \"2s\"\n\
             [timing]\nidle_grace = \"{}s\"\nstagger_window = \"2s\"\n\
             retry_initial = \"2s\"\nretry_max = \"4s\"\n",
            socket.display(),
            grace.as_secs()
        ));
    };
    configure(Server::Folder);

    let origin = Instant::now();
    let steps_log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let clock_steps: Arc<Mutex<Vec<ClockStep>>> = Arc::default();
    let note = |what: String| steps_log.lock().unwrap().push((Instant::now(), what));
    let mut violations = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    let mut limited_cpu = None;
    let sup = TestSupervisor::start(&socket, "idle");
    let mut daemon = Proc::spawn_with(&phone, Some(end - 30), |cmd| {
        if let Some(limit) = nofile {
            limit_descriptors(cmd, limit);
        }
    });
    if let Some(limit) = nofile {
        note(format!("descriptor limit {limit}"));
    }
    let control_path = phone.path("control.sock");
    let started = daemon.wait_status(|_| true).is_some() && sup.wait_connected(PATIENCE);
    if !started {
        violations.push("the daemon did not start (control socket and HELLO)".into());
    }
    let mut helpers = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if !started {
            break;
        }
        note(format!("step {i}: {step:?}"));
        match step {
            Step::Call(word) => {
                sup.call(word);
            }
            Step::CheckSync => {
                sup.send("CHECK-SYNC");
            }
            Step::Answer(a) => sup.set_answer(*a),
            Step::SupervisorRestart { pause_ms } => {
                sup.restart(Duration::from_millis(*pause_ms));
            }
            Step::Server(server) => {
                configure(*server);
                daemon.signal(nix::sys::signal::Signal::SIGHUP);
            }
            Step::Post { site, phone: file } => {
                let site = match site {
                    SiteFile::Ending => Some(&licenses.site_ending),
                    SiteFile::Renewed => Some(&licenses.site_renewed),
                    SiteFile::Absent => None,
                };
                let file = match file {
                    PhoneFile::Lync => Some(&licenses.phone_lync),
                    PhoneFile::LyncH323 => Some(&licenses.phone_lync_h323),
                    PhoneFile::Absent => None,
                };
                put(&folder, SITE_FILE, site.map(Vec::as_slice));
                put(&folder, PHONE_FILE, file.map(Vec::as_slice));
            }
            Step::SilentClients { n, hold_ms } => {
                let (path, n, hold) = (control_path.clone(), *n, Duration::from_millis(*hold_ms));
                helpers.push(std::thread::spawn(move || {
                    let clients =
                        control::silent_clients(&path, n, Instant::now() + Duration::from_secs(1));
                    std::thread::sleep(hold);
                    drop(clients);
                }));
            }
            Step::SlowClient { byte_ms } => {
                let (path, pause) = (control_path.clone(), Duration::from_millis(*byte_ms));
                helpers.push(std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let deadline = Instant::now() + Duration::from_secs(1);
                    let Ok(mut s) = control::connect_by(&path, deadline) else {
                        return;
                    };
                    for b in b"{\"cmd\":\"status\"}\n" {
                        if s.write_all(&[*b]).is_err() {
                            return;
                        }
                        std::thread::sleep(pause);
                    }
                    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                    let _ = s.read_to_end(&mut Vec::new());
                }));
            }
            Step::Clock(offset) => {
                set_clock(&control_path, end + offset, &steps_log, &clock_steps);
            }
            Step::Sighup => daemon.signal(nix::sys::signal::Signal::SIGHUP),
            Step::Deaf { ms, flood } => {
                helpers.push(sup.deaf_for(Duration::from_millis(*ms), *flood));
            }
            Step::Drippers { n, ms } => {
                let (path, n, hold) = (control_path.clone(), *n, Duration::from_millis(*ms));
                helpers.push(std::thread::spawn(move || {
                    use std::io::Write;
                    let until = Instant::now() + hold;
                    let mut conns: Vec<Option<std::os::unix::net::UnixStream>> =
                        (0..n).map(|_| None).collect();
                    while Instant::now() < until {
                        for conn in &mut conns {
                            if conn.is_none() {
                                *conn = control::connect_by(&path, Instant::now()).ok();
                                if let Some(s) = conn {
                                    let _ = s.set_nonblocking(true);
                                }
                            }
                            if conn.as_mut().is_some_and(|s| s.write(b" ").is_err()) {
                                *conn = None;
                            }
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }));
            }
            Step::SighupStorm(n) => {
                for _ in 0..*n {
                    daemon.signal(nix::sys::signal::Signal::SIGHUP);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Step::Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::CallDuringStalledFetch { clock, after_ms } => {
                sup.call("idle");
                std::thread::sleep(grace + Duration::from_millis(100));
                configure(Server::Stall);
                daemon.signal(nix::sys::signal::Signal::SIGHUP);
                std::thread::sleep(Duration::from_millis(100));
                match clock {
                    // Not waited for: today's daemon answers only once the fetch gave up.
                    Some(offset) => {
                        let (path, log, steps) = (
                            control_path.clone(),
                            Arc::clone(&steps_log),
                            Arc::clone(&clock_steps),
                        );
                        let t = end + offset;
                        helpers.push(std::thread::spawn(move || {
                            set_clock(&path, t, &log, &steps);
                        }));
                    }
                    None => {
                        sup.send("CHECK-SYNC");
                    }
                }
                std::thread::sleep(Duration::from_millis(*after_ms));
                sup.call("active");
            }
        }
        // Throughout: the daemon answers status within 1 s. The first miss ends the
        // schedule (the rest would only wait on a stalled daemon).
        match control::status(&control_path, Duration::from_secs(3)) {
            Ok((_, took)) => {
                if took > slowest.0 {
                    slowest = (took, format!("{step:?}"));
                }
                if took >= SECOND {
                    violations.push(format!("step {i}: status took {}", secs(took)));
                    break;
                }
            }
            Err(e) => {
                violations.push(format!("step {i}: status: {e}"));
                break;
            }
        }
        if !daemon.alive() {
            violations.push(format!("step {i}: the daemon ended"));
            break;
        }
    }
    // The end: the phone idles past the grace (a pending REBOOT may come), then SIGTERM.
    if started && daemon.alive() {
        // Whatever the daemon sends on what it was told so far is recorded first.
        sup.barrier(Duration::from_secs(5));
        note("end: CALL-STATE idle, then the grace".into());
        sup.call("idle");
        std::thread::sleep(grace + Duration::from_millis(700));
        sup.barrier(Duration::from_secs(3));
        if nofile.is_some() {
            limited_cpu = Some((cpu_time(daemon.pid()), daemon.spawned.elapsed()));
        }
        let (took, code) = daemon.terminate(Duration::from_secs(5));
        note(format!("SIGTERM: gone after {took:?}, exit {code:?}"));
        match took {
            Some(t) if t < SECOND => {}
            Some(t) => violations.push(format!("SIGTERM took {}", secs(t))),
            None => violations.push("still running 5 s after SIGTERM".into()),
        }
    }
    for h in helpers {
        let _ = h.join();
    }
    let events = sup.events();
    drop(sup);
    let clock_steps = clock_steps.lock().unwrap().clone();
    let (reboot_violations, reboots) = check_reboots(&events, grace, &clock_steps, origin);
    violations.extend(reboot_violations);
    let busy = events
        .iter()
        .filter(|e| matches!(e, Event::Sent(s) if s.line.starts_with("BUSY")))
        .count();
    let oks = events
        .iter()
        .filter(|e| matches!(e, Event::Sent(s) if s.line.starts_with("OK")))
        .count();
    let log = if violations.is_empty() {
        String::new()
    } else {
        let mut lines: Vec<(Instant, String)> = steps_log.lock().unwrap().clone();
        lines.extend(
            events
                .iter()
                .filter(|e| !matches!(e, Event::Recv { line, .. } if line.starts_with("ERR")))
                .map(|e| (e.at(), e.describe(origin))),
        );
        lines.sort_by_key(|(at, _)| *at);
        let ms = |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        let text: Vec<String> = lines
            .into_iter()
            .map(|(at, l)| {
                if l.starts_with("step")
                    || l.starts_with("end")
                    || l.starts_with("SIGTERM")
                    || l.starts_with("test-set-time")
                {
                    format!("{:9.1} ms  == {l}", ms(at))
                } else {
                    l
                }
            })
            .collect();
        format!(
            "grace {} s\n{}\n--- daemon log (tail) ---\n{}",
            grace.as_secs(),
            text.join("\n"),
            daemon.log_tail(40)
        )
    };
    Outcome {
        seed,
        violations,
        reboots,
        busy,
        oks,
        slowest_status: slowest,
        limited_cpu,
        log,
    }
}

/// Runs the command with at most `limit` descriptors open (`RLIMIT_NOFILE`).
pub(crate) fn limit_descriptors(cmd: &mut std::process::Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = nix::libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            match nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
}

/// A process's CPU time so far (user and system, from `/proc`; zero if unreadable).
pub(crate) fn cpu_time(pid: nix::unistd::Pid) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: utime is the 12th, stime the
    // 13th of them, in clock ticks of 1/100 s (USER_HZ on Linux).
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((tick(11) + tick(12)) * 10)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn seeded_interleavings_never_reboot_mid_call_nor_stall_the_daemon() {
    let _heavy = common::heavy();
    let seeds: Vec<u64> = match env_u64("LIVENESS_SEED") {
        Some(one) => vec![one],
        None => {
            let base = env_u64("LIVENESS_SEED_BASE").unwrap_or(1);
            let n = env_u64("LIVENESS_SEEDS").unwrap_or(DEFAULT_SEEDS);
            (base..base + n).collect()
        }
    };
    let emulated = !std::env::var("LICENSE_AGENT_RUNNER")
        .unwrap_or_default()
        .trim()
        .is_empty();
    let default_jobs = if emulated {
        EMULATED_JOBS
    } else {
        DEFAULT_JOBS
    };
    let jobs = env_u64("LIVENESS_JOBS").unwrap_or(default_jobs).max(1) as usize;
    // Fail fast: no new seed starts once this many failed (0: run them all).
    let max_failures = env_u64("LIVENESS_MAX_FAILURES").unwrap_or(5) as usize;
    let failures = AtomicUsize::new(0);
    let licenses = Licenses::new();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Outcome>> = Mutex::default();
    let reboots = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(seeds.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&seed) = seeds.get(i) else {
                    return;
                };
                if max_failures > 0 && failures.load(Ordering::SeqCst) >= max_failures {
                    return;
                }
                let outcome = run_seed(seed, &licenses);
                if !outcome.violations.is_empty() {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                reboots.fetch_add(outcome.reboots as u64, Ordering::SeqCst);
                results.lock().unwrap().push(outcome);
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|o| o.seed);
    let failed: Vec<&Outcome> = results
        .iter()
        .filter(|o| !o.violations.is_empty())
        .collect();
    let busy: usize = results.iter().map(|o| o.busy).sum();
    let oks: usize = results.iter().map(|o| o.oks).sum();
    let slowest = results
        .iter()
        .map(|o| o.slowest_status.clone())
        .max()
        .unwrap_or_default();
    // The phones run with few descriptors: their daemons' CPU, as a share of a core.
    let limited: Vec<(Duration, Duration)> = results.iter().filter_map(|o| o.limited_cpu).collect();
    let share = |(cpu, wall): &(Duration, Duration)| {
        cpu.as_secs_f64() / wall.as_secs_f64().max(0.001) * 100.0
    };
    let most_cpu = limited.iter().map(share).fold(0.0, f64::max);
    // One line of figures (scripts/soak-liveness.sh reads it).
    println!(
        "liveness: seeds {} (from {}), jobs {jobs}, failures {}, REBOOTs {}, BUSY {busy}, OK {oks}, \
         slowest status {} (after {}), descriptor-limited phones {} (daemon CPU at most {most_cpu:.1} % of a core), wall {:.1} s",
        results.len(),
        seeds.first().copied().unwrap_or_default(),
        failed.len(),
        reboots.load(Ordering::SeqCst),
        secs(slowest.0),
        slowest.1,
        limited.len(),
        started.elapsed().as_secs_f64()
    );
    for o in failed.iter().take(3) {
        eprintln!(
            "=== seed {} (replay: LIVENESS_SEED={} cargo test --test it -- liveness::seeded) ===\n\
             violations:\n  {}\n{}\n",
            o.seed,
            o.seed,
            o.violations.join("\n  "),
            o.log
        );
    }
    let failing: Vec<String> = failed
        .iter()
        .map(|o| format!("seed {}: {}", o.seed, o.violations.join("; ")))
        .collect();
    assert!(
        failing.is_empty(),
        "{} failing seeds:\n{}",
        failing.len(),
        failing.join("\n")
    );
    // Not vacuous: across many seeds, the schedules do make the daemon ask.
    if results.len() >= 20 {
        assert!(reboots.load(Ordering::SeqCst) > 0, "no REBOOT in any seed");
    }
}

/// Seeds per `cargo test` run, and how many run at once: each is mostly waiting, but
/// under qemu-arm each daemon costs real CPU, and 16 at once on 2 cores pushed a status
/// answer to 1.2 s (8: 0.43 s at worst). Measured on 2 cores: 200 seeds in about 60 s
/// on the host, 115 s under qemu-arm.
const DEFAULT_SEEDS: u64 = 200;
const DEFAULT_JOBS: u64 = 16;
const EMULATED_JOBS: u64 = 8;
