//! The portal's model on reports that carry real signed licenses (issue 25): counts are
//! rows, a Renewal renews, an Addon adds capacity, a lost feature is flagged, ended
//! licenses stay Inactive, and only signed content defines a license.

use serde_json::{json, Value};

use super::model::{Fleet, Options};
use super::slim::Slim;
use super::view::Gather;
use crate::format::{FeatureEntry, Kind, License, Transaction};
use crate::status::{fingerprint, time};
use crate::testkit::{entry, key, license_with, DAY, SITE};
use crate::words::or_unknown::word;

const NOW: i64 = 1_790_000_000;

fn features_of(l: &License) -> Vec<Value> {
    l.features()
        .iter()
        .map(|e| {
            json!({"name": e.id.name(), "transaction": e.transaction.name(),
                   "start": time(i64::from(e.start)), "end": e.end.to_string(), "limit": e.limit})
        })
        .collect()
}

fn signed_of(l: &License) -> Value {
    json!({
        "serial": l.serial().to_string(),
        "description": l.kind().description(),
        "key": l.key_id().to_string(),
        "features": hex::encode(crate::format::features::encode_table(l.features())),
        "signature": hex::encode(l.signature()),
    })
}

/// A license as a report carries it, with its signed content.
fn held(l: &License) -> Value {
    let span = crate::engine::status::license_span(l);
    json!({
        "fingerprint": fingerprint(l.signed_message()),
        "kind": l.kind().id(),
        "serial": l.serial().to_string(),
        "key": l.key_id().to_string(),
        "role": "primary",
        "status": null,
        "start": time(span.0),
        "end": span.1.to_string(),
        "grants": features_of(l),
        "signed": signed_of(l),
    })
}

/// A license the phone dropped, for `reason`.
fn dropped(l: &License, reason: &str) -> Value {
    let mut v = held(l);
    let o = v.as_object_mut().unwrap();
    o.remove("role");
    o.remove("status");
    o.insert("dropped_at".into(), json!(time(NOW - DAY)));
    o.insert("reason".into(), json!(reason));
    v
}

/// The feature `name` enabled on a phone, governed by `l`.
fn using(name: &str, l: &License) -> Value {
    let e = l
        .features()
        .iter()
        .find(|e| e.id.name() == name)
        .expect("granted");
    json!({"name": name, "status": "active", "enabled": true, "end": e.end.to_string(),
           "source": l.kind().id(), "serial": l.serial().to_string(),
           "transaction": e.transaction.name(), "limit": e.limit,
           "fingerprint": fingerprint(l.signed_message())})
}

fn report(n: usize, licenses: Vec<Value>, features: Vec<Value>) -> Value {
    json!({
        "schema": crate::report::SCHEMA, "mac": mac(n), "site_serial": SITE,
        "agent": {"version": "0.1.0", "board": "vvx-armv7"},
        "reported_at": time(NOW - 600), "clock": "ok", "evaluated_at": time(NOW - 600),
        "licenses": licenses, "features": features, "configured": null, "booted": null,
        "refusals": [], "set_aside": [], "reboot": null, "last_fetch": null,
    })
}

fn mac(n: usize) -> String {
    format!("0004f2{n:06x}")
}

fn site(entries: Vec<FeatureEntry>) -> License {
    (*license_with(Kind::Site, SITE, entries)).clone()
}

fn grant(id: u16, start: i64, end: Option<i64>, t: Transaction, limit: u32) -> FeatureEntry {
    entry((id, start, end), t, limit)
}

const VQMON: u16 = 2;
const USB: u16 = 1;
const H323: u16 = 4;

fn fleet_with(reports: &[Value], options: Options) -> Fleet {
    let bytes: Vec<Vec<u8>> = reports
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let mut gather = Gather::new(options);
    for (order, b) in bytes.iter().enumerate() {
        let slim: Slim<'_> = serde_json::from_slice(b).expect("a report");
        gather.add(&slim, order);
    }
    gather.finish()
}

fn fleet_of(reports: &[Value]) -> Fleet {
    fleet_with(reports, Options::at(NOW))
}

fn verified_fleet_of(reports: &[Value]) -> Fleet {
    let mut options = Options::at(NOW);
    options.keyring = Some(std::sync::Arc::new(key().1.clone()));
    fleet_with(reports, options)
}

