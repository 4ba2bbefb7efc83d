//! The store across a firmware upgrade and a rollback, with the last release's real
//! binary: this agent reads what the last release wrote, the last release reads what
//! this agent wrote (ignoring what it does not know) and loses no license, and this
//! agent, back on the phone, holds all again. The rule is the developers' guide's: "A
//! store survives a firmware upgrade and a rollback to the previous release: fields are
//! added, never changed in meaning, and an older agent ignores what it does not know".
//!
//! `scripts/compat-check.sh` builds the release named in `.ci/previous-release` from
//! the repository's history and runs this module with `LICENSE_AGENT_PREVIOUS` set to
//! that binary; the test is `#[ignore]`d in a plain `cargo test`, which has no such
//! binary: `cargo test --test it -- --ignored previous_release::`.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bounded;
use common::now;
use common::phone::{Phone, PHONE_FILE, SITE_FILE};
use common::vendor::Vendor;
use serde_json::Value;

/// The last release's `license-agent`, from `LICENSE_AGENT_PREVIOUS`.
fn previous_binary() -> PathBuf {
    let bin = std::env::var_os("LICENSE_AGENT_PREVIOUS")
        .map(PathBuf::from)
        .expect("LICENSE_AGENT_PREVIOUS names the last release's license-agent: run scripts/compat-check.sh");
    assert!(bin.is_file(), "no binary at {}", bin.display());
    bin
}

/// Which agent runs: this one, or the last release's.
#[derive(Clone, Copy, Debug)]
enum Agent {
    This,
    Previous,
}

impl Agent {
    fn command(self, phone: &Phone, args: &[&str], t: i64) -> Command {
        match self {
            Agent::This => bounded::command(phone, args, Some(t), None),
            Agent::Previous => {
                let mut cmd = Command::new(previous_binary());
                cmd.args(args)
                    .arg("--config")
                    .arg(&phone.config)
                    .env("LICENSE_AGENT_TEST_NOW", t.to_string());
                cmd
            }
        }
    }

    /// `run --once` (the boot cycle); it must succeed.
    fn boot(self, phone: &Phone, t: i64) {
        let out = bounded::run(self.command(phone, &["run", "--once"], t));
        assert!(
            out.status.success(),
            "{self:?} agent, run --once: {}",
            bounded::text(&out)
        );
    }

    /// `status --json`, read from the store; it must succeed.
    fn status(self, phone: &Phone, t: i64) -> Value {
        let out = bounded::run(self.command(phone, &["status", "--json"], t));
        assert!(
            out.status.success(),
            "{self:?} agent, status: {}",
            bounded::text(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{self:?} agent, status --json: {e}"))
    }
}

fn enabled(status: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = status["enabled"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.sort_unstable();
    names
}

/// Every file under the store, path → bytes (`lock` left out).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                if name != "lock" {
                    out.insert(name, std::fs::read(&path).unwrap());
                }
            }
        }
    }
    out
}

/// Where the bytes `license` are in the store (paths), however named.
fn stored_at(store: &BTreeMap<String, Vec<u8>>, license: &[u8]) -> Vec<String> {
    store
        .iter()
        .filter(|(_, bytes)| bytes.as_slice() == license)
        .map(|(path, _)| path.clone())
        .collect()
}

