//! The fleet view on a generated fleet whose truth is known, in every output (the JSON,
//! the CSV and the page checked number by number against it), hostile reports (CSV
//! quoting, HTML escaping), and a folder holding files that are not reports.

use super::view::fleet;
use super::*;
use crate::report::{Agent, Feature, License, Reboot, Refusal, Report};
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
        signed: None,
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
        configured: None,
        booted: None,
        dropped: None,
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
    recording.status = Some("inactive".into());
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
        vec![site.clone(), later, gone],
        vec![feature("vqmon", &site), recording],
    );
    three.configured = names(&["vqmon", "h323", "usb-call-recording"]);
    three.booted = names(&["vqmon", "usb-call-recording"]);
    three.clock = "windback".into();
    three.reboot = Some(Reboot {
        causes: vec!["license-expired".into()],
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
            all: 6,
            active: 2,
            expiring_shortly: 1,
            impending: 1,
            inactive: 2,
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
            ("0004f2000001", "booted-expired"),
            ("0004f2000001", "unknown-key"),
            ("0004f2000002", "feature-ends"),
            ("0004f2000002", "stale-report"),
            ("0004f2000003", "clock"),
            ("0004f2000003", "reboot-pending"),
        ]
    );
    assert!(
        f.attention[0]
            .detail
            .starts_with("usb-call-recording is configured"),
        "{:?}",
        f.attention[0]
    );
    assert!(f.attention[0].detail.contains(&time(NOW - 5 * DAY)));
    assert!(f.attention[1].detail.contains("99aabbcc"));
    assert!(f.attention[2].detail.starts_with("h323 ends"));
}

/// A report whose time cannot be read is never taken for a fresh one: it needs
/// attention, and a readable older report of the same phone is not replaced by it.
#[test]
fn a_report_whose_time_cannot_be_read_is_never_fresh() {
    let mut odd = report("0004f2000009", NOW, vec![], vec![]);
    odd.reported_at = "yesterday".into();
    let f = fleet(&[odd], options());
    let got: Vec<(&str, &str)> = f
        .attention
        .iter()
        .map(|a| (a.mac.as_str(), a.what.as_str()))
        .collect();
    assert_eq!(got, [("0004f2000009", "stale-report")]);
    assert!(
        f.attention[0].detail.contains("\"yesterday\""),
        "{:?}",
        f.attention[0]
    );

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
        fleet(std::slice::from_ref(r), options())
            .attention
            .into_iter()
            .filter(|a| a.what == "booted-expired")
            .map(|a| a.detail)
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
    for l in json["licenses"].as_array().unwrap() {
        for g in l["grants"].as_array().unwrap() {
            let limit = g["limit"].as_u64().unwrap();
            let kind = if limit > 0 {
                "Managed Device"
            } else {
                "not counted"
            };
            let row: Vec<String> = [
                &l["fingerprint"],
                &l["kind"],
                &l["serial"],
                &l["key"],
                &l["status"],
                &l["start"],
                &l["end"],
                &l["phones"],
                &g["name"],
                &g["description"],
                &serde_json::Value::from(kind),
                &g["transaction"],
                &g["start"],
                &g["end"],
                &g["status"],
                &g["in_use"],
                &g["limit"],
                &g["over_limit"],
            ]
            .into_iter()
            .map(text)
            .collect();
            expected.push(row);
        }
    }
    assert_eq!(expected.len(), 6, "one row per grant");
    assert_eq!(licenses[1..], expected);
    // The site license: 3 phones on a limit of 2, over it.
    let site = &licenses[1];
    assert_eq!(
        (site[7].as_str(), site[15].as_str(), site[16].as_str()),
        ("3", "3", "2")
    );
    assert_eq!(site[17], "true");

    let attention = parse_csv(&csv::csv(&f, &unreadable, csv::Table::Attention));
    assert_eq!(attention[0], ["mac", "what", "detail"]);
    let expected: Vec<Vec<String>> = json["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| vec![text(&a["mac"]), text(&a["what"]), text(&a["detail"])])
        .collect();
    assert_eq!(attention[1..], expected);

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
    .chain([
        json["attention"].as_array().unwrap().len().to_string(),
        "1".into(),
    ])
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
    let mut r = report("0004f2000009", NOW, vec![l.clone()], vec![]);
    let mut f = feature(feature_name, &l);
    f.enabled = true;
    r.features.push(f);
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: "a \"quoted\",\nsubject".into(),
        verdict: "malformed".into(),
        detail: "-1+1".into(),
        key: None,
    });
    let fl = fleet(&[r], options());
    let text = csv::csv(&fl, &[], csv::Table::Licenses);
    // The line break is a space (no control character leaves), the rest quoted.
    assert!(text.contains("\"1,2\"\"3  4\""), "{text:?}");
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 2, "{text:?}");
    assert_eq!(rows[1][2], plain(serial));
    assert_eq!(rows[1][8], format!("'{feature_name}"));
    assert_eq!((rows[1][15].as_str(), rows[1][16].as_str()), ("1", "5"));
    let attention = parse_csv(&csv::csv(&fl, &[], csv::Table::Attention));
    assert_eq!(attention.len(), 2);
    assert_eq!(attention[1][2], "a \"quoted\", subject: -1+1");
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