fn group<'f>(f: &'f Fleet, what: &str) -> Vec<&'f str> {
    f.attention
        .iter()
        .filter(|g| g.what == what)
        .flat_map(|g| g.phones.iter().map(|p| p.mac.as_str()))
        .collect()
}

/// Finding 1: a grant Expiring Shortly inside a license whose other grant lasts longer
/// is one Expiring Shortly row, counted; counts equal the rows of each status.
#[test]
fn a_grant_expiring_inside_a_longer_license_is_counted() {
    let a = site(vec![
        grant(
            VQMON,
            NOW - 300 * DAY,
            Some(NOW + 20 * DAY),
            Transaction::New,
            20,
        ),
        grant(
            USB,
            NOW - 300 * DAY,
            Some(NOW + 300 * DAY),
            Transaction::New,
            0,
        ),
    ]);
    let reports: Vec<Value> = (1..=3)
        .map(|n| {
            report(
                n,
                vec![held(&a)],
                vec![using("vqmon", &a), using("usb-call-recording", &a)],
            )
        })
        .collect();
    let f = fleet_of(&reports);
    assert_eq!(f.rows.len(), 2);
    assert_eq!((f.summary.expiring_shortly, f.summary.active), (1, 1));
    let vqmon = f.rows.iter().find(|r| r.feature == "vqmon").unwrap();
    assert_eq!(
        (word(vqmon.status), vqmon.in_use, vqmon.capacity),
        ("expiring-shortly", 3, 20)
    );
    assert_eq!(vqmon.days_left, Some(20));
    assert_eq!(group(&f, "feature-ends"), [mac(1), mac(2), mac(3)]);
    assert_eq!(f.sites.len(), 1);
    assert_eq!(
        (f.sites[0].phones, f.sites[0].rows.expiring_shortly),
        (3, 1)
    );
}

/// Finding 2: a Renewal posted before the term ends renews it: the term is shown
/// Active, renewed until the Renewal's end, with how many of its phones hold the
/// Renewal; the others are what to act on, not "feature ends".
#[test]
fn a_renewal_renews_and_says_who_has_not_fetched_it() {
    let end = NOW + 20 * DAY;
    let a = site(vec![grant(
        VQMON,
        NOW - 300 * DAY,
        Some(end),
        Transaction::New,
        20,
    )]);
    let b = site(vec![grant(
        VQMON,
        end,
        Some(end + 365 * DAY),
        Transaction::Renewal,
        20,
    )]);
    let mut reports = Vec::new();
    for n in 1..=4 {
        let licenses = if n <= 2 {
            vec![held(&b), held(&a)]
        } else {
            vec![held(&a)]
        };
        reports.push(report(n, licenses, vec![using("vqmon", &a)]));
    }
    let f = fleet_of(&reports);
    let term = f.rows.iter().find(|r| r.transaction == "new").unwrap();
    assert_eq!(word(term.status), "active", "renewed: no longer red");
    assert_eq!(word(term.term_status), "expiring-shortly");
    assert_eq!(
        term.renewed_until.as_deref(),
        Some(time(end + 365 * DAY).as_str())
    );
    assert_eq!(
        (term.renewal_fetched, term.renewal_phones, term.phones),
        (Some(2), Some(4), 4)
    );
    let renewal = f.rows.iter().find(|r| r.transaction == "renewal").unwrap();
    assert_eq!((word(renewal.status), renewal.phones), ("impending", 2));
    assert_eq!(
        (
            f.summary.active,
            f.summary.impending,
            f.summary.expiring_shortly
        ),
        (1, 1, 0)
    );
    assert!(group(&f, "feature-ends").is_empty(), "{:?}", f.attention);
    assert_eq!(group(&f, "renewal-not-fetched"), [mac(3), mac(4)]);
}

