//! The report: built from a status, refusals read, every list and text bounded.

use super::*;
use crate::status::{
    DaemonJson, FeatureJson, FileOutcome, LicenseJson, NeedJson, NeedPhase, RebootJson,
};

fn status() -> StatusJson {
    StatusJson {
        source: "daemon".into(),
        mac: "0004f2000001".into(),
        site_serial: Some("100000000001".into()),
        clock: ClockVerdict::Ok,
        wall_clock: "2026-12-02T00:00:00Z".into(),
        latest_trusted: None,
        evaluated_at: Some("2026-12-02T00:00:00Z".into()),
        at_requested: false,
        licenses: vec![LicenseJson {
            fingerprint: "ab".repeat(32),
            kind: Kind::Site,
            serial: "100000000001".into(),
            key: "1a2b3c4d".into(),
            role: Some(Role::Primary),
            status: Some(Status::Active),
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
            status: Some(Status::Active),
            enabled: true,
            end: "2027-01-01T00:00:00Z".into(),
            source: Some(Kind::Site),
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
        // Newest first, as a status lists them (written here oldest first).
        events: [
            EventJson {
                at: "2026-12-01T00:00:00Z".into(),
                what: "refused".into(),
                subject: "0004f2000001-license.cfg".into(),
                detail:
                    "unknown-key: signed with key 99aabbcc, which is not in the trusted keyring"
                        .into(),
                verdict: Some(Verdict::UnknownKey),
                key: Some("99AABBCC".into()),
            },
            EventJson {
                at: "2026-12-01T00:00:01Z".into(),
                what: "accepted".into(),
                subject: "site license 100000000001".into(),
                detail: "stored".into(),
                verdict: None,
                key: None,
            },
            EventJson {
                at: "2026-12-01T00:00:02Z".into(),
                what: "refused".into(),
                subject: "phone license 200".into(),
                detail: "not-this-phone: for 0004f2000002".into(),
                verdict: Some(Verdict::NotThisPhone),
                key: None,
            },
            // Recorded by an agent before the verdict was: refused, why in its words.
            EventJson {
                at: "2026-12-01T00:00:03Z".into(),
                what: "refused".into(),
                subject: "phone license 300".into(),
                detail: "expired: expired on 2026-01-01T00:00:00Z".into(),
                verdict: None,
                key: None,
            },
        ]
        .into_iter()
        .rev()
        .collect(),
        dropped: None,
        trust: None,
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
                    cause: Cause::LicenseExpired,
                    since: "2026-12-01T23:00:00Z".into(),
                    not_before: "2026-12-01T23:10:00Z".into(),
                    phase: NeedPhase::Waiting,
                    request: None,
                }],
                waiting_for: Some(WaitingFor::Idle),
                ..RebootJson::default()
            },
            ..DaemonJson::default()
        }),
    }
}

#[test]
fn a_report_says_what_the_status_says_and_reads_its_refusals() {
    let r = build(status(), "2026-12-02T00:00:00Z".into(), "vvx-armv7");
    assert_eq!(r.schema, SCHEMA);
    assert_eq!(r.agent.board, "vvx-armv7");
    assert_eq!(r.licenses[0].fingerprint, "ab".repeat(32));
    assert_eq!(r.features[0].limit, Some(100));
    assert_eq!(r.features[0].fingerprint, Some("ab".repeat(32)));
    assert_eq!(r.licenses[0].grants[0].limit, 100);
    // The verdict and key as recorded, never read back out of the detail's words.
    let verdicts: Vec<(Verdict, Option<&str>)> = r
        .refusals
        .iter()
        .map(|f| (f.verdict, f.key.as_deref()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (Verdict::UnknownKey, Some("99AABBCC")),
            (Verdict::NotThisPhone, None),
            (Verdict::Refused, None)
        ]
    );
    let text = serde_json::to_value(&r).unwrap();
    assert_eq!(text["refusals"][0]["verdict"], "unknown-key");
    assert_eq!(text["refusals"][2]["verdict"], "refused");
    assert_eq!(text["licenses"][0]["role"], "primary");
    let reboot = r.reboot.as_ref().unwrap();
    assert_eq!(reboot.causes, [Cause::LicenseExpired]);
    assert_eq!(reboot.waiting_for, Some(WaitingFor::Idle));
    assert_eq!(text["reboot"]["waiting_for"], "idle");
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
    let r = build(s.clone(), "t".into(), "host");
    assert_eq!((r.reboot, r.last_fetch), (None, None));
    // The booted set is the daemon's alone; the configuration is the store's too.
    assert_eq!(r.booted, None);
    assert_eq!(r.configured.as_ref().map(Vec::len), Some(2));
}

