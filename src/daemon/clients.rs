//! The control socket's clients, served without ever blocking the loop.
//!
//! Each connection has its own buffer and moves through reading its request, waiting
//! for the answer (a check-sync waits for its fetch cycle), writing the answer, and
//! draining what it still sends after the answer (closing with unread input would reset
//! the connection before the client reads the answer). Every socket is non-blocking;
//! the loop polls the ones that have something to do. A request must arrive whole within
//! [`REQUEST_DEADLINE`] of the connection, and the answer must be taken within
//! [`ANSWER_DEADLINE`]; a client past its deadline is dropped.
//!
//! Slots, so that `status` always gets one:
//! - At most [`MAX_CLIENTS`] are read from or written to at once. Beyond that, a new
//!   connection makes the oldest client that has not finished its request after
//!   [`EVICT_AFTER`] go, however much of it it sent (a real client writes its whole
//!   request as soon as it has connected; one that drips it a byte at a time is no
//!   client), or one already answered and draining; what they sent is read first, so a
//!   request that arrived whole is never lost. Else the newcomers wait in the kernel's
//!   backlog until one can go.
//! - Clients waiting for a fetch cycle (check-sync) hold no such slot, and have no
//!   deadline here: the daemon's core keeps their budget (`MAX_CHECK_SYNCS`: it answers
//!   a check-sync beyond it at once) and answers each, at its cycle's end or with an
//!   error when its time is up (`Core::handle_timeout`).
//! - Descriptors running out (`EMFILE`, `ENFILE` on `accept`) never spin the loop: a
//!   client that may make way gives its descriptor to the newcomer; else the listener
//!   is left out of `poll` for [`STARVED_PAUSE`], and one descriptor kept in reserve
//!   takes the waiting connection, to serve it if its request is there whole (a
//!   `status` is answered even so) or tell it why it is refused. The refusals are
//!   counted and said once when the starvation begins and once when it ends.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use crate::control::{
    encode_response, parse_request, Request, Response, MAX_REQUEST, PERMISSION_DENIED,
};
use crate::time::Mono;

/// Clients read from or written to at once.
pub(crate) const MAX_CLIENTS: usize = 32;
/// A client that has not finished its request this long after it connected may make
/// way for a new one (a real client writes its request as soon as it has connected).
pub(crate) const EVICT_AFTER: Duration = Duration::from_millis(50);
/// How long the listener is left alone after `accept` found no descriptor free.
pub(crate) const STARVED_PAUSE: Duration = Duration::from_millis(100);
/// Starved until `accept` has found no descriptor for this long.
const STARVED_QUIET: Duration = Duration::from_secs(1);
/// The answer of a connection refused for want of descriptors.
const STARVED_ANSWER: &[u8] =
    b"{\"ok\":false,\"error\":\"the agent has run out of file descriptors; try again\"}\n";
/// From the connection to the end of the request line.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// From the answer being ready to its last byte taken.
pub(crate) const ANSWER_DEADLINE: Duration = Duration::from_secs(5);
/// After the answer, how long unread input is drained before closing.
const DRAIN_DEADLINE: Duration = Duration::from_secs(1);
/// At most this much unread input is drained.
const DRAIN_MAX: usize = 1 << 16;

pub(crate) use super::core::ClientId;

enum Phase {
    Reading(Vec<u8>),
    /// The request was handed to the daemon; the answer comes later.
    Waiting,
    Writing {
        bytes: Vec<u8>,
        at: usize,
    },
    Draining {
        drained: usize,
    },
}

struct Client {
    id: ClientId,
    stream: UnixStream,
    phase: Phase,
    accepted: Mono,
    /// When the current phase gives up (none while waiting for the daemon).
    deadline: Option<Mono>,
}

/// A request read whole (or why it could not be).
pub(crate) type Received = (ClientId, Result<Request, String>);

/// The clients being served.
pub(crate) struct Clients {
    list: Vec<Client>,
    next: u64,
    /// A descriptor kept free (`/dev/null`), given up to take a connection when none
    /// is left.
    reserve: Option<std::fs::File>,
    /// Out of descriptors: since when, until when the listener is left alone, and how
    /// many connections were refused meanwhile.
    starved: Option<Starved>,
}

