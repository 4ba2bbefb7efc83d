//! The uploader against the fake server (`fetch::fake`: a gate to hold an upload, an
//! answer to give):
//! what is sent, when it is not sent again, the back-off, a server without uploads.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::fetch::fake::{self, Script};

const MAC: &str = "0004f2000001";

fn setup() -> (Reporter, Arc<Script>) {
    let text = format!(
        "mac = \"{MAC}\"\nkeyring = \"k\"\nstate_dir = \"s\"\nserver = \"http://prov/\"\n\
         [timing]\nretry_initial = \"30s\"\nretry_max = \"1h\"\n"
    );
    let config = Config::parse(&text, Path::new("/etc/agent.toml")).unwrap();
    let script = Arc::new(Script::default());
    let server = fake::server(&script, "http://prov/");
    let mac = config.mac().unwrap();
    // Jitter 0: the back-off is its lower half, `initial / 2`.
    (Reporter::with_server(Ok(server), mac, &config, 0), script)
}

/// A report made at `at` that says the license is `status`.
fn report(status: &str, at: &str) -> Report {
    serde_json::from_value(serde_json::json!({
        "schema": crate::report::SCHEMA,
        "mac": MAC,
        "site_serial": null,
        "agent": { "version": "0", "board": "test" },
        "reported_at": at,
        "clock": "ok",
        "evaluated_at": at,
        "licenses": [],
        "features": [{
            "name": "vqmon", "status": status, "enabled": true, "end": "never",
            "source": "site", "serial": "100000000001", "transaction": "new",
            "limit": 0, "fingerprint": null
        }],
        "refusals": [],
        "set_aside": [],
        "reboot": null,
        "last_fetch": null
    }))
    .unwrap()
}

/// Waits for the upload under way to end and takes its outcome.
fn finish(reporter: &mut Reporter, now: Mono) {
    use nix::poll::{poll, PollFd, PollFlags};
    let fd = reporter.fd().expect("an upload under way");
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, 10_000u16).unwrap(), 1, "the upload ended");
    // The pipe closes just after the result is sent.
    for _ in 0..100 {
        reporter.finished(now);
        if reporter.fd().is_none() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the upload never ended");
}

fn statuses(script: &Script) -> Vec<String> {
    script
        .uploads
        .lock()
        .unwrap()
        .iter()
        .map(|(name, body)| {
            assert_eq!(name, &format!("{MAC}-license-status.json"));
            let report: Report = serde_json::from_slice(body).unwrap();
            report.features[0].status.clone().unwrap_or_default()
        })
        .collect()
}

#[test]
fn a_report_goes_up_once_and_again_only_when_it_changes() {
    let (mut reporter, script) = setup();
    let now = Mono::now();
    reporter.offer(&report("active", "2026-12-01T00:00:00Z"));
    reporter.start_if_due(now);
    finish(&mut reporter, now);
    assert_eq!(statuses(&script), ["active"]);
    assert!(reporter
        .words()
        .starts_with("http://prov/0004f2000001-license-status.json"));

    // The same report made later (other instants): not sent again, nothing to wake for.
    reporter.offer(&report("active", "2026-12-02T00:00:00Z"));
    reporter.start_if_due(now);
    assert!(reporter.fd().is_none());
    assert_eq!(reporter.next_attempt(), None);

    reporter.offer(&report("expiring-shortly", "2026-12-03T00:00:00Z"));
    reporter.start_if_due(now);
    finish(&mut reporter, now);
    assert_eq!(statuses(&script), ["active", "expiring-shortly"]);
}

#[test]
fn a_change_during_an_upload_goes_up_after_it_and_a_change_undone_does_not() {
    let (mut reporter, script) = setup();
    let now = Mono::now();
    let held = script.gate.lock().unwrap();
    reporter.offer(&report("active", "t1"));
    reporter.start_if_due(now);
    reporter.offer(&report("expiring-shortly", "t2"));
    // One upload at a time.
    reporter.start_if_due(now);
    assert!(
        reporter.words().ends_with("; an upload is under way"),
        "{}",
        reporter.words()
    );
    drop(held);
    finish(&mut reporter, now);
    reporter.start_if_due(now);
    finish(&mut reporter, now);
    assert_eq!(statuses(&script), ["active", "expiring-shortly"]);

    // A change and its undoing while one is under way: the one under way is the last.
    let held = script.gate.lock().unwrap();
    reporter.offer(&report("inactive", "t3"));
    reporter.start_if_due(now);
    reporter.offer(&report("active", "t4"));
    reporter.offer(&report("inactive", "t5"));
    drop(held);
    finish(&mut reporter, now);
    reporter.start_if_due(now);
    assert!(reporter.fd().is_none());
    assert_eq!(
        statuses(&script),
        ["active", "expiring-shortly", "inactive"]
    );
}

