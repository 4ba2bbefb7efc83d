//! Power cuts: `license-agent install` is killed (SIGKILL) at random moments, hundreds
//! of times. After each kill the store loads as the next start would, every file
//! verifies, nothing is torn (nothing had to be set aside), and the licenses held are
//! exactly the old state or the new one: never a mix, never a loss.

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{agent, issuer, rfc, run};
use license_agent::engine::Identity;
use license_agent::format::Serial;
use license_agent::storage::{Mode, Store, WriterLock};
use license_agent::trust::Keyring;

const DAY: i64 = 86_400;
const ROUNDS: usize = 300;

/// The signed messages held after a load as the agent's next start does it.
fn load(state: &Path, keyring: &Keyring, identity: &Identity, now: i64) -> BTreeSet<Vec<u8>> {
    // The killed writer's lock went with it: the kernel releases a flock at exit.
    let lock = WriterLock::try_acquire(state)
        .expect("the lock file")
        .expect("no other writer");
    let mode = Mode::Writer(std::sync::Arc::new(lock));
    let mut store = Store::open(state, keyring, identity, mode, now).expect("the store loads");
    assert!(
        store.invalid().is_empty(),
        "a torn or damaged file was found: {:?}",
        store.invalid()
    );
    store.prune(now, now);
    store
        .held()
        .iter()
        .map(|h| h.license.signed_message().to_vec())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn install_killed_at_random_moments_leaves_the_old_or_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = common::vendor_key(d);
    let config = d.join("agent.toml");
    std::fs::write(&config, "mac = \"0004f2000001\"\nsite_serial = \"100000000001\"\nkeyring = \"keyring\"\nstate_dir = \"state\"\nsupervisor = \"none\"\n").unwrap();
    let keyring = Keyring::load(&d.join("keyring")).unwrap();
    let identity = Identity {
        mac: Serial::parse("0004f2000001").unwrap(),
        site_serial: Some(Serial::parse("100000000001").unwrap()),
    };
    let now = common::now();

    // Licenses that each change the state: site licenses lasting one day longer each
    // (each replaces the last), and phone licenses likewise, interleaved.
    let mut files = Vec::new();
    for i in 0..ROUNDS as i64 {
        let (kind, serial, feature) = if i % 3 == 2 {
            ("phone", "0004f2000001", "lync")
        } else {
            ("site", "100000000001", "vqmon")
        };
        let path = d.join(format!("l{i}.cfg"));
        let f = format!(
            "{feature},new,{},{}",
            rfc(now - DAY),
            rfc(now + (100 + i) * DAY)
        );
        let out = run(
            issuer(),
            [
                "sign",
                "--key",
                key.to_str().unwrap(),
                "--serial",
                serial,
                "--kind",
                kind,
                "--feature",
                &f,
                "-o",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(0));
        files.push(path);
    }

    let seed = now as u64 | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let state = d.join("state");
    let (mut old_kept, mut new_kept, mut killed) = (0, 0, 0);
    for (round, file) in files.iter().enumerate() {
        let old = if state.exists() {
            load(&state, &keyring, &identity, now)
        } else {
            BTreeSet::new()
        };
        // The new state: the same install, uninterrupted, on a copy.
        let reference = d.join(format!("ref{round}"));
        let ref_config = d.join(format!("ref{round}.toml"));
        if state.exists() {
            copy_dir(&state, &reference);
        }
        std::fs::write(
            &ref_config,
            std::fs::read_to_string(&config)
                .unwrap()
                .replace("\"state\"", &format!("\"ref{round}\"")),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let out = run(
            agent(),
            [
                "install".as_ref(),
                "--config".as_ref(),
                ref_config.as_os_str(),
                file.as_os_str(),
            ],
        );
        // How long an install takes on this machine now: the kill is drawn within it.
        let took = started.elapsed();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let new = load(&reference, &keyring, &identity, now);
        assert_ne!(old, new, "round {round}: every install changes the state");
        std::fs::remove_dir_all(&reference).unwrap();

        // The real install, killed after a random delay within the time the reference
        // install took (a fixed 0 to 8 ms landed too few kills on a machine where an
        // install takes 2 ms, and would on a slow one land none after the commit).
        let mut child = agent()
            .args([
                "install".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                file.as_os_str(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let window = u64::try_from(took.as_micros()).unwrap_or(8_000).max(1);
        std::thread::sleep(Duration::from_micros(rng.next() % window));
        let _ = child.kill(); // SIGKILL; an error only means it had already finished
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        }
        let got = load(&state, &keyring, &identity, now);
        if got == old {
            old_kept += 1;
        } else if got == new {
            new_kept += 1;
        } else {
            panic!("round {round}: the store holds neither the old nor the new state");
        }
    }
    println!("{ROUNDS} rounds: {killed} killed before finishing; after the kill {old_kept} held the old state, {new_kept} the new");
    // The kills must have landed on both sides of the commit point for this to mean much.
    assert!(killed >= ROUNDS / 4, "only {killed} kills landed");
    assert!(
        old_kept > 0 && new_kept > 0,
        "old {old_kept}, new {new_kept}"
    );
}
