//! The fleet view on a generated fleet whose truth is known, in every output (the JSON,
//! the CSV and the page checked number by number against it), hostile reports (CSV
//! quoting, HTML escaping), and a folder holding files that are not reports.

use super::view::fleet;
use super::*;
use crate::engine::clock::ClockVerdict;
use crate::engine::reboot::Cause;
use crate::engine::status::Status;
use crate::engine::{Role, Verdict};
use crate::format::Kind;
use crate::report::{Agent, Feature, License, Reboot, Refusal, Report};
use crate::status::{time, GrantJson, WaitingFor};

const DAY: i64 = 86_400;
const NOW: i64 = 1_790_000_000;

fn license(fp: &str, kind: &str, start: i64, end: Option<i64>, grants: &[(&str, u32)]) -> License {
    let end = end.map_or("never".to_string(), time);
    License {
        fingerprint: fp.repeat(64 / fp.len()),
        kind: Kind::from_id(kind).unwrap(),
        serial: "100000000001".into(),
        key: "1a2b3c4d".into(),
        role: Some(Role::Primary),
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
        signed: None,
    }
}

fn feature(name: &str, l: &License) -> Feature {
    Feature {
        name: name.into(),
        status: Some(Status::Active),
        enabled: true,
        end: l.end.clone(),
        source: Some(l.kind),
        serial: Some(l.serial.clone()),
        transaction: Some("new".into()),
        limit: None,
        fingerprint: Some(l.fingerprint.clone()),
    }
}

/// A report of the phone `mac`: its phone licenses bound to it, as an agent's are (a
/// phone license of another phone is not believed).
fn report(mac: &str, reported: i64, mut licenses: Vec<License>, features: Vec<Feature>) -> Report {
    for l in licenses.iter_mut().filter(|l| l.kind == Kind::Phone) {
        if l.serial == "100000000001" {
            l.serial = mac.into();
        }
    }
    Report {
        schema: SCHEMA.into(),
        mac: mac.into(),
        site_serial: Some("100000000001".into()),
        agent: Agent {
            version: "0.1.0".into(),
            board: "vvx-armv7".into(),
        },
        reported_at: time(reported),
        clock: ClockVerdict::Ok,
        evaluated_at: Some(time(reported)),
        licenses,
        features,
        refusals: vec![],
        set_aside: vec![],
        reboot: None,
        last_fetch: None,
        configured: None,
        booted: None,
        dropped: None,
        trust: None,
        config_set_aside: vec![],
    }
}

fn names(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|n| n.to_string()).collect())
}

/// Three phones share a site license counted for 2 devices (so it is over its limit);
/// each has a phone license: active, expiring in 10 days, impending; one phone also
/// holds an ended license; one reports late, one refused a stranger's license, one's
/// clock is wound back and waits for a reboot. A phone license for USB call recording
/// ended 5 days ago: phone one, configured for it, booted since without it (booted with
/// an expired license); phone three booted while it was in force and still runs with it
/// (so not that), and is configured for h323 whose license has not started (not that
/// either).
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
    let gone = license(
        "f",
        "phone",
        NOW - 200 * DAY,
        Some(NOW - 5 * DAY),
        &[("usb-call-recording", 0)],
    );
    let mut recording = feature("usb-call-recording", &gone);
    recording.enabled = false;
    recording.status = Some(Status::Inactive);
    let mut one = report(
        "0004f2000001",
        NOW - 3600,
        vec![site.clone(), long.clone(), gone.clone()],
        vec![
            feature("vqmon", &site),
            feature("lync", &long),
            recording.clone(),
        ],
    );
    one.configured = names(&["vqmon", "lync", "usb-call-recording"]);
    one.booted = names(&["vqmon", "lync"]);
    one.refusals.push(Refusal {
        at: time(NOW - 7200),
        subject: "0004f2000001-license.cfg".into(),
        verdict: Verdict::UnknownKey,
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
        vec![site.clone(), later, gone],
        vec![feature("vqmon", &site), recording],
    );
    three.configured = names(&["vqmon", "h323", "usb-call-recording"]);
    three.booted = names(&["vqmon", "usb-call-recording"]);
    three.clock = ClockVerdict::Windback;
    three.reboot = Some(Reboot {
        causes: vec![Cause::LicenseExpired],
        waiting_for: Some(WaitingFor::Idle),
        until: None,
        detail: None,
    });
    // An older report of phone one: the newer one counts.
    let old_one = report("0004f2000001", NOW - 90 * DAY, vec![], vec![]);
    vec![old_one, one, two, three]
}

fn options() -> Options {
    Options::at(NOW)
}

/// Each group: its kind and its phones.
fn groups(f: &model::Fleet) -> Vec<(&str, Vec<&str>)> {
    f.attention
        .iter()
        .map(|g| {
            (
                g.what.as_str(),
                g.phones.iter().map(|p| p.mac.as_str()).collect(),
            )
        })
        .collect()
}

/// Every phone item of the kind `what`: (mac, detail).
fn items<'f>(f: &'f model::Fleet, what: &str) -> Vec<(&'f str, &'f str)> {
    f.attention
        .iter()
        .filter(|g| g.what == what)
        .flat_map(|g| g.phones.iter().map(|p| (p.mac.as_str(), p.detail.as_str())))
        .collect()
}

