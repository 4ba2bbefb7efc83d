//! A fault-injecting HTTP/1.1 server of our own, on 127.0.0.1 and a port the OS picks:
//! each [`FaultServer`] answers every request with one kind of misbehaviour ([`Fault`]),
//! so tests can check that the agent gives up, times out, refuses or retries as it must,
//! or as a test scripts it ([`Fault::Script`]: the unit tests of the HTTP client write
//! their answers byte by byte), or serves a folder without any validators
//! ([`Fault::Files`], behind `bare_httpd.rs`). Plain HTTP only: the TLS faults are the
//! bad-certificate endpoints of `nginx.rs`.
//!
//! Everything is bounded (the workplace rule for failure tests: loopback only, bounded,
//! stopping by themselves): at most [`MAX_CONNECTIONS`] connections and
//! [`MAX_REQUESTS_PER_CONNECTION`] requests on each, a server stops on its own after
//! [`MAX_LIFETIME`], and on drop every thread notices within about 50 ms (socket
//! timeouts and sleeps are that short) and is joined.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Connections accepted at most; later ones are closed at once (and not counted).
pub const MAX_CONNECTIONS: usize = 1000;
/// Requests answered at most on one connection, which is then closed.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 100;
/// A server stops by itself this long after it started, dropped or not.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// The body size of [`Fault::Oversize`]: 10 MiB.
pub const OVERSIZE_BYTES: usize = 10 * 1024 * 1024;
/// [`Fault::CutBody`]: announced and actually sent.
pub const CUT_ANNOUNCED: usize = 1000;
pub const CUT_SENT: usize = 100;
/// [`Fault::SlowDrip`]: announced length and the pause between bytes.
pub const DRIP_LENGTH: usize = 400;
pub const DRIP_INTERVAL: Duration = Duration::from_millis(500);

/// How often a blocked thread checks whether to stop.
const POLL: Duration = Duration::from_millis(50);
/// Largest request head read.
const MAX_HEAD: usize = 64 * 1024;
/// [`Fault::Oversize`] writes this much at a time, through a send buffer this small, so
/// that `bytes_sent` stays close to what the client actually received.
const OVERSIZE_CHUNK: usize = 16 * 1024;
const OVERSIZE_SNDBUF: usize = 16 * 1024;

/// How the server answers every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// That status with a small text body (no body for 1xx, 204, 304); keep-alive.
    Status(u16),
    /// Reads the request, then never answers (until drop or [`MAX_LIFETIME`]).
    Stall,
    /// `Content-Length: 1000`, sends 100 bytes, closes.
    CutBody,
    /// `Content-Length: 400`, one byte every 500 ms (the whole body would take 200 s).
    SlowDrip,
    /// A 10 MiB body of `x`, with `Content-Length` or close-delimited without it,
    /// written until done or the client closes; see [`FaultServer::bytes_sent`].
    Oversize { content_length: bool },
    /// `302` with `Location:` the same URL, forever; keep-alive.
    RedirectLoop,
    /// `200` with this body and an ETag; `304` to a matching `If-None-Match`; keep-alive.
    Serve(Vec<u8>),
    /// The files of this folder, with no validators at all: `GET`/`HEAD` answer 200
    /// with `Content-Length` and neither `ETag` nor `Last-Modified`, whatever
    /// conditional headers came (never 304), or 404 when there is no such file; `PUT`
    /// writes the file (201 new, 204 replaced; a body over 64 KiB ends the connection
    /// unanswered); other methods 405. Paths are plain names below the folder (no `..`,
    /// no percent-decoding); the query is ignored. Keep-alive.
    Files(PathBuf),
    /// These bytes, whole, as the answer to every request (status line, headers and
    /// body, as the test wrote them); keep-alive.
    Raw(Vec<u8>),
    /// The test's own answer, written on the connection by its handler, which may take
    /// as long as it likes (no write timeout): a scripted connection is not waited for
    /// when the server is dropped.
    Script(Script),
}

/// What a [`Fault::Script`] handler does with the connection after its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

type Handler = dyn Fn(&SeenRequest, &mut TcpStream) -> Next + Send + Sync;

/// A test's handler for [`Fault::Script`], called for each request once its head (and
/// body) has been read.
#[derive(Clone)]
pub struct Script(Arc<Handler>);

impl Script {
    pub fn new(
        handler: impl Fn(&SeenRequest, &mut TcpStream) -> Next + Send + Sync + 'static,
    ) -> Script {
        Script(Arc::new(handler))
    }
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script(..)")
    }
}

impl PartialEq for Script {
    fn eq(&self, other: &Script) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Script {}

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    /// The request target, e.g. `/0004f2000001-license.cfg`.
    pub path: String,
    /// Header names and values in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The head as sent: request line and headers, up to and with the blank line.
    pub head: String,
    /// The body announced by `Content-Length` (an upload), at most 64 KiB.
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running fault server; dropping it stops it.
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// State shared by the server's threads.
struct Shared {
    mode: Fault,
    addr: SocketAddr,
    started: Instant,
    stop: AtomicBool,
    connections: AtomicUsize,
    requests: AtomicUsize,
    bytes_sent: AtomicUsize,
    active: AtomicUsize,
    seen: Mutex<Vec<SeenRequest>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.started.elapsed() > MAX_LIFETIME
    }
}

