//! The configuration's paths and URLs refused at start by the real binary (host, and the
//! armv7 build under qemu-arm through `LICENSE_AGENT_BIN`): a control socket or a
//! features file on what the agent reads or keeps (the keyring, `meta.json`), and a
//! server URL's port out of range. Each used to pass the check: the daemon unlinked the
//! keyring as a stale socket, overwrote `meta.json` and set it aside, or failed only at
//! fetch time.
//!
//! `license-agent run` must end at once with exit status 2 and the key and line; one
//! that starts instead is seen (its control socket answers, or it outlives
//! [`BOUND`]), stopped, and fails the test with its log.

use crate::common;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::bounded::{text, BOUND};
use common::now;
use common::phone::Phone;

const DAY: i64 = 86_400;

/// The phone's configuration with the line `key = ...` replaced by `line`; returns the
/// line's number (from 1).
fn set(phone: &Phone, key: &str, line: &str) -> usize {
    let config = std::fs::read_to_string(&phone.config).unwrap();
    let prefix = format!("{key} = ");
    let mut at = None;
    let lines: Vec<String> = config
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if l.starts_with(&prefix) {
                at = Some(i + 1);
                line.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    let at = at.unwrap_or_else(|| panic!("no {key} in {config}"));
    std::fs::write(&phone.config, lines.join("\n") + "\n").unwrap();
    at
}

/// `license-agent run` on `phone`, which must be refused at start: its output once it
/// ended. A daemon that starts instead (its control socket `socket` answers) or runs
/// past [`BOUND`] is stopped, and the test fails with its log.
fn run_refused(phone: &Phone, socket: &Path) -> Output {
    let mut child = phone.spawn(None);
    let started = Instant::now();
    let mut up = false;
    while child.try_wait().unwrap().is_none() {
        up = UnixStream::connect(socket).is_ok();
        if up || started.elapsed() > BOUND {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    if up {
        panic!(
            "the daemon started (its control socket answered): {}",
            text(&out)
        );
    }
    common::assert_no_crash(&out);
    assert_eq!(out.status.code(), Some(2), "not refused: {}", text(&out));
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `control_socket` on the keyring: refused at start naming the key and its line, and
/// the keyring is still there, byte for byte (the daemon used to unlink it as a stale
/// socket: the next start had no keyring).
#[test]
fn a_control_socket_on_the_keyring_is_refused_and_the_keyring_kept() {
    let phone = Phone::new("server = \"file:///nonexistent/\"\n");
    let keyring = std::fs::read(phone.path("keyring")).unwrap();
    let line = set(&phone, "control_socket", "control_socket = \"keyring\"");
    let out = run_refused(&phone, &phone.path("keyring"));
    let expected = format!(
        "control_socket: line {line}, column 18: {} is the keyring (keyring, line 3)",
        phone.path("keyring").display()
    );
    assert!(stderr(&out).contains(&expected), "{}", text(&out));
    assert_eq!(std::fs::read(phone.path("keyring")).unwrap(), keyring);
}

/// `features_file` on the store's `meta.json`: refused at start naming the key and its
/// line, `meta.json` untouched and nothing set aside (the daemon used to overwrite it,
/// then set it aside: the latest trusted time and the events were lost).
#[test]
fn a_features_file_on_meta_json_is_refused_and_the_store_kept() {
    let phone = Phone::new("server = \"file:///nonexistent/\"\n");
    phone.install(&phone.sign("phone", &[("usb-call-recording", now() - DAY, None)]));
    assert!(
        phone.path("state/meta.json").is_file(),
        "install wrote no meta.json"
    );
    let before = tree(&phone.path("state"));
    let line = set(
        &phone,
        "features_file",
        "features_file = \"state/meta.json\"",
    );
    let out = run_refused(&phone, &phone.path("control.sock"));
    let expected = format!(
        "features_file: line {line}, column 17: {} lies inside the state folder {} (state_dir, line 4)",
        phone.path("state/meta.json").display(),
        phone.path("state").display()
    );
    assert!(stderr(&out).contains(&expected), "{}", text(&out));
    assert_eq!(tree(&phone.path("state")), before, "the store changed");
}

/// Every file under `dir` with its bytes, sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree(&path));
        } else {
            out.push((
                path.display().to_string(),
                std::fs::read(&path).unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

/// A server URL (or the report URL) with port 0, 65536 or -1 is refused at start
/// naming the key and its line, for every scheme, before anything is fetched.
#[test]
fn a_server_port_out_of_range_is_refused_at_load() {
    for (key, url, fragment) in [
        ("server", "http://127.0.0.1:0/", "port 0 is out of range"),
        (
            "server",
            "https://127.0.0.1:65536/p/",
            "port 65536 is out of range",
        ),
        ("server", "ftp://127.0.0.1:-1/", "port \"-1\""),
        ("server", "ftps://127.0.0.1:0/", "port 0 is out of range"),
        (
            "server",
            "tftp://127.0.0.1:65536/",
            "port 65536 is out of range",
        ),
        (
            "report",
            "http://127.0.0.1:65536/r/",
            "port 65536 is out of range",
        ),
    ] {
        let phone = Phone::new(&format!("{key} = \"{url}\"\n"));
        let line = std::fs::read_to_string(&phone.config)
            .unwrap()
            .lines()
            .position(|l| l.starts_with(&format!("{key} = ")))
            .unwrap()
            + 1;
        let out = run_refused(&phone, &phone.path("control.sock"));
        let column = key.len() + 4;
        let expected = format!("{key}: line {line}, column {column}: \"{url}\": {fragment}");
        assert!(stderr(&out).contains(&expected), "{url}: {}", text(&out));
        assert!(!phone.path("state").exists(), "{url}: the store was opened");
    }
}
