//! A real lighttpd (Debian's `lighttpd`, 1.4) serving a test's folder on 127.0.0.1:
//! plain HTTP and HTTPS (mod_openssl, package `lighttpd-mod-openssl`, the good server
//! certificate of [`Pki`]), both taking uploads (`PUT`, mod_webdav, package
//! `lighttpd-mod-webdav`, which needs `webdav.activate` and `webdav.is-readonly =
//! "disable"`; no property database) into the document root.
//!
//! The stat cache is off (`server.stat-cache-engine = "disable"`): with Debian's
//! default lighttpd answers from a cached `stat()` for up to about a second after a
//! file changes (the old ETag, 304 to it, for new bytes), which would make the tests
//! depend on timing. Every `.cfg` is `text/plain` and anything else
//! `application/octet-stream` (`mimetype.assign` with a `""` default): for a file that
//! `mimetype.assign` does not match lighttpd sends no `ETag` and no `Last-Modified`.
//!
//! The access log goes through a pipe (`|exec cat >> access.log`, a `cat` process
//! beside lighttpd): a log file lighttpd would buffer for about 4 s.
//!
//! Its configuration, pid file and logs live in a temporary folder; it runs in the
//! foreground (`lighttpd -D -f CONF`) and stops on drop and if the test process dies
//! (see `daemon.rs`).
//!
//! Validators, as measured (lighttpd defaults: `etag.use-inode`, `etag.use-mtime`,
//! `etag.use-size` enabled): `ETag: "N"`, a decimal hash of inode, modification time
//! (seconds) and size, and `Last-Modified`. A matching `If-None-Match` gets 304; so
//! does `If-Modified-Since` equal to `Last-Modified` when the request has no
//! `If-None-Match` (which takes precedence). So after a renewal keeping size and
//! modification time: renamed over ([`crate::files::put_same_time`], a new inode) the
//! ETag changes (200 to `If-None-Match`) but `If-Modified-Since` alone still gets 304;
//! rewritten in place ([`crate::files::overwrite_same_time`], the same inode) both get
//! 304. `PUT` answers 201 for a new file and 204 when it replaces one.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::daemon::{start_with_retries, Daemon, Privileges};
use super::files::remove_file;
use super::nginx::{free_ports, put_file, quote};
use super::pki::Pki;
use super::weblog::{AccessLog, LogEntry};

/// The lighttpd binary (Debian's `lighttpd` package).
pub const LIGHTTPD_BIN: &str = "/usr/sbin/lighttpd";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running lighttpd; see the module documentation.
pub struct Lighttpd {
    /// The document root (the folder given to [`Lighttpd::start`]); uploads land here.
    pub root: PathBuf,
    /// The temporary folder with `lighttpd.conf`, the logs and the upload temp folder.
    pub dir: PathBuf,
    pub http_port: u16,
    pub https_port: u16,
    /// The access log ([`crate::weblog`]'s format).
    pub log: AccessLog,
    daemon: Option<Daemon>,
    _tmp: tempfile::TempDir,
}

impl Lighttpd {
    /// Starts lighttpd serving `root` with the server certificate of `pki` and waits
    /// until both ports accept connections. Panics with its error log if it cannot.
    pub fn start(root: &Path, pki: &Pki) -> Lighttpd {
        start_with_retries("lighttpd", || Lighttpd::try_start(root, pki))
    }