struct Starved {
    /// The listener is left alone until then.
    until: Mono,
    /// When `accept` last found no descriptor.
    last: Mono,
    refused: u64,
    evicted: u64,
}

impl Default for Clients {
    fn default() -> Clients {
        Clients {
            list: Vec::new(),
            next: 0,
            reserve: open_reserve(),
            starved: None,
        }
    }
}

fn open_reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl Clients {
    /// How many are being served.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Accepts every waiting connection it has room for; returns the requests that came
    /// whole meanwhile (read from the clients considered for eviction). When every slot
    /// is taken and no client can be evicted yet, the rest wait in the kernel's backlog
    /// (see [`listening`](Self::listening)).
    pub(crate) fn accept_all(&mut self, listener: &UnixListener, now: Mono) -> Vec<Received> {
        let mut received = Vec::new();
        loop {
            if self.active() >= MAX_CLIENTS {
                received.extend(self.read_readers(now));
                if self.active() >= MAX_CLIENTS && !self.evict_one(now) {
                    return received;
                }
            }
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return received,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EMFILE | nix::libc::ENFILE)
                    ) =>
                {
                    // A client that may make way gives its descriptor to the newcomer.
                    received.extend(self.read_readers(now));
                    if self.evict_one(now) {
                        self.starved_at(&e, now).evicted += 1;
                        continue;
                    }
                    received.extend(self.starve(listener, &e, now));
                    return received;
                }
                Err(e) => {
                    log::warn!("control socket: {e}");
                    return received;
                }
            };
            if self
                .starved
                .as_ref()
                .is_some_and(|s| now >= s.last.plus(STARVED_QUIET))
            {
                if let Some(starved) = self.starved.take() {
                    log::warn!(
                        "control socket: descriptors free again; {} connection(s) refused, {} client(s) made way meanwhile",
                        starved.refused, starved.evicted
                    );
                }
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.next += 1;
            let mut client = Client {
                id: ClientId(self.next),
                stream,
                phase: Phase::Reading(Vec::new()),
                accepted: now,
                deadline: Some(now.plus(REQUEST_DEADLINE)),
            };
            if !peer_allowed(&client.stream) {
                log::warn!("control socket: a peer of another user was refused");
                client.answer(&Response::error(PERMISSION_DENIED), now);
            }
            self.list.push(client);
        }
    }

    /// Notes that `accept` found no descriptor at `now` (said once, when it begins).
    fn starved_at(&mut self, error: &std::io::Error, now: Mono) -> &mut Starved {
        let starved = self.starved.get_or_insert_with(|| {
            log::warn!(
                "control socket: {error}: clients make way or are refused until descriptors are free (counted, said once)"
            );
            Starved {
                until: now,
                last: now,
                refused: 0,
                evicted: 0,
            }
        });
        starved.last = now;
        starved
    }

    /// `accept` found no descriptor and no client could make way: the listener is left
    /// alone for [`STARVED_PAUSE`], and the waiting connection is taken with the reserve
    /// descriptor: served if its request is there whole (a `status` gets its answer even
    /// so), else told why it is refused. Returns the request served.
    fn starve(
        &mut self,
        listener: &UnixListener,
        error: &std::io::Error,
        now: Mono,
    ) -> Option<Received> {
        let reserve = self.reserve.take();
        let starved = self.starved_at(error, now);
        starved.until = now.plus(STARVED_PAUSE);
        reserve.as_ref()?;
        drop(reserve);
        let taken = listener.accept().ok().and_then(|(stream, _)| {
            stream.set_nonblocking(true).ok()?;
            self.next += 1;
            Some(Client {
                id: ClientId(self.next),
                stream,
                phase: Phase::Reading(Vec::new()),
                accepted: now,
                deadline: Some(now.plus(REQUEST_DEADLINE)),
            })
        });
        let served = taken.and_then(|mut client| {
            let request = if peer_allowed(&client.stream) {
                client.step(now)
            } else {
                None
            };
            match request {
                Some(request) => {
                    // It holds the reserve's descriptor until it is done.
                    let id = client.id;
                    self.list.push(client);
                    Some((id, request))
                }
                None => {
                    let _ = client.stream.write(STARVED_ANSWER);
                    if let Some(starved) = self.starved.as_mut() {
                        starved.refused += 1;
                    }
                    None
                }
            }
        });
        if served.is_none() {
            self.reserve = open_reserve();
        }
        served
    }

    /// How many hold a slot (all but those waiting for a fetch cycle).
    fn active(&self) -> usize {
        self.list
            .iter()
            .filter(|c| !matches!(c.phase, Phase::Waiting))
            .count()
    }

    /// How many wait for their answer (a check-sync, for its cycle).
    #[cfg(test)]
    pub(crate) fn waiters(&self) -> usize {
        self.list
            .iter()
            .filter(|c| matches!(c.phase, Phase::Waiting))
            .count()
    }

    /// Reads what the clients still reading have sent (a request that has arrived is
    /// never lost to an eviction); returns the requests read whole.
    pub(crate) fn read_readers(&mut self, now: Mono) -> Vec<Received> {
        let mut received = Vec::new();
        for client in &mut self.list {
            if let Phase::Reading(_) = client.phase {
                if let Some(request) = client.step(now) {
                    received.push((client.id, request));
                }
            }
        }
        self.list.retain(|c| !c.finished());
        received
    }

    /// Drops the oldest client that may make way (see [`Client::evictable_at`]);
    /// whether there was one.
    fn evict_one(&mut self, now: Mono) -> bool {
        let victim = self
            .list
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.evictable_at().filter(|t| *t <= now).map(|t| (t, i)))
            .min()
            .map(|(_, i)| i);
        if let Some(i) = victim {
            if let Phase::Reading(buf) = &self.list[i].phase {
                log::debug!(
                    "control socket: a client that had sent {} byte(s) and no whole request made way for a new one",
                    buf.len()
                );
            }
            self.list.remove(i);
        }
        victim.is_some()
    }

    /// When the earliest client may be evicted.
    fn evictable_at(&self) -> Option<Mono> {
        self.list.iter().filter_map(Client::evictable_at).min()
    }

    /// Whether a new connection can be taken now (otherwise the listener is left out of
    /// `poll` until [`next_deadline`](Self::next_deadline) or a slot frees).
    pub(crate) fn listening(&self, now: Mono) -> bool {
        if self.starved.as_ref().is_some_and(|s| now < s.until) {
            return false;
        }
        self.active() < MAX_CLIENTS || self.evictable_at().is_some_and(|t| t <= now)
    }

    /// The sockets to poll and for what, in the order [`ready`](Self::ready) expects.
    pub(crate) fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, nix::poll::PollFlags)> {
        use nix::poll::PollFlags;
        self.list
            .iter()
            .map(|c| {
                let flags = match c.phase {
                    Phase::Reading(_) | Phase::Draining { .. } => PollFlags::POLLIN,
                    Phase::Writing { .. } => PollFlags::POLLOUT,
                    // Nothing to do until the daemon answers; a hang-up is seen then.
                    Phase::Waiting => PollFlags::empty(),
                };
                (c.stream.as_fd(), flags)
            })
            .collect()
    }

    /// Serves the clients whose sockets are ready (`ready[i]` for the i-th of
    /// [`poll_fds`](Self::poll_fds)); returns the requests read whole.
    pub(crate) fn serve(&mut self, ready: &[bool], now: Mono) -> Vec<Received> {
        let mut received = Vec::new();
        for (client, _) in self
            .list
            .iter_mut()
            .zip(ready.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, &r)| r)
        {
            if let Some(request) = client.step(now) {
                received.push((client.id, request));
            }
        }
        self.list.retain(|c| !c.finished());
        received
    }

    /// Answers client `id` if it still waits for its answer (gone already: nothing to
    /// do).
    pub(crate) fn answer(&mut self, id: ClientId, response: &Response, now: Mono) {
        if let Some(client) = self
            .list
            .iter_mut()
            .find(|c| c.id == id && matches!(c.phase, Phase::Waiting))
        {
            client.answer(response, now);
        }
        self.list.retain(|c| !c.finished());
    }

    /// Drops every client past its deadline (one waiting for its answer has none).
    pub(crate) fn expire(&mut self, now: Mono) {
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
        for client in &mut self.list {
            match (&client.phase, client.deadline) {
                (Phase::Reading(_), Some(deadline)) if now >= deadline => {
                    log::debug!(
                        "control socket: no whole request within {REQUEST_DEADLINE:?}; dropped"
                    );
                    client.close();
                }
                (_, Some(deadline)) if now >= deadline => client.close(),
                _ => {}
            }
        }
        self.list.retain(|c| !c.finished());
    }

    /// The earliest deadline (a client's, the moment a full house can evict, or the end
    /// of a pause for want of descriptors).
    ///
    /// The last two only while still ahead of `now`: once passed, the listener is
    /// polled again, and a deadline in the past would make `poll` return at once, for
    /// ever (a busy loop).
    pub(crate) fn next_deadline(&self, now: Mono) -> Option<Mono> {
        let evict = (self.active() >= MAX_CLIENTS)
            .then(|| self.evictable_at())
            .flatten();
        let listen_again = evict
            .into_iter()
            .chain(self.starved.as_ref().map(|s| s.until))
            .filter(|t| *t > now);
        self.list
            .iter()
            .filter_map(|c| c.deadline)
            .chain(listen_again)
            .min()
    }
}

