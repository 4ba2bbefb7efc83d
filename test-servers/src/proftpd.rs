//! A real FTP server, Debian 12's ProFTPD 1.3.8 (packages proftpd-core and, for mod_tls,
//! proftpd-mod-crypto, unpacked under `/opt/license-agent-servers/` by
//! `scripts/setup-servers.sh`: as a package it conflicts with vsftpd), run in the
//! foreground (`proftpd -n -c CONF`) on 127.0.0.1 from a configuration of the test's
//! own, serving a folder (`DefaultRoot`, a chroot) to the FTP tests' user [`USER`],
//! checked through the PAM service of `scripts/setup-cross.sh` (as vsftpd does).
//!
//! - `tls`: explicit TLS (`AUTH TLS`) with mod_tls, `TLSRequired on`: required for the
//!   login and the data (a cleartext `USER` is answered `550 SSL/TLS required on the
//!   control channel`). mod_tls's default is kept: a data connection must resume the
//!   control connection's TLS session, else it is refused (the log says "client did not
//!   reuse TLS session, rejecting data connection"; the client sees the data connection
//!   close after `150`).
//! - `allow_overwrite`: `AllowOverwrite`, off by default as in ProFTPD itself: a STOR
//!   over an existing file is refused `550 NAME: Overwrite permission denied`, an RNTO
//!   onto an existing name `550 NAME: Rename permission denied`.
//!
//! It needs root (PAM, chroot), like the tests' vsftpd.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ftp::{free_tcp_port, greeting, list, system_user};
pub use super::ftp::{PASSWORD, USER};
use super::tftp::set_mode;

pub const PROFTPD_BIN: &str = "/opt/license-agent-servers/proftpd-core/usr/sbin/proftpd";
/// Where mod_tls.so is (package proftpd-mod-crypto).
pub const PROFTPD_MODULES: &str = "/opt/license-agent-servers/proftpd-mod-crypto/usr/lib/proftpd";
/// The PAM service the password is checked with (made by `scripts/setup-cross.sh`).
const PAM_SERVICE: &str = "license-agent-test-ftp";

/// How the server is run.
#[derive(Default, Clone, Copy)]
pub struct ProOptions<'a> {
    /// Explicit TLS required for login and data, with this certificate and key.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// `AllowOverwrite on`; off (the default), STOR and RNTO over a file are refused.
    pub allow_overwrite: bool,
}

/// ProFTPD on 127.0.0.1, serving `root` to [`USER`]. Stops on drop.
pub struct Proftpd {
    pub root: PathBuf,
    pub port: u16,
    tls: bool,
    work: PathBuf,
    child: Child,
}

impl Proftpd {
    pub fn start(work: &Path, options: ProOptions) -> Proftpd {
        let root = work.join("root");
        fs::create_dir_all(&root).expect("create the FTP root");
        set_mode(&root, 0o755);
        let out_path = work.join("proftpd.out");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_tcp_port();
            let w = work.display();
            let mut conf = format!(
                "ServerType standalone\nServerName \"license-agent test\"\n\
                 DefaultAddress 127.0.0.1\nSocketBindTight on\nPort {port}\nUseIPv6 off\n\
                 User nobody\nGroup nogroup\nUseReverseDNS off\nRequireValidShell off\n\
                 AuthOrder mod_auth_pam.c mod_auth_unix.c\nAuthPAMConfig {PAM_SERVICE}\n\
                 ScoreboardFile {w}/proftpd.scoreboard\nPidFile {w}/proftpd.pid\n\
                 DelayTable none\nWtmpLog off\nTransferLog none\n\
                 SystemLog {w}/proftpd.log\nDefaultRoot {}\nAllowOverwrite {}\n",
                root.display(),
                if options.allow_overwrite { "on" } else { "off" },
            );
            // No ident lookups: mod_ident is a shared module, not loaded. Passive ports:
            // the kernel's ephemeral ones on 127.0.0.1.
            if let Some((cert, key)) = options.tls {
                conf.push_str(&format!(
                    "ModulePath {PROFTPD_MODULES}\nLoadModule mod_tls.c\nTLSEngine on\n\
                     TLSRequired on\nTLSRSACertificateFile {}\nTLSRSACertificateKeyFile {}\n\
                     TLSLog {w}/tls.log\n",
                    cert.display(),
                    key.display()
                ));
            }
            let conf_path = work.join("proftpd.conf");
            fs::write(&conf_path, conf).expect("write proftpd.conf");
            let out = fs::File::create(&out_path).expect("create the proftpd output file");
            let mut child = Command::new(PROFTPD_BIN)
                .arg("-n")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup the output file"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("start {PROFTPD_BIN} (run scripts/setup-servers.sh): {e}")
                });
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("proftpd exited at start: {status}");
                    break;
                }
                if greeting(port).is_some_and(|l| l.starts_with("220")) {
                    return Proftpd {
                        root,
                        port,
                        tls: options.tls.is_some(),
                        work: work.to_path_buf(),
                        child,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if last.is_empty() {
                last = format!("proftpd did not greet on 127.0.0.1:{port}");
            }
            last = format!(
                "{last}\n{}{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(work.join("proftpd.log")).unwrap_or_default()
            );
        }
        panic!("proftpd did not start: {last}");
    }

    /// `ftp://user:password@127.0.0.1:port/` (or `ftps://`: explicit TLS).
    pub fn url(&self) -> String {
        self.url_with(PASSWORD)
    }

    pub fn url_with(&self, password: &str) -> String {
        super::ftp::url(self.tls, self.port, Some((USER, password)))
    }

    /// The URL as the agent shows it (without the credentials).
    pub fn shown_url(&self) -> String {
        super::ftp::url(self.tls, self.port, None)
    }

    /// Writes `name` in the served folder (world-readable).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        super::files::serve(&self.root, name, bytes);
    }

    pub fn remove(&self, name: &str) {
        super::files::remove_file(&self.root.join(name));
    }

    /// Lets [`USER`] write in the served folder.
    pub fn allow_uploads(&self) {
        let user = system_user(USER);
        nix::unistd::chown(&self.root, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", self.root.display()));
    }

    /// The names in the served folder, sorted (to see that no temporary file is left).
    pub fn files(&self) -> Vec<String> {
        list(&self.root)
    }

    /// The server's logs so far (its system log and, with TLS, mod_tls's).
    pub fn log(&self) -> String {
        ["proftpd.out", "proftpd.log", "tls.log"]
            .iter()
            .filter_map(|name| fs::read_to_string(self.work.join(name)).ok())
            .collect()
    }
}