#[test]
fn a_failed_upload_is_tried_again_after_a_back_off_with_the_newest_report() {
    let (mut reporter, script) = setup();
    *script.upload_failure.lock().unwrap() = Some(FailureKind::Connect);
    let now = Mono::now();
    reporter.offer(&report("active", "t1"));
    reporter.start_if_due(now);
    finish(&mut reporter, now);
    // retry_initial 30 s, jitter 0: 15 s.
    assert_eq!(reporter.next_attempt(), Some(now.plus_secs(15)));
    assert!(
        reporter.words().contains("failing (1 in a row)"),
        "{}",
        reporter.words()
    );

    // A change does not bring the retry forward.
    reporter.offer(&report("expiring-shortly", "t2"));
    reporter.start_if_due(now.plus_secs(14));
    assert!(reporter.fd().is_none());

    // The second failure doubles the wait.
    reporter.start_if_due(now.plus_secs(15));
    finish(&mut reporter, now.plus_secs(15));
    assert_eq!(reporter.next_attempt(), Some(now.plus_secs(15 + 30)));

    *script.upload_failure.lock().unwrap() = None;
    reporter.start_if_due(now.plus_secs(45));
    finish(&mut reporter, now.plus_secs(45));
    assert_eq!(statuses(&script), ["expiring-shortly"]);
    assert_eq!(reporter.next_attempt(), None);
    assert!(
        !reporter.words().contains("failing"),
        "{}",
        reporter.words()
    );
}

#[test]
fn a_server_that_takes_no_uploads_is_not_asked_again_until_a_reload() {
    let (mut reporter, script) = setup();
    *script.upload_failure.lock().unwrap() = Some(FailureKind::NoUploads);
    let now = Mono::now();
    reporter.offer(&report("active", "t1"));
    reporter.start_if_due(now);
    finish(&mut reporter, now);
    assert_eq!(reporter.next_attempt(), None);
    assert!(
        reporter.words().starts_with("off: "),
        "{}",
        reporter.words()
    );
    *script.upload_failure.lock().unwrap() = None;
    reporter.offer(&report("expiring-shortly", "t2"));
    reporter.start_if_due(now.plus_secs(3600));
    assert!(reporter.fd().is_none());
    assert!(statuses(&script).is_empty());

    // The configuration read again: the server is asked again.
    let (mut fresh, _) = setup();
    fresh.continue_from(&mut reporter);
    fresh.offer(&report("active", "t3"));
    assert!(fresh.wanted.is_some());
}

/// A server that took a report and then says it takes none (a full disk, a quota) is
/// asked again after the back-off: it took uploads a minute ago.
#[test]
fn a_server_that_took_a_report_is_never_taken_for_one_that_takes_none() {
    let (mut reporter, script) = setup();
    let now = Mono::now();
    reporter.offer(&report("active", "t1"));
    reporter.start_if_due(now);
    finish(&mut reporter, now);
    assert_eq!(statuses(&script), ["active"]);
    *script.upload_failure.lock().unwrap() = Some(FailureKind::NoUploads);
    reporter.offer(&report("expiring-shortly", "t2"));
    reporter.start_if_due(now.plus_secs(1));
    finish(&mut reporter, now.plus_secs(1));
    let words = reporter.words();
    assert!(
        !words.starts_with("off: ") && words.contains("failing (1 in a row)"),
        "{words}"
    );
    assert_eq!(reporter.next_attempt(), Some(now.plus_secs(1 + 15)));
    *script.upload_failure.lock().unwrap() = None;
    reporter.start_if_due(now.plus_secs(16));
    finish(&mut reporter, now.plus_secs(16));
    assert_eq!(statuses(&script), ["active", "expiring-shortly"]);
}

#[test]
fn the_report_goes_where_the_configuration_says() {
    let config = |extra: &str| {
        let text = format!("mac = \"{MAC}\"\nkeyring = \"k\"\nstate_dir = \"s\"\n{extra}");
        Config::parse(&text, Path::new("/etc/agent.toml")).unwrap()
    };
    let words = |extra: &str| {
        let config = config(extra);
        Reporter::new(&config, config.mac().unwrap(), 0).words()
    };
    assert_eq!(words(""), "off: no server");
    assert_eq!(
        words("server = \"http://prov/\"\nreport = false"),
        "off (report = false)"
    );
    assert_eq!(
        words("server = \"tftp://prov/\""),
        "off: the servers take no uploads (TFTP); set report = URL"
    );
    // The servers that take uploads, in order; TFTP left out.
    assert_eq!(
        words("server = [\"tftp://a/\", \"http://b/\", \"file:///c/\"]"),
        "not sent yet (to http://b/, file:///c/)"
    );
    assert_eq!(
        words("server = \"tftp://a/\"\nreport = \"ftp://u:p@up/reports\""),
        "not sent yet (to ftp://up/reports/)"
    );
    let refused = Config::parse(
        &format!("mac = \"{MAC}\"\nkeyring = \"k\"\nstate_dir = \"s\"\nreport = \"tftp://a/\"\n"),
        Path::new("/etc/agent.toml"),
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("takes no uploads"),
        "{refused}"
    );
}
