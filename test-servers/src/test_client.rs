//! The unit tests' HTTP client: curl (HTTP/1.1, trusting only the test CA), one request
//! per call.

use std::path::Path;
use std::process::Command;

/// An answer as curl got it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `method url` with `headers` (`Name: value`), `body` as the request body (a PUT),
/// trusting `ca` for HTTPS.
pub fn request(
    method: &str,
    url: &str,
    headers: &[&str],
    body: Option<&[u8]>,
    ca: Option<&Path>,
) -> Answer {
    let dir = tempfile::tempdir().expect("temp folder");
    let head_file = dir.path().join("head");
    let body_file = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--path-as-is", "--max-time", "10"]);
    if method == "HEAD" {
        cmd.arg("-I"); // headers go to the -o file too: the body is left empty below
    } else {
        cmd.args(["-X", method]);
    }
    cmd.arg("-D")
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file)
        .args(["-H", "Expect:"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(bytes) = body {
        let upload = dir.path().join("upload");
        std::fs::write(&upload, bytes).expect("write the upload");
        cmd.arg("--data-binary")
            .arg(format!("@{}", upload.display()));
    }
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    let out = cmd.arg(url).output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {method} {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&head_file).expect("curl's header file");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: if method == "HEAD" {
            Vec::new()
        } else {
            std::fs::read(&body_file).unwrap_or_default()
        },
    }
}

pub fn get(url: &str, headers: &[&str], ca: Option<&Path>) -> Answer {
    request("GET", url, headers, None, ca)
}

pub fn put(url: &str, body: &[u8], ca: Option<&Path>) -> Answer {
    request("PUT", url, &[], Some(body), ca)
}
