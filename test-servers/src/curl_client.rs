//! The client the servers' own tests check them with: curl (`curl -v`), its exit code,
//! what it fetched and the protocol exchange it printed (FTP replies as `< 550 ...`).

use std::io::Write;
use std::process::{Command, Stdio};

pub struct Outcome {
    /// curl's exit code (0: done; 9, 19, 25, 78 FTP refusals; 68 TFTP not found).
    pub code: i32,
    pub body: Vec<u8>,
    /// curl's `-v` output.
    pub log: String,
}

impl Outcome {
    /// Whether the server answered with a line beginning `reply` (e.g. `553 Prohibited`).
    pub fn replied(&self, reply: &str) -> bool {
        self.log
            .lines()
            .any(|l| l.starts_with(&format!("< {reply}")))
    }
}

/// Runs `curl -sS -v` with `args`, `input` on its standard input (for `-T -`).
pub fn curl(args: &[&str], input: Option<&[u8]>) -> Outcome {
    let mut child = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "15"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run curl (scripts/setup-servers.sh installs it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input.unwrap_or_default());
    drop(stdin);
    let out = child.wait_with_output().expect("wait for curl");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        body: out.stdout,
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `url` fetched, or a panic with curl's exchange.
pub fn get(url: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = extra.to_vec();
    args.push(url);
    let out = curl(&args, None);
    assert_eq!(out.code, 0, "curl {url}:\n{}", out.log);
    out.body
}

/// Uploads `bytes` as `url`.
pub fn put(url: &str, bytes: &[u8], extra: &[&str]) -> Outcome {
    let mut args = extra.to_vec();
    args.extend(["-T", "-", url]);
    curl(&args, Some(bytes))
}