impl FaultServer {
    /// Starts a server answering every request with `mode`.
    pub fn start(mode: Fault) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            mode,
            addr,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            bytes_sent: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("fault-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, for_thread))
            .expect("start the accept thread");
        FaultServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Starts a server answering every request with `handler` ([`Fault::Script`]).
    pub fn scripted(
        handler: impl Fn(&SeenRequest, &mut TcpStream) -> Next + Send + Sync + 'static,
    ) -> FaultServer {
        FaultServer::start(Fault::Script(Script::new(handler)))
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests whose head was read completely.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Response body bytes the kernel accepted for sending so far, over all
    /// connections (for [`Fault::Oversize`]: how much was written before the client
    /// closed; an upper bound on what the client received, by at most a few hundred
    /// KiB of socket buffers). Call [`FaultServer::wait_idle`] first for the final count.
    pub fn bytes_sent(&self) -> usize {
        self.shared.bytes_sent.load(Ordering::SeqCst)
    }

    /// The requests seen so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` until no connection is being served (each has been closed
    /// by one side and its thread is done); true if so.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.shared.active.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts until stopped, one thread per connection; joins them all before returning.
fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                if shared.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                shared.connections.fetch_add(1, Ordering::SeqCst);
                shared.active.fetch_add(1, Ordering::SeqCst);
                let for_thread = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("fault-conn".into())
                    .spawn(move || {
                        serve_connection(stream, &for_thread);
                        for_thread.active.fetch_sub(1, Ordering::SeqCst);
                    });
                match spawned {
                    Ok(handle) => workers.push(handle),
                    Err(_) => {
                        shared.active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
        workers.retain(|w| !w.is_finished());
    }
    drop(listener);
    if matches!(shared.mode, Fault::Script(_)) {
        return; // a handler may sleep as long as its test likes: not waited for
    }
    for worker in workers {
        let _ = worker.join();
    }
}

/// Serves one connection with the server's fault until it is closed or stopped.
fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(POLL)))
        .and_then(|()| stream.set_write_timeout(Some(POLL)))
        .and_then(|()| stream.set_nodelay(true));
    if setup.is_err() {
        return;
    }
    let mut buffered = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Some(request) = read_request(&mut stream, &mut buffered, shared) else {
            return;
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut seen) = shared.seen.lock() {
            seen.push(request.clone());
        }
        if !answer(&mut stream, &request, shared) {
            return;
        }
        if request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

/// Answers one request; false when the connection must end.
fn answer(stream: &mut TcpStream, request: &SeenRequest, shared: &Shared) -> bool {
    let head_only = request.method.eq_ignore_ascii_case("HEAD");
    match &shared.mode {
        Fault::Status(code) => {
            let code = *code;
            let body = if code < 200 || code == 204 || code == 304 {
                String::new()
            } else {
                format!("fault server: status {code}\n")
            };
            let head = format!(
                "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                reason(code),
                body.len()
            );
            send_response(stream, &head, body.as_bytes(), head_only, shared)
        }
        Fault::Stall => {
            while !shared.stopping() {
                thread::sleep(POLL);
            }
            false
        }
        Fault::CutBody => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {CUT_ANNOUNCED}\r\n\r\n"
            );
            let _ = send_response(stream, &head, &[b'x'; CUT_SENT], head_only, shared);
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
        Fault::SlowDrip => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {DRIP_LENGTH}\r\n\r\n"
            );
            if !send(stream, head.as_bytes(), shared) || head_only {
                return false;
            }
            for _ in 0..DRIP_LENGTH {
                if !send(stream, b"x", shared) {
                    return false;
                }
                shared.bytes_sent.fetch_add(1, Ordering::SeqCst);
                if !pause(DRIP_INTERVAL, shared) {
                    return false;
                }
            }
            false
        }
        Fault::Oversize { content_length } => {
            let _ = nix::sys::socket::setsockopt(
                &*stream,
                nix::sys::socket::sockopt::SndBuf,
                &OVERSIZE_SNDBUF,
            );
            let head = if *content_length {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {OVERSIZE_BYTES}\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            if !send(stream, head.as_bytes(), shared) || head_only {
                return false;
            }
            let chunk = [b'x'; OVERSIZE_CHUNK];
            let mut left = OVERSIZE_BYTES;
            while left > 0 {
                let part = &chunk[..left.min(OVERSIZE_CHUNK)];
                if !send_counted(stream, part, shared) {
                    return false;
                }
                left -= part.len();
            }
            let _ = stream.shutdown(Shutdown::Write);
            false
        }
        Fault::RedirectLoop => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{}{}\r\nContent-Length: 0\r\n\r\n",
                shared.addr, request.path
            );
            send_response(stream, &head, b"", head_only, shared)
        }
        Fault::Raw(answer) => send(stream, answer, shared),
        Fault::Script(script) => {
            if stream.set_write_timeout(None).is_err() {
                return false;
            }
            let next = (script.0)(request, stream);
            next == Next::KeepAlive && stream.set_write_timeout(Some(POLL)).is_ok()
        }
        Fault::Files(root) => serve_file(stream, request, root, shared),
        Fault::Serve(body) => {
            let etag = etag_of(body);
            let matches = request
                .header("if-none-match")
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
            if matches {
                let head = format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\r\n");
                send_response(stream, &head, b"", head_only, shared)
            } else {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nETag: {etag}\r\n\r\n",
                    body.len()
                );
                send_response(stream, &head, body, head_only, shared)
            }
        }
    }
}