impl Client {
    /// From when this client may make way for a new one: [`EVICT_AFTER`] after it
    /// connected while its request is not whole, however much of it came; at once when
    /// its answer is written and only its leftover input is drained.
    fn evictable_at(&self) -> Option<Mono> {
        match &self.phase {
            Phase::Reading(_) => Some(self.accepted.plus(EVICT_AFTER)),
            Phase::Draining { .. } => Some(self.accepted),
            _ => None,
        }
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::Draining { drained } if drained == usize::MAX)
    }

    /// Does what the ready socket allows; returns a request once read whole.
    fn step(&mut self, now: Mono) -> Option<Result<Request, String>> {
        match &mut self.phase {
            Phase::Reading(buf) => {
                let mut chunk = [0u8; 4096];
                loop {
                    match self.stream.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            if buf.contains(&b'\n') || buf.len() > MAX_REQUEST {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            let why = format!("reading the request: {e}");
                            self.close();
                            return Some(Err(why));
                        }
                    }
                }
                let request = parse_request(buf);
                self.phase = Phase::Waiting;
                self.deadline = None;
                Some(request)
            }
            Phase::Writing { bytes, at } => {
                while *at < bytes.len() {
                    match self.stream.write(&bytes[*at..]) {
                        Ok(0) => break,
                        Ok(n) => *at += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.close();
                            return None;
                        }
                    }
                }
                let _ = self.stream.shutdown(std::net::Shutdown::Write);
                self.phase = Phase::Draining { drained: 0 };
                self.deadline = Some(now.plus(DRAIN_DEADLINE));
                None
            }
            Phase::Draining { drained } => {
                let mut chunk = [0u8; 4096];
                loop {
                    match self.stream.read(&mut chunk) {
                        Ok(n) if n > 0 && *drained + n <= DRAIN_MAX => *drained += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // End of input, an error, or too much: done.
                        _ => {
                            self.close();
                            return None;
                        }
                    }
                }
            }
            // Polled for nothing, a waiting client is ready only when it hung up or
            // failed: it is gone (and would make every `poll` return at once).
            Phase::Waiting => {
                self.close();
                None
            }
        }
    }

    fn answer(&mut self, response: &Response, now: Mono) {
        let bytes = encode_response(response);
        self.phase = Phase::Writing { bytes, at: 0 };
        self.deadline = Some(now.plus(ANSWER_DEADLINE));
        // Most answers fit the socket buffer: written at once.
        let _ = self.step(now);
    }

    fn close(&mut self) {
        self.phase = Phase::Draining {
            drained: usize::MAX,
        };
        self.deadline = None;
    }
}

