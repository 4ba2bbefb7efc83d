//! A fleet of real agents whose truth is known, seen through `license-fleet` the way the
//! vendor's portal would show it (issue 25). The vendor's files are made with the real
//! `license-issuer` (a New site license, its Addon and its Renewal built from the file
//! in force, an Addon-only file posted by mistake, a phone Trial), installed on twelve
//! phones with the real `license-agent` at chosen instants (its test clock), and each
//! phone's `status --report` put in the upload folder with a forged report, a report
//! without signed content and an impostor. Every count, row and group is then checked
//! in the text table, `--json`, the CSV and the page, the page in headless Chromium.
//!
//! The folder is kept as `target/test-artifacts/fleet-truth/` to look at.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{self, agent, fleet, issuer, rfc, run, stdout};
use crate::fleet_page::{self as page};

const DAY: i64 = 86_400;
const SITE: &str = "100000000001";
const CONFIGURED: &str = "[\"vqmon\", \"usb-call-recording\", \"productivity-suite\"]";

fn mac(n: u32) -> String {
    format!("0004f2{n:06x}")
}

/// Runs a command to success and returns its standard output.
fn ok(out: std::process::Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// The vendor's side, at the instant `t`.
struct Vendor {
    dir: PathBuf,
    key: PathBuf,
    t: i64,
}

impl Vendor {
    fn issuer(&self) -> std::process::Command {
        let mut cmd = issuer();
        cmd.env("LICENSE_AGENT_TEST_NOW", self.t.to_string());
        cmd
    }

    fn sign(&self, name: &str, kind: &str, serial: &str, features: &[String]) -> PathBuf {
        let out = self.dir.join(name);
        common::sign_license(&self.key, kind, serial, features, &out);
        out
    }

    /// `license-issuer addon|renew ... --from FROM -o NAME`.
    fn derive(&self, name: &str, args: &[&str]) -> PathBuf {
        let out = self.dir.join(name);
        let mut cmd = self.issuer();
        cmd.args(args)
            .arg("--key")
            .arg(&self.key)
            .arg("-o")
            .arg(&out);
        ok(run(cmd, Vec::<&str>::new()), name);
        out
    }
}

/// A phone: its configuration (its MAC, the site, the configured features, the
/// phones' keyring) and store.
struct Agent {
    mac: String,
    config: PathBuf,
}

impl Agent {
    fn new(root: &Path, n: u32, keyring: &Path) -> Agent {
        let dir = root.join(format!("phone-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "mac = \"{}\"\nsite_serial = \"{SITE}\"\nkeyring = \"{}\"\nstate_dir = \"state\"\n\
                 supervisor = \"none\"\nreport = false\nenabled_features = {CONFIGURED}\n",
                mac(n),
                keyring.display()
            ),
        )
        .unwrap();
        Agent {
            mac: mac(n),
            config,
        }
    }

    fn command(&self, t: i64) -> std::process::Command {
        let mut cmd = agent();
        cmd.env("LICENSE_AGENT_TEST_NOW", t.to_string());
        cmd
    }

    /// `license-agent install` at `t`; `accepted` says whether it must take the file.
    fn install(&self, file: &Path, t: i64, accepted: bool) {
        let out = run(
            self.command(t),
            [
                "install".as_ref(),
                "--config".as_ref(),
                self.config.as_os_str(),
                file.as_os_str(),
            ],
        );
        assert_eq!(
            out.status.code() == Some(0),
            accepted,
            "{} install {}: {}",
            self.mac,
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `license-agent status --report` at `t`, written to the upload folder.
    fn report(&self, t: i64, uploads: &Path) -> Value {
        let out = run(
            self.command(t),
            [
                "status".as_ref(),
                "--report".as_ref(),
                "--config".as_ref(),
                self.config.as_os_str(),
            ],
        );
        let text = ok(out, "status --report");
        std::fs::write(
            uploads.join(format!("{}-license-status.json", self.mac)),
            &text,
        )
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

fn feature(name: &str, transaction: &str, start: i64, end: Option<i64>, limit: u32) -> String {
    format!(
        "{name},{transaction},{},{},{limit}",
        rfc(start),
        end.map_or("never".into(), rfc)
    )
}

/// `license-fleet ARGS DIR` with the vendor's keyring; its standard output.
fn view(keyring: &Path, uploads: &Path, t: i64, args: &[&str]) -> String {
    let mut cmd = fleet();
    cmd.arg("--keyring")
        .arg(keyring)
        .arg("--at")
        .arg(t.to_string())
        .args(args)
        .arg(uploads);
    ok(run(cmd, Vec::<&str>::new()), "license-fleet")
}

/// One expected row: (kind, id, feature, transaction, status, phones, in use, capacity).
type Want<'a> = (&'a str, String, &'a str, &'a str, &'a str, u64, u64, u64);

#[test]
fn a_fleet_of_real_agents_is_shown_as_the_portal_shows_it() {
    let root = tempfile::tempdir().unwrap();
    // The fleet is judged 40 days ahead: the Trial is installed 30 days before that,
    // still after the agent's build (before it, an agent judges nothing).
    let t = (common::now() + 40 * DAY) / 60 * 60;
    let vendor = Vendor {
        dir: root.path().to_path_buf(),
        key: common::vendor_key(root.path()),
        t,
    };
    // The phones trust the vendor's key; the vendor rotated to a second key for new
    // files, which the phones' (stale) keyring does not hold yet.
    let phones_keyring = root.path().join("keyring");
    let rotated = root.path().join("rotated");
    std::fs::create_dir(&rotated).unwrap();
    let new_key = common::vendor_key(&rotated);
    let vendor_keyring = root.path().join("vendor-keyring");
    std::fs::write(
        &vendor_keyring,
        std::fs::read_to_string(&phones_keyring).unwrap()
            + &std::fs::read_to_string(rotated.join("keyring")).unwrap(),
    )
    .unwrap();

    // A: the New site license. vqmon for 6 devices, USB call recording ending in 20
    // days inside it (the file lasts 200), the Productivity Suite ending in 15.
    let a = vendor.sign(
        "a.cfg",
        "site",
        SITE,
        &[
            feature("vqmon", "new", t - 100 * DAY, Some(t + 200 * DAY), 6),
            feature(
                "usb-call-recording",
                "new",
                t - 300 * DAY,
                Some(t + 20 * DAY),
                0,
            ),
            feature(
                "productivity-suite",
                "new",
                t - 300 * DAY,
                Some(t + 15 * DAY),
                0,
            ),
        ],
    );
    // C: its Addon of 5 vqmon devices, built from A (A's other grants kept).
    let c = vendor.derive(
        "c.cfg",
        &[
            "addon",
            "--from",
            a.to_str().unwrap(),
            "--feature",
            "vqmon",
            "--limit",
            "5",
        ],
    );
    // R: the Productivity Suite renewed for a year, built from C, posted early.
    let until = (t + 380 * DAY).to_string();
    let r = vendor.derive(
        "r.cfg",
        &[
            "renew",
            "--from",
            c.to_str().unwrap(),
            "--feature",
            "productivity-suite",
            "--until",
            &until,
        ],
    );
    // D: an Addon-only file posted by mistake (same end as A: it becomes the primary).
    let d = vendor.sign(
        "d.cfg",
        "site",
        SITE,
        &[feature("vqmon", "addon", t - DAY, Some(t + 200 * DAY), 5)],
    );
    // Phone 1's Trial of H.323 (ended 10 days ago) and its lync for good.
    let trial = vendor.sign(
        "trial.cfg",
        "phone",
        &mac(1),
        &[feature(
            "h323",
            "trial",
            t - 40 * DAY,
            Some(t - 10 * DAY),
            0,
        )],
    );
    let lync = vendor.sign(
        "lync.cfg",
        "phone",
        &mac(1),
        &[feature("lync", "new", t - DAY, None, 0)],
    );
    // A phone license signed with the rotated key: phone 11's keyring is stale.
    let rotated_file = root.path().join("rotated.cfg");
    common::sign_license(
        &new_key,
        "phone",
        &mac(11),
        &[feature("h323", "new", t - DAY, None, 0)],
        &rotated_file,
    );

    let uploads = root.path().join("uploads");
    std::fs::create_dir(&uploads).unwrap();
    let phones: Vec<Agent> = (1..=12)
        .map(|n| Agent::new(root.path(), n, &phones_keyring))
        .collect();
    phones[0].install(&trial, t - 30 * DAY, true);
    for (n, p) in phones.iter().enumerate().take(11) {
        let n = n + 1;
        p.install(&a, t, true);
        if (4..=8).contains(&n) {
            p.install(&c, t, true);
        }
        if (7..=8).contains(&n) {
            p.install(&r, t, true);
        }
        if (9..=10).contains(&n) {
            p.install(&d, t, true);
        }
    }
    phones[0].install(&lync, t, true);
    phones[10].install(&rotated_file, t, false);
    let mut reports: Vec<Value> = phones[..11].iter().map(|p| p.report(t, &uploads)).collect();
    // Phone 12 has not reported for 10 days.
    reports.push(phones[11].report(t - 10 * DAY, &uploads));
    let dropped = &reports[0]["dropped"];
    assert_eq!(dropped[0]["reason"], "ended", "{dropped:#}");
    assert_eq!(
        reports[6]["dropped"].as_array().unwrap().len(),
        2,
        "A and C replaced"
    );

    // A forged report: phone 2's, claiming A for 9999 devices until 2099, with signed
    // content that is not A's.
    let site_fp = reports[1]["licenses"][0]["fingerprint"].clone();
    let mut forged = reports[1].clone();
    forged["mac"] = mac(0xff).into();
    forged["licenses"][0]["grants"][0]["end"] = "2099-01-01T00:00:00Z".into();
    forged["licenses"][0]["grants"][0]["limit"] = 9999.into();
    forged["licenses"][0]["signed"] = reports[6]["licenses"][0]["signed"].clone();
    assert_eq!(forged["licenses"][0]["fingerprint"], site_fp);
    // A report without signed content (as an agent past its budget sends): A, which
    // other reports prove, is its; a license no report proves is not.
    let mut unsigned = reports[1].clone();
    unsigned["mac"] = mac(0xfe).into();
    unsigned["licenses"][0]["signed"] = Value::Null;
    let mut unproved = unsigned["licenses"][0].clone();
    unproved["fingerprint"] = "00".repeat(32).into();
    unsigned["licenses"].as_array_mut().unwrap().push(unproved);
    // An impostor: phone 3's MAC under another phone's name, dated later.
    let mut impostor = reports[2].clone();
    impostor["licenses"] = Value::Array(vec![]);
    impostor["reported_at"] = rfc(t + 60).into();
    for (n, report) in [(0xff, &forged), (0xfe, &unsigned), (0xfd, &impostor)] {
        std::fs::write(
            uploads.join(format!("{}-license-status.json", mac(n))),
            report.to_string(),
        )
        .unwrap();
    }
    keep(&uploads);

    // The truth.
    let ids = |n: u32| -> String { mac(n) };
    let site = || SITE.to_string();
    // Phones 1-11 and the unsigned report hold a site file; the Renewal, in force
    // already, counts on the term it renews (one subscription) until the term ends.
    #[rustfmt::skip]
    let want: Vec<Want> = vec![
        ("site", site(), "productivity-suite", "new", "active", 8, 10, 0),
        ("site", site(), "usb-call-recording", "new", "expiring-shortly", 10, 10, 0),
        ("site", site(), "vqmon", "new", "active", 5, 12, 16),
        // D's Addon (from a day ago), then C's (from now): by start among equals.
        ("site", site(), "vqmon", "addon", "active", 2, 0, 0),
        ("site", site(), "vqmon", "addon", "active", 5, 0, 0),
        ("site", site(), "productivity-suite", "renewal", "active", 2, 0, 0),
        ("phone", ids(1), "h323", "trial", "inactive", 0, 0, 0),
        ("phone", ids(1), "lync", "new", "active", 1, 1, 0),
    ];
    let json: Value =
        serde_json::from_str(&view(&vendor_keyring, &uploads, t, &["--json"])).unwrap();
    let fleet = &json["fleet"];
    assert_eq!(fleet["verified"], true);
    assert_eq!(
        fleet["phones"], 14,
        "12 phones, the forged and the unsigned"
    );
    let rows = fleet["rows"].as_array().unwrap();
    let got: Vec<Want> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap();
            (
                s("kind"),
                r["id"].as_str().unwrap().to_string(),
                s("feature"),
                s("transaction"),
                s("status"),
                r["phones"].as_u64().unwrap(),
                r["in_use"].as_u64().unwrap(),
                r["capacity"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "{fleet:#}");
    let row = |n: usize| &rows[n];
    // The renewed term: Active, not red, renewed until the Renewal's end, fetched by 2
    // of the 9 phones holding it or its Renewal.
    assert_eq!(row(0)["term_status"], "expiring-shortly");
    assert_eq!(row(0)["renewed_until"], rfc(t + 380 * DAY));
    assert_eq!(
        (
            row(0)["renewal_fetched"].as_u64(),
            row(0)["renewal_phones"].as_u64()
        ),
        (Some(2), Some(10))
    );
    assert_eq!(row(1)["days_left"], 20);
    // The Addons add to the New term, whose capacity sums them.
    for n in [3, 4] {
        assert_eq!(
            row(n)["adds_to"],
            format!("new {}", rfc(t - 100 * DAY)),
            "{:#}",
            row(n)
        );
    }
    assert!(rows.iter().all(|r| r["verified"] == true));
    let summary = &fleet["summary"];
    assert_eq!(
        [
            &summary["all"],
            &summary["active"],
            &summary["expiring_shortly"],
            &summary["impending"],
            &summary["inactive"]
        ],
        [8, 6, 1, 0, 1].map(Value::from).each_ref()
    );
    let site_total = &fleet["sites"][0];
    assert_eq!(
        (
            site_total["phones"].as_u64(),
            site_total["in_use"].as_u64(),
            site_total["capacity"].as_u64()
        ),
        (Some(12), Some(12), Some(16))
    );

    // What to act on, grouped, with its phones.
    let macs = |ns: &[u32]| -> Vec<String> { ns.iter().map(|&n| mac(n)).collect() };
    let groups: Vec<(String, Vec<String>)> = fleet["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["what"].as_str().unwrap().to_string(),
                g["phones"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["mac"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let expected: Vec<(String, Vec<String>)> = vec![
        (
            "renewal-not-fetched".into(),
            macs(&[1, 2, 3, 4, 5, 6, 11, 0xfe]),
        ),
        (
            "feature-ends".into(),
            macs(&[1, 2, 3, 4, 5, 6, 7, 8, 11, 0xfe]),
        ),
        // The Addon-only file took two features off phones 9 and 10; phone 12 is
        // configured for three it was never licensed.
        ("feature-lost".into(), macs(&[9, 10, 12])),
        ("feature-lost".into(), macs(&[9, 10, 12])),
        ("feature-lost".into(), macs(&[12])),
        ("forged-license".into(), macs(&[0xff])),
        ("unverified-license".into(), macs(&[0xfe])),
        ("unknown-key".into(), macs(&[11])),
        ("stale-report".into(), macs(&[12])),
    ];
    assert_eq!(groups, expected, "{:#}", fleet["attention"]);
    let lost = &fleet["attention"][2]["phones"][0]["detail"];
    assert!(lost.as_str().unwrap().contains("replaced"), "{lost}");
    let unreadable = json["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    assert!(unreadable[0]["file"].as_str().unwrap().contains(&mac(0xfd)));

    // The text table says the same.
    let text = view(&vendor_keyring, &uploads, t, &[]);
    assert!(
        text.contains("licenses 8  active 6  expiring shortly 1  impending 0  inactive 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "renewed until {}, fetched by 2 of 10",
            rfc(t + 380 * DAY)
        )),
        "{text}"
    );
    assert!(text.contains("12 of 16"), "{text}");
    assert!(!text.contains("NOT verified"), "{text}");
    // The CSV: a row per license row, a row per phone of each group.
    let csv = view(&vendor_keyring, &uploads, t, &["--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 8, "{csv}");
    for (line, w) in lines[1..].iter().zip(&want) {
        assert!(
            line.starts_with(&format!("{},{},{},", w.1, w.0, w.2)),
            "{line}"
        );
        assert!(line.contains(&format!(",{},", w.4)), "{line}");
    }
    let phones_csv = view(&vendor_keyring, &uploads, t, &["--csv=phones"]);
    let items: usize = expected.iter().map(|(_, p)| p.len()).sum();
    assert_eq!(phones_csv.lines().count(), 1 + items, "{phones_csv}");

    // The page, in Chromium: the counts, the rows under every status filter, the
    // renewed row not red, the expiring one red, the groups.
    let page_file = root.path().join("page.html");
    view(
        &vendor_keyring,
        &uploads,
        t,
        &["--html", page_file.to_str().unwrap()],
    );
    let _heavy = common::heavy();
    let profile = root.path().join("chromium");
    let dom = page::dom(&profile, &page_file, "");
    for (id, n) in [
        ("all", 8),
        ("active", 6),
        ("expiring-shortly", 1),
        ("impending", 0),
        ("inactive", 1),
    ] {
        assert_eq!(page::number(&dom, &format!("count-{id}")), n, "#count-{id}");
    }
    let shown = page::rows(&dom);
    assert_eq!(shown.len(), 8);
    for (s, w) in shown.iter().zip(&want) {
        assert_eq!(
            (
                s.kind.as_str(),
                s.id.as_str(),
                s.feature.as_str(),
                s.transaction.as_str(),
                s.status.as_str()
            ),
            (w.0, w.1.as_str(), w.2, w.3, w.4)
        );
        assert_eq!(
            s.class.contains("expiring-shortly"),
            w.4 == "expiring-shortly",
            "{s:?}"
        );
    }
    assert!(
        shown[0].status_text.contains("renewed until"),
        "{:?}",
        shown[0]
    );
    for (status, n) in [
        ("active", 6),
        ("expiring-shortly", 1),
        ("impending", 0),
        ("inactive", 1),
    ] {
        let dom = page::dom(&profile, &page_file, &format!("#status={status}"));
        assert_eq!(
            page::number(&dom, "license-matching"),
            n,
            "#status={status}"
        );
        assert!(page::rows(&dom).iter().all(|r| r.status == status));
    }
    let dom_site = page::dom(&profile, &page_file, "#kind=site&transaction=addon");
    assert_eq!(page::number(&dom_site, "license-matching"), 2);
    let shown_groups = page::groups(&dom);
    let in_page: Vec<(String, u64)> = shown_groups.iter().map(|g| (g.0.clone(), g.1)).collect();
    let want_groups: Vec<(String, u64)> = expected
        .iter()
        .map(|(w, p)| (w.clone(), p.len() as u64))
        .collect();
    assert_eq!(in_page, want_groups);
}

/// Keeps the folder of reports as a test artifact.
fn keep(uploads: &Path) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let keep = target.join("test-artifacts/fleet-truth");
    let _ = std::fs::remove_dir_all(&keep);
    if std::fs::create_dir_all(&keep).is_ok() {
        for entry in std::fs::read_dir(uploads).unwrap().flatten() {
            let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
        }
    }
}