/// [`Fault::Files`]: one request on the folder `root`.
fn serve_file(stream: &mut TcpStream, request: &SeenRequest, root: &Path, shared: &Shared) -> bool {
    let status = |code: u16| -> (String, Vec<u8>) {
        let body = if code == 204 {
            Vec::new()
        } else {
            format!("{code} {}\n", reason(code)).into_bytes()
        };
        (
            format!(
                "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                reason(code),
                body.len()
            ),
            body,
        )
    };
    let path = request.path.split('?').next().unwrap_or("");
    let name = path.strip_prefix('/').filter(|name| {
        name.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
    });
    let method = request.method.to_ascii_uppercase();
    let (head, body) = match (name, method.as_str()) {
        (None, _) => status(404),
        (Some(name), "GET" | "HEAD") => match std::fs::read(root.join(name)) {
            Ok(bytes) => (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    bytes.len()
                ),
                bytes,
            ),
            Err(_) => status(404),
        },
        (Some(name), "PUT") => {
            let file = root.join(name);
            let existed = file.is_file();
            if file.is_dir() || !file.parent().is_some_and(Path::is_dir) {
                status(409)
            } else {
                match crate::files::write_atomically(&file, &request.body) {
                    Ok(()) => status(if existed { 204 } else { 201 }),
                    Err(_) => status(500),
                }
            }
        }
        _ => status(405),
    };
    send_response(stream, &head, &body, method == "HEAD", shared)
}

/// The ETag [`Fault::Serve`] gives a body: a quoted FNV-1a hash and the length.
pub fn etag_of(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}-{}\"", body.len())
}

/// Sends a head and (unless `head_only`) a body, counting the body bytes.
fn send_response(
    stream: &mut TcpStream,
    head: &str,
    body: &[u8],
    head_only: bool,
    shared: &Shared,
) -> bool {
    send(stream, head.as_bytes(), shared) && (head_only || send_counted(stream, body, shared))
}

/// Sends bytes, adding them to `bytes_sent` as the kernel takes them.
fn send_counted(stream: &mut TcpStream, bytes: &[u8], shared: &Shared) -> bool {
    write_bounded(stream, bytes, shared, true)
}

/// Sends bytes without counting them (heads).
fn send(stream: &mut TcpStream, bytes: &[u8], shared: &Shared) -> bool {
    write_bounded(stream, bytes, shared, false)
}

/// Writes everything unless the peer goes away or the server stops; false then.
fn write_bounded(stream: &mut TcpStream, mut bytes: &[u8], shared: &Shared, count: bool) -> bool {
    while !bytes.is_empty() {
        if shared.stopping() {
            return false;
        }
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => {
                if count {
                    shared.bytes_sent.fetch_add(n, Ordering::SeqCst);
                }
                bytes = &bytes[n..];
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Sleeps `total` in short steps; false if the server stops meanwhile.
fn pause(total: Duration, shared: &Shared) -> bool {
    let until = Instant::now() + total;
    loop {
        if shared.stopping() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        thread::sleep((until - now).min(POLL));
    }
}

/// Reads the next request: its head and the body announced by Content-Length;
/// `None` when the connection ends, the head is too large, or the server stops.
fn read_request(
    stream: &mut TcpStream,
    buffered: &mut Vec<u8>,
    shared: &Shared,
) -> Option<SeenRequest> {
    let end = loop {
        if let Some(pos) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buffered.len() > MAX_HEAD || !read_more(stream, buffered, shared) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffered[..end]).into_owned();
    buffered.drain(..end);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut request = SeenRequest {
        method,
        path,
        headers,
        head,
        body: Vec::new(),
    };
    let body_len: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if body_len > MAX_HEAD {
        return None;
    }
    while buffered.len() < body_len {
        if !read_more(stream, buffered, shared) {
            return None;
        }
    }
    request.body = buffered.drain(..body_len).collect();
    Some(request)
}

/// Reads what is available (waiting in short steps); false on end, error or stop.
fn read_more(stream: &mut TcpStream, buffered: &mut Vec<u8>, shared: &Shared) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        if shared.stopping() {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buffered.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fault",
    }
}
