//! `install` and `status` through the real binary: a store filled with `install` shows
//! the statuses the rules give (`status --json --at`), refusals leave the licenses
//! untouched and are shown, and unsynced and wound-back clocks are reported.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{agent, now, rfc, run, stdout};
use serde_json::Value;

const DAY: i64 = 86_400;
const MAC: &str = "0004f2000001";
const SITE: &str = "100000000001";

/// A phone: a vendor key, a keyring, a configuration and an empty state folder.
struct Phone {
    dir: tempfile::TempDir,
    key: PathBuf,
    config: PathBuf,
}

fn phone() -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let key = common::vendor_key(dir.path());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("mac = \"{MAC}\"\nsite_serial = \"{SITE}\"\nkeyring = \"keyring\"\nstate_dir = \"state\"\nsupervisor = \"none\"\n"),
    )
    .unwrap();
    Phone { dir, key, config }
}

impl Phone {
    /// Signs a license (`features`: `NAME,TRANSACTION,START,END[,LIMIT]`) into a file.
    fn sign(&self, name: &str, kind: &str, serial: &str, features: &[String]) -> PathBuf {
        let path = self.dir.path().join(name);
        common::sign_license(&self.key, kind, serial, features, &path);
        path
    }

    fn cmd(&self, test_now: Option<i64>) -> Command {
        let mut cmd = agent();
        if let Some(t) = test_now {
            cmd.env("LICENSE_AGENT_TEST_NOW", t.to_string());
        }
        cmd
    }

    fn install(&self, file: &Path, test_now: Option<i64>) -> std::process::Output {
        run(
            self.cmd(test_now),
            [
                "install".as_ref(),
                "--config".as_ref(),
                self.config.as_os_str(),
                file.as_os_str(),
            ],
        )
    }

