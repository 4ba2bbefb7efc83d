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
fn chromium(profile: &Path, args: &[String], url: &str) -> String {
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
fn dom(profile: &Path, page: &Path, fragment: &str) -> String {
    let url = format!("file://{}{fragment}", page.display());
    let dom = chromium(profile, &["--dump-dom".into()], &url);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not run at {fragment}"
    );
    dom
}

/// The text of the element `id` (up to its first child or end tag).
fn by_id(dom: &str, id: &str) -> String {
    let key = format!("id=\"{id}\"");
    let start = dom.find(&key).unwrap_or_else(|| panic!("no #{id}"));
    let open_end = start + dom[start..].find('>').unwrap() + 1;
    let len = dom[open_end..].find('<').unwrap();
    dom[open_end..open_end + len].to_string()
}

fn number(dom: &str, id: &str) -> u64 {
    by_id(dom, id)
        .parse()
        .unwrap_or_else(|_| panic!("#{id}: {:?}", by_id(dom, id)))
}

/// The license rows the page shows: (status, end) of each `tr`.
fn rows(dom: &str) -> Vec<(String, String)> {
    dom.split("<tr data-fingerprint=")
        .skip(1)
        .map(|row| {
            let status = row.split("data-status=\"").nth(1).unwrap();
            let status = &status[..status.find('"').unwrap()];
            let end = row.split("data-col=\"end\">").nth(1).unwrap();
            (
                status.to_string(),
                end[..end.find('<').unwrap()].to_string(),
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
            "kind": "phone",
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
    let profile = dir.path().join("chromium");

    // The whole fleet: the counts and every row.
    let all = dom(&profile, &page, "");
    assert_eq!(number(&all, "phones"), fleet["phones"].as_u64().unwrap());
    assert_eq!(fleet["phones"], PHONES + 1, "the hostile report is a phone");
    for (id, key) in [
        ("all", "all"),
        ("active", "active"),
        ("expiring-shortly", "expiring_shortly"),
        ("impending", "impending"),
        ("inactive", "inactive"),
    ] {
        let want = fleet["summary"][key].as_u64().unwrap();
        assert!(want > 0, "the generated fleet has {key} licenses");
        assert_eq!(number(&all, &format!("count-{id}")), want, "{id}");
    }
    let grants: Vec<&Value> = fleet["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["grants"].as_array().unwrap())
        .collect();
    assert_eq!(number(&all, "license-total"), grants.len() as u64);
    assert_eq!(number(&all, "license-matching"), grants.len() as u64);
    assert_eq!(rows(&all).len(), 100, "the first page of rows");
    let attention = fleet["attention"].as_array().unwrap();
    assert_eq!(number(&all, "attention-total"), attention.len() as u64);
    assert_eq!(number(&all, "attention-matching"), attention.len() as u64);
    for kind in [
        "feature-ends",
        "booted-expired",
        "stale-report",
        "refused",
        "unknown-key",
        "clock",
        "reboot-pending",
    ] {
        let n = attention.iter().filter(|a| a["what"] == kind).count();
        assert_eq!(
            number(&all, &format!("attention-count-{kind}")),
            n as u64,
            "{kind}"
        );
    }
    assert_eq!(number(&all, "unreadable-total"), 1);

    // Filtered by status and sorted by end, latest first, by the page's script.
    let expiring = dom(
        &profile,
        &page,
        "#status=expiring-shortly&sort=end&dir=desc",
    );
    let mut ends: Vec<&str> = grants
        .iter()
        .filter(|g| g["status"] == "expiring-shortly")
        .map(|g| g["end"].as_str().unwrap())
        .collect();
    assert!(!ends.is_empty());
    ends.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(number(&expiring, "license-matching"), ends.len() as u64);
    let shown = rows(&expiring);
    assert_eq!(shown.len(), ends.len().min(100));
    assert!(shown.iter().all(|(s, _)| s == "expiring-shortly"));
    let shown_ends: Vec<&str> = shown.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(shown_ends, ends[..shown.len()]);
    assert!(expiring.contains("aria-sort=\"descending\""));

    // A text filter, and the attention rows of one kind.
    let mac = "0004f2000011";
    let of_mac = grants.len() as u64
        - fleet["licenses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["serial"] != mac)
            .map(|l| l["grants"].as_array().unwrap().len() as u64)
            .sum::<u64>();
    let one = dom(&profile, &page, &format!("#q={mac}&what=booted-expired"));
    assert_eq!(number(&one, "license-matching"), of_mac);
    let booted_expired = attention
        .iter()
        .filter(|a| a["what"] == "booted-expired")
        .count();
    assert!(booted_expired > 0);
    assert_eq!(
        number(&one, "attention-matching"),
        booted_expired.min(attention.len()) as u64
    );

    // The hostile report: its row is shown, as text; none of its script ran.
    let pwned = dom(&profile, &page, "#q=pwned");
    assert_eq!(number(&pwned, "license-matching"), 1);
    assert!(pwned.contains("&lt;/script&gt;&lt;script&gt;document.title="));
    assert!(!pwned.contains("data-pwned=\""), "a report's script ran");
    assert!(!pwned.contains("<img") && !pwned.contains("<svg"));
    assert!(!by_id(&pwned, "fleet-at").is_empty());
    assert!(pwned.contains("<title>Licenses: the fleet at"));

    // Clicks and typing, as a person would: a page beside it (same folder, file access
    // allowed) clicks the End header twice, types into the filter, picks a status and
    // clicks a summary tile in the page, and writes down what the page then shows.
    std::fs::write(dir.path().join("click.html"), CLICK).unwrap();
    let clicked = chromium(
        &profile,
        &["--dump-dom".into(), "--allow-file-access-from-files".into()],
        &format!("file://{}", dir.path().join("click.html").display()),
    );
    let said = |key: &str| -> String {
        let start = clicked
            .find(&format!("{key}="))
            .unwrap_or_else(|| panic!("no {key} in {clicked}"))
            + key.len()
            + 1;
        let len = clicked[start..].find(['\n', '<']).unwrap();
        clicked[start..start + len].replace("&amp;", "&")
    };
    assert_eq!(said("hash"), "#dir=desc&sort=end");
    let latest = grants.iter().map(|g| g["end"].as_str().unwrap()).max();
    assert_eq!(Some(said("first-end").as_str()), latest);
    let h323: Vec<&&Value> = grants.iter().filter(|g| g["name"] == "h323").collect();
    assert_eq!(said("typed"), h323.len().to_string());
    let h323_expiring = h323
        .iter()
        .filter(|g| g["status"] == "expiring-shortly")
        .count();
    assert_eq!(said("picked"), h323_expiring.to_string());
    assert!(
        said("tile").ends_with("&status=inactive"),
        "{}",
        said("tile")
    );

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
