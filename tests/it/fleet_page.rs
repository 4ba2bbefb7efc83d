//! The fleet page in a real browser: `license-fleet --html` over a generated folder of
//! reports (`examples/fleet_gen/generate.rs`, with a hostile report and a file that is
//! not a report beside them), opened in headless Chromium (Debian's `chromium`, which
//! `scripts/setup-cross.sh` installs). The DOM Chromium renders shows the numbers of
//! `--json` (the counts, the table's rows, the attention rows); the page's script
//! filters and sorts from the URL fragment (`#status=expiring-shortly&sort=end&dir=desc`,
//! `#q=…`, `#what=…`) and from clicks and typing (a page beside it drives it in a
//! frame), checked in the DOM dumped after it ran; the hostile report's
//! markup and script stay text. A screenshot of the page is kept as a test artifact:
//! `target/test-artifacts/fleet-page.png`.

use crate::common;
use crate::fleet_gen as generate;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run;
use serde_json::{json, Value};

const NOW: i64 = 1_790_000_000;
const PHONES: usize = 400;

/// Runs headless Chromium on `url` with `args` (its own profile), within a minute;
/// returns its standard output.
pub(crate) fn chromium(profile: &Path, args: &[String], url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (scripts/setup-cross.sh installs Debian's chromium)");
    // Read the output on threads: a big DOM would fill the pipe before Chromium exits.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap().unwrap(), err.join().unwrap().unwrap());
    assert!(status.success(), "chromium {url}: {status}\n{err}");
    out
}

/// The DOM of the page at `fragment`, once its script has run.
pub(crate) fn dom(profile: &Path, page: &Path, fragment: &str) -> String {
    let url = format!("file://{}{fragment}", page.display());
    let dom = chromium(profile, &["--dump-dom".into()], &url);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not run at {fragment}"
    );
    dom
}

/// The text of the element `id` (up to its first child or end tag).
pub(crate) fn by_id(dom: &str, id: &str) -> String {
    let key = format!("id=\"{id}\"");
    let start = dom.find(&key).unwrap_or_else(|| panic!("no #{id}"));
    let open_end = start + dom[start..].find('>').unwrap() + 1;
    let len = dom[open_end..].find('<').unwrap();
    dom[open_end..open_end + len].to_string()
}

pub(crate) fn number(dom: &str, id: &str) -> u64 {
    by_id(dom, id)
        .parse()
        .unwrap_or_else(|_| panic!("#{id}: {:?}", by_id(dom, id)))
}

/// `text` as serialized by the browser, read back.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the start tag that `tag` opens (up to its first
/// cell or child element: a value may hold a `>`).
fn attr(tag: &str, name: &str) -> Option<String> {
    let open = &tag[..["<td", "<summary"]
        .iter()
        .filter_map(|t| tag.find(t))
        .min()
        .unwrap_or(tag.len())];
    let key = format!(" {name}=\"");
    let start = open.find(&key)? + key.len();
    let len = open[start..].find('"')?;
    Some(unescape(&open[start..start + len]))
}

/// The text of the cell `col` of a row (up to its first tag).
fn col(row: &str, col: &str) -> String {
    let cell = row
        .split(&format!("data-col=\"{col}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {col} in {row}"));
    let text = &cell[cell.find('>').unwrap() + 1..];
    unescape(&text[..text.find('<').unwrap()])
}

/// A license row the page shows.
#[derive(Debug)]
pub(crate) struct Shown {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) feature: String,
    pub(crate) transaction: String,
    pub(crate) status: String,
    pub(crate) class: String,
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) devices: String,
    pub(crate) status_text: String,
}

/// The license rows the page shows, in order.
pub(crate) fn rows(dom: &str) -> Vec<Shown> {
    let body = dom
        .split("id=\"license-rows\">")
        .nth(1)
        .expect("the license table");
    let body = &body[..body.find("</tbody>").unwrap()];
    body.split("<tr ")
        .skip(1)
        .map(|row| {
            let row = format!(" {row}");
            let a = |name: &str| attr(&row, name).unwrap_or_else(|| panic!("no {name}: {row}"));
            let status_cell = row.split("data-col=\"status\"").nth(1).unwrap();
            Shown {
                id: a("data-id"),
                kind: a("data-kind"),
                feature: a("data-feature"),
                transaction: a("data-transaction"),
                status: a("data-status"),
                class: attr(&row, "class").unwrap_or_default(),
                start: col(&row, "start"),
                end: col(&row, "end"),
                devices: col(&row, "devices"),
                status_text: status_cell[1..status_cell.find("</td>").unwrap()].to_string(),
            }
        })
        .collect()
}

