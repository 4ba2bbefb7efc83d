//! A real nginx (`/usr/sbin/nginx`, 1.22) serving a test's provisioning folder on
//! 127.0.0.1, one process listening on several ports chosen free at start: plain HTTP,
//! HTTPS with the good certificate, HTTPS requiring a client certificate, HTTP with Basic
//! authentication, and HTTPS with each bad certificate of [`Pki`] (wrong host name,
//! expired, untrusted CA). Every endpoint serves the same document root.
//!
//! Its configuration, pid file, logs and temp folders live in a temporary folder removed
//! on drop; dropping it stops nginx (SIGTERM, then SIGKILL to its process group after
//! 5 s). nginx runs under `setpriv --pdeathsig TERM` from a keeper thread that lives as
//! long as the `Nginx`, so it also stops if the test process dies without unwinding.
//!
//! nginx answers static files with an `ETag` (its modification time and size, in
//! seconds) and `Last-Modified`, 304 to a matching `If-None-Match` or to an
//! `If-Modified-Since` equal to `Last-Modified`, and 404 for a missing file. Replace
//! files with [`Nginx::put`], which guarantees a new ETag even within the same second.
//!
//! [`Nginx::start_on`] listens on another address instead, and may put the HTTPS
//! endpoint on a port of the caller's choosing: the emulated phone's DHCP network
//! (`netns.rs`) runs nginx inside its network namespace on `https://10.77.0.1/`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::pki::Pki;

/// The nginx binary (Debian's `nginx` package).
pub const NGINX_BIN: &str = "/usr/sbin/nginx";
/// Basic authentication accepted by [`Nginx::basic_url`].
pub const BASIC_USER: &str = "phone";
pub const BASIC_PASSWORD: &str = "s3cret";

/// How long nginx may take to listen on every port.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Start attempts (a port picked free may be taken before nginx binds it).
const START_ATTEMPTS: usize = 5;

/// The access log format: tab-separated, in this order (nginx escapes tabs, quotes and
/// control characters inside values as `\xXX`; an empty value is `-`).
pub const LOG_FORMAT: &str = "$status\\t$request\\t$http_user_agent\\t$connection\\t\
$connection_requests\\t$server_port\\t$remote_user\\t$body_bytes_sent\\t\
$http_if_none_match\\t$http_if_modified_since\\t$ssl_protocol";

/// A running nginx; see the module documentation.
pub struct Nginx {
    /// The document root every endpoint serves (the folder given to [`Nginx::start`]).
    pub root: PathBuf,
    /// The temporary folder holding `nginx.conf`, `htpasswd`, the logs and the pid file.
    pub dir: PathBuf,
    /// The address every endpoint listens on (127.0.0.1 unless [`Nginx::start_on`]).
    pub addr: Ipv4Addr,
    pub http_port: u16,
    pub https_port: u16,
    pub mtls_port: u16,
    pub basic_port: u16,
    pub wrong_host_port: u16,
    pub expired_port: u16,
    pub untrusted_port: u16,
    child: Option<Child>,
    keeper: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    _tmp: tempfile::TempDir,
}

/// One line of the access log, parsed (see [`LOG_FORMAT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub status: u16,
    /// The request line, e.g. `GET /000000000000-license.cfg HTTP/1.1`.
    pub request: String,
    pub method: String,
    pub path: String,
    /// `-` when the client sent none.
    pub user_agent: String,
    /// nginx's connection serial number: requests on one connection share it.
    pub connection: u64,
    /// The number of this request on its connection (1 for the first).
    pub connection_requests: u64,
    /// The port (so the endpoint) the request came in on.
    pub port: u16,
    /// The Basic authentication user, `-` when none.
    pub remote_user: String,
    pub body_bytes_sent: u64,
    pub if_none_match: String,
    pub if_modified_since: String,
    /// `TLSv1.3`, `TLSv1.2`, or `-` for plain HTTP.
    pub ssl_protocol: String,
}

impl Nginx {
    /// Starts nginx serving `root` with the certificates of `pki`, and waits until every
    /// port accepts connections. Panics with nginx's error log if it cannot start.
    pub fn start(root: &Path, pki: &Pki) -> Nginx {
        Nginx::start_on(root, pki, Ipv4Addr::LOCALHOST, None)
    }

