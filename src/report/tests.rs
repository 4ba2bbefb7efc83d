//! The report: built from a status, refusals read, every list and text bounded.

use super::*;
use crate::status::{DaemonJson, FeatureJson, FileOutcome, LicenseJson, NeedJson, RebootJson};

fn status() -> StatusJson {
    StatusJson {
        source: "daemon".into(),
        mac: "0004f2000001".into(),
        site_serial: Some("100000000001".into()),
        clock: "ok".into(),
        wall_clock: "2026-12-02T00:00:00Z".into(),
        latest_trusted: None,
        evaluated_at: Some("2026-12-02T00:00:00Z".into()),
        at_requested: false,
        licenses: vec![LicenseJson {
            fingerprint: "ab".repeat(32),
            kind: "site".into(),
            serial: "100000000001".into(),
            key: "1a2b3c4d".into(),
            role: "primary".into(),
            status: Some("active".into()),
            start: "2026-01-01T00:00:00Z".into(),
            end: "2027-01-01T00:00:00Z".into(),
            days_left: Some(30),
            file: "/var/lib/license-agent/site/0000000001.cfg".into(),
            grants: vec![GrantJson {
                name: "vqmon".into(),
                transaction: "new".into(),
                start: "2026-01-01T00:00:00Z".into(),
                end: "2027-01-01T00:00:00Z".into(),
                limit: 100,
            }],
            signed: None,
        }],
        features: vec![FeatureJson {
            id: 1,
            name: "vqmon".into(),
            status: Some("active".into()),
            enabled: true,
            end: "2027-01-01T00:00:00Z".into(),
            source: Some("site".into()),
            serial: Some("100000000001".into()),
            transaction: Some("new".into()),
            limit: Some(100),
            fingerprint: Some("ab".repeat(32)),
        }],
        enabled: vec!["vqmon".into()],
        configured: vec!["vqmon".into(), "lync".into()],
        next_change: None,
        set_aside: vec![],
        store_write_failure: None,
        events: vec![
            EventJson {
                at: "2026-12-01T00:00:00Z".into(),
                what: "refused".into(),
                subject: "0004f2000001-license.cfg".into(),
                detail:
                    "unknown-key: signed with key 99aabbcc, which is not in the trusted keyring"
                        .into(),
            },
            EventJson {
                at: "2026-12-01T00:00:01Z".into(),
                what: "accepted".into(),
                subject: "site license 100000000001".into(),
                detail: "stored".into(),
            },
            EventJson {
                at: "2026-12-01T00:00:02Z".into(),
                what: "refused".into(),
                subject: "phone license 200".into(),
                detail: "not-this-phone: for 0004f2000002".into(),
            },
        ],
        dropped: None,
        daemon: Some(DaemonJson {
            last_fetch: Some("2026-12-01T23:00:00Z".into()),
            files: vec![FileFetchJson {
                file: "000000000000-license.cfg".into(),
                at: "2026-12-01T23:00:00Z".into(),
                outcome: FileOutcome::NotModified,
                detail: "unchanged".into(),
                server: Some("ftp://prov/".into()),
                transport: Some("ftp".into()),
            }],
            reboot: RebootJson {
                pending: true,
                booted: Some(vec!["h323".into()]),
                needs: vec![NeedJson {
                    cause: "license-expired".into(),
                    since: "2026-12-01T23:00:00Z".into(),
                    not_before: "2026-12-01T23:10:00Z".into(),
                    phase: "waiting".into(),
                    request: None,
                }],
                waiting_for: Some("idle".into()),
                ..RebootJson::default()
            },
            ..DaemonJson::default()
        }),
    }
}

