//! Vendor keys rotated and revoked in the field (`docs/trust-update.md`, issue 28), with
//! the real binaries and real servers: `license-issuer` holds the ceremony (draft, one
//! signature per root key, assemble), nginx and vsftpd serve the documents beside the
//! license files, and `license-agent` on phones at every earlier version catches up,
//! takes the licenses of the new key and sets aside those of the removed one with the
//! reason; every hostile document is refused with its verdict and nothing that
//! verifies is lost.

use crate::common;

use std::path::Path;

use common::bounded;
use common::ftp::{Security, Vsftpd};
use common::phone::{Phone, Sim, DAY, MAC, PHONE_FILE, SITE, SITE_FILE};
use common::vendor::Vendor;
use common::{now, rfc, stdout};
use serde_json::Value;

/// A phone whose firmware keyring is `keyring`, fetching from `server`.
fn phone(keyring: &str, server: &str) -> Phone {
    let phone = Phone::new(&format!("server = \"{server}\"\n"));
    std::fs::write(phone.path("keyring"), keyring).unwrap();
    phone
}

/// `run --once` at `t`: what it said.
fn boot(phone: &Phone, t: i64) -> String {
    let out = bounded::run(bounded::command(phone, &["run", "--once"], Some(t), None));
    assert!(out.status.success(), "{}", bounded::text(&out));
    bounded::text(&out)
}

