//! The boot path as lean as before issue 11 (issue 26): `run --once` over HTTPS from a
//! real nginx, at a reboot (the state of a first run kept), traced with `strace -f`:
//! - one thread started, the cycle's HTTP client's runtime (the start check of the
//!   servers starts none). The server is `https://127.0.0.1:PORT/`, as in the figures: a
//!   host name adds the thread that resolves it (`getaddrinfo` on the runtime's blocking
//!   pool, so that the connect timeout bounds it), as it did in a445567f;
//! - the configuration, the keyring and the CA file each opened once;
//! - each part of the configured paths looked at once when they are checked (`readlink`,
//!   `config::paths`), not once for every path and prefix it is in;
//! - each file read in at most two `read` calls (its bytes, then its end).
//!
//! `scripts/boot-figures.sh` gives the whole counts beside a445567f's. On the host
//! binary only: under qemu-user the process is QEMU's, with QEMU's own threads and
//! system calls.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::phone::{Phone, DAY, PHONE_FILE, SITE_FILE};

/// One system call of the trace: the whole line, an `<unfinished ...>` call joined with
/// its `<... resumed>` end.
fn calls(log: &str) -> Vec<String> {
    let mut pending: HashMap<&str, String> = HashMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, head.to_string());
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, tail)| tail);
            let head = pending.remove(pid).unwrap_or_default();
            out.push(format!("{head}{tail}"));
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

/// The first quoted string of a call (its path).
fn quoted(call: &str) -> Option<&str> {
    let start = call.find('"')? + 1;
    let len = call[start..].find('"')?;
    Some(&call[start..start + len])
}

/// What a call returned.
fn result(call: &str) -> Option<&str> {
    call.rsplit_once(" = ")
        .and_then(|(_, r)| r.split_whitespace().next())
}

/// The first argument of a call (its descriptor).
fn first_arg(call: &str) -> Option<&str> {
    let start = call.find('(')? + 1;
    call[start..].split([',', ')']).next().map(str::trim)
}

#[test]
fn run_once_over_https_starts_one_thread_and_reads_each_input_once() {
    if std::env::var_os("LICENSE_AGENT_RUNNER").is_some() {
        // Not meaningful under qemu-user (see the module doc); the host run covers it.
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (pki, nginx) = common::web_server(work.path());
    let phone = Phone::new(&format!(
        "server = \"{}\"\n[fetch]\nca_file = \"{}\"\n",
        nginx.https_url().replace("localhost", "127.0.0.1"),
        pki.ca_pem.display()
    ));
    let t = common::now();
    nginx.put(
        SITE_FILE,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 365 * DAY))]),
    );
    nginx.put(PHONE_FILE, &phone.sign("phone", &[("lync", t - DAY, None)]));
    // The first boot stores both files; the one traced is a reboot.
    let first = common::bounded::run(common::bounded::command(
        &phone,
        &["run", "--once"],
        None,
        None,
    ));
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(said.contains(&format!("{PHONE_FILE} accepted")), "{said}");

    let log = work.path().join("boot.strace");
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-e", "signal=none", "-o"])
        .arg(&log)
        .args(["-e", "trace=clone,clone3,openat,open,read,close,readlink"])
        .arg(common::agent().get_program())
        .args(["run", "--once", "--config"])
        .arg(&phone.config);
    let out = common::bounded::run(traced);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(&format!("{PHONE_FILE} unchanged")),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = calls(&std::fs::read_to_string(&log).unwrap());

    let threads = calls
        .iter()
        .filter(|c| c.starts_with("clone") && c.contains("CLONE_THREAD"))
        .count();

    // Opens of each input, and the reads of each opening of a file the agent reads
    // (its folder's and the PKI's: not the system's libraries).
    let ours = |path: &str| {
        Path::new(path).starts_with(phone.dir.path()) || Path::new(path).starts_with(work.path())
    };
    let mut opened: HashMap<String, usize> = HashMap::new();
    let mut open_fds: HashMap<String, (String, usize)> = HashMap::new();
    let mut most_reads: Vec<(String, usize)> = Vec::new();
    let mut readlinks: HashMap<String, usize> = HashMap::new();
    for call in &calls {
        if call.starts_with("openat(") || call.starts_with("open(") {
            let (Some(path), Some(fd)) = (quoted(call), result(call)) else {
                continue;
            };
            if ours(path) {
                *opened.entry(path.to_string()).or_default() += 1;
                if !fd.starts_with('-') {
                    open_fds.insert(fd.to_string(), (path.to_string(), 0));
                }
            }
        } else if call.starts_with("read(") {
            if let Some(file) = first_arg(call).and_then(|fd| open_fds.get_mut(fd)) {
                file.1 += 1;
            }
        } else if call.starts_with("close(") {
            if let Some(file) = first_arg(call).and_then(|fd| open_fds.remove(fd)) {
                most_reads.push(file);
            }
        } else if call.starts_with("readlink(") {
            if let Some(path) = quoted(call) {
                *readlinks.entry(path.to_string()).or_default() += 1;
            }
        }
    }
    let config = phone.config.display().to_string();
    let keyring = phone.path("keyring").display().to_string();
    let ca = pki.ca_pem.display().to_string();
    println!(
        "run --once over HTTPS, a reboot: {threads} thread(s) started; opened: config {}, \
         keyring {}, CA file {}; {} readlink(s) of {} path(s); reads per file opened: {:?}",
        opened.get(&config).copied().unwrap_or(0),
        opened.get(&keyring).copied().unwrap_or(0),
        opened.get(&ca).copied().unwrap_or(0),
        readlinks.values().sum::<usize>(),
        readlinks.len(),
        most_reads
    );
    let clones: Vec<_> = calls.iter().filter(|c| c.starts_with("clone")).collect();
    assert_eq!(threads, 1, "threads started: {clones:#?}");
    for input in [&config, &keyring, &ca] {
        assert_eq!(opened.get(input), Some(&1), "{input} opened: {opened:?}");
    }
    let repeated: Vec<_> = readlinks.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "looked at more than once: {repeated:?}"
    );
    let long: Vec<_> = most_reads.iter().filter(|(_, n)| *n > 2).collect();
    assert!(long.is_empty(), "read in more than two calls: {long:?}");
    assert!(
        most_reads.iter().any(|(path, _)| path == &config),
        "the configuration's reads were not traced: {most_reads:?}"
    );
}