#[test]
fn a_report_says_what_the_status_says_and_reads_its_refusals() {
    let r = build(&status(), "2026-12-02T00:00:00Z".into(), "vvx-armv7");
    assert_eq!(r.schema, SCHEMA);
    assert_eq!(r.agent.board, "vvx-armv7");
    assert_eq!(r.licenses[0].fingerprint, "ab".repeat(32));
    assert_eq!(r.features[0].limit, Some(100));
    assert_eq!(r.features[0].fingerprint, Some("ab".repeat(32)));
    assert_eq!(r.licenses[0].grants[0].limit, 100);
    let verdicts: Vec<(&str, Option<&str>)> = r
        .refusals
        .iter()
        .map(|f| (f.verdict.as_str(), f.key.as_deref()))
        .collect();
    assert_eq!(
        verdicts,
        [("unknown-key", Some("99aabbcc")), ("not-this-phone", None)]
    );
    let reboot = r.reboot.as_ref().unwrap();
    assert_eq!(reboot.causes, ["license-expired"]);
    assert_eq!(reboot.waiting_for.as_deref(), Some("idle"));
    let fetch = r.last_fetch.as_ref().unwrap();
    assert_eq!(fetch.files[0].transport.as_deref(), Some("ftp"));
    // What the phone is configured for, and what it booted with (the daemon's).
    assert_eq!(r.configured, Some(vec!["vqmon".into(), "lync".into()]));
    assert_eq!(r.booted, Some(vec!["h323".into()]));
    // Read back: the schema is what serde writes.
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
    // The store paths of the phone are not the fleet's business.
    assert!(!text.contains("/var/lib/license-agent"), "{text}");
}

#[test]
fn a_report_without_the_daemon_has_no_fetch_and_no_reboot() {
    let mut s = status();
    s.daemon = None;
    let r = build(&s, "t".into(), "host");
    assert_eq!((r.reboot, r.last_fetch), (None, None));
    // The booted set is the daemon's alone; the configuration is the store's too.
    assert_eq!(r.booted, None);
    assert_eq!(r.configured.as_ref().map(Vec::len), Some(2));
}

/// `configured` and `booted` were added within schema 1: a report of an agent before
/// them still reads, as not known.
#[test]
fn a_report_without_the_added_fields_still_reads() {
    let r = build(&status(), "2026-12-02T00:00:00Z".into(), "vvx-armv7");
    let mut value = serde_json::to_value(&r).unwrap();
    let map = value.as_object_mut().unwrap();
    assert!(map.remove("configured").is_some());
    assert!(map.remove("booted").is_some());
    let old: Report = serde_json::from_value(value).unwrap();
    assert_eq!((old.configured, old.booted), (None, None));
    assert_eq!(old.licenses, r.licenses);
}

#[test]
fn every_list_and_text_is_bounded() {
    let mut s = status();
    let long = "é".repeat(10_000);
    s.mac = long.clone();
    s.licenses[0].grants = vec![s.licenses[0].grants[0].clone(); 256];
    s.licenses = vec![s.licenses[0].clone(); 1_000];
    s.licenses[0].serial = long.clone();
    s.features = vec![s.features[0].clone(); 1_000];
    s.configured = vec![long.clone(); 1_000];
    if let Some(d) = s.daemon.as_mut() {
        d.reboot.booted = Some(vec![long.clone(); 1_000]);
    }
    s.set_aside = vec![
        InvalidJson {
            file: long.clone(),
            reason: long.clone(),
        };
        1_000
    ];
    s.events = vec![
        EventJson {
            at: long.clone(),
            what: "refused".into(),
            subject: long.clone(),
            detail: format!("unknown-key: signed with key {long}"),
        };
        1_000
    ];
    if let Some(d) = s.daemon.as_mut() {
        d.files = vec![d.files[0].clone(); 100];
        d.files[0].detail = long.clone();
    }
    let r = build(&s, "t".into(), &long);
    assert_eq!(r.licenses.len(), MAX_LICENSES);
    let grants: usize = r.licenses.iter().map(|l| l.grants.len()).sum();
    assert_eq!(grants, MAX_GRANTS);
    assert_eq!(r.features.len(), MAX_FEATURES);
    for list in [&r.configured, &r.booted] {
        let list = list.as_ref().unwrap();
        assert_eq!(list.len(), MAX_FEATURES);
        assert_eq!(list[0].chars().count(), MAX_NAME + 1);
    }
    assert_eq!(r.refusals.len(), MAX_REFUSALS);
    assert_eq!(r.set_aside.len(), MAX_SET_ASIDE);
    assert_eq!(r.last_fetch.as_ref().unwrap().files.len(), 2);
    assert_eq!(r.mac.chars().count(), MAX_TEXT + 1);
    // Every list and text at its bound: the report stays small enough to upload often.
    let bytes = serde_json::to_vec(&r).unwrap().len();
    assert!(bytes <= 256 * 1024, "{bytes} bytes");
}