/// `status --json` at `t`, read from the store.
fn status(phone: &Phone, t: i64) -> Value {
    let out = bounded::run(bounded::command(
        phone,
        &["status", "--json"],
        Some(t),
        None,
    ));
    assert!(out.status.success(), "{}", bounded::text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn enabled(status: &Value) -> Vec<String> {
    status["enabled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The rotation the tests post: the firmware trusts roots A, B, C (2 to sign) and
/// license key L0; version 1 adds license key L1; version 2 replaces root A with D and
/// removes L0 (it leaked).
struct Rotation {
    vendor: Vendor,
    firmware: String,
    docs: Vec<Vec<u8>>,
}

fn rotation() -> Rotation {
    let vendor = Vendor::new();
    let firmware = vendor.firmware(2, &["root-a", "root-b", "root-c"], &["l0"]);
    let one = vendor.ceremony(
        1,
        "never",
        2,
        &["root-a", "root-b", "root-c"],
        &["l0", "l1"],
        &["root-a", "root-c"],
    );
    // B and C sign for the old roots and, kept, for the new ones; D signs too.
    let two = vendor.ceremony(
        2,
        "never",
        2,
        &["root-b", "root-c", "root-d"],
        &["l1"],
        &["root-b", "root-c", "root-d"],
    );
    Rotation {
        vendor,
        firmware,
        docs: vec![one, two],
    }
}

/// Posts the documents up to `upto` and the licenses, through `put`.
fn post(r: &Rotation, upto: usize, t: i64, put: &dyn Fn(&str, &[u8])) {
    for (i, doc) in r.docs.iter().take(upto).enumerate() {
        put(&format!("trust-{}.cfg", i + 1), doc);
    }
    put(SITE_FILE, &r.vendor.license("l1", "site", "vqmon", t));
}

/// The whole rotation on one server: a phone at version 0 holding a phone license of
/// L0 catches up to version 2 in one boot; a second phone takes version 1 first (only
/// it is posted), then version 2; both take the site license of L1 and set the L0
/// license aside with the reason, in `status` and in the store's `rejected/`.
fn rotation_on(server: &str, put: &dyn Fn(&str, &[u8])) {
    let t = now();
    let r = rotation();

    // Phone A: firmware version 0, a phone license of L0 installed by hand.
    let a = phone(&r.firmware, server);
    let installed = r.vendor.license("l0", "phone", "lync", t);
    a.install_at(&installed, t);
    // Phone B: boots while only version 1 is posted.
    let b = phone(&r.firmware, server);
    b.install_at(&installed, t);
    post(&r, 1, t, put);
    let said = boot(&b, t);
    assert!(said.contains("trust-1.cfg accepted"), "{said}");
    let s = status(&b, t);
    assert_eq!(s["trust"]["version"], 1, "{s:#}");
    assert!(enabled(&s).contains(&"vqmon".to_string()), "{s:#}");
    assert!(enabled(&s).contains(&"lync".to_string()), "{s:#}");

    // Version 2 posted: A catches up through 1 and 2 in one boot, B takes 2.
    post(&r, 2, t, put);
    for (p, asked) in [(&a, vec![1, 2]), (&b, vec![2])] {
        let said = boot(p, t);
        for v in &asked {
            assert!(said.contains(&format!("trust-{v}.cfg accepted")), "{said}");
        }
        assert!(said.contains("trust-3.cfg absent"), "{said}");
        let s = status(p, t);
        let trust = &s["trust"];
        assert_eq!(trust["version"], 2, "{s:#}");
        assert_eq!(trust["firmware_version"], 0);
        assert_eq!(trust["roots"], 3);
        assert_eq!(trust["root_threshold"], 2);
        assert_eq!(trust["last_update"]["verdict"], "taken");
        let aside = trust["set_aside"].as_array().unwrap();
        assert_eq!(aside.len(), 1, "{s:#}");
        let key = aside[0]["key"].as_str().unwrap();
        assert_eq!(
            aside[0]["reason"],
            format!("key {key} removed by trust version 2")
        );
        let file = aside[0]["file"].as_str().unwrap();
        assert_eq!(
            std::fs::read(file).unwrap(),
            installed,
            "kept whole in rejected/"
        );
        assert!(
            Path::new(&format!("{file}.why")).exists(),
            "the note beside it"
        );
        // The site license of L1 counts; the phone license of L0 does not.
        assert_eq!(enabled(&s), ["vqmon"], "{s:#}");
        assert!(s["licenses"].as_array().unwrap().len() == 1, "{s:#}");
        // The documents are kept, and a restart leads to the same trust.
        for v in 1..=2 {
            assert!(p.path(&format!("state/trust/trust-{v}.cfg")).is_file());
        }
        let again = status(p, t);
        assert_eq!(again["trust"]["version"], 2);
        assert!(again["trust"]["notes"].as_array().unwrap().is_empty());
    }

    // The removed key's license, posted again, is refused; the new key's is taken.
    put(PHONE_FILE, &r.vendor.license("l0", "phone", "lync", t));
    let said = boot(&a, t);
    assert!(said.contains(&format!("{PHONE_FILE} refused")), "{said}");
    assert!(said.contains("not in the trusted keyring"), "{said}");
    put(PHONE_FILE, &r.vendor.license("l1", "phone", "lync", t));
    let said = boot(&a, t);
    assert!(said.contains(&format!("{PHONE_FILE} accepted")), "{said}");
    assert_eq!(enabled(&status(&a, t)), ["vqmon", "lync"]);
}

#[test]
fn a_key_rotation_over_nginx_brings_every_phone_to_the_newest_trust() {
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    rotation_on(&nginx.http_url(), &|name, bytes| nginx.put(name, bytes));
}

#[test]
fn a_key_rotation_over_vsftpd_brings_every_phone_to_the_newest_trust() {
    let work = tempfile::tempdir().unwrap();
    let ftp = Vsftpd::start(work.path(), Security::Plain, "");
    rotation_on(&ftp.url(), &|name, bytes| ftp.put(name, bytes));
}

/// Every hostile version 3, posted in turn where version 3 goes on a phone at version 2,
/// is refused with its verdict, and nothing changes: the trust, the licenses held, the
/// features. Then the genuine version 3 is taken, and an old document posted as
/// version 4 (a replay) is refused as not newer.
#[test]
fn every_hostile_update_is_refused_with_its_verdict_and_nothing_is_lost() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let r = rotation();
    let p = phone(&r.firmware, &nginx.http_url());
    post(&r, 2, t, &|name, bytes| nginx.put(name, bytes));
    nginx.put(PHONE_FILE, &r.vendor.license("l1", "phone", "lync", t));
    boot(&p, t);
    let before = status(&p, t);
    assert_eq!(before["trust"]["version"], 2, "{before:#}");
    assert_eq!(enabled(&before), ["vqmon", "lync"]);

    let v = &r.vendor;
    let roots = ["root-b", "root-c", "root-d"];
    let licenses = ["l1", "l2"];
    let mut twice = v.unchecked(3, 2, &roots, &licenses, &["root-b"]);
    twice.extend(std::fs::read(v.signature(3, "root-b")).unwrap());
    let mut oversize = v.unchecked(3, 2, &roots, &licenses, &["root-b", "root-c"]);
    oversize.resize(16_385, b'\n');
    let skips = {
        let mut text = v.unchecked(4, 2, &roots, &licenses, &["root-b", "root-c"]);
        text.extend(b"# posted as version 3\n");
        text
    };
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "one signature of two",
            v.unchecked(3, 2, &roots, &licenses, &["root-b"]),
            "below the old threshold",
        ),
        ("the same key twice", twice, "malformed"),
        (
            "the old roots only, for new roots",
            v.unchecked(
                3,
                2,
                &["root-e", "root-f"],
                &licenses,
                &["root-b", "root-c"],
            ),
            "below its own threshold",
        ),
        (
            "the new roots only",
            v.unchecked(
                3,
                2,
                &["root-e", "root-f"],
                &licenses,
                &["root-e", "root-f"],
            ),
            "below the old threshold",
        ),
        (
            "a root removed in version 2 with one kept",
            v.unchecked(3, 2, &roots, &licenses, &["root-a", "root-b"]),
            "below the old threshold",
        ),
        ("version 2 again", r.docs[1].clone(), "not newer"),
        ("version 1 again", r.docs[0].clone(), "not newer"),
        ("version 4", skips, "skips a version"),
        ("16,385 bytes", oversize, "malformed"),
        ("100,000 bytes", vec![b'#'; 100_000], "malformed"),
        (
            "not a document",
            b"<html>not found</html>\n".to_vec(),
            "malformed",
        ),
        (
            "another format",
            b"license-agent-trust 2\nversion 3\n".to_vec(),
            "unsupported version",
        ),
    ];
    for (what, bytes, verdict) in hostile {
        nginx.put("trust-3.cfg", &bytes);
        let said = boot(&p, t);
        assert!(
            said.contains(&format!("trust-3.cfg refused: {verdict}")),
            "{what}: {said}"
        );
        let s = status(&p, t);
        assert_eq!(s["trust"]["version"], 2, "{what}: {s:#}");
        assert_eq!(s["trust"]["last_update"]["version"], 3, "{what}");
        assert_eq!(s["trust"]["last_update"]["verdict"], verdict, "{what}");
        assert_eq!(enabled(&s), ["vqmon", "lync"], "{what}: {s:#}");
        assert_eq!(s["licenses"], before["licenses"], "{what}: nothing lost");
        assert!(!p.path("state/trust/trust-3.cfg").exists(), "{what}");
    }
    // The hostile document taken off the server: its refusal no longer stands.
    nginx.remove("trust-3.cfg");
    let said = boot(&p, t);
    assert!(said.contains("trust-3.cfg absent"), "{said}");
    let s = status(&p, t);
    assert_eq!(s["trust"]["last_update"], Value::Null, "{s:#}");
    // The genuine one.
    let three = v.ceremony(3, "never", 2, &roots, &licenses, &["root-c", "root-d"]);
    nginx.put("trust-3.cfg", &three);
    let said = boot(&p, t);
    assert!(said.contains("trust-3.cfg accepted"), "{said}");
    // Replays of older documents where version 4 goes.
    for old in [&r.docs[0], &r.docs[1], &three] {
        nginx.put("trust-4.cfg", old);
        let said = boot(&p, t);
        assert!(said.contains("trust-4.cfg refused: not newer"), "{said}");
        let s = status(&p, t);
        assert_eq!(s["trust"]["version"], 3, "{s:#}");
        assert_eq!(enabled(&s), ["vqmon", "lync"]);
    }
}

/// Freeze (`docs/trust-update.md`): version 1 expires a day after it is taken. Past
/// that, a license not stored already is refused as "trust expired" while the stored
/// ones keep their features, and status says so; version 2, posted, thaws the phone
/// and the refused license is taken in the same cycle.
#[test]
fn an_expired_trust_refuses_new_licenses_keeps_the_stored_ones_and_an_update_thaws_it() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let v = Vendor::new();
    let firmware = v.firmware(1, &["root-a"], &["l0"]);
    let one = v.ceremony(1, &rfc(t + DAY), 1, &["root-a"], &["l0"], &["root-a"]);
    let p = phone(&firmware, &nginx.http_url());
    nginx.put("trust-1.cfg", &one);
    nginx.put(SITE_FILE, &v.license("l0", "site", "vqmon", t));
    let said = boot(&p, t);
    assert!(said.contains("trust-1.cfg accepted"), "{said}");
    assert!(said.contains(&format!("{SITE_FILE} accepted")), "{said}");

    let later = t + 2 * DAY;
    nginx.put(PHONE_FILE, &v.license("l0", "phone", "lync", t));
    let said = boot(&p, later);
    assert!(said.contains(&format!("{PHONE_FILE} refused")), "{said}");
    assert!(
        said.contains("trust expired: trust version 1 expired at"),
        "{said}"
    );
    assert!(said.contains(&format!("{SITE_FILE} unchanged")), "{said}");
    let s = status(&p, later);
    assert_eq!(s["trust"]["expired"], true, "{s:#}");
    assert_eq!(enabled(&s), ["vqmon"], "the stored license stays in force");
    let text = stdout(&bounded::run(bounded::command(
        &p,
        &["status"],
        Some(later),
        None,
    )));
    assert!(
        text.contains("trust version 1 expired at") && text.contains("are refused"),
        "{text}"
    );
    // Installing by hand is refused the same way.
    let file = p.path("by-hand.cfg");
    std::fs::write(&file, v.license("l0", "phone", "lync", t)).unwrap();
    let out = bounded::run({
        let mut cmd = bounded::command(&p, &["install"], Some(later), None);
        cmd.arg(&file);
        cmd
    });
    assert!(!out.status.success(), "{}", bounded::text(&out));
    assert!(
        bounded::text(&out).contains("trust expired"),
        "{}",
        bounded::text(&out)
    );

    // Version 2, which never expires, thaws it: the license is taken in that cycle.
    let two = v.ceremony(2, "never", 1, &["root-a"], &["l0"], &["root-a"]);
    nginx.put("trust-2.cfg", &two);
    let said = boot(&p, later);
    assert!(said.contains("trust-2.cfg accepted"), "{said}");
    assert!(said.contains(&format!("{PHONE_FILE} accepted")), "{said}");
    let s = status(&p, later);
    assert_eq!(s["trust"]["expired"], false);
    assert_eq!(enabled(&s), ["vqmon", "lync"]);
}