    /// [`Nginx::start`] listening on `addr` (an address of the calling thread's network
    /// namespace), the HTTPS endpoint on `https_port` when given (e.g. 443, for URLs
    /// without a port); the other ports are chosen free.
    pub fn start_on(root: &Path, pki: &Pki, addr: Ipv4Addr, https_port: Option<u16>) -> Nginx {
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match Nginx::try_start(root, pki, addr, https_port) {
                Ok(nginx) => return nginx,
                Err((text, retry)) => {
                    let _ = writeln!(failures, "attempt {attempt}:\n{text}");
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("nginx did not start:\n{failures}");
    }

    /// One start; on failure the logs, and whether a new set of ports may help.
    fn try_start(
        root: &Path,
        pki: &Pki,
        addr: Ipv4Addr,
        https_port: Option<u16>,
    ) -> Result<Nginx, (String, bool)> {
        let tmp = tempfile::Builder::new()
            .prefix("nginx-")
            .tempdir()
            .map_err(|e| (format!("create a temp folder: {e}"), false))?;
        let dir = tmp.path().to_path_buf();
        let ports = free_ports(7);
        let root = fs::canonicalize(root)
            .map_err(|e| (format!("document root {}: {e}", root.display()), false))?;
        let mut nginx = Nginx {
            root,
            dir,
            addr,
            http_port: ports[0],
            https_port: https_port.unwrap_or(ports[1]),
            mtls_port: ports[2],
            basic_port: ports[3],
            wrong_host_port: ports[4],
            expired_port: ports[5],
            untrusted_port: ports[6],
            child: None,
            keeper: None,
            _tmp: tmp,
        };
        nginx.write_files(pki).map_err(|e| (e, false))?;
        nginx.spawn().map_err(|e| (e, false))?;
        match nginx.wait_ready() {
            Ok(()) => Ok(nginx),
            Err(why) => {
                nginx.stop();
                let logs = nginx.logs();
                let retry = logs.contains("Address already in use");
                Err((format!("{why}\n{logs}"), retry))
            }
        }
    }

    /// Writes `nginx.conf`, `htpasswd` and the temp folders.
    fn write_files(&self, pki: &Pki) -> Result<(), String> {
        let d = &self.dir;
        fs::create_dir_all(d.join("tmp")).map_err(|e| format!("create tmp: {e}"))?;
        fs::write(
            d.join("htpasswd"),
            format!("{BASIC_USER}:{}\n", apr1_hash()?),
        )
        .map_err(|e| format!("write htpasswd: {e}"))?;
        let q = |p: &Path| quote(p);
        let user = if nix::unistd::geteuid().is_root() {
            "user root root;\n"
        } else {
            ""
        };
        let addr = self.addr;
        let tls = |port: u16, cert: &Path, key: &Path, extra: &str| {
            format!(
                "    server {{\n        listen {addr}:{port} ssl;\n        \
                 ssl_certificate {};\n        ssl_certificate_key {};\n{extra}    }}\n",
                q(cert),
                q(key)
            )
        };
        let mtls_extra = format!(
            "        ssl_client_certificate {};\n        ssl_verify_client on;\n        \
             ssl_verify_depth 2;\n",
            q(&pki.ca_pem)
        );
        // Basic auth, and uploads (WebDAV PUT, as a provisioning server takes phones'
        // logs); the other servers answer a PUT with 405.
        let basic_extra = format!(
            "        auth_basic \"license-agent test\";\n        auth_basic_user_file {};\n        \
             dav_methods PUT;\n        dav_access user:rw group:r all:r;\n",
            q(&d.join("htpasswd"))
        );
        let conf = format!(
            "# Written by test-servers/src/nginx.rs.\n\
             {user}worker_processes 1;\n\
             pid {pid};\n\
             lock_file {lock};\n\
             error_log {error} info;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n    \
                 default_type application/octet-stream;\n    \
                 types {{ text/plain cfg txt; }}\n    \
                 log_format agent \"{LOG_FORMAT}\";\n    \
                 access_log {access} agent;\n    \
                 client_body_temp_path {t_body};\n    \
                 proxy_temp_path {t_proxy};\n    \
                 fastcgi_temp_path {t_fastcgi};\n    \
                 uwsgi_temp_path {t_uwsgi};\n    \
                 scgi_temp_path {t_scgi};\n    \
                 server_tokens off;\n    \
                 etag on;\n    \
                 if_modified_since exact;\n    \
                 keepalive_timeout 30s;\n    \
                 ssl_protocols TLSv1.2 TLSv1.3;\n    \
                 root {root};\n    \
                 server {{\n        listen {addr}:{http};\n    }}\n\
             {https}{mtls}    \
                 server {{\n        listen {addr}:{basic};\n{basic_extra}    }}\n\
             {wrong}{expired}{untrusted}}}\n",
            pid = q(&d.join("nginx.pid")),
            lock = q(&d.join("nginx.lock")),
            error = q(&d.join("error.log")),
            access = q(&d.join("access.log")),
            t_body = q(&d.join("tmp/body")),
            t_proxy = q(&d.join("tmp/proxy")),
            t_fastcgi = q(&d.join("tmp/fastcgi")),
            t_uwsgi = q(&d.join("tmp/uwsgi")),
            t_scgi = q(&d.join("tmp/scgi")),
            root = q(&self.root),
            http = self.http_port,
            https = tls(self.https_port, &pki.server_cert, &pki.server_key, ""),
            mtls = tls(
                self.mtls_port,
                &pki.server_cert,
                &pki.server_key,
                &mtls_extra
            ),
            basic = self.basic_port,
            wrong = tls(
                self.wrong_host_port,
                &pki.wrong_host_cert,
                &pki.wrong_host_key,
                ""
            ),
            expired = tls(self.expired_port, &pki.expired_cert, &pki.expired_key, ""),
            untrusted = tls(
                self.untrusted_port,
                &pki.untrusted_cert,
                &pki.untrusted_key,
                ""
            ),
        );
        fs::write(d.join("nginx.conf"), conf).map_err(|e| format!("write nginx.conf: {e}"))
    }

    /// Starts nginx from a keeper thread (the parent whose end `--pdeathsig` watches).
    fn spawn(&mut self) -> Result<(), String> {
        let stderr = fs::File::create(self.dir.join("stderr.log"))
            .map_err(|e| format!("create stderr.log: {e}"))?;
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut cmd = Command::new("/usr/bin/setpriv");
            cmd.args(["--pdeathsig", "TERM", NGINX_BIN]);
            cmd
        } else {
            Command::new(NGINX_BIN)
        };
        cmd.arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        let (child_tx, child_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = thread::Builder::new()
            .name("nginx-keeper".into())
            .spawn(move || {
                let spawned = cmd.spawn();
                let ok = spawned.is_ok();
                let _ = child_tx.send(spawned);
                if ok {
                    // Lives until the Nginx is stopped (sender dropped).
                    let _ = stop_rx.recv();
                }
            })
            .map_err(|e| format!("start the keeper thread: {e}"))?;
        self.keeper = Some((stop_tx, keeper));
        let child = child_rx
            .recv()
            .map_err(|_| "the keeper thread died".to_string())?
            .map_err(|e| format!("start {NGINX_BIN}: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the pid file exists (written after binding) and every port accepts.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let ports = self.ports();
        let pid_file = self.dir.join("nginx.pid");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("nginx exited at start: {status}"));
                }
            }
            if pid_file.exists() && ports.iter().all(|&p| accepts_on(self.addr, p)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not listen on ports {ports:?} within {START_TIMEOUT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every port, in the order of the fields.
    pub fn ports(&self) -> [u16; 7] {
        [
            self.http_port,
            self.https_port,
            self.mtls_port,
            self.basic_port,
            self.wrong_host_port,
            self.expired_port,
            self.untrusted_port,
        ]
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http_port)
    }

    /// `https://localhost:PORT/`: the good certificate (trust `pki.ca_pem`).
    pub fn https_url(&self) -> String {
        https(self.https_port)
    }

    /// `https://localhost:PORT/` requiring a client certificate signed by the CA
    /// (`pki.client_cert` / `pki.client_key`); 400 without one, or with a refused one.
    pub fn mtls_url(&self) -> String {
        https(self.mtls_port)
    }

    /// `http://127.0.0.1:PORT/` requiring Basic authentication ([`BASIC_USER`],
    /// [`BASIC_PASSWORD`]); 401 without it or with a wrong password.
    pub fn basic_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.basic_port)
    }

    /// `https://localhost:PORT/` with a certificate (signed by the CA) for `wrong.example`.
    pub fn wrong_host_url(&self) -> String {
        https(self.wrong_host_port)
    }

    /// `https://localhost:PORT/` with a certificate (signed by the CA) expired in 2001.
    pub fn expired_url(&self) -> String {
        https(self.expired_port)
    }

    /// `https://localhost:PORT/` with a certificate signed by `pki.other_ca_pem`.
    pub fn untrusted_url(&self) -> String {
        https(self.untrusted_port)
    }

    /// Writes `root/name` atomically (temp file and rename) with a modification time
    /// at least one second after the file it replaces, so nginx's ETag and
    /// Last-Modified always change.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        put_file(&self.root.join(name), bytes);
    }