    fn try_start(root: &Path, pki: &Pki) -> Result<Lighttpd, (String, bool)> {
        let tmp = tempfile::Builder::new()
            .prefix("lighttpd-")
            .tempdir()
            .map_err(|e| (format!("create a temp folder: {e}"), false))?;
        let dir = tmp.path().to_path_buf();
        let root = fs::canonicalize(root)
            .map_err(|e| (format!("document root {}: {e}", root.display()), false))?;
        let ports = free_ports(2);
        let mut server = Lighttpd {
            root,
            log: AccessLog::new(&dir.join("access.log")),
            dir,
            http_port: ports[0],
            https_port: ports[1],
            daemon: None,
            _tmp: tmp,
        };
        server.write_conf(pki).map_err(|e| (e, false))?;
        let args: Vec<OsString> = vec![
            "-D".into(),
            "-f".into(),
            server.dir.join("lighttpd.conf").into(),
        ];
        let daemon = Daemon::spawn(
            LIGHTTPD_BIN,
            &args,
            &server.dir.join("stderr.log"),
            Privileges::Same,
        )
        .map_err(|e| (e, false))?;
        let daemon = server.daemon.insert(daemon);
        match daemon.wait_ready(&ports, START_TIMEOUT, || true) {
            Ok(()) => Ok(server),
            Err(why) => {
                daemon.stop();
                let logs = server.logs();
                let retry = logs.contains("Address already in use");
                Err((format!("{why}\n{logs}"), retry))
            }
        }
    }

    fn write_conf(&self, pki: &Pki) -> Result<(), String> {
        let d = &self.dir;
        fs::create_dir_all(d.join("tmp")).map_err(|e| format!("create tmp: {e}"))?;
        // Tab-separated, as crate::weblog reads it (a literal tab: the config parser
        // knows no `\t`).
        let format = "%>s\t%r\t%b\t%{If-None-Match}i\t%{If-Modified-Since}i\t%p";
        let conf = format!(
            "# Written by test-servers/src/lighttpd.rs.\n\
             server.modules = (\"mod_accesslog\", \"mod_webdav\", \"mod_openssl\")\n\
             server.document-root = {root}\n\
             server.bind = \"127.0.0.1\"\n\
             server.port = {http}\n\
             server.errorlog = {error}\n\
             server.pid-file = {pid}\n\
             server.upload-dirs = ({tmp})\n\
             server.stat-cache-engine = \"disable\"\n\
             mimetype.assign = (\".cfg\" => \"text/plain\", \"\" => \"application/octet-stream\")\n\
             accesslog.filename = {access}\n\
             accesslog.format = \"{format}\"\n\
             webdav.activate = \"enable\"\n\
             webdav.is-readonly = \"disable\"\n\
             $SERVER[\"socket\"] == \"127.0.0.1:{https}\" {{\n    \
                 ssl.engine = \"enable\"\n    \
                 ssl.pemfile = {cert}\n    \
                 ssl.privkey = {key}\n\
             }}\n",
            root = quote(&self.root),
            http = self.http_port,
            https = self.https_port,
            error = quote(&d.join("error.log")),
            pid = quote(&d.join("lighttpd.pid")),
            tmp = quote(&d.join("tmp")),
            access = piped_log(&d.join("access.log")),
            cert = quote(&pki.server_cert),
            key = quote(&pki.server_key),
        );
        fs::write(d.join("lighttpd.conf"), conf).map_err(|e| format!("write lighttpd.conf: {e}"))
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http_port)
    }

    /// `https://localhost:PORT/` (trust `pki.ca_pem`).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}/", self.https_port)
    }

    /// Writes `root/name` so that its validators change ([`put_file`]).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        put_file(&self.root.join(name), bytes);
    }

    /// Removes `root/name` (nothing if missing): lighttpd then answers 404.
    pub fn remove(&self, name: &str) {
        remove_file(&self.root.join(name));
    }

    /// Every request logged so far.
    pub fn access_entries(&self) -> Vec<LogEntry> {
        self.log.entries()
    }

    /// The uploads (`PUT`) logged so far; the files are in [`Lighttpd::root`].
    pub fn uploads(&self) -> Vec<LogEntry> {
        self.log.uploads()
    }

    /// lighttpd's error log and whatever it wrote to stderr.
    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- error.log ---\n{}--- stderr ---\n{}",
            read("error.log"),
            read("stderr.log")
        )
    }
}