/// A phone far behind catches up 16 versions a cycle, in order, each verified against
/// the one before; the rest at the next cycle.
#[test]
fn a_phone_far_behind_catches_up_sixteen_versions_a_cycle() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let v = Vendor::new();
    let firmware = v.firmware(1, &["root-a"], &["l0"]);
    // Each version hands the roots on: A, then B, then A again, ...
    for version in 1..=20u32 {
        let (old, new) = if version % 2 == 1 {
            ("root-a", "root-b")
        } else {
            ("root-b", "root-a")
        };
        let doc = v.ceremony(version, "never", 1, &[new], &["l0"], &[old, new]);
        nginx.put(&format!("trust-{version}.cfg"), &doc);
    }
    let p = phone(&firmware, &nginx.http_url());
    let said = boot(&p, t);
    assert!(said.contains("trust-16.cfg accepted"), "{said}");
    assert!(!said.contains("trust-17.cfg"), "{said}");
    assert_eq!(status(&p, t)["trust"]["version"], 16);
    let said = boot(&p, t);
    assert!(said.contains("trust-20.cfg accepted"), "{said}");
    assert!(said.contains("trust-21.cfg absent"), "{said}");
    assert_eq!(status(&p, t)["trust"]["version"], 20);
}

/// A license set aside because version 1 removed its key is taken back, from
/// `rejected/`, when version 2 trusts the key again.
#[test]
fn a_license_set_aside_is_taken_back_when_a_later_version_trusts_its_key_again() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let v = Vendor::new();
    let firmware = v.firmware(1, &["root-a"], &["l0", "l1"]);
    let p = phone(&firmware, &nginx.http_url());
    p.install_at(&v.license("l0", "phone", "lync", t), t);
    nginx.put(
        "trust-1.cfg",
        &v.ceremony(1, "never", 1, &["root-a"], &["l1"], &["root-a"]),
    );
    boot(&p, t);
    let s = status(&p, t);
    assert_eq!(
        s["trust"]["set_aside"].as_array().unwrap().len(),
        1,
        "{s:#}"
    );
    assert!(enabled(&s).is_empty(), "{s:#}");
    nginx.put(
        "trust-2.cfg",
        &v.ceremony(2, "never", 1, &["root-a"], &["l0", "l1"], &["root-a"]),
    );
    boot(&p, t);
    let s = status(&p, t);
    assert_eq!(s["trust"]["version"], 2);
    assert!(
        s["trust"]["set_aside"].as_array().unwrap().is_empty(),
        "{s:#}"
    );
    assert_eq!(enabled(&s), ["lync"], "{s:#}");
}

