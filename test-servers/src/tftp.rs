//! A real TFTP server (Debian's tftpd-hpa, `in.tftpd`) on 127.0.0.1 serving a folder, and
//! a UDP relay of the tests' own that stands between the agent and it and loses,
//! duplicates, delays (so reorders) or stops passing the datagrams, both ways.
//!
//! The relay keeps TFTP's shape: the agent sends its request to the relay's main port;
//! each transfer port (TID) the server answers from gets a relay port of its own, so the
//! agent sees one TID per server transfer, as it would without the relay.

use std::collections::HashMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const TFTPD_BIN: &str = "/usr/sbin/in.tftpd";

/// tftpd-hpa on 127.0.0.1, serving `root` (in `--secure` mode: the file names are taken
/// inside it). Stops on drop.
pub struct Tftpd {
    pub root: PathBuf,
    pub port: u16,
    child: Child,
}

impl Tftpd {
    /// Starts the server with `extra` options of `in.tftpd` (e.g. `["--refuse", "tsize"]`).
    pub fn start(root: &Path, extra: &[&str]) -> Tftpd {
        fs::create_dir_all(root).expect("create the TFTP root");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_udp_port();
            let mut child = Command::new(TFTPD_BIN)
                .args(["--foreground", "--listen", "--secure", "--verbose"])
                .args(["--user", "root", "--address"])
                .arg(format!("127.0.0.1:{port}"))
                .args(extra)
                .arg(root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start {TFTPD_BIN} (package tftpd-hpa): {e}"));
            // Ready when it answers a request (for a file that does not exist).
            let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
            probe
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("in.tftpd exited at start: {status}");
                    break;
                }
                let _ = probe.send_to(b"\x00\x01-probe-\x00octet\x00", ("127.0.0.1", port));
                let mut buf = [0u8; 600];
                if probe.recv_from(&mut buf).is_ok() {
                    return Tftpd {
                        root: root.to_path_buf(),
                        port,
                        child,
                    };
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            if last.is_empty() {
                last = format!("in.tftpd did not answer on 127.0.0.1:{port}");
            }
        }
        panic!("tftpd-hpa did not start: {last}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("tftp://127.0.0.1:{}/", self.port)
    }

    /// Writes `name` in the served folder (world-readable: tftpd-hpa serves no other).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        super::files::serve(&self.root, name, bytes);
    }

    pub fn remove(&self, name: &str) {
        super::files::remove_file(&self.root.join(name));
    }
}

impl Drop for Tftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A UDP port free on 127.0.0.1 now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// What the relay does to each datagram.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Percent of datagrams dropped.
    pub loss: u32,
    /// Percent of datagrams sent twice.
    pub duplicate: u32,
    /// Each datagram is held for a random time up to this (so they overtake each other).
    pub max_delay: Duration,
    /// After this many datagrams from the server, nothing more passes either way.
    pub stall_after: Option<usize>,
    pub seed: u64,
}

impl Impairment {
    pub fn none() -> Impairment {
        Impairment {
            loss: 0,
            duplicate: 0,
            max_delay: Duration::ZERO,
            stall_after: None,
            seed: 1,
        }
    }
}

/// Counts of what passed the relay.
#[derive(Debug, Default)]
pub struct Counts {
    pub from_agent: AtomicUsize,
    pub from_server: AtomicUsize,
    pub dropped: AtomicUsize,
    pub duplicated: AtomicUsize,
    /// Datagrams sent on after a later one (on the same path: from the same socket to
    /// the same peer) had already been sent: the ones the delays reordered.
    pub reordered: AtomicUsize,
}