/// Upgrade, rollback, upgrade again. The firmware keyring (the same in both releases)
/// trusts roots A and B (one signs) and license key L0; trust version 1 on the server
/// adds license key L1. The last release fetches a phone license of L0; this agent
/// takes version 1 and a site license of L1; the last release, back on the phone,
/// keeps the L0 license in force, sets the L1 one aside (its keyring does not know
/// L1) and leaves `trust/` alone; this agent, back again, holds version 1 and both
/// licenses, though the server no longer has the site license.
#[test]
#[ignore = "needs the last release's binary: scripts/compat-check.sh builds it and runs this with --ignored"]
fn a_store_survives_an_upgrade_a_rollback_and_an_upgrade_again() {
    let previous = previous_binary();
    eprintln!("the last release: {}", previous.display());
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let vendor = Vendor::new();
    let firmware = vendor.firmware(1, &["root-a", "root-b"], &["l0"]);
    let phone_l0 = vendor.license("l0", "phone", "vqmon", t);
    vendor.key("l1"); // made now, trusted from version 1 on
    let site_l1 = vendor.license("l1", "site", "usb-call-recording", t);
    let p = Phone::new(&format!("server = \"{}\"\n", nginx.http_url()));
    std::fs::write(p.path("keyring"), &firmware).unwrap();
    let store = p.path("state");

    // 1. The last release on the phone: it stores the L0 license.
    nginx.put(PHONE_FILE, &phone_l0);
    Agent::Previous.boot(&p, t);
    let s = Agent::Previous.status(&p, t);
    assert_eq!(
        enabled(&s),
        ["vqmon"],
        "the last release, first boot: {s:#}"
    );

    // 2. The upgrade: this agent reads the last release's store, takes trust version 1
    // and the L1 site license.
    nginx.put(
        "trust-1.cfg",
        &vendor.ceremony(
            1,
            "never",
            1,
            &["root-a", "root-b"],
            &["l0", "l1"],
            &["root-a"],
        ),
    );
    nginx.put(SITE_FILE, &site_l1);
    Agent::This.boot(&p, t + 60);
    let s = Agent::This.status(&p, t + 60);
    assert_eq!(s["trust"]["version"], 1, "after the upgrade: {s:#}");
    assert_eq!(
        enabled(&s),
        ["usb-call-recording", "vqmon"],
        "after the upgrade: {s:#}"
    );
    let before_rollback = files(&store);
    let trust_files: BTreeMap<&String, &Vec<u8>> = before_rollback
        .iter()
        .filter(|(path, _)| path.starts_with("trust/"))
        .collect();
    assert_eq!(trust_files.len(), 1, "{:?}", before_rollback.keys());

    // 3. The rollback: the last release starts on this agent's store, keeps the L0
    // license in force, and the L1 license (its keyring has no L1) is set aside, not
    // lost; it leaves trust/ as it was.
    nginx.remove(SITE_FILE);
    for round in 0..2 {
        Agent::Previous.boot(&p, t + 120 + round);
        let s = Agent::Previous.status(&p, t + 120 + round);
        assert_eq!(
            enabled(&s),
            ["vqmon"],
            "the last release, rolled back: {s:#}"
        );
        let now_stored = files(&store);
        let l1 = stored_at(&now_stored, &site_l1);
        assert!(
            l1.len() == 1 && l1[0].starts_with("rejected/"),
            "the L1 license after the rollback is at {l1:?}: {:?}",
            now_stored.keys()
        );
        for (path, bytes) in &trust_files {
            assert_eq!(
                now_stored.get(*path),
                Some(*bytes),
                "the last release changed {path}"
            );
        }
        let meta = now_stored.get("meta.json").expect("meta.json");
        serde_json::from_slice::<Value>(meta).expect("meta.json parses after the rollback");
    }

    // 4. The upgrade again: this agent holds version 1 from its store and takes the L1
    // license back (the server no longer has it); the L0 license never left.
    Agent::This.boot(&p, t + 180);
    let s = Agent::This.status(&p, t + 180);
    assert_eq!(s["trust"]["version"], 1, "upgraded again: {s:#}");
    assert_eq!(
        enabled(&s),
        ["usb-call-recording", "vqmon"],
        "upgraded again: {s:#}"
    );
    let after = files(&store);
    for (what, license) in [("L0 phone", &phone_l0), ("L1 site", &site_l1)] {
        let at = stored_at(&after, license);
        assert!(
            at.iter().any(|path| !path.starts_with("rejected/")),
            "the {what} license is at {at:?}"
        );
    }
    let s = Agent::This.status(&p, t + 180);
    assert!(
        s.get("store_write_failure").is_none(),
        "upgraded again: {s:#}"
    );
}
