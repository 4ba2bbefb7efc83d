//! Storage tests: exact bytes kept, re-verification at load, files moved aside and never
//! deleted, uncommitted leftovers, read-only mode, damaged metadata, drops.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::format::Kind;
use crate::issuer::SigningKey;
use crate::testkit::{identity, keyring, lic_file, DAY, T0};

fn open(dir: &Path, mode: Mode) -> Store {
    Store::open(dir, keyring(), &identity(), mode, T0).unwrap()
}

/// Writer mode: takes the folder's lock (free unless a store opened earlier still holds
/// it).
fn writer(dir: &Path) -> Mode {
    let lock = WriterLock::try_acquire(dir)
        .unwrap()
        .expect("the lock is free");
    Mode::Writer(Arc::new(lock))
}

/// Every file below `dir`, relative, with its bytes.
fn tree(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert((
                    p.strip_prefix(dir).unwrap().display().to_string() + "/",
                    vec![],
                ));
                stack.push(p);
            } else {
                out.insert((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out
}

#[test]
fn an_added_license_is_kept_byte_for_byte_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (text, license) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 100 * DAY))]);
    // Whitespace and a comment of its own: stored exactly as received.
    let received = format!("{text}<!-- from the server -->\n\n");
    let mut store = open(dir.path(), writer(dir.path()));
    let seq = store.add(received.as_bytes(), license, &[], T0).unwrap();
    assert_eq!(seq, 1);
    drop(store);
    let again = open(dir.path(), writer(dir.path()));
    assert_eq!(again.held().len(), 1);
    assert_eq!(
        fs::read(again.path_of(&again.held()[0])).unwrap(),
        received.as_bytes()
    );
    assert_eq!(again.next_seq(), 2);
    assert!(again.invalid().is_empty());
}

#[test]
fn drops_remove_the_replaced_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    let (t1, l1) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 100 * DAY))]);
    let (t2, l2) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 200 * DAY))]);
    store.add(t1.as_bytes(), l1, &[], T0).unwrap();
    store.add(t2.as_bytes(), l2, &[1], T0).unwrap();
    assert!(!dir.path().join("site/0000000001.cfg").exists());
    assert!(dir.path().join("site/0000000002.cfg").exists());
    let events: Vec<&str> = store
        .meta()
        .events
        .iter()
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(events, ["accepted", "accepted", "dropped"]);
}

#[test]
fn prune_drops_what_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    let (t, l) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 10 * DAY))]);
    store.add(t.as_bytes(), l, &[], T0).unwrap();
    assert!(!store.prune(T0 + 10 * DAY - 1, T0));
    assert!(store.prune(T0 + 10 * DAY, T0));
    assert!(store.held().is_empty());
    drop(store);
    assert!(open(dir.path(), writer(dir.path())).held().is_empty());
}

#[test]
fn a_file_that_no_longer_verifies_is_moved_aside_with_a_note_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (t, l) = lic_file(Kind::Phone, &[(1, T0, None)]);
    open(dir.path(), writer(dir.path()))
        .add(t.as_bytes(), l, &[], T0)
        .unwrap();
    // The phone's keyring changes: the vendor key is no longer trusted.
    let other = SigningKey::from_seed(&[9; 32]).unwrap();
    let other_ring = Keyring::single(other.public_key(), "other");
    let store = Store::open(
        dir.path(),
        &other_ring,
        &identity(),
        writer(dir.path()),
        T0 + 5,
    )
    .unwrap();
    assert!(store.held().is_empty());
    assert_eq!(store.invalid().len(), 1);
    assert!(
        store.invalid()[0].reason.contains("unknown-key"),
        "{:?}",
        store.invalid()
    );
    let moved = store.invalid()[0].moved_to.clone().unwrap();
    assert_eq!(
        fs::read_to_string(&moved).unwrap(),
        t,
        "moved whole, not deleted"
    );
    let note = fs::read_to_string(moved.with_file_name(format!(
        "{}.why",
        moved.file_name().unwrap().to_string_lossy()
    )))
    .unwrap();
    assert!(
        note.contains("unknown-key") && note.contains("phone/0000000001.cfg"),
        "{note}"
    );
    assert!(!dir.path().join("phone/0000000001.cfg").exists());
    assert_eq!(store.meta().events.last().unwrap().what, "moved-aside");
    // Once aside, it stays aside: the original keyring does not bring it back silently.
    drop(store);
    assert!(open(dir.path(), writer(dir.path())).held().is_empty());
}

