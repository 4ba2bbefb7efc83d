//! Control-socket clients for the liveness tests, each with one overall deadline: a
//! request that times out is a result to report, never a test that hangs. Also the
//! misbehaving clients (silent, slow) and a provisioning server that never answers a
//! connection.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use serde_json::Value;

/// Connects to the Unix socket at `path` without ever blocking past `deadline` (a
/// listener whose backlog is full makes a blocking `connect` wait); the stream is
/// blocking again on return.
pub fn connect_by(path: &Path, deadline: Instant) -> std::io::Result<UnixStream> {
    let addr = UnixAddr::new(path).map_err(std::io::Error::from)?;
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(std::io::Error::from)?;
        use std::os::fd::AsRawFd;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                // SAFETY: `fd` is an owned, connected Unix stream socket.
                let stream = unsafe { UnixStream::from_raw_fd(fd.into_raw_fd()) };
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends one request line and reads the whole answer, all before `timeout` has passed;
/// the answer and how long it took (from before the connect).
pub fn request(socket: &Path, line: &str, timeout: Duration) -> Result<(Value, Duration), String> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut stream = connect_by(socket, deadline).map_err(|e| format!("connect: {e}"))?;
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {timeout:?} ({what})"))
    };
    stream
        .set_write_timeout(Some(left("writing")?))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        stream
            .set_read_timeout(Some(left("reading")?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("no answer within {timeout:?}"));
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let took = start.elapsed();
    let value: Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("{e}: {:?}", String::from_utf8_lossy(&answer)))?;
    Ok((value, took))
}

/// `{"cmd":"status"}` within `timeout`: the status and how long it took.
pub fn status(socket: &Path, timeout: Duration) -> Result<(Value, Duration), String> {
    let (v, took) = request(socket, r#"{"cmd":"status"}"#, timeout)?;
    if v["ok"] != true {
        return Err(format!("status refused: {v}"));
    }
    Ok((v["status"].clone(), took))
}

/// `n` clients that connect and send nothing, each kept open until dropped. Stops
/// early (returning fewer) if `deadline` passes while the socket accepts no more.
pub fn silent_clients(socket: &Path, n: usize, deadline: Instant) -> Vec<UnixStream> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        match connect_by(socket, deadline) {
            Ok(s) => clients.push(s),
            Err(_) => break,
        }
    }
    clients
}

/// A TCP address that never answers: a listener whose accept queue is full (backlog 0,
/// filled by our own connections, never accepted), so a new client's SYN is dropped and
/// its `connect` waits until its own timeout, as with a dead host.
pub struct Blackhole {
    _listener: OwnedFd,
    _fill: Vec<std::net::TcpStream>,
    pub addr: SocketAddr,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("address");
        let listener = OwnedFd::from(std_listener);
        listen(&listener, Backlog::new(0).expect("backlog 0")).expect("listen");
        // The queue holds one connection: ours. Later ones time out (dropped SYNs).
        let fill = (0..2)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
            })
            .collect();
        // Let the queue fill before anyone relies on it.
        std::thread::sleep(Duration::from_millis(100));
        Blackhole {
            _listener: listener,
            _fill: fill,
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}
