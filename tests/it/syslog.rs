//! The daemon's log sent to syslog (`[syslog]`), received by a real rsyslogd
//! (`test_servers::rsyslog`) over UDP, TCP and TLS: each line with the configured
//! facility and its own severity (a refused license a warning, a routine fetch
//! informational, a store that cannot be written an error). And a syslog server that
//! stalls, refuses or vanishes during a fetch cycle changes nothing else: the control
//! socket's `status` still answers within 1 s, the cycle ends and publishes, and the
//! lines that could not be sent are counted and said.

use crate::common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bounded::Mount;
use common::faults::{Fault, FaultServer};
use common::now;
use common::phone::{Phone, DAY, MAC, PHONE_FILE};
use test_servers::pki::Pki;
use test_servers::rsyslog::{Listen, Rsyslog};

const WAIT: Duration = Duration::from_secs(20);

/// The `[syslog]` lines (and `[fetch]`'s TLS files: the syslog server's by default).
/// `fetch` is more of `[fetch]`.
fn syslog_table(url: &str, pki: &Pki, facility: &str, fetch: &str) -> String {
    format!(
        "[fetch]\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n{fetch}\
         [syslog]\nserver = \"{url}\"\nfacility = \"{facility}\"\nlocal = \"off\"\n",
        pki.ca_pem.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    )
}

/// Over each transport: a refused license (a phone file that is not a license) arrives
/// as `local3.warning`, the routine fetch lines as `local3.info`, each from the phone's
/// MAC, app-name `license-agent`, the daemon's pid.
#[test]
fn rsyslog_receives_each_line_with_its_facility_and_severity_over_udp_tcp_and_tls() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    for listen in [Listen::Udp, Listen::Tcp, Listen::Tls] {
        let rsyslog = Rsyslog::start(&work.path().join(listen.scheme()), listen, Some(&pki));
        let (phone, folder) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 100 * DAY))]);
        std::fs::write(folder.path().join(PHONE_FILE), b"not a license at all\n").unwrap();
        phone.configure(&format!(
            "server = \"file://{}/\"\nenabled_features = [\"vqmon\"]\n{}",
            folder.path().display(),
            syslog_table(&rsyslog.url(), &pki, "local3", "")
        ));
        let daemon = phone.start(None);
        let pid = daemon.child.id().to_string();
        let refused = rsyslog.wait_for(WAIT, |r| r.msg.contains(&format!("{PHONE_FILE} refused")));
        let fetched = rsyslog.wait_for(WAIT, |r| {
            r.msg.starts_with("fetch: 000000000000-license.cfg")
        });
        // A license taken is news: notice.
        let accepted = rsyslog.wait_for(WAIT, |r| {
            r.msg
                .starts_with("000000000000-license.cfg: accepted site license")
        });
        let (exit, log) = daemon.stop();
        assert_eq!(exit, Some(0), "{log}");
        // The last line, written as the daemon stops, is sent before it exits.
        let stopping = rsyslog.wait_for(WAIT, |r| r.msg == "signal 15: stopping");
        let all = rsyslog.received();
        assert!(
            stopping.is_some(),
            "{listen:?}: no stopping line in {all:#?}\n{log}"
        );
        let refused =
            refused.unwrap_or_else(|| panic!("{listen:?}: no refusal in {all:#?}\n{log}"));
        let fetched =
            fetched.unwrap_or_else(|| panic!("{listen:?}: no fetch line in {all:#?}\n{log}"));
        assert_eq!(
            (
                refused.facility.as_str(),
                refused.severity.as_str(),
                refused.pri
            ),
            ("local3", "warning", 19 * 8 + 4),
            "{listen:?}: {refused:?}"
        );
        assert_eq!(
            (
                fetched.facility.as_str(),
                fetched.severity.as_str(),
                fetched.pri
            ),
            ("local3", "info", 19 * 8 + 6),
            "{listen:?}: {fetched:?}"
        );
        let accepted =
            accepted.unwrap_or_else(|| panic!("{listen:?}: no accepted line in {all:#?}\n{log}"));
        assert_eq!(
            (accepted.severity.as_str(), accepted.pri),
            ("notice", 19 * 8 + 5),
            "{listen:?}: {accepted:?}"
        );
        for r in [&refused, &fetched] {
            assert_eq!(
                (r.host.as_str(), r.app.as_str()),
                (MAC, "license-agent"),
                "{r:?}"
            );
            assert_eq!(r.procid, pid, "{r:?}");
        }
        // The same lines on standard error: it stays.
        assert!(log.contains(&format!("{PHONE_FILE} refused")), "{log}");
        // Nothing below the threshold (info) was sent.
        assert!(all.iter().all(|r| r.severity != "debug"), "{all:#?}");
    }
}

