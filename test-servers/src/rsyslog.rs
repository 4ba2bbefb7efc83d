//! rsyslogd (Debian's `rsyslog`, `rsyslog-openssl` for TLS: `scripts/setup-servers.sh`)
//! on 127.0.0.1, receiving syslog over one transport: UDP (`imudp`), TCP (`imtcp`,
//! octet counting or LF framing), a local socket in the BSD form as `/dev/log`
//! (`imuxsock`, for the agent's `local = "<path>"`) or TLS (`imtcp` with the `ossl` netstream driver, the
//! test PKI's server certificate, and a client certificate required: `x509/certvalid`).
//! It runs in the foreground (`-n`) with its own configuration, work folder and pid file
//! in a folder of the test's, as the test's user, and writes every line it receives into
//! `received.log` as `facility.severity pri=N host=H app=A procid=P msg=M`, one a line
//! ([`Rsyslog::received`] reads them back). Stopped on drop.
//!
//! Ready means a probe line sent over the transport (a plain TCP/UDP one; for TLS the
//! port accepting) has been written; probe lines carry the app-name `probe`.

use std::fs;
use std::io::Write as _;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::daemon::{start_with_retries, Daemon, Privileges};
use super::nginx::accepts;
use super::pki::Pki;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How the server receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Udp,
    Tcp,
    Tls,
    /// A local socket in the BSD form, as `/dev/log` (`imuxsock`), at [`Rsyslog::socket`].
    Local,
}

impl Listen {
    /// The scheme the agent's `syslog.server` URL takes.
    pub fn scheme(self) -> &'static str {
        match self {
            Listen::Udp => "udp",
            Listen::Tcp => "tcp",
            Listen::Tls => "tls",
            Listen::Local => "local",
        }
    }
}

/// One line rsyslogd received, as its template wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub facility: String,
    pub severity: String,
    pub pri: u32,
    pub host: String,
    pub app: String,
    pub procid: String,
    pub msg: String,
}

pub struct Rsyslog {
    _daemon: Daemon,
    dir: PathBuf,
    port: u16,
    listen: Listen,
}