/// Finding 3: an Addon adds its capacity to the term it falls in: devices in use are
/// counted against the sum (26 of 30, not 22 of 20 OVER and 4 of 10).
#[test]
fn an_addon_adds_capacity_to_its_term() {
    let end = NOW + 300 * DAY;
    let a = site(vec![
        grant(VQMON, NOW - 60 * DAY, Some(end), Transaction::New, 20),
        grant(USB, NOW - 60 * DAY, Some(end), Transaction::New, 0),
    ]);
    let c = site(vec![
        grant(VQMON, NOW - 10 * DAY, Some(end), Transaction::Addon, 10),
        grant(USB, NOW - 60 * DAY, Some(end), Transaction::New, 0),
    ]);
    let mut reports = Vec::new();
    for n in 1..=26 {
        let l = if n <= 22 { &a } else { &c };
        reports.push(report(n, vec![held(l)], vec![using("vqmon", l)]));
    }
    let f = fleet_of(&reports);
    let term = f
        .rows
        .iter()
        .find(|r| r.feature == "vqmon" && r.transaction == "new")
        .unwrap();
    assert_eq!((term.in_use, term.capacity, term.over), (26, 30, false));
    let addon = f.rows.iter().find(|r| r.transaction == "addon").unwrap();
    assert_eq!(
        addon.adds_to.as_deref(),
        Some(format!("new {}", time(NOW - 60 * DAY)).as_str())
    );
    assert_eq!(addon.in_use, 0, "counted on its term");
    // The usb grant kept as it was in the Addon's file is one row, held by all.
    let usb: Vec<_> = f
        .rows
        .iter()
        .filter(|r| r.feature == "usb-call-recording")
        .collect();
    assert_eq!(
        (usb.len(), usb[0].phones, usb[0].licenses.len()),
        (1, 26, 2)
    );
    assert!(group(&f, "over-capacity").is_empty(), "{:?}", f.attention);
    assert_eq!((f.sites[0].in_use, f.sites[0].capacity), (26, 30));
}

/// Finding 4: an Addon-only site file that became the primary took usb-call-recording
/// off the phones configured for it: flagged, with the cause.
#[test]
fn a_configured_feature_lost_is_flagged_whatever_the_cause() {
    let end = NOW + 300 * DAY;
    let a = site(vec![
        grant(VQMON, NOW - 60 * DAY, Some(end), Transaction::New, 20),
        grant(USB, NOW - 60 * DAY, Some(end), Transaction::New, 0),
    ]);
    let d = site(vec![grant(
        VQMON,
        NOW - 10 * DAY,
        Some(end),
        Transaction::Addon,
        10,
    )]);
    let mut reports = Vec::new();
    for n in 1..=4 {
        let mut r = report(n, vec![held(&d)], vec![using("vqmon", &d)]);
        r["configured"] = json!(["vqmon", "usb-call-recording", "h323"]);
        r["dropped"] = json!([dropped(&a, "replaced")]);
        reports.push(r);
    }
    let f = fleet_of(&reports);
    let lost: Vec<&super::model::Group> = f
        .attention
        .iter()
        .filter(|g| g.what == "feature-lost")
        .collect();
    assert_eq!(lost.len(), 2, "{lost:?}");
    let usb = lost
        .iter()
        .find(|g| g.subject.starts_with("usb-call-recording"))
        .unwrap();
    assert_eq!(usb.phones.len(), 4);
    assert!(
        usb.phones[0].detail.contains("replaced"),
        "{:?}",
        usb.phones[0]
    );
    let h323 = lost.iter().find(|g| g.subject.starts_with("h323")).unwrap();
    assert!(
        h323.phones[0].detail.contains("no license"),
        "{:?}",
        h323.phones[0]
    );
    // The replaced file's term still stands: the Addon adds to it.
    let term = f
        .rows
        .iter()
        .find(|r| r.feature == "vqmon" && r.transaction == "new")
        .unwrap();
    assert_eq!((term.in_use, term.capacity, term.phones), (4, 30, 0));
}

/// Finding 5: a license that ended stays listed as Inactive, from the records phones
/// keep of what they dropped, for `--inactive` days after its end.
#[test]
fn an_ended_license_stays_inactive_for_a_while() {
    let trial = (*license_with(
        Kind::Phone,
        &mac(1),
        vec![grant(
            H323,
            NOW - 40 * DAY,
            Some(NOW - 10 * DAY),
            Transaction::Trial,
            0,
        )],
    ))
    .clone();
    let mut r = report(1, vec![], vec![]);
    r["dropped"] = json!([dropped(&trial, "ended")]);
    let f = fleet_of(std::slice::from_ref(&r));
    assert_eq!((f.summary.all, f.summary.inactive), (1, 1));
    assert_eq!(
        (f.rows[0].transaction.as_str(), f.rows[0].phones),
        ("trial", 0)
    );
    let mut later = Options::at(NOW + 85 * DAY);
    later.inactive = 90 * DAY;
    assert_eq!(
        fleet_with(std::slice::from_ref(&r), later.clone())
            .summary
            .inactive,
        0
    );
    later.at = NOW + 75 * DAY;
    assert_eq!(fleet_with(&[r], later).summary.inactive, 1);
}

