//! Power cuts during a trust update on the emulated phone (issue 28: "the same [key
//! rotation] on the emulated phone with power cuts during the update";
//! `docs/trust-update.md`, "Rollback": "a power cut during an update leaves either the
//! old trust or the new one").
//!
//! The phone's firmware keyring has roots A, B, C (2 of them sign the next version) and
//! license key L0 (the lab's vendor key, as in `phone_cuts.rs`); the phone holds a phone
//! license of L0 (`vqmon`). The server has trust version 1 (adds license key L1), version
//! 2 (removes L0, replaces root A with D) and a site license of L1
//! (`usb-call-recording`), made by the vendor's ceremony (`common::vendor`).
//!
//! Every round starts from that phone, powered off cleanly (the flash restored to the
//! image taken once it had stored the L0 license): it boots at 1970, so the agent
//! fetches nothing until the clock is set; the clock is set and `license-agent
//! check-sync --json` run, and QEMU is killed with SIGKILL during the cycle, which takes
//! versions 1 and 2 (each stored durably before it is held), sets the L0 license aside
//! and stores the L1 site license. Half the rounds (a coin decides) cut at an instant
//! drawn over the time the clock set and an uncut check-sync take (measured first, round
//! 0); the other half are aimed at the n-th write to reach the flash after the clock was
//! sent (n up to the writes an uncut cycle made), so that the flash may hold writes the
//! guest has not flushed (the agent flushes at once, so it seldom does). The flash then
//! loses every unflushed write (even rounds) or keeps a seeded random half of their
//! 4 KiB pieces (odd rounds; `common/nbd.rs`).
//!
//! After each cut the phone boots again at 1970 and the store is inspected as the cut
//! left it:
//!
//! - every `trust/trust-N.cfg` is byte for byte the document posted as version N (whole),
//!   the stored versions are exactly 1 to the version held (`trust.version` 0, 1 or 2:
//!   nothing stored is left unread, nothing read that was not stored), and
//!   `trust.notes` is empty (nothing stored was found not to verify);
//! - below version 2 the L0 license is held in `phone/` and `rejected/` is empty; at
//!   version 2 it is in `rejected/` (whole, once) with a note giving the reason, and
//!   nothing else is: no license that verifies under the trust held is set aside;
//! - the L1 site license is held only from version 1 on; the agent holds what the
//!   folders hold; `meta.json` parses; no store write failure.
//!
//! Then the clock is set and check-syncs must bring the phone to version 2 with the L1
//! site license held and its feature published, the L0 license in `rejected/` with the
//! reason `key XXXXXXXX removed by trust version 2`, in its note and in
//! `trust.set_aside`, wherever the cut fell: before the update's own set-aside (the load
//! under version 2 gives the update's reason), or between the move and `meta.json` (the
//! start records it from the note). Found by this test: the record was lost in 8 of 40
//! cuts before the agent read it back from the notes. The notes left in `rejected/`
//! with no file beside them (a cut between the update's note and its move) are counted.
//!
//! `PHONE_TRUST_CUTS` sets the number of cuts (8); `PHONE_TRUST_CUTS_SEED` replays a
//! run's random choices. Needs the image (`scripts/phone-image.sh`), so its test is
//! `#[ignore]`d in a plain `cargo test`; `scripts/phone-check.sh` runs it beside
//! `phone_cuts`: `cargo test --test it -- --ignored --nocapture phone_trust_cuts::`.

use crate::common;
use crate::phone_cuts::{seed_from, sha256, wait_shell};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::nbd::{CutMode, CutReport, FlashServer, SplitMix64};
use common::now;
use common::phone::{PHONE_FILE, SITE_FILE};
use common::vendor::Vendor;
use common::vm::{Lab, Vm};