#[test]
fn damaged_foreign_misplaced_and_unknown_files_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), writer(dir.path()));
    let (t, _) = lic_file(Kind::Phone, &[(1, T0, None)]);
    fs::write(
        dir.path().join("phone/0000000001.cfg"),
        t.replace("<Version>", "<Version>x"),
    )
    .unwrap();
    let foreign = crate::testkit::file_with(
        Kind::Phone,
        "0004f2999999",
        vec![crate::testkit::entry(
            (1, T0, None),
            crate::format::Transaction::New,
            0,
        )],
    );
    fs::write(dir.path().join("phone/0000000002.cfg"), foreign).unwrap();
    let (site, _) = lic_file(Kind::Site, &[(2, T0, None)]);
    fs::write(dir.path().join("phone/0000000003.cfg"), site).unwrap();
    fs::write(dir.path().join("phone/notes.txt"), "hello").unwrap();
    let store = open(dir.path(), writer(dir.path()));
    let reasons: Vec<&str> = store.invalid().iter().map(|i| i.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("unsupported-version"), "{reasons:?}");
    assert!(
        reasons[1].contains("bound to MAC 0004f2999999"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("a site license in the phone folder"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].contains("not a file this agent stored"),
        "{reasons:?}"
    );
    assert_eq!(fs::read_dir(dir.path().join("phone")).unwrap().count(), 0);
    assert_eq!(
        fs::read_dir(dir.path().join("rejected")).unwrap().count(),
        8,
        "four files, four notes"
    );
    // Numbers already used are never reused.
    assert_eq!(store.next_seq(), 4);
}

#[test]
fn an_uncommitted_temporary_is_removed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), writer(dir.path()));
    fs::write(
        dir.path()
            .join(format!("site/{}0000000001.cfg", atomic::TEMP_PREFIX)),
        "half a file",
    )
    .unwrap();
    let store = open(dir.path(), writer(dir.path()));
    assert!(store.held().is_empty() && store.invalid().is_empty());
    assert_eq!(fs::read_dir(dir.path().join("site")).unwrap().count(), 0);
    assert_eq!(store.meta().events[0].what, "removed-leftover");
}

#[test]
fn read_only_mode_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (t, l) = lic_file(Kind::Phone, &[(1, T0, None)]);
    open(dir.path(), writer(dir.path()))
        .add(t.as_bytes(), l, &[], T0)
        .unwrap();
    fs::write(dir.path().join("site/0000000005.cfg"), "garbage").unwrap();
    fs::write(dir.path().join("meta.json"), "{not json").unwrap();
    let before = tree(dir.path());
    let mut store = open(dir.path(), Mode::ReadOnly);
    assert_eq!(store.held().len(), 1);
    assert_eq!(store.invalid().len(), 2, "damaged meta and file reported");
    assert!(store.invalid().iter().all(|i| i.moved_to.is_none()));
    assert!(store.save_meta().is_err());
    assert_eq!(tree(dir.path()), before);
    // A new, empty folder opened read-only stays absent.
    let missing = dir.path().join("nothing-here");
    assert!(open(&missing, Mode::ReadOnly).held().is_empty());
    assert!(!missing.exists());
}

#[test]
fn damaged_metadata_is_set_aside_and_the_licenses_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (t, l) = lic_file(Kind::Phone, &[(1, T0, None)]);
    let mut store = open(dir.path(), writer(dir.path()));
    store.add(t.as_bytes(), l, &[], T0).unwrap();
    store.meta_mut().latest_trusted = Some(T0);
    store.save_meta().unwrap();
    fs::write(dir.path().join("meta.json"), [0xFFu8; 10]).unwrap();
    drop(store);
    let store = open(dir.path(), writer(dir.path()));
    assert_eq!(store.held().len(), 1);
    assert_eq!(store.meta().latest_trusted, None);
    assert!(store.invalid()[0].reason.contains("metadata unparseable"));
    // The fresh metadata was saved, with the event.
    let saved: Meta =
        serde_json::from_slice(&fs::read(dir.path().join("meta.json")).unwrap()).unwrap();
    assert_eq!(saved.events.last().unwrap().what, "moved-aside");
}

#[test]
fn seq_names_are_strict() {
    assert_eq!(seq_of("0000000012.cfg"), Some(12));
    for bad in [
        "12.cfg",
        "0000000012.txt",
        "000000001a.cfg",
        "00000000012.cfg",
        "+000000012.cfg",
        "18446744073709551616.cfg",
    ] {
        assert_eq!(seq_of(bad), None, "{bad}");
    }
    // Numbers outgrow ten digits: the names the store writes then are its own too.
    assert_eq!(seq_of("10000000000.cfg"), Some(10_000_000_000));
    assert_eq!(seq_of(&file_name(u64::MAX)), Some(u64::MAX));
}

/// After `9999999999.cfg` comes `10000000000.cfg`, and the next load holds both (it
/// used to set the second aside as "not a file this agent stored").
#[test]
fn numbering_goes_past_ten_digits_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (t1, _) = lic_file(Kind::Phone, &[(1, T0, Some(T0 + 900 * DAY))]);
    fs::create_dir_all(dir.path().join("phone")).unwrap();
    fs::write(dir.path().join("phone/9999999999.cfg"), &t1).unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    let (t2, l2) = lic_file(Kind::Phone, &[(1, T0 + 800 * DAY, None)]);
    assert_eq!(
        store.add(t2.as_bytes(), l2, &[], T0).unwrap(),
        10_000_000_000
    );
    drop(store);
    let store = open(dir.path(), writer(dir.path()));
    assert!(store.invalid().is_empty(), "{:?}", store.invalid());
    let seqs: Vec<u64> = store.held().iter().map(|h| h.seq).collect();
    assert_eq!(seqs, [9_999_999_999, 10_000_000_000]);
    drop(store);
    // The last number of all is stored too, and then no number is left: refused
    // plainly, nothing overwritten.
    let last = dir.path().join("phone").join(file_name(u64::MAX));
    fs::copy(dir.path().join("phone/9999999999.cfg"), &last).unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    assert_eq!(store.held().len(), 3);
    let (t3, l3) = lic_file(Kind::Phone, &[(1, T0 + 700 * DAY, None)]);
    let e = store.add(t3.as_bytes(), l3, &[], T0).unwrap_err();
    assert!(e.to_string().contains("no received number is left"), "{e}");
}