/// The local syslogd (rsyslogd on a socket of its own, as `/dev/log`; `local` takes a
/// path): the BSD lines arrive with the facility and the severity, as `license-agent`
/// with the daemon's pid, besides a remote server.
#[test]
fn the_local_syslogd_receives_the_lines_in_the_bsd_form() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let local = Rsyslog::start(&work.path().join("local"), Listen::Local, None);
    let remote = Rsyslog::start(&work.path().join("udp"), Listen::Udp, None);
    let (phone, folder) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 100 * DAY))]);
    std::fs::write(folder.path().join(PHONE_FILE), b"not a license at all\n").unwrap();
    phone.configure(&format!(
        "server = \"file://{}/\"\nenabled_features = [\"vqmon\"]\n\
         [syslog]\nserver = \"{}\"\nfacility = \"local5\"\nlocal = \"{}\"\n",
        folder.path().display(),
        remote.url(),
        local.socket().display()
    ));
    let daemon = phone.start(None);
    let pid = daemon.child.id().to_string();
    let refused = local.wait_for(WAIT, |r| r.msg.contains(&format!("{PHONE_FILE} refused")));
    let fetched = local.wait_for(WAIT, |r| r.msg.contains("fetch: 000000000000-license.cfg"));
    let remote_too = remote.wait_for(WAIT, |r| r.msg.contains(&format!("{PHONE_FILE} refused")));
    let (_, log) = daemon.stop();
    let all = local.received();
    let refused = refused.unwrap_or_else(|| panic!("no refusal in {all:#?}\n{log}"));
    let fetched = fetched.unwrap_or_else(|| panic!("no fetch line in {all:#?}\n{log}"));
    assert_eq!(
        (
            refused.facility.as_str(),
            refused.severity.as_str(),
            refused.pri
        ),
        ("local5", "warning", 21 * 8 + 4),
        "{refused:?}"
    );
    assert_eq!(
        (fetched.facility.as_str(), fetched.severity.as_str()),
        ("local5", "info"),
        "{fetched:?}"
    );
    for r in [&refused, &fetched] {
        assert_eq!(
            (r.app.as_str(), r.procid.as_str()),
            ("license-agent", pid.as_str()),
            "{r:?}"
        );
    }
    assert!(
        remote_too.is_some(),
        "the remote server got nothing: {:#?}",
        remote.received()
    );
    // The init script's forwarder stops passing log lines on at this line.
    assert!(
        log.contains(&format!(
            "syslog: sending to the local syslogd at {}",
            local.socket().display()
        )),
        "{log}"
    );
}

/// A store that cannot be written (the state folder mounted read-only) is an error
/// (`local0.err` by default), and `level = "error"` sends nothing less severe.
#[test]
fn a_store_that_cannot_be_written_arrives_as_an_error_and_the_level_filters() {
    let _heavy = common::heavy();
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&work.path().join("udp"), Listen::Udp, None);
    let (phone, folder) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 100 * DAY))]);
    phone.configure(&format!(
        "server = \"file://{}/\"\nenabled_features = [\"vqmon\"]\n\
         [syslog]\nserver = \"{}\"\nlevel = \"error\"\nlocal = \"off\"\n",
        folder.path().display(),
        rsyslog.url()
    ));
    let state = phone.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let mount = Mount::read_only(&state);
    let daemon = phone.start(None);
    let error = rsyslog.wait_for(WAIT, |r| r.severity == "err");
    let (_, log) = daemon.stop();
    drop(mount);
    let all = rsyslog.received();
    let error = error.unwrap_or_else(|| panic!("no error line in {all:#?}\n{log}"));
    assert_eq!(
        (error.facility.as_str(), error.pri),
        ("local0", 16 * 8 + 3),
        "{error:?}"
    );
    assert!(
        all.iter().all(|r| r.severity == "err"),
        "less severe than error was sent: {all:#?}"
    );
    // The fetch was logged (on standard error) but not sent.
    assert!(log.contains("fetch: 000000000000-license.cfg"), "{log}");
}

/// What the syslog server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// Accepts TCP connections and never reads (over plain TCP, or TLS: no handshake).
    Stalls { tls: bool },
    /// Nothing listens on its port.
    Refuses,
    /// A real rsyslogd over TCP, stopped while the fetch cycle runs.
    Vanishes,
}