/// Finding 6: a report is a claim. A forged claim of a site license (end 2099, limit
/// 9999) never defines it: content that does not hash to the fingerprint is flagged and
/// ignored; with a keyring only content it verifies counts, and without one the view
/// says so.
#[test]
fn only_signed_content_defines_a_license() {
    let a = site(vec![grant(
        VQMON,
        NOW - 60 * DAY,
        Some(NOW + 20 * DAY),
        Transaction::New,
        2,
    )]);
    let fp = fingerprint(a.signed_message());
    let mut forged = held(&a);
    forged["grants"][0]["end"] = json!("2099-01-01T00:00:00Z");
    forged["grants"][0]["limit"] = json!(9999);
    let other = site(vec![grant(
        VQMON,
        NOW - 60 * DAY,
        Some(4_070_908_800),
        Transaction::New,
        9999,
    )]);
    forged["signed"] = signed_of(&other);
    let mut claim_only = forged.clone();
    claim_only["signed"] = Value::Null;
    // The forger's files come first by name.
    let mut reports = vec![
        report(
            0,
            vec![forged],
            vec![json!({"name": "vqmon", "status": "active", "enabled": true,
            "end": "2099-01-01T00:00:00Z", "fingerprint": fp})],
        ),
        report(9, vec![claim_only], vec![]),
    ];
    for n in 1..=3 {
        reports.push(report(n, vec![held(&a)], vec![using("vqmon", &a)]));
    }
    for (f, verified) in [
        (fleet_of(&reports), false),
        (verified_fleet_of(&reports), true),
    ] {
        assert_eq!(f.verified, verified);
        let row = &f.rows[0];
        assert_eq!(f.rows.len(), 1);
        assert_eq!(
            (row.end.as_str(), row.limit),
            (time(NOW + 20 * DAY).as_str(), 2)
        );
        assert_eq!(word(row.status), "expiring-shortly", "still red");
        assert!(row.over, "3 phones on 2: still over");
        assert_eq!(row.verified, verified);
        assert_eq!(group(&f, "forged-license"), [mac(0)]);
        // A claim without content names the license by its identity, which other
        // reports' content proves: it holds it (an agent leaves content out past its
        // budget; a forger could copy the public content anyway).
        assert_eq!(row.phones, 4);
        assert!(group(&f, "unverified-license").is_empty());
    }
    // Content signed by a key the fleet's keyring does not hold: not counted.
    let stranger = crate::issuer::SigningKey::from_seed(&[9; 32]).unwrap();
    let spec = crate::issuer::LicenseSpec {
        serial: crate::format::Serial::parse(SITE).unwrap(),
        kind: Kind::Site,
        features: vec![grant(USB, NOW - DAY, None, Transaction::New, 0)],
    };
    let text = crate::issuer::issue(&spec, &stranger).unwrap();
    let minted = crate::format::parse(text.as_bytes()).unwrap();
    let r = report(
        5,
        vec![held(&minted)],
        vec![using("usb-call-recording", &minted)],
    );
    let f = verified_fleet_of(std::slice::from_ref(&r));
    assert!(f.rows.is_empty(), "{:?}", f.rows);
    assert_eq!(group(&f, "unverified-license"), [mac(5)]);
    let f = fleet_of(&[r]);
    assert_eq!((f.rows.len(), f.rows[0].verified), (1, false));
}