/// The groups the page shows: (what, count, phones listed).
pub(crate) fn groups(dom: &str) -> Vec<(String, u64, usize)> {
    let body = dom
        .split("id=\"attention-groups\">")
        .nth(1)
        .expect("the groups");
    body.split("<details ")
        .skip(1)
        .map(|g| {
            let g = format!(" {g}");
            let g = &g[..g.find("</details>").unwrap()];
            (
                attr(g, "data-what").unwrap(),
                attr(g, "data-count").unwrap().parse().unwrap(),
                g.matches("<li data-mac=").count(),
            )
        })
        .collect()
}

/// A page that drives `page.html` in a frame like a person, and writes down the
/// outcome (`key=value` lines in `#out`).
const CLICK: &str = r#"<!DOCTYPE html><html><body><pre id="out">waiting</pre>
<iframe id="page" src="page.html" width="1280" height="900"></iframe>
<script>
document.getElementById("page").addEventListener("load", function () {
  var d = document.getElementById("page").contentDocument, out = [];
  var end = d.querySelector('#license th[data-key="end"]');
  end.click();
  end.click();
  out.push("hash=" + d.defaultView.location.hash);
  out.push("first-end=" + d.querySelector('#license-rows td[data-col="end"]').textContent);
  var text = d.getElementById("license-filter");
  text.value = "h323";
  text.dispatchEvent(new Event("input"));
  out.push("typed=" + d.getElementById("license-matching").textContent);
  var status = d.getElementById("license-status");
  status.value = "expiring-shortly";
  status.dispatchEvent(new Event("change"));
  out.push("picked=" + d.getElementById("license-matching").textContent);
  d.querySelector('.tile[data-status="inactive"]').click();
  out.push("tile=" + d.defaultView.location.hash);
  d.getElementById("license-clear").click();
  d.querySelector('#sites button[data-serial="100000000001"]').click();
  out.push("site=" + d.getElementById("license-matching").textContent);
  out.push("site-hash=" + d.defaultView.location.hash);
  var what = d.getElementById("attention-what");
  what.value = "clock";
  what.dispatchEvent(new Event("change"));
  out.push("groups=" + d.getElementById("attention-group-matching").textContent);
  document.getElementById("out").textContent = out.join("\n");
});
</script></body></html>
"#;

/// A report from the field whose texts are markup and script.
fn hostile() -> Value {
    let serial = "</script><script>document.title='pwned'</script>";
    json!({
        "schema": "license-agent-report/1",
        "mac": "0004f2fffffe",
        "site_serial": null,
        "agent": {"version": "<b>0</b>", "board": "x"},
        "reported_at": "2026-09-21T14:00:00Z",
        "clock": "ok",
        "evaluated_at": "2026-09-21T14:00:00Z",
        "licenses": [{
            "fingerprint": "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">",
            // A site license (no site configured: any site): a phone license must be
            // the phone's own.
            "kind": "site",
            "serial": serial,
            "key": "1a2b3c4d",
            "role": "primary",
            "status": "active",
            "start": "2026-01-01T00:00:00Z",
            "end": "never",
            "grants": [{"name": "pwned<svg onload=alert(1)>", "transaction": "new",
                        "start": "2026-01-01T00:00:00Z", "end": "never", "limit": 0}]
        }],
        "features": [],
        "refusals": [{"at": "2026-09-21T13:00:00Z", "subject": "<!--", "verdict": "malformed",
                      "detail": "<script>document.body.setAttribute('data-pwned','2')</script>",
                      "key": null}],
        "set_aside": [],
        "reboot": null,
        "last_fetch": null
    })
}

/// How many rows of `rows` pass `keep`.
fn count(rows: &[Value], keep: impl Fn(&Value) -> bool) -> u64 {
    rows.iter().filter(|r| keep(r)).count() as u64
}

