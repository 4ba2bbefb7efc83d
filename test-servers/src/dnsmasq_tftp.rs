//! A real TFTP server, dnsmasq 2.90's (Debian 12's package dnsmasq-base: the binary
//! without a system service, the same package the phone VM's DHCP uses; installed by
//! `scripts/setup-servers.sh`), run in the foreground (`--keep-in-foreground`) on
//! 127.0.0.1 from its command line alone (`--conf-file=/dev/null`), with DNS off
//! (`--port=0`), no DHCP (no range given), only TFTP on, serving a folder.
//!
//! dnsmasq's TFTP cannot leave UDP port 69: only one can run on the machine at a time.
//! [`DnsmasqTftp::start`] therefore first takes an exclusive `flock` on [`LOCK_FILE`],
//! held until the server is dropped: the lock is per open file, so it keeps out other
//! tests of this process (threads) and of other processes alike; a second start waits.
//! It needs root (port 69).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

use super::atftpd::answers;

pub const DNSMASQ_BIN: &str = "/usr/sbin/dnsmasq";
/// The machine-wide lock that lets one dnsmasq TFTP server run at a time.
pub const LOCK_FILE: &str = "/tmp/license-agent-dnsmasq-tftp.lock";
/// TFTP's port, the only one dnsmasq serves on.
pub const PORT: u16 = 69;

/// dnsmasq's TFTP server on 127.0.0.1:69, serving `root`. Stops on drop (and then lets
/// the next one start).
pub struct DnsmasqTftp {
    pub root: PathBuf,
    pub port: u16,
    /// Its log (`--log-facility`), in the work folder.
    pub log: PathBuf,
    child: Child,
    // Dropped after `child` is killed and reaped (fields drop after `Drop::drop`).
    _lock: Flock<fs::File>,
}

impl DnsmasqTftp {
    /// Serves `work/root`; waits for any other dnsmasq TFTP server of the tests to stop.
    pub fn start(work: &Path) -> DnsmasqTftp {
        let root = work.join("root");
        fs::create_dir_all(&root).expect("create the TFTP root");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| panic!("open {LOCK_FILE}: {e}"));
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("flock {LOCK_FILE}: {e}"));
        let log = work.join("dnsmasq.log");
        let mut last = String::new();
        // A port clash here is someone else's TFTP server on port 69: retry a little.
        for _ in 0..3 {
            let _ = fs::remove_file(&log);
            let mut child = Command::new(DNSMASQ_BIN)
                .args(["--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
                .args(["--no-resolv", "--no-hosts", "--enable-tftp"])
                .arg(format!("--tftp-root={}", root.display()))
                .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
                .args(["--user=root", "--group=root"])
                .arg(format!("--pid-file={}", work.join("dnsmasq.pid").display()))
                .arg(format!("--log-facility={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "start {DNSMASQ_BIN} (package dnsmasq-base, scripts/setup-servers.sh): {e}"
                    )
                });
            if answers(PORT, &mut child, &mut last) {
                return DnsmasqTftp {
                    root,
                    port: PORT,
                    log,
                    child,
                    _lock: lock,
                };
            }
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            let _ = child.wait();
            if last.is_empty() {
                last = format!("dnsmasq did not answer on 127.0.0.1:{PORT}");
            }
            last = format!(
                "{last}: {err}\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("dnsmasq (TFTP) did not start: {last}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `tftp://127.0.0.1:69/`.
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

impl Drop for DnsmasqTftp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curl_client::{curl, get};

    #[test]
    fn serves_a_file_put_and_not_one_removed() {
        let work = tempfile::tempdir().unwrap();
        let server = DnsmasqTftp::start(work.path());
        server.put("a.bin", &[9u8; 1500]);
        let url = format!("{}a.bin", server.url());
        assert_eq!(get(&url, &[]), [9u8; 1500]);
        server.remove("a.bin");
        let out = curl(&[&url], None);
        assert_eq!(out.code, 68, "{}", out.log);
    }

    #[test]
    fn two_servers_take_turns() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = DnsmasqTftp::start(a.path());
        first.put("which", b"first");
        let second = std::thread::spawn({
            let b = b.path().to_path_buf();
            move || {
                let server = DnsmasqTftp::start(&b);
                server.put("which", b"second");
                get(&format!("{}which", server.url()), &[])
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(get(&format!("{}which", first.url()), &[]), b"first");
        drop(first);
        assert_eq!(second.join().unwrap(), b"second");
    }
}