#[test]
fn the_counts_are_counts_of_the_rows() {
    let f = fleet(&generated(), options());
    assert_eq!(f.phones, 3);
    assert_eq!(
        f.summary,
        model::Summary {
            all: 6,
            active: 2,
            expiring_shortly: 1,
            impending: 1,
            inactive: 2,
        }
    );
    let site = &f.rows[0];
    assert_eq!((site.kind, site.phones), (Kind::Site, 3));
    assert_eq!((site.in_use, site.capacity), (3, 2));
    assert!(site.over, "3 phones on a 2-device license");
    let long = f
        .rows
        .iter()
        .find(|r| r.feature == "lync" && r.end == "never")
        .unwrap();
    assert_eq!((long.in_use, long.over), (1, false));
    // Counts are rows: each status's count is the rows shown with it.
    for status in Status::ALL {
        assert_eq!(
            f.rows.iter().filter(|r| r.status == Some(*status)).count(),
            f.summary.of(*status),
            "{status}"
        );
    }
    assert_eq!(f.rows.len(), f.summary.all);
    assert!(!f.verified, "no keyring: the view says it is unverified");
}

#[test]
fn what_needs_attention() {
    let f = fleet(&generated(), options());
    let (one, two, three) = ("0004f2000001", "0004f2000002", "0004f2000003");
    assert_eq!(
        groups(&f),
        [
            ("feature-ends", vec![two]),
            ("over-capacity", vec![one, two, three]),
            ("feature-lost", vec![three]),
            ("booted-expired", vec![one]),
            ("unknown-key", vec![one]),
            ("stale-report", vec![two]),
            ("clock", vec![three]),
            ("reboot-pending", vec![three]),
        ]
    );
    let booted = items(&f, "booted-expired");
    assert!(
        booted[0].1.starts_with("usb-call-recording is configured"),
        "{booted:?}"
    );
    assert!(booted[0].1.contains(&time(NOW - 5 * DAY)));
    assert!(items(&f, "unknown-key")[0].1.contains("99aabbcc"));
    assert!(items(&f, "feature-ends")[0].1.starts_with("h323 ends"));
    assert!(
        f.attention[1]
            .detail
            .contains("3 devices in use of 2: over by 1"),
        "{:?}",
        f.attention[1]
    );
}

/// A report whose time cannot be read is never taken for a fresh one: it needs
/// attention, and a readable older report of the same phone is not replaced by it.
#[test]
fn a_report_whose_time_cannot_be_read_is_never_fresh() {
    let mut odd = report("0004f2000009", NOW, vec![], vec![]);
    odd.reported_at = "yesterday".into();
    let f = fleet(&[odd], options());
    assert_eq!(groups(&f), [("stale-report", vec!["0004f2000009"])]);
    let stale = items(&f, "stale-report");
    assert!(stale[0].1.contains("\"yesterday\""), "{stale:?}");

    // Beside a readable report of the same phone, in either order: the readable one.
    let fresh = report("0004f2000009", NOW - DAY, vec![], vec![]);
    let mut odd = report("0004f2000009", NOW, vec![], vec![]);
    odd.reported_at = "yesterday".into();
    for reports in [[fresh.clone(), odd.clone()], [odd, fresh]] {
        let f = fleet(&reports, options());
        assert_eq!(f.phones, 1);
        assert!(f.attention.is_empty(), "{:?}", f.attention);
    }
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
        (3, 0, 3)
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
    let (f, unreadable) = gather_folder(dir.path(), options()).unwrap();
    assert_eq!(f.phones, 1);
    let whys: Vec<&str> = unreadable.iter().map(|u| u.why.as_str()).collect();
    assert_eq!(whys.len(), 5, "{whys:?}");
    assert!(whys[0].starts_with("not JSON"), "{whys:?}");
    assert!(whys[1].contains("license-agent-report/2"), "{whys:?}");
    let text = table(&f, &unreadable);
    assert!(text.contains("NOT REPORTS"), "{text}");
}

/// The files of a folder and the same reports in memory make the same fleet, however
/// the work is split between cores: parts gathered apart and merged in any order.
#[test]
fn a_folder_gathers_the_same_whatever_the_split() {
    let reports = generated();
    let whole = fleet(&reports, options());
    // A folder holds one report per phone, named for it: the phones reported once.
    let once: Vec<Report> = reports
        .iter()
        .filter(|r| reports.iter().filter(|o| o.mac == r.mac).count() == 1)
        .cloned()
        .collect();
    assert!(once.len() > 1 && once.len() < reports.len());
    let dir = tempfile::tempdir().unwrap();
    for r in &once {
        let name = format!("{}-license-status.json", r.mac);
        std::fs::write(dir.path().join(name), serde_json::to_vec_pretty(r).unwrap()).unwrap();
    }
    let (from_folder, unreadable) = gather_folder(dir.path(), options()).unwrap();
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(from_folder, fleet(&once, options()));
    let bytes: Vec<Vec<u8>> = reports
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let slims: Vec<Slim<'_>> = bytes.iter().map(|b| parse(b).unwrap()).collect();
    for split in [[0, 2], [1, 3], [0, 3], [2, 3]] {
        for flip in [false, true] {
            let [mut a, mut b] = [Gather::new(options()), Gather::new(options())];
            for (n, slim) in slims.iter().enumerate() {
                let first = split.contains(&n) != flip;
                if first { &mut a } else { &mut b }.add(slim, n);
            }
            let mut all = Gather::new(options());
            all.merge(a);
            all.merge(b);
            assert_eq!(all.finish(), whole, "split {split:?}, flipped {flip}");
        }
    }
}