#[test]
fn the_page_in_chromium_shows_the_numbers_of_the_json() {
    let _heavy = common::heavy();
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let written = generate::generate(&uploads, PHONES, NOW).unwrap();
    assert_eq!(written.files, PHONES);
    assert!(written.bytes > 0);
    std::fs::write(
        uploads.join("0004f2fffffe-license-status.json"),
        hostile().to_string(),
    )
    .unwrap();
    std::fs::write(uploads.join("0004f2ffffff-license-status.json"), "{garbage").unwrap();
    let page = dir.path().join("page.html");
    let out = run(
        common::fleet(),
        [
            "--at".as_ref(),
            NOW.to_string().as_ref(),
            "--json".as_ref(),
            "--html".as_ref(),
            page.as_os_str(),
            uploads.as_os_str(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fleet = &json["fleet"];
    let json_rows = fleet["rows"].as_array().unwrap();
    let profile = dir.path().join("chromium");

    // The whole fleet: the counts, the banner, the first page of rows.
    let all = dom(&profile, &page, "");
    assert_eq!(number(&all, "phones"), fleet["phones"].as_u64().unwrap());
    assert_eq!(fleet["phones"], PHONES + 1, "the hostile report is a phone");
    assert_eq!(fleet["verified"], false);
    let banner = all.split("id=\"verification\"").nth(1).unwrap();
    assert!(banner.contains("data-verified=\"0\""));
    assert!(banner[..banner.find("</p>").unwrap()]
        .contains("Licenses not verified (run with --keyring)"));
    let statuses = [
        ("active", "active"),
        ("expiring-shortly", "expiring_shortly"),
        ("impending", "impending"),
        ("inactive", "inactive"),
    ];
    assert_eq!(
        number(&all, "count-all"),
        fleet["summary"]["all"].as_u64().unwrap()
    );
    assert_eq!(fleet["summary"]["all"], json_rows.len());
    for (id, key) in statuses {
        let want = fleet["summary"][key].as_u64().unwrap();
        assert!(want > 0, "the generated fleet has {key} rows");
        assert_eq!(number(&all, &format!("count-{id}")), want, "{id}");
    }
    assert_eq!(number(&all, "license-total"), json_rows.len() as u64);
    assert_eq!(number(&all, "license-matching"), json_rows.len() as u64);
    assert_eq!(rows(&all).len(), 100, "the first page of rows");
    assert_eq!(number(&all, "unreadable-total"), 1);

    // Every row, page by page, in the data's order (site first, then by end): as the
    // JSON says, red exactly when its shown status is Expiring Shortly (a renewed term,
    // Active, is not), with its Renewal under its status.
    let mut shown = Vec::new();
    for n in 1..=json_rows.len().div_ceil(100) {
        shown.extend(rows(&dom(&profile, &page, &format!("#page={n}"))));
    }
    assert_eq!(shown.len(), json_rows.len());
    let mut renewed = 0;
    for (s, r) in shown.iter().zip(json_rows) {
        assert_eq!(s.id, r["id"].as_str().unwrap());
        assert_eq!(s.kind, r["kind"].as_str().unwrap());
        assert_eq!(s.feature, r["feature"].as_str().unwrap());
        assert_eq!(s.transaction, r["transaction"].as_str().unwrap());
        assert_eq!(s.start, r["start"].as_str().unwrap());
        assert_eq!(s.end, r["end"].as_str().unwrap());
        assert_eq!(s.status, r["status"].as_str().unwrap());
        let red = s.class.split(' ').any(|c| c == "expiring-shortly");
        assert_eq!(red, r["status"] == "expiring-shortly", "{s:?}");
        if r["type"] == "managed-device" && r["adds_to"].is_null() {
            let want = format!("{} of {}", r["in_use"], r["capacity"]);
            assert!(s.devices.starts_with(&want), "{s:?}");
            assert_eq!(s.devices.ends_with(" OVER"), r["over"] == true, "{s:?}");
        }
        if let Some(until) = r["renewed_until"].as_str() {
            assert!(
                s.status_text.contains(&format!("renewed until {until}")),
                "{s:?}"
            );
            if r["term_status"] == "expiring-shortly" {
                assert!(s.status_text.starts_with("Active"));
                assert!(!red);
                renewed += 1;
            }
        }
    }
    assert!(
        renewed > 0,
        "the generated fleet has a renewed term shown Active"
    );
    assert!(json_rows.iter().any(|r| r["over"] == true));

    // Each status filter: the rows of that shown status, as many as its tile says.
    for (id, key) in statuses {
        let filtered = dom(&profile, &page, &format!("#status={id}"));
        let want = count(json_rows, |r| r["status"] == id);
        assert_eq!(want, fleet["summary"][key].as_u64().unwrap());
        assert_eq!(number(&filtered, "license-matching"), want, "{id}");
        assert_eq!(number(&filtered, &format!("count-{id}")), want, "{id}");
        let shown = rows(&filtered);
        assert_eq!(shown.len() as u64, want.min(100));
        assert!(shown.iter().all(|s| s.status == id && s.class == id));
    }

    // Combined filters.
    let combined = dom(&profile, &page, "#kind=site&transaction=new");
    let want = count(json_rows, |r| {
        r["kind"] == "site" && r["transaction"] == "new"
    });
    assert!(want > 0);
    assert_eq!(number(&combined, "license-matching"), want);
    assert!(rows(&combined)
        .iter()
        .all(|s| s.kind == "site" && s.transaction == "new"));
    let soon = dom(
        &profile,
        &page,
        "#kind=phone&days=20&status=expiring-shortly",
    );
    let want = count(json_rows, |r| {
        r["kind"] == "phone"
            && r["status"] == "expiring-shortly"
            && r["days_left"].as_i64().is_some_and(|d| d <= 20)
    });
    assert!(want > 0);
    assert_eq!(number(&soon, "license-matching"), want);
    let never = count(json_rows, |r| r["days_left"].is_null());
    assert!(never > 0, "rows without an end");
    let days = dom(&profile, &page, "#days=100000");
    assert_eq!(
        number(&days, "license-matching"),
        json_rows.len() as u64 - never,
        "a row without an end never matches a days filter"
    );

    // The per-site totals, and a site's rows.
    let sites = fleet["sites"].as_array().unwrap();
    assert!(!sites.is_empty());
    for site in sites {
        let serial = site["serial"].as_str().unwrap();
        // As the browser writes the attribute back (the hostile report's site serial is
        // markup, kept as text).
        let escaped = serial
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let tr = [serial.to_string(), escaped]
            .iter()
            .find_map(|s| all.split(&format!("id=\"site-{s}\"")).nth(1))
            .unwrap_or_else(|| panic!("no #site-{serial}"));
        let tr = &tr[..tr.find("</tr>").unwrap()];
        assert_eq!(col(tr, "phones"), site["phones"].to_string());
        assert_eq!(col(tr, "licenses"), site["rows"]["all"].to_string());
        assert_eq!(col(tr, "active"), site["rows"]["active"].to_string());
        assert_eq!(
            col(tr, "expiring-shortly"),
            site["rows"]["expiring_shortly"].to_string()
        );
        assert_eq!(col(tr, "impending"), site["rows"]["impending"].to_string());
        assert_eq!(col(tr, "inactive"), site["rows"]["inactive"].to_string());
        assert!(
            col(tr, "devices").starts_with(&format!("{} of {}", site["in_use"], site["capacity"]))
        );
    }
    let serial = sites[1]["serial"].as_str().unwrap();
    let of_site = dom(&profile, &page, &format!("#site={serial}"));
    assert_eq!(
        number(&of_site, "license-matching"),
        sites[1]["rows"]["all"].as_u64().unwrap()
    );
    assert!(rows(&of_site)
        .iter()
        .all(|s| s.id == serial && s.kind == "site"));

    // Sorted by end, latest first, under a status filter.
    let expiring = dom(
        &profile,
        &page,
        "#status=expiring-shortly&sort=end&dir=desc",
    );
    let mut ends: Vec<&str> = json_rows
        .iter()
        .filter(|r| r["status"] == "expiring-shortly")
        .map(|r| r["end"].as_str().unwrap())
        .collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    let shown_ends: Vec<String> = rows(&expiring).into_iter().map(|s| s.end).collect();
    assert_eq!(shown_ends, ends[..shown_ends.len()]);
    assert!(expiring.contains("aria-sort=\"descending\""));

    // What to act on: every group in order, with its count, its phones listed.
    let attention = fleet["attention"].as_array().unwrap();
    assert!(attention.len() <= 100, "one page of groups");
    let phones = |g: &Value| g["phones"].as_array().unwrap().len();
    let items: usize = attention.iter().map(phones).sum();
    assert_eq!(
        number(&all, "attention-group-total"),
        attention.len() as u64
    );
    assert_eq!(
        number(&all, "attention-group-matching"),
        attention.len() as u64
    );
    assert_eq!(number(&all, "attention-total"), items as u64);
    assert_eq!(number(&all, "attention-in-page"), items as u64);
    let page_groups = groups(&all);
    assert_eq!(page_groups.len(), attention.len());
    for ((what, n, listed), g) in page_groups.iter().zip(attention) {
        assert_eq!(what, g["what"].as_str().unwrap());
        assert_eq!(*n, phones(g) as u64);
        assert_eq!(*listed, phones(g));
    }
    for kind in [
        "feature-ends",
        "over-capacity",
        "booted-expired",
        "stale-report",
        "refused",
        "unknown-key",
        "clock",
        "reboot-pending",
    ] {
        let of_kind: Vec<&Value> = attention.iter().filter(|g| g["what"] == kind).collect();
        assert!(!of_kind.is_empty(), "{kind}");
        let n: usize = of_kind.iter().map(|g| phones(g)).sum();
        assert_eq!(number(&all, &format!("attention-count-{kind}")), n as u64);
        assert_eq!(
            number(&all, &format!("attention-groups-{kind}")),
            of_kind.len() as u64
        );
    }
    let booted = dom(&profile, &page, "#what=booted-expired");
    let want: Vec<u64> = attention
        .iter()
        .filter(|g| g["what"] == "booted-expired")
        .map(|g| phones(g) as u64)
        .collect();
    assert_eq!(
        number(&booted, "attention-group-matching"),
        want.len() as u64
    );
    let got: Vec<u64> = groups(&booted).iter().map(|g| g.1).collect();
    assert_eq!(got, want);
    assert!(groups(&booted).iter().all(|g| g.0 == "booted-expired"));

    // A text filter: the rows of one phone.
    let mac = "0004f2000011";
    let one = dom(&profile, &page, &format!("#q={mac}"));
    assert_eq!(
        number(&one, "license-matching"),
        count(json_rows, |r| r["id"] == mac)
    );

    // The hostile report: its row and its refusal are shown, as text; none of its
    // script ran.
    let pwned = dom(&profile, &page, "#q=pwned&what=refused");
    assert_eq!(number(&pwned, "license-matching"), 1);
    assert!(pwned.contains("&lt;/script&gt;&lt;script&gt;document.title="));
    assert!(pwned.contains("&lt;script&gt;document.body.setAttribute("));
    assert!(!pwned.contains("data-pwned=\""), "a report's script ran");
    assert!(!pwned.contains("<img") && !pwned.contains("<svg"));
    assert!(!by_id(&pwned, "fleet-at").is_empty());
    assert!(pwned.contains("<title>Licenses: the fleet at"));

    // Clicks and typing, as a person would: a page beside it (same folder, file access
    // allowed) clicks the End header twice, types into the filter, picks a status,
    // clicks a summary tile, clears, clicks a site serial and picks a kind of group,
    // and writes down what the page then shows.
    std::fs::write(dir.path().join("click.html"), CLICK).unwrap();
    let clicked = chromium(
        &profile,
        &["--dump-dom".into(), "--allow-file-access-from-files".into()],
        &format!("file://{}", dir.path().join("click.html").display()),
    );
    let said = |key: &str| -> String {
        let start = clicked
            .find(&format!("\n{key}="))
            .or_else(|| clicked.find(&format!(">{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {clicked}"))
            + key.len()
            + 2;
        let len = clicked[start..].find(['\n', '<']).unwrap();
        clicked[start..start + len].replace("&amp;", "&")
    };
    assert_eq!(said("hash"), "#dir=desc&sort=end");
    let latest = json_rows.iter().map(|r| r["end"].as_str().unwrap()).max();
    assert_eq!(Some(said("first-end").as_str()), latest);
    let h323 = |r: &Value| r["feature"] == "h323";
    assert_eq!(said("typed"), count(json_rows, h323).to_string());
    let h323_expiring = count(json_rows, |r| h323(r) && r["status"] == "expiring-shortly");
    assert_eq!(said("picked"), h323_expiring.to_string());
    assert!(
        said("tile").ends_with("&status=inactive"),
        "{}",
        said("tile")
    );
    let site = sites
        .iter()
        .find(|s| s["serial"] == "100000000001")
        .unwrap();
    assert_eq!(said("site"), site["rows"]["all"].to_string());
    assert_eq!(said("site-hash"), "#dir=desc&site=100000000001&sort=end");
    let clock = attention.iter().filter(|g| g["what"] == "clock").count();
    assert_eq!(said("groups"), clock.to_string());
    // The screenshot, kept.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/test-artifacts"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("fleet-page.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &profile,
        &[format!("--screenshot={}", png.display())],
        &format!("file://{}#status=expiring-shortly&sort=end", page.display()),
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000);
}
