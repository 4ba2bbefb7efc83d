//! An in-process test supervisor: the phone supervisor's side of
//! `shared/spec/supervisor-protocol.md` on a real Unix socket, driven by the test
//! itself (no process in between), recording every line it sends and receives with a
//! monotonic timestamp, so that tests can measure what the agent did against what it
//! had been told, to the millisecond.
//!
//! - It answers `HELLO license-agent/1` with `HELLO supervisor/1` and the current call
//!   state, and a `REBOOT` with `OK`, `BUSY` or nothing, as [`Answer`] says.
//! - Every line it sends is followed, in the same write, by `SYNC`, a line the agent
//!   cannot understand and so answers with one `ERR` (the protocol's rule). The agent's
//!   lines come in order, so once the n-th `ERR` of a connection has arrived, the agent
//!   has read the n-th `SYNC` and everything sent before it: [`Sent::sync`] numbers
//!   them, and a line the agent sent before that `ERR` may have been decided before it
//!   read them.
//! - A sent line is stamped once `write` returned: the agent cannot have read it
//!   earlier, so intervals measured from it to a received line never flatter the agent.
//! - [`TestSupervisor::restart`] drops the connection and the socket, and listens again
//!   after a pause: a supervisor restart.
//! - [`TestSupervisor::stop_reading`] makes it stop reading (what the agent writes piles
//!   up in the socket) while it goes on writing; [`TestSupervisor::flood`] writes junk
//!   lines the agent answers with `ERR`, unrecorded: a supervisor that stops reading with
//!   its buffer full of the agent's answers.
//!
//! Bounded: the threads poll their sockets every [`TICK`] and stop on drop.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a blocked thread checks whether to stop.
const TICK: Duration = Duration::from_millis(10);
/// The marker line sent after every line (answered by one `ERR`).
pub const SYNC: &str = "SYNC";

/// How the supervisor answers `REBOOT <id> <cause>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Busy,
    /// No answer at all (a supervisor that is slow, or lost the line).
    Silent,
}

/// One recorded line or connection event.
#[derive(Debug, Clone)]
pub enum Event {
    /// The agent connected: connection `conn` (numbered from 1).
    Connected { conn: u64, at: Instant },
    /// The connection ended (either side).
    Closed { conn: u64, at: Instant },
    /// A line received from the agent (without `\n`).
    Recv {
        conn: u64,
        at: Instant,
        line: String,
    },
    /// A line sent to the agent, stamped after the write; `sync` is the number of the
    /// `SYNC` that followed it on this connection (1, 2, ...).
    Sent(Sent),
    /// The supervisor stopped reading (`true`) or read again (`false`).
    Deaf { deaf: bool, at: Instant },
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub conn: u64,
    pub at: Instant,
    pub line: String,
    pub sync: u64,
}

impl Event {
    pub fn at(&self) -> Instant {
        match self {
            Event::Connected { at, .. }
            | Event::Closed { at, .. }
            | Event::Recv { at, .. }
            | Event::Deaf { at, .. } => *at,
            Event::Sent(s) => s.at,
        }
    }

    /// The event as a log line, its time in ms since `origin`.
    pub fn describe(&self, origin: Instant) -> String {
        let ms = |t: &Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        match self {
            Event::Connected { conn, at } => format!("{:9.1} ms  #{conn} connected", ms(at)),
            Event::Closed { conn, at } => format!("{:9.1} ms  #{conn} closed", ms(at)),
            Event::Deaf { deaf: true, at } => format!("{:9.1} ms  stops reading", ms(at)),
            Event::Deaf { deaf: false, at } => format!("{:9.1} ms  reads again", ms(at)),
            Event::Recv { conn, at, line } => format!("{:9.1} ms  #{conn} recv {line}", ms(at)),
            Event::Sent(s) => format!(
                "{:9.1} ms  #{} sent {} (+SYNC {})",
                ms(&s.at),
                s.conn,
                s.line,
                s.sync
            ),
        }
    }
}