/// A syslog server in trouble during the boot fetch cycle (made to last 3 s by a first
/// provisioning server that stalls): `status` answers within 1 s throughout, the cycle
/// ends with the feature set published from the second server, and the lines that
/// could not be sent are said as dropped (a plain TCP server that stalls takes what its
/// socket buffers hold, so nothing is lost there).
#[test]
fn a_syslog_server_that_stalls_refuses_or_vanishes_changes_nothing_else() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    for trouble in [
        Trouble::Stalls { tls: false },
        Trouble::Stalls { tls: true },
        Trouble::Refuses,
        Trouble::Vanishes,
    ] {
        let stalled_http = FaultServer::start(Fault::Stall);
        let mut rsyslog = None;
        let mut _held = None;
        let url = match trouble {
            Trouble::Stalls { tls } => {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port();
                _held = Some(hold_connections(listener));
                format!("{}://127.0.0.1:{port}", if tls { "tls" } else { "tcp" })
            }
            Trouble::Refuses => format!("tcp://127.0.0.1:{}", test_servers::ftp::free_tcp_port()),
            Trouble::Vanishes => {
                let server = Rsyslog::start(&work.path().join("vanishing"), Listen::Tcp, None);
                let url = server.url();
                rsyslog = Some(server);
                url
            }
        };
        let (phone, folder) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 100 * DAY))]);
        phone.configure(&format!(
            "server = [\"{}\", \"file://{}/\"]\nenabled_features = [\"vqmon\"]\n\
             [timing]\nboot_clock_wait = 0\n{}",
            stalled_http.url(),
            folder.path().display(),
            syslog_table(
                &url,
                &pki,
                "local0",
                "total_timeout = \"3s\"\nconnect_timeout = \"2s\"\n"
            )
        ));
        let mut child = Reaped(Some(phone.spawn(None)));
        let stderr = collect(child.0.as_mut().unwrap().stderr.take().unwrap());
        let socket = phone.path("control.sock");
        // Answering at all (the socket is bound early in the start).
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = common::control::status(&socket, Duration::from_secs(5)) {
            assert!(Instant::now() < deadline, "{trouble:?}: no status: {e}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut slowest = Duration::ZERO;
        let mut saw_fetching = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, took) = common::control::status(&socket, Duration::from_secs(1))
                .unwrap_or_else(|e| panic!("{trouble:?}: status not within 1 s: {e}"));
            slowest = slowest.max(took);
            let fetching = status["daemon"]["fetching"] == true;
            if fetching {
                saw_fetching = true;
                // Gone while the cycle runs.
                drop(rsyslog.take());
            } else if saw_fetching {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{trouble:?}: the cycle never ended: {status:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(slowest < Duration::from_secs(1), "{trouble:?}: {slowest:?}");
        let daemon = phone.attach(child.0.take().unwrap());
        assert_eq!(phone.published(), ["vqmon"], "{trouble:?}");
        if trouble != (Trouble::Stalls { tls: false }) {
            let said = wait_text(&stderr, "log lines dropped: the syslog server");
            assert!(
                said.is_some(),
                "{trouble:?}: the drops not said:\n{}",
                text(&stderr)
            );
        }
        // Still answering, and stops cleanly.
        common::control::status(&socket, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{trouble:?}: status not within 1 s: {e}"));
        let (exit, _) = daemon.stop();
        assert_eq!(exit, Some(0), "{trouble:?}: {}", text(&stderr));
    }
}

/// A daemon not yet attached: killed if the test fails before.
struct Reaped(Option<std::process::Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Accepts connections on `listener` and keeps them, never reading, until the test ends.
fn hold_connections(listener: TcpListener) -> Arc<Mutex<Vec<std::net::TcpStream>>> {
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    held
}

/// Reads the daemon's standard error in the background.
fn collect(mut stderr: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let into = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    text
}

fn text(stderr: &Arc<Mutex<String>>) -> String {
    stderr.lock().unwrap().clone()
}

/// Waits (up to [`WAIT`]) for a line of standard error holding `needle`.
fn wait_text(stderr: &Arc<Mutex<String>>, needle: &str) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = text(stderr).lines().find(|l| l.contains(needle)) {
            return Some(line.to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP reads `[syslog]` again: the lines after it go to the server the new
/// configuration names, with its facility.
#[test]
fn a_reload_sends_to_the_syslog_server_the_new_configuration_names() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let first = Rsyslog::start(&work.path().join("first"), Listen::Udp, None);
    let second = Rsyslog::start(&work.path().join("second"), Listen::Tcp, None);
    let (phone, folder) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 100 * DAY))]);
    let server = format!("server = \"file://{}/\"\n", folder.path().display());
    let pki = Pki::new(&work.path().join("pki"));
    phone.configure(&format!(
        "{server}{}",
        syslog_table(&first.url(), &pki, "local1", "")
    ));
    let daemon = phone.start(None);
    assert!(first
        .wait_for(WAIT, |r| r.msg.starts_with("fetch: ")
            && r.facility == "local1")
        .is_some());
    phone.configure(&format!(
        "{server}{}",
        syslog_table(&second.url(), &pki, "local6", "")
    ));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.child.id()).unwrap()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let mut fetched = None;
    for _ in 0..20 {
        daemon.request(r#"{"cmd":"check-sync"}"#);
        fetched = second.wait_for(std::time::Duration::from_secs(1), |r| {
            r.msg.starts_with("fetch: ") && r.facility == "local6"
        });
        if fetched.is_some() {
            break;
        }
    }
    assert!(fetched.is_some(), "{:#?}", second.received());
}
