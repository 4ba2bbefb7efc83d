//! Issue 12's findings against the real binary (host, and the armv7 build under qemu-arm
//! through `LICENSE_AGENT_BIN`): what a hostile server, a hostile store or a hostile
//! supervisor did to the agent, each now a test. The rule behind them: nothing from
//! outside stops the agent from starting and publishing the stored licenses that verify.
//!
//! Every command here runs under [`bounded`]: one that hangs (a FIFO opened for reading,
//! say) fails the test instead of holding it. The read-only and full state folders are
//! real mounts (a read-only bind mount, a small tmpfs), so these tests run as root, as
//! the README's test command does.

use crate::common;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::bounded::{command, run, text, Mount, BOUND};
use common::faults::{Fault, FaultServer};
use common::now;
use common::phone::{Phone, PHONE_FILE};
use common::supervisor::TestSupervisor;
use serde_json::Value;

const DAY: i64 = 86_400;
const SITE_FILE: &str = "000000000000-license.cfg";

/// Runs `license-agent ARGS` for `phone`, on the test clock at `t` if given, bounded.
fn bounded(phone: &Phone, args: &[&str], t: Option<i64>) -> Output {
    run(command(phone, args, t, None))
}

fn status(phone: &Phone, t: Option<i64>) -> Value {
    let out = bounded(phone, &["status", "--json"], t);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn run_once(phone: &Phone) -> Output {
    bounded(phone, &["run", "--once"], None)
}

/// A phone with one phone license installed (usb-call-recording, never ending) and a
/// provisioning server at `server`.
fn phone_with_license(server: &str) -> Phone {
    let phone = Phone::new(&format!("server = \"{server}\"\n"));
    phone.install(&phone.sign("phone", &[("usb-call-recording", now() - DAY, None)]));
    phone
}

fn enabled(v: &Value) -> Vec<String> {
    v["enabled"]
        .as_array()
        .expect("an enabled list")
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_string())
        .collect()
}

// ---- A hostile server ----

/// `200` with an empty body and two validators of 190,000 characters, again and again:
/// both files are refused, no validator is kept, and `meta.json` stays small, so every
/// later start still works (it used to grow past 1 MiB and stop `run` and `status`).
#[test]
fn huge_validators_with_an_empty_body_are_not_kept() {
    let huge = "v".repeat(190_000);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"{huge}\"\r\nLast-Modified: {huge}\r\n\r\n"
    );
    let server = FaultServer::start(Fault::Raw(answer.into_bytes()));
    let phone = phone_with_license(&server.url());
    for _ in 0..8 {
        let out = run_once(&phone);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let meta = std::fs::metadata(phone.path("state/meta.json"))
        .unwrap()
        .len();
    assert!(meta < 64 * 1024, "meta.json is {meta} bytes");
    let meta = std::fs::read_to_string(phone.path("state/meta.json")).unwrap();
    assert!(!meta.contains("vvvvvvvv"), "a validator was kept");
    let s = status(&phone, None);
    assert_eq!(enabled(&s), ["usb-call-recording"]);
    assert_eq!(phone.published(), ["usb-call-recording"]);
}

/// A `304` (no request names an earlier copy: not modified since what?) is a failure,
/// not "unchanged".
///
/// Proves: both license files were asked for (counted at the server), without any
/// validator; each fetch is a failure whose reason names the 304 and the missing
/// validator (the daemon's per-file outcome, as `status --json` shows it), and the
/// stored license stays in force and published.
#[test]
fn a_304_to_a_first_fetch_is_a_failure() {
    let server = FaultServer::start(Fault::Status(304));
    let phone = phone_with_license(&server.url());
    let out = run_once(&phone);
    assert_asked_without_validators(&server, "run --once");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("no validator was sent"), "{log}");
    assert_eq!(enabled(&status(&phone, None)), ["usb-call-recording"]);
    assert_eq!(phone.published(), ["usb-call-recording"]);

    // The daemon's boot fetch: each file's outcome and reason, in its status.
    let before = server.requests();
    let daemon = phone.start(None);
    let s = daemon.wait_status("both files fetched", |s| {
        s["daemon"]["files"]
            .as_array()
            .is_some_and(|f| f.len() == 2)
    });
    assert!(server.requests() >= before + 2, "{s:#}");
    assert_asked_without_validators(&server, "the daemon");
    for file in s["daemon"]["files"].as_array().unwrap() {
        assert_eq!(file["outcome"], "failed", "{s:#}");
        let detail = file["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("304") && detail.contains("no validator was sent"),
            "{s:#}"
        );
    }
    assert_eq!(enabled(&s), ["usb-call-recording"], "{s:#}");
    assert_eq!(phone.published(), ["usb-call-recording"]);
}

