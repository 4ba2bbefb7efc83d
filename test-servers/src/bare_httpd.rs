//! An HTTP server that sends no validators at all: no `ETag`, no `Last-Modified`, never
//! 304 whatever conditional headers come. Every `GET` is 200 with the file's bytes and
//! `Content-Length` (404 when missing), so a client can only tell a renewal by the
//! bytes themselves. `PUT` writes into the folder (201 new, 204 replaced). Plain HTTP,
//! keep-alive.
//!
//! It is the fault server's [`Fault::Files`] mode (our own HTTP/1.1 server, threads in
//! the test process), so it shares its bounds: uploads up to 64 KiB, 1000 connections,
//! and it stops by itself after [`crate::faults::MAX_LIFETIME`] (5 min).

use std::fs;
use std::path::{Path, PathBuf};

use super::faults::{Fault, FaultServer, SeenRequest};
use super::files::remove_file;
use super::nginx::put_file;

/// A running no-validator server; see the module documentation.
pub struct BareHttpd {
    /// The folder served (the one given to [`BareHttpd::start`]); uploads land here.
    pub root: PathBuf,
    server: FaultServer,
}

impl BareHttpd {
    /// Starts serving `root` (answering at once: the listener is bound on return).
    pub fn start(root: &Path) -> BareHttpd {
        let root = fs::canonicalize(root)
            .unwrap_or_else(|e| panic!("document root {}: {e}", root.display()));
        BareHttpd {
            server: FaultServer::start(Fault::Files(root.clone())),
            root,
        }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn http_url(&self) -> String {
        self.server.url()
    }

    pub fn http_port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Writes `root/name` atomically ([`put_file`]).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        put_file(&self.root.join(name), bytes);
    }

    /// Removes `root/name` (nothing if missing): then 404.
    pub fn remove(&self, name: &str) {
        remove_file(&self.root.join(name));
    }

    /// Every request seen so far, in order (head and, for uploads, body).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.server.seen()
    }

    /// The uploads (`PUT`) seen so far; the files are in [`BareHttpd::root`].
    pub fn uploads(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method.eq_ignore_ascii_case("PUT"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::put_same_time;
    use crate::test_client::{get, put, request};

    #[test]
    fn serves_and_takes_files_without_validators() {
        let tmp = tempfile::tempdir().unwrap();
        let server = BareHttpd::start(tmp.path());
        server.put("a.cfg", b"version=1\n");
        let url = format!("{}a.cfg", server.http_url());

        let first = get(&url, &[], None);
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"version=1\n"[..])
        );
        assert_eq!(first.header("content-length"), Some("10"));
        assert_eq!(first.header("etag"), None);
        assert_eq!(first.header("last-modified"), None);
        assert_eq!(
            get(&format!("{}none.cfg", server.http_url()), &[], None).status,
            404
        );

        // Conditional requests are answered in full: the new bytes come.
        put_same_time(&server.root.join("a.cfg"), b"version=2\n");
        let conditional = get(
            &url,
            &[
                "If-None-Match: *",
                "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT",
            ],
            None,
        );
        assert_eq!(conditional.status, 200);
        assert_eq!(conditional.body, b"version=2\n");
        let head = request("HEAD", &url, &[], None, None);
        assert_eq!((head.status, head.body.len()), (200, 0));

        let up = format!("{}up.log", server.http_url());
        assert_eq!(put(&up, b"one", None).status, 201);
        assert_eq!(put(&up, b"two", None).status, 204);
        assert_eq!(fs::read(server.root.join("up.log")).unwrap(), b"two");
        let uploads = server.uploads();
        assert_eq!(uploads.len(), 2);
        assert_eq!(
            (uploads[1].path.as_str(), uploads[1].body.as_slice()),
            ("/up.log", &b"two"[..])
        );
        assert_eq!(
            get(&format!("{}../etc/passwd", server.http_url()), &[], None).status,
            404
        );
        assert_eq!(request("DELETE", &up, &[], None, None).status, 405);
        server.remove("a.cfg");
        assert_eq!(get(&url, &[], None).status, 404);
    }
}