/// Whatever stands where `meta.json` goes (a directory, a FIFO, a file too big to be
/// metadata), the store opens with its licenses and sets it aside like a damaged one.
#[test]
fn anything_in_place_of_the_metadata_is_set_aside() {
    type Make = fn(&Path);
    let cases: [(&str, Make); 4] = [
        ("a directory", |p| fs::create_dir(p).unwrap()),
        ("a FIFO", |p| {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
        }),
        ("larger than", |p| {
            fs::write(p, vec![b' '; (MAX_META_SIZE + 1) as usize]).unwrap()
        }),
        ("a character device", |p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
    ];
    for (what, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (t, l) = lic_file(Kind::Phone, &[(1, T0, None)]);
        let mut store = open(dir.path(), writer(dir.path()));
        store.add(t.as_bytes(), l, &[], T0).unwrap();
        drop(store);
        let meta = dir.path().join("meta.json");
        let _ = fs::remove_file(&meta);
        make(&meta);
        let read_only = open(dir.path(), Mode::ReadOnly);
        assert_eq!(read_only.held().len(), 1, "{what}");
        assert!(
            read_only.invalid()[0].reason.contains(what),
            "{what}: {:?}",
            read_only.invalid()
        );
        drop(read_only);
        let store = open(dir.path(), writer(dir.path()));
        assert_eq!(store.held().len(), 1, "{what}");
        assert!(
            store.invalid()[0].moved_to.is_some(),
            "{what}: {:?}",
            store.invalid()
        );
        assert!(store.write_failure().is_none(), "{what}");
        // Replaced by fresh metadata, which reads back.
        let saved: Meta = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
        assert_eq!(saved.events.last().unwrap().what, "moved-aside", "{what}");
    }
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let lock = Arc::new(WriterLock::try_acquire(dir.path()).unwrap().unwrap());
    let _store = open(dir.path(), Mode::Writer(Arc::clone(&lock)));
    // Another writer (a hand install while the daemon runs) cannot take the store.
    assert!(WriterLock::try_acquire(dir.path()).unwrap().is_none());
    // The lock of one folder does not open another for writing.
    let other = tempfile::tempdir().unwrap();
    let Err(err) = Store::open(other.path(), keyring(), &identity(), Mode::Writer(lock), T0) else {
        panic!("a store opened with the lock of another folder");
    };
    assert!(err.to_string().contains("another folder"), "{err}");
}

#[test]
fn an_add_never_overwrites_a_file_that_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    // Number 1 appears after the store was read (copied in by hand, say).
    let (t1, _) = lic_file(Kind::Phone, &[(1, T0, None)]);
    fs::write(dir.path().join("phone/0000000001.cfg"), &t1).unwrap();
    let (t2, l2) = lic_file(Kind::Phone, &[(2, T0, None)]);
    let seq = store.add(t2.as_bytes(), l2, &[], T0).unwrap();
    assert_eq!(seq, 2);
    assert_eq!(
        fs::read_to_string(dir.path().join("phone/0000000001.cfg")).unwrap(),
        t1
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("phone/0000000002.cfg")).unwrap(),
        t2
    );
}

/// What a store recorded but could not write is taken over by the store that replaces
/// it (the daemon reads the store again at every wake-up), with the events of the new
/// load after it, and written once writing works again.
#[test]
fn unsaved_metadata_is_kept_across_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let mode = writer(dir.path());
    let mut store = open(dir.path(), mode.clone());
    store.save_meta().unwrap();
    // meta.json made unwritable: a folder with something in it.
    let meta = dir.path().join("meta.json");
    fs::remove_file(&meta).unwrap();
    fs::create_dir(&meta).unwrap();
    fs::write(meta.join("x"), b"x").unwrap();
    store
        .meta_mut()
        .record(T0, "refused", "a hand install", "while the flash was stuck");
    assert!(store.save_meta().is_err());
    assert!(store.meta_unsaved() && store.write_failure().is_some());
    // The next load sets the folder aside, and keeps what the older store recorded.
    let mut again = open(dir.path(), mode);
    again.keep_unsaved(&store);
    let whats: Vec<&str> = again
        .meta()
        .events
        .iter()
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(whats, ["refused", "moved-aside"]);
    again.save_meta().unwrap();
    let saved: Meta = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    assert_eq!(saved.events.len(), 2);
    assert!(!again.meta_unsaved() && again.write_failure().is_none());
}