impl Rsyslog {
    /// Starts rsyslogd in `dir` (created) listening on a free port; `pki` is needed for
    /// TLS. Panics if it does not start.
    pub fn start(dir: &Path, listen: Listen, pki: Option<&Pki>) -> Rsyslog {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        assert!(
            Path::new(RSYSLOGD).exists(),
            "no {RSYSLOGD}: run scripts/setup-servers.sh (installs rsyslog)"
        );
        start_with_retries("rsyslogd", || {
            let port = match listen {
                Listen::Udp | Listen::Local => super::tftp::free_udp_port(),
                Listen::Tcp | Listen::Tls => super::ftp::free_tcp_port(),
            };
            let conf = dir.join("rsyslog.conf");
            fs::write(&conf, config(dir, listen, port, pki)).map_err(|e| (e.to_string(), false))?;
            let _ = fs::remove_file(dir.join("received.log"));
            let args = [
                "-n".into(),
                "-f".into(),
                conf.clone().into_os_string(),
                "-i".into(),
                dir.join("rsyslogd.pid").into_os_string(),
            ];
            let stderr = dir.join("rsyslogd.stderr");
            let mut daemon = Daemon::spawn(RSYSLOGD, &args, &stderr, Privileges::Same)
                .map_err(|e| (e, false))?;
            match wait_ready(dir, listen, port, &mut daemon) {
                Ok(()) => Ok(Rsyslog {
                    _daemon: daemon,
                    dir: dir.to_path_buf(),
                    port,
                    listen,
                }),
                Err(e) => {
                    let log = fs::read_to_string(&stderr).unwrap_or_default();
                    Err((format!("{e}\n{log}"), true))
                }
            }
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The agent's `syslog.server`: `udp://127.0.0.1:PORT` (the test PKI's server
    /// certificate names 127.0.0.1 too).
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.listen.scheme(), self.port)
    }

    /// The local socket of [`Listen::Local`].
    pub fn socket(&self) -> PathBuf {
        self.dir.join("log.sock")
    }

    /// Every line received so far, but the probes.
    pub fn received(&self) -> Vec<Received> {
        let text = fs::read_to_string(self.dir.join("received.log")).unwrap_or_default();
        text.lines()
            .filter_map(parse)
            .filter(|r| r.app != "probe")
            .collect()
    }

    /// Waits (up to `timeout`) until a received line satisfies `ok`; returns it.
    pub fn wait_for(&self, timeout: Duration, ok: impl Fn(&Received) -> bool) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.received().into_iter().find(&ok) {
                return Some(r);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until rsyslogd writes a probe line (TLS: accepts connections).
fn wait_ready(dir: &Path, listen: Listen, port: u16, daemon: &mut Daemon) -> Result<(), String> {
    {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = "<14>1 - - probe - - - ready";
        loop {
            if let Some(status) = daemon.exited() {
                return Err(format!("rsyslogd exited at start: {status}"));
            }
            let written =
                fs::read_to_string(dir.join("received.log")).is_ok_and(|t| t.contains("app=probe"));
            match listen {
                Listen::Tls if accepts(port) => return Ok(()),
                Listen::Tls => {}
                _ if written => return Ok(()),
                Listen::Udp => {
                    if let Ok(socket) = UdpSocket::bind("127.0.0.1:0") {
                        let _ = socket.send_to(probe.as_bytes(), ("127.0.0.1", port));
                    }
                }
                Listen::Local => {
                    if let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() {
                        let bsd = "<14>Jan  1 00:00:00 probe: ready";
                        let _ = socket.send_to(bsd.as_bytes(), dir.join("log.sock"));
                    }
                }
                Listen::Tcp => {
                    if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) {
                        let _ = tcp.write_all(format!("{} {probe}", probe.len()).as_bytes());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("rsyslogd not ready within {START_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// rsyslogd's configuration: one listener, and every line into `received.log`.
fn config(dir: &Path, listen: Listen, port: u16, pki: Option<&Pki>) -> String {
    let d = dir.display();
    let input = match listen {
        Listen::Udp => format!(
            "module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\n"
        ),
        Listen::Tcp => format!(
            "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n"
        ),
        Listen::Local => format!(
            "module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{d}/log.sock\")\n"
        ),
        Listen::Tls => {
            let pki = pki.expect("a TLS rsyslogd needs the test PKI");
            format!(
                "global(defaultNetstreamDriver=\"ossl\"\n  defaultNetstreamDriverCAFile=\"{}\"\n  \
                 defaultNetstreamDriverCertFile=\"{}\"\n  defaultNetstreamDriverKeyFile=\"{}\")\n\
                 module(load=\"imtcp\" streamDriver.name=\"ossl\" streamDriver.mode=\"1\"\n  \
                 streamDriver.authMode=\"x509/certvalid\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n",
                pki.ca_pem.display(),
                pki.server_cert.display(),
                pki.server_key.display()
            )
        }
    };
    format!(
        "global(workDirectory=\"{d}\")\n\
         {input}\
         template(name=\"seen\" type=\"string\" string=\"%syslogfacility-text%.%syslogseverity-text% \
         pri=%pri% host=%hostname% app=%app-name% procid=%procid% msg=%msg%\\n\")\n\
         if $inputname != \"rsyslogd\" then {{\n  \
         action(type=\"omfile\" file=\"{d}/received.log\" template=\"seen\")\n}}\n"
    )
}

/// One line of `received.log`.
fn parse(line: &str) -> Option<Received> {
    let (level, rest) = line.split_once(" pri=")?;
    let (facility, severity) = level.split_once('.')?;
    let (pri, rest) = rest.split_once(" host=")?;
    let (host, rest) = rest.split_once(" app=")?;
    let (app, rest) = rest.split_once(" procid=")?;
    let (procid, msg) = rest.split_once(" msg=")?;
    Some(Received {
        facility: facility.to_string(),
        severity: severity.to_string(),
        pri: pri.parse().ok()?,
        host: host.to_string(),
        app: app.to_string(),
        procid: procid.to_string(),
        msg: msg.to_string(),
    })
}