/// Booted with an expired license needs the configuration, the booted set and the
/// instant the phone judged at; a feature in the booted set, in force again, or never
/// licensed is not that.
#[test]
fn booted_with_an_expired_license_is_said_only_when_the_report_shows_it() {
    let booted_expired = |r: &Report| -> Vec<String> {
        let f = fleet(std::slice::from_ref(r), options());
        items(&f, "booted-expired")
            .into_iter()
            .map(|(_, d)| d.to_string())
            .collect()
    };
    let one = generated()[1].clone();
    assert_eq!(booted_expired(&one).len(), 1);
    let mut twice = one.clone();
    twice.configured = names(&["usb-call-recording", "vqmon", "usb-call-recording"]);
    assert_eq!(
        booted_expired(&twice).len(),
        1,
        "a feature configured twice"
    );
    let mut old_agent = one.clone();
    old_agent.configured = None;
    assert!(booted_expired(&old_agent).is_empty());
    let mut no_daemon = one.clone();
    no_daemon.booted = None;
    assert!(booted_expired(&no_daemon).is_empty());
    let mut unsynced = one.clone();
    unsynced.evaluated_at = None;
    assert!(booted_expired(&unsynced).is_empty());
    let mut still_running = one.clone();
    still_running.booted = names(&["vqmon", "lync", "usb-call-recording"]);
    assert!(booted_expired(&still_running).is_empty());
    let mut renewed = one.clone();
    let fresh = license(
        "9",
        "phone",
        NOW - DAY,
        Some(NOW + 300 * DAY),
        &[("usb-call-recording", 0)],
    );
    renewed.features[2] = feature("usb-call-recording", &fresh);
    renewed.licenses.push(fresh);
    assert!(booted_expired(&renewed).is_empty(), "in force again");
    // Judged when the phone judged: before the end, the license had not ended.
    let mut earlier = one.clone();
    earlier.evaluated_at = Some(time(NOW - 10 * DAY));
    assert!(booted_expired(&earlier).is_empty());
    let mut never_licensed = one;
    never_licensed.licenses.truncate(2);
    never_licensed.features.truncate(2);
    assert!(booted_expired(&never_licensed).is_empty());
}

/// RFC 4180 records, strictly: each ends in CRLF, a field with a comma, quote, CR or LF
/// is quoted, its quotes doubled; nothing else is accepted.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => (quoted, was_quoted) = (true, true),
            ',' => {
                record.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF: {text:?}");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                was_quoted = false;
            }
            c => {
                assert!(!matches!(c, '"' | '\n') && !was_quoted, "{c:?} in {text:?}");
                field.push(c);
            }
        }
    }
    assert!(field.is_empty() && record.is_empty() && !quoted, "{text:?}");
    records
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every CSV table, cell by cell, against the JSON of the same fleet.
#[test]
fn the_csv_says_what_the_json_says() {
    let f = fleet(&generated(), options());
    let json = serde_json::to_value(&f).unwrap();
    let unreadable = [Unreadable {
        file: "x-license-status.json".into(),
        why: "not JSON".into(),
    }];
    let licenses = parse_csv(&csv::csv(&f, &unreadable, csv::Table::Licenses));
    assert_eq!(licenses[0], csv::LICENSE_COLUMNS);
    let mut expected = vec![];
    let or_empty = |v: &serde_json::Value| if v.is_null() { String::new() } else { text(v) };
    for r in json["rows"].as_array().unwrap() {
        let row: Vec<String> = [
            "id",
            "kind",
            "feature",
            "description",
            "type",
            "transaction",
            "start",
            "end",
            "days_left",
            "status",
            "term_status",
            "renewed_until",
            "renewal_fetched",
            "renewal_phones",
            "adds_to",
            "limit",
            "capacity",
            "in_use",
            "over",
            "phones",
            "verified",
        ]
        .iter()
        .map(|k| or_empty(&r[*k]))
        .chain([r["licenses"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(" ")])
        .collect();
        expected.push(row);
    }
    assert_eq!(expected.len(), 6, "one row per grant");
    assert_eq!(licenses[1..], expected);
    // The site license: 3 phones on a limit of 2, over it.
    let site = &licenses[1];
    let col = |name: &str| {
        csv::LICENSE_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap()
    };
    let cells = ["in_use", "capacity", "over", "phones"].map(|c| site[col(c)].as_str());
    assert_eq!(cells, ["3", "2", "true", "3"]);

    let attention = parse_csv(&csv::csv(&f, &unreadable, csv::Table::Attention));
    assert_eq!(attention[0], ["what", "subject", "phones", "detail"]);
    let groups = json["attention"].as_array().unwrap();
    let expected: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                text(&g["what"]),
                text(&g["subject"]),
                g["phones"].as_array().unwrap().len().to_string(),
                text(&g["detail"]),
            ]
        })
        .collect();
    assert_eq!(attention[1..], expected);
    let phones = parse_csv(&csv::csv(&f, &unreadable, csv::Table::Phones));
    assert_eq!(phones[0], ["what", "subject", "mac", "detail"]);
    let expected: Vec<Vec<String>> = groups
        .iter()
        .flat_map(|g| {
            g["phones"].as_array().unwrap().iter().map(move |p| {
                vec![
                    text(&g["what"]),
                    text(&g["subject"]),
                    text(&p["mac"]),
                    text(&p["detail"]),
                ]
            })
        })
        .collect();
    assert_eq!(phones[1..], expected);
    let sites = parse_csv(&csv::csv(&f, &unreadable, csv::Table::Sites));
    assert_eq!(sites.len(), 2, "{sites:?}");
    assert_eq!(sites[1][0], "100000000001");
    assert_eq!(sites[1][1], "3", "three phones hold the site license");

    let summary = parse_csv(&csv::csv(&f, &unreadable, csv::Table::Summary));
    let s = &json["summary"];
    let want: Vec<String> = [
        &json["at"],
        &json["phones"],
        &s["all"],
        &s["active"],
        &s["expiring_shortly"],
        &s["impending"],
        &s["inactive"],
    ]
    .into_iter()
    .map(text)
    .chain([f.attention_items().to_string(), "1".into()])
    .collect();
    assert_eq!(summary, [summary[0].clone(), want]);
    assert_eq!(
        parse_csv(&csv::csv(&f, &unreadable, csv::Table::Unreadable))[1],
        ["x-license-status.json", "not JSON"]
    );
}