/// The agent's store on the phone (`state_dir` of the image's agent.toml).
const STORE: &str = "/data/license-agent";
/// The features file the agent publishes.
const FEATURES: &str = "/run/license-agent/features";
/// How long a command may take when no cut is due (a loaded machine is slow).
const SLOW: Duration = Duration::from_secs(60);
/// An aimed cut whose write never came comes this long after the clock was set anyway.
const AIM_LIMIT: Duration = Duration::from_secs(5);
/// How long the phone may take to come to the newest trust once the clock is set.
const RECOVERY: Duration = Duration::from_secs(150);
/// Separates the parts of one command's output (a line of its own).
const PART: &str = "----cut----";
const PART_LINE: &str = "----cut----\n";

/// What the host posted and what the phone should make of it.
struct Posted {
    /// The SHA-256 of trust version 1 and 2, as posted.
    trust: [String; 2],
    /// The phone license of L0 (stored before the rounds), and the site license of L1.
    phone_l0: String,
    site_l1: String,
    /// L0's key id.
    l0: String,
}

impl Posted {
    fn trust_version_of(&self, sha: &str) -> Option<u32> {
        self.trust
            .iter()
            .position(|s| s == sha)
            .map(|i| i as u32 + 1)
    }
}

/// The store as the phone shows it, from one command.
#[derive(Debug)]
struct Snapshot {
    /// `(sha256, path under the store)` of every file in `phone/`, `site/`,
    /// `rejected/` (notes included), `trust/` (temporaries included).
    files: Vec<(String, String)>,
    /// The notes in `rejected/`: path → text.
    notes: BTreeMap<String, String>,
    listing: String,
    meta: Option<String>,
    status: Value,
    status_text: String,
    /// The features file (`None` if missing).
    features: Option<String>,
}

impl Snapshot {
    fn command() -> String {
        let files = "phone/* site/* rejected/* trust/* trust/.tmp-*";
        format!(
            "cd {STORE}; sha256sum {files} 2>/dev/null; echo {PART}; \
             ls -la . phone site rejected trust 2>&1; echo {PART}; \
             for n in rejected/*.why; do [ -f \"$n\" ] && echo \"==> $n\" && cat \"$n\"; done; echo {PART}; \
             cat meta.json && echo && echo {PART} ok; echo {PART}; \
             cat {FEATURES} && echo {PART} ok; echo {PART}; \
             license-agent status --json"
        )
    }

    fn parse(out: &str) -> Snapshot {
        let mut parts = out.split(PART_LINE);
        let mut part = || parts.next().unwrap_or_default().to_string();
        let (sums, listing, notes_text, meta, features, status_text) =
            (part(), part(), part(), part(), part(), part());
        let files = sums
            .lines()
            .filter_map(|l| {
                let (sha, path) = l.split_once("  ")?;
                Some((sha.to_string(), path.to_string()))
            })
            .collect();
        let mut notes = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in notes_text.lines() {
            if let Some(path) = line.strip_prefix("==> ") {
                notes.extend(current.take());
                current = Some((path.to_string(), String::new()));
            } else if let Some((_, text)) = current.as_mut() {
                text.push_str(line);
                text.push('\n');
            }
        }
        notes.extend(current);
        let ok = format!("\n{PART} ok\n");
        Snapshot {
            files,
            notes,
            listing,
            meta: meta.strip_suffix(&ok).map(str::to_string),
            features: features
                .strip_suffix(&format!("{PART} ok\n"))
                .map(str::to_string),
            status: serde_json::from_str(&status_text).unwrap_or(Value::Null),
            status_text,
        }
    }

    fn take(vm: &mut Vm) -> Snapshot {
        match vm.try_sh(&Snapshot::command(), SLOW) {
            Ok((_, out)) => Snapshot::parse(&out),
            Err(e) => panic!("looking at the store: {e}\n{}", vm.diagnostics()),
        }
    }

