//! The sender thread: takes the queued lines and writes them to the local socket
//! (unix datagram, BSD form) and to the remote server (RFC 5424: a UDP datagram a line,
//! or octet-counted over TCP or TLS), all I/O here and nowhere else.
//!
//! A connection is made when a line comes and there is none, with a connect timeout
//! ([`TIMEOUT`]); every write and the TLS handshake have the same timeout, so a server
//! that accepts and never reads holds this thread for a few seconds at most. After a
//! failure nothing is tried for a back-off that doubles from [`RETRY_INITIAL`] to
//! [`RETRY_MAX`]; lines coming meanwhile are dropped and counted, not kept. A connection
//! the server closed is noticed before the next write (a peek), so a server that went
//! away costs a reconnection, not a line written into a dead socket. The counts are
//! said once the queue has drained, at most once a [`SAY_EVERY`] (the saying is itself
//! a line, which a server still down would drop again).

use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{format, Line};
use crate::config::syslog::{Syslog, SyslogServer, Transport};

/// Connect, handshake and write timeout.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause after a failed connection or write, doubled up to [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often dropped lines are said at most (the first time at once).
const SAY_EVERY: Duration = Duration::from_secs(60);
/// How long the thread waits for a line before it looks at the counts again, while
/// some drops are still to be said.
const IDLE: Duration = Duration::from_secs(1);
/// The kernel's send buffer of a TCP connection: bounds what a stalled server holds.
const SNDBUF: usize = 32 * 1024;

/// The sender thread's state.
pub(super) struct Sender {
    facility: u8,
    hostname: String,
    pid: u32,
    local: Option<LocalSocket>,
    remote: Option<Remote>,
    /// Lines the queue had no room for (counted by the logging side).
    dropped: Arc<AtomicU64>,
    last_said: Option<Instant>,
}

impl Sender {
    pub(super) fn new(
        config: &Syslog,
        local: Option<PathBuf>,
        hostname: &str,
        dropped: Arc<AtomicU64>,
    ) -> Sender {
        Sender {
            facility: config.facility,
            hostname: hostname.to_string(),
            pid: std::process::id(),
            local: local.map(|path| LocalSocket {
                path,
                socket: None,
                lost: 0,
                why: String::new(),
            }),
            remote: config
                .server
                .clone()
                .map(|server| Remote::new(server, config)),
            dropped,
            last_said: None,
        }
    }

