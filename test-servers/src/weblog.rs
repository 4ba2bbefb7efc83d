//! The access log Apache and lighttpd write for the tests (`apache.rs`,
//! `lighttpd.rs`): one line per request, tab-separated fields in this order: status,
//! request line, response body bytes, the `If-None-Match` and `If-Modified-Since`
//! headers received (`-` when none) and the local port (so the endpoint). Both servers
//! escape `"` and `\` as `\"` and `\\` and control bytes as `\xNN`; [`LogEntry::parse`]
//! undoes that, so `if_none_match` holds the header as sent (`"..."` with its quotes).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// One request in the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub status: u16,
    /// The request line, e.g. `GET /a.cfg HTTP/1.1`.
    pub request: String,
    pub method: String,
    pub path: String,
    /// Response body bytes sent (0 for none).
    pub bytes_sent: u64,
    /// `-` when the client sent none.
    pub if_none_match: String,
    pub if_modified_since: String,
    /// The port the request came in on.
    pub port: u16,
}

impl LogEntry {
    /// Parses one line; `None` if it is not one.
    pub fn parse(line: &str) -> Option<LogEntry> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return None;
        }
        let request = unescape(f[1]);
        let mut words = request.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        Some(LogEntry {
            status: f[0].parse().ok()?,
            method,
            path,
            request,
            bytes_sent: if f[2] == "-" { 0 } else { f[2].parse().ok()? },
            if_none_match: unescape(f[3]),
            if_modified_since: unescape(f[4]),
            port: f[5].parse().ok()?,
        })
    }
}

/// An access log file in that format.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub path: PathBuf,
}

impl AccessLog {
    pub fn new(path: &Path) -> AccessLog {
        AccessLog {
            path: path.to_path_buf(),
        }
    }

    /// The whole file.
    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Every request logged so far (lines that do not parse are skipped).
    pub fn entries(&self) -> Vec<LogEntry> {
        self.text().lines().filter_map(LogEntry::parse).collect()
    }

    /// The uploads (`PUT`) logged so far.
    pub fn uploads(&self) -> Vec<LogEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.method == "PUT")
            .collect()
    }

    /// Waits (up to `timeout`) until at least `count` requests are logged and returns
    /// them all (a server logs a request after answering it, and may buffer the line).
    pub fn wait_entries(&self, count: usize, timeout: Duration) -> Vec<LogEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.entries();
            if entries.len() >= count || Instant::now() > deadline {
                return entries;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Undoes the servers' log escaping (`\"`, `\\`, `\xNN`, `\n`, `\t`, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let next = bytes[i + 1];
            let hex = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (next, hex) {
                (b'x', Some(byte)) => {
                    out.push(byte);
                    i += 4;
                    continue;
                }
                (b'n', _) => out.push(b'\n'),
                (b't', _) => out.push(b'\t'),
                (b'r', _) => out.push(b'\r'),
                (other, _) => out.push(other),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escaped_lines() {
        let e = LogEntry::parse(
            "304\tGET /a.cfg HTTP/1.1\t-\t\\\"5-63f\\\"\tMon, 01 Jan 2024 00:00:00 GMT\t8080",
        )
        .unwrap();
        assert_eq!(e.status, 304);
        assert_eq!((e.method.as_str(), e.path.as_str()), ("GET", "/a.cfg"));
        assert_eq!(e.bytes_sent, 0);
        assert_eq!(e.if_none_match, "\"5-63f\"");
        assert_eq!(e.port, 8080);
        assert_eq!(unescape("a\\x22b\\\\"), "a\"b\\");
        assert!(LogEntry::parse("not a line").is_none());
    }
}