/// Finding 7: site licenses first, then by end; the text table shows each row's
/// status, description and type.
#[test]
fn site_licenses_come_first_then_by_end() {
    let s = site(vec![grant(
        VQMON,
        NOW - DAY,
        Some(NOW + 200 * DAY),
        Transaction::New,
        5,
    )]);
    let mut reports = Vec::new();
    for n in 1..=3 {
        let p = (*license_with(
            Kind::Phone,
            &mac(n),
            vec![grant(
                H323,
                NOW - DAY,
                Some(NOW + (n as i64) * 10 * DAY),
                Transaction::New,
                0,
            )],
        ))
        .clone();
        reports.push(report(n, vec![held(&p), held(&s)], vec![using("h323", &p)]));
    }
    reports.reverse();
    let f = fleet_of(&reports);
    let order: Vec<(&str, &str)> = f
        .rows
        .iter()
        .map(|r| (r.kind.id(), r.id.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("site", SITE),
            ("phone", &mac(1)[..]),
            ("phone", &mac(2)[..]),
            ("phone", &mac(3)[..])
        ]
    );
    let text = super::table(&f, &[]);
    assert!(text.contains("VQMon voice quality monitoring"), "{text}");
    assert!(text.contains("Managed Device"), "{text}");
    assert!(text.contains("Expiring Shortly"), "{text}");
    assert!(text.contains("NOT verified"), "{text}");
}

/// Finding 6: a genuine license copied into another phone's report is not believed
/// there: a phone license is bound to its MAC, a site license to the phone's site.
#[test]
fn a_genuine_license_in_the_wrong_report_is_not_believed() {
    let own = (*license_with(
        Kind::Phone,
        &mac(1),
        vec![grant(H323, NOW - DAY, None, Transaction::New, 0)],
    ))
    .clone();
    let real = report(1, vec![held(&own)], vec![using("h323", &own)]);
    let copied = report(2, vec![held(&own)], vec![using("h323", &own)]);
    let other_site = (*license_with(
        Kind::Site,
        "100000000002",
        vec![grant(VQMON, NOW - DAY, None, Transaction::New, 1)],
    ))
    .clone();
    let elsewhere = report(
        3,
        vec![held(&other_site)],
        vec![using("vqmon", &other_site)],
    );
    for f in [
        fleet_of(&[real.clone(), copied.clone(), elsewhere.clone()]),
        verified_fleet_of(&[real, copied, elsewhere]),
    ] {
        assert_eq!(f.rows.len(), 1, "{:?}", f.rows);
        assert_eq!(
            (f.rows[0].id.as_str(), f.rows[0].phones, f.rows[0].in_use),
            (&mac(1)[..], 1, 1)
        );
        assert_eq!(group(&f, "forged-license"), [mac(2), mac(3)]);
    }
}

/// The verdict on a report never depends on the reports read before it: content of a
/// verified license with another (bad) signature is checked, and refused, wherever it
/// comes in the folder.
#[test]
fn a_bad_signature_is_refused_whatever_was_read_before() {
    let a = site(vec![grant(VQMON, NOW - DAY, None, Transaction::New, 0)]);
    let real = report(1, vec![held(&a)], vec![using("vqmon", &a)]);
    let mut bad = held(&a);
    let mut signature = hex::decode(bad["signed"]["signature"].as_str().unwrap()).unwrap();
    signature[0] ^= 1;
    bad["signed"]["signature"] = hex::encode(signature).into();
    let tampered = report(2, vec![bad], vec![using("vqmon", &a)]);
    for reports in [[real.clone(), tampered.clone()], [tampered, real]] {
        let f = verified_fleet_of(&reports);
        assert_eq!(group(&f, "unverified-license"), [mac(2)]);
        assert_eq!((f.rows[0].phones, f.rows[0].in_use), (1, 1));
    }
}

/// A site's vqmon: a New term of 20 ending in 20 days, an Addon of 10 within it, and
/// its Renewal of 30 for a year from the term's end.
fn term_addon_renewal() -> [License; 3] {
    let end = NOW + 20 * DAY;
    [
        site(vec![grant(
            VQMON,
            NOW - 100 * DAY,
            Some(end),
            Transaction::New,
            20,
        )]),
        site(vec![grant(
            VQMON,
            NOW - 50 * DAY,
            Some(end),
            Transaction::Addon,
            10,
        )]),
        site(vec![grant(
            VQMON,
            end,
            Some(end + 365 * DAY),
            Transaction::Renewal,
            30,
        )]),
    ]
}

