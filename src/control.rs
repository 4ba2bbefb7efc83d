//! The control socket: how `license-agent status`, `check-sync` and `install` reach the
//! running daemon. The protocol, shared by both its ends (the command line is the client,
//! `crate::daemon` the server):
//!
//! - A Unix stream socket at `control_socket` (config), mode 0600. The daemon refuses a
//!   peer whose uid is neither root nor its own (SO_PEERCRED), answering
//!   `{"ok":false,"error":"permission denied"}`.
//! - The client sends one request, a JSON object on one line of at most
//!   [`MAX_REQUEST`] bytes; the daemon answers one JSON object on one line and closes.
//! - Requests: `{"cmd":"status"}`, `{"cmd":"check-sync"}`,
//!   `{"cmd":"install","file":NAME,"license":HEX}` (what `license-agent install` sends
//!   when the daemon holds the store: the file's bytes, at most the size cap plus one,
//!   in hex; the daemon judges and stores them as the install command would, and
//!   applies the result at once), and, only when the daemon runs with the test clock (a
//!   test aid), `{"cmd":"test-set-time","now":UNIX}`.
//! - Answers: `{"ok":true,"status":{…}}` (the report of `status --json`, with its
//!   `daemon` section), `{"ok":true,"check_sync":{…}}`,
//!   `{"ok":true,"install":{"code":N,"stdout":…,"stderr":…,"accepted":…,"outcome":{…}},"status":{…}}`
//!   (the install's words and exit status, and its outcome as data: an
//!   [`InstallOutcome`] tagged by `result`),
//!   or `{"ok":false,"error":"…"}` for a malformed, oversize, unknown or refused
//!   request. Nothing a client sends can stop the daemon.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accept::InstallOutcome;
use crate::status::{FileFetchJson, StatusJson};

/// The longest request line: an install carries a whole license file in hex.
pub(crate) const MAX_REQUEST: usize = 2 * (crate::format::MAX_FILE_SIZE + 1) + 4096;
/// The longest answer a client reads (a status is a few KiB).
pub(crate) const MAX_ANSWER: u64 = 4 << 20;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Request {
    // Empty braces, not unit variants: serde checks unknown fields only on these.
    Status {},
    CheckSync {},
    /// Install a license file given by hand (`license`: its bytes in hex; `file`: its
    /// name, for the words and the events).
    Install {
        file: String,
        license: String,
    },
    /// Test aid: sets the daemon's test clock.
    TestSetTime {
        now: i64,
    },
}

/// What a check-sync did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CheckSyncJson {
    /// Each file's outcome.
    pub(crate) files: Vec<FileFetchJson>,
    /// Whether every file was fetched (an absent file counts as fetched).
    pub(crate) fetched: bool,
    /// The feature set's changes (`+ name until end`, `- name`, `~ name: …`: each a
    /// [`FeatureChange`](crate::accept::FeatureChange) in words).
    pub(crate) changes: Vec<String>,
    pub(crate) enabled: Vec<String>,
}

/// The daemon's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<StatusJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) check_sync: Option<CheckSyncJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) install: Option<InstallAnswer>,
}

/// The answer to an install: the outcome, and the words `license-agent install` says for
/// it with the exit status (for a client that shows words without reading the outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstallAnswer {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// Stored (the feature set may have changed).
    #[serde(default)]
    pub(crate) accepted: bool,
    pub(crate) outcome: InstallOutcome,
}

impl From<InstallOutcome> for InstallAnswer {
    fn from(outcome: InstallOutcome) -> Self {
        let words = outcome.words();
        InstallAnswer {
            code: words.code,
            stdout: words.stdout,
            stderr: words.stderr,
            accepted: outcome.accepted(),
            outcome,
        }
    }
}

impl Response {
    pub(crate) fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::default()
        }
    }
}

