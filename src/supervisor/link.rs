//! The agent's connection to the phone supervisor: connect, greet, read what it says,
//! send what the agent has to say, and reconnect with back-off when the socket is missing
//! or the connection drops. Non-blocking, driven by the daemon's `poll`: it never holds
//! the daemon, and nothing the supervisor sends can stop it.
//!
//! - Reading takes at most [`READ_BUDGET`] bytes per call, so a supervisor that never
//!   stops writing cannot keep the daemon's loop to itself; [`Link::read`] says whether
//!   it read everything there was (a REBOOT is decided only then).
//! - What the agent says goes through a buffer written as the socket takes it. An `ERR`
//!   answer is dropped when [`ERR_ROOM`] bytes are already waiting (garbage never drops
//!   the link, as the protocol says); a supervisor that leaves [`OUT_MAX`] bytes unread
//!   is not reading at all, and the link is dropped and made again.
//! - A line that names `CALL-STATE` but is not exactly `CALL-STATE idle` or `CALL-STATE
//!   active`, or a line that cannot be read at all (not UTF-8, over 1,024 bytes), is
//!   answered `ERR` and read as a call: when in doubt, the phone is busy.
//! - A `REBOOT` is never queued: it is written whole, at once, by [`Link::send_now`], and
//!   only while the link is [`clear`](Link::clear): nothing of the agent's waits ahead
//!   of it, in its own buffer or unread in the socket. A REBOOT that waited behind other
//!   lines would reach the supervisor after a `CALL-STATE active` the agent had read
//!   meanwhile: a REBOOT mid-call. A line of at most 1,024 bytes written to a Unix
//!   stream socket with room for it goes out whole (Linux allocates it as one buffer); a
//!   write that takes it only in part, or not at all, drops the connection, so the rest
//!   is never sent and the request counts as never made.

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::protocol::{FromSupervisor, LineReader, Read, ToSupervisor};
use crate::config::Secs;
use crate::fetch::backoff;
use crate::time::Mono;

/// The most read from the supervisor in one call.
pub(crate) const READ_BUDGET: usize = 64 * 1024;
/// `ERR` answers are dropped while this much is waiting to be written.
pub(crate) const ERR_ROOM: usize = 4 * 1024;
/// Unread by the supervisor beyond this, the link is dropped.
pub(crate) const OUT_MAX: usize = 64 * 1024;

/// First and longest delay between connection attempts.
const RETRY_INITIAL: Secs = Secs(1);
const RETRY_MAX: Secs = Secs(60);

pub(crate) use super::protocol::LinkEvent as Event;

/// The link to the supervisor at one socket path.
pub(crate) struct Link {
    path: PathBuf,
    stream: Option<UnixStream>,
    reader: LineReader,
    greeted: bool,
    /// Written as the socket takes it.
    out: Vec<u8>,
    /// `ERR` answers dropped for want of room (since the last one logged).
    errs_dropped: u64,
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
            out: Vec::new(),
            errs_dropped: 0,
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
    pub(crate) fn next_attempt(&self) -> Option<Mono> {
        self.next_attempt
    }