/// A report from the field with commas, quotes, line ends and a formula in its texts:
/// each comes back whole from the CSV (a formula defused with a leading `'`).
#[test]
fn the_csv_quotes_hostile_text() {
    let serial = "1,2\"3\r\n4";
    let feature_name = "=HYPERLINK(\"http://x\",\"y\")";
    let mut l = license("7", "phone", NOW - DAY, None, &[(feature_name, 5)]);
    l.serial = serial.into();
    let mut r = report(serial, NOW, vec![l.clone()], vec![]);
    let mut f = feature(feature_name, &l);
    f.enabled = true;
    r.features.push(f);
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: "a \"quoted\",\nsubject".into(),
        verdict: Verdict::Malformed,
        detail: "-1+1".into(),
        key: None,
    });
    let fl = fleet(&[r], options());
    let text = csv::csv(&fl, &[], csv::Table::Licenses);
    // The line break is a space (no control character leaves), the rest quoted.
    assert!(text.contains("\"1,2\"\"3  4\""), "{text:?}");
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 2, "{text:?}");
    assert_eq!(rows[1][0], plain(serial));
    assert_eq!(rows[1][2], format!("'{feature_name}"));
    let col = |name: &str| {
        csv::LICENSE_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap()
    };
    assert_eq!(
        (
            rows[1][col("in_use")].as_str(),
            rows[1][col("limit")].as_str()
        ),
        ("1", "5")
    );
    let phones = parse_csv(&csv::csv(&fl, &[], csv::Table::Phones));
    assert_eq!(phones.len(), 2);
    assert_eq!(phones[1][3], "a \"quoted\", subject: -1+1");
}

/// The text between `id="ID">` and the next `<`.
fn by_id<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id}"))
        + id.len()
        + 6;
    let len = page[start..].find('<').unwrap();
    &page[start..start + len]
}

/// The JSON island of a page.
fn island(page: &str) -> serde_json::Value {
    let open = "<script id=\"fleet-data\" type=\"application/json\">";
    let start = page.find(open).unwrap() + open.len();
    let len = page[start..].find("</script>").unwrap();
    serde_json::from_str(&page[start..start + len]).unwrap()
}

