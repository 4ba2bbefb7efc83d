//! `supervisor-sim` end to end: the real simulator binary, driven through its standard
//! input, talking to a fake agent written here with a plain `UnixStream`. Each test
//! waits on the simulator's events (standard output) instead of sleeping, and finally
//! checks the record file.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(10);

/// A running simulator.
struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<String>,
    seen: Vec<String>,
    socket: PathBuf,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        Sim::start_in(dir, args)
    }

    fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Sim {
        let socket = dir.path().join("supervisor.sock");
        let record = dir.path().join("record.txt");
        let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor-sim"))
            .arg("--socket")
            .arg(&socket)
            .arg("--record")
            .arg(&record)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = channel();
        // Drains standard output (the simulator must never block on it).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut sim = Sim {
            child,
            stdin,
            events,
            seen: Vec::new(),
            socket,
            record,
            _dir: dir,
        };
        sim.wait_event("listening ");
        sim
    }

    /// Waits for the next event starting with `prefix` (after the timestamp); returns it.
    fn wait_event(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(line) => {
                    let (millis, event) = line.split_once(' ').expect("<millis> <event>");
                    assert!(millis.parse::<u64>().is_ok(), "timestamp in {line:?}");
                    let event = event.to_string();
                    self.seen.push(event.clone());
                    if event.starts_with(prefix) {
                        return event;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no event {prefix:?} within {WAIT:?}; seen {:#?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the simulator ended before {prefix:?}; seen {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    fn command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{command}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        self.wait_event(&format!("cmd {command}"));
    }

    fn connect(&mut self) -> Agent {
        let agent = Agent::connect(&self.socket);
        self.wait_event("connected");
        agent
    }

    fn record_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.record)
            .unwrap()
            .lines()
            .map(|l| {
                let (millis, event) = l.split_once(' ').expect("<millis> <event>");
                assert!(millis.parse::<u64>().is_ok(), "timestamp in {l:?}");
                event.to_string()
            })
            .collect()
    }

    /// Stops with `quit` and checks it exits 0 and removes its socket.
    fn quit(mut self) -> Vec<String> {
        self.command("quit");
        self.wait_event("stopped");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(!self.socket.exists(), "socket removed");
        self.record_lines()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fake agent.
struct Agent {
    stream: BufReader<UnixStream>,
}

impl Agent {
    fn connect(socket: &Path) -> Agent {
        let stream = UnixStream::connect(socket).unwrap();
        // Every read and write on the link is bounded: a peer that stops reading or never
        // answers fails the test instead of hanging it.
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Agent {
            stream: BufReader::new(stream),
        }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).unwrap();
    }

    fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stream.read_line(&mut line).unwrap();
        assert!(n > 0, "the simulator closed the connection");
        assert!(line.ends_with('\n'), "{line:?}");
        line.pop();
        line
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.read_line(), want);
    }

    fn expect_err(&mut self) -> String {
        let line = self.read_line();
        assert!(line.starts_with("ERR "), "{line:?}");
        line
    }

    fn hello(&mut self, state: &str) {
        self.send("HELLO license-agent/1");
        self.expect("HELLO supervisor/1");
        self.expect(&format!("CALL-STATE {state}"));
    }

    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        let n = self.stream.read_to_end(&mut rest).unwrap();
        assert_eq!(n, 0, "nothing more: {:?}", String::from_utf8_lossy(&rest));
    }
}

fn violations(record: &[String]) -> Vec<&String> {
    record
        .iter()
        .filter(|e| e.starts_with("violation"))
        .collect()
}

#[test]
fn hello_then_reboots_answered_ok_then_busy() {
    let mut sim = Sim::start(&[]);
    let mut agent = sim.connect();
    agent.hello("idle");
    agent.send("FEATURES usb-call-recording,vqmon");
    agent.send("REBOOT 1 license-expired");
    agent.expect("OK 1");
    sim.command("answer busy");
    agent.send("REBOOT 2 license-changed");
    agent.expect("BUSY 2");
    sim.command("answer ok");
    agent.send("REBOOT 3 feature-licensed");
    agent.expect("OK 3");
    let record = sim.quit();
    assert!(violations(&record).is_empty(), "{record:#?}");
    let want = [
        "listening ",
        "state idle",
        "answer ok",
        "connected",
        "recv HELLO license-agent/1",
        "sent HELLO supervisor/1",
        "sent CALL-STATE idle",
        "recv FEATURES usb-call-recording,vqmon",
        "recv REBOOT 1 license-expired",
        "sent OK 1",
        "cmd answer busy",
        "answer busy",
        "recv REBOOT 2 license-changed",
        "sent BUSY 2",
        "cmd answer ok",
        "answer ok",
        "recv REBOOT 3 feature-licensed",
        "sent OK 3",
        "cmd quit",
        "disconnected",
        "stopped",
    ];
    assert_eq!(record.len(), want.len(), "{record:#?}");
    for (got, want) in record.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} vs {want:?} in {record:#?}");
    }
}