/// The fault server saw a GET of both license files (so the header checks below check
/// something), and no request carried a validator.
fn assert_asked_without_validators(server: &FaultServer, who: &str) {
    let seen = server.seen();
    for file in [SITE_FILE, PHONE_FILE] {
        let asked = seen
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/{file}")))
            .count();
        assert!(asked > 0, "{who}: no GET of {file} arrived: {seen:#?}");
    }
    for request in &seen {
        assert_eq!(request.header("if-none-match"), None, "{who}: {request:#?}");
        assert_eq!(
            request.header("if-modified-since"),
            None,
            "{who}: {request:#?}"
        );
    }
}

/// A redirect to a server that refuses: the message names the URL that refused, and
/// where the redirect came from.
#[test]
fn a_failing_redirect_names_the_url_that_failed() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/gone.cfg", closed.local_addr().unwrap());
    drop(closed);
    let answer = format!("HTTP/1.1 302 Found\r\nLocation: {gone}\r\nContent-Length: 0\r\n\r\n");
    let server = FaultServer::start(Fault::Raw(answer.into_bytes()));
    let phone = phone_with_license(&server.url());
    let out = run_once(&phone);
    let log = String::from_utf8_lossy(&out.stderr);
    let asked = format!("{}{SITE_FILE}", server.url());
    assert!(
        log.contains(&format!("{gone} (redirected from {asked}): cannot connect")),
        "{log}"
    );
}

// ---- A hostile store ----

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// A FIFO named like a stored license, or as `meta.json`: `status`, `run --once` and
/// `install` finish at once (they used to wait for ever for a writer), the license that
/// verifies is published, and the FIFO is set aside.
#[test]
fn a_fifo_in_the_store_holds_nothing() {
    for fifo in ["state/phone/0000000009.cfg", "state/meta.json"] {
        let phone = phone_with_license("file:///nonexistent/");
        let path = phone.path(fifo);
        let _ = std::fs::remove_file(&path);
        mkfifo(&path);
        let s = status(&phone, None);
        assert_eq!(enabled(&s), ["usb-call-recording"], "{fifo}");
        assert!(
            s["set_aside"].to_string().contains("a FIFO"),
            "{fifo}: {s:#}"
        );
        let out = run_once(&phone);
        assert_eq!(out.status.code(), Some(0), "{fifo}: {}", text(&out));
        assert_eq!(phone.published(), ["usb-call-recording"]);
        // Set aside by the writer: no FIFO in its place any more (a fresh meta.json).
        let left = std::fs::symlink_metadata(&path).map(|m| m.file_type().is_fifo());
        assert!(!left.unwrap_or(false), "{fifo} still in place");
        let site = phone.sign("site", &[("vqmon", now() - DAY, None)]);
        let out = phone.install(&site);
        assert!(out.contains("installed: site license"), "{out}");
    }
}