    /// Removes `root/name` (nothing if missing): nginx then answers 404.
    pub fn remove(&self, name: &str) {
        let path = self.root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", path.display()),
        }
    }

    /// The whole access log (lines in [`LOG_FORMAT`]).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The fetches in the access log, parsed (lines that do not parse are skipped; the
    /// status reports' uploads are in [`Nginx::uploads`]).
    pub fn access_entries(&self) -> Vec<AccessEntry> {
        self.all_entries()
            .into_iter()
            .filter(|e| e.method != "PUT")
            .collect()
    }

    /// The uploads (`PUT`) in the access log: the agents' status reports.
    pub fn uploads(&self) -> Vec<AccessEntry> {
        self.all_entries()
            .into_iter()
            .filter(|e| e.method == "PUT")
            .collect()
    }

    fn all_entries(&self) -> Vec<AccessEntry> {
        self.access_log()
            .lines()
            .filter_map(AccessEntry::parse)
            .collect()
    }

    /// Waits (up to `timeout`) until the access log holds at least `count` entries and
    /// returns them all. nginx logs a request just after answering it, so a client may
    /// see the answer a moment before the line is there.
    pub fn wait_access_entries(&self, count: usize, timeout: Duration) -> Vec<AccessEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.access_entries();
            if entries.len() >= count || Instant::now() > deadline {
                return entries;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Empties the access log (nginx appends, so later lines start it again).
    pub fn clear_access_log(&self) {
        let path = self.dir.join("access.log");
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
    }

    /// nginx's error log (level `info`: TLS handshake failures are there) and whatever
    /// it wrote to stderr.
    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- error.log ---\n{}--- stderr ---\n{}",
            read("error.log"),
            read("stderr.log")
        )
    }

    /// Stops nginx: SIGTERM, then SIGKILL to its whole process group after 5 s.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(pid, Signal::SIGTERM);
                let deadline = Instant::now() + STOP_TIMEOUT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
            }
            // Workers left behind, or a master that ignored SIGTERM.
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
        }
        if let Some((stop, keeper)) = self.keeper.take() {
            drop(stop);
            let _ = keeper.join();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

impl AccessEntry {
    /// Parses one line in [`LOG_FORMAT`]; `None` if it is not one.
    pub fn parse(line: &str) -> Option<AccessEntry> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 11 {
            return None;
        }
        let mut words = f[1].split(' ');
        Some(AccessEntry {
            status: f[0].parse().ok()?,
            request: f[1].to_string(),
            method: words.next().unwrap_or("").to_string(),
            path: words.next().unwrap_or("").to_string(),
            user_agent: f[2].to_string(),
            connection: f[3].parse().ok()?,
            connection_requests: f[4].parse().ok()?,
            port: f[5].parse().ok()?,
            remote_user: f[6].to_string(),
            body_bytes_sent: f[7].parse().ok()?,
            if_none_match: f[8].to_string(),
            if_modified_since: f[9].to_string(),
            ssl_protocol: f[10].to_string(),
        })
    }
}