#[test]
fn call_state_and_check_sync_reach_the_agent_and_a_reboot_in_a_call_is_a_violation() {
    let mut sim = Sim::start(&[]);
    let mut agent = sim.connect();
    agent.hello("idle");
    sim.command("call active");
    agent.expect("CALL-STATE active");
    // The same state again is no change: nothing is sent.
    sim.command("call active");
    sim.command("check-sync");
    agent.expect("CHECK-SYNC");
    agent.send("REBOOT 7 license-changed");
    agent.expect("OK 7");
    sim.wait_event("violation reboot-during-call REBOOT 7 license-changed");
    sim.command("call idle");
    agent.expect("CALL-STATE idle");
    agent.send("REBOOT 8 license-changed");
    agent.expect("OK 8");
    let record = sim.quit();
    assert_eq!(
        violations(&record),
        ["violation reboot-during-call REBOOT 7 license-changed"],
        "{record:#?}"
    );
    for event in [
        "state active",
        "sent CHECK-SYNC",
        "state idle",
        "sent CALL-STATE idle",
    ] {
        assert!(record.iter().any(|e| e == event), "{event} in {record:#?}");
    }
    assert_eq!(
        record
            .iter()
            .filter(|e| *e == "sent CALL-STATE active")
            .count(),
        1
    );
}

#[test]
fn starting_state_and_answer_from_the_command_line() {
    let mut sim = Sim::start(&["--call", "active", "--answer", "busy"]);
    let mut agent = sim.connect();
    agent.hello("active");
    agent.send("REBOOT 1 license-expired");
    agent.expect("BUSY 1");
    let record = sim.quit();
    assert_eq!(violations(&record).len(), 1, "{record:#?}");
}

/// Proves: each garbage line (before HELLO too) gets its own `ERR` answer within
/// [`WAIT`], and the connection still carries a real exchange afterwards.
#[test]
fn garbage_gets_err_and_the_connection_survives() {
    let mut sim = Sim::start(&[]);
    let mut agent = sim.connect();
    // Before HELLO too: nothing a peer sends drops the connection.
    agent.send("hello license-agent/1");
    let e = agent.expect_err();
    assert!(e.contains("expected") && e.contains("hello"), "{e}");
    agent.hello("idle");
    for garbage in [
        "",
        "REBOOT",
        "REBOOT x license-expired",
        "REBOOT 1 reboot-now",
        "REBOOT  1 license-expired",
        "HELLO license-agent/2",
        "FEATURES Vqmon",
        "OK 1",
        "\u{1b}[31m",
    ] {
        agent.send(garbage);
        let e = agent.expect_err();
        assert!(!e[4..].is_empty(), "{garbage:?}: {e}");
    }
    agent.send_bytes(b"REBOOT \xff license-expired\r\n");
    assert_eq!(agent.expect_err(), "ERR line is not UTF-8: discarded");
    // CRLF is a line ending too; an ERR from the agent is not answered.
    agent.send_bytes(b"ERR what?\r\nREBOOT 5 license-expired\r\n");
    agent.expect("OK 5");
    // Raw lines from the simulator reach the agent as they are.
    sim.command("send CALL-STATE sleepy");
    agent.expect("CALL-STATE sleepy");
    sim.command("send-hex 4f4b20ff0a");
    let mut raw = [0u8; 5];
    agent.stream.read_exact(&mut raw).unwrap();
    assert_eq!(&raw, b"OK \xff\n");
    let record = sim.quit();
    assert!(
        record.iter().any(|e| e == "recv \\u{1b}[31m"),
        "{record:#?}"
    );
    assert!(record.iter().any(|e| e == "recv-not-utf8"), "{record:#?}");
    assert!(
        record.iter().any(|e| e == "sent-hex 4f4b20ff0a"),
        "{record:#?}"
    );
    assert!(record.iter().any(|e| e == "recv ERR what?"), "{record:#?}");
    assert_eq!(
        record.iter().filter(|e| *e == "connected").count(),
        1,
        "{record:#?}"
    );
}

#[test]
fn an_overlong_line_gets_one_err_and_the_next_line_works() {
    let mut sim = Sim::start(&[]);
    let mut agent = sim.connect();
    agent.hello("idle");
    // 1,023 bytes and the newline is the longest line: understood (as a bad FEATURES).
    agent.send(&format!("FEATURES {}", "A".repeat(1023 - 9)));
    agent.expect_err();
    // One byte more is overlong, even in pieces.
    let long = format!("REBOOT 1 {}", "x".repeat(5000));
    agent.send_bytes(&long.as_bytes()[..3000]);
    let e = agent.expect_err();
    assert!(e.contains("1024"), "{e}");
    agent.send_bytes(&long.as_bytes()[3000..]);
    agent.send("\nREBOOT 2 license-expired");
    agent.expect("OK 2");
    let record = sim.quit();
    assert_eq!(
        record.iter().filter(|e| *e == "recv-overlong").count(),
        1,
        "{record:#?}"
    );
    assert!(violations(&record).is_empty(), "{record:#?}");
}

