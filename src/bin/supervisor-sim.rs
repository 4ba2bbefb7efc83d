//! `supervisor-sim`: a phone supervisor simulator for tests and for people (not part of
//! the phone build; the emulated phone of `scripts/phone-image.sh` runs an armv7 build
//! of it as its supervisor, rebooting the machine with `--on-ok "reboot -f"`). It
//! speaks `shared/spec/supervisor-protocol.md` with the crate's own
//! [`license_agent::supervisor::protocol`], takes commands on standard input and
//! records every event, so a test can drive a real agent and check what it did.
//!
//! One thread, one `poll` over a signalfd (SIGTERM, SIGINT), the listening socket, the
//! agent connection and standard input; nothing runs between events.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use license_agent::supervisor::protocol::{
    CallState, FromSupervisor, LineReader, Read, ToSupervisor, MAX_LINE,
};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

const HELP: &str = "\
supervisor-sim: a phone supervisor simulator (for tests and people, not for phones)

Usage:
  supervisor-sim --socket PATH [--record FILE] [--answer ok|busy] [--call idle|active]
                 [--on-ok COMMAND]

--socket PATH   the Unix socket to listen on (a stale socket file there is removed)
--record FILE   also append every event to FILE (flushed per line)
--answer MODE   answer REBOOT with OK (ok, the default) or BUSY (busy)
--call STATE    the call state at start: idle (the default) or active
--on-ok COMMAND after answering a REBOOT with OK, run COMMAND with /bin/sh -c (not
                waited for): `reboot -f` makes it the phone VM's real supervisor

One agent connection at a time; a new one replaces the old. HELLO license-agent/1 is
answered with HELLO supervisor/1 and CALL-STATE <state>; REBOOT <id> <cause> with
OK <id> or BUSY <id>; a line that cannot be understood with ERR <why>.

Commands on standard input, one per line:
  call active | call idle    change the call state (sent to the agent when it changes)
  check-sync                 send CHECK-SYNC
  answer ok | answer busy    how the next REBOOTs are answered
  disconnect                 close the agent connection
  send LINE                  send LINE as it is (plus a newline), for garbage tests
  send-hex HEX               send these bytes exactly (no newline added)
  quit                       stop (SIGTERM and SIGINT stop it too; end of input does not)

Events, one per line on standard output and in FILE: <unix-millis> <event>, where event
is listening PATH, connected, disconnected, discarded N (bytes of a half line left by a
closing agent), recv LINE, recv-overlong, recv-not-utf8, sent LINE, sent-hex HEX,
state idle|active, answer ok|busy, cmd COMMAND, on-ok COMMAND (starting it), on-ok-failed
WHY, violation reboot-during-call LINE,
violation reboot-before-hello LINE, violation duplicate-reboot-id LINE, stopped.

Exit status: 0 stopped by quit or a signal, 1 failure, 2 usage error.
";

/// Commands are longer than protocol lines: `send-hex` of an overlong line must fit.
const MAX_COMMAND: usize = 64 * 1024;
/// How long a write to the agent may block before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// REBOOT ids remembered per connection (to spot a reused id), at most.
const MAX_IDS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Busy,
}

impl Answer {
    fn word(self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::Busy => "busy",
        }
    }

    fn parse(word: &str) -> Option<Answer> {
        match word {
            "ok" => Some(Answer::Ok),
            "busy" => Some(Answer::Busy),
            _ => None,
        }
    }
}

struct Options {
    socket: PathBuf,
    record: Option<PathBuf>,
    answer: Answer,
    call: CallState,
    on_ok: Option<String>,
}

enum Parsed {
    Run(Options),
    Help,
}