/// Whatever stands where `meta.json` goes (a directory, a file over the 1 MiB bound, a
/// link to a device), every start works and publishes the stored licenses.
#[test]
fn anything_in_place_of_meta_json_is_set_aside() {
    type Make = fn(&Path);
    let cases: [(&str, Make); 3] = [
        ("a directory", |p| std::fs::create_dir(p).unwrap()),
        ("larger than", |p| {
            std::fs::write(p, vec![b' '; (1 << 20) + 1]).unwrap()
        }),
        ("a character device", |p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
    ];
    for (what, make) in cases {
        let phone = phone_with_license("file:///nonexistent/");
        let meta = phone.path("state/meta.json");
        std::fs::remove_file(&meta).unwrap();
        make(&meta);
        let s = status(&phone, None);
        assert_eq!(enabled(&s), ["usb-call-recording"], "{what}");
        assert!(s["set_aside"].to_string().contains(what), "{what}: {s:#}");
        let out = run_once(&phone);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
        assert_eq!(phone.published(), ["usb-call-recording"]);
        let again = status(&phone, None);
        assert_eq!(
            again["set_aside"].as_array().map(Vec::len),
            Some(0),
            "{what}: set aside once, for good: {again:#}"
        );
    }
}

/// A stored file renamed `9999999999.cfg`, the last number the store writes: the next
/// install renumbers it below the bound, in the order it had, and stores the new
/// license under a fresh ten-digit number; both stay held (it used to store the next one
/// as `10000000000.cfg`, and numbers could be pushed to the end of all).
#[test]
fn a_license_at_the_last_number_is_renumbered() {
    let phone = phone_with_license("file:///nonexistent/");
    let dir = phone.path("state/phone");
    let first = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&first).unwrap();
    std::fs::rename(first, dir.join("9999999999.cfg")).unwrap();
    phone.install(&phone.sign("site", &[("vqmon", now() - DAY, None)]));
    assert_eq!(names(&phone, "state/phone"), ["0000000001.cfg"]);
    assert_eq!(names(&phone, "state/site"), ["0000000002.cfg"]);
    assert_eq!(
        std::fs::read(dir.join("0000000001.cfg")).unwrap(),
        bytes,
        "renumbered, not rewritten"
    );
    let s = status(&phone, None);
    assert_eq!(s["licenses"].as_array().map(Vec::len), Some(2), "{s:#}");
    assert_eq!(s["set_aside"].as_array().map(Vec::len), Some(0), "{s:#}");
    assert_eq!(enabled(&s), ["usb-call-recording", "vqmon"]);
    assert!(names(&phone, "state/rejected").is_empty());
}

/// The names in a folder of the phone's, sorted.
fn names(phone: &Phone, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(phone.path(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The files in `state/rejected/` other than the notes, with their bytes.
fn set_aside_files(phone: &Phone) -> Vec<(String, Vec<u8>)> {
    names(phone, "state/rejected")
        .into_iter()
        .filter(|n| !n.ends_with(".why"))
        .map(|n| {
            let bytes = std::fs::read(phone.path("state/rejected").join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// An older genuine site license copied in as `state/site/<the phone license's
/// number>.cfg`: `status` shows it as the dropped, ended site license it is (not with
/// the phone license's role), and `run --once` sets it aside; the phone license file
/// stays and its feature is still published (the drop used to find the phone license by
/// its number and delete it).
#[test]
fn a_site_license_numbered_like_the_phone_license_never_drops_it() {
    let phone = phone_with_license("file:///nonexistent/");
    let t = now();
    phone.install(&phone.sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]));
    let phone_names = names(&phone, "state/phone");
    assert_eq!(phone_names.len(), 1);
    let phone_file = phone.path("state/phone").join(&phone_names[0]);
    let phone_bytes = std::fs::read(&phone_file).unwrap();
    let older = phone.sign(
        "site",
        &[("productivity-suite", t - 400 * DAY, Some(t - 30 * DAY))],
    );
    let stray = phone.path("state/site").join(&phone_names[0]);
    std::fs::write(&stray, &older).unwrap();

    let s = status(&phone, None);
    let licenses = s["licenses"].as_array().expect("licenses");
    assert_eq!(licenses.len(), 3, "{s:#}");
    for l in licenses {
        let (kind, role) = (l["kind"].as_str().unwrap(), l["role"].as_str().unwrap());
        let expected = if l["file"].as_str() == stray.to_str() {
            ("site", "dropped")
        } else {
            (kind, "primary")
        };
        assert_eq!((kind, role), expected, "{l:#}");
    }

    let out = run_once(&phone);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(&phone_file).unwrap(), phone_bytes);
    assert_eq!(phone.published(), ["usb-call-recording", "vqmon"]);
    assert!(!stray.exists());
    let aside = set_aside_files(&phone);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0].1, older, "set aside whole");
    let s = status(&phone, None);
    assert_eq!(enabled(&s), ["usb-call-recording", "vqmon"]);
    assert_eq!(s["licenses"].as_array().map(Vec::len), Some(2), "{s:#}");
}

/// A junk file named `state/site/18446744073709551615.cfg`, the last number of all: set
/// aside, and it pushes nothing: a hand install and a fetch store their licenses under
/// fresh numbers, a later install still works, and the fetched site license's expiry
/// drops it alone (the junk used to give the next licenses that one number, so every
/// later install failed with "no received number is left", and the site license's
/// expiry deleted the phone license file).
#[test]
fn a_junk_name_at_the_end_of_the_numbers_pushes_nothing() {
    let t = now();
    let (phone, _server) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 10 * DAY))]);
    std::fs::create_dir_all(phone.path("state/site")).unwrap();
    let junk = phone.path("state/site/18446744073709551615.cfg");
    std::fs::write(&junk, b"junk").unwrap();

    phone.install(&phone.sign("phone", &[("usb-call-recording", t - DAY, None)]));
    assert_eq!(names(&phone, "state/phone"), ["0000000001.cfg"]);
    assert!(!junk.exists());
    assert_eq!(set_aside_files(&phone).len(), 1);
    assert_eq!(set_aside_files(&phone)[0].1, b"junk");

    let out = bounded(&phone, &["run", "--once"], Some(t));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(names(&phone, "state/site"), ["0000000002.cfg"]);
    assert_eq!(phone.published(), ["usb-call-recording", "vqmon"]);

    // A renewal posted early, installed by hand: a fresh number again.
    let renewal = phone.sign("site", &[("vqmon", t + 10 * DAY, Some(t + 400 * DAY))]);
    let said = phone.install_at(&renewal, t);
    assert!(said.contains("site/0000000003.cfg"), "{said}");

    // The fetched site license ends: it alone goes; the phone license stays.
    let later = t + 11 * DAY;
    let out = bounded(&phone, &["run", "--once"], Some(later));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(names(&phone, "state/phone"), ["0000000001.cfg"]);
    assert_eq!(names(&phone, "state/site"), ["0000000003.cfg"]);
    assert_eq!(phone.published(), ["usb-call-recording", "vqmon"]);
    assert_eq!(set_aside_files(&phone).len(), 1, "nothing else set aside");
    assert_eq!(
        enabled(&status(&phone, Some(later))),
        ["usb-call-recording", "vqmon"]
    );
}

