//! The agent's connection to the phone supervisor: connect, greet, read what it says,
//! send what the agent has to say, and reconnect with back-off when the socket is missing
//! or the connection drops. Non-blocking, driven by the daemon's `poll`: it never holds
//! the daemon, and nothing the supervisor sends can stop it.

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::protocol::{FromSupervisor, LineReader, Read, ToSupervisor};
use crate::config::Secs;
use crate::fetch::backoff;
use crate::time::Mono;

/// First and longest delay between connection attempts.
const RETRY_INITIAL: Secs = Secs(1);
const RETRY_MAX: Secs = Secs(60);

/// What happened on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The supervisor answered HELLO: the link is up.
    Up { version: String },
    /// The connection ended (or could not be made), and why.
    Down(String),
    /// A message after the greeting.
    Message(FromSupervisor),
}

/// The link to the supervisor at one socket path.
pub(crate) struct Link {
    path: PathBuf,
    stream: Option<UnixStream>,
    reader: LineReader,
    greeted: bool,
    failures: u32,
    /// When to try to connect next (monotonic clock), while not connected.
    next_attempt: Option<Mono>,
    jitter: u64,
}

impl Link {
    pub(crate) fn new(path: PathBuf, jitter: u64) -> Link {
        Link {
            path,
            stream: None,
            reader: LineReader::new(),
            greeted: false,
            failures: 0,
            next_attempt: Some(Mono::ZERO),
            jitter,
        }
    }

    /// The socket to poll, while connected.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.stream.as_ref().map(|s| s.as_fd())
    }

    /// Whether the supervisor answered HELLO on the current connection.
    pub(crate) fn is_up(&self) -> bool {
        self.greeted
    }

    /// When a connection attempt is due (monotonic clock), while not connected.
    pub fn next_attempt(&self) -> Option<Mono> {
        self.next_attempt
    }

    /// Connects if an attempt is due; sends HELLO.
    pub fn connect_if_due(&mut self, now: Mono) -> Option<Event> {
        if self.stream.is_some() || self.next_attempt.is_some_and(|t| t > now) {
            return None;
        }
        let attempt = connect_nonblocking(&self.path).and_then(|mut s| {
            // The greeting is tiny: it fits any socket buffer.
            s.write_all(ToSupervisor::Hello.to_line().as_bytes())?;
            Ok(s)
        });
        match attempt {
            Ok(stream) => {
                self.stream = Some(stream);
                self.reader = LineReader::new();
                self.next_attempt = None;
                None
            }
            Err(e) => Some(self.down(
                now,
                format!(
                    "cannot connect to the supervisor at {}: {e}",
                    self.path.display()
                ),
            )),
        }
    }

    /// Drops the connection and schedules the next attempt with back-off and jitter.
    fn down(&mut self, now: Mono, why: String) -> Event {
        self.stream = None;
        self.greeted = false;
        let delay = backoff(self.failures, RETRY_INITIAL, RETRY_MAX, self.jitter);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(now.plus_secs(delay));
        Event::Down(why)
    }

    /// Reads everything waiting; answers what it cannot understand with `ERR`.
    pub fn read(&mut self, now: Mono) -> Vec<Event> {
        let mut events = Vec::new();
        let mut buf = [0u8; 1024];
        while let Some(stream) = self.stream.as_mut() {
            match stream.read(&mut buf) {
                Ok(0) => {
                    events.push(self.down(now, "the supervisor closed the connection".into()));
                    break;
                }
                Ok(n) => {
                    for read in self.reader.push(&buf[..n]) {
                        if let Some(event) = self.line(read, now) {
                            events.push(event);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    events.push(self.down(now, format!("reading from the supervisor: {e}")));
                    break;
                }
            }
        }
        events
    }

    fn line(&mut self, read: Read, now: Mono) -> Option<Event> {
        let text = match read {
            Read::Line(text) => text,
            Read::Overlong => return self.err("line longer than 1024 bytes", now),
            Read::NotUtf8 => return self.err("line is not UTF-8", now),
        };
        match FromSupervisor::parse(&text) {
            Ok(FromSupervisor::Hello { version }) => {
                self.greeted = true;
                self.failures = 0;
                Some(Event::Up { version })
            }
            // The protocol's ERR is information, never answered (no ERR ping-pong).
            Ok(FromSupervisor::Err(text)) => {
                log::warn!("the supervisor says: ERR {text}");
                None
            }
            Ok(message) if self.greeted => Some(Event::Message(message)),
            Ok(_) => self.err("HELLO supervisor/1 expected first", now),
            Err(why) => self.err(&why, now),
        }
    }

    fn err(&mut self, why: &str, now: Mono) -> Option<Event> {
        self.send(&ToSupervisor::Err(why.to_string()), now)
    }

    /// Sends one line. A connection that cannot take it is dropped (and retried).
    pub fn send(&mut self, message: &ToSupervisor, now: Mono) -> Option<Event> {
        let stream = self.stream.as_mut()?;
        match stream.write_all(message.to_line().as_bytes()) {
            Ok(()) => None,
            Err(e) => Some(self.down(now, format!("writing to the supervisor: {e}"))),
        }
    }
}

/// Connects without ever waiting: a supervisor whose listen queue is full (it stopped
/// accepting) makes a blocking `connect` wait, and the loop must not. Such an attempt
/// fails with `EAGAIN` and is retried with back-off like any other.
fn connect_nonblocking(path: &std::path::Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
    Ok(UnixStream::from(fd))
}