fn parse_args(args: Vec<OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut socket = None;
    let mut record = None;
    let mut answer = Answer::Ok;
    let mut call = CallState::Idle;
    let mut on_ok = None;
    let text = |parser: &mut lexopt::Parser, option: &str| -> Result<String, String> {
        let value = parser.value().map_err(|e| e.to_string())?;
        value
            .into_string()
            .map_err(|v| format!("{option}: {v:?} is not valid UTF-8"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("socket") => {
                socket = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("record") => {
                record = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("answer") => {
                let v = text(&mut parser, "--answer")?;
                answer = Answer::parse(&v)
                    .ok_or_else(|| format!("--answer: expected ok or busy, got {v:?}"))?;
            }
            Long("call") => {
                let v = text(&mut parser, "--call")?;
                call = CallState::parse(&v)
                    .ok_or_else(|| format!("--call: expected idle or active, got {v:?}"))?;
            }
            Long("on-ok") => on_ok = Some(text(&mut parser, "--on-ok")?),
            Long("help") | Short('h') => return Ok(Parsed::Help),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let socket = socket.ok_or("--socket PATH is required")?;
    Ok(Parsed::Run(Options {
        socket,
        record,
        answer,
        call,
        on_ok,
    }))
}

fn main() {
    let code = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Help) => {
            print!("{HELP}");
            0
        }
        Ok(Parsed::Run(options)) => match run(options) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("supervisor-sim: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("supervisor-sim: {e}\nTry 'supervisor-sim --help'.");
            2
        }
    };
    std::process::exit(code);
}

/// Writes each event to standard output and the record file, flushed per line.
struct Recorder {
    file: Option<File>,
    file_failed: bool,
}

impl Recorder {
    fn event(&mut self, event: &str) {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let line = format!("{millis} {event}\n");
        let mut out = std::io::stdout().lock();
        // A closed standard output does not stop the simulator.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
                if !self.file_failed {
                    eprintln!("supervisor-sim: writing the record file: {e}");
                    self.file_failed = true;
                }
            }
        }
    }
}

/// A peer's text made printable on one line (control characters escaped).
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// The agent connected now.
struct Agent {
    stream: UnixStream,
    reader: LineReader,
    hello: bool,
    ids: BTreeSet<u64>,
}

struct Sim {
    recorder: Recorder,
    call: CallState,
    answer: Answer,
    agent: Option<Agent>,
    on_ok: Option<String>,
}

/// What the main loop does next.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

impl Sim {
    fn record(&mut self, event: &str) {
        self.recorder.event(event);
    }

    fn drop_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            let pending = agent.reader.pending();
            if pending > 0 {
                self.record(&format!("discarded {pending}"));
            }
            let _ = agent.stream.shutdown(std::net::Shutdown::Both);
            self.record("disconnected");
        }
    }

    fn accept(&mut self, stream: UnixStream) {
        if let Err(e) = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        {
            eprintln!("supervisor-sim: a new connection could not be set up: {e}");
            return;
        }
        self.drop_agent();
        self.agent = Some(Agent {
            stream,
            reader: LineReader::new(),
            hello: false,
            ids: BTreeSet::new(),
        });
        self.record("connected");
    }

    /// Writes bytes to the agent; a failed write drops the connection.
    fn write(&mut self, bytes: &[u8], event: String) {
        let Some(agent) = &mut self.agent else {
            eprintln!("supervisor-sim: no agent connected");
            return;
        };
        match agent.stream.write_all(bytes) {
            Ok(()) => self.record(&event),
            Err(e) => {
                eprintln!("supervisor-sim: writing to the agent failed ({e}): disconnecting");
                self.drop_agent();
            }
        }
    }

    fn send(&mut self, message: &FromSupervisor) {
        let line = message.to_line();
        let event = format!("sent {}", printable(line.trim_end_matches('\n')));
        self.write(line.as_bytes(), event);
    }

    /// Reads what the agent sent; answers every complete line.
    fn read_agent(&mut self) {
        let mut buf = [0u8; 4096];
        let Some(agent) = &mut self.agent else {
            return;
        };
        let reads = match agent.stream.read(&mut buf) {
            Ok(0) => {
                self.drop_agent();
                return;
            }
            Ok(n) => agent.reader.push(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => return,
            Err(e) => {
                eprintln!("supervisor-sim: reading from the agent failed: {e}");
                self.drop_agent();
                return;
            }
        };
        for read in reads {
            if self.agent.is_none() {
                break; // a failed answer dropped the connection
            }
            self.received(read);
        }
    }

    fn received(&mut self, read: Read) {
        let line = match read {
            Read::Line(line) => line,
            Read::Overlong => {
                self.record("recv-overlong");
                self.send(&FromSupervisor::Err(format!(
                    "line longer than {MAX_LINE} bytes (with its newline): discarded"
                )));
                return;
            }
            Read::NotUtf8 => {
                self.record("recv-not-utf8");
                self.send(&FromSupervisor::Err(
                    "line is not UTF-8: discarded".to_string(),
                ));
                return;
            }
        };
        let shown = printable(&line);
        self.record(&format!("recv {shown}"));
        match ToSupervisor::parse(&line) {
            Ok(ToSupervisor::Hello) => {
                if let Some(agent) = &mut self.agent {
                    agent.hello = true;
                }
                self.send(&FromSupervisor::Hello {
                    version: "1".to_string(),
                });
                self.send(&FromSupervisor::CallState(self.call));
            }
            Ok(ToSupervisor::Reboot { id, .. }) => {
                let (hello, fresh) = match &mut self.agent {
                    Some(agent) => {
                        let fresh = if agent.ids.len() < MAX_IDS {
                            agent.ids.insert(id)
                        } else {
                            !agent.ids.contains(&id)
                        };
                        (agent.hello, fresh)
                    }
                    None => return,
                };
                if self.call == CallState::Active {
                    self.record(&format!("violation reboot-during-call {shown}"));
                }
                if !hello {
                    self.record(&format!("violation reboot-before-hello {shown}"));
                }
                if !fresh {
                    self.record(&format!("violation duplicate-reboot-id {shown}"));
                }
                self.send(&match self.answer {
                    Answer::Ok => FromSupervisor::Ok(id),
                    Answer::Busy => FromSupervisor::Busy(id),
                });
                if self.answer == Answer::Ok {
                    self.run_on_ok();
                }
            }
            // Understood: recorded, nothing to answer (an ERR is never answered).
            Ok(ToSupervisor::Features(_)) | Ok(ToSupervisor::Err(_)) => {}
            Err(why) => self.send(&FromSupervisor::Err(why)),
        }
    }

    /// Starts the `--on-ok` command (a real supervisor reboots the phone now). Not
    /// waited for by the loop: `reboot -f` never returns, and the loop must not stall.
    fn run_on_ok(&mut self) {
        let Some(command) = self.on_ok.clone() else {
            return;
        };
        // Recorded first: `reboot -f` may end the machine before a later line is out.
        self.record(&format!("on-ok {}", printable(&command)));
        match std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            // Reaped on a thread of its own, so no zombie is left behind.
            Ok(mut child) => drop(std::thread::spawn(move || child.wait())),
            Err(e) => self.record(&format!("on-ok-failed {e}")),
        }
    }

    fn set_call(&mut self, call: CallState) {
        if self.call != call {
            self.call = call;
            self.record(&format!("state {}", call.word()));
            if self.agent.is_some() {
                self.send(&FromSupervisor::CallState(call));
            }
        }
    }

    fn command(&mut self, read: Read) -> Flow {
        let line = match read {
            Read::Line(line) => line,
            Read::Overlong => {
                eprintln!("supervisor-sim: command longer than {MAX_COMMAND} bytes: ignored");
                return Flow::Continue;
            }
            Read::NotUtf8 => {
                eprintln!("supervisor-sim: command is not UTF-8: ignored (use send-hex)");
                return Flow::Continue;
            }
        };
        if line.trim().is_empty() {
            return Flow::Continue;
        }
        self.record(&format!("cmd {}", printable(&line)));
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match (verb, rest) {
            ("call", state) => match CallState::parse(state.trim()) {
                Some(call) => self.set_call(call),
                None => eprintln!("supervisor-sim: expected call idle or call active"),
            },
            ("check-sync", "") => self.send(&FromSupervisor::CheckSync),
            ("answer", mode) => match Answer::parse(mode.trim()) {
                Some(answer) => {
                    self.answer = answer;
                    self.record(&format!("answer {}", answer.word()));
                }
                None => eprintln!("supervisor-sim: expected answer ok or answer busy"),
            },
            ("disconnect", "") => {
                if self.agent.is_none() {
                    eprintln!("supervisor-sim: no agent connected");
                }
                self.drop_agent();
            }
            ("send", raw) => {
                let event = format!("sent {}", printable(raw));
                self.write(format!("{raw}\n").as_bytes(), event);
            }
            ("send-hex", hex) => match hex::decode(hex.trim()) {
                Ok(bytes) => {
                    let event = format!("sent-hex {}", hex::encode(&bytes));
                    self.write(&bytes, event);
                }
                Err(e) => eprintln!("supervisor-sim: send-hex: {e}"),
            },
            ("quit", "") => return Flow::Quit,
            _ => eprintln!(
                "supervisor-sim: unknown command {:?}: expected call active|idle, check-sync, \
                 answer ok|busy, disconnect, send LINE, send-hex HEX or quit",
                printable(&line)
            ),
        }
        Flow::Continue
    }
}