/// The page's counts, rows, sites and groups, number by number, against the JSON of
/// the same fleet.
#[test]
fn the_page_says_what_the_json_says() {
    let f = fleet(&generated(), options());
    let json = serde_json::to_value(&f).unwrap();
    let page = html::page(&f, &[]);
    assert_eq!(by_id(&page, "phones"), json["phones"].to_string());
    for (id, key) in [
        ("all", "all"),
        ("active", "active"),
        ("expiring-shortly", "expiring_shortly"),
        ("impending", "impending"),
        ("inactive", "inactive"),
    ] {
        assert_eq!(
            by_id(&page, &format!("count-{id}")),
            json["summary"][key].to_string(),
            "{id}"
        );
    }
    // Not verified (no keyring): the banner says so.
    assert!(page.contains(
        "<p id=\"verification\" class=\"banner\" data-verified=\"0\">Licenses not verified (run with --keyring)"
    ));
    // The rows, field by field, in the data's order.
    let data = island(&page);
    assert_eq!(data["verified"], false);
    let rows = data["rows"].as_array().unwrap();
    let want = json["rows"].as_array().unwrap();
    assert!(!want.is_empty());
    assert_eq!(rows.len(), want.len());
    assert_eq!(by_id(&page, "license-total"), want.len().to_string());
    for (row, r) in rows.iter().zip(want) {
        assert_eq!(row[0], r["id"]);
        assert_eq!(row[1], r["kind"]);
        assert_eq!(row[2], r["feature"]);
        let description = row[3].as_u64().unwrap() as usize;
        assert_eq!(data["descriptions"][description], r["description"]);
        assert_eq!(row[4] == 1, r["type"] == "managed-device");
        assert_eq!(row[5], r["transaction"]);
        assert_eq!(row[6], r["start"]);
        assert_eq!(row[7], r["end"]);
        assert_eq!(row[8], r["days_left"]);
        assert_eq!(row[9], r["status"]);
        assert_eq!(row[10], r["renewed_until"]);
        assert_eq!(row[11], r["renewal_fetched"]);
        assert_eq!(row[12], r["adds_to"]);
        assert_eq!(row[13], r["limit"]);
        assert_eq!(row[14], r["capacity"]);
        assert_eq!(row[15], r["in_use"]);
        assert_eq!(row[16] == 1, r["over"] == true);
        assert_eq!(row[17], r["phones"]);
        assert_eq!(row[18], r["licenses"][0]);
        assert_eq!(row[19] == 1, r["verified"] == true);
        assert_eq!(row[20], r["renewal_phones"]);
    }
    // The per-site totals, written in the page.
    let sites = json["sites"].as_array().unwrap();
    assert!(!sites.is_empty());
    for site in sites {
        let serial = site["serial"].as_str().unwrap();
        let tr = page
            .split(&format!(
                "<tr id=\"site-{serial}\" data-serial=\"{serial}\">"
            ))
            .nth(1)
            .unwrap_or_else(|| panic!("no #site-{serial}"));
        let cell = |col: &str| {
            let text = tr.split(&format!("data-col=\"{col}\"")).nth(1).unwrap();
            let text = &text[text.find('>').unwrap() + 1..];
            text[..text.find('<').unwrap()].to_string()
        };
        assert_eq!(cell("phones"), site["phones"].to_string());
        assert_eq!(cell("licenses"), site["rows"]["all"].to_string());
        assert_eq!(cell("active"), site["rows"]["active"].to_string());
        assert_eq!(
            cell("expiring-shortly"),
            site["rows"]["expiring_shortly"].to_string()
        );
        assert_eq!(cell("impending"), site["rows"]["impending"].to_string());
        assert_eq!(cell("inactive"), site["rows"]["inactive"].to_string());
        assert!(cell("devices").starts_with(&format!("{} of {}", site["in_use"], site["capacity"])));
    }
    // The groups, in order, each with its count and (uncapped here) every phone.
    let attention = json["attention"].as_array().unwrap();
    assert!(!attention.is_empty());
    let groups = data["groups"].as_array().unwrap();
    assert_eq!(groups.len(), attention.len());
    assert_eq!(
        by_id(&page, "attention-group-total"),
        attention.len().to_string()
    );
    let items = f.attention_items();
    assert_eq!(by_id(&page, "attention-total"), items.to_string());
    assert_eq!(by_id(&page, "attention-in-page"), items.to_string());
    assert_eq!(by_id(&page, "attention-left-out"), "0");
    for (group, g) in groups.iter().zip(attention) {
        assert_eq!(group[0], g["what"]);
        assert_eq!(group[1], g["detail"]);
        let phones = g["phones"].as_array().unwrap();
        assert_eq!(group[2], phones.len());
        let listed: Vec<(&serde_json::Value, &serde_json::Value)> = group[3]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (&p[0], &p[1]))
            .collect();
        let want: Vec<(&serde_json::Value, &serde_json::Value)> =
            phones.iter().map(|p| (&p["mac"], &p["detail"])).collect();
        assert_eq!(listed, want);
    }
    for kind in model::KINDS {
        let of_kind = attention.iter().filter(|g| g["what"] == kind);
        let (n, phones) = of_kind.fold((0, 0), |(n, p), g| {
            (n + 1, p + g["phones"].as_array().unwrap().len())
        });
        assert_eq!(
            by_id(&page, &format!("attention-groups-{kind}")),
            n.to_string()
        );
        assert_eq!(
            by_id(&page, &format!("attention-count-{kind}")),
            phones.to_string()
        );
    }
    // Nothing outside: no URL the page would fetch.
    for outside in ["http://", "https://", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(outside), "{outside}");
    }
}