/// `accesslog.filename` for a log written through `cat`: lighttpd writes a piped log at
/// once, but buffers a log file and flushes it only every few seconds.
fn piped_log(path: &Path) -> String {
    let text = path.to_str().expect("UTF-8 path");
    assert!(
        !text.contains(['"', '\\', '\'', '$']),
        "path unusable in lighttpd.conf: {text}"
    );
    format!("\"|exec /bin/cat >> '{text}'\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{overwrite_same_time, put_same_time};
    use crate::test_client::{get, put};

    #[test]
    fn serves_uploads_and_tells_same_time_renewals_apart_only_by_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::new(&tmp.path().join("pki"));
        let root = tmp.path().join("www");
        fs::create_dir(&root).unwrap();
        let server = Lighttpd::start(&root, &pki);
        server.put("a.cfg", b"version=1\n");
        let url = format!("{}a.cfg", server.http_url());

        let first = get(&url, &[], None);
        assert_eq!(first.status, 200, "{}", server.logs());
        assert_eq!(first.body, b"version=1\n");
        let etag = first.header("etag").expect("an ETag").to_string();
        let modified = first
            .header("last-modified")
            .expect("Last-Modified")
            .to_string();
        assert_eq!(
            get(&format!("{}none.cfg", server.http_url()), &[], None).status,
            404
        );
        let tls = get(
            &format!("{}a.cfg", server.https_url()),
            &[],
            Some(&pki.ca_pem),
        );
        assert_eq!(
            (tls.status, tls.body.as_slice()),
            (200, &b"version=1\n"[..])
        );
        assert_eq!(tls.header("etag"), Some(etag.as_str()));

        let inm = format!("If-None-Match: {etag}");
        let ims = format!("If-Modified-Since: {modified}");
        assert_eq!(get(&url, &[&inm], None).status, 304);
        // Renamed over (new inode): a new ETag, but the same Last-Modified.
        put_same_time(&root.join("a.cfg"), b"version=2\n");
        let renamed = get(&url, &[&inm], None);
        assert_eq!(renamed.status, 200);
        assert_eq!(renamed.body, b"version=2\n");
        assert_eq!(renamed.header("last-modified"), Some(modified.as_str()));
        assert_eq!(get(&url, &[&ims], None).status, 304, "the trap");
        // Rewritten in place (same inode): nothing tells it apart.
        let etag2 = renamed.header("etag").unwrap().to_string();
        overwrite_same_time(&root.join("a.cfg"), b"version=3\n");
        let inm2 = format!("If-None-Match: {etag2}");
        assert_eq!(get(&url, &[&inm2], None).status, 304, "the trap");
        assert_eq!(get(&url, &[], None).body, b"version=3\n");

        let up = format!("{}up.log", server.http_url());
        assert_eq!(put(&up, b"one", None).status, 201, "{}", server.logs());
        assert_eq!(put(&up, b"two", None).status, 204);
        let up_tls = format!("{}up-tls.log", server.https_url());
        assert_eq!(put(&up_tls, b"three", Some(&pki.ca_pem)).status, 201);
        assert_eq!(fs::read(root.join("up.log")).unwrap(), b"two");
        assert_eq!(fs::read(root.join("up-tls.log")).unwrap(), b"three");

        let entries = server.log.wait_entries(11, Duration::from_secs(5));
        let uploads = server.uploads();
        assert_eq!(uploads.len(), 3, "{entries:#?}");
        assert_eq!(uploads[2].port, server.https_port);
        let not_modified: Vec<&LogEntry> = entries.iter().filter(|e| e.status == 304).collect();
        assert_eq!(not_modified.len(), 3, "{entries:#?}");
        assert_eq!(not_modified[0].if_none_match, etag);
        assert_eq!(not_modified[1].if_modified_since, modified);
        server.remove("a.cfg");
        assert_eq!(get(&url, &[], None).status, 404);
    }
}
