//! A real Apache (Debian's `apache2`, 2.4) serving a test's folder on 127.0.0.1: plain
//! HTTP and HTTPS (mod_ssl, the good server certificate of [`Pki`]), both taking uploads
//! (`PUT`, mod_dav with mod_dav_fs, its lock database in the work folder) into the
//! document root, where they land as files.
//!
//! Self-contained configuration (`apache2.conf` in a temporary folder with its pid
//! file, logs and lock database; no `/etc/apache2`, no `APACHE_*` variables): the event
//! MPM, started with `-DFOREGROUND`, one child process. Root cannot run Apache, so as
//! root it runs as 65534 with file access rights kept ([`Privileges::Unprivileged`]).
//! It stops on drop and if the test process dies (see `daemon.rs`).
//!
//! Validators, as measured (Apache 2.4 defaults, which Debian does not change):
//! `ETag: "SIZE-MTIME"`, both in lower-case hex, the modification time in microseconds
//! (`FileETag MTime Size`: since 2.3.14 the default no longer includes the inode), e.g.
//! `"a-60dd710230240"`, weak (`W/"..."`) while the file is less than a second old (so
//! one file's ETag changes from weak to strong; `If-None-Match` on a `GET` compares
//! weakly, so either matches), and `Last-Modified`.
//! A matching `If-None-Match`, or an `If-Modified-Since` not older than the file, gets
//! 304. So a renewal keeping size and modification time ([`crate::files::put_same_time`],
//! even renamed over, a new inode) gets 304: the client keeps its old bytes.
//! `PUT` answers 201 for a new file and 204 when it replaces one.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::daemon::{start_with_retries, Daemon, Privileges};
use super::files::remove_file;
use super::nginx::{free_ports, put_file, quote};
use super::pki::Pki;
use super::weblog::{AccessLog, LogEntry};

/// The Apache binary (Debian's `apache2` package).
pub const APACHE_BIN: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Apache; see the module documentation.
pub struct Apache {
    /// The document root (the folder given to [`Apache::start`]); uploads land here.
    pub root: PathBuf,
    /// The temporary folder with `apache2.conf`, the logs and the lock database.
    pub dir: PathBuf,
    pub http_port: u16,
    pub https_port: u16,
    /// The access log ([`crate::weblog`]'s format).
    pub log: AccessLog,
    daemon: Option<Daemon>,
    _tmp: tempfile::TempDir,
}

impl Apache {
    /// Starts Apache serving `root` with the server certificate of `pki` and waits until
    /// both ports accept connections. Panics with Apache's error log if it cannot.
    pub fn start(root: &Path, pki: &Pki) -> Apache {
        start_with_retries("apache2", || Apache::try_start(root, pki))
    }

    fn try_start(root: &Path, pki: &Pki) -> Result<Apache, (String, bool)> {
        let tmp = tempfile::Builder::new()
            .prefix("apache-")
            .tempdir()
            .map_err(|e| (format!("create a temp folder: {e}"), false))?;
        let dir = tmp.path().to_path_buf();
        let root = fs::canonicalize(root)
            .map_err(|e| (format!("document root {}: {e}", root.display()), false))?;
        let ports = free_ports(2);
        let mut apache = Apache {
            root,
            log: AccessLog::new(&dir.join("access.log")),
            dir,
            http_port: ports[0],
            https_port: ports[1],
            daemon: None,
            _tmp: tmp,
        };
        apache.write_conf(pki).map_err(|e| (e, false))?;
        let args: Vec<OsString> = vec![
            "-d".into(),
            apache.dir.clone().into(),
            "-f".into(),
            apache.dir.join("apache2.conf").into(),
            "-DFOREGROUND".into(),
        ];
        let daemon = Daemon::spawn(
            APACHE_BIN,
            &args,
            &apache.dir.join("stderr.log"),
            Privileges::Unprivileged,
        )
        .map_err(|e| (e, false))?;
        let daemon = apache.daemon.insert(daemon);
        let pid_file = apache.dir.join("apache2.pid");
        match daemon.wait_ready(&ports, START_TIMEOUT, || pid_file.exists()) {
            Ok(()) => Ok(apache),
            Err(why) => {
                daemon.stop();
                let logs = apache.logs();
                let retry = logs.contains("Address already in use");
                Err((format!("{why}\n{logs}"), retry))
            }
        }
    }