    /// `(sha256, path)` of the files of `dir` (notes and temporaries included).
    fn in_dir(&self, dir: &str) -> Vec<(&str, &str)> {
        self.files
            .iter()
            .filter(|(_, path)| path.split_once('/').is_some_and(|(d, _)| d == dir))
            .map(|(sha, path)| (sha.as_str(), path.as_str()))
            .collect()
    }

    /// The SHA-256 of the licenses of `dir` (notes left out).
    fn licenses_in(&self, dir: &str) -> Vec<&str> {
        self.in_dir(dir)
            .into_iter()
            .filter(|(_, path)| !path.ends_with(".why"))
            .map(|(sha, _)| sha)
            .collect()
    }

    fn trust(&self) -> &Value {
        &self.status["trust"]
    }

    fn feature_names(&self) -> Vec<&str> {
        self.features
            .as_deref()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect()
    }
}

/// The round a finding is in.
struct Round<'a> {
    round: usize,
    seed: u64,
    mode: Option<CutMode>,
    report: CutReport,
    posted: &'a Posted,
}

impl Round<'_> {
    /// Fails the test with `finding` and everything that shows it.
    fn fail(&self, vm: &mut Vm, snap: &Snapshot, when: &str, finding: &str) -> ! {
        let mut text = format!(
            "TRUST POWER-CUT FINDING in round {} ({:?}; run seed {:#x}, PHONE_TRUST_CUTS_SEED={} replays the choices), {when}:\n{finding}\n{}\n",
            self.round, self.mode, self.seed, self.seed, self.report
        );
        let p = self.posted;
        let _ = writeln!(
            text,
            "posted: trust-1.cfg {}, trust-2.cfg {}, L0 phone license {}, L1 site license {}; L0 is key {}",
            p.trust[0], p.trust[1], p.phone_l0, p.site_l1, p.l0
        );
        let _ = writeln!(text, "-- files in the store (sha256, path) --");
        for (sha, path) in &snap.files {
            let _ = writeln!(text, "{sha}  {path}");
        }
        let _ = writeln!(text, "-- ls -la --\n{}", snap.listing);
        let _ = writeln!(text, "-- rejected/*.why --\n{:#?}", snap.notes);
        let _ = writeln!(
            text,
            "-- meta.json --\n{}",
            snap.meta.as_deref().unwrap_or("(missing or unreadable)")
        );
        let _ = writeln!(
            text,
            "-- features --\n{}",
            snap.features.as_deref().unwrap_or("(missing)")
        );
        let _ = writeln!(text, "-- status --json --\n{}", snap.status_text);
        panic!("{text}\n{}", vm.diagnostics());
    }
}

