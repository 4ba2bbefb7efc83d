//! A real FTP server, Debian 12's Pure-FTPd 1.0.50 (package pure-ftpd, unpacked under
//! `/opt/license-agent-servers/pure-ftpd` by `scripts/setup-servers.sh`: as a package
//! it conflicts with vsftpd), run in the foreground on 127.0.0.1 from its command line
//! (Pure-FTPd has no configuration file of its own), serving a folder.
//!
//! - Login: the FTP tests' user [`USER`] / [`PASSWORD`] of `scripts/setup-cross.sh`, as
//!   a Pure-FTPd *virtual* user (`-l puredb:`) with the system user's own password hash
//!   (from `/etc/shadow`), uid and gid, and the served folder as its chrooted home. Not
//!   `-l unix`/`-l pam`: those take the home from the system account (`/`), and each
//!   test needs its own folder.
//! - TLS (`tls`): explicit TLS (`AUTH TLS`), `-Y 3`: TLS required for the login *and*
//!   the data connections (a cleartext session is answered `421`, a data connection
//!   after `PROT C` is refused `521`). Pure-FTPd does not require the data connection
//!   to resume the control connection's TLS session.
//! - `refuse_dot_files`: `-x`: a STOR (or rename, mkdir) to a name beginning with '.'
//!   is refused `553 Prohibited file name: .x` (anonymous sessions are always refused
//!   dot files).
//! - `anonymous`: anonymous login (`USER anonymous` or `ftp`, any password) allowed
//!   besides [`USER`]. Pure-FTPd chroots anonymous sessions into the home of the system
//!   user `ftp` (made by the vsftpd package) and has no option to point elsewhere, so
//!   the server is run in a mount namespace of its own (`unshare --mount`) where the
//!   served folder is bind-mounted over that home. Anonymous users *can* upload by
//!   default (no `-i`), into a folder the `ftp` user may write
//!   ([`PureFtpd::allow_uploads`]), but only new files: an overwrite is refused
//!   `550 Anonymous users may not overwrite existing files`, a rename `550 Anonymous
//!   users are not allowed to move/rename files`, a delete `550 Anonymous users can not
//!   delete files`.
//!
//! It needs root (chroot, the uid switch, the mount namespace), like the tests' vsftpd.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ftp::{free_tcp_port, greeting, list, system_user};
pub use super::ftp::{PASSWORD, USER};
use super::tftp::set_mode;

pub const PURE_FTPD_BIN: &str = "/opt/license-agent-servers/pure-ftpd/usr/sbin/pure-ftpd";
pub const PURE_PW_BIN: &str = "/opt/license-agent-servers/pure-ftpd/usr/bin/pure-pw";
const UNSHARE_BIN: &str = "/usr/bin/unshare";
/// The system user Pure-FTPd's anonymous sessions run as (and whose home they get).
pub const ANONYMOUS_USER: &str = "ftp";

/// How the server is run.
#[derive(Default, Clone, Copy)]
pub struct PureOptions<'a> {
    /// Explicit TLS required for login and data, with this certificate and key.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// `-x`: names beginning with '.' cannot be written.
    pub refuse_dot_files: bool,
    /// Anonymous logins allowed (in a mount namespace: see the module's doc).
    pub anonymous: bool,
}

/// Pure-FTPd on 127.0.0.1, serving `root`. Stops on drop.
pub struct PureFtpd {
    pub root: PathBuf,
    pub port: u16,
    tls: bool,
    anonymous: bool,
    child: Child,
}

impl PureFtpd {
    pub fn start(work: &Path, options: PureOptions) -> PureFtpd {
        let root = work.join("root");
        fs::create_dir_all(&root).expect("create the FTP root");
        set_mode(&root, 0o755);
        let user = system_user(USER);
        let pdb = work.join("pureftpd.pdb");
        make_puredb(work, &pdb, &user, &root);
        let log = work.join("pure-ftpd.log");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_tcp_port();
            let mut args: Vec<String> = vec![
                "-S".into(),
                format!("127.0.0.1,{port}"),
                "-l".into(),
                format!("puredb:{}", pdb.display()),
                // No DNS lookups; passive replies name 127.0.0.1; the pid file is ours.
                "-H".into(),
                "-P".into(),
                "127.0.0.1".into(),
                "-g".into(),
                work.join("pure-ftpd.pid").display().to_string(),
            ];
            if !options.anonymous {
                args.push("-E".into());
            }
            if options.refuse_dot_files {
                args.push("-x".into());
            }
            if let Some((cert, key)) = options.tls {
                args.extend([
                    "-Y".into(),
                    "3".into(),
                    "-2".into(),
                    format!("{},{}", cert.display(), key.display()),
                ]);
            }
            let mut command = if options.anonymous {
                let home = system_user(ANONYMOUS_USER).dir;
                let mut c = Command::new(UNSHARE_BIN);
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
                    .arg("sh")
                    .arg(&root)
                    .arg(&home)
                    .arg(PURE_FTPD_BIN);
                c
            } else {
                Command::new(PURE_FTPD_BIN)
            };
            let out = fs::File::create(&log).expect("create the pure-ftpd log");
            let mut child = command
                .args(&args)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup the log"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("start {PURE_FTPD_BIN} (run scripts/setup-servers.sh): {e}")
                });
            // Ready when it says something (with -Y 3 a cleartext hello gets 421).
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("pure-ftpd exited at start: {status}");
                    break;
                }
                if greeting(port).is_some() {
                    return PureFtpd {
                        root,
                        port,
                        tls: options.tls.is_some(),
                        anonymous: options.anonymous,
                        child,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if last.is_empty() {
                last = format!("pure-ftpd did not greet on 127.0.0.1:{port}");
            }
            last = format!("{last}\n{}", fs::read_to_string(&log).unwrap_or_default());
        }
        panic!("pure-ftpd did not start: {last}");
    }

    /// `ftp://user:password@127.0.0.1:port/` (or `ftps://`: explicit TLS); with
    /// `anonymous`, no credentials (an anonymous login).
    pub fn url(&self) -> String {
        if self.anonymous {
            self.shown_url()
        } else {
            self.url_with(PASSWORD)
        }
    }

    /// The URL with [`USER`] and this password (also when anonymous logins are allowed).
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

    /// Lets the login user write in the served folder: [`USER`], or with `anonymous`
    /// the anonymous sessions' [`ANONYMOUS_USER`] (who can then only add new files).
    pub fn allow_uploads(&self) {
        let user = system_user(if self.anonymous { ANONYMOUS_USER } else { USER });
        nix::unistd::chown(&self.root, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", self.root.display()));
    }

    /// The names in the served folder, sorted (to see that no temporary file is left).
    pub fn files(&self) -> Vec<String> {
        list(&self.root)
    }
}