struct State {
    /// The current connection (its writing half) and its number.
    conn: Option<(u64, UnixStream)>,
    last_conn: u64,
    /// `SYNC` lines sent on the current connection.
    syncs: u64,
    /// The call state told on HELLO.
    call: &'static str,
    answer: Answer,
    /// While set, the socket is gone; listen again at this instant.
    down_until: Option<Instant>,
    /// While set, nothing the agent writes is read.
    deaf: bool,
    /// Barrier markers sent so far.
    barriers: u64,
    events: Vec<Event>,
}

struct Shared {
    path: PathBuf,
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, state: &mut State, event: Event) {
        state.events.push(event);
        self.changed.notify_all();
    }

    /// Sends `line` + `SYNC` on the current connection; the record, or `None`.
    fn send(&self, state: &mut State, line: &str) -> Option<Sent> {
        let (conn, stream) = state.conn.as_mut()?;
        let conn = *conn;
        let bytes = format!("{line}\n{SYNC}\n");
        if stream.write_all(bytes.as_bytes()).is_err() {
            return None;
        }
        state.syncs += 1;
        let sent = Sent {
            conn,
            at: Instant::now(),
            line: line.to_string(),
            sync: state.syncs,
        };
        self.push(state, Event::Sent(sent.clone()));
        Some(sent)
    }
}