/// Why a client got no answer.
#[derive(Debug)]
pub(crate) enum ControlError {
    /// Nothing listens there (no daemon running), or the socket cannot be reached.
    NoDaemon(std::io::Error),
    /// The daemon was reached but did not answer (in time): it may still act on the
    /// request.
    NoAnswer(std::io::Error),
    /// The socket refused this user.
    PermissionDenied,
    /// The daemon answered something that is not the protocol.
    Protocol(String),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NoDaemon(e) => write!(f, "no daemon answered: {e}"),
            ControlError::NoAnswer(e) => write!(f, "the daemon did not answer: {e}"),
            ControlError::PermissionDenied => f.write_str(
                "permission denied: only root or the daemon's own user may use the control socket",
            ),
            ControlError::Protocol(e) => write!(f, "the daemon's answer is not understood: {e}"),
        }
    }
}

/// Sends one request and reads the answer (client side).
pub(crate) fn call(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => ControlError::PermissionDenied,
        _ => ControlError::NoDaemon(e),
    })?;
    let io = |e: std::io::Error| ControlError::NoAnswer(e);
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_vec(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push(b'\n');
    // A refused peer is answered before its request is read, so the write may fail:
    // the answer that explains why is still there to read.
    let written = stream.write_all(&line);
    let mut answer = Vec::new();
    let read = stream.take(MAX_ANSWER).read_to_end(&mut answer);
    if answer.is_empty() {
        written.map_err(io)?;
        read.map_err(io)?;
    }
    let response: Response =
        serde_json::from_slice(&answer).map_err(|e| ControlError::Protocol(e.to_string()))?;
    if response.error.as_deref() == Some(PERMISSION_DENIED) {
        return Err(ControlError::PermissionDenied);
    }
    Ok(response)
}

/// The error text of a refused peer.
pub(crate) const PERMISSION_DENIED: &str = "permission denied";

/// The request in the first line of `buf` (server side), refused when that line (or
/// `buf`, before its line ends) is longer than [`MAX_REQUEST`]. The protocol is this
/// function and [`encode_response`]; the daemon's clients module does the I/O.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Request, String> {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))
}

/// One answer line (server side).
pub(crate) fn encode_response(response: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(response)
        .unwrap_or_else(|_| br#"{"ok":false,"error":"the answer could not be written"}"#.to_vec());
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&Request::Status {}).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::CheckSync {}).unwrap(),
            r#"{"cmd":"check-sync"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"install","file":"a.cfg","license":"3c3f"}"#)
                .unwrap(),
            Request::Install {
                file: "a.cfg".into(),
                license: "3c3f".into()
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"test-set-time","now":5}"#).unwrap(),
            Request::TestSetTime { now: 5 }
        );
        for bad in [
            r#"{"cmd":"reboot"}"#,
            r#"{"cmd":"status","x":1}"#,
            r#"{"cmd":"reload"}"#,
            r#"{"cmd":"install","file":"a.cfg"}"#,
            r#"{"cmd":"install","file":"a.cfg","license":"00","now":5}"#,
            "[]",
            "",
            "{",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_bounded_and_checked() {
        assert_eq!(
            parse_request(b"{\"cmd\":\"status\"}\n"),
            Ok(Request::Status {})
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"status\"}"),
            Ok(Request::Status {})
        );
        let big = vec![b' '; MAX_REQUEST + 10];
        assert!(parse_request(&big).unwrap_err().contains("longer"));
        // The largest install (a file of the cap plus one byte) fits in one request.
        let install = Request::Install {
            file: "/tmp/some/long/path/to/a-license-file.cfg".into(),
            license: hex::encode(vec![0xffu8; crate::format::MAX_FILE_SIZE + 1]),
        };
        let mut line = serde_json::to_vec(&install).unwrap();
        assert!(line.len() <= MAX_REQUEST);
        line.push(b'\n');
        assert_eq!(parse_request(&line), Ok(install));
        assert!(parse_request(b"\xff\xfe\n")
            .unwrap_err()
            .contains("malformed"));
        let answer = encode_response(&Response::error("x"));
        assert_eq!(answer, b"{\"ok\":false,\"error\":\"x\"}\n");
    }
}