/// A report whose texts are markup and script, and a file name that is too: none of it
/// becomes markup in the page, all of it comes back as text from the data.
#[test]
fn a_hostile_report_cannot_put_markup_in_the_page() {
    let mac = "<script>alert(1)</script>";
    let serial = mac;
    let name = "<img src=x onerror=alert(3)>";
    let site = "\"><script>alert(5)</script>";
    let mut l = license("6", "phone", NOW - DAY, Some(NOW + 5 * DAY), &[(name, 1)]);
    l.serial = serial.into();
    let mut s = license(
        "8",
        "site",
        NOW - DAY,
        Some(NOW + 50 * DAY),
        &[("vqmon", 5)],
    );
    s.serial = site.into();
    let mut r = report(mac, NOW, vec![l.clone(), s], vec![feature(name, &l)]);
    r.site_serial = None;
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: "<!-- \u{2028} & \"'".into(),
        verdict: Verdict::Malformed,
        detail: "<script src=//evil></script>".into(),
        key: None,
    });
    let f = fleet(&[r], options());
    let unreadable = [Unreadable {
        file: "<script>alert(4)</script>-license-status.json".into(),
        why: "not JSON: <b>".into(),
    }];
    let page = html::page(&f, &unreadable);
    // The page's own two scripts, and nothing else that opens or closes one.
    assert_eq!(page.matches("<script").count(), 2, "{page}");
    assert_eq!(page.matches("</script").count(), 2);
    for markup in ["<img", "<!--", "<b>", "\u{2028}"] {
        assert!(!page.contains(markup), "{markup:?} in the page");
    }
    assert!(page.contains("&lt;script&gt;alert(4)&lt;/script&gt;"));
    // The site serial, written server-side (its option, its totals' row): escaped.
    let escaped = html::escape(site);
    assert!(page.contains(&format!("<option value=\"{escaped}\">{escaped}</option>")));
    assert!(page.contains(&format!(
        "<tr id=\"site-{escaped}\" data-serial=\"{escaped}\">"
    )));
    let data = island(&page);
    let rows = data["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r[0] == serial && r[2] == name),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r[0] == site && r[1] == "site"));
    let groups = data["groups"].as_array().unwrap();
    let details: Vec<&str> = groups
        .iter()
        .flat_map(|g| g[3].as_array().unwrap())
        .map(|p| p[1].as_str().unwrap())
        .collect();
    assert!(
        details.contains(&"<!-- \u{2028} & \"': <script src=//evil></script>"),
        "{details:?}"
    );
    assert!(groups
        .iter()
        .flat_map(|g| g[3].as_array().unwrap())
        .all(|p| p[0] == mac));
    assert_eq!(
        html::escape("<a href=\"x\">'&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

/// The page lists at most so many phones a group and in all, and says how many it left
/// out; the counts cover them all.
#[test]
fn the_page_caps_its_attention_rows_and_says_so() {
    // Groups of one more phone than a group lists, enough of them to pass the cap in all.
    let per = html::MAX_GROUP_PHONES + 1;
    let kinds = html::MAX_ATTENTION_PHONES / html::MAX_GROUP_PHONES + 2;
    let reports: Vec<Report> = (0..per * kinds)
        .map(|n| {
            let mut r = report(&format!("0004f2{n:06x}"), NOW, vec![], vec![]);
            r.refusals.push(Refusal {
                at: time(NOW),
                subject: "x".into(),
                verdict: Verdict::UnknownKey,
                detail: "unknown-key: x".into(),
                // A group per key.
                key: Some(format!("{:08X}", n % kinds)),
            });
            r
        })
        .collect();
    let f = fleet(&reports, options());
    assert_eq!(f.attention.len(), kinds);
    assert!(f.attention.iter().all(|g| g.phones.len() == per));
    let total = per * kinds;
    assert_eq!(f.attention_items(), total);
    let page = html::page(&f, &[]);
    assert_eq!(by_id(&page, "attention-total"), total.to_string());
    assert_eq!(by_id(&page, "attention-group-total"), kinds.to_string());
    assert_eq!(
        by_id(&page, "attention-in-page"),
        html::MAX_ATTENTION_PHONES.to_string()
    );
    assert_eq!(
        by_id(&page, "attention-left-out"),
        (total - html::MAX_ATTENTION_PHONES).to_string()
    );
    assert_eq!(
        by_id(&page, "attention-groups-unknown-key"),
        kinds.to_string()
    );
    assert_eq!(
        by_id(&page, "attention-count-unknown-key"),
        total.to_string()
    );
    // Every group is in the page with its count; the phones listed stop at the caps.
    let groups = island(&page)["groups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), kinds);
    let mut listed = 0;
    for g in &groups {
        assert_eq!(g[2], per);
        let n = g[3].as_array().unwrap().len();
        assert_eq!(
            n,
            html::MAX_GROUP_PHONES.min(html::MAX_ATTENTION_PHONES - listed)
        );
        listed += n;
    }
    assert_eq!(listed, html::MAX_ATTENTION_PHONES);
}

/// The command line: --html writes the page (and says so), --json and --csv are one or
/// the other, --csv names a table.
#[test]
fn the_command_line_writes_the_page_and_takes_one_output() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("uploads");
    std::fs::create_dir(&reports).unwrap();
    for r in &generated()[1..] {
        let name = format!("{}-license-status.json", r.mac);
        std::fs::write(reports.join(name), serde_json::to_vec(r).unwrap()).unwrap();
    }
    let page = dir.path().join("fleet.html");
    let args = |list: &[&str]| -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["--at".into(), NOW.to_string().into()];
        v.extend(list.iter().map(OsString::from));
        v.push(reports.clone().into_os_string());
        v
    };
    let out = run(args(&["--html", page.to_str().unwrap()])).unwrap();
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("wrote "), "{}", out.stdout);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(by_id(&html, "count-all"), "6");
    let out = run(args(&["--csv=summary", "--html", page.to_str().unwrap()])).unwrap();
    assert_eq!(parse_csv(&out.stdout)[1][2], "6");
    assert!(run(args(&["--csv", "--json"])).is_err());
    assert!(run(args(&["--csv=devices"])).is_err());
    assert!(run(args(&["--keyring", "/nonexistent-keyring"])).is_err());
    let out = run(args(&["--csv"])).unwrap();
    assert_eq!(parse_csv(&out.stdout)[0], csv::LICENSE_COLUMNS);
    // A page that cannot be written: exit 1, nothing half written.
    let out = run(args(&["--html", "/nonexistent-dir/fleet.html"])).unwrap();
    assert_eq!(out.code, 1);
}

/// Issue 25, finding 6: escape sequences in a report (a MAC, a serial, a refusal's text)
/// never reach a terminal or a spreadsheet raw: every text the table and the CSV write
/// is stripped of control characters (a line break inside a field included: it would
/// forge a line of the table).
#[test]
fn no_control_character_from_a_report_reaches_the_table_or_the_csv() {
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J";
    let mut l = license("7", "phone", NOW - DAY, None, &[("vqmon", 5)]);
    let mac = format!("0004f2{hostile}\r\nforged line");
    l.serial = mac.clone();
    let mut r = report(&mac, NOW, vec![l], vec![]);
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: format!("subject{hostile}"),
        verdict: Verdict::Malformed,
        detail: format!("detail\u{9b}31m{hostile}"),
        key: None,
    });
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: "\t=1+1".into(),
        verdict: Verdict::BadSignature,
        detail: "bad-signature: x".into(),
        key: None,
    });
    let fl = fleet(&[r], options());
    let unreadable = [Unreadable {
        file: format!("dir/x{hostile}-license-status.json"),
        why: format!("not JSON{hostile}"),
    }];
    let text = table(&fl, &unreadable);
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(raw.is_empty(), "{raw:?} in {text:?}");
    assert!(!text.contains("\nforged line"), "{text}");
    for which in [
        csv::Table::Licenses,
        csv::Table::Attention,
        csv::Table::Phones,
        csv::Table::Unreadable,
    ] {
        let out = csv::csv(&fl, &unreadable, which);
        let fields: Vec<String> = parse_csv(&out).into_iter().flatten().collect();
        let raw: Vec<&String> = fields
            .iter()
            .filter(|f| f.chars().any(char::is_control))
            .collect();
        assert!(raw.is_empty(), "{raw:?} in {out:?}");
    }
    // A formula behind a control character is still defused.
    let phones = parse_csv(&csv::csv(&fl, &[], csv::Table::Phones));
    assert!(
        phones.iter().any(|row| row[3].starts_with("' =1+1")),
        "{phones:?}"
    );
}