/// The supervisor, listening at its socket path.
pub struct TestSupervisor {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestSupervisor {
    /// Listens at `path`; tells `call` (`idle` or `active`) after each HELLO; answers
    /// REBOOT with OK until told otherwise.
    pub fn start(path: &Path, call: &'static str) -> TestSupervisor {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the supervisor socket");
        listener.set_nonblocking(true).expect("non-blocking");
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                conn: None,
                last_conn: 0,
                syncs: 0,
                call,
                answer: Answer::Ok,
                down_until: None,
                deaf: false,
                barriers: 0,
                events: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("test-supervisor".into())
            .spawn(move || accept_loop(listener, &for_thread))
            .expect("start the supervisor thread");
        TestSupervisor {
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn set_answer(&self, answer: Answer) {
        self.shared.lock().answer = answer;
    }

    /// Sends `CALL-STATE <word>` (and remembers it for the next HELLO).
    pub fn call(&self, word: &'static str) -> Option<Sent> {
        let mut state = self.shared.lock();
        state.call = word;
        self.shared.send(&mut state, &format!("CALL-STATE {word}"))
    }

    /// Sends a line (with its `SYNC`); the record, or `None` when not connected.
    pub fn send(&self, line: &str) -> Option<Sent> {
        let mut state = self.shared.lock();
        self.shared.send(&mut state, line)
    }

    /// Stops reading what the agent writes (`true`) or reads again (`false`).
    pub fn stop_reading(&self, deaf: bool) {
        let mut state = self.shared.lock();
        if state.deaf != deaf {
            state.deaf = deaf;
            self.shared.push(
                &mut state,
                Event::Deaf {
                    deaf,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Stops reading for `pause`, on a thread of its own (the test goes on meanwhile);
    /// with `flood`, junk lines are sent first, so the agent's answers pile up.
    pub fn deaf_for(&self, pause: Duration, flood: bool) -> JoinHandle<()> {
        self.stop_reading(true);
        if flood {
            self.flood("junk", 4_000);
        }
        let shared = Arc::clone(&self.shared);
        thread::spawn(move || {
            thread::sleep(pause);
            let mut state = shared.lock();
            state.deaf = false;
            shared.push(
                &mut state,
                Event::Deaf {
                    deaf: false,
                    at: Instant::now(),
                },
            );
        })
    }

    /// Writes `count` copies of the junk line `line` (no `SYNC`, not recorded); false
    /// when not connected or the write failed.
    pub fn flood(&self, line: &str, count: usize) -> bool {
        let mut state = self.shared.lock();
        let Some((_, stream)) = state.conn.as_mut() else {
            return false;
        };
        let bytes = format!("{line}\n").repeat(count);
        stream.write_all(bytes.as_bytes()).is_ok()
    }

    /// Drops the connection and the socket; listens again after `pause`.
    pub fn restart(&self, pause: Duration) {
        let mut state = self.shared.lock();
        if let Some((conn, stream)) = state.conn.take() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            self.shared.push(
                &mut state,
                Event::Closed {
                    conn,
                    at: Instant::now(),
                },
            );
        }
        state.down_until = Some(Instant::now() + pause);
        self.shared.changed.notify_all();
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.clone()
    }

    /// Lines received so far (all connections).
    pub fn received(&self) -> Vec<(Instant, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Recv { at, line, .. } => Some((at, line)),
                _ => None,
            })
            .collect()
    }

    /// Received lines that start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.received()
            .iter()
            .filter(|(_, l)| l.starts_with(prefix))
            .count()
    }

    /// Waits up to `timeout` for the `n`-th received line starting with `prefix`; its
    /// arrival time and text.
    pub fn wait_line(
        &self,
        prefix: &str,
        n: usize,
        timeout: Duration,
    ) -> Option<(Instant, String)> {
        self.wait(timeout, |events| {
            events
                .iter()
                .filter_map(|e| match e {
                    Event::Recv { at, line, .. } if line.starts_with(prefix) => {
                        Some((*at, line.clone()))
                    }
                    _ => None,
                })
                .nth(n - 1)
        })
    }

    /// Waits up to `timeout` for the agent to be connected and greeted (`HELLO` answered).
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let state = self.shared.lock();
                if let Some((conn, _)) = &state.conn {
                    let greeted = state.events.iter().any(|e| {
                        matches!(e, Event::Sent(s) if s.conn == *conn && s.line.starts_with("HELLO"))
                    });
                    if greeted {
                        return true;
                    }
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(TICK);
        }
    }

    /// Returns once the agent has read everything sent so far on this connection (its
    /// `ERR` to a fresh marker line, `SYNC-B<n>`, arrived). An agent whose supervisor
    /// left its answers unread may drop some, so a new marker goes out every half
    /// second until one is answered: any line the agent sent before that answer is
    /// recorded by then. False if that did not happen within `timeout` (or there is no
    /// connection).
    pub fn barrier(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut markers = Vec::new();
        loop {
            {
                let mut state = self.shared.lock();
                state.barriers += 1;
                let name = format!("{SYNC}-B{}", state.barriers);
                let Some((_, stream)) = state.conn.as_mut() else {
                    return false;
                };
                if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return false;
                }
                markers.push(format!("\"{name}\""));
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let answered = self.wait((deadline - now).min(Duration::from_millis(500)), |events| {
                events
                    .iter()
                    .any(|e| {
                        matches!(e, Event::Recv { line, .. }
                            if line.starts_with("ERR") && markers.iter().any(|m| line.contains(m.as_str())))
                    })
                    .then_some(())
            });
            if answered.is_some() {
                return true;
            }
        }
    }

    fn wait<T>(
        &self,
        timeout: Duration,
        mut found: impl FnMut(&[Event]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(t) = found(&state.events) {
                return Some(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for TestSupervisor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.shared.path);
    }
}

/// Accepts connections (one at a time: a new one replaces the old), reads each on a
/// thread of its own; drops and re-creates the socket on a restart.
fn accept_loop(listener: UnixListener, shared: &Arc<Shared>) {
    let mut listener = Some(listener);
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let down = shared.lock().down_until;
        match (down, listener.is_some()) {
            (Some(_), true) => {
                listener = None;
                let _ = std::fs::remove_file(&shared.path);
                continue;
            }
            (Some(until), false) => {
                if Instant::now() >= until {
                    let _ = std::fs::remove_file(&shared.path);
                    if let Ok(l) = UnixListener::bind(&shared.path) {
                        let _ = l.set_nonblocking(true);
                        listener = Some(l);
                        shared.lock().down_until = None;
                    }
                } else {
                    thread::sleep(TICK);
                }
                continue;
            }
            _ => {}
        }
        let Some(l) = listener.as_ref() else {
            thread::sleep(TICK);
            continue;
        };
        match l.accept() {
            Ok((stream, _)) => {
                let Ok(writer) = stream.try_clone() else {
                    continue;
                };
                let conn = {
                    let mut state = shared.lock();
                    if let Some((old, s)) = state.conn.take() {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        shared.push(
                            &mut state,
                            Event::Closed {
                                conn: old,
                                at: Instant::now(),
                            },
                        );
                    }
                    state.last_conn += 1;
                    let conn = state.last_conn;
                    state.conn = Some((conn, writer));
                    state.syncs = 0;
                    shared.push(
                        &mut state,
                        Event::Connected {
                            conn,
                            at: Instant::now(),
                        },
                    );
                    conn
                };
                let for_reader = Arc::clone(shared);
                if let Ok(handle) = thread::Builder::new()
                    .name(format!("test-supervisor-{conn}"))
                    .spawn(move || read_loop(stream, conn, &for_reader))
                {
                    readers.push(handle);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(TICK);
            }
            Err(_) => thread::sleep(TICK),
        }
        readers.retain(|r| !r.is_finished());
    }
    drop(listener);
    if let Some((_, s)) = shared.lock().conn.take() {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    for reader in readers {
        let _ = reader.join();
    }
}

/// Reads the agent's lines on connection `conn` until it ends, is replaced, or the
/// supervisor stops; answers HELLO and REBOOT.
fn read_loop(mut stream: UnixStream, conn: u64, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(TICK * 5));
    let mut buffered = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let (current, deaf) = {
            let state = shared.lock();
            (
                state.conn.as_ref().map(|(c, _)| *c) == Some(conn),
                state.deaf,
            )
        };
        if !current {
            return;
        }
        if deaf {
            thread::sleep(TICK);
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                let mut state = shared.lock();
                if state.conn.as_ref().map(|(c, _)| *c) == Some(conn) {
                    state.conn = None;
                    shared.push(
                        &mut state,
                        Event::Closed {
                            conn,
                            at: Instant::now(),
                        },
                    );
                }
                return;
            }
            Ok(n) => {
                let at = Instant::now();
                buffered.extend_from_slice(&chunk[..n]);
                while let Some(pos) = buffered.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffered.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    handle_line(shared, conn, at, line);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                let mut state = shared.lock();
                if state.conn.as_ref().map(|(c, _)| *c) == Some(conn) {
                    state.conn = None;
                    shared.push(
                        &mut state,
                        Event::Closed {
                            conn,
                            at: Instant::now(),
                        },
                    );
                }
                return;
            }
        }
    }
}

fn handle_line(shared: &Shared, conn: u64, at: Instant, line: String) {
    let mut state = shared.lock();
    if state.conn.as_ref().map(|(c, _)| *c) != Some(conn) {
        return;
    }
    shared.push(
        &mut state,
        Event::Recv {
            conn,
            at,
            line: line.clone(),
        },
    );
    let mut words = line.split(' ');
    match (words.next(), words.next()) {
        (Some("HELLO"), _) => {
            shared.send(&mut state, "HELLO supervisor/1");
            let call = state.call;
            shared.send(&mut state, &format!("CALL-STATE {call}"));
        }
        (Some("REBOOT"), Some(id)) => {
            let id = id.to_string();
            match state.answer {
                Answer::Ok => {
                    shared.send(&mut state, &format!("OK {id}"));
                }
                Answer::Busy => {
                    shared.send(&mut state, &format!("BUSY {id}"));
                }
                Answer::Silent => {}
            }
        }
        _ => {}
    }
}