impl Drop for PureFtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The virtual-user database: [`USER`] with the system user's password hash, uid and
/// gid, chrooted (`/./`) in `root`.
fn make_puredb(work: &Path, pdb: &Path, user: &nix::unistd::User, root: &Path) {
    let shadow = fs::read_to_string("/etc/shadow").expect("read /etc/shadow (needs root)");
    let hash = shadow
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{USER}:")))
        .and_then(|rest| rest.split(':').next())
        .filter(|h| h.starts_with('$'))
        .unwrap_or_else(|| panic!("{USER} has no password: run scripts/setup-cross.sh"));
    let passwd = work.join("pureftpd.passwd");
    // login:hash:uid:gid:gecos:home, then pure-pw's 12 empty limit fields.
    fs::write(
        &passwd,
        format!(
            "{USER}:{hash}:{}:{}::{}/./{}\n",
            user.uid,
            user.gid,
            root.display(),
            ":".repeat(12)
        ),
    )
    .expect("write the pure-ftpd passwd file");
    set_mode(&passwd, 0o600);
    let out = Command::new(PURE_PW_BIN)
        .arg("mkdb")
        .arg(pdb)
        .arg("-f")
        .arg(&passwd)
        .output()
        .unwrap_or_else(|e| panic!("run {PURE_PW_BIN} (run scripts/setup-servers.sh): {e}"));
    assert!(
        out.status.success(),
        "pure-pw mkdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curl_client::{get, put};
    use crate::pki::Pki;

    #[test]
    fn serves_a_file_put_and_not_one_removed() {
        let work = tempfile::tempdir().unwrap();
        let server = PureFtpd::start(work.path(), PureOptions::default());
        server.put("a.bin", b"pure bytes");
        let url = format!("{}a.bin", server.url());
        assert_eq!(get(&url, &[]), b"pure bytes");
        server.remove("a.bin");
        let out = crate::curl_client::curl(&[&url], None);
        assert_ne!(out.code, 0, "{}", out.log);
        assert!(out.replied("550"), "{}", out.log);
    }

    #[test]
    fn refuses_dot_files_with_x() {
        let work = tempfile::tempdir().unwrap();
        let options = PureOptions {
            refuse_dot_files: true,
            ..PureOptions::default()
        };
        let server = PureFtpd::start(work.path(), options);
        server.allow_uploads();
        let out = put(&format!("{}.x", server.url()), b"hidden", &[]);
        assert!(out.replied("553 Prohibited file name"), "{}", out.log);
        let out = put(&format!("{}x", server.url()), b"plain", &[]);
        assert_eq!(out.code, 0, "{}", out.log);
        assert_eq!(server.files(), ["x"]);
        assert_eq!(fs::read(server.root.join("x")).unwrap(), b"plain");
    }

    #[test]
    fn tls_is_required_and_works() {
        let work = tempfile::tempdir().unwrap();
        let pki = Pki::new(&work.path().join("pki"));
        let options = PureOptions {
            tls: Some((&pki.server_cert, &pki.server_key)),
            ..PureOptions::default()
        };
        let server = PureFtpd::start(work.path(), options);
        server.put("t.bin", b"secret");
        let ca = pki.ca_pem.display().to_string();
        let url = format!("ftp://{USER}:{PASSWORD}@127.0.0.1:{}/t.bin", server.port);
        let got = get(&url, &["--ssl-reqd", "--cacert", &ca]);
        assert_eq!(got, b"secret");
        let out = crate::curl_client::curl(&[&url], None);
        assert_ne!(out.code, 0, "a cleartext login: {}", out.log);
        assert!(out.replied("421"), "{}", out.log);
        assert!(server.url().starts_with("ftps://"));
    }

    #[test]
    fn anonymous_reads_and_adds_files() {
        let work = tempfile::tempdir().unwrap();
        let options = PureOptions {
            anonymous: true,
            ..PureOptions::default()
        };
        let server = PureFtpd::start(work.path(), options);
        server.put("a.bin", b"for all");
        assert_eq!(get(&format!("{}a.bin", server.url()), &[]), b"for all");
        server.allow_uploads();
        let out = put(&format!("{}up.bin", server.url()), b"new", &[]);
        assert_eq!(out.code, 0, "{}", out.log);
        let out = put(&format!("{}up.bin", server.url()), b"again", &[]);
        assert!(
            out.replied("550 Anonymous users may not overwrite"),
            "{}",
            out.log
        );
        assert_eq!(server.files(), ["a.bin", "up.bin"]);
        // The named user logs in too.
        assert_eq!(
            get(&format!("{}a.bin", server.url_with(PASSWORD)), &[]),
            b"for all"
        );
    }
}