#[test]
fn disconnect_then_reconnect_and_a_new_connection_replaces_the_old() {
    let mut sim = Sim::start(&[]);
    let mut agent = sim.connect();
    agent.hello("idle");
    sim.command("disconnect");
    sim.wait_event("disconnected");
    agent.expect_closed();
    // Commands that need an agent do nothing without one.
    sim.command("check-sync");
    sim.command("call active");

    let mut agent = sim.connect();
    agent.hello("active");
    sim.command("call idle");
    agent.expect("CALL-STATE idle");
    // A second connection replaces the first.
    let mut second = sim.connect();
    agent.expect_closed();
    second.hello("idle");
    // REBOOT ids are per connection: 1 again is fine on a new one.
    second.send("REBOOT 1 license-expired");
    second.expect("OK 1");
    second.send("REBOOT 1 license-expired");
    second.expect("OK 1");
    sim.wait_event("violation duplicate-reboot-id");
    // The agent going away mid-line.
    second.send_bytes(b"REBOOT 2 lic");
    drop(second);
    assert_eq!(sim.wait_event("discarded"), "discarded 12");
    sim.wait_event("disconnected");
    let record = sim.quit();
    assert_eq!(record.iter().filter(|e| *e == "connected").count(), 3);
    assert_eq!(record.iter().filter(|e| *e == "disconnected").count(), 3);
    assert_eq!(
        violations(&record),
        ["violation duplicate-reboot-id REBOOT 1 license-expired"]
    );
}

#[test]
fn a_reboot_before_hello_is_answered_and_recorded() {
    let mut sim = Sim::start(&[]);
    let mut agent = sim.connect();
    agent.send("REBOOT 1 license-expired");
    agent.expect("OK 1");
    let record = sim.quit();
    assert_eq!(
        violations(&record),
        ["violation reboot-before-hello REBOOT 1 license-expired"]
    );
}

#[test]
fn end_of_input_does_not_stop_it_sigterm_does_and_removes_the_socket() {
    let mut sim = Sim::start(&[]);
    drop(sim.stdin.take());
    let mut agent = sim.connect();
    agent.hello("idle");
    agent.send("REBOOT 1 license-expired");
    agent.expect("OK 1");
    kill(Pid::from_raw(sim.child.id() as i32), Signal::SIGTERM).unwrap();
    sim.wait_event("stopped");
    let status = sim.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!sim.socket.exists());
    agent.expect_closed();
}

#[test]
fn sigint_stops_it_too() {
    let mut sim = Sim::start(&[]);
    kill(Pid::from_raw(sim.child.id() as i32), Signal::SIGINT).unwrap();
    sim.wait_event("stopped");
    assert!(sim.child.wait().unwrap().success());
    assert!(!sim.socket.exists());
}

#[test]
fn unknown_commands_change_nothing() {
    let mut sim = Sim::start(&[]);
    let mut agent = sim.connect();
    agent.hello("idle");
    for bad in ["call maybe", "answer later", "fly", "quit now"] {
        sim.command(bad);
    }
    agent.send("REBOOT 1 license-expired");
    agent.expect("OK 1");
    let record = sim.quit();
    assert!(!record.iter().any(|e| e.starts_with("state active")));
}

#[test]
fn a_stale_socket_is_replaced_but_never_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("supervisor.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists(), "a stale socket file is left behind");
    let mut sim = Sim::start_in(dir, &[]);
    let mut agent = sim.connect();
    agent.hello("idle");
    sim.quit();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor-sim"))
        .arg("--socket")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn usage_errors() {
    for args in [
        &[][..],
        &["--socket"][..],
        &["--socket", "x", "--answer", "maybe"][..],
        &["--socket", "x", "--call", "busy"][..],
        &["--socket", "x", "--bogus"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_supervisor-sim"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--socket PATH"));
}

#[test]
fn on_ok_runs_its_command_after_each_ok_and_never_after_busy() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("rebooted");
    let command = format!("echo rebooted >> {}", marks.display());
    let mut sim = Sim::start_in(dir, &["--on-ok", &command]);
    let mut agent = sim.connect();
    agent.hello("idle");
    agent.send("REBOOT 1 license-expired");
    agent.expect("OK 1");
    sim.wait_event("on-ok echo rebooted");
    sim.command("answer busy");
    agent.send("REBOOT 2 license-changed");
    agent.expect("BUSY 2");
    // The command is not waited for: give it time to write, then count.
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&marks)
        .unwrap_or_default()
        .lines()
        .count()
        < 1
    {
        assert!(Instant::now() < deadline, "the --on-ok command never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "rebooted\n");
    let record = sim.quit();
    let ran: Vec<_> = record.iter().filter(|e| e.starts_with("on-ok ")).collect();
    assert_eq!(ran.len(), 1, "{record:#?}");
}