/// `configured` and `booted` were added within schema 1: a report of an agent before
/// them still reads, as not known.
#[test]
fn a_report_without_the_added_fields_still_reads() {
    let r = build(status(), "2026-12-02T00:00:00Z".into(), "vvx-armv7");
    let mut value = serde_json::to_value(&r).unwrap();
    let map = value.as_object_mut().unwrap();
    assert!(map.remove("configured").is_some());
    assert!(map.remove("booted").is_some());
    assert!(map.remove("dropped").is_some());
    for l in map["licenses"].as_array_mut().unwrap() {
        assert!(l.as_object_mut().unwrap().remove("signed").is_some());
    }
    let old: Report = serde_json::from_value(value).unwrap();
    assert_eq!((old.configured, old.booted), (None, None));
    assert_eq!(old.dropped, None);
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
            verdict: Some(Verdict::UnknownKey),
            key: Some(long.clone()),
        };
        1_000
    ];
    if let Some(d) = s.daemon.as_mut() {
        d.files = vec![d.files[0].clone(); 100];
        d.files[0].detail = long.clone();
    }
    // Every license held or dropped with a table of the most records, signed.
    let table = signed_parts(MAX_FEATURES);
    for l in &mut s.licenses {
        l.signed = Some(table.clone());
    }
    s.dropped = Some(vec![dropped_json(&s.licenses[0], &long); 1_000]);
    let r = build(s.clone(), "t".into(), &long);
    assert_eq!(r.licenses.len(), MAX_LICENSES);
    let dropped = r.dropped.as_ref().unwrap();
    assert_eq!(dropped.len(), MAX_DROPPED);
    let grants: usize = r.licenses.iter().map(|l| l.grants.len()).sum::<usize>()
        + dropped.iter().map(|d| d.grants.len()).sum::<usize>();
    assert_eq!(grants, MAX_GRANTS);
    assert_eq!(signed_hex(&r), MAX_SIGNED_HEX);
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
    eprintln!("the worst case: {bytes} bytes");
    assert!(bytes < 256 * 1024, "{bytes} bytes");
}

/// Canonical signed parts of a table of `records` records (the content is not checked
/// here: only its shape and size count).
fn signed_parts(records: usize) -> Signed {
    Signed {
        serial: "100000000001".into(),
        description: "Site".into(),
        key: "1A2B3C4D".into(),
        features: "0002020065f1e700ffffffff00000064".repeat(records),
        signature: "ab".repeat(64),
    }
}

/// A dropped license of the status, with the texts given `long`.
fn dropped_json(l: &crate::status::LicenseJson, long: &str) -> crate::status::DroppedJson {
    crate::status::DroppedJson {
        fingerprint: l.fingerprint.clone(),
        kind: Kind::Site,
        serial: long.into(),
        key: long.into(),
        start: long.into(),
        end: long.into(),
        grants: l.grants.clone(),
        signed: l.signed.clone(),
        dropped_at: long.into(),
        reason: DropReason::Replaced,
    }
}

/// The hex digits of feature tables carried, held and dropped.
fn signed_hex(r: &Report) -> usize {
    let held = r.licenses.iter().filter_map(|l| l.signed.as_ref());
    let dropped = r.dropped.iter().flatten().filter_map(|d| d.signed.as_ref());
    held.chain(dropped).map(|s| s.features.len()).sum()
}

/// The tables carried stop at 64 KiB over the report: the licenses past it (held, then
/// dropped) carry none, and none is cut. A part not in its canonical shape is not carried.
#[test]
fn the_signed_tables_stop_at_the_budget_never_cut() {
    let mut s = status();
    let full = signed_parts(MAX_FEATURES); // 8 KiB of hex
    s.licenses = vec![s.licenses[0].clone(); 9];
    for l in &mut s.licenses {
        l.signed = Some(full.clone());
    }
    s.licenses[7].signed = Some(signed_parts(1));
    s.dropped = Some(vec![
        dropped_json(&s.licenses[0], "x"),
        dropped_json(&s.licenses[7], "x"),
    ]);
    let r = build(s.clone(), "t".into(), "host");
    let carried: Vec<bool> = r.licenses.iter().map(|l| l.signed.is_some()).collect();
    // Seven of 8 KiB and one of one record fit; the eighth full one does not.
    assert_eq!(
        carried,
        [true, true, true, true, true, true, true, true, false]
    );
    let dropped = r.dropped.as_ref().unwrap();
    assert_eq!(dropped[0].signed, None, "past the budget");
    assert_eq!(dropped[1].signed, Some(signed_parts(1)), "still within it");
    assert!(signed_hex(&r) <= MAX_SIGNED_HEX);
    assert!(r
        .licenses
        .iter()
        .filter_map(|l| l.signed.as_ref())
        .all(|p| p.features.len() % 32 == 0));
    // Not canonical (a serial in capitals, a short signature, an odd table): not carried.
    for spoil in [
        |p: &mut Signed| p.serial = "10000000000A".into(),
        |p: &mut Signed| p.key = "1a2b3c4d".into(),
        |p: &mut Signed| p.signature.truncate(126),
        |p: &mut Signed| p.features.push_str("00"),
        |p: &mut Signed| p.description = "site".into(),
    ] {
        let mut one = status();
        let mut parts = signed_parts(1);
        spoil(&mut parts);
        one.licenses[0].signed = Some(parts);
        assert_eq!(
            build(one.clone(), "t".into(), "host").licenses[0].signed,
            None
        );
    }
}