/// Issue 25, finding 6: a report whose file name is not UTF-8 is read like any other,
/// and listed: every unreadable file, whatever its name (it cannot be named for the
/// phone it describes, a MAC being hex digits).
#[test]
fn a_report_whose_name_is_not_utf8_is_read_or_listed() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = |bytes: &[u8]| dir.path().join(std::ffi::OsStr::from_bytes(bytes));
    let good = serde_json::to_vec(&generated()[1]).unwrap();
    std::fs::write(name(b"0004f2\xff00001-license-status.json"), good).unwrap();
    std::fs::write(name(b"0004f2\xfe00002-license-status.json"), b"{not json").unwrap();
    let (f, unreadable) = gather_folder(dir.path(), options()).unwrap();
    assert_eq!(f.phones, 0);
    let listed: Vec<(&str, &str)> = unreadable
        .iter()
        .map(|u| (u.file.as_str(), u.why.as_str()))
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed[0].0.contains("0004f2\u{fffd}00002"), "{listed:?}");
    assert!(listed[0].1.starts_with("not JSON"), "{listed:?}");
    assert!(listed[1].0.contains("0004f2\u{fffd}00001"), "{listed:?}");
    assert!(
        listed[1].1.contains("not named for the phone"),
        "{listed:?}"
    );
}

/// Issue 25, finding 7: the days left are counted one way everywhere, the agent's
/// (`license-agent status`: a day begun counts), not floored here.
#[test]
fn days_left_are_the_agents() {
    let end = NOW + 24 * DAY + 3_600;
    let l = license("7", "phone", NOW - DAY, Some(end), &[("vqmon", 5)]);
    let mut f = feature("vqmon", &l);
    f.enabled = true;
    let r = report("0004f2000009", NOW, vec![l], vec![f]);
    let fl = fleet(&[r], options());
    let agents = crate::status::days_left(crate::format::End::At(end as u32), NOW).unwrap();
    assert_eq!(agents, 25);
    let ends: Vec<&str> = items(&fl, "feature-ends")
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(fl.rows[0].days_left, Some(25));
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(ends[0].ends_with("(25 days)"), "{ends:?}");
}

/// Issue 25, finding 6: a report must be named for the MAC it carries. One under
/// another phone's name (or any other name) is listed as such and not believed: it
/// never replaces the phone's real report, whatever its date.
#[test]
fn a_report_named_for_another_phone_is_listed_and_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let real = report(
        "0004f2000001",
        NOW - DAY,
        vec![license("1", "phone", NOW - DAY, None, &[("vqmon", 0)])],
        vec![],
    );
    let impostor = report(
        "0004f2000001",
        NOW,
        vec![license("2", "phone", NOW - DAY, None, &[("lync", 0)])],
        vec![],
    );
    let write = |name: &str, r: &Report| {
        std::fs::write(dir.path().join(name), serde_json::to_vec(r).unwrap()).unwrap()
    };
    write("0004f2000001-license-status.json", &real);
    write("0004f2000002-license-status.json", &impostor);
    write("x-license-status.json", &impostor);
    let (f, unreadable) = gather_folder(dir.path(), options()).unwrap();
    assert_eq!(f.phones, 1);
    let fingerprints: Vec<&str> = f.rows.iter().map(|l| &l.licenses[0][..1]).collect();
    assert_eq!(fingerprints, ["1"]);
    let whys: Vec<&str> = unreadable.iter().map(|u| u.why.as_str()).collect();
    assert_eq!(whys.len(), 2, "{whys:?}");
    assert!(
        whys.iter()
            .all(|w| w.contains("carries the MAC 0004f2000001")),
        "{whys:?}"
    );
}

