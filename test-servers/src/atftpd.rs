//! A real TFTP server, Debian 12's atftpd 0.8.0 (package atftpd, unpacked under
//! `/opt/license-agent-servers/atftpd` by `scripts/setup-servers.sh`: as a package it
//! conflicts with tftpd-hpa, which the tests install), run in the foreground
//! (`atftpd --daemon --no-fork`) on a free UDP port of 127.0.0.1, serving a folder with
//! its default options (tsize, blksize, timeout, windowsize and multicast on). It runs
//! as root (`--user root --group root`) so that it reads whatever the test puts there;
//! it needs root for that, like the tests' tftpd-hpa.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tftp::free_udp_port;

pub const ATFTPD_BIN: &str = "/opt/license-agent-servers/atftpd/usr/sbin/atftpd";

/// atftpd on 127.0.0.1, serving `root`. Stops on drop.
pub struct Atftpd {
    pub root: PathBuf,
    pub port: u16,
    /// Its log (`--logfile -`, verbose), next to the served folder.
    pub log: PathBuf,
    child: Child,
}

impl Atftpd {
    pub fn start(root: &Path) -> Atftpd {
        fs::create_dir_all(root).expect("create the TFTP root");
        let log = root.with_extension("atftpd.log");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_udp_port();
            let out = fs::File::create(&log).expect("create the atftpd log");
            let mut child = Command::new(ATFTPD_BIN)
                .args(["--daemon", "--no-fork", "--port", &port.to_string()])
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--user",
                    "root",
                    "--group",
                    "root",
                ])
                .args(["--logfile", "-", "--verbose=6"])
                .arg(root)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup the log"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("start {ATFTPD_BIN} (run scripts/setup-servers.sh): {e}")
                });
            if answers(port, &mut child, &mut last) {
                return Atftpd {
                    root: root.to_path_buf(),
                    port,
                    log,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            if last.is_empty() {
                last = format!("atftpd did not answer on 127.0.0.1:{port}");
            }
            last = format!("{last}\n{}", fs::read_to_string(&log).unwrap_or_default());
        }
        panic!("atftpd did not start: {last}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("tftp://127.0.0.1:{}/", self.port)
    }

    /// Writes `name` in the served folder (world-readable).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        super::files::serve(&self.root, name, bytes);
    }

    pub fn remove(&self, name: &str) {
        super::files::remove_file(&self.root.join(name));
    }
}

impl Drop for Atftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the TFTP server just started on 127.0.0.1:`port` answers a read request (for
/// a file that does not exist) within 5 s; `last` says why not when it exited.
pub(crate) fn answers(port: u16, child: &mut Child, last: &mut String) -> bool {
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP probe");
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            *last = format!("exited at start: {status}");
            return false;
        }
        let _ = probe.send_to(b"\x00\x01-probe-\x00octet\x00", ("127.0.0.1", port));
        let mut buf = [0u8; 600];
        if probe.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curl_client::{curl, get};

    #[test]
    fn serves_a_file_put_and_not_one_removed() {
        let work = tempfile::tempdir().unwrap();
        let server = Atftpd::start(&work.path().join("root"));
        server.put("a.bin", &[7u8; 3000]);
        let url = format!("{}a.bin", server.url());
        assert_eq!(get(&url, &[]), [7u8; 3000]);
        server.remove("a.bin");
        let out = curl(&[&url], None);
        // 68: TFTP file not found.
        assert_eq!(out.code, 68, "{}", out.log);
    }
}