// ---- A state folder that cannot be written ----

/// Flash remounted read-only: `run --once` publishes the stored set, `status` shows it,
/// `install` says plainly that nothing was stored; a running daemon does the same,
/// reports its failed writes in its status, and makes them once the folder is writable.
#[test]
fn a_read_only_state_folder_runs_on_what_it_holds() {
    let phone = phone_with_license("file:///nonexistent/");
    let t = now();
    // A site license that ends while the folder is read-only.
    phone.install(&phone.sign("site", &[("vqmon", t - DAY, Some(t + 100))]));
    let more = phone.sign("site", &[("productivity-suite", t - DAY, None)]);
    std::fs::write(phone.path("more.cfg"), &more).unwrap();
    let install_more = ["install", phone.path("more.cfg").to_str().unwrap()].map(str::to_string);
    let install_more: Vec<&str> = install_more.iter().map(String::as_str).collect();
    let state = phone.path("state");
    let mount = Mount::read_only(&state);

    let out = bounded(&phone, &["run", "--once"], Some(t));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(phone.published(), ["usb-call-recording", "vqmon"]);
    assert_eq!(
        enabled(&status(&phone, Some(t))),
        ["usb-call-recording", "vqmon"]
    );
    let out = bounded(&phone, &install_more, Some(t));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("not installed") && said.contains("Read-only file system"),
        "{said}"
    );

    // The daemon, on the test clock: starts and publishes.
    let daemon = phone.start(Some(t));
    assert_eq!(enabled(&daemon.status()), ["usb-call-recording", "vqmon"]);
    // A hand install goes to the daemon, which cannot store it either, and says so.
    let out = bounded(&phone, &install_more, Some(t));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out)
    );
    // vqmon ends: published without it; the drop and the record wait for the flash.
    let s = daemon.set_time(t + 101);
    let s = if enabled(&s) == ["usb-call-recording"] {
        s
    } else {
        daemon.wait_status("vqmon ended", |s| enabled(s) == ["usb-call-recording"])
    };
    assert_eq!(phone.published(), ["usb-call-recording"]);
    let failure = s["store_write_failure"].as_str().unwrap_or_default();
    assert!(failure.contains("Read-only file system"), "{s:#}");
    assert_eq!(std::fs::read_dir(state.join("site")).unwrap().count(), 1);
    // Writable again: at the retry (a minute later) the drop and the record are made.
    drop(mount);
    daemon.set_time(t + 162);
    let s = daemon.wait_status("the failed writes made", |s| {
        s["store_write_failure"].is_null()
    });
    assert_eq!(enabled(&s), ["usb-call-recording"]);
    assert_eq!(std::fs::read_dir(state.join("site")).unwrap().count(), 0);
    let meta: Value =
        serde_json::from_slice(&std::fs::read(state.join("meta.json")).unwrap()).unwrap();
    assert_eq!(
        meta["published"].as_array().map(Vec::len),
        Some(1),
        "{meta:#}"
    );
}

