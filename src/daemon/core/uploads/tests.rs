//! The uploads against the fake server (`fetch::fake`: an answer to give), each upload
//! the core asks for done when the test says ([`finish`]): what is sent, when it is not
//! sent again, the back-off, a server without uploads.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::fetch::fake::{self, Script};

const MAC: &str = "0004f2000001";

/// The uploads and the upload they asked for, not yet done.
struct Reporter {
    uploads: Uploads,
    server: Arc<dyn crate::fetch::Server>,
    pending: Option<(String, Vec<u8>)>,
}

impl Reporter {
    fn offer(&mut self, report: &Report) {
        self.uploads.offer(report.clone());
    }

    fn start_if_due(&mut self, now: Mono) {
        if let Some(Action::Upload { name, body }) = self.uploads.start_if_due(now) {
            assert!(self.pending.is_none(), "one upload at a time");
            self.pending = Some((name, body));
        }
    }

    /// Whether an upload is under way.
    fn uploading(&self) -> bool {
        assert_eq!(self.pending.is_some(), self.uploads.uploading());
        self.pending.is_some()
    }

    fn words(&self) -> String {
        self.uploads.words()
    }

    fn next_attempt(&self) -> Option<Mono> {
        self.uploads.next_attempt()
    }
}

fn setup() -> (Reporter, Arc<Script>) {
    let text = format!(
        "mac = \"{MAC}\"\nkeyring = \"k\"\nstate_dir = \"s\"\nserver = \"http://prov/\"\n\
         [timing]\nretry_initial = \"30s\"\nretry_max = \"1h\"\n"
    );
    let config = Config::parse(&text, Path::new("/etc/agent.toml")).unwrap();
    let script = Arc::new(Script::default());
    let server = fake::server(&script, "http://prov/");
    let mac = config.mac().unwrap();
    let t = &config.timing;
    // Jitter 0: the back-off is its lower half, `initial / 2`.
    let uploads = Uploads::new(
        Ok(server.bases().to_vec()),
        mac,
        (t.retry_initial, t.retry_max),
        0,
    );
    let reporter = Reporter {
        uploads,
        server,
        pending: None,
    };
    (reporter, script)
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

/// Does the upload under way (on the fake server, now) and hands its outcome back.
fn finish(reporter: &mut Reporter, now: Mono) {
    let (name, body) = reporter.pending.take().expect("an upload under way");
    let result = crate::fetch::worker::upload(reporter.server.as_ref(), &name, &body)
        .map_err(UploadFailure::Server);
    reporter.uploads.finished(result, now);
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
            crate::words::or_unknown::word(report.features[0].status).to_string()
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
    assert!(!reporter.uploading());
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
    finish(&mut reporter, now);
    reporter.start_if_due(now);
    finish(&mut reporter, now);
    assert_eq!(statuses(&script), ["active", "expiring-shortly"]);

    // A change and its undoing while one is under way: the one under way is the last.
    reporter.offer(&report("inactive", "t3"));
    reporter.start_if_due(now);
    reporter.offer(&report("active", "t4"));
    reporter.offer(&report("inactive", "t5"));
    finish(&mut reporter, now);
    reporter.start_if_due(now);
    assert!(!reporter.uploading());
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
    assert!(!reporter.uploading());

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
    assert!(!reporter.uploading());
    assert!(statuses(&script).is_empty());

    // The configuration read again: the server is asked again.
    let (mut fresh, _) = setup();
    fresh.uploads.continue_from(&mut reporter.uploads);
    fresh.offer(&report("active", "t3"));
    assert!(fresh.uploads.wanted.is_some());
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
        let mac = config.mac().unwrap();
        let server = crate::daemon::reporting::report_server(&config, mac, None);
        let bases = server.map(|s| s.bases().to_vec());
        let t = &config.timing;
        Uploads::new(bases, mac, (t.retry_initial, t.retry_max), 0).words()
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
