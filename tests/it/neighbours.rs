//! The daemon against neighbours that misbehave in ways the liveness tests (issue 11)
//! did not model (issue 23): a supervisor that stops reading, a control socket path held
//! by a listener that never accepts, descriptors running out, clients that drip their
//! requests, check-syncs that wait on a silent server, a supervisor flipping its call
//! state. The real `license-agent` binary (or the armv7 one under qemu-arm), the
//! in-process test supervisor and control clients of `common`, the test clock.

use crate::common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::now;
use common::phone::DAY;
use common::supervisor::TestSupervisor;

use crate::liveness::{
    cpu_time, limit_descriptors, phone_with_supervisor, secs, Proc, PATIENCE, SECOND,
};

/// A REBOOT the agent cannot write at once is never one that reaches the supervisor
/// after a `CALL-STATE active` the agent read meanwhile: with the supervisor not
/// reading (its socket full of the agent's ERR answers to its junk), a license ends
/// after the grace; the supervisor then says `CALL-STATE active`, the agent shows the
/// call, and only then does the supervisor read again: no REBOOT comes until the call
/// has ended and the grace passed.
#[test]
fn a_reboot_is_never_queued_behind_lines_the_supervisor_has_not_read() {
    let (phone, socket) = phone_with_supervisor("[timing]\nidle_grace = \"2s\"\n");
    let end = now() + 100 * DAY;
    let license = phone.sign("phone", &[("vqmon", end - 200 * DAY, Some(end))]);
    phone.install_at(&license, end - 100);
    let sup = TestSupervisor::start(&socket, "idle");
    let mut daemon = Proc::spawn(&phone, Some(end - 60));
    assert!(sup.wait_connected(PATIENCE), "{}", daemon.log_tail(30));
    assert!(sup.wait_line("FEATURES vqmon", 1, PATIENCE).is_some());
    daemon.wait_control();

    // The supervisor stops reading and sends junk until the agent's answers fill the
    // socket and its own buffer (it says it drops ERR answers then).
    sup.stop_reading(true);
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(phone.path("daemon.log"))
        .unwrap_or_default()
        .contains("does not read its ERR answers")
    {
        assert!(Instant::now() < deadline, "{}", daemon.log_tail(30));
        assert!(sup.flood("junk", 2_000), "the supervisor's flood");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The license ends, long after the idle period began: a reboot is due at once.
    let set = common::control::request(
        &phone.path("control.sock"),
        &format!(r#"{{"cmd":"test-set-time","now":{}}}"#, end + 1),
        PATIENCE,
    );
    assert!(set.is_ok_and(|(v, _)| v["ok"] == true), "test-set-time");
    daemon
        .wait_status(|s| s["daemon"]["reboot"]["pending"] == true)
        .expect("a reboot is needed");
    // A call begins; the agent reads it (it still reads) and shows it.
    std::thread::sleep(Duration::from_millis(500));
    let active = sup.call("active").expect("connected");
    daemon
        .wait_status(|s| {
            s["daemon"]["call_state"]
                .as_str()
                .is_some_and(|c| c.starts_with("active"))
        })
        .unwrap_or_else(|| panic!("the call is seen:\n{}", daemon.log_tail(30)));

    // The supervisor reads again: everything the agent wrote arrives; no REBOOT.
    sup.stop_reading(false);
    assert!(sup.barrier(PATIENCE), "{}", daemon.log_tail(30));
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(sup.barrier(PATIENCE));
    if let Some((at, line)) = sup.wait_line("REBOOT", 1, Duration::ZERO) {
        panic!(
            "{line} arrived {} after CALL-STATE active, mid-call\n{}",
            secs(at.saturating_duration_since(active.at)),
            daemon.log_tail(30)
        );
    }

    // The call ends: the REBOOT comes after the whole grace.
    let idle = sup.call("idle").expect("connected");
    let (at, line) = sup
        .wait_line("REBOOT", 1, PATIENCE)
        .unwrap_or_else(|| panic!("no REBOOT after the call:\n{}", daemon.log_tail(30)));
    assert!(line.ends_with(" license-expired"), "{line}");
    assert!(
        at.saturating_duration_since(idle.at) >= Duration::from_secs(2),
        "{line} came {} after CALL-STATE idle",
        secs(at.saturating_duration_since(idle.at))
    );
}

/// A listener at `path` that never accepts, its backlog full: a blocking `connect` to
/// it waits for ever. The connections that fill it are returned with it.
fn busy_listener(path: &std::path::Path) -> (std::os::unix::net::UnixListener, Vec<UnixStream>) {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let mut held = Vec::new();
    while let Ok(s) = common::control::connect_by(path, Instant::now()) {
        held.push(s);
        assert!(held.len() < 10_000, "the backlog never fills");
    }
    (listener, held)
}

/// Whether the daemon stops within 1 s of SIGTERM (plus the runner's start-up time,
/// which a stop does not have: 1 s is the bound).
fn stops_within_a_second(daemon: &mut Proc) {
    let (took, code) = daemon.terminate(Duration::from_secs(5));
    let took = took.unwrap_or_else(|| panic!("SIGTERM ignored:\n{}", daemon.log_tail(30)));
    assert!(took < SECOND, "stopped {} after SIGTERM", secs(took));
    assert_eq!(code, Some(0), "{}", daemon.log_tail(30));
}

/// `control_socket` naming a listener that never accepts: the daemon starts, publishes
/// its set and stops at SIGTERM all the same (a blocking probe held it for ever), and
/// the listener's socket is left alone.
#[test]
fn a_control_socket_path_held_by_a_listener_that_never_accepts_neither_stops_nor_holds_the_start() {
    let phone = common::phone::Phone::new("");
    let busy_path = phone.path("busy.sock");
    let (_busy, _held) = busy_listener(&busy_path);
    phone.configure(&format!("control_socket = \"{}\"\n", busy_path.display()));
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let mut daemon = Proc::spawn(&phone, None);
    let deadline = Instant::now() + PATIENCE;
    while phone.published() != ["vqmon"] {
        assert!(daemon.alive(), "the daemon ended:\n{}", daemon.log_tail(30));
        assert!(
            Instant::now() < deadline,
            "the features file was never published:\n{}",
            daemon.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(busy_path.exists(), "another's socket was removed");
    stops_within_a_second(&mut daemon);
    assert!(
        busy_path.exists(),
        "another's socket was removed at the end"
    );
}

/// A SIGHUP that moves the control socket onto such a listener: the loop is never
/// held; the old socket keeps answering.
#[test]
fn a_reload_onto_a_listener_that_never_accepts_never_holds_the_loop() {
    let phone = common::phone::Phone::new("");
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let mut daemon = Proc::spawn(&phone, None);
    daemon.wait_control();
    let busy_path = phone.path("busy.sock");
    let (_busy, _held) = busy_listener(&busy_path);
    phone.configure(&format!("control_socket = \"{}\"\n", busy_path.display()));
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let answered = common::control::status(&phone.path("control.sock"), SECOND);
        assert!(
            answered.is_ok(),
            "status after the reload: {answered:?}\n{}",
            daemon.log_tail(30)
        );
    }
    stops_within_a_second(&mut daemon);
}

/// How many descriptors process `pid` has open.
fn open_descriptors(pid: nix::unistd::Pid) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Descriptors running out never spin the loop: the daemon starts with a low
/// descriptor limit and silent clients take the rest; `accept` fails with EMFILE. The
/// loop does not spin (its CPU over 2 s is printed as a figure), says it once, and
/// `status` is still answered (a silent client makes way for it).
#[test]
fn descriptors_running_out_never_spin_the_loop() {
    let phone = common::phone::Phone::new("");
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    // Whatever the runner itself needs (qemu-arm opens a few), plus 12 for clients.
    let mut probe = Proc::spawn(&phone, None);
    probe.wait_control();
    let base = open_descriptors(probe.pid());
    drop(probe);
    let limit = (base + 12) as u64;
    let mut daemon = Proc::spawn_with(&phone, None, move |cmd| limit_descriptors(cmd, limit));
    daemon.wait_control();
    let socket = phone.path("control.sock");
    let silent = common::control::silent_clients(&socket, 40, Instant::now() + SECOND);
    std::thread::sleep(Duration::from_millis(300));
    let fds = open_descriptors(daemon.pid());
    let cpu_before = cpu_time(daemon.pid());
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_time(daemon.pid()).saturating_sub(cpu_before);
    println!(
        "FIGURE descriptors exhausted ({fds} open, limit {limit}): {} of CPU in 2 s",
        secs(cpu)
    );
    let log = std::fs::read_to_string(phone.path("daemon.log")).unwrap_or_default();
    let said = log
        .lines()
        .filter(|l| l.contains("Too many open files"))
        .count();
    assert!(
        (1..=2).contains(&said),
        "EMFILE said {said} times in 2 s\n{}",
        daemon.log_tail(10)
    );
    assert!(
        cpu < SECOND,
        "the loop spun: {} of CPU in 2 s\n{}",
        secs(cpu),
        daemon.log_tail(20)
    );
    // A status request still gets its answer within a second.
    let answered = common::control::status(&socket, SECOND);
    assert!(
        answered.is_ok(),
        "status while descriptors ran out: {answered:?}\n{}",
        daemon.log_tail(10)
    );
    drop(silent);
    stops_within_a_second(&mut daemon);
}

/// Clients that connect and drip their requests a byte at a time, reconnecting when
/// dropped, from one thread: `n` of them, until `stop`.
fn drippers(
    socket: std::path::PathBuf,
    n: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut conns: Vec<Option<UnixStream>> = (0..n).map(|_| None).collect();
        let mut connects = 0u64;
        let until = Instant::now() + Duration::from_secs(60);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
            for conn in &mut conns {
                if conn.is_none() {
                    *conn = common::control::connect_by(&socket, Instant::now())
                        .ok()
                        .inspect(|s| {
                            let _ = s.set_nonblocking(true);
                        });
                    connects += 1;
                }
                if let Some(s) = conn {
                    if s.write(b" ").is_err() {
                        *conn = None;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        connects
    })
}

/// Clients that drip their requests hold no slot for long: with 300 of them (a byte
/// every 200 ms each, reconnecting as soon as dropped), `status` is answered within
/// 1 s each time it is asked.
#[test]
fn dripping_clients_never_keep_status_out() {
    let phone = common::phone::Phone::new("");
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let mut daemon = Proc::spawn(&phone, None);
    daemon.wait_control();
    let socket = phone.path("control.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dripping = drippers(socket.clone(), 300, stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let answered = common::control::status(&socket, Duration::from_secs(10));
        let (_, took) = answered.unwrap_or_else(|e| {
            panic!(
                "status among dripping clients: {e}\n{}",
                daemon.log_tail(10)
            )
        });
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let connects = dripping.join().unwrap();
    println!(
        "FIGURE status among 300 dripping clients ({connects} connections): slowest {}",
        secs(slowest)
    );
    assert!(slowest < SECOND, "status took {}", secs(slowest));
    stops_within_a_second(&mut daemon);
}

/// Check-syncs waiting on a silent server hold no slot `status` needs, and have a
/// deadline of their own: 40 of them (beyond the 32 that may wait) against a server
/// that stalls; `status` within 1 s throughout; those beyond the budget are told so
/// at once; the rest are answered by the end of the cycle, or told it did not end in
/// time.
#[test]
fn check_sync_waiters_have_a_budget_and_a_deadline_of_their_own() {
    let stall = common::faults::FaultServer::start(common::faults::Fault::Stall);
    let phone = common::phone::Phone::new(&format!(
        "server = \"{}\"\n[fetch]\nconnect_timeout = \"1s\"\ntotal_timeout = \"3s\"\n",
        stall.url()
    ));
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let mut daemon = Proc::spawn(&phone, None);
    daemon.wait_control();
    let socket = phone.path("control.sock");
    let waiters: Vec<_> = (0..40)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                common::control::request(
                    &socket,
                    r#"{"cmd":"check-sync"}"#,
                    Duration::from_secs(30),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (_, took) = common::control::status(&socket, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("status: {e}\n{}", daemon.log_tail(10)));
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        slowest < SECOND,
        "status took {} beside 40 check-syncs",
        secs(slowest)
    );
    let answers: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let refused = answers
        .iter()
        .filter(|a| {
            a.as_ref().is_ok_and(|(v, _)| {
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("already wait"))
            })
        })
        .count();
    assert!(
        refused >= 8,
        "{refused} of 40 told the budget is spent: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.is_ok()),
        "every check-sync is answered: {answers:?}"
    );
    stops_within_a_second(&mut daemon);
}

/// A storm of SIGHUPs while the server stalls abandons at most one fetch cycle at a
/// time: 100 SIGHUPs during a stalled check-sync leave a handful of threads and
/// descriptors (each used to abandon its cycle to the timeouts: 203 threads, 514
/// descriptors); `status` within 1 s, SIGTERM within 1 s.
#[test]
fn a_sighup_storm_during_a_stall_abandons_one_cycle_at_a_time() {
    let stall = common::faults::FaultServer::start(common::faults::Fault::Stall);
    let phone = common::phone::Phone::new(&format!(
        "server = \"{}\"\n[fetch]\nconnect_timeout = \"2s\"\ntotal_timeout = \"8s\"\n",
        stall.url()
    ));
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let mut daemon = Proc::spawn(&phone, None);
    daemon.wait_control();
    let threads = |pid: nix::unistd::Pid| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let base_fds = open_descriptors(daemon.pid());
    let mut most_threads = 0;
    let mut most_fds = 0;
    for _ in 0..100 {
        daemon.signal(nix::sys::signal::Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(10));
        most_threads = most_threads.max(threads(daemon.pid()));
        most_fds = most_fds.max(open_descriptors(daemon.pid()));
    }
    let (_, took) = common::control::status(&phone.path("control.sock"), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("status after the storm: {e}\n{}", daemon.log_tail(10)));
    println!(
        "FIGURE 100 SIGHUPs during a stall: at most {most_threads} threads, {most_fds} descriptors ({base_fds} before); status {}",
        secs(took)
    );
    assert!(took < SECOND, "status took {}", secs(took));
    assert!(most_threads <= 10, "{most_threads} threads");
    assert!(most_fds <= base_fds + 12, "{most_fds} descriptors");
    stops_within_a_second(&mut daemon);
}

/// The log is the phone's, not a neighbour's: a file name sent with an install request
/// cannot forge a log line or send escape sequences; a supervisor flipping its call
/// state as fast as it can writes a bounded number of lines (it wrote 24 MB a second).
#[test]
fn neighbours_neither_forge_nor_flood_the_log() {
    let (phone, socket) = phone_with_supervisor("");
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let sup = TestSupervisor::start(&socket, "idle");
    let mut daemon = Proc::spawn(&phone, None);
    assert!(sup.wait_connected(PATIENCE), "{}", daemon.log_tail(30));
    daemon.wait_control();
    let forged = "a.cfg\n[ERROR license_agent::daemon] forged\u{1b}[2J";
    let request = serde_json::json!({"cmd": "install", "file": forged, "license": "00"});
    let answer =
        common::control::request(&phone.path("control.sock"), &request.to_string(), PATIENCE);
    assert!(answer.is_ok(), "{answer:?}");

    // Two seconds of CALL-STATE flips, as fast as the socket takes them.
    let start = Instant::now();
    let mut flips = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        assert!(sup.flood("CALL-STATE active\nCALL-STATE idle", 1_000));
        flips += 2_000;
    }
    assert!(sup.barrier(PATIENCE), "{}", daemon.log_tail(10));
    let log = std::fs::read_to_string(phone.path("daemon.log")).unwrap();
    let call_lines = log
        .lines()
        .filter(|l| l.contains("supervisor: call "))
        .count();
    println!(
        "FIGURE {flips} call-state flips in 2 s: {call_lines} lines about them, log {} bytes",
        log.len()
    );
    assert!(call_lines <= 100, "{call_lines} lines for {flips} flips");
    assert!(log.len() < 64 * 1024, "the log grew to {} bytes", log.len());
    assert!(
        !log.lines()
            .any(|l| l.starts_with("[ERROR license_agent::daemon] forged")),
        "a forged line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(
        log.contains("a.cfg\\n[ERROR"),
        "the name is shown, escaped:\n{log}"
    );
    stops_within_a_second(&mut daemon);
    // The folded lines are said, with their count, once their window ends.
}

/// On the test clock, after `test-set-time 4294967295` and back, real time still
/// passes: the idle grace ends and the REBOOT comes (it never did again).
#[test]
fn the_test_clock_runs_on_after_the_end_of_time_and_back() {
    let (phone, socket) = phone_with_supervisor("[timing]\nidle_grace = \"2s\"\n");
    let end = now() + 100 * DAY;
    let license = phone.sign("phone", &[("vqmon", end - 200 * DAY, Some(end))]);
    phone.install_at(&license, end - 100);
    let sup = TestSupervisor::start(&socket, "active");
    let mut daemon = Proc::spawn(&phone, Some(end - 60));
    assert!(sup.wait_connected(PATIENCE), "{}", daemon.log_tail(30));
    daemon.wait_control();
    let set = |t: i64| {
        let answer = common::control::request(
            &phone.path("control.sock"),
            &format!(r#"{{"cmd":"test-set-time","now":{t}}}"#),
            PATIENCE,
        );
        assert!(
            answer.is_ok_and(|(v, _)| v["ok"] == true),
            "test-set-time {t}"
        );
    };
    set(i64::from(u32::MAX));
    set(end + 1);
    daemon
        .wait_status(|s| s["daemon"]["reboot"]["pending"] == true)
        .unwrap_or_else(|| panic!("a reboot is needed:\n{}", daemon.log_tail(30)));
    let idle = sup.call("idle").expect("connected");
    let (at, line) = sup
        .wait_line("REBOOT", 1, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the grace never ended:\n{}", daemon.log_tail(30)));
    assert!(
        at.saturating_duration_since(idle.at) >= Duration::from_secs(2),
        "{line} came {} after idle",
        secs(at.saturating_duration_since(idle.at))
    );
}

/// A log reader that stops reading (a hung syslog behind the phone's log FIFO) never
/// holds the loop: standard error is a pipe already full that nobody reads; the
/// daemon starts, answers `status` and stops at SIGTERM; once the pipe is read again,
/// the lines it could not write are counted in one line.
#[test]
fn a_log_reader_that_stops_never_holds_the_loop() {
    use std::io::{Read, Write};
    let (phone, socket) = phone_with_supervisor("");
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let sup = TestSupervisor::start(&socket, "idle");
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let mut filler = std::fs::File::from(writer.try_clone().unwrap());
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&filler),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut filled = 0;
    while let Ok(n) = filler.write(&[b'x'; 4096]) {
        filled += n;
    }
    assert!(filled > 0);
    // Blocking again (the flag is the pipe's, shared with the daemon's standard error).
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&filler),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .unwrap();
    let mut daemon = Proc::spawn_with(&phone, None, move |cmd| {
        cmd.stderr(std::process::Stdio::from(writer));
    });
    assert!(sup.wait_connected(PATIENCE), "the link never came up");
    // Lines the daemon would log: calls, each from one call site.
    for _ in 0..20 {
        sup.call("active");
        sup.call("idle");
    }
    assert!(sup.barrier(PATIENCE), "the daemon reads its supervisor");
    let (_, took) = common::control::status(&phone.path("control.sock"), Duration::from_secs(5))
        .expect("status while the log is not read");
    assert!(took < SECOND, "status took {}", secs(took));
    // The log is read again: the next line says how many were dropped.
    let mut reader = std::fs::File::from(reader);
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&reader),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut drained = vec![0u8; filled + 65536];
    let _ = reader.read(&mut drained);
    sup.call("active");
    assert!(sup.barrier(PATIENCE));
    stops_within_a_second(&mut daemon);
    drop(filler);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("log line(s) dropped: standard error was not taking them"),
        "{text}"
    );
}

/// Descriptors running out while the store is read again never make it look empty: a
/// phone under a low descriptor limit, idle past the grace, gets a burst of
/// check-syncs (each cycle reads the store again first). Before, the listing failed
/// with EMFILE, the store was taken for empty: `FEATURES -`, a REBOOT, and `meta.json`
/// set aside (the latest trusted time and the events lost).
#[test]
fn descriptors_running_out_never_make_the_store_look_empty() {
    let (phone, server) = common::phone::Phone::with_folder_server(&[("lync", now() - DAY, None)]);
    let socket = phone.path("supervisor.sock");
    phone.configure(&format!(
        "server = \"file://{}/\"\nsupervisor_socket = \"{}\"\n[timing]\nidle_grace = \"1s\"\n",
        server.path().display(),
        socket.display()
    ));
    phone.install(&phone.sign("phone", &[("vqmon", now() - DAY, None)]));
    let sup = TestSupervisor::start(&socket, "idle");
    let mut probe = Proc::spawn(&phone, None);
    probe.wait_control();
    assert!(sup.wait_line("FEATURES vqmon,lync", 1, PATIENCE).is_some());
    let base = open_descriptors(probe.pid());
    drop(probe);
    // What the probe said is not judged (before its boot fetch, it said `vqmon` alone).
    let before = sup.received().len();
    let limit = (base + 4) as u64;
    let mut daemon = Proc::spawn_with(&phone, None, move |cmd| limit_descriptors(cmd, limit));
    daemon.wait_control();
    assert!(sup.wait_line("FEATURES vqmon,lync", 2, PATIENCE).is_some());
    std::thread::sleep(Duration::from_millis(1_200));
    let control = phone.path("control.sock");
    let burst: Vec<_> = (0..120)
        .map(|_| {
            let control = control.clone();
            std::thread::spawn(move || {
                common::control::request(
                    &control,
                    r#"{"cmd":"check-sync"}"#,
                    Duration::from_secs(10),
                )
            })
        })
        .collect();
    for b in burst {
        let _ = b.join();
    }
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(sup.barrier(PATIENCE), "{}", daemon.log_tail(20));
    let features: Vec<String> = sup
        .received()
        .into_iter()
        .skip(before)
        .map(|(_, l)| l)
        .filter(|l| l.starts_with("FEATURES") || l.starts_with("REBOOT"))
        .collect();
    assert!(
        features.iter().all(|l| l == "FEATURES vqmon,lync"),
        "{features:?}\n{}",
        daemon.log_tail(20)
    );
    let rejected: Vec<String> = std::fs::read_dir(phone.path("state/rejected"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !rejected.iter().any(|n| n.contains("meta.json")),
        "meta.json set aside: {rejected:?}"
    );
    stops_within_a_second(&mut daemon);
}
