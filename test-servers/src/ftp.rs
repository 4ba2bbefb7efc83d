//! A real FTP server (Debian's vsftpd 3.0.3) on 127.0.0.1 serving a folder to the test
//! user [`USER`] (a system user with a password, made by `scripts/setup-cross.sh`, and
//! checked through the PAM service [`PAM_SERVICE`]), plain or with explicit TLS
//! (`AUTH TLS`) using the tests' PKI, passive ports on 127.0.0.1. It needs root (PAM,
//! chroot), like the tests' TFTP server.
//!
//! [`Vsftpd::start_on`] listens (and opens its passive ports) on another address, on a
//! port of the caller's choosing: the emulated phone's DHCP network (`netns.rs`) runs
//! vsftpd inside its network namespace on `ftp://10.77.0.1/` (port 21).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tftp::set_mode;

const VSFTPD_BIN: &str = "/usr/sbin/vsftpd";
/// The test user and password (`scripts/setup-cross.sh` makes them).
pub const USER: &str = "lagent-ftp";
pub const PASSWORD: &str = "ftp-Secret-1";
/// The PAM service vsftpd checks the password with (`/etc/pam.d/`, made by setup-cross).
const PAM_SERVICE: &str = "license-agent-test-ftp";

/// How the server secures its connections.
pub enum Security<'a> {
    Plain,
    /// Explicit TLS required for the login and the data, with this certificate and key.
    Tls {
        cert: &'a Path,
        key: &'a Path,
    },
    /// The same, and a client certificate signed by `client_ca` required (mutual TLS).
    MutualTls {
        cert: &'a Path,
        key: &'a Path,
        client_ca: &'a Path,
    },
}

/// vsftpd on 127.0.0.1, serving `root` to [`USER`]. Stops on drop.
pub struct Vsftpd {
    pub root: PathBuf,
    /// The address it listens on (127.0.0.1 unless [`Vsftpd::start_on`]).
    pub addr: Ipv4Addr,
    pub port: u16,
    tls: bool,
    child: Child,
}

impl Vsftpd {
    /// Starts the server; `extra` is more of `vsftpd.conf` (e.g. `local_max_rate=200\n`).
    pub fn start(work: &Path, security: Security, extra: &str) -> Vsftpd {
        Vsftpd::start_on(work, security, extra, Ipv4Addr::LOCALHOST, None)
    }

    /// [`Vsftpd::start`] listening on `addr` (an address of the calling thread's network
    /// namespace, also the passive address it gives clients), on `port` when given (e.g.
    /// 21, for URLs without a port), else on a free port.
    pub fn start_on(
        work: &Path,
        security: Security,
        extra: &str,
        addr: Ipv4Addr,
        port: Option<u16>,
    ) -> Vsftpd {
        let root = work.join("root");
        fs::create_dir_all(&root).expect("create the FTP root");
        // vsftpd drops to the user after its chroot: the folder must be theirs to read.
        set_mode(&root, 0o755);
        let empty = work.join("empty");
        fs::create_dir_all(&empty).expect("create the secure chroot folder");
        set_mode(&empty, 0o755);
        let tls = !matches!(security, Security::Plain);
        let mut last = String::new();
        for _ in 0..5 {
            let port = port.unwrap_or_else(free_tcp_port);
            let mut conf = format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address={addr}\nlisten_port={port}\n\
                 background=NO\nanonymous_enable=NO\nlocal_enable=YES\nwrite_enable=NO\n\
                 pam_service_name={PAM_SERVICE}\nuserlist_enable=NO\ncheck_shell=NO\n\
                 local_root={}\nchroot_local_user=YES\nallow_writeable_chroot=YES\n\
                 secure_chroot_dir={}\nseccomp_sandbox=NO\npasv_enable=YES\n\
                 pasv_address={addr}\nxferlog_enable=NO\nuse_localtime=NO\n\
                 delay_failed_login=0\nvsftpd_log_file={}\n",
                root.display(),
                empty.display(),
                work.join("vsftpd.log").display(),
            );
            let (cert, key, client_ca) = match &security {
                Security::Plain => (None, None, None),
                Security::Tls { cert, key } => (Some(cert), Some(key), None),
                Security::MutualTls {
                    cert,
                    key,
                    client_ca,
                } => (Some(cert), Some(key), Some(client_ca)),
            };
            if let (Some(cert), Some(key)) = (cert, key) {
                conf.push_str(&format!(
                    "ssl_enable=YES\nrsa_cert_file={}\nrsa_private_key_file={}\n\
                     force_local_logins_ssl=YES\nforce_local_data_ssl=YES\n\
                     require_ssl_reuse=YES\nssl_ciphers=HIGH\n",
                    cert.display(),
                    key.display()
                ));
            }
            if let Some(client_ca) = client_ca {
                conf.push_str(&format!(
                    "require_cert=YES\nvalidate_cert=YES\nca_certs_file={}\n",
                    client_ca.display()
                ));
            }
            conf.push_str(extra);
            let conf_path = work.join("vsftpd.conf");
            fs::write(&conf_path, conf).expect("write vsftpd.conf");
            let mut child = Command::new(VSFTPD_BIN)
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start {VSFTPD_BIN} (package vsftpd): {e}"));
            // Ready when it greets.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut stderr) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                    }
                    last = format!("vsftpd exited at start: {status}: {err}");
                    break;
                }
                if greets(addr, port) {
                    return Vsftpd {
                        root,
                        addr,
                        port,
                        tls,
                        child,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if last.is_empty() {
                last = format!("vsftpd did not greet on {addr}:{port}");
            }
        }
        panic!("vsftpd did not start: {last}");
    }