/// The spec's signed message, rebuilt from a report's signed content alone.
fn message(parts: &Signed) -> Vec<u8> {
    let mut m = format!(
        "PLCM-LICENSE-2.0\n{}\n{}\n{}\n",
        parts.serial, parts.description, parts.key
    )
    .into_bytes();
    m.extend(hex::decode(&parts.features).unwrap());
    m
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// End to end, from a store: every license held, and one dropped, carries signed content
/// that rebuilds the exact signed message, hashes to its fingerprint and verifies with
/// the vendor key; the one that ended is in `dropped` as `ended`, dated when it was
/// dropped.
#[test]
fn the_signed_content_rebuilds_the_message_its_fingerprint_names() {
    use crate::engine::clock::BUILD_TIME;
    use crate::format::{Kind, Transaction};
    use crate::storage::{Mode, Store};
    use crate::testkit::{self, entry, DAY};
    let dir = tempfile::tempdir().unwrap();
    let phone = testkit::phone_in(dir.path(), "");
    let t = BUILD_TIME + 10 * DAY;
    let mut store = testkit::writer_store(&phone, t);
    let (p, pl) = testkit::lic_file(Kind::Phone, &[(1, t - DAY, None), (5, t, Some(t + DAY))]);
    let site = |end| {
        let entries = vec![
            entry((2, t - DAY, Some(end)), Transaction::Renewal, 250),
            entry((0x1234, t - DAY, Some(end)), Transaction::Addon, 0),
        ];
        let text = testkit::file_with(Kind::Site, testkit::SITE, entries);
        let license = testkit::keyring().verify_bytes(text.as_bytes()).unwrap();
        (text, license)
    };
    let (s1, sl1) = site(t + 5 * DAY);
    let (s2, sl2) = site(t + 300 * DAY);
    store.add(p.as_bytes(), pl.clone(), &[], t, t).unwrap();
    store.add(s1.as_bytes(), sl1.clone(), &[], t, t).unwrap();
    store.add(s2.as_bytes(), sl2.clone(), &[], t, t).unwrap();
    // The first site license ends (the second outlasts it: it is no longer counted
    // either way, but at its end it is Inactive, so it ended).
    let at = t + 5 * DAY;
    assert!(store.prune(at, at + 60));
    let status = crate::status::build(&phone, &store, at + 60, None);
    let r = build(status.clone(), "t".into(), "host");
    assert_eq!(r.licenses.len(), 2);
    let dropped = r.dropped.as_ref().unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].reason, DropReason::Ended);
    assert_eq!(dropped[0].dropped_at, crate::status::time(at + 60));
    assert_eq!(dropped[0].grants.len(), 2);
    let public = testkit::keyring().get(pl.key_id()).unwrap().public_key;
    let carried = r
        .licenses
        .iter()
        .map(|l| (&l.fingerprint, l.signed.as_ref().unwrap()))
        .chain(
            dropped
                .iter()
                .map(|d| (&d.fingerprint, d.signed.as_ref().unwrap())),
        );
    let mut messages = Vec::new();
    for (fingerprint, parts) in carried {
        let m = message(parts);
        assert_eq!(&sha256_hex(&m), fingerprint);
        let signature = hex::decode(&parts.signature).unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
            .verify(&m, &signature)
            .expect("the signature holds over the rebuilt message");
        messages.push(m);
    }
    assert_eq!(
        messages,
        [
            pl.signed_message(),
            sl2.signed_message(),
            sl1.signed_message()
        ]
    );
    // A license held again is not also shown dropped; the record survives a restart.
    drop(store);
    let state = &phone.config.state_dir;
    let store = Store::open(state, &phone.keyring, &phone.identity, Mode::ReadOnly, at).unwrap();
    let again = crate::status::build(&phone, &store, at + 60, None);
    assert_eq!(again.dropped, status.dropped);
    // 90 days past its end, not shown (judged at that instant, nothing written).
    let later = crate::status::build(&phone, &store, at + 90 * DAY, None);
    assert_eq!(later.dropped.map(|d| d.len()), Some(0));
}
