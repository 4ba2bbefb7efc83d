//! The configuration's paths and URLs refused by the real binary (host, and the armv7
//! build under qemu-arm through `LICENSE_AGENT_BIN`): a control socket or a features
//! file on what the agent reads or keeps (the keyring, `meta.json`), and a server URL's
//! port out of range. Each used to pass the check: the daemon unlinked the keyring as a
//! stale socket, overwrote `meta.json` and set it aside, or failed only at fetch time.
//!
//! Each is named with its key and line, and never used; `license-agent run` sets the
//! value aside (reads the key as if absent) and starts on the licenses it holds, since
//! no configuration value may stop a phone from publishing them (the developers'
//! guide, "Nothing from outside can brick it"), and the commands a person runs say it
//! too. Bad values elsewhere, and the daemon's `status`, are in `hostile.rs`.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::bounded::{self, text};
use common::phone::Phone;
use common::{now, stdout};

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

/// `license-agent run --once` on `phone`, whose bad value must be set aside (read as
/// if absent) rather than stop the start: it ends well, says what it set aside, and
/// `expected` (the key, its line and what is wrong) is in that saying.
fn run_setting_aside(phone: &Phone, expected: &str) -> Output {
    let out = bounded::run(bounded::command(phone, &["run", "--once"], None, None));
    assert_eq!(out.status.code(), Some(0), "not started: {}", text(&out));
    let said = stderr(&out)
        .lines()
        .find(|l| l.contains(expected))
        .map(str::to_string);
    assert!(
        said.is_some_and(|l| l
            .ends_with("; set aside: read as if absent (its default) until the file is mended")),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("config       SET ASIDE"),
        "{}",
        text(&out)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `control_socket` on the keyring: set aside at start naming the key and its line
/// (the agent runs with the default socket), said by `status` too, and the keyring is
/// still there, byte for byte (the daemon used to unlink it as a stale socket: the next
/// start had no keyring).
#[test]
fn a_control_socket_on_the_keyring_is_set_aside_and_the_keyring_kept() {
    let phone = Phone::new("server = \"file:///nonexistent/\"\n");
    let keyring = std::fs::read(phone.path("keyring")).unwrap();
    let line = set(&phone, "control_socket", "control_socket = \"keyring\"");
    let expected = format!(
        "control_socket: line {line}, column 18: {} is the keyring (keyring, line 3)",
        phone.path("keyring").display()
    );
    run_setting_aside(&phone, &expected);
    // A person's status says it too (and reads the store: no daemon runs).
    let out = bounded::run(bounded::command(&phone, &["status"], None, None));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stderr(&out).contains(&expected), "{}", text(&out));
    assert_eq!(std::fs::read(phone.path("keyring")).unwrap(), keyring);
}

/// `features_file` on the store's `meta.json`: set aside at start naming the key and
/// its line, and `meta.json` never written as the features file (the daemon used to
/// overwrite it, then set it aside: the latest trusted time and the events were lost).
/// The license stays, in force.
#[test]
fn a_features_file_on_meta_json_is_set_aside_and_the_store_kept() {
    let phone = Phone::new("server = \"file:///nonexistent/\"\n");
    phone.install(&phone.sign("phone", &[("usb-call-recording", now() - DAY, None)]));
    assert!(
        phone.path("state/meta.json").is_file(),
        "install wrote no meta.json"
    );
    let licenses = tree(&phone.path("state/phone"));
    let line = set(
        &phone,
        "features_file",
        "features_file = \"state/meta.json\"",
    );
    let expected = format!(
        "features_file: line {line}, column 17: {} lies inside the state folder {} (state_dir, line 4)",
        phone.path("state/meta.json").display(),
        phone.path("state").display()
    );
    let out = run_setting_aside(&phone, &expected);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(phone.path("state/meta.json")).unwrap())
            .unwrap_or_else(|e| panic!("meta.json is no longer the store's: {e}"));
    assert!(meta.get("latest_trusted").is_some(), "{meta}");
    assert_eq!(
        tree(&phone.path("state/phone")),
        licenses,
        "the license moved"
    );
    assert!(
        stdout(&out).contains("usb-call-recording"),
        "{}",
        text(&out)
    );
    assert!(
        !phone.path("state/rejected").exists()
            || std::fs::read_dir(phone.path("state/rejected"))
                .unwrap()
                .count()
                == 0,
        "something was set aside in the store"
    );
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

/// A server URL (or the report URL) with port 0, 65536 or -1 is never used: set aside
/// at start naming the key and its line, for every scheme, so nothing is fetched (no
/// server left) and the start goes on.
#[test]
fn a_server_port_out_of_range_is_set_aside_at_load() {
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
        let column = key.len() + 4;
        let expected = format!("{key}: line {line}, column {column}: \"{url}\": {fragment}");
        let out = run_setting_aside(&phone, &expected);
        // No server left (the report's test has none either): nothing fetched.
        let none = "cannot fetch: no provisioning server configured";
        assert!(stdout(&out).contains(none), "{url}: {}", text(&out));
    }
}