/// An update that removes the key of licenses in force, taken by the running daemon
/// during a call: the features leave by the rules (the set published at once), and
/// the reboot is asked only once the phone is idle, never mid-call.
#[test]
fn revoking_the_key_of_licenses_in_force_reboots_only_when_idle() {
    use common::nginx::{BASIC_PASSWORD, BASIC_USER};
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let v = Vendor::new();
    let firmware = v.firmware(1, &["root-a"], &["l0", "l1"]);
    let socket = work.path().join("supervisor.sock");
    let p = Phone::new(&format!(
        "server = \"{}\"\nsupervisor_socket = \"{}\"\nreport = true\n\
         [fetch]\nusername = \"{BASIC_USER}\"\npassword = \"{BASIC_PASSWORD}\"\n",
        nginx.basic_url(),
        socket.display()
    ));
    std::fs::write(p.path("keyring"), &firmware).unwrap();
    nginx.put(SITE_FILE, &v.license("l0", "site", "vqmon", t));
    nginx.put(PHONE_FILE, &v.license("l1", "phone", "lync", t));
    let mut sim = Sim::start(&socket, work.path().join("sim.log"));
    let daemon = p.start(Some(t));
    sim.wait_for("recv FEATURES vqmon,lync", 1);

    sim.command("call active");
    daemon.wait_status("call active", |s| {
        s["daemon"]["call_state"]
            .as_str()
            .is_some_and(|c| c.starts_with("active"))
    });
    nginx.put(
        "trust-1.cfg",
        &v.ceremony(1, "never", 1, &["root-a"], &["l1"], &["root-a"]),
    );
    let answer = daemon.request(r#"{"cmd":"check-sync"}"#);
    assert!(answer.to_string().contains("trust-1.cfg"), "{answer}");
    sim.wait_for("recv FEATURES lync", 1);
    let s = daemon.wait_status("a pending reboot", |s| {
        s["daemon"]["reboot"]["pending"] == true
    });
    assert_eq!(s["trust"]["version"], 1, "{s:#}");
    assert!(
        s["trust"]["set_aside"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .ends_with("removed by trust version 1"),
        "{s:#}"
    );
    assert_eq!(s["daemon"]["reboot"]["waiting_for"], "idle", "{s:#}");
    // The status report the fleet reads says it too.
    let report_file = work.path().join(format!("www/{MAC}-license-status.json"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let report: Value = loop {
        let read = std::fs::read(&report_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(|r| r["trust"]["version"] == 1);
        if let Some(report) = read {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no report with trust version 1"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let aside = &report["trust"]["set_aside"][0];
    assert_eq!(
        aside["license"],
        format!("site license {SITE}"),
        "{report:#}"
    );
    assert_eq!(report["trust"]["last_update"]["verdict"], "taken");
    // A day in the call: nothing is asked.
    daemon.set_time(t + DAY);
    sim.barrier();
    assert_eq!(sim.count("recv REBOOT"), 0, "{}", sim.record());

    sim.command("call idle");
    daemon.wait_status("call idle", |s| {
        s["daemon"]["call_state"]
            .as_str()
            .is_some_and(|c| c.starts_with("idle"))
    });
    // Past the idle grace and any stagger delay.
    daemon.set_time(t + DAY + 3_700);
    let record = sim.wait_for("recv REBOOT", 1);
    assert_eq!(sim.count("recv REBOOT"), 1, "{record}");
    assert!(!record.contains("violation"), "{record}");
}

#[test]
fn a_key_rotation_over_tftp_brings_every_phone_to_the_newest_trust() {
    let work = tempfile::tempdir().unwrap();
    let tftp = common::tftp::Tftpd::start(work.path(), &[]);
    rotation_on(&tftp.url(), &|name, bytes| tftp.put(name, bytes));
}

/// A stored trust document damaged on the flash, or the `trust/` folder replaced by a
/// file: the chain stops before it, and a license of a key only a later version trusts
/// is kept in place (not used, not moved); the next cycle takes the versions again from
/// the server and uses it (a file where the folder goes is set aside first). No license
/// is lost or set aside.
#[test]
fn a_damaged_trust_store_loses_no_license() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let r = rotation();
    let p = phone(&r.firmware, &nginx.http_url());
    post(&r, 2, t, &|name, bytes| nginx.put(name, bytes));
    boot(&p, t);
    assert_eq!(enabled(&status(&p, t)), ["vqmon"]);
    let rejected = || std::fs::read_dir(p.path("state/rejected")).unwrap().count();
    assert_eq!(rejected(), 0);

    // A bit flipped in version 1.
    let one = p.path("state/trust/trust-1.cfg");
    let mut bytes = std::fs::read(&one).unwrap();
    let at = bytes.len() - 20;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&one, bytes).unwrap();
    let s = status(&p, t);
    assert_eq!(s["trust"]["version"], 0, "{s:#}");
    assert!(!s["trust"]["notes"].as_array().unwrap().is_empty(), "{s:#}");
    assert!(s["licenses"].as_array().unwrap().is_empty(), "{s:#}");
    let kept = s["set_aside"][0]["reason"].as_str().unwrap_or_default();
    assert!(kept.contains("kept in place"), "{s:#}");
    // The next cycle: versions 1 and 2 again from the server, the license used again.
    let said = boot(&p, t);
    assert!(said.contains("trust-1.cfg accepted"), "{said}");
    assert!(said.contains("trust-2.cfg accepted"), "{said}");
    let s = status(&p, t);
    assert_eq!(s["trust"]["version"], 2, "{s:#}");
    assert_eq!(enabled(&s), ["vqmon"], "{s:#}");
    assert_eq!(s["licenses"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(rejected(), 0, "nothing set aside");

    // The folder replaced by a file: the license is kept in place meanwhile; the next
    // update sets the file aside (it is not the agent's to remove), puts the folder
    // back and stores the versions again: the license is used again.
    std::fs::remove_dir_all(p.path("state/trust")).unwrap();
    std::fs::write(p.path("state/trust"), b"not a folder").unwrap();
    let s = status(&p, t);
    assert!(s["licenses"].as_array().unwrap().is_empty(), "{s:#}");
    assert_eq!(rejected(), 0, "nothing set aside yet");
    let said = boot(&p, t);
    assert!(said.contains("trust-1.cfg accepted"), "{said}");
    assert!(said.contains("trust-2.cfg accepted"), "{said}");
    let s = status(&p, t);
    assert_eq!(s["trust"]["version"], 2, "{s:#}");
    assert_eq!(enabled(&s), ["vqmon"], "{s:#}");
    assert!(p.path("state/trust/trust-2.cfg").is_file());
    let aside: Vec<String> = std::fs::read_dir(p.path("state/rejected"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(aside.len(), 2, "the stranger and its note only: {aside:?}");
    assert!(aside.iter().all(|n| n.contains("-trust")), "{aside:?}");
    assert!(p.path("state/site").read_dir().unwrap().count() == 1);
}

/// A firmware rolled back to an agent before trust updates, and forward again: the old
/// agent, trusting its old keyring only, set a hand-installed license of a key a trust
/// update added aside (`unknown-key`, in `rejected/` with its note, as that agent
/// writes it); the agent back on the phone, holding that update again from its store,
/// takes the license back at its first cycle (not on the server: nothing else would).
#[test]
fn a_license_an_older_agent_set_aside_comes_back_with_the_trust_that_has_its_key() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let v = Vendor::new();
    let firmware = v.firmware(1, &["root-a"], &["l0"]);
    nginx.put(
        "trust-1.cfg",
        &v.ceremony(1, "never", 1, &["root-a"], &["l0", "l1"], &["root-a"]),
    );
    let p = phone(&firmware, &nginx.http_url());
    boot(&p, t);
    assert_eq!(status(&p, t)["trust"]["version"], 1);
    // What the older agent left: the license and its note, as its store writes them.
    let license = v.license("l1", "phone", "lync", t);
    let key = v.key_id("l1");
    let aside = p.path(&format!("state/rejected/{}-phone-0000000007.cfg", t - 60));
    std::fs::write(&aside, &license).unwrap();
    std::fs::write(
        aside.with_extension("cfg.why"),
        format!(
            "no longer verifies: unknown-key: signed with key {key}, which is not in the trusted keyring (a newer vendor key needs a keyring update; otherwise the file is not genuine)\nmoved here from {} at {} (Unix {})\n",
            p.path("state/phone/0000000007.cfg").display(),
            rfc(t - 60),
            t - 60
        ),
    )
    .unwrap();
    assert!(enabled(&status(&p, t)).is_empty());
    boot(&p, t);
    let s = status(&p, t);
    assert_eq!(enabled(&s), ["lync"], "{s:#}");
    // Once: the next starts take nothing twice, and say nothing of it (no event, no
    // refusal in the report at every start).
    boot(&p, t);
    boot(&p, t);
    let s = status(&p, t);
    assert_eq!(s["licenses"].as_array().unwrap().len(), 1);
    let events: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert!(
        !events.iter().any(|w| *w == "identical" || *w == "refused"),
        "{events:?}"
    );
}
