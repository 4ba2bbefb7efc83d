//! The fleet view on a generated fleet whose truth is known, and a folder holding files
//! that are not reports.

use super::*;
use crate::report::{Agent, Feature, License, Reboot, Refusal};
use crate::status::{time, GrantJson};

const DAY: i64 = 86_400;
const NOW: i64 = 1_790_000_000;

fn license(fp: &str, kind: &str, start: i64, end: Option<i64>, grants: &[(&str, u32)]) -> License {
    let end = end.map_or("never".to_string(), time);
    License {
        fingerprint: fp.repeat(64 / fp.len()),
        kind: kind.into(),
        serial: "100000000001".into(),
        key: "1a2b3c4d".into(),
        role: "primary".into(),
        status: None,
        start: time(start),
        end: end.clone(),
        grants: grants
            .iter()
            .map(|(name, limit)| GrantJson {
                name: name.to_string(),
                transaction: "new".into(),
                start: time(start),
                end: end.clone(),
                limit: *limit,
            })
            .collect(),
    }
}

fn feature(name: &str, l: &License) -> Feature {
    Feature {
        name: name.into(),
        status: Some("active".into()),
        enabled: true,
        end: l.end.clone(),
        source: Some(l.kind.clone()),
        serial: Some(l.serial.clone()),
        transaction: Some("new".into()),
        limit: None,
        fingerprint: Some(l.fingerprint.clone()),
    }
}

fn report(mac: &str, reported: i64, licenses: Vec<License>, features: Vec<Feature>) -> Report {
    Report {
        schema: SCHEMA.into(),
        mac: mac.into(),
        site_serial: Some("100000000001".into()),
        agent: Agent {
            version: "0.1.0".into(),
            board: "vvx-armv7".into(),
        },
        reported_at: time(reported),
        clock: "ok".into(),
        evaluated_at: Some(time(reported)),
        licenses,
        features,
        refusals: vec![],
        set_aside: vec![],
        reboot: None,
        last_fetch: None,
    }
}

/// Three phones share a site license counted for 2 devices (so it is over its limit);
/// each has a phone license: active, expiring in 10 days, impending; one phone also
/// holds an ended license; one reports late, one refused a stranger's license, one's
/// clock is wound back and waits for a reboot.
fn generated() -> Vec<Report> {
    let site = license(
        "a",
        "site",
        NOW - 100 * DAY,
        Some(NOW + 200 * DAY),
        &[("vqmon", 2)],
    );
    let long = license("b", "phone", NOW - 10 * DAY, None, &[("lync", 0)]);
    let soon = license(
        "c",
        "phone",
        NOW - 300 * DAY,
        Some(NOW + 10 * DAY),
        &[("h323", 0)],
    );
    let later = license(
        "d",
        "phone",
        NOW + 5 * DAY,
        Some(NOW + 400 * DAY),
        &[("h323", 0)],
    );
    let ended = license(
        "e",
        "phone",
        NOW - 400 * DAY,
        Some(NOW - DAY),
        &[("lync", 0)],
    );
    let mut one = report(
        "0004f2000001",
        NOW - 3600,
        vec![site.clone(), long.clone()],
        vec![feature("vqmon", &site), feature("lync", &long)],
    );
    one.refusals.push(Refusal {
        at: time(NOW - 7200),
        subject: "0004f2000001-license.cfg".into(),
        verdict: "unknown-key".into(),
        detail: "unknown-key: signed with key 99aabbcc".into(),
        key: Some("99aabbcc".into()),
    });
    let two = report(
        "0004f2000002",
        NOW - 30 * DAY,
        vec![site.clone(), soon.clone(), ended],
        vec![feature("vqmon", &site), feature("h323", &soon)],
    );
    let mut three = report(
        "0004f2000003",
        NOW - 60,
        vec![site.clone(), later],
        vec![feature("vqmon", &site)],
    );
    three.clock = "windback".into();
    three.reboot = Some(Reboot {
        causes: vec!["license-changed".into()],
        waiting_for: Some("idle".into()),
    });
    // An older report of phone one: the newer one counts.
    let old_one = report("0004f2000001", NOW - 90 * DAY, vec![], vec![]);
    vec![old_one, one, two, three]
}

fn options() -> Options {
    Options {
        at: NOW,
        within: 31 * DAY,
        stale: 7 * DAY,
    }
}

#[test]
fn the_summary_counts_each_license_once() {
    let f = fleet(&generated(), options());
    assert_eq!(f.phones, 3);
    assert_eq!(
        f.summary,
        view::Summary {
            all: 5,
            active: 2,
            expiring_shortly: 1,
            impending: 1,
            inactive: 1,
        }
    );
    let site = &f.licenses[0];
    assert_eq!((site.kind.as_str(), site.phones), ("site", 3));
    assert_eq!(site.grants[0].in_use, 3);
    assert!(site.grants[0].over_limit, "3 phones on a 2-device license");
    let long = &f.licenses[1];
    assert_eq!(
        (long.grants[0].in_use, long.grants[0].over_limit),
        (1, false)
    );
}

#[test]
fn what_needs_attention() {
    let f = fleet(&generated(), options());
    let got: Vec<(&str, &str)> = f
        .attention
        .iter()
        .map(|a| (a.mac.as_str(), a.what.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("0004f2000001", "unknown-key"),
            ("0004f2000002", "feature-ends"),
            ("0004f2000002", "stale-report"),
            ("0004f2000003", "clock"),
            ("0004f2000003", "reboot-pending"),
        ]
    );
    assert!(f.attention[0].detail.contains("99aabbcc"));
    assert!(f.attention[1].detail.starts_with("h323 ends"));
}

#[test]
fn another_instant_judges_the_whole_fleet_again() {
    // 20 days on: the expiring license has ended, the impending one started.
    let f = fleet(
        &generated(),
        Options {
            at: NOW + 20 * DAY,
            ..options()
        },
    );
    assert_eq!(
        (f.summary.active, f.summary.impending, f.summary.inactive),
        (3, 0, 2)
    );
}

#[test]
fn files_that_are_not_reports_are_listed_and_never_stop_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let good = serde_json::to_vec(&generated()[1]).unwrap();
    std::fs::write(dir.path().join("0004f2000001-license-status.json"), good).unwrap();
    std::fs::write(
        dir.path().join("0004f2000002-license-status.json"),
        b"{not json",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0004f2000003-license-status.json"),
        br#"{"schema":"license-agent-report/2"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0004f2000004-license-status.json"),
        vec![b' '; MAX_REPORT_FILE as usize + 1],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0004f2000005-license-status.json"),
        b"[1,2]",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("0004f2000006-license-status.json")).unwrap();
    std::fs::write(dir.path().join("0004f2000001-app.log"), b"other uploads").unwrap();
    let (reports, unreadable) = read_folder(dir.path()).unwrap();
    assert_eq!(reports.len(), 1);
    let whys: Vec<&str> = unreadable.iter().map(|u| u.why.as_str()).collect();
    assert_eq!(whys.len(), 5, "{whys:?}");
    assert!(whys[0].starts_with("not JSON"), "{whys:?}");
    assert!(whys[1].contains("license-agent-report/2"), "{whys:?}");
    let text = table(&fleet(&reports, options()), &unreadable);
    assert!(text.contains("NOT REPORTS"), "{text}");
}
