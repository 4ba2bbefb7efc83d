//! BusyBox's httpd (Debian's `busybox`, 1.35) serving a test's folder on 127.0.0.1:
//! plain HTTP only (BusyBox has no TLS) and read-only (`PUT` answers 501). Started as
//! `busybox httpd -f -vv -c CONF -p 127.0.0.1:PORT -h ROOT`, with an empty
//! configuration file of its own (without `-c` it would read `/etc/httpd.conf` or
//! `ROOT/httpd.conf`), in the foreground; it stops on drop and if the test process
//! dies (see `daemon.rs`). Every answer has `Connection: close`: one request per
//! connection.
//!
//! Validators, as measured: `ETag: "MTIME-SIZE"`, the modification time in seconds and
//! the size, both in lower-case hex (e.g. `"65920080-a"`), and `Last-Modified`. A
//! matching `If-None-Match` gets 304; `If-Modified-Since` is ignored (always 200). So
//! a renewal keeping size and modification time ([`crate::files::put_same_time`]) gets
//! 304 to `If-None-Match`. A missing file gets 404.
//!
//! With `-vv` BusyBox writes `IP:PORT: url:/PATH` and `IP:PORT: response:STATUS` for
//! each request to stderr: [`BusyboxHttpd::requests`] reads them.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::daemon::{start_with_retries, Daemon, Privileges};
use super::files::remove_file;
use super::nginx::{free_ports, put_file};

/// The BusyBox binary (Debian's `busybox` package).
pub const BUSYBOX_BIN: &str = "/bin/busybox";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running BusyBox httpd; see the module documentation.
pub struct BusyboxHttpd {
    /// The document root (the folder given to [`BusyboxHttpd::start`]).
    pub root: PathBuf,
    /// The temporary folder with the (empty) configuration and the log.
    pub dir: PathBuf,
    pub http_port: u16,
    daemon: Option<Daemon>,
    _tmp: tempfile::TempDir,
}

/// One request as BusyBox logged it (it does not log the method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyboxEntry {
    /// The client's `IP:PORT` (one connection per request).
    pub peer: String,
    /// The path asked for, without the query.
    pub path: String,
    pub status: u16,
}

impl BusyboxHttpd {
    /// Starts BusyBox httpd serving `root` and waits until it accepts connections.
    pub fn start(root: &Path) -> BusyboxHttpd {
        start_with_retries("busybox httpd", || BusyboxHttpd::try_start(root))
    }

    fn try_start(root: &Path) -> Result<BusyboxHttpd, (String, bool)> {
        let tmp = tempfile::Builder::new()
            .prefix("busybox-httpd-")
            .tempdir()
            .map_err(|e| (format!("create a temp folder: {e}"), false))?;
        let dir = tmp.path().to_path_buf();
        let root = fs::canonicalize(root)
            .map_err(|e| (format!("document root {}: {e}", root.display()), false))?;
        let port = free_ports(1)[0];
        let conf = dir.join("httpd.conf");
        fs::write(&conf, "").map_err(|e| (format!("write httpd.conf: {e}"), false))?;
        let args: Vec<OsString> = vec![
            "httpd".into(),
            "-f".into(),
            "-vv".into(),
            "-c".into(),
            conf.into(),
            "-p".into(),
            format!("127.0.0.1:{port}").into(),
            "-h".into(),
            root.clone().into(),
        ];
        let mut server = BusyboxHttpd {
            root,
            dir,
            http_port: port,
            daemon: None,
            _tmp: tmp,
        };
        let daemon = Daemon::spawn(
            BUSYBOX_BIN,
            &args,
            &server.dir.join("stderr.log"),
            Privileges::Same,
        )
        .map_err(|e| (e, false))?;
        let daemon = server.daemon.insert(daemon);
        match daemon.wait_ready(&[port], START_TIMEOUT, || true) {
            Ok(()) => Ok(server),
            Err(why) => {
                daemon.stop();
                let log = server.log();
                let retry = log.contains("Address already in use") || log.contains("bind");
                Err((format!("{why}\n--- stderr ---\n{log}"), retry))
            }
        }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http_port)
    }

    /// Writes `root/name` so that its validators change ([`put_file`]).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        put_file(&self.root.join(name), bytes);
    }

    /// Removes `root/name` (nothing if missing): BusyBox then answers 404.
    pub fn remove(&self, name: &str) {
        remove_file(&self.root.join(name));
    }

    /// What BusyBox wrote to stderr (`-vv`: each request's path and status).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The requests answered so far (a path whose status is not logged yet is left out).
    pub fn requests(&self) -> Vec<BusyboxEntry> {
        let mut paths: Vec<(String, String)> = Vec::new();
        let mut entries = Vec::new();
        for line in self.log().lines() {
            let Some((peer, what)) = line.split_once(": ") else {
                continue;
            };
            if let Some(path) = what.strip_prefix("url:") {
                paths.push((peer.to_string(), path.to_string()));
            } else if let Some(status) = what.strip_prefix("response:") {
                let Ok(status) = status.trim().parse() else {
                    continue;
                };
                let path = paths
                    .iter()
                    .rposition(|(p, _)| p == peer)
                    .map(|i| paths.remove(i).1)
                    .unwrap_or_default();
                entries.push(BusyboxEntry {
                    peer: peer.to_string(),
                    path,
                    status,
                });
            }
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::put_same_time;
    use crate::test_client::{get, put};

    #[test]
    fn serves_files_with_mtime_size_etags_and_answers_304_to_a_same_time_renewal() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("www");
        fs::create_dir(&root).unwrap();
        let server = BusyboxHttpd::start(&root);
        server.put("a.cfg", b"version=1\n");
        let url = format!("{}a.cfg", server.http_url());

        let first = get(&url, &[], None);
        assert_eq!(first.status, 200, "{}", server.log());
        assert_eq!(first.body, b"version=1\n");
        let etag = first.header("etag").expect("an ETag").to_string();
        let modified = first
            .header("last-modified")
            .expect("Last-Modified")
            .to_string();
        let mtime = fs::metadata(root.join("a.cfg"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(etag, format!("\"{mtime:x}-a\""));
        assert_eq!(
            get(&format!("{}none.cfg", server.http_url()), &[], None).status,
            404
        );

        put_same_time(&root.join("a.cfg"), b"version=2\n");
        let inm = format!("If-None-Match: {etag}");
        assert_eq!(get(&url, &[&inm], None).status, 304, "the trap");
        let ims = format!("If-Modified-Since: {modified}");
        assert_eq!(get(&url, &[&ims], None).status, 200, "IMS ignored");
        assert_eq!(put(&url, b"version=3\n", None).status, 501, "read-only");
        assert_eq!(fs::read(root.join("a.cfg")).unwrap(), b"version=2\n");

        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.requests().len() < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let statuses: Vec<(String, u16)> = server
            .requests()
            .into_iter()
            .map(|e| (e.path, e.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("/a.cfg".to_string(), 200),
                ("/none.cfg".to_string(), 404),
                ("/a.cfg".to_string(), 304),
                ("/a.cfg".to_string(), 200),
                ("/a.cfg".to_string(), 501),
            ]
        );
    }
}