/// A full file system with a damaged file to set aside: the licenses that verify are
/// published (it used to exit 1 and publish nothing), the damaged one is not used, and
/// the failed move is reported.
#[test]
fn a_full_state_folder_runs_on_what_it_holds() {
    let phone = Phone::new("server = \"file:///nonexistent/\"\n");
    let state = phone.path("state");
    phone.install(&phone.sign("phone", &[("usb-call-recording", now() - DAY, None)]));
    std::fs::write(state.join("phone/0000000009.cfg"), b"<not a license/>").unwrap();
    let _mount = Mount::full(&state, 256);

    let out = run_once(&phone);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(phone.published(), ["usb-call-recording"]);
    let s = status(&phone, None);
    assert_eq!(enabled(&s), ["usb-call-recording"]);
    assert!(
        s["set_aside"].to_string().contains("0000000009.cfg"),
        "{s:#}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("No space left on device"), "{log}");
}

// ---- A hostile supervisor ----

/// `CALL-STATE active ` (a trailing space) is not `idle`, so it is a call: the safe
/// reading (it used to leave the call state idle).
#[test]
fn a_call_state_that_is_not_exactly_idle_is_a_call() {
    let phone = Phone::new("supervisor_socket = \"sup.sock\"\n");
    phone.install(&phone.sign("phone", &[("usb-call-recording", now() - DAY, None)]));
    let sup = TestSupervisor::start(&phone.path("sup.sock"), "idle");
    let daemon = phone.start(None);
    assert!(sup.wait_connected(BOUND));
    sup.send("CALL-STATE active ");
    let s = daemon.wait_status("a call", |s| {
        s["daemon"]["call_state"]
            .as_str()
            .is_some_and(|c| c.starts_with("active"))
    });
    assert!(s["daemon"]["call_state"].is_string());
    sup.send("CALL-STATE idle");
    daemon.wait_status("idle again", |s| {
        s["daemon"]["call_state"]
            .as_str()
            .is_some_and(|c| c.starts_with("idle"))
    });
}

/// 32 MB of garbage lines from a supervisor that reads nothing: the agent answers what it
/// can, never drops the link (it used to reconnect whenever its ERR answers would
/// block), and keeps answering its control socket.
///
/// Proves: every answer the flood got is an `ERR` (at least one arrived), the link is
/// the same one throughout (no second connection, no second HELLO), and once the flood
/// is over a garbage line still gets its `ERR` on it. Every accept, write and read on
/// the link is bounded, so an agent that stops reading or never answers fails the test
/// instead of hanging it.
#[test]
fn a_garbage_flood_never_drops_the_supervisor_link() {
    let phone = Phone::new("supervisor_socket = \"sup.sock\"\n");
    phone.install(&phone.sign("phone", &[("usb-call-recording", now() - DAY, None)]));
    let listener = UnixListener::bind(phone.path("sup.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let daemon = phone.start(None);
    let mut link = accept_within(&listener, BOUND);
    link.set_nonblocking(false).unwrap();
    link.set_read_timeout(Some(BOUND)).unwrap();
    link.set_write_timeout(Some(BOUND)).unwrap();
    let mut reader = BufReader::new(link.try_clone().unwrap());
    let mut hello = String::new();
    reader
        .read_line(&mut hello)
        .expect("the agent's HELLO within the bound");
    assert!(hello.starts_with("HELLO license-agent/"), "{hello}");
    link.write_all(b"HELLO supervisor/1\nCALL-STATE idle\n")
        .expect("written within the bound");
    let line = format!("{}\n", "garbage ".repeat(127));
    let block = line.repeat(32);
    let total = 32 << 20;
    let mut sent = 0;
    let started = Instant::now();
    while sent < total {
        link.write_all(block.as_bytes()).unwrap_or_else(|e| {
            panic!("the agent stopped reading the link after {sent} bytes: {e}")
        });
        sent += block.len();
        if sent % (4 << 20) < block.len() {
            // Still answering, and never a second connection.
            assert_eq!(enabled(&daemon.status()), ["usb-call-recording"]);
            assert!(listener.accept().is_err(), "the agent reconnected");
        }
    }
    println!(
        "figure: {} MB of garbage written in {:.1} s",
        sent >> 20,
        started.elapsed().as_secs_f64()
    );
    // Drain what it answered during the flood; the link is the same one.
    // Read until the agent has been quiet for half a second (bounded as a whole).
    link.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answered = Vec::new();
    let deadline = Instant::now() + BOUND;
    loop {
        assert!(
            Instant::now() < deadline,
            "answers without end after the flood"
        );
        match reader.read_until(b'\n', &mut answered) {
            Ok(0) => panic!("the agent closed the link"),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("reading the answers: {e}"),
        }
    }
    link.set_read_timeout(Some(BOUND)).unwrap();
    let answered = String::from_utf8_lossy(&answered);
    let (mut errs, mut other) = (0, Vec::new());
    for l in answered.lines() {
        if l.starts_with("ERR ") {
            errs += 1;
        } else if !l.starts_with("FEATURES ") && !l.is_empty() {
            other.push(l);
        }
    }
    assert!(errs > 0, "no ERR answer to {} MB of garbage", sent >> 20);
    assert!(
        other.is_empty(),
        "answers to garbage that are not ERR (a new HELLO: reconnected): {:?}",
        &other[..other.len().min(5)]
    );
    // The flood over, and the agent's answers drained: a garbage line gets its ERR on
    // this same link, within the bound (the read timeout fails it, never hangs).
    link.write_all(b"garbage after the flood\n")
        .expect("written within the bound");
    let deadline = Instant::now() + BOUND;
    loop {
        let mut answer = String::new();
        let n = reader
            .read_line(&mut answer)
            .expect("an ERR for the garbage line within the bound");
        assert!(n > 0, "the agent closed the link");
        if answer.starts_with("ERR ") {
            break;
        }
        // The tail of what the flood got may still be on its way.
        assert!(answer.starts_with("FEATURES "), "not an ERR: {answer:?}");
        assert!(Instant::now() < deadline, "no ERR within {BOUND:?}");
    }
    assert!(listener.accept().is_err(), "the agent reconnected");
    assert_eq!(enabled(&daemon.status()), ["usb-call-recording"]);
}

/// The first connection to `listener` (non-blocking), or a failed test after `bound`.
fn accept_within(listener: &UnixListener, bound: Duration) -> UnixStream {
    let deadline = Instant::now() + bound;
    loop {
        match listener.accept() {
            Ok((link, _)) => return link,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the agent never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

// ---- Instants no clock gives ----

/// `status --at` and the test clock at `i64::MIN`, at -1 or past 2106: refused plainly
/// (exit 2) instead of a panic in debug builds and nonsense in release builds; the
/// extremes of the range are evaluated.
#[test]
fn instants_out_of_range_are_refused_plainly() {
    let phone = phone_with_license("file:///nonexistent/");
    for bad in [
        "-9223372036854775808",
        "9223372036854775807",
        "-1",
        "4294967296",
    ] {
        let out = bounded(&phone, &["status", "--json", &format!("--at={bad}")], None);
        assert_eq!(out.status.code(), Some(2), "--at {bad}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("outside the instants a license can name"),
            "{}",
            text(&out)
        );
        let t: i64 = bad.parse().unwrap();
        for args in [&["status", "--json"][..], &["run", "--once"]] {
            let out = bounded(&phone, args, Some(t));
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?} at {bad}: {}",
                text(&out)
            );
        }
    }
    for edge in ["0", "4294967295"] {
        let out = bounded(&phone, &["status", "--json", &format!("--at={edge}")], None);
        assert_eq!(out.status.code(), Some(0), "--at {edge}: {}", text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let expected: &[&str] = if edge == "0" {
            &[]
        } else {
            &["usb-call-recording"]
        };
        assert_eq!(enabled(&v), expected, "--at {edge}");
    }
}

/// An empty (truncated) keyring: refused plainly, and the stored licenses stay where
/// they are (taking it would have set every one aside as no longer verifying). Found
/// by fuzzing the keyring.
#[test]
fn an_empty_keyring_is_refused_and_sets_nothing_aside() {
    let phone = phone_with_license("file:///nonexistent/");
    let keyring = std::fs::read(phone.path("keyring")).unwrap();
    for empty in ["", "\n# all keys gone\n"] {
        std::fs::write(phone.path("keyring"), empty).unwrap();
        for args in [&["status", "--json"][..], &["run", "--once"]] {
            let out = bounded(&phone, args, None);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("names no key"),
                "{}",
                text(&out)
            );
        }
        let stored = std::fs::read_dir(phone.path("state/phone"))
            .unwrap()
            .count();
        assert_eq!(stored, 1, "a stored license was moved");
    }
    std::fs::write(phone.path("keyring"), keyring).unwrap();
    assert_eq!(enabled(&status(&phone, None)), ["usb-call-recording"]);
}

/// The features file's folder read-only when the daemon starts: it runs, and publishes
/// by itself once the folder is writable again, at the next retry (`write_retry`), with
/// nothing else to wake it.
#[test]
fn a_features_file_that_cannot_be_written_is_published_later() {
    let phone = Phone::new("server = \"file:///nonexistent/\"\n[timing]\nwrite_retry = \"2s\"\n");
    phone.install(&phone.sign("phone", &[("usb-call-recording", now() - DAY, None)]));
    let run = phone.path("run");
    std::fs::create_dir_all(&run).unwrap();
    let mount = Mount::read_only(&run);
    let daemon = phone.start(None);
    assert_eq!(enabled(&daemon.status()), ["usb-call-recording"]);
    assert!(phone.published().is_empty());
    drop(mount);
    let deadline = Instant::now() + BOUND;
    while phone.published() != ["usb-call-recording"] {
        assert!(Instant::now() < deadline, "never published");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- A hostile configuration ----

/// Bad values in the configuration never take the phone's licensed features away: the
/// daemon sets each aside (reads its key as if absent), starts on the licenses it holds
/// and publishes them, logs each with its key and line, and its status says them, as
/// the text a field engineer reads; once the file is mended, a reload (SIGHUP) takes
/// the values and says nothing more. Each used to stop `run` at once (exit 2): after
/// the next reboot the phone had no features at all.
#[test]
fn bad_configuration_values_are_set_aside_and_the_licenses_published() {
    let phone = phone_with_license("file:///nonexistent/");
    let good = std::fs::read_to_string(&phone.config).unwrap();
    std::fs::write(
        &phone.config,
        format!(
            "{good}enabled_features = [\"no-such-feature\"]\n[reboot]\nwindows = [\"25:00-26:00\"]\n\
             [timing]\npoll_interval = \"forever\"\n"
        ),
    )
    .unwrap();
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(enabled(&s), ["usb-call-recording"], "{s:#}");
    assert_eq!(phone.published(), ["usb-call-recording"]);
    let said: Vec<(&str, &str)> = s["daemon"]["config_set_aside"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["key"].as_str()?, c["detail"].as_str()?)))
        .collect();
    let keys = ["enabled_features", "timing.poll_interval", "reboot.windows"];
    assert_eq!(said.len(), keys.len(), "{said:#?}");
    for ((key, words), expected) in said.iter().zip(keys) {
        assert_eq!(*key, expected);
        assert!(
            words.contains(&format!("agent.toml: {key}: line "))
                && words.ends_with(
                    "; set aside: read as if absent (its default) until the file is mended"
                ),
            "{words}"
        );
    }
    let out = bounded(&phone, &["status"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("read from    the running daemon"), "{shown}");
    assert_eq!(
        shown.matches("config       SET ASIDE").count(),
        3,
        "{shown}"
    );
    // And the report the service provider's fleet view reads.
    let out = bounded(&phone, &["status", "--report"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reported: Vec<&str> = report["config_set_aside"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["key"].as_str())
        .collect();
    assert_eq!(reported, keys, "{report:#}");

    std::fs::write(&phone.config, &good).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let s = daemon.wait_status("the mended file read", |s| {
        s["daemon"].get("config_set_aside").is_none()
    });
    assert_eq!(enabled(&s), ["usb-call-recording"], "{s:#}");
    let (_, log) = daemon.stop();
    for key in keys {
        assert_eq!(
            log.matches(&format!("agent.toml: {key}: line ")).count(),
            1,
            "{key}: {log}"
        );
    }
}