/// The page's counts and rows, number by number, against the JSON of the same fleet.
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
    let attention = json["attention"].as_array().unwrap();
    assert_eq!(by_id(&page, "attention-total"), attention.len().to_string());
    for kind in view::KINDS {
        let n = attention.iter().filter(|a| a["what"] == kind).count();
        assert_eq!(
            by_id(&page, &format!("attention-count-{kind}")),
            n.to_string()
        );
    }
    let data = island(&page);
    let rows = data["licenses"].as_array().unwrap();
    let mut n = 0;
    for l in json["licenses"].as_array().unwrap() {
        for g in l["grants"].as_array().unwrap() {
            let row = &rows[n];
            assert_eq!(row[0], l["fingerprint"]);
            assert_eq!(row[2], l["serial"]);
            assert_eq!(row[3], g["name"]);
            assert_eq!(row[4], g["limit"]);
            assert_eq!(row[5], g["in_use"]);
            assert_eq!(row[6] == 1, g["over_limit"] == true);
            assert_eq!(row[9], g["end"]);
            assert_eq!(row[10], g["status"]);
            n += 1;
        }
    }
    assert_eq!(n, rows.len());
    assert_eq!(by_id(&page, "license-total"), n.to_string());
    assert_eq!(data["attention"].as_array().unwrap().len(), attention.len());
    assert_eq!(data["descriptions"]["vqmon"], view::description("vqmon"));
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
    let serial = "</script><script>alert(2)</script>";
    let name = "<img src=x onerror=alert(3)>";
    let mut l = license("6", "phone", NOW - DAY, Some(NOW + 5 * DAY), &[(name, 1)]);
    l.serial = serial.into();
    let mut r = report(mac, NOW, vec![l.clone()], vec![feature(name, &l)]);
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: "<!-- \u{2028} & \"'".into(),
        verdict: "malformed".into(),
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
    let data = island(&page);
    assert_eq!(data["licenses"][0][2], serial);
    assert_eq!(data["licenses"][0][3], name);
    let details: Vec<&str> = data["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[2].as_str().unwrap())
        .collect();
    assert!(
        details.contains(&"<!-- \u{2028} & \"': <script src=//evil></script>"),
        "{details:?}"
    );
    assert!(data["attention"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a[0] == mac));
    assert_eq!(
        html::escape("<a href=\"x\">'&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

/// The page holds at most so many attention rows, and says how many it left out.
#[test]
fn the_page_caps_its_attention_rows_and_says_so() {
    let base = generated()[1].clone();
    let reports: Vec<Report> = (0..html::MAX_ATTENTION + 7)
        .map(|n| {
            let mut r = base.clone();
            r.mac = format!("0004f2{n:06x}");
            r.licenses.clear();
            r.features.clear();
            r.refusals.truncate(1);
            r
        })
        .collect();
    let f = fleet(&reports, options());
    assert_eq!(f.attention.len(), html::MAX_ATTENTION + 7);
    let page = html::page(&f, &[]);
    assert_eq!(by_id(&page, "attention-left-out"), "7");
    assert_eq!(
        by_id(&page, "attention-total"),
        (html::MAX_ATTENTION + 7).to_string()
    );
    assert_eq!(
        island(&page)["attention"].as_array().unwrap().len(),
        html::MAX_ATTENTION
    );
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
    assert!(run(args(&["--csv=phones"])).is_err());
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
    l.serial = format!("1000{hostile}\r\nforged line");
    let mut r = report(&format!("0004f2{hostile}"), NOW, vec![l], vec![]);
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: format!("subject{hostile}"),
        verdict: "malformed".into(),
        detail: format!("detail\u{9b}31m{hostile}"),
        key: None,
    });
    r.refusals.push(Refusal {
        at: time(NOW),
        subject: "\t=1+1".into(),
        verdict: "malformed".into(),
        detail: "x".into(),
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
    let attention = parse_csv(&csv::csv(&fl, &[], csv::Table::Attention));
    assert!(
        attention.iter().any(|row| row[2].starts_with("' =1+1")),
        "{attention:?}"
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
    let ends: Vec<&str> = fl
        .attention
        .iter()
        .filter(|a| a.what == "feature-ends")
        .map(|a| a.detail.as_str())
        .collect();
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
    let fingerprints: Vec<&str> = f.licenses.iter().map(|l| &l.fingerprint[..1]).collect();
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
            .licenses
            .iter()
            .map(|l| (&l.fingerprint[..1], l.phones))
            .collect();
        assert!(
            held.contains(&("1", 1)) && !held.contains(&("2", 1)),
            "{held:?}"
        );
    }
    // Alone, it is kept and flagged.
    let alone = report("0004f2000003", NOW + 2 * DAY, vec![], vec![]);
    let f = fleet(&[alone], options());
    let flagged: Vec<&str> = f
        .attention
        .iter()
        .filter(|a| a.what == "future-report")
        .map(|a| a.mac.as_str())
        .collect();
    assert_eq!(flagged, ["0004f2000003"]);
}