/// Binds the socket, replacing a stale socket file (never any other kind of file).
fn bind(path: &Path) -> Result<UnixListener, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?,
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket: not replacing it",
                path.display()
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("listening on {}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listening on {}: {e}", path.display()))?;
    Ok(listener)
}

fn run(options: Options) -> Result<(), String> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;

    let file = match &options.record {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("record file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let listener = bind(&options.socket)?;
    // Standard input read without std's buffer, so that poll sees everything unread.
    let mut stdin: Option<File> = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .ok();
    let mut commands = LineReader::with_limit(MAX_COMMAND);

    let mut sim = Sim {
        recorder: Recorder {
            file,
            file_failed: false,
        },
        call: options.call,
        answer: options.answer,
        agent: None,
        on_ok: options.on_ok,
    };
    sim.record(&format!("listening {}", options.socket.display()));
    sim.record(&format!("state {}", sim.call.word()));
    sim.record(&format!("answer {}", sim.answer.word()));

    let result = loop {
        let (signal_ready, listener_ready, agent_ready, stdin_ready) = {
            let mut fds = vec![
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            ];
            let agent_at = sim.agent.as_ref().map(|a| {
                fds.push(PollFd::new(a.stream.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let stdin_at = stdin.as_ref().map(|s| {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => break Err(format!("poll: {e}")),
            }
            let ready = |i: Option<usize>| {
                i.and_then(|i| fds[i].revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (
                ready(Some(0)),
                ready(Some(1)),
                ready(agent_at),
                ready(stdin_at),
            )
        };
        if signal_ready {
            if let Ok(Some(info)) = signals.read_signal() {
                eprintln!("supervisor-sim: signal {}: stopping", info.ssi_signo);
                break Ok(());
            }
        }
        if stdin_ready {
            let mut buf = [0u8; 4096];
            let got = match stdin.as_mut().map(|s| s.read(&mut buf)) {
                Some(Ok(n)) => n,
                Some(Err(e)) if e.kind() == ErrorKind::Interrupted => continue,
                Some(Err(e)) => {
                    eprintln!("supervisor-sim: reading standard input: {e}: commands stop");
                    0
                }
                None => 0,
            };
            if got == 0 {
                // End of input: no more commands; the simulator runs on.
                stdin = None;
            } else if commands
                .push(&buf[..got])
                .into_iter()
                .any(|read| sim.command(read) == Flow::Quit)
            {
                break Ok(());
            }
        }
        if agent_ready {
            sim.read_agent();
        }
        if listener_ready {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => sim.accept(stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        eprintln!("supervisor-sim: accepting a connection: {e}");
                        break;
                    }
                }
            }
        }
    };
    sim.drop_agent();
    let _ = std::fs::remove_file(&options.socket);
    sim.record("stopped");
    result
}