/// A phone that took the site's Addon file (the agent drops the New file it replaces,
/// keeping a `replaced` record) and has not fetched the posted Renewal loses vqmon at
/// the term's end: it must be in `renewal-not-fetched` (or at least `feature-ends`).
#[test]
fn a_phone_on_the_addon_file_without_the_renewal_is_flagged() {
    let [new, addon, renewal] = term_addon_renewal();
    let mut r1 = report(1, vec![held(&addon)], vec![using("vqmon", &addon)]);
    r1["dropped"] = Value::Array(vec![dropped(&new, "replaced")]);
    let mut r2 = report(
        2,
        vec![held(&addon), held(&renewal)],
        vec![using("vqmon", &addon)],
    );
    r2["dropped"] = Value::Array(vec![dropped(&new, "replaced")]);
    let f = verified_fleet_of(&[r1, r2]);
    let term = f.rows.iter().find(|r| r.transaction == "new").unwrap();
    assert_eq!(
        term.renewal_phones,
        Some(2),
        "both phones depend on the term: {term:?}"
    );
    let flagged: Vec<&str> = ["renewal-not-fetched", "feature-ends"]
        .iter()
        .flat_map(|w| group(&f, w))
        .collect();
    assert_eq!(flagged, [mac(1)], "{:#?}", f.attention);
}

/// The same folder gives the same fleet whatever order its reports are gathered in
/// (the folder's threads register licenses in any order): two New terms of the same
/// start (a site license re-issued with another limit) and an Addon.
#[test]
fn the_addon_host_does_not_depend_on_gather_order() {
    let end = NOW + 20 * DAY;
    let a = site(vec![grant(
        VQMON,
        NOW - 100 * DAY,
        Some(end),
        Transaction::New,
        20,
    )]);
    let b = site(vec![grant(
        VQMON,
        NOW - 100 * DAY,
        Some(end),
        Transaction::New,
        25,
    )]);
    let c = site(vec![grant(
        VQMON,
        NOW - 50 * DAY,
        Some(end),
        Transaction::Addon,
        10,
    )]);
    let reports = [
        report(1, vec![held(&a)], vec![using("vqmon", &a)]),
        report(2, vec![held(&b)], vec![using("vqmon", &b)]),
        report(3, vec![held(&c)], vec![using("vqmon", &c)]),
    ];
    let mut options = Options::at(NOW);
    options.keyring = Some(std::sync::Arc::new(crate::testkit::key().1.clone()));
    // Gather in file order, and gather the last file first (as a second thread would).
    let forward = fleet_in_order(&reports, &[0, 1, 2], options.clone());
    let backward = fleet_in_order(&reports, &[2, 1, 0], options);
    assert_eq!(forward, backward);
}

/// Groups count phones: one phone with three refusals of one kind is one phone.
#[test]
fn a_group_counts_each_phone_once() {
    let a = site(vec![grant(
        VQMON,
        NOW - 100 * DAY,
        Some(NOW + 200 * DAY),
        Transaction::New,
        20,
    )]);
    let mut r = report(1, vec![held(&a)], vec![using("vqmon", &a)]);
    let refusal = serde_json::json!({"at": "2026-01-01T00:00:00Z", "subject": "x-license.cfg",
        "verdict": "bad-signature", "detail": "bad-signature: altered", "key": null});
    r["refusals"] = Value::Array(vec![refusal.clone(), refusal.clone(), refusal]);
    let f = fleet_of(&[r]);
    let g = f.attention.iter().find(|g| g.what == "refused").unwrap();
    assert_eq!(g.phones.len(), 1, "{g:?}");
}

/// Each report gathered alone (as by its own thread), the parts merged in `sequence`.
fn fleet_in_order(reports: &[Value], sequence: &[usize], options: Options) -> Fleet {
    let bytes: Vec<Vec<u8>> = reports
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let mut whole = Gather::new(options.clone());
    for &n in sequence {
        let mut part = Gather::new(options.clone());
        let slim: Slim<'_> = serde_json::from_slice(&bytes[n]).unwrap();
        part.add(&slim, n);
        whole.merge(part);
    }
    whole.finish()
}