/// Writes `path` atomically with a modification time at least one second after that of
/// the file it replaces (nginx's ETag is the mtime in seconds and the size).
pub fn put_file(path: &Path, bytes: &[u8]) {
    let previous = fs::metadata(path).and_then(|m| m.modified()).ok();
    let now = SystemTime::now();
    let mtime = match previous {
        Some(prev) if prev + Duration::from_secs(1) > now => prev + Duration::from_secs(1),
        _ => now,
    };
    let dir = path.parent().expect("a file inside a folder");
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .unwrap_or_else(|e| panic!("temp file in {}: {e}", dir.display()));
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().set_modified(mtime))
        .unwrap_or_else(|e| panic!("write {}: {e}", tmp.path().display()));
    tmp.persist(path)
        .unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

fn https(port: u16) -> String {
    format!("https://localhost:{port}/")
}

/// `count` distinct ports that were free a moment ago (all held at once while picking).
pub(crate) fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

pub(crate) fn accepts(port: u16) -> bool {
    accepts_on(Ipv4Addr::LOCALHOST, port)
}

/// Whether `addr:port` accepts a TCP connection now (from the calling thread's network
/// namespace).
pub(crate) fn accepts_on(addr: Ipv4Addr, port: u16) -> bool {
    let addr = SocketAddr::from((addr, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The `$apr1$` (Apache MD5) hash of [`BASIC_PASSWORD`], which nginx checks itself
/// (other schemes go through the system's crypt()).
fn apr1_hash() -> Result<String, String> {
    let out = Command::new("openssl")
        .args(["passwd", "-apr1", BASIC_PASSWORD])
        .output()
        .map_err(|e| format!("run openssl passwd: {e}"))?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !hash.starts_with("$apr1$") {
        return Err(format!(
            "openssl passwd -apr1 failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(hash)
}

/// A path as an nginx string literal.
pub(crate) fn quote(path: &Path) -> String {
    let text = path.to_str().expect("UTF-8 path");
    assert!(
        !text.contains(['"', '\\', '$']),
        "path unusable in nginx.conf: {text}"
    );
    format!("\"{text}\"")
}