/// The relay: stops on drop.
pub struct Relay {
    pub port: u16,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(server: SocketAddr, impairment: Impairment) -> Relay {
        let main = UdpSocket::bind("127.0.0.1:0").expect("bind the relay");
        let port = main.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop) = (counts.clone(), stop.clone());
            thread::spawn(move || relay(main, server, impairment, &counts, &stop))
        };
        Relay {
            port,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("tftp://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A datagram waiting for its time.
struct Held {
    at: Instant,
    /// Index of the socket it leaves by.
    via: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
    /// Arrival order at the relay (both copies of a duplicate share it).
    seq: u64,
}

fn relay(main: UdpSocket, server: SocketAddr, imp: Impairment, counts: &Counts, stop: &AtomicBool) {
    // sockets[0] is the main port (agent side, the server's well-known port); every
    // other agent-side socket stands for one server TID. `back` talks to the server.
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind the relay's server side");
    let mut sockets = vec![main];
    let mut tid_of: HashMap<usize, SocketAddr> = HashMap::new(); // agent-side socket -> server TID
    let mut socket_of: HashMap<SocketAddr, usize> = HashMap::new(); // server TID -> socket
    let agent: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let mut held: Vec<Held> = Vec::new();
    let mut rng = imp.seed | 1;
    let mut roll = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below.max(1)
    };
    let mut from_server = 0usize;
    let mut arrived = 0u64;
    // The latest arrival sent so far on each path (socket, peer).
    let mut latest_sent: HashMap<(usize, SocketAddr), u64> = HashMap::new();
    let mut buf = vec![0u8; 70_000];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Send what is due.
        let (due, later): (Vec<Held>, Vec<Held>) = held.into_iter().partition(|h| h.at <= now);
        held = later;
        for h in due {
            let socket = if h.via == usize::MAX {
                &back
            } else {
                &sockets[h.via]
            };
            let latest = latest_sent.entry((h.via, h.to)).or_insert(h.seq);
            if h.seq < *latest {
                counts.reordered.fetch_add(1, Ordering::Relaxed);
            }
            *latest = (*latest).max(h.seq);
            let _ = socket.send_to(&h.bytes, h.to);
        }
        let wait = held
            .iter()
            .map(|h| h.at.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        let mut fds: Vec<nix::poll::PollFd> = sockets
            .iter()
            .chain(std::iter::once(&back))
            .map(|s| nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        let ms = wait.as_millis().clamp(1, 50) as u16;
        if nix::poll::poll(&mut fds, ms).unwrap_or(0) == 0 {
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut arrivals = Vec::new();
        for (index, socket) in sockets.iter().enumerate() {
            if ready[index] {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    arrivals.push((Some(index), from, buf[..len].to_vec()));
                }
            }
        }
        if ready[sockets.len()] {
            if let Ok((len, from)) = back.recv_from(&mut buf) {
                arrivals.push((None, from, buf[..len].to_vec()));
            }
        }
        for (index, from, bytes) in arrivals {
            arrived += 1;
            let stalled = imp.stall_after.is_some_and(|n| from_server >= n);
            let (via, to) = match index {
                // From the agent: to the server's main port or to the TID it stands for.
                Some(index) => {
                    counts.from_agent.fetch_add(1, Ordering::Relaxed);
                    *agent.lock().unwrap() = Some(from);
                    let to = if index == 0 { server } else { tid_of[&index] };
                    (usize::MAX, to)
                }
                // From the server: by the socket standing for its TID, made on first sight.
                None => {
                    counts.from_server.fetch_add(1, Ordering::Relaxed);
                    from_server += 1;
                    let Some(to) = *agent.lock().unwrap() else {
                        continue;
                    };
                    let index = *socket_of.entry(from).or_insert_with(|| {
                        sockets.push(UdpSocket::bind("127.0.0.1:0").expect("bind a TID socket"));
                        tid_of.insert(sockets.len() - 1, from);
                        sockets.len() - 1
                    });
                    (index, to)
                }
            };
            if stalled || roll(100) < u64::from(imp.loss) {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let copies = if roll(100) < u64::from(imp.duplicate) {
                counts.duplicated.fetch_add(1, Ordering::Relaxed);
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay_ms = imp.max_delay.as_millis() as u64;
                let delay =
                    Duration::from_millis(if delay_ms == 0 { 0 } else { roll(delay_ms + 1) });
                held.push(Held {
                    at: Instant::now() + delay,
                    via,
                    to,
                    bytes: bytes.clone(),
                    seq: arrived,
                });
            }
        }
    }
}