/// What the trust and the folders hold must be one state: checks common to the store
/// after a cut and after the recovery. Returns the trust version held, or the finding.
fn consistent(snap: &Snapshot, posted: &Posted) -> Result<u32, String> {
    if snap.status.is_null() {
        return Err("license-agent status --json gave no JSON".into());
    }
    let trust = snap.trust();
    let version = trust["version"]
        .as_u64()
        .ok_or_else(|| format!("no trust.version in the status: {trust}"))?;
    if version > 2 {
        return Err(format!("trust version {version} held: only 1 and 2 exist"));
    }
    let version = version as u32;
    if trust["notes"].as_array().is_none_or(|n| !n.is_empty()) {
        return Err(format!(
            "TORN TRUST?: the stored documents gave notes at load: {}",
            trust["notes"]
        ));
    }
    // Every stored document whole, and the stored versions exactly 1..=version.
    let mut stored = Vec::new();
    for (sha, path) in snap.in_dir("trust") {
        let name = path.trim_start_matches("trust/");
        if name.starts_with(".tmp-") {
            continue; // an unfinished write, never read
        }
        let Some(v) = posted.trust_version_of(sha) else {
            return Err(format!(
                "TORN TRUST: {path} (sha256 {sha}) is no document the server had"
            ));
        };
        if name != format!("trust-{v}.cfg") {
            return Err(format!("{path} holds trust version {v}"));
        }
        stored.push(v);
    }
    stored.sort_unstable();
    if stored != (1..=version).collect::<Vec<_>>() {
        return Err(format!(
            "trust version {version} held, but trust/ stores versions {stored:?}"
        ));
    }
    if meta_problem(snap).is_some() {
        return Err(meta_problem(snap).unwrap());
    }
    if let Some(failure) = snap.status.get("store_write_failure") {
        return Err(format!("the store reports a write failure: {failure}"));
    }
    // The licenses: the L0 license held below version 2, set aside (once, whole) at 2;
    // the L1 site license only from version 1 on; nothing else anywhere.
    let phone = snap.licenses_in("phone");
    let site = snap.licenses_in("site");
    let rejected = snap.licenses_in("rejected");
    let l0 = posted.phone_l0.as_str();
    if version < 2 {
        if phone != [l0] {
            return Err(format!(
                "LOST or wrong: at trust version {version} phone/ must hold the L0 license ({l0}) alone, it holds {phone:?}"
            ));
        }
        if !rejected.is_empty() {
            return Err(format!(
                "SET ASIDE wrongly: at trust version {version} (the L0 license verifies) rejected/ holds {rejected:?}"
            ));
        }
    } else {
        if !phone.is_empty() {
            return Err(format!(
                "at trust version 2 (L0 removed) phone/ still holds {phone:?}"
            ));
        }
        if rejected != [l0] {
            return Err(format!(
                "at trust version 2 rejected/ must hold the L0 license ({l0}) once and nothing else, it holds {rejected:?}"
            ));
        }
    }
    let site_ok = if version == 0 {
        site.is_empty()
    } else {
        site.is_empty() || site == [posted.site_l1.as_str()]
    };
    if !site_ok {
        return Err(format!(
            "at trust version {version} site/ holds {site:?} (the L1 site license is {})",
            posted.site_l1
        ));
    }
    // The agent holds what the folders hold.
    let mut on_disk: Vec<String> = snap
        .in_dir("phone")
        .into_iter()
        .chain(snap.in_dir("site"))
        .map(|(_, path)| format!("{STORE}/{path}"))
        .collect();
    let mut loaded: Vec<String> = snap.status["licenses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["file"].as_str().map(str::to_string))
        .collect();
    on_disk.sort();
    loaded.sort();
    if on_disk != loaded {
        return Err(format!(
            "the agent holds {loaded:?}, the folders hold {on_disk:?}"
        ));
    }
    // Set aside at load: nothing below version 2; at most the L0 license at 2.
    let rejected_l0 = rejected_path(snap, posted);
    for aside in snap.status["set_aside"].as_array().into_iter().flatten() {
        let file = aside["file"].as_str().unwrap_or_default();
        let from_phone = file.starts_with(&format!("{STORE}/phone/"));
        if version < 2 || !(from_phone || Some(file) == rejected_l0.as_deref()) {
            return Err(format!(
                "SET ASIDE wrongly at load (trust version {version}): {aside}"
            ));
        }
    }
    // What the update recorded: only the L0 license, with the reason.
    let reason = format!("key {} removed by trust version 2", posted.l0);
    for aside in trust["set_aside"].as_array().into_iter().flatten() {
        if version < 2
            || aside["key"].as_str() != Some(posted.l0.as_str())
            || aside["reason"].as_str() != Some(reason.as_str())
            || aside["version"].as_u64() != Some(2)
        {
            return Err(format!(
                "trust.set_aside has {aside} at trust version {version} (only the L0 license, `{reason}`, may be there at version 2)"
            ));
        }
    }
    Ok(version)
}

fn meta_problem(snap: &Snapshot) -> Option<String> {
    match &snap.meta {
        None => Some("meta.json is missing or unreadable".into()),
        Some(meta) => serde_json::from_str::<Value>(meta)
            .err()
            .map(|e| format!("meta.json does not parse: {e}")),
    }
}

/// Where the L0 license is in `rejected/` (its path on the phone).
fn rejected_path(snap: &Snapshot, posted: &Posted) -> Option<String> {
    snap.in_dir("rejected")
        .into_iter()
        .find(|(sha, path)| *sha == posted.phone_l0 && !path.ends_with(".why"))
        .map(|(_, path)| format!("{STORE}/{path}"))
}

/// At trust version 2: the L0 license set aside with the update's reason, in its note
/// and its record, or the finding.
fn how_set_aside(snap: &Snapshot, posted: &Posted) -> Result<(), String> {
    let file = rejected_path(snap, posted).ok_or("the L0 license is not in rejected/")?;
    let local = file.trim_start_matches(&format!("{STORE}/")).to_string();
    let note = snap
        .notes
        .get(&format!("{local}.why"))
        .ok_or_else(|| format!("no note {local}.why beside the set-aside L0 license"))?;
    let reason = format!("key {} removed by trust version 2", posted.l0);
    let recorded = snap.trust()["set_aside"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"].as_str() == Some(posted.l0.as_str()));
    let first = note.lines().next().unwrap_or_default();
    // Whenever the cut came (before the update's own set-aside, between the move and
    // `meta.json`), the reason is the update's and the record is there once the agent
    // has started: the load gives the reason, the notes in rejected/ the record.
    let Some(aside) = recorded else {
        return Err(format!(
            "UNRECORDED: the L0 license is in rejected/ ({first:?}) but trust.set_aside does not list it"
        ));
    };
    if aside["file"].as_str() != Some(file.as_str()) {
        return Err(format!(
            "trust.set_aside names {} for the L0 license, which is at {file}",
            aside["file"]
        ));
    }
    if first != reason || aside["reason"].as_str() != Some(reason.as_str()) {
        return Err(format!(
            "the L0 license's note says {first:?} and its record {}: not {reason:?}",
            aside["reason"]
        ));
    }
    Ok(())
}

/// After the clock is set: check-syncs bring the phone to trust version 2, the L1 site
/// license held and its feature published, the L0 license set aside. A reboot the agent
/// asks for (features changed) resets the clock to 1970: it is set again.
fn recover(vm: &mut Vm, round: &Round) -> (Snapshot, usize) {
    let posted = round.posted;
    let deadline = Instant::now() + RECOVERY;
    let mut syncs = 0;
    loop {
        let command = format!(
            "[ \"$(phone-clock get)\" -lt 1000000000 ] && phone-clock set {}; \
             license-agent check-sync --json >/dev/null 2>&1; {}",
            now(),
            Snapshot::command()
        );
        let snap = match vm.try_sh(&command, Duration::from_secs(30)) {
            Ok((_, out)) => {
                syncs += 1;
                Some(Snapshot::parse(&out))
            }
            Err(_) => None, // rebooting: ask again
        };
        if let Some(snap) = snap {
            let state = consistent(&snap, posted);
            let done = matches!(state, Ok(2))
                && snap.licenses_in("site") == [posted.site_l1.as_str()]
                && snap.feature_names().contains(&"usb-call-recording");
            if done {
                match how_set_aside(&snap, posted) {
                    Ok(()) => return (snap, syncs),
                    Err(finding) => round.fail(vm, &snap, "after the recovery", &finding),
                }
            }
            match &state {
                // A torn document is a finding whenever it is seen; anything else may be
                // a cycle of the agent's own under way while the store is looked at.
                Err(finding) if finding.starts_with("TORN") => {
                    round.fail(vm, &snap, "during the recovery", finding)
                }
                _ if Instant::now() > deadline => round.fail(
                    vm,
                    &snap,
                    "after the recovery",
                    &format!(
                        "within {RECOVERY:?} of the clock set, the phone did not come to trust version 2 with the L1 site license held and usb-call-recording published ({syncs} check-syncs); the last look: {state:?}"
                    ),
                ),
                _ => {}
            }
        } else if Instant::now() > deadline {
            panic!(
                "the phone stopped answering during the recovery\n{}",
                vm.diagnostics()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// When a round cuts the power, counted from the command that sets the clock.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// This long after.
    Instant(Duration),
    /// As soon as the flash has seen this many writes in all.
    Write(u64),
}

#[derive(Debug, Default)]
struct Figures {
    cuts: usize,
    aimed: usize,
    mid_command: usize,
    with_pending: usize,
    pending_writes: usize,
    kept_pieces: usize,
    dropped_pieces: usize,
    /// Rounds whose phone held trust version 0, 1, 2 after the cut.
    held: [usize; 3],
    /// With the L1 site license stored, after the cut.
    site_stored: usize,
    /// `.tmp-` files left in `trust/` after the cut (an unfinished write).
    trust_leftovers: usize,
    /// And still there once the phone came to version 2.
    trust_leftovers_after: usize,
    /// Notes in `rejected/` with no file beside them (a cut between note and move).
    lone_notes: usize,
    reboot_requests: usize,
    check_syncs: usize,
    total: Duration,
}

impl Figures {
    fn line(&self, seed: u64) -> String {
        format!(
            "trust power cuts: {} cuts, 0 torn, 0 set aside wrongly; {:.1} s per cut; after the cut the phone held trust version 0/1/2 {}/{}/{} times (the L1 site license stored {} times); {} aimed at a write, {} mid-check-sync, {} with unflushed writes ({} writes: {} pieces dropped, {} kept); {} unfinished trust writes left ({} still there after the recovery), {} lone notes in rejected/; {} check-syncs in the recoveries, {} reboot requests; seed {seed:#x}",
            self.cuts,
            self.total.as_secs_f64() / self.cuts.max(1) as f64,
            self.held[0],
            self.held[1],
            self.held[2],
            self.site_stored,
            self.aimed,
            self.mid_command,
            self.with_pending,
            self.pending_writes,
            self.dropped_pieces,
            self.kept_pieces,
            self.trust_leftovers,
            self.trust_leftovers_after,
            self.lone_notes,
            self.check_syncs,
            self.reboot_requests,
        )
    }
}

/// The phone as every round starts: booted from the flash `image` at 1970, the agent
/// answering, nothing fetched yet (trust version 0, the L0 license).
fn boot_clean(lab: &mut Lab, image: &[u8], round: usize) -> Vm {
    // A new server each time (its own socket: the old one removes its own when dropped).
    lab.flash = FlashServer::start(image.to_vec(), &lab.dir.join(format!("flash-{round}.sock")));
    let mut vm = lab.power_on();
    wait_shell(&mut vm);
    vm.wait_agent();
    vm
}

#[test]
#[ignore = "the emulated phone: scripts/phone-check.sh builds its image and runs this with --ignored"]
fn power_cuts_during_a_trust_update_leave_the_old_or_the_new_trust() {
    let started = Instant::now();
    let cuts: usize = std::env::var("PHONE_TRUST_CUTS")
        .ok()
        .map(|n| n.trim().parse().expect("PHONE_TRUST_CUTS is a number"))
        .unwrap_or(8);
    let seed = seed_from("PHONE_TRUST_CUTS_SEED");
    eprintln!("trust power cuts: {cuts} cuts, seed {seed:#x} (PHONE_TRUST_CUTS_SEED={seed} replays the choices; the instants still depend on the machine's speed)");
    let mut rng = SplitMix64::new(seed);

    // The vendor: roots A, B, C in the firmware (2 sign), L0 the lab's vendor key.
    let vendor = Vendor::new();
    let roots = ["root-a", "root-b", "root-c"];
    let mut lines = String::from("\nversion 0\nroot-threshold 2\n");
    for r in roots {
        let _ = writeln!(lines, "root ed25519 {} {r}", vendor.key(r));
    }
    let mut lab = Lab::with_keyring_lines(&lines);
    vendor.adopt("l0", &lab.key);
    vendor.firmware_is(&std::fs::read(lab.dir.join("keyring")).expect("the lab's keyring"));
    let one = vendor.ceremony(1, "never", 2, &roots, &["l0", "l1"], &["root-a", "root-c"]);
    let two = vendor.ceremony(
        2,
        "never",
        2,
        &["root-b", "root-c", "root-d"],
        &["l1"],
        &["root-b", "root-c", "root-d"],
    );
    let t0 = now();
    let phone_l0 = vendor.license("l0", "phone", "vqmon", t0);
    let site_l1 = vendor.license("l1", "site", "usb-call-recording", t0);
    let posted = Posted {
        trust: [sha256(&one), sha256(&two)],
        phone_l0: sha256(&phone_l0),
        site_l1: sha256(&site_l1),
        l0: vendor.key_id("l0"),
    };

    // The phone stores the L0 license at trust version 0; its flash, once flushed, is
    // where every round starts.
    lab.nginx.put(PHONE_FILE, &phone_l0);
    let mut vm = lab.power_on();
    vm.wait_boot();
    vm.set_clock(now());
    vm.wait_agent();
    let deadline = Instant::now() + RECOVERY;
    loop {
        let out = vm.try_sh(
            &format!(
                "license-agent check-sync --json >/dev/null 2>&1; {}",
                Snapshot::command()
            ),
            SLOW,
        );
        if let Ok((_, out)) = out {
            let snap = Snapshot::parse(&out);
            if consistent(&snap, &posted) == Ok(0) && snap.feature_names() == ["vqmon"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the phone did not store the L0 license at trust version 0:\n{}\n{}",
                snap.status_text,
                vm.diagnostics()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
    vm.sh("sync");
    vm.power_cut();
    lab.cut(CutMode::LoseUnflushed);
    let image = lab.flash.durable_image();
    lab.nginx.put("trust-1.cfg", &one);
    lab.nginx.put("trust-2.cfg", &two);
    lab.nginx.put(SITE_FILE, &site_l1);
    let mut figures = Figures::default();

    // Round 0: the update uncut, to measure how long the cycle takes and how many
    // writes it makes (the range of the instants and of the aims).
    let (cycle, cycle_writes) = {
        let mut vm = boot_clean(&mut lab, &image, 0);
        let writes = lab.flash.stats().writes;
        let began = Instant::now();
        let out = vm.sh(&format!(
            "phone-clock set {}; license-agent check-sync --json",
            now()
        ));
        let cycle = began.elapsed();
        thread::sleep(Duration::from_secs(1));
        let cycle_writes = lab.flash.stats().writes - writes;
        let round = Round {
            round: 0,
            seed,
            mode: None,
            report: CutReport::default(),
            posted: &posted,
        };
        let (_, syncs) = recover(&mut vm, &round);
        eprintln!(
            "round 0 (no cut): the clock set and a check-sync took {cycle:.1?} and {cycle_writes} writes reached the flash; {syncs} check-sync(s) more to the end state; it said: {}",
            out.trim()
        );
        (cycle, cycle_writes)
    };
    let max_instant_ms = (cycle.as_millis() as u64).max(200);
    let max_aim = cycle_writes.max(10);

    for round in 1..=cuts {
        let began = Instant::now();
        let mut vm = boot_clean(&mut lab, &image, round);
        // 1. The clock set, a check-sync, the cut at the instant drawn.
        let trigger = if rng.coin() {
            figures.aimed += 1;
            Trigger::Write(lab.flash.stats().writes + 1 + rng.next_u64() % max_aim)
        } else {
            Trigger::Instant(Duration::from_millis(rng.next_u64() % (max_instant_ms + 1)))
        };
        // The clock set and the check-sync in one command: the agent starts a cycle of
        // its own as soon as it sees the clock, so the instants count from before that.
        let set = Instant::now();
        let due = || match trigger {
            Trigger::Instant(at) => set.elapsed() >= at,
            Trigger::Write(n) => lab.flash.stats().writes >= n || set.elapsed() >= AIM_LIMIT,
        };
        let command = format!("phone-clock set {}; license-agent check-sync --json", now());
        let answered = match vm.try_sh_or_stop(&command, SLOW, due) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(e) => panic!("check-sync on the phone: {e}\n{}", vm.diagnostics()),
        };
        while !due() {
            thread::sleep(Duration::from_micros(100));
        }
        let cut_after = set.elapsed();
        figures.mid_command += usize::from(!answered);
        figures.reboot_requests += vm.reboot_requests();
        vm.power_cut();

        // 2. What the flash keeps of the unflushed writes.
        let mode = if round % 2 == 0 {
            CutMode::LoseUnflushed
        } else {
            CutMode::KeepRandomSubset {
                seed: rng.next_u64(),
            }
        };
        let report = lab.cut(mode);
        figures.cuts += 1;
        if report.pending_writes > 0 {
            figures.with_pending += 1;
        }
        figures.pending_writes += report.pending_writes;
        figures.kept_pieces += report.kept_pieces;
        figures.dropped_pieces += report.dropped_pieces;
        let this = Round {
            round,
            seed,
            mode: Some(mode),
            report,
            posted: &posted,
        };

        // 3. The store as the cut left it (at 1970: nothing fetched), then recovered.
        let mut vm = lab.power_on();
        wait_shell(&mut vm);
        vm.wait_agent();
        let snap = Snapshot::take(&mut vm);
        let held = match consistent(&snap, &posted) {
            Ok(v) => v,
            Err(finding) => this.fail(&mut vm, &snap, "after the cut (at 1970)", &finding),
        };
        figures.held[held as usize] += 1;
        figures.site_stored += usize::from(!snap.licenses_in("site").is_empty());
        let leftovers = snap
            .in_dir("trust")
            .iter()
            .filter(|(_, p)| p.starts_with("trust/.tmp-"))
            .count();
        figures.trust_leftovers += leftovers;
        let lone = snap
            .notes
            .keys()
            .filter(|note| {
                let file = note.trim_end_matches(".why");
                !snap.files.iter().any(|(_, p)| p == file)
            })
            .count();
        figures.lone_notes += lone;
        if held == 2 {
            if let Err(finding) = how_set_aside(&snap, &posted) {
                this.fail(&mut vm, &snap, "after the cut (at 1970)", &finding)
            }
        }
        let (recovered, syncs) = recover(&mut vm, &this);
        let left_after = recovered
            .in_dir("trust")
            .iter()
            .filter(|(_, p)| p.starts_with("trust/.tmp-"))
            .count();
        figures.trust_leftovers_after += left_after;
        figures.check_syncs += syncs;
        figures.reboot_requests += vm.reboot_requests();
        let took = began.elapsed();
        figures.total += took;
        eprintln!(
            "round {round}/{cuts}: {trigger:?}: cut {cut_after:.1?} after the clock was sent, {}; {mode:?}: {report}; held trust version {held}{}{}{}; round {took:.1?}",
            if answered { "after the check-sync answered" } else { "mid-check-sync" },
            if snap.licenses_in("site").is_empty() { "" } else { ", the L1 site license stored" },
            if leftovers > 0 { format!(", {leftovers} unfinished trust write(s) left ({left_after} after the recovery)") } else { String::new() },
            if lone > 0 { format!(", {lone} lone note(s) in rejected/") } else { String::new() },
        );
        drop(vm);
    }
    eprintln!("{}", figures.line(seed));
    eprintln!(
        "trust power cuts: the whole test took {:.0?}",
        started.elapsed()
    );
}
