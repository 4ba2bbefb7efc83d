//! The `license-agent` command line as a field engineer meets it: help, version, exit
//! statuses, usage errors, unreadable files and keyrings, `inspect` text, standard
//! input, and a 10 MB stream refused without being read whole.

use crate::common;

use std::io::Write;
use std::process::Stdio;

use common::{agent, assert_no_crash, own_vectors, run, stdout};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_and_version() {
    let out = run(agent(), ["--version"]);
    assert_eq!(out.status.code(), Some(0));
    // The transports of the build under test (the test command builds them all).
    assert_eq!(
        stdout(&out),
        format!(
            "license-agent {} (fetches over http, https, ftp, ftps, tftp, file)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    for args in [vec!["--help"], vec!["help"]] {
        let out = run(agent(), args);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout(&out).contains("verify") && stdout(&out).contains("inspect"));
    }
    for cmd in ["verify", "inspect"] {
        let out = run(agent(), [cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(
            stdout(&out).starts_with(&format!("license-agent {cmd}:")),
            "{}",
            stdout(&out)
        );
        let out = run(agent(), ["help", cmd]);
        assert!(stdout(&out).contains(&format!("Usage: license-agent {cmd}")));
    }
}

#[test]
fn usage_errors_exit_two_and_say_what_is_wrong() {
    let keyring = own_vectors().join("keyring");
    let file = own_vectors().join("valid-phone-perpetual.cfg");
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (vec![], "a command is needed"),
        (vec!["frobnicate".as_ref()], "unknown command"),
        (vec!["verify".as_ref(), file.as_os_str()], "--keyring"),
        (
            vec!["verify".as_ref(), "--keyring".as_ref(), keyring.as_os_str()],
            "at least one FILE",
        ),
        (vec!["verify".as_ref(), "--bogus".as_ref()], "--bogus"),
        (vec!["verify".as_ref(), "--keyring".as_ref()], "--keyring"),
        (vec!["inspect".as_ref()], "at least one FILE"),
        (vec!["help".as_ref(), "nothing".as_ref()], "no command"),
    ];
    for (args, expected) in cases {
        let out = run(agent(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn an_unusable_keyring_trusts_nothing_and_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("keyring");
    std::fs::write(
        &bad,
        "ed25519 44ad6866528e8fc138f2d6677816a1875da530e7e4d2598519a09a3cf1a4947d\nrsa AAAA\n",
    )
    .unwrap();
    let file = own_vectors().join("valid-phone-perpetual.cfg");
    let out = run(
        agent(),
        [
            "verify".as_ref(),
            "--keyring".as_ref(),
            bad.as_os_str(),
            file.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let missing = dir.path().join("nope");
    let out = run(
        agent(),
        [
            "verify".as_ref(),
            "--keyring".as_ref(),
            missing.as_os_str(),
            file.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read keyring"));
}

#[test]
fn an_unreadable_file_is_reported_and_is_not_valid() {
    let keyring = own_vectors().join("keyring");
    let good = own_vectors().join("valid-phone-perpetual.cfg");
    let out = run(
        agent(),
        [
            "verify".as_ref(),
            "--json".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            good.as_os_str(),
            "/nonexistent/x.cfg".as_ref(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["verdict"], "valid");
    assert_eq!(lines[1]["verdict"], "unreadable");
    assert!(lines[1]["detail"]
        .as_str()
        .unwrap()
        .contains("No such file"));
}

#[test]
fn verify_text_output_names_file_verdict_and_reason() {
    let keyring = own_vectors().join("keyring");
    let file = own_vectors().join("malformed-serial-length.cfg");
    let out = run(
        agent(),
        [
            "verify".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            file.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("malformed-serial-length.cfg: malformed: line 4"),
        "{text}"
    );
    assert!(text.contains("<Serial>"), "{text}");
}

#[test]
fn inspect_shows_every_field_and_judges_only_with_a_keyring() {
    let file = own_vectors().join("valid-site-two-features.cfg");
    let out = run(agent(), ["inspect".as_ref(), file.as_os_str()]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for expected in [
        "kind:       site",
        "serial:     100000000001",
        "key id:     03A548A2",
        "0x0002  vqmon",
        "trial",
        "2028-01-01T00:00:00Z",
        "productivity-suite",
        "renewal",
        "25",
        "verdict:    unchecked",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // With a keyring, an untrusted file is shown but judged, and the exit status says so.
    let bad = own_vectors().join("bad-signature-feature-changed.cfg");
    let keyring = own_vectors().join("keyring");
    let out = run(
        agent(),
        [
            "inspect".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            bad.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("verdict:    bad-signature"));
    assert!(
        stdout(&out).contains("features:   1"),
        "content is still shown: {}",
        stdout(&out)
    );

    let malformed = own_vectors().join("malformed-doctype.cfg");
    let out = run(agent(), ["inspect".as_ref(), malformed.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("verdict:    malformed: line 3, column 1: a DOCTYPE"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn standard_input_is_a_file_named_dash() {
    let keyring = own_vectors().join("keyring");
    let content = std::fs::read(own_vectors().join("valid-rotated-key.cfg")).unwrap();
    let mut child = agent()
        .args([
            "verify".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            "-".as_ref(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&content).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_no_crash(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("-: valid"), "{}", stdout(&out));
}

#[test]
fn ten_megabytes_are_refused_without_being_read_whole() {
    const TEN_MB: usize = 10 * 1024 * 1024;
    let keyring = own_vectors().join("keyring");
    let mut child = agent()
        .args([
            "verify".as_ref(),
            "--json".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            "-".as_ref(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The writer stops when the agent closes its end; count what it managed to hand over.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 4096];
        let mut written = 0usize;
        while written < TEN_MB {
            match stdin.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break, // EPIPE: the reader is gone
            }
        }
        written
    });
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    assert_no_crash(&out);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["verdict"], "malformed");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains("at most 65536 bytes"));
    // The cap plus at most what the pipe buffers (Linux: up to 1 MiB) was taken.
    assert!(
        written < 2 * 1024 * 1024,
        "the agent read {written} bytes of a 10 MB stream"
    );

    // And a 10 MB regular file gets the same verdict.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-license.cfg");
    std::fs::write(&big, vec![b'<'; TEN_MB]).unwrap();
    let out = run(
        agent(),
        [
            "verify".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            big.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("malformed: the file is larger than 65536 bytes"),
        "{}",
        stdout(&out)
    );
}