/// Issue 25, finding 6: a report from the future (its clock ahead of the fleet's instant
/// by more than a day) is flagged, and never preferred to a report of that phone from
/// the present.
#[test]
fn a_report_from_the_future_is_flagged_and_never_preferred() {
    let now = report(
        "0004f2000001",
        NOW - DAY,
        vec![license("1", "phone", NOW - DAY, None, &[("vqmon", 0)])],
        vec![],
    );
    let later = report(
        "0004f2000001",
        NOW + 2 * DAY,
        vec![license("2", "phone", NOW - DAY, None, &[("lync", 0)])],
        vec![],
    );
    for reports in [vec![now.clone(), later.clone()], vec![later, now]] {
        let f = fleet(&reports, options());
        assert_eq!(f.phones, 1);
        let held: Vec<(&str, usize)> = f
            .rows
            .iter()
            .map(|l| (&l.licenses[0][..1], l.phones))
            .collect();
        assert!(
            held.contains(&("1", 1)) && !held.contains(&("2", 1)),
            "{held:?}"
        );
    }
    // Alone, it is kept and flagged.
    let alone = report("0004f2000003", NOW + 2 * DAY, vec![], vec![]);
    let f = fleet(&[alone], options());
    let flagged: Vec<&str> = items(&f, "future-report")
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(flagged, ["0004f2000003"]);
}

/// A phone kept from its updates (its trust expired), one that refused the document
/// posted for its next version, and one with a license set aside by an update: each a
/// group of what to do; a phone whose last update was taken is none.
#[test]
fn trust_updates_that_need_the_provider_are_groups_to_act_on() {
    use crate::status::{TrustJson, TrustJudgedJson, TrustSetAsideJson};
    let trust = |version: u32, expired: bool, verdict: &str, aside: bool| TrustJson {
        version,
        firmware_version: 0,
        roots: 3,
        root_threshold: 2,
        license_keys: vec!["0A1B2C3D".into()],
        expires: if expired {
            time(NOW - DAY)
        } else {
            "never".into()
        },
        expired,
        updates: "possible".into(),
        notes: Vec::new(),
        last_update: Some(TrustJudgedJson {
            version: version + 1,
            verdict: verdict.into(),
            detail: format!("{verdict}: the detail"),
            at: time(NOW - 600),
        }),
        set_aside: if aside {
            vec![TrustSetAsideJson {
                at: time(NOW - 600),
                license: "site license 100000000001".into(),
                key: "99AABBCC".into(),
                version,
                reason: format!("key 99AABBCC removed by trust version {version}"),
                file: None,
            }]
        } else {
            Vec::new()
        },
    };
    let macs = [
        "0004f2000011",
        "0004f2000012",
        "0004f2000013",
        "0004f2000014",
    ];
    let given = [
        trust(1, true, "taken", false),
        trust(2, false, "below the old threshold", false),
        trust(2, false, "taken", true),
        trust(2, false, "taken", false),
    ];
    let reports: Vec<Report> = macs
        .iter()
        .zip(given)
        .map(|(mac, t)| {
            let mut r = report(mac, NOW - 600, Vec::new(), Vec::new());
            r.trust = Some(t);
            r
        })
        .collect();
    let f = fleet(&reports, options());
    let of = |what| -> Vec<&str> { items(&f, what).iter().map(|(m, _)| *m).collect() };
    assert_eq!(of("trust-expired"), [macs[0]]);
    assert_eq!(of("trust-refused"), [macs[1]]);
    assert_eq!(of("trust-set-aside"), [macs[2]]);
    assert!(items(&f, "trust-expired")[0].1.contains("expired at"));
    let refused = f
        .attention
        .iter()
        .find(|g| g.what == "trust-refused")
        .unwrap();
    assert_eq!(refused.subject, "trust-3.cfg: below the old threshold");
    let aside = f
        .attention
        .iter()
        .find(|g| g.what == "trust-set-aside")
        .unwrap();
    assert_eq!(
        aside.subject,
        "licenses of key 99AABBCC removed by trust version 2"
    );
}

/// Phones that set a bad configuration value aside are grouped by the key, each with
/// its own words; a report claiming more values than an agent reports counts no more.
#[test]
fn phones_with_a_configuration_value_set_aside_are_grouped_by_key() {
    use crate::status::ConfigSetAsideJson;
    let aside = |key: &str, n: usize| ConfigSetAsideJson {
        key: key.into(),
        detail: format!("/etc/license-agent/agent.toml: {key}: line {n}: bad; set aside"),
    };
    let macs = ["0004f2000001", "0004f2000002", "0004f2000003"];
    let mut reports: Vec<Report> = macs
        .iter()
        .map(|mac| report(mac, NOW - 600, Vec::new(), Vec::new()))
        .collect();
    reports[0].config_set_aside = vec![aside("reboot.windows", 11)];
    reports[1].config_set_aside = vec![aside("reboot.windows", 12), aside("server", 4)];
    reports[2].config_set_aside = (0..100).map(|n| aside(&format!("k{n}"), n)).collect();
    let f = fleet(&reports, options());
    let groups: Vec<&model::Group> = f
        .attention
        .iter()
        .filter(|g| g.what == "config-set-aside")
        .collect();
    let windows = groups
        .iter()
        .find(|g| g.subject == "configuration key reboot.windows")
        .expect("a group for reboot.windows");
    let phones: Vec<(&str, &str)> = windows
        .phones
        .iter()
        .map(|p| (p.mac.as_str(), p.detail.as_str()))
        .collect();
    assert_eq!(phones.len(), 2, "{phones:?}");
    assert!(phones
        .iter()
        .any(|(m, d)| *m == macs[1] && d.contains("line 12")));
    assert_eq!(
        groups
            .iter()
            .filter(|g| g.phones.iter().any(|p| p.mac == macs[2]))
            .count(),
        crate::report::MAX_CONFIG_SET_ASIDE
    );
    assert!(
        windows.detail.contains("mend their configuration"),
        "{}",
        windows.detail
    );
}