impl Drop for Proftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curl_client::{curl, get, put};
    use crate::pki::Pki;

    #[test]
    fn serves_a_file_put_and_not_one_removed() {
        let work = tempfile::tempdir().unwrap();
        let server = Proftpd::start(work.path(), ProOptions::default());
        server.put("a.bin", b"pro bytes");
        let url = format!("{}a.bin", server.url());
        assert_eq!(get(&url, &[]), b"pro bytes");
        server.remove("a.bin");
        let out = curl(&[&url], None);
        assert_ne!(out.code, 0, "{}", out.log);
        assert!(out.replied("550"), "{}", out.log);
    }

    #[test]
    fn without_allow_overwrite_stor_and_rnto_over_a_file_are_refused() {
        let work = tempfile::tempdir().unwrap();
        let server = Proftpd::start(work.path(), ProOptions::default());
        server.allow_uploads();
        let out = put(&format!("{}new.bin", server.url()), b"one", &[]);
        assert_eq!(out.code, 0, "{}", out.log);
        let out = put(&format!("{}new.bin", server.url()), b"two", &[]);
        assert!(
            out.replied("550 new.bin: Overwrite permission denied"),
            "{}",
            out.log
        );
        let out = put(&format!("{}tmp.bin", server.url()), b"three", &[]);
        assert_eq!(out.code, 0, "{}", out.log);
        let url = server.url();
        let out = curl(&["-Q", "RNFR tmp.bin", "-Q", "RNTO new.bin", &url], None);
        assert!(
            out.replied("550 new.bin: Rename permission denied"),
            "{}",
            out.log
        );
        assert_eq!(server.files(), ["new.bin", "tmp.bin"]);
        assert_eq!(fs::read(server.root.join("new.bin")).unwrap(), b"one");
    }

    #[test]
    fn with_allow_overwrite_stor_and_rnto_replace() {
        let work = tempfile::tempdir().unwrap();
        let options = ProOptions {
            allow_overwrite: true,
            ..ProOptions::default()
        };
        let server = Proftpd::start(work.path(), options);
        server.allow_uploads();
        server.put("old.bin", b"old");
        let out = put(&format!("{}tmp.bin", server.url()), b"new", &[]);
        assert_eq!(out.code, 0, "{}", out.log);
        let url = server.url();
        let out = curl(&["-Q", "RNFR tmp.bin", "-Q", "RNTO old.bin", &url], None);
        assert_eq!(out.code, 0, "{}", out.log);
        assert_eq!(server.files(), ["old.bin"]);
        assert_eq!(fs::read(server.root.join("old.bin")).unwrap(), b"new");
    }

    #[test]
    fn tls_is_required_and_works() {
        let work = tempfile::tempdir().unwrap();
        let pki = Pki::new(&work.path().join("pki"));
        let options = ProOptions {
            tls: Some((&pki.server_cert, &pki.server_key)),
            ..ProOptions::default()
        };
        let server = Proftpd::start(work.path(), options);
        server.put("t.bin", b"secret");
        let ca = pki.ca_pem.display().to_string();
        let url = format!("ftp://{USER}:{PASSWORD}@127.0.0.1:{}/t.bin", server.port);
        assert_eq!(get(&url, &["--ssl-reqd", "--cacert", &ca]), b"secret");
        let out = curl(&[&url], None);
        assert!(
            out.replied("550 SSL/TLS required on the control channel"),
            "{}",
            out.log
        );
        // A data connection that does not resume the control connection's session.
        let out = curl(
            &["--ssl-reqd", "--cacert", &ca, "--no-sessionid", &url],
            None,
        );
        assert_ne!(out.code, 0, "{}", out.log);
        assert!(server.log().contains("client did not reuse TLS session"));
        assert!(server.url().starts_with("ftps://"));
    }
}