    /// Sends the lines until the queue's other end is gone.
    pub(super) fn run(mut self, lines: &Receiver<Line>) {
        if let Some(remote) = &self.remote {
            log::info!(target: super::NOTICE, "syslog: sending to {}", remote.name());
        }
        loop {
            // Idle, the thread sleeps until a line comes (an idle daemon makes no
            // system call); with drops still to say, it wakes to say them.
            let next = if self.unsaid() {
                lines.recv_timeout(IDLE)
            } else {
                lines.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match next {
                Ok(line) => {
                    self.deliver(&line);
                    while let Ok(line) = lines.try_recv() {
                        self.deliver(&line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // The queue has drained.
            self.say_dropped();
        }
    }

    fn deliver(&mut self, line: &Line) {
        if let Some(local) = &mut self.local {
            let text = format::rfc3164(
                self.facility,
                line.severity,
                line.time,
                self.pid,
                &line.message,
            );
            local.send(&text);
        }
        if let Some(remote) = &mut self.remote {
            let text = format::rfc5424(
                self.facility,
                line.severity,
                line.time,
                &self.hostname,
                self.pid,
                &line.message,
            );
            remote.send(&text);
        }
    }

    /// Whether some dropped lines are still to be said.
    fn unsaid(&self) -> bool {
        self.dropped.load(Ordering::Relaxed) > 0
            || self.remote.as_ref().is_some_and(|r| r.lost > 0)
            || self.local.as_ref().is_some_and(|l| l.lost > 0)
    }

    /// Says what was dropped since it was last said, if it is time to.
    fn say_dropped(&mut self) {
        if self.last_said.is_some_and(|t| t.elapsed() < SAY_EVERY) {
            return;
        }
        let mut said = false;
        let full = self.dropped.swap(0, Ordering::Relaxed);
        if full > 0 {
            log::warn!("{full} log lines dropped: the syslog server did not keep up");
            said = true;
        }
        if let Some(remote) = &mut self.remote {
            if remote.lost > 0 {
                log::warn!("{} log lines dropped: {}", remote.lost, remote.why);
                remote.lost = 0;
                said = true;
            }
        }
        if let Some(local) = &mut self.local {
            if local.lost > 0 {
                log::warn!("{} log lines dropped: {}", local.lost, local.why);
                local.lost = 0;
                said = true;
            }
        }
        if said {
            self.last_said = Some(Instant::now());
        }
    }
}

/// The local syslog socket (`/dev/log`).
struct LocalSocket {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    lost: u64,
    why: String,
}

impl LocalSocket {
    fn send(&mut self, text: &str) {
        if self.socket.is_none() {
            let socket = UnixDatagram::unbound().and_then(|socket| {
                // A syslogd that does not read holds this thread at most that long.
                socket.set_write_timeout(Some(TIMEOUT))?;
                Ok(socket)
            });
            match socket {
                Ok(socket) => self.socket = Some(socket),
                Err(e) => return self.lost(&e),
            }
        }
        if let Some(socket) = &self.socket {
            if let Err(e) = socket.send_to(text.as_bytes(), &self.path) {
                self.lost(&e);
            }
        }
    }

    fn lost(&mut self, e: &io::Error) {
        self.lost += 1;
        self.why = format!("the local syslog socket {}: {e}", self.path.display());
    }
}

/// The remote server and the connection to it.
struct Remote {
    server: SyslogServer,
    /// The TLS client (for `tls`), or why there is none.
    #[cfg(any(feature = "http", feature = "ftp"))]
    tls: Result<Option<Arc<rustls::ClientConfig>>, String>,
    udp: Option<UdpSocket>,
    conn: Option<Conn>,
    /// No connection is tried before this.
    retry_at: Option<Instant>,
    delay: Duration,
    /// Lines not sent since last said, and the last reason.
    lost: u64,
    why: String,
    /// Whether the last attempt worked (a change is logged).
    up: bool,
}

impl Remote {
    fn new(server: SyslogServer, config: &Syslog) -> Remote {
        #[cfg(any(feature = "http", feature = "ftp"))]
        let tls = match server.transport {
            Transport::Tls => crate::fetch::tls::syslog_client_config(
                config.ca_file.as_deref(),
                config.client_identity.as_ref(),
            )
            .map(Some)
            .map_err(|e| e.to_string()),
            _ => Ok(None),
        };
        #[cfg(not(any(feature = "http", feature = "ftp")))]
        let _ = config;
        Remote {
            server,
            #[cfg(any(feature = "http", feature = "ftp"))]
            tls,
            udp: None,
            conn: None,
            retry_at: None,
            delay: RETRY_INITIAL,
            lost: 0,
            why: String::new(),
            up: true,
        }
    }

    /// `tls://logs.example.com:6514`, as the server is named in the log.
    fn name(&self) -> String {
        let host = &self.server.host;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        format!(
            "{}://{host}:{}",
            self.server.transport.name(),
            self.server.port
        )
    }

    fn send(&mut self, text: &str) {
        // A server that closed the connection (restarted, or gone) is connected to
        // again at once; a failure to connect then starts the back-off.
        if self.conn.as_ref().is_some_and(Conn::closed) {
            self.conn = None;
        }
        if self.udp.is_none() && self.conn.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                self.lost += 1;
                return;
            }
            if let Err(why) = self.connect() {
                self.failed(why);
                self.lost += 1;
                return;
            }
        }
        let sent = match (&self.udp, &mut self.conn) {
            (Some(udp), _) => udp.send(text.as_bytes()).map(drop),
            (None, Some(conn)) => conn.write(&format::octet_counted(text)),
            (None, None) => return,
        };
        match sent {
            Ok(()) => {
                self.delay = RETRY_INITIAL;
                if !self.up {
                    self.up = true;
                    log::info!(target: super::NOTICE, "syslog: {} takes the lines again", self.name());
                }
            }
            Err(e) => {
                self.conn = None;
                self.lost += 1;
                self.failed(e.to_string());
            }
        }
    }

    /// Notes a failure: nothing is tried for the back-off; a change is logged.
    fn failed(&mut self, why: String) {
        let name = self.name();
        self.why = format!("the syslog server {name} cannot be reached: {why}");
        self.retry_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(RETRY_MAX);
        if self.up {
            self.up = false;
            log::warn!(
                "syslog: {name}: {why}; lines are dropped and counted until it takes them again"
            );
        }
    }

    /// The UDP socket or the TCP/TLS connection.
    fn connect(&mut self) -> Result<(), String> {
        let (host, port) = (self.server.host.as_str(), self.server.port);
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if self.server.transport == Transport::Udp {
            let addr = addrs.first().ok_or("no address")?;
            let any: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let socket = UdpSocket::bind(any).map_err(|e| e.to_string())?;
            socket.connect(addr).map_err(|e| e.to_string())?;
            self.udp = Some(socket);
            return Ok(());
        }
        let mut last = String::from("no address");
        let tcp = addrs
            .iter()
            .find_map(|addr| match TcpStream::connect_timeout(addr, TIMEOUT) {
                Ok(tcp) => Some(tcp),
                Err(e) => {
                    last = e.to_string();
                    None
                }
            });
        let tcp = tcp.ok_or(last)?;
        let setup = || -> io::Result<()> {
            tcp.set_write_timeout(Some(TIMEOUT))?;
            tcp.set_read_timeout(Some(TIMEOUT))?;
            tcp.set_nodelay(true)?;
            nix::sys::socket::setsockopt(&tcp, nix::sys::socket::sockopt::SndBuf, &SNDBUF)
                .map_err(io::Error::from)
        };
        setup().map_err(|e| e.to_string())?;
        self.conn = Some(match self.server.transport {
            Transport::Udp | Transport::Tcp => Conn::Tcp(tcp),
            #[cfg(any(feature = "http", feature = "ftp"))]
            Transport::Tls => {
                let config = match &self.tls {
                    Ok(Some(config)) => Arc::clone(config),
                    Ok(None) => return Err("no TLS client".into()),
                    Err(why) => return Err(why.clone()),
                };
                let name = crate::fetch::tls::server_name(host).map_err(|e| e.to_string())?;
                let client =
                    rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
                Conn::Tls(Box::new(rustls::StreamOwned::new(client, tcp)))
            }
            #[cfg(not(any(feature = "http", feature = "ftp")))]
            Transport::Tls => return Err("this agent is built without TLS".into()),
        });
        Ok(())
    }
}

/// A connection to the server.
enum Conn {
    Tcp(TcpStream),
    #[cfg(any(feature = "http", feature = "ftp"))]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Tcp(tcp) => tcp,
            #[cfg(any(feature = "http", feature = "ftp"))]
            Conn::Tls(tls) => tls.get_ref(),
        }
    }

    /// Whether the server closed the connection (end of file, or an error, waiting
    /// to be read). A syslog server sends nothing else but TLS records.
    fn closed(&self) -> bool {
        let tcp = self.tcp();
        if tcp.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let peeked = tcp.peek(&mut byte);
        let _ = tcp.set_nonblocking(false);
        match peeked {
            Ok(n) => n == 0,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    fn write(&mut self, frame: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(tcp) => tcp.write_all(frame),
            #[cfg(any(feature = "http", feature = "ftp"))]
            Conn::Tls(tls) => {
                tls.write_all(frame)?;
                tls.flush()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Sink;
    use crate::config::syslog::Local;
    use std::io::Read as _;
    use std::net::TcpListener;

    use super::*;

    /// Through the queue and the sender thread: a TCP server gets RFC 5424 lines
    /// octet-counted, the local socket BSD lines; a line above the threshold neither.
    #[test]
    fn lines_reach_a_tcp_server_octet_counted_and_the_local_socket_in_the_bsd_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let local = UnixDatagram::bind(&path).unwrap();
        local
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = Syslog {
            server: Some(SyslogServer {
                host: "127.0.0.1".into(),
                port: listener.local_addr().unwrap().port(),
                transport: Transport::Tcp,
            }),
            level: 6,
            local: Local::Socket(path),
            ..Syslog::default()
        };
        let sink = Sink::start(&config, "0004f2000001").unwrap();
        sink.send(7, "debug: below the threshold");
        sink.send(4, "first");
        sink.send(6, "second é");
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        let mut frames = Vec::new();
        while frames.len() < 2 {
            let mut chunk = [0u8; 1024];
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "closed after {got:?}");
            got.extend_from_slice(&chunk[..n]);
            frames.clear();
            let mut rest = &got[..];
            while let Some(space) = rest.iter().position(|&b| b == b' ') {
                let len: usize = std::str::from_utf8(&rest[..space])
                    .unwrap()
                    .parse()
                    .unwrap();
                if rest.len() < space + 1 + len {
                    break;
                }
                frames.push(String::from_utf8(rest[space + 1..space + 1 + len].to_vec()).unwrap());
                rest = &rest[space + 1 + len..];
            }
        }
        let pid = std::process::id();
        assert!(frames[0].starts_with("<132>1 "), "{frames:?}");
        assert!(
            frames[0].ends_with(&format!(" 0004f2000001 license-agent {pid} - - first")),
            "{frames:?}"
        );
        assert!(frames[1].starts_with("<134>1 "), "{frames:?}");
        assert!(frames[1].ends_with(" - - second é"), "{frames:?}");
        let mut datagram = [0u8; 2048];
        let mut bsd = Vec::new();
        for _ in 0..2 {
            let n = local.recv(&mut datagram).unwrap();
            bsd.push(String::from_utf8(datagram[..n].to_vec()).unwrap());
        }
        assert!(bsd[0].starts_with("<132>"), "{bsd:?}");
        assert!(
            bsd[0].ends_with(&format!(" license-agent[{pid}]: first")),
            "{bsd:?}"
        );
        assert!(bsd[1].ends_with(": second é"), "{bsd:?}");
    }
}