    fn write_conf(&self, pki: &Pki) -> Result<(), String> {
        let d = &self.dir;
        fs::create_dir_all(d.join("run")).map_err(|e| format!("create run: {e}"))?;
        let modules: String = [
            "mpm_event",
            "authz_core",
            "mime",
            "dir",
            "dav",
            "dav_fs",
            "socache_shmcb",
            "ssl",
        ]
        .iter()
        .map(|m| format!("LoadModule {m}_module {MODULES}/mod_{m}.so\n"))
        .collect();
        let conf = format!(
            "# Written by test-servers/src/apache.rs.\n\
             {modules}\
             ServerName localhost\n\
             Listen 127.0.0.1:{http}\n\
             Listen 127.0.0.1:{https} https\n\
             PidFile {pid}\n\
             DefaultRuntimeDir {run}\n\
             ErrorLog {error}\n\
             LogLevel info\n\
             StartServers 1\nServerLimit 1\nThreadLimit 16\nThreadsPerChild 16\n\
             MaxRequestWorkers 16\nMinSpareThreads 1\nMaxSpareThreads 16\n\
             KeepAlive On\nMaxKeepAliveRequests 100\nKeepAliveTimeout 5\n\
             TypesConfig /etc/mime.types\n\
             AddType text/plain .cfg\n\
             LogFormat \"%>s\\t%r\\t%B\\t%{{If-None-Match}}i\\t%{{If-Modified-Since}}i\\t%{{local}}p\" agent\n\
             CustomLog {access} agent\n\
             DAVLockDB {lockdb}\n\
             SSLSessionCache shmcb:{scache}(512000)\n\
             DocumentRoot {root}\n\
             <Directory {root}>\n    \
                 Options None\n    \
                 AllowOverride None\n    \
                 Require all granted\n    \
                 Dav On\n\
             </Directory>\n\
             <VirtualHost 127.0.0.1:{https}>\n    \
                 SSLEngine on\n    \
                 SSLCertificateFile {cert}\n    \
                 SSLCertificateKeyFile {key}\n\
             </VirtualHost>\n",
            http = self.http_port,
            https = self.https_port,
            pid = quote(&d.join("apache2.pid")),
            run = quote(&d.join("run")),
            error = quote(&d.join("error.log")),
            access = quote(&d.join("access.log")),
            lockdb = quote(&d.join("run/davlock")),
            scache = d.join("run/ssl_scache").display(),
            root = quote(&self.root),
            cert = quote(&pki.server_cert),
            key = quote(&pki.server_key),
        );
        fs::write(d.join("apache2.conf"), conf).map_err(|e| format!("write apache2.conf: {e}"))
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http_port)
    }

    /// `https://localhost:PORT/` (trust `pki.ca_pem`).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}/", self.https_port)
    }

    /// Writes `root/name` so that its validators change ([`put_file`]); for a renewal
    /// that keeps them, [`crate::files::put_same_time`]`(&apache.root.join(name), ..)`.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        put_file(&self.root.join(name), bytes);
    }

    /// Removes `root/name` (nothing if missing): Apache then answers 404.
    pub fn remove(&self, name: &str) {
        remove_file(&self.root.join(name));
    }

    /// Every request logged so far.
    pub fn access_entries(&self) -> Vec<LogEntry> {
        self.log.entries()
    }

    /// The uploads (`PUT`) logged so far; the files are in [`Apache::root`].
    pub fn uploads(&self) -> Vec<LogEntry> {
        self.log.uploads()
    }

    /// Apache's error log (level `info`) and whatever it wrote to stderr.
    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- error.log ---\n{}--- stderr ---\n{}",
            read("error.log"),
            read("stderr.log")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::put_same_time;
    use crate::test_client::{get, put};

    #[test]
    fn serves_uploads_and_answers_304_to_a_same_time_renewal() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::new(&tmp.path().join("pki"));
        let root = tmp.path().join("www");
        fs::create_dir(&root).unwrap();
        let apache = Apache::start(&root, &pki);
        apache.put("a.cfg", b"version=1\n");

        let first = get(&format!("{}a.cfg", apache.http_url()), &[], None);
        assert_eq!(first.status, 200, "{}", apache.logs());
        assert_eq!(first.body, b"version=1\n");
        let etag = first.header("etag").expect("an ETag").to_string();
        let modified = first
            .header("last-modified")
            .expect("Last-Modified")
            .to_string();
        // Weak while the file is less than a second old (put_file's mtime is now).
        let strong = etag.trim_start_matches("W/");
        assert!(
            strong.starts_with("\"a-"),
            "ETag \"SIZE-MTIME\" in hex: {etag}"
        );
        let missing = get(&format!("{}none.cfg", apache.http_url()), &[], None);
        assert_eq!(missing.status, 404);

        // HTTPS: the same file.
        let tls = get(
            &format!("{}a.cfg", apache.https_url()),
            &[],
            Some(&pki.ca_pem),
        );
        assert_eq!(
            (tls.status, tls.body.as_slice()),
            (200, &b"version=1\n"[..])
        );
        assert!(tls.header("etag").unwrap().ends_with(strong));

        // The trap: same size and mtime, new bytes, new inode: 304 all the same.
        put_same_time(&root.join("a.cfg"), b"version=2\n");
        let inm = format!("If-None-Match: {etag}");
        let ims = format!("If-Modified-Since: {modified}");
        let url = format!("{}a.cfg", apache.http_url());
        assert_eq!(get(&url, &[&inm], None).status, 304);
        assert_eq!(get(&url, &[&ims], None).status, 304);
        assert_eq!(get(&url, &[], None).body, b"version=2\n");
        // A change of mtime does change the ETag.
        apache.put("a.cfg", b"version=3\n");
        let changed = get(&url, &[&inm], None);
        assert_eq!(changed.status, 200);
        assert!(!changed.header("etag").unwrap().ends_with(strong));

        // Uploads: 201 new, 204 replaced, over HTTP and HTTPS; they land in the root.
        let up = format!("{}up.log", apache.http_url());
        assert_eq!(put(&up, b"one", None).status, 201, "{}", apache.logs());
        assert_eq!(put(&up, b"two", None).status, 204);
        let up_tls = format!("{}up-tls.log", apache.https_url());
        assert_eq!(put(&up_tls, b"three", Some(&pki.ca_pem)).status, 201);
        assert_eq!(fs::read(root.join("up.log")).unwrap(), b"two");
        assert_eq!(fs::read(root.join("up-tls.log")).unwrap(), b"three");

        let entries = apache.log.wait_entries(10, Duration::from_secs(5));
        let uploads = apache.uploads();
        assert_eq!(uploads.len(), 3, "{entries:#?}");
        assert_eq!(uploads[0].path, "/up.log");
        assert_eq!(uploads[2].port, apache.https_port);
        let conditional: Vec<&LogEntry> = entries.iter().filter(|e| e.status == 304).collect();
        assert_eq!(conditional.len(), 2, "{entries:#?}");
        assert_eq!(conditional[0].if_none_match, etag);
        assert_eq!(conditional[1].if_modified_since, modified);
        assert_eq!(conditional[0].bytes_sent, 0);
        // A file older than a second: the strong "SIZE-MTIME" (hex, microseconds).
        let mtime = std::time::UNIX_EPOCH + Duration::from_micros(1_704_067_200_123_456);
        fs::File::options()
            .write(true)
            .open(root.join("a.cfg"))
            .and_then(|f| f.set_modified(mtime))
            .unwrap();
        let old = get(&url, &[], None);
        assert_eq!(old.header("etag"), Some("\"a-60dd710230240\""));
        assert_eq!(
            old.header("last-modified"),
            Some("Mon, 01 Jan 2024 00:00:00 GMT")
        );
        apache.remove("a.cfg");
        assert_eq!(get(&url, &[], None).status, 404);
    }
}