    fn status(&self, extra: &[&str], test_now: Option<i64>) -> Value {
        let mut args = vec![
            "status",
            "--json",
            "--config",
            self.config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = run(self.cmd(test_now), &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    fn license_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for kind in ["phone", "site"] {
            if let Ok(entries) = std::fs::read_dir(self.dir.path().join("state").join(kind)) {
                for e in entries {
                    let p = e.unwrap().path();
                    files.push((p.display().to_string(), std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        files
    }
}

fn feature(name: &str, transaction: &str, start: i64, end: Option<i64>) -> String {
    format!(
        "{name},{transaction},{},{}",
        rfc(start),
        end.map_or("never".into(), rfc)
    )
}

fn statuses(v: &Value) -> Vec<(String, String)> {
    v["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l["status"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_store_filled_by_install_shows_the_statuses_of_the_rules() {
    let p = phone();
    let t = now();
    let (start, end) = (t - 10 * DAY, t + 100 * DAY);
    let site = p.sign(
        "site.cfg",
        "site",
        SITE,
        &[
            feature("vqmon", "trial", start, Some(end)),
            format!(
                "{},25",
                feature("productivity-suite", "renewal", start, Some(end))
            ),
        ],
    );
    let phone_lic = p.sign(
        "phone.cfg",
        "phone",
        MAC,
        &[feature("usb-call-recording", "new", start, None)],
    );
    let out = p.install(&site, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("installed: site license 100000000001"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("+ vqmon until"), "{}", stdout(&out));
    let out = p.install(&phone_lic, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("+ usb-call-recording until never"),
        "{}",
        stdout(&out)
    );

    let s = p.status(&[], None);
    assert_eq!(s["clock"], "ok");
    assert_eq!(s["source"], "store");
    assert_eq!(s["mac"], MAC);
    // In the order received.
    assert_eq!(
        statuses(&s),
        [
            ("site".into(), "active".into()),
            ("phone".into(), "active".into())
        ]
    );
    let names: Vec<&str> = s["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["usb-call-recording", "vqmon", "productivity-suite"]);
    let pro = &s["features"][2];
    assert_eq!(
        (
            pro["source"].as_str(),
            pro["transaction"].as_str(),
            pro["limit"].as_u64()
        ),
        (Some("site"), Some("renewal"), Some(25))
    );
    assert_eq!(pro["end"], rfc(end));
    assert_eq!(s["licenses"][0]["days_left"], 100);
    assert_eq!(s["next_change"], rfc(end - 31 * DAY));

    // --at, at the exact boundaries of the site license.
    let site_status_at = |at: i64| {
        let v = p.status(&["--at", &rfc(at)], None);
        assert_eq!(v["at_requested"], true);
        assert_eq!(v["evaluated_at"], rfc(at));
        let vq = v["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "vqmon")
            .cloned()
            .unwrap_or_else(|| panic!("{v:#}"));
        (
            v["licenses"][0]["status"].as_str().unwrap().to_string(),
            vq["enabled"].as_bool().unwrap(),
        )
    };
    assert_eq!(site_status_at(start - 1), ("impending".into(), false));
    assert_eq!(site_status_at(start), ("active".into(), true));
    assert_eq!(site_status_at(end - 31 * DAY), ("active".into(), true));
    assert_eq!(
        site_status_at(end - 31 * DAY + 1),
        ("expiring-shortly".into(), true)
    );
    assert_eq!(site_status_at(end - 1), ("expiring-shortly".into(), true));
    assert_eq!(site_status_at(end), ("inactive".into(), false));
    // The phone license never ends.
    let far = p.status(&["--at", "2100-01-01T00:00:00Z"], None);
    assert_eq!(far["enabled"], serde_json::json!(["usb-call-recording"]));

    // The table for people says the same.
    let out = run(
        p.cmd(None),
        [
            "status",
            "--config",
            p.config.to_str().unwrap(),
            "--at",
            &rfc(end - DAY),
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains("Expiring Shortly") && text.contains("requested with --at"),
        "{text}"
    );
}

#[test]
fn a_renewal_installed_early_bridges_and_then_takes_over() {
    let p = phone();
    let t = now();
    let end = t + 20 * DAY;
    let current = p.sign(
        "current.cfg",
        "site",
        SITE,
        &[feature("vqmon", "new", t - 300 * DAY, Some(end))],
    );
    let renewal = p.sign(
        "renewal.cfg",
        "site",
        SITE,
        &[feature("vqmon", "renewal", end, Some(end + 365 * DAY))],
    );
    assert_eq!(p.install(&current, None).status.code(), Some(0));
    let out = p.install(&renewal, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("kept: site license 100000000001 (bridging"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("features: no change"),
        "{}",
        stdout(&out)
    );
    let roles = |v: &Value| -> Vec<String> {
        v["licenses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["role"].as_str().unwrap().to_string())
            .collect()
    };
    let s = p.status(&[], None);
    assert_eq!(roles(&s), ["bridging", "primary"]);
    assert_eq!(
        statuses(&s),
        [
            ("site".into(), "expiring-shortly".into()),
            ("site".into(), "impending".into())
        ]
    );
    for at in [end - 1, end] {
        let v = p.status(&["--at", &rfc(at)], None);
        assert_eq!(v["enabled"], serde_json::json!(["vqmon"]), "gap at {at}");
    }
    assert_eq!(
        roles(&p.status(&["--at", &rfc(end)], None)),
        ["dropped", "primary"]
    );
}

/// A license stops counting at the instant its successor starts and never again: A bridges
/// to B; once B has started, C (Impending) installed with no write in between does not
/// bring A (and its vqmon) back as a bridge to C.
#[test]
fn a_bridge_ends_for_good_when_its_successor_starts() {
    let p = phone();
    let t = now();
    let a = p.sign(
        "a.cfg",
        "phone",
        MAC,
        &[
            feature("usb-call-recording", "new", t - DAY, None),
            feature("vqmon", "new", t - DAY, Some(t + 650 * DAY)),
        ],
    );
    let b = p.sign(
        "b.cfg",
        "phone",
        MAC,
        &[feature("usb-call-recording", "renewal", t + 40 * DAY, None)],
    );
    let later = t + 41 * DAY;
    let c = p.sign(
        "c.cfg",
        "phone",
        MAC,
        &[feature(
            "usb-call-recording",
            "renewal",
            later + 5 * DAY,
            None,
        )],
    );
    assert_eq!(p.install(&a, Some(t)).status.code(), Some(0));
    assert_eq!(p.install(&b, Some(t)).status.code(), Some(0));
    let enabled = |at: i64| p.status(&["--at", &rfc(at)], Some(t))["enabled"].clone();
    assert_eq!(
        enabled(t + 39 * DAY),
        serde_json::json!(["usb-call-recording", "vqmon"]),
        "A bridges to B"
    );
    let out = p.install(&c, Some(later));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for at in [later, later + 4 * DAY, later + 6 * DAY] {
        assert_eq!(
            enabled(at),
            serde_json::json!(["usb-call-recording"]),
            "at {}",
            rfc(at)
        );
    }
}

#[test]
fn refused_files_leave_the_licenses_untouched_and_are_shown() {
    let p = phone();
    let t = now();
    let good = p.sign(
        "good.cfg",
        "phone",
        MAC,
        &[feature("lync", "new", t - DAY, None)],
    );
    assert_eq!(p.install(&good, None).status.code(), Some(0));
    let before = p.license_files();

    let other_phone = p.sign(
        "other.cfg",
        "phone",
        "0004f2999999",
        &[feature("h323", "new", t - DAY, None)],
    );
    let other_site = p.sign(
        "othersite.cfg",
        "site",
        "200000000002",
        &[feature("h323", "new", t - DAY, None)],
    );
    let expired = p.sign(
        "expired.cfg",
        "site",
        SITE,
        &[feature("h323", "new", t - 100 * DAY, Some(t - DAY))],
    );
    let forged = p.dir.path().join("forged.cfg");
    std::fs::write(
        &forged,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("<Serial>0004f2000001", "<Serial>0004f2000002"),
    )
    .unwrap();
    let vectors_stranger = common::own_vectors().join("unknown-key-stranger.cfg");
    let cases = [
        (other_phone, "not-this-phone"),
        (other_site, "other-site"),
        (expired, "expired"),
        (forged, "bad-signature"),
        (vectors_stranger, "unknown-key"),
    ];
    for (file, why) in &cases {
        let out = p.install(file, None);
        assert_eq!(out.status.code(), Some(1), "{file:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{why}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            p.license_files(),
            before,
            "{why}: the licenses are untouched"
        );
    }
    let s = p.status(&[], None);
    let refused: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "refused")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(refused.len(), cases.len());
    assert!(
        refused.iter().any(|d| d.starts_with("not-this-phone")),
        "{refused:?}"
    );
    assert_eq!(s["enabled"], serde_json::json!(["lync"]));

    // The same file again: nothing to do, and that is not an error.
    let out = p.install(&good, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("unchanged:"), "{}", stdout(&out));
    // A shorter license than the one in use: not installed, exit 1.
    let shorter = p.sign(
        "shorter.cfg",
        "phone",
        MAC,
        &[feature("h323", "new", t - DAY, Some(t + 50 * DAY))],
    );
    let out = p.install(&shorter, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lasts longer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.license_files(), before);
}

#[test]
fn an_unsynced_clock_refuses_to_judge_and_says_so() {
    let p = phone();
    let t = now();
    let lic = p.sign(
        "phone.cfg",
        "phone",
        MAC,
        &[feature("vqmon", "new", t - DAY, None)],
    );
    // 1970: before this agent's build.
    let out = p.install(&lic, Some(0));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("clock-unsynced"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(p.license_files().is_empty());
    let s = p.status(&[], Some(0));
    assert_eq!(s["clock"], "unsynced");
    assert_eq!(s["evaluated_at"], Value::Null);
    assert!(s["licenses"].as_array().unwrap().is_empty());
}

#[test]
fn a_wound_back_clock_never_revives_an_expired_license() {
    let p = phone();
    let t = now() + 10 * DAY;
    let site = p.sign(
        "site.cfg",
        "site",
        SITE,
        &[feature("vqmon", "new", t - 100 * DAY, Some(t + 5 * DAY))],
    );
    let phone_lic = p.sign(
        "phone.cfg",
        "phone",
        MAC,
        &[feature("lync", "new", t - 100 * DAY, None)],
    );
    assert_eq!(p.install(&site, Some(t)).status.code(), Some(0));
    // Ten days later another install persists the later trusted time.
    assert_eq!(
        p.install(&phone_lic, Some(t + 10 * DAY)).status.code(),
        Some(0)
    );
    let later = p.status(&[], Some(t + 10 * DAY));
    assert_eq!(later["clock"], "ok");
    assert_eq!(later["latest_trusted"], rfc(t + 10 * DAY));
    assert_eq!(
        later["enabled"],
        serde_json::json!(["lync"]),
        "vqmon ended at t + 5 days"
    );
    // The clock wound back to t, when vqmon was still in force: judged at the trusted
    // time instead, so vqmon stays off, and the status says why.
    let wound = p.status(&[], Some(t));
    assert_eq!(wound["clock"], "windback");
    assert_eq!(wound["evaluated_at"], rfc(t + 10 * DAY));
    assert_eq!(wound["enabled"], serde_json::json!(["lync"]));
    // Half a day back is within the 24 h tolerance: judged at the wall clock.
    let slight = p.status(&[], Some(t + 10 * DAY - DAY / 2));
    assert_eq!(slight["clock"], "ok");
    assert_eq!(slight["evaluated_at"], rfc(t + 10 * DAY - DAY / 2));
}

#[test]
fn usage_and_configuration_errors_exit_two() {
    let p = phone();
    let out = run(agent(), ["status", "--config", "/nonexistent/agent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.toml"));
    std::fs::write(&p.config, "mac = \"0004f2000001\"\nkeyring = \"keyring\"\nstate_dir = \"state\"\nsupervisor = \"none\"\nbogus = 1\n").unwrap();
    // An unknown key is set aside (read as if absent) and said: status still shows.
    let out = run(agent(), ["status", "--config", p.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("agent.toml: bogus: ") && err.contains("; set aside: read as if absent"),
        "{err}"
    );
    // A bad value the phone cannot run without still stops every command.
    std::fs::write(
        &p.config,
        "mac = \"0004f2000001\"\nkeyring = \"keyring\"\nstate_dir = 7\nsupervisor = \"none\"\n",
    )
    .unwrap();
    let out = run(agent(), ["status", "--config", p.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("agent.toml: state_dir: "), "{err}");
    let out = run(agent(), ["install", "--config", p.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(agent(), ["status", "--at", "tomorrow"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_demo_configuration_and_the_documented_example_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // status is read-only: it creates nothing, even where the demo state does not exist yet.
    let out = run(
        agent(),
        [
            "status".as_ref(),
            "--json".as_ref(),
            "--config".as_ref(),
            root.join("examples/demo/agent.toml").as_os_str(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["mac"], MAC);
    assert_eq!(v["site_serial"], SITE);
    // The example in the module documentation parses as it stands.
    let example = std::fs::read_to_string(root.join("src/config/example.toml")).unwrap();
    license_agent::config::Config::parse(&example, &root.join("agent.toml")).unwrap();
}

/// `status --report`: the fleet report (docs/report-schema.md) of what `status` shows;
/// a site license installed on two phones has one fingerprint; a refusal of a file
/// signed with a key this phone does not trust names that key.
#[test]
fn the_fleet_report_names_licenses_by_fingerprint_and_refusals_by_key() {
    let p = phone();
    let t = now();
    let site = p.sign(
        "site.cfg",
        "site",
        SITE,
        &[feature("vqmon", "new", t - DAY, Some(t + 100 * DAY))],
    );
    assert_eq!(p.install(&site, None).status.code(), Some(0));
    let stranger = common::own_vectors().join("unknown-key-stranger.cfg");
    assert_ne!(p.install(&stranger, None).status.code(), Some(0));
    // A second phone of the same site (same keyring, its own store and MAC).
    let second = p.dir.path().join("second.toml");
    std::fs::write(
        &second,
        format!("mac = \"0004f2000002\"\nsite_serial = \"{SITE}\"\nkeyring = \"keyring\"\nstate_dir = \"state2\"\nsupervisor = \"none\"\n"),
    )
    .unwrap();
    let installed = run(
        agent(),
        [
            "install".as_ref(),
            "--config".as_ref(),
            second.as_os_str(),
            site.as_os_str(),
        ],
    );
    assert_eq!(installed.status.code(), Some(0));

    let report = |config: &Path| -> Value {
        let out = run(
            agent(),
            [
                "status".as_ref(),
                "--report".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let (first, other) = (report(&p.config), report(&second));
    assert_eq!(first["schema"], "license-agent-report/1");
    assert_eq!(first["mac"], MAC);
    assert_eq!(other["mac"], "0004f2000002");
    assert_eq!(first["agent"]["version"], env!("CARGO_PKG_VERSION"));
    let fingerprint = first["licenses"][0]["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 64, "{first:#}");
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(other["licenses"][0]["fingerprint"], fingerprint);
    // Its signed content rebuilds the signed message, which hashes to the fingerprint.
    let signed = &first["licenses"][0]["signed"];
    let part = |name: &str| signed[name].as_str().unwrap_or_else(|| panic!("{first:#}"));
    let mut message = format!(
        "PLCM-LICENSE-2.0\n{}\n{}\n{}\n",
        part("serial"),
        part("description"),
        part("key")
    )
    .into_bytes();
    message.extend(hex::decode(part("features")).unwrap());
    let digest = ring::digest::digest(&ring::digest::SHA256, &message);
    assert_eq!(hex::encode(digest), fingerprint, "{first:#}");
    assert_eq!(part("signature").len(), 128);
    assert_eq!(first["dropped"], serde_json::json!([]), "{first:#}");
    assert_eq!(first["features"][0]["name"], "vqmon");
    let refusal = &first["refusals"][0];
    assert_eq!(refusal["verdict"], "unknown-key", "{first:#}");
    let key = refusal["key"].as_str().unwrap();
    assert!(
        refusal["detail"].as_str().unwrap().contains(key) && !key.is_empty(),
        "{first:#}"
    );
    // The service provider's side: the two reports in a folder, read by license-fleet
    // (with a file that is not a report beside them).
    let uploads = p.dir.path().join("uploads");
    std::fs::create_dir(&uploads).unwrap();
    for r in [&first, &other] {
        let name = format!("{}-license-status.json", r["mac"].as_str().unwrap());
        std::fs::write(uploads.join(name), r.to_string()).unwrap();
    }
    std::fs::write(uploads.join("0004f2000009-license-status.json"), "garbage").unwrap();
    let out = run(common::fleet(), ["--json".as_ref(), uploads.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(view["fleet"]["phones"], 2, "{view:#}");
    assert_eq!(
        view["fleet"]["summary"]["all"], 1,
        "one site license, two phones: {view:#}"
    );
    assert_eq!(view["fleet"]["summary"]["active"], 1, "{view:#}");
    assert_eq!(view["fleet"]["rows"][0]["phones"], 2, "{view:#}");
    assert_eq!(view["fleet"]["rows"][0]["feature"], "vqmon", "{view:#}");
    assert_eq!(view["unreadable"].as_array().unwrap().len(), 1, "{view:#}");
    assert_eq!(
        view["fleet"]["attention"][0]["what"], "unknown-key",
        "{view:#}"
    );
    assert_eq!(view["fleet"]["verified"], false, "no keyring: {view:#}");
    // With the phones' keyring: the real agents' signed content verifies; with a
    // keyring that does not hold the vendor's key, nothing counts.
    let keyring = p.dir.path().join("keyring");
    let verified = |ring: &Path| -> Value {
        let out = run(
            common::fleet(),
            [
                "--keyring".as_ref(),
                ring.as_os_str(),
                "--json".as_ref(),
                uploads.as_os_str(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let view = verified(&keyring);
    assert_eq!(view["fleet"]["verified"], true, "{view:#}");
    assert_eq!(view["fleet"]["rows"][0]["verified"], true, "{view:#}");
    assert_eq!(view["fleet"]["rows"][0]["phones"], 2, "{view:#}");
    let stranger = p.dir.path().join("stranger-keyring");
    std::fs::write(
        &stranger,
        format!("ed25519 {} someone else\n", "ab".repeat(32)),
    )
    .unwrap();
    let view = verified(&stranger);
    assert_eq!(
        view["fleet"]["rows"].as_array().unwrap().len(),
        0,
        "{view:#}"
    );
    let unverified: Vec<&Value> = view["fleet"]["attention"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["what"] == "unverified-license")
        .collect();
    assert_eq!(unverified.len(), 1, "{view:#}");
    assert_eq!(
        unverified[0]["phones"].as_array().unwrap().len(),
        2,
        "{view:#}"
    );

    // --json and --report are one or the other.
    let both = run(
        agent(),
        [
            "status".as_ref(),
            "--report".as_ref(),
            "--json".as_ref(),
            "--config".as_ref(),
            p.config.as_os_str(),
        ],
    );
    assert_eq!(both.status.code(), Some(2));
}