/// A Renewal that starts before its term ends (as the issuer makes one that would
/// otherwise leave a gap) is one subscription with it: while both are in force, the
/// devices on either count on the term, whose capacity alone applies (30 on 20 is
/// over; the site does not have 40).
#[test]
fn a_renewal_overlapping_its_term_counts_on_it() {
    let end = NOW + 20 * DAY;
    let term = site(vec![grant(
        VQMON,
        NOW - 100 * DAY,
        Some(end),
        Transaction::New,
        20,
    )]);
    let renewal = site(vec![grant(
        VQMON,
        NOW - 9 * DAY,
        Some(end + 365 * DAY),
        Transaction::Renewal,
        20,
    )]);
    let mut reports = Vec::new();
    for n in 1..=30 {
        let l = if n <= 15 { &term } else { &renewal };
        reports.push(report(n, vec![held(l)], vec![using("vqmon", l)]));
    }
    let f = verified_fleet_of(&reports);
    let t = f.rows.iter().find(|r| r.transaction == "new").unwrap();
    let r = f.rows.iter().find(|r| r.transaction == "renewal").unwrap();
    assert_eq!((t.in_use, t.capacity, t.over), (30, 20, true));
    assert_eq!((r.in_use, r.capacity), (0, 0));
    assert_eq!((f.sites[0].in_use, f.sites[0].capacity), (30, 20));
    assert_eq!(group(&f, "over-capacity").len(), 30);
    assert_eq!((t.renewal_fetched, t.renewal_phones), (Some(15), Some(30)));
}

/// An Addon of a renewed term is rolled into the Renewal: renewed with it, not red.
#[test]
fn an_addon_of_a_renewed_term_is_renewed_with_it() {
    let end = NOW + 20 * DAY;
    let [term, addon, renewal] = term_addon_renewal();
    let r = report(
        1,
        vec![held(&addon), held(&renewal), held(&term)],
        vec![using("vqmon", &addon)],
    );
    let f = verified_fleet_of(&[r]);
    let a = f.rows.iter().find(|r| r.transaction == "addon").unwrap();
    assert_eq!(
        (word(a.status), word(a.term_status)),
        ("active", "expiring-shortly")
    );
    assert_eq!(
        a.renewed_until.as_deref(),
        Some(time(end + 365 * DAY).as_str())
    );
    assert_eq!(f.summary.expiring_shortly, 0);
}

/// A report without signed content (an agent's budget cut it) names a license by its
/// identity: with a keyring, believed where other content proves that fingerprint, else
/// unverified; a dropped record without proof is left out, never flagged.
#[test]
fn a_license_named_without_content_is_believed_only_where_proved() {
    let a = site(vec![grant(VQMON, NOW - DAY, None, Transaction::New, 0)]);
    let lone = site(vec![grant(USB, NOW - DAY, None, Transaction::New, 0)]);
    let gone = site(vec![grant(
        H323,
        NOW - 40 * DAY,
        Some(NOW - 10 * DAY),
        Transaction::New,
        0,
    )]);
    let bare = |l: &License| {
        let mut v = held(l);
        v["signed"] = Value::Null;
        v
    };
    let mut cut = report(2, vec![bare(&a), bare(&lone)], vec![using("vqmon", &a)]);
    let mut record = dropped(&gone, "ended");
    record["signed"] = Value::Null;
    cut["dropped"] = json!([record]);
    let full = report(1, vec![held(&a)], vec![using("vqmon", &a)]);
    for reports in [[full.clone(), cut.clone()], [cut, full]] {
        let f = verified_fleet_of(&reports);
        let features: Vec<(&str, usize)> = f
            .rows
            .iter()
            .map(|r| (r.feature.as_str(), r.phones))
            .collect();
        assert_eq!(features, [("vqmon", 2)]);
        assert_eq!(group(&f, "unverified-license"), [mac(2)]);
        let subject = &f
            .attention
            .iter()
            .find(|g| g.what == "unverified-license")
            .unwrap()
            .subject;
        assert_eq!(subject, &fingerprint(lone.signed_message())[..12]);
    }
}