    /// Connects if an attempt is due; sends HELLO.
    pub(crate) fn connect_if_due(&mut self, now: Mono) -> Option<Event> {
        if self.stream.is_some() || self.next_attempt.is_some_and(|t| t > now) {
            return None;
        }
        match connect_nonblocking(&self.path) {
            Ok(stream) => {
                self.stream = Some(stream);
                self.reader = LineReader::new();
                self.out.clear();
                self.next_attempt = None;
                self.queue(&ToSupervisor::Hello.to_line(), true, now)
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

    /// Whether something waits to be written (poll for `POLLOUT` then).
    pub(crate) fn wants_write(&self) -> bool {
        self.stream.is_some() && !self.out.is_empty()
    }

    /// Whether a line written now is the next thing the supervisor reads, on all it has
    /// said: connected, no half line of the supervisor's waiting for its end, nothing in
    /// the agent's buffer, and everything written so far taken by the supervisor (the
    /// socket's send queue is empty). Where the kernel cannot say how
    /// much is unread, only the agent's own buffer counts.
    pub(crate) fn clear(&self) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        // Half a line read is the supervisor mid-sentence (perhaps `CALL-STATE act…`).
        self.reader.pending() == 0
            && self.out.is_empty()
            && unread_by_peer(stream).unwrap_or(0) == 0
    }

    /// Writes `message` now, whole, if the link is [`clear`](Self::clear); never queues
    /// it. Returns whether it went out; a write that takes only part of it (or fails)
    /// drops the connection (the event says why), so no remainder is ever sent later.
    pub(crate) fn send_now(&mut self, message: &ToSupervisor, now: Mono) -> (bool, Option<Event>) {
        if !self.clear() {
            return (false, None);
        }
        let line = message.to_line();
        let Some(stream) = self.stream.as_mut() else {
            return (false, None);
        };
        let written = loop {
            match stream.write(line.as_bytes()) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match written {
            Ok(n) if n == line.len() => (true, None),
            Ok(n) => (
                false,
                Some(self.down(
                    now,
                    format!(
                        "the supervisor's socket took {n} of {} bytes of a line: reconnecting",
                        line.len()
                    ),
                )),
            ),
            Err(e) if e.kind() == ErrorKind::WouldBlock => (
                false,
                Some(self.down(
                    now,
                    "the supervisor's socket took no line: reconnecting".into(),
                )),
            ),
            Err(e) => (
                false,
                Some(self.down(now, format!("writing to the supervisor: {e}"))),
            ),
        }
    }

    /// Drops the connection and schedules the next attempt with back-off and jitter.
    fn down(&mut self, now: Mono, why: String) -> Event {
        self.stream = None;
        self.greeted = false;
        self.out.clear();
        let delay = backoff(self.failures, RETRY_INITIAL, RETRY_MAX, self.jitter);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(now.plus_secs(delay));
        Event::Down(why)
    }

    /// Reads what is waiting, at most [`READ_BUDGET`] bytes; answers what it cannot
    /// understand with `ERR`. Returns the events, and whether everything the supervisor
    /// had sent was read (the socket said it had no more).
    pub(crate) fn read(&mut self, now: Mono) -> (Vec<Event>, bool) {
        let mut events = Vec::new();
        let mut buf = [0u8; 4096];
        let mut budget = READ_BUDGET;
        let mut drained = false;
        while let Some(stream) = self.stream.as_mut() {
            if budget == 0 {
                break;
            }
            let want = budget.min(buf.len());
            match stream.read(&mut buf[..want]) {
                Ok(0) => {
                    events.push(self.down(now, "the supervisor closed the connection".into()));
                    drained = true;
                    break;
                }
                Ok(n) => {
                    budget -= n;
                    for read in self.reader.push(&buf[..n]) {
                        self.line(read, now, &mut events);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    events.push(self.down(now, format!("reading from the supervisor: {e}")));
                    drained = true;
                    break;
                }
            }
        }
        if self.stream.is_none() {
            drained = true;
        }
        (events, drained)
    }

    fn line(&mut self, read: Read, now: Mono, events: &mut Vec<Event>) {
        let text = match read {
            Read::Line(text) => text,
            // Unreadable, it may have been a CALL-STATE active: read as a call.
            Read::Overlong => return self.unreadable("line longer than 1024 bytes", now, events),
            Read::NotUtf8 => return self.unreadable("line is not UTF-8", now, events),
        };
        match FromSupervisor::parse(&text) {
            Ok(FromSupervisor::Hello { version }) => {
                self.greeted = true;
                self.failures = 0;
                events.push(Event::Up { version });
            }
            // The protocol's ERR is information, never answered (no ERR ping-pong).
            Ok(FromSupervisor::Err(text)) => log::warn!("the supervisor says: ERR {text}"),
            Ok(message) if self.greeted => events.push(Event::Message(message)),
            Ok(_) => self.err("HELLO supervisor/1 expected first", now, events),
            Err(why) => {
                self.err(&why, now, events);
                // The safe reading of a call state not understood: a call.
                let names_call_state = text
                    .trim_start()
                    .get(..10)
                    .is_some_and(|w| w.eq_ignore_ascii_case("CALL-STATE"));
                if names_call_state && self.greeted && self.stream.is_some() {
                    events.push(Event::Message(FromSupervisor::CallState(
                        crate::engine::reboot::CallState::Active,
                    )));
                }
            }
        }
    }

    /// A line that cannot be read at all: answered `ERR`, and taken for a call (it may
    /// have said `CALL-STATE active`; a sane supervisor never sends one).
    fn unreadable(&mut self, why: &str, now: Mono, events: &mut Vec<Event>) {
        self.err(why, now, events);
        if self.greeted && self.stream.is_some() {
            events.push(Event::Message(FromSupervisor::CallState(
                crate::engine::reboot::CallState::Active,
            )));
        }
    }

    fn err(&mut self, why: &str, now: Mono, events: &mut Vec<Event>) {
        let line = ToSupervisor::Err(why.to_string()).to_line();
        if let Some(event) = self.queue(&line, false, now) {
            events.push(event);
        }
    }

    /// Sends one line (queued, written as the socket takes it). A supervisor that leaves
    /// [`OUT_MAX`] bytes unread has its connection dropped (and made again).
    pub(crate) fn send(&mut self, message: &ToSupervisor, now: Mono) -> Option<Event> {
        self.queue(&message.to_line(), true, now)
    }

    /// Queues `line`; an `ERR` (`essential` false) only while there is room for it.
    fn queue(&mut self, line: &str, essential: bool, now: Mono) -> Option<Event> {
        self.stream.as_ref()?;
        if !essential && self.out.len() >= ERR_ROOM {
            self.errs_dropped += 1;
            if self.errs_dropped.is_power_of_two() {
                log::warn!(
                    "the supervisor does not read its ERR answers: {} dropped",
                    self.errs_dropped
                );
            }
            return None;
        }
        if self.out.len() + line.len() > OUT_MAX {
            return Some(self.down(
                now,
                format!("the supervisor left {OUT_MAX} bytes unread: reconnecting"),
            ));
        }
        self.out.extend_from_slice(line.as_bytes());
        self.flush(now)
    }

    /// Writes what the socket takes now.
    pub(crate) fn flush(&mut self, now: Mono) -> Option<Event> {
        while !self.out.is_empty() {
            let stream = self.stream.as_mut()?;
            match stream.write(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Some(self.down(now, format!("writing to the supervisor: {e}"))),
            }
        }
        None
    }
}

/// How many bytes written to `stream` the peer has not read yet (`SIOCOUTQ`), if the
/// kernel says.
fn unread_by_peer(stream: &UnixStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut unread: nix::libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one `int` through the pointer, which points at
    // `unread`, alive across the call.
    let rc = unsafe {
        nix::libc::ioctl(
            stream.as_raw_fd(),
            nix::libc::TIOCOUTQ as _,
            &mut unread as *mut nix::libc::c_int,
        )
    };
    (rc == 0).then(|| usize::try_from(unread).unwrap_or(0))
}

/// Connects without ever waiting: a supervisor whose listen queue is full (it stopped
/// accepting) makes a blocking `connect` wait, and the loop must not. Such an attempt
/// fails with `EAGAIN` and is retried with back-off like any other. (The control
/// socket's probe of an existing path uses it too.)
pub(crate) fn connect_nonblocking(path: &std::path::Path) -> std::io::Result<UnixStream> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reboot::CallState;
    use std::os::unix::net::UnixListener;

    /// A link connected and greeted, and the supervisor's end of it.
    fn greeted() -> (tempfile::TempDir, Link, UnixStream) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sup.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut link = Link::new(path, 1);
        assert_eq!(link.connect_if_due(Mono::from_secs(1)), None);
        let (mut sup, _) = listener.accept().unwrap();
        let mut hello = [0u8; 22];
        sup.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"HELLO license-agent/1\n");
        sup.write_all(b"HELLO supervisor/1\n").unwrap();
        let (events, drained) = read_all(&mut link);
        assert!(drained);
        assert!(matches!(events[..], [Event::Up { .. }]), "{events:?}");
        (dir, link, sup)
    }

    fn read_all(link: &mut Link) -> (Vec<Event>, bool) {
        // The bytes may still be on their way through the socket.
        for _ in 0..1000 {
            let (events, drained) = link.read(Mono::from_secs(2));
            if !events.is_empty() {
                return (events, drained);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        (Vec::new(), true)
    }

    #[test]
    fn a_call_state_not_understood_is_a_call() {
        let (_dir, mut link, mut sup) = greeted();
        for line in [
            "CALL-STATE active \n",
            "CALL-STATE Idle\n",
            "CALL-STATE\n",
            "call-state idle\n",
        ] {
            sup.write_all(line.as_bytes()).unwrap();
            let (events, _) = read_all(&mut link);
            assert_eq!(
                events,
                [Event::Message(FromSupervisor::CallState(CallState::Active))],
                "{line:?}"
            );
        }
        sup.write_all(b"CALL-STATE idle\n").unwrap();
        let (events, _) = read_all(&mut link);
        assert_eq!(
            events,
            [Event::Message(FromSupervisor::CallState(CallState::Idle))]
        );
        // Each line not understood was answered ERR all the same.
        sup.set_nonblocking(true).unwrap();
        let mut answers = String::new();
        let _ = sup.read_to_string(&mut answers);
        assert_eq!(
            answers.lines().filter(|l| l.starts_with("ERR ")).count(),
            4,
            "{answers}"
        );
    }

    #[test]
    fn garbage_never_drops_the_link_nor_holds_the_reader() {
        let (_dir, mut link, sup) = greeted();
        // 10 MB of garbage, its ERR answers never read.
        let mut writer = sup.try_clone().unwrap();
        let flood = std::thread::spawn(move || {
            let chunk = b"garbage\n".repeat(8 * 1024);
            for _ in 0..160 {
                writer.write_all(&chunk).unwrap();
            }
        });
        let mut undrained_reads = 0;
        loop {
            let (events, drained) = link.read(Mono::from_secs(3));
            assert!(
                events.iter().all(|e| !matches!(e, Event::Down(_))),
                "{events:?}"
            );
            if drained {
                if flood.is_finished() {
                    let (_, drained) = link.read(Mono::from_secs(3));
                    if drained {
                        break;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            } else {
                undrained_reads += 1;
            }
        }
        flood.join().unwrap();
        assert!(link.is_up());
        assert!(undrained_reads > 0, "each read is bounded");
        assert!(link.errs_dropped > 0);
        // What the agent must say still goes out.
        assert_eq!(
            link.send(
                &ToSupervisor::Features(vec!["lync".into()]),
                Mono::from_secs(4)
            ),
            None
        );
        drop(sup);
    }

    #[test]
    fn a_supervisor_that_reads_nothing_is_reconnected() {
        let (_dir, mut link, sup) = greeted();
        let line = ToSupervisor::Features(vec!["usb-call-recording".into(); 3]);
        let mut down = None;
        for _ in 0..100_000 {
            if let Some(event) = link.send(&line, Mono::from_secs(5)) {
                down = Some(event);
                break;
            }
        }
        assert!(
            matches!(&down, Some(Event::Down(why)) if why.contains("unread")),
            "{down:?}"
        );
        assert!(!link.is_up());
        drop(sup);
    }
    #[test]
    fn unreadable_lines_are_calls_and_half_a_line_keeps_the_link_unclear() {
        let (_dir, mut link, mut sup) = greeted();
        for line in [&b"CALL-STATE active\xff\n"[..], &[b' '; 1100][..]] {
            sup.write_all(line).unwrap();
            if line.len() == 1100 {
                sup.write_all(b"\n").unwrap();
            }
            let (events, _) = read_all(&mut link);
            assert!(
                events.contains(&Event::Message(FromSupervisor::CallState(
                    CallState::Active
                ))),
                "{events:?}"
            );
        }
        // Drain the ERR answers, so that only the half line stands in the way.
        sup.set_nonblocking(true).unwrap();
        let mut answers = Vec::new();
        let _ = sup.read_to_end(&mut answers);
        assert!(link.clear());
        sup.write_all(b"CALL-STATE act").unwrap();
        for _ in 0..1000 {
            link.read(Mono::from_secs(3));
            if !link.clear() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!link.clear(), "half a line read: not clear");
        let (sent, event) = link.send_now(
            &ToSupervisor::Reboot {
                id: 1,
                cause: crate::engine::reboot::Cause::LicenseExpired,
            },
            Mono::from_secs(3),
        );
        assert!(!sent && event.is_none());
        sup.write_all(b"ive\n").unwrap();
        let (events, _) = read_all(&mut link);
        assert_eq!(
            events,
            [Event::Message(FromSupervisor::CallState(CallState::Active))]
        );
    }
}