/// Whether a peer may use the control socket: root, or the daemon's own user.
fn peer_allowed(stream: &UnixStream) -> bool {
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn listener() -> (tempfile::TempDir, UnixListener, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        (dir, listener, path)
    }

    fn serve_all(clients: &mut Clients, now: Mono) -> Vec<Received> {
        clients.read_readers(now)
    }

    /// Answers `id` and checks that `asking` reads that answer whole.
    fn assert_answered(clients: &mut Clients, id: ClientId, asking: &mut UnixStream, now: Mono) {
        clients.answer(id, &Response::error("test"), now);
        let mut answer = String::new();
        asking.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("\"error\":\"test\""), "{answer}");
    }

    #[test]
    fn silent_clients_neither_hold_nor_crowd_out_a_request() {
        let (_dir, listener, path) = listener();
        let mut clients = Clients::default();
        let now = Mono::from_secs(100);
        let silent: Vec<UnixStream> = (0..200)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        // The backlog holds them; accepting never waits on any of them.
        assert!(clients.accept_all(&listener, now).is_empty());
        assert!(serve_all(&mut clients, now).is_empty());
        assert!(clients.len() <= MAX_CLIENTS);
        let mut asking = UnixStream::connect(&path).unwrap();
        asking.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        // A full house: nothing is accepted until the silent ones have been silent for
        // EVICT_AFTER; then each round makes room for a house-full of newcomers.
        assert!(!clients.listening(now));
        assert_eq!(clients.next_deadline(now), Some(now.plus(EVICT_AFTER)));
        let mut got = Vec::new();
        let mut t = now;
        let mut rounds = 0;
        while got.is_empty() {
            rounds += 1;
            assert!(rounds <= 200 / MAX_CLIENTS + 2, "still not served");
            t = t.plus(EVICT_AFTER);
            assert!(clients.listening(t));
            got.extend(clients.accept_all(&listener, t));
            got.extend(serve_all(&mut clients, t));
        }
        let now = t;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, Ok(Request::Status {}));
        assert_answered(&mut clients, got[0].0, &mut asking, now);
        drop(silent);
    }

    #[test]
    fn a_burst_of_silent_clients_never_evicts_a_request_that_has_arrived() {
        let (_dir, listener, path) = listener();
        let mut clients = Clients::default();
        let now = Mono::from_secs(100);
        let mut asking = UnixStream::connect(&path).unwrap();
        clients.accept_all(&listener, now);
        // Its request arrives, and before the daemon reads it, a burst of silent ones.
        asking.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        let silent: Vec<UnixStream> = (0..100)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let mut got = clients.accept_all(&listener, now);
        got.extend(serve_all(&mut clients, now));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, Ok(Request::Status {}));
        assert_answered(&mut clients, got[0].0, &mut asking, now);
        drop(silent);
    }

    #[test]
    fn a_client_that_hangs_up_while_waiting_is_dropped() {
        let (_dir, listener, path) = listener();
        let mut clients = Clients::default();
        let now = Mono::from_secs(1);
        let mut asking = UnixStream::connect(&path).unwrap();
        asking.write_all(b"{\"cmd\":\"check-sync\"}\n").unwrap();
        clients.accept_all(&listener, now);
        assert_eq!(serve_all(&mut clients, now).len(), 1);
        // Waiting for its fetch cycle: polled for nothing, so not ready...
        assert_eq!(clients.poll_fds()[0].1, nix::poll::PollFlags::empty());
        drop(asking);
        // ...until it hangs up, which `poll` reports whatever was asked.
        let mut fds: Vec<nix::poll::PollFd> = clients
            .poll_fds()
            .into_iter()
            .map(|(fd, flags)| nix::poll::PollFd::new(fd, flags))
            .collect();
        assert_eq!(nix::poll::poll(&mut fds, 1_000u16).unwrap(), 1);
        drop(fds);
        assert!(clients.serve(&[true], now).is_empty());
        assert_eq!(clients.len(), 0);
    }

    #[test]
    fn a_request_must_arrive_whole_before_its_deadline() {
        let (_dir, listener, path) = listener();
        let mut clients = Clients::default();
        let now = Mono::from_secs(100);
        let mut slow = UnixStream::connect(&path).unwrap();
        slow.write_all(b"{\"cmd\":").unwrap();
        clients.accept_all(&listener, now);
        assert!(serve_all(&mut clients, now).is_empty());
        assert_eq!(clients.next_deadline(now), Some(now.plus(REQUEST_DEADLINE)));
        clients.expire(now.plus(REQUEST_DEADLINE - Duration::from_nanos(1)));
        assert_eq!(clients.len(), 1);
        clients.expire(now.plus(REQUEST_DEADLINE));
        assert_eq!(clients.len(), 0);
    }

    #[test]
    fn oversize_and_malformed_requests_are_refused_with_the_reason() {
        let (_dir, listener, path) = listener();
        let mut clients = Clients::default();
        let now = Mono::from_secs(1);
        let mut bad = UnixStream::connect(&path).unwrap();
        bad.write_all(b"\xff\xfe\n").unwrap();
        clients.accept_all(&listener, now);
        let got = serve_all(&mut clients, now);
        assert!(
            got[0].1.as_ref().unwrap_err().contains("malformed"),
            "{got:?}"
        );
        let mut big = UnixStream::connect(&path).unwrap();
        clients.accept_all(&listener, now);
        let writer = std::thread::spawn(move || {
            let _ = big.write_all(&vec![b' '; MAX_REQUEST + 10]);
        });
        let mut got = Vec::new();
        for _ in 0..10_000 {
            got.extend(serve_all(&mut clients, now));
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(got[0].1.as_ref().unwrap_err().contains("longer"), "{got:?}");
        drop(clients);
        writer.join().unwrap();
    }
    #[test]
    fn dripping_clients_make_way_however_much_they_sent() {
        let (_dir, listener, path) = listener();
        let mut clients = Clients::default();
        let now = Mono::from_secs(100);
        // A house full of clients that each sent part of a request, and keep it so.
        let mut drippers: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        for d in &mut drippers {
            d.write_all(b"{").unwrap();
        }
        clients.accept_all(&listener, now);
        assert!(serve_all(&mut clients, now).is_empty());
        assert_eq!(clients.len(), MAX_CLIENTS);
        assert!(!clients.listening(now));
        let mut asking = UnixStream::connect(&path).unwrap();
        asking.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        // EVICT_AFTER later the oldest dripper makes way: the request is read.
        let later = now.plus(EVICT_AFTER);
        assert_eq!(clients.next_deadline(now), Some(later));
        assert!(clients.listening(later));
        let mut got = clients.accept_all(&listener, later);
        got.extend(serve_all(&mut clients, later));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, Ok(Request::Status {}));
        assert_answered(&mut clients, got[0].0, &mut asking, later);
    }

    #[test]
    fn clients_waiting_for_a_cycle_hold_no_slot_and_wait_for_their_answer() {
        use crate::daemon::core::MAX_CHECK_SYNCS;
        let (_dir, listener, path) = listener();
        let mut clients = Clients::default();
        let now = Mono::from_secs(100);
        let mut waiting: Vec<UnixStream> = (0..MAX_CHECK_SYNCS)
            .map(|_| {
                let mut s = UnixStream::connect(&path).unwrap();
                s.write_all(b"{\"cmd\":\"check-sync\"}\n").unwrap();
                s
            })
            .collect();
        let mut got = clients.accept_all(&listener, now);
        got.extend(serve_all(&mut clients, now));
        assert_eq!(got.len(), MAX_CHECK_SYNCS);
        let got_waiters = got;
        assert_eq!(clients.waiters(), MAX_CHECK_SYNCS);
        // A full house of readers can still come in beside them.
        assert!(clients.listening(now));
        let mut asking = UnixStream::connect(&path).unwrap();
        asking.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        let mut got = clients.accept_all(&listener, now);
        got.extend(serve_all(&mut clients, now));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_answered(&mut clients, got[0].0, &mut asking, now);
        // When a waiter is given up is the core's to say: an hour on, they still wait.
        let later = now.plus(Duration::from_secs(3600));
        clients.expire(later);
        assert_eq!(clients.waiters(), MAX_CHECK_SYNCS);
        assert_eq!(clients.next_deadline(later), None);
        for (id, _) in &got_waiters {
            clients.answer(*id, &Response::error("the answer"), later);
        }
        assert_eq!(clients.waiters(), 0);
        let mut answer = String::new();
        waiting[0].read_to_string(&mut answer).unwrap();
        assert!(answer.contains("the answer"), "{answer}");
        assert_eq!(answer.lines().count(), 1, "{answer}");
    }
}