    /// `ftp://user:password@127.0.0.1:port/` (or `ftps://`).
    pub fn url(&self) -> String {
        self.url_with(PASSWORD)
    }

    pub fn url_with(&self, password: &str) -> String {
        url(self.tls, self.port, Some((USER, password)))
    }

    /// The URL as the agent shows it (without the credentials).
    pub fn shown_url(&self) -> String {
        url(self.tls, self.port, None)
    }

    /// Writes `name` in the served folder (world-readable: the user must read it).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        super::files::serve(&self.root, name, bytes);
    }

    pub fn remove(&self, name: &str) {
        super::files::remove_file(&self.root.join(name));
    }

    /// Lets [`USER`] write in the served folder (the server must be started with
    /// `write_enable=YES`): the agents' status reports go up there.
    pub fn allow_uploads(&self) {
        let user = nix::unistd::User::from_name(USER)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no user {USER}: run scripts/setup-cross.sh"));
        nix::unistd::chown(&self.root, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", self.root.display()));
    }

    /// Kills every session (the processes vsftpd forked per connection, and theirs): the
    /// connections are cut where they are; the listener stays.
    pub fn kill_sessions(&self) -> usize {
        let sessions = children(self.child.id());
        let mut all: Vec<u32> = sessions.iter().flat_map(|&p| children(p)).collect();
        all.extend(&sessions);
        for &pid in &all {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        all.len()
    }
}

impl Vsftpd {
    /// How many sessions (connections, one process each) are open now.
    pub fn sessions(&self) -> usize {
        children(self.child.id()).len()
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes whose parent is `pid` (from `/proc/*/stat`: no procps needed).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            // `pid (comm) state ppid ...`: the fields after the last ')'.
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn greets(addr: Ipv4Addr, port: u16) -> bool {
    greeting_on(addr, port).is_some_and(|line| line.starts_with("220"))
}

/// The first line an FTP server on 127.0.0.1:`port` says (its greeting), if it says one.
pub(crate) fn greeting(port: u16) -> Option<String> {
    greeting_on(Ipv4Addr::LOCALHOST, port)
}

/// [`greeting`] of a server on `addr`.
fn greeting_on(addr: Ipv4Addr, port: u16) -> Option<String> {
    let stream = TcpStream::connect((addr, port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

/// The names in `dir`, sorted.
pub(crate) fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub(crate) fn system_user(name: &str) -> nix::unistd::User {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no system user {name}: run scripts/setup-cross.sh"))
}

/// A TCP port free on 127.0.0.1 now.
/// `ftp://[user:password@]127.0.0.1:port/`, or `ftps://` (explicit TLS): the URL of a
/// test's FTP server.
pub fn url(tls: bool, port: u16, login: Option<(&str, &str)>) -> String {
    let scheme = if tls { "ftps" } else { "ftp" };
    let login = login.map_or(String::new(), |(user, password)| {
        format!("{user}:{password}@")
    });
    format!("{scheme}://{login}127.0.0.1:{port}/")
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