/// A report is read only as an agent writes it: a MAC spelled otherwise (a copy of a
/// phone's report under another spelling would count it twice), or lists past the
/// schema's bounds (a flood of forged grants), make a file that is not a report.
#[test]
fn a_report_past_what_an_agent_writes_is_not_a_report() {
    let a = site(vec![grant(VQMON, NOW - DAY, None, Transaction::New, 20)]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, r: &Value| {
        std::fs::write(dir.path().join(name), serde_json::to_vec(r).unwrap()).unwrap()
    };
    let real = report(1, vec![held(&a)], vec![using("vqmon", &a)]);
    write("0004f2000001-license-status.json", &real);
    let mut upper = real.clone();
    upper["mac"] = "0004F2000001".into();
    write("0004F2000001-license-status.json", &upper);
    let mut odd = real.clone();
    odd["mac"] = "x".into();
    write("x-license-status.json", &odd);
    let mut flood = report(2, vec![], vec![]);
    let grants: Vec<Value> = (0..600).map(|_| features_of(&a)[0].clone()).collect();
    let mut many = held(&a);
    many["grants"] = Value::Array(grants);
    many["signed"] = Value::Null;
    flood["licenses"] = json!([many]);
    write(&format!("{}-license-status.json", mac(2)), &flood);
    let mut options = Options::at(NOW);
    options.keyring = None;
    let (f, unreadable) = super::gather_folder(dir.path(), options).unwrap();
    assert_eq!(f.phones, 1);
    assert_eq!((f.rows[0].in_use, f.rows[0].phones), (1, 1));
    let whys: Vec<&str> = unreadable.iter().map(|u| u.why.as_str()).collect();
    assert_eq!(whys.len(), 3, "{whys:?}");
    assert_eq!(
        whys.iter()
            .filter(|w| w.contains("12 lowercase hex"))
            .count(),
        2,
        "{whys:?}"
    );
    assert!(whys.iter().any(|w| w.contains("600 grants")), "{whys:?}");
}

/// Every text the table writes is stripped of control characters, the words a report
/// gives for a transaction too.
#[test]
fn the_table_strips_a_transaction_of_control_characters() {
    let mut r = report(1, vec![], vec![]);
    let a = site(vec![grant(VQMON, NOW - DAY, None, Transaction::New, 0)]);
    let mut claim = held(&a);
    claim["signed"] = Value::Null;
    claim["grants"][0]["transaction"] = "renewal\u{1b}[31mRED\u{1b}]0;title\u{7}".into();
    r["licenses"] = json!([claim]);
    let text = super::table(&fleet_of(&[r]), &[]);
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(raw.is_empty(), "{raw:?} in {text}");
}

/// The words of a closed list are read as the agent's own types: a kind or a clock
/// verdict no agent writes makes a file that is not a report (saying which word), while
/// a refusal's verdict or a reboot's wait that a newer agent may add reads as the
/// list's catch-all, the report kept.
#[test]
fn a_report_is_read_with_the_words_the_agent_writes() {
    let a = site(vec![grant(VQMON, NOW - DAY, None, Transaction::New, 20)]);
    let dir = tempfile::tempdir().unwrap();
    let write = |n: usize, r: &Value| {
        let name = format!("{}-license-status.json", mac(n));
        std::fs::write(dir.path().join(name), serde_json::to_vec(r).unwrap()).unwrap()
    };
    let mut newer = report(1, vec![held(&a)], vec![using("vqmon", &a)]);
    newer["refusals"] = json!([{"at": time(NOW), "subject": "s", "verdict": "key-revoked",
        "detail": "key-revoked: x", "key": null}]);
    newer["reboot"] = json!({"causes": ["license-changed"], "waiting_for": "a-newer-wait"});
    write(1, &newer);
    let mut kind = report(2, vec![held(&a)], vec![]);
    kind["licenses"][0]["kind"] = "Site".into();
    write(2, &kind);
    let mut clock = report(3, vec![], vec![]);
    clock["clock"] = "fine".into();
    write(3, &clock);
    let mut options = Options::at(NOW);
    options.keyring = None;
    let (f, unreadable) = super::gather_folder(dir.path(), options).unwrap();
    assert_eq!(f.phones, 1);
    let whys: Vec<&str> = unreadable.iter().map(|u| u.why.as_str()).collect();
    assert_eq!(whys.len(), 2, "{whys:?}");
    assert!(
        whys.iter()
            .any(|w| w.contains("\"Site\" is not one of the words of Kind")),
        "{whys:?}"
    );
    assert!(
        whys.iter()
            .any(|w| w.contains("\"fine\" is not one of the words of ClockVerdict")),
        "{whys:?}"
    );
    let refused = f.attention.iter().find(|g| g.what == "refused").unwrap();
    assert_eq!(refused.subject, "refused");
    let reboot = f
        .attention
        .iter()
        .find(|g| g.what == "reboot-pending")
        .unwrap();
    assert!(
        reboot.phones[0].detail.contains("waiting for other"),
        "{reboot:?}"
    );
}
