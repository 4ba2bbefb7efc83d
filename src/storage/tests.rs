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

/// The site license numbered `seq`.
fn site(seq: u64) -> StoreId {
    StoreId {
        kind: Kind::Site,
        seq,
    }
}

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
    let id = store
        .add(received.as_bytes(), license, &[], T0, T0)
        .unwrap();
    assert_eq!(id, site(1));
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
    store.add(t1.as_bytes(), l1, &[], T0, T0).unwrap();
    store.add(t2.as_bytes(), l2, &[site(1)], T0, T0).unwrap();
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
    store.add(t.as_bytes(), l, &[], T0, T0).unwrap();
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
        .add(t.as_bytes(), l, &[], T0, T0)
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
    // Numbering comes from what is held: a file set aside gives no number (its own is
    // in rejected/ under another name, so nothing is in the way).
    assert_eq!(store.next_seq(), 1);
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
        .add(t.as_bytes(), l, &[], T0, T0)
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
    store.add(t.as_bytes(), l, &[], T0, T0).unwrap();
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
    // Past ten digits: names an earlier release wrote once numbers outgrew them, still
    // read as the store's own (and renumbered: see below).
    assert_eq!(seq_of("10000000000.cfg"), Some(10_000_000_000));
    assert_eq!(seq_of(&file_name(u64::MAX)), Some(u64::MAX));
}

/// An add that finds every number up to the last one taken (a file copied in after the
/// store was read) renumbers what is held, and its drops follow the renumbering: the
/// replaced license goes, the stranger stays where it is.
#[test]
fn an_add_with_no_number_left_renumbers_and_follows_its_drops() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), writer(dir.path()));
    let (short, _) = lic_file(Kind::Site, &[(2, T0 - DAY, Some(T0 + 100 * DAY))]);
    fs::write(dir.path().join("site/9999999998.cfg"), &short).unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    assert_eq!(store.next_seq(), MAX_SEQ);
    fs::write(dir.path().join("phone/9999999999.cfg"), "a stranger").unwrap();
    let (long, l) = lic_file(Kind::Site, &[(2, T0 - DAY, Some(T0 + 300 * DAY))]);
    let id = store
        .add(long.as_bytes(), l, &[site(9_999_999_998)], T0, T0)
        .unwrap();
    assert_eq!(id, site(2));
    assert_eq!(names(dir.path(), "site"), ["0000000002.cfg"]);
    assert_eq!(
        fs::read_to_string(dir.path().join("site/0000000002.cfg")).unwrap(),
        long
    );
    assert_eq!(names(dir.path(), "phone"), ["9999999999.cfg"]);
    let whats: Vec<&str> = store
        .meta()
        .events
        .iter()
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(whats, ["renumbered", "accepted", "dropped"]);
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
        store.add(t.as_bytes(), l, &[], T0, T0).unwrap();
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
    let id = store.add(t2.as_bytes(), l2, &[], T0, T0).unwrap();
    assert_eq!(
        id,
        StoreId {
            kind: Kind::Phone,
            seq: 2
        }
    );
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

// ---- Stray files: store identity is (kind, number) ----

/// The names of the files in `dir/sub`, sorted.
fn names(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An older genuine site license copied in as `site/<the phone license's number>.cfg`:
/// its drop (it has expired) sets it aside, and the phone license, which has the same
/// number in its own folder, stays (the drop used to find the phone license by number
/// and delete it).
#[test]
fn a_site_license_numbered_like_the_phone_license_never_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, l) = lic_file(Kind::Phone, &[(1, T0 - DAY, None)]);
    let (site, s) = lic_file(Kind::Site, &[(2, T0 - DAY, Some(T0 + 100 * DAY))]);
    let mut store = open(dir.path(), writer(dir.path()));
    store.add(phone.as_bytes(), l, &[], T0, T0).unwrap();
    store.add(site.as_bytes(), s, &[], T0, T0).unwrap();
    drop(store);
    let (older, _) = lic_file(Kind::Site, &[(2, T0 - 400 * DAY, Some(T0 - 30 * DAY))]);
    fs::write(dir.path().join("site/0000000001.cfg"), &older).unwrap();

    let mut store = open(dir.path(), writer(dir.path()));
    assert_eq!(
        store.held().len(),
        3,
        "all three verify: {:?}",
        store.invalid()
    );
    assert!(store.prune(T0, T0));
    assert_eq!(
        fs::read_to_string(dir.path().join("phone/0000000001.cfg")).unwrap(),
        phone,
        "the phone license is never dropped for a site license's number"
    );
    assert_eq!(names(dir.path(), "site"), ["0000000002.cfg"]);
    let kinds: Vec<Kind> = store.held().iter().map(|h| h.license.kind()).collect();
    assert_eq!(kinds, [Kind::Phone, Kind::Site]);
    // The stray is set aside with a note, not deleted.
    let aside = store.invalid().iter().find_map(|i| i.moved_to.clone());
    let aside = aside.expect("the stray site license set aside");
    assert_eq!(fs::read_to_string(&aside).unwrap(), older);
    let note = fs::read_to_string(format!("{}.why", aside.display())).unwrap();
    assert!(
        note.contains("also the number of the phone license"),
        "{note}"
    );
    drop(store);
    let again = open(dir.path(), writer(dir.path()));
    assert_eq!(again.held().len(), 2);
    assert!(again.invalid().is_empty(), "{:?}", again.invalid());
}

/// A replacement drops the licenses of its own kind only: a longer site license
/// installed where a site license and the phone license share a number.
#[test]
fn a_replacement_drops_only_licenses_of_its_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, l) = lic_file(Kind::Phone, &[(1, T0 - DAY, None)]);
    let mut store = open(dir.path(), writer(dir.path()));
    store.add(phone.as_bytes(), l, &[], T0, T0).unwrap();
    drop(store);
    let (short, _) = lic_file(Kind::Site, &[(2, T0 - DAY, Some(T0 + 100 * DAY))]);
    fs::write(dir.path().join("site/0000000001.cfg"), &short).unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    let (long, ll) = lic_file(Kind::Site, &[(2, T0 - DAY, Some(T0 + 300 * DAY))]);
    let crate::engine::Decision::Accept { drop } = crate::engine::judge_candidate(
        &identity(),
        store.held(),
        &ll,
        crate::engine::Origin::Installed,
        Some(T0),
        store.next_seq(),
    ) else {
        panic!("the longer site license is taken");
    };
    store.add(long.as_bytes(), ll, &drop, T0, T0).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("phone/0000000001.cfg")).unwrap(),
        phone
    );
    assert_eq!(names(dir.path(), "site"), ["0000000002.cfg"]);
    let kinds: Vec<Kind> = store.held().iter().map(|h| h.license.kind()).collect();
    assert_eq!(kinds, [Kind::Phone, Kind::Site]);
}

/// A junk file named with the last number of all is set aside and pushes nothing: the
/// next licenses get fresh numbers of their own, more installs keep working, and the
/// site license's expiry drops the site license only (the junk used to push both
/// licenses to that one number, then refuse every install, and the expiry deleted the
/// phone license).
#[test]
fn a_junk_name_at_the_end_of_the_numbers_pushes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), writer(dir.path()));
    fs::write(dir.path().join("site/18446744073709551615.cfg"), "junk").unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    assert_eq!(store.invalid().len(), 1);
    assert!(store.invalid()[0].moved_to.is_some());
    assert_eq!(store.next_seq(), 1, "a file set aside gives no number");
    let (phone, l) = lic_file(Kind::Phone, &[(1, T0 - DAY, None)]);
    let (site, s) = lic_file(Kind::Site, &[(2, T0 - DAY, Some(T0 + 10 * DAY))]);
    let (more, m) = lic_file(Kind::Phone, &[(1, T0 - DAY, None), (3, T0, None)]);
    store.add(phone.as_bytes(), l, &[], T0, T0).unwrap();
    store.add(site.as_bytes(), s, &[], T0, T0).unwrap();
    store.add(more.as_bytes(), m, &[], T0, T0).unwrap();
    assert_eq!(
        names(dir.path(), "phone"),
        ["0000000001.cfg", "0000000003.cfg"]
    );
    assert_eq!(names(dir.path(), "site"), ["0000000002.cfg"]);
    // The site license ends: it goes, and both phone licenses' files stay until the
    // engine drops the shorter one (the same end, the earlier received).
    assert!(store.prune(T0 + 10 * DAY, T0 + 10 * DAY));
    assert!(names(dir.path(), "site").is_empty());
    assert_eq!(names(dir.path(), "phone"), ["0000000003.cfg"]);
    assert_eq!(
        fs::read_to_string(dir.path().join("phone/0000000003.cfg")).unwrap(),
        more
    );
}

/// Genuine licenses renamed to the end of the numbers (ten digits, and past them as an
/// older release could write): held, not set aside, and renumbered below the bound in
/// the order they had, so installs go on and nothing is set aside or lost.
#[test]
fn genuine_licenses_numbered_at_the_end_are_renumbered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), writer(dir.path()));
    // Two site licenses of one end: the one received last (the larger number) is
    // primary, and stays so once renumbered.
    let (a, _) = lic_file(Kind::Site, &[(2, T0 - DAY, Some(T0 + 100 * DAY))]);
    let (b, _) = lic_file(Kind::Site, &[(3, T0 - DAY, Some(T0 + 100 * DAY))]);
    let (p, _) = lic_file(Kind::Phone, &[(1, T0 - DAY, None)]);
    fs::write(dir.path().join("site/0000000004.cfg"), &a).unwrap();
    fs::write(dir.path().join("phone/9999999999.cfg"), &p).unwrap();
    fs::write(dir.path().join("site/18446744073709551615.cfg"), &b).unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    assert!(store.invalid().is_empty(), "{:?}", store.invalid());
    assert_eq!(store.held().len(), 3);
    let primary = |store: &Store| {
        crate::engine::evaluate(store.held(), T0)
            .enabled()
            .keys()
            .map(|f| f.0)
            .collect::<Vec<u16>>()
    };
    assert_eq!(primary(&store), [1, 3]);
    for round in 0..3 {
        let (t, l) = lic_file(Kind::Phone, &[(1, T0 - DAY, None), (10 + round, T0, None)]);
        store
            .add(t.as_bytes(), l, &[], T0, T0)
            .unwrap_or_else(|e| panic!("install {round}: {e}"));
    }
    for kind in ["phone", "site"] {
        for name in names(dir.path(), kind) {
            assert_eq!(name.len(), "0000000000.cfg".len(), "{kind}/{name}");
        }
    }
    drop(store);
    let store = open(dir.path(), writer(dir.path()));
    assert!(store.invalid().is_empty(), "{:?}", store.invalid());
    assert_eq!(store.held().len(), 6);
    assert_eq!(primary(&store), [1, 3, 12]);
    let site: Vec<String> = store
        .held()
        .iter()
        .filter(|h| h.license.kind() == Kind::Site)
        .map(|h| fs::read_to_string(store.path_of(h)).unwrap())
        .collect();
    assert_eq!(site, [a, b], "the received order is kept");
}

/// Only the agent's own leftovers are removed: a temporary of a name the store writes,
/// a plain file. Anything else under the temporary prefix (another name, a folder, a
/// link) is set aside like any stranger, never removed.
#[test]
fn only_the_agents_own_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), writer(dir.path()));
    let site = dir.path().join("site");
    let t = atomic::TEMP_PREFIX;
    fs::write(site.join(format!("{t}0000000003.cfg")), "half a file").unwrap();
    fs::write(site.join(format!("{t}notes.txt")), "someone's notes").unwrap();
    fs::create_dir(site.join(format!("{t}0000000004.cfg"))).unwrap();
    fs::write(site.join(format!("{t}0000000004.cfg/inside")), "x").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", site.join(format!("{t}0000000005.cfg"))).unwrap();
    let store = open(dir.path(), writer(dir.path()));
    assert!(
        store.write_failure().is_none(),
        "{:?}",
        store.write_failure()
    );
    assert!(names(dir.path(), "site").is_empty());
    let aside: BTreeSet<String> = store
        .invalid()
        .iter()
        .map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        aside,
        BTreeSet::from([
            format!("{t}notes.txt"),
            format!("{t}0000000004.cfg"),
            format!("{t}0000000005.cfg"),
        ])
    );
    assert!(store.invalid().iter().all(|i| i.moved_to.is_some()));
    let rejected = names(dir.path(), "rejected");
    assert_eq!(
        rejected.len(),
        6,
        "three strangers, three notes: {rejected:?}"
    );
    let whats: Vec<&str> = store
        .meta()
        .events
        .iter()
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(
        whats.iter().filter(|w| **w == "removed-leftover").count(),
        1
    );
    assert!(Path::new("/etc/hostname").exists());
}

/// A file set aside never takes the place of one set aside before under the same name
/// (the same file name set aside twice in one second).
#[test]
fn setting_aside_never_overwrites_what_was_set_aside_before() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), writer(dir.path()));
    let junk = dir.path().join("phone/0000000009.cfg");
    fs::write(&junk, "first").unwrap();
    drop(open(dir.path(), writer(dir.path())));
    fs::write(&junk, "second").unwrap();
    drop(open(dir.path(), writer(dir.path())));
    let rejected = dir.path().join("rejected");
    let kept: BTreeSet<String> = names(dir.path(), "rejected")
        .into_iter()
        .filter(|n| !n.ends_with(".why"))
        .map(|n| fs::read_to_string(rejected.join(n)).unwrap())
        .collect();
    assert_eq!(kept, BTreeSet::from(["first".into(), "second".into()]));
    assert_eq!(
        names(dir.path(), "rejected").len(),
        4,
        "two files, two notes"
    );
}

#[test]
fn a_link_in_place_of_a_kind_folder_is_set_aside_and_moves_no_license() {
    let dir = tempfile::tempdir().unwrap();
    let (text, license) = lic_file(Kind::Phone, &[(2, T0, None)]);
    let mut store = open(dir.path(), writer(dir.path()));
    store.add(text.as_bytes(), license, &[], T0, T0).unwrap();
    drop(store);
    // The site folder replaced by a link to the phone folder.
    fs::remove_dir(dir.path().join("site")).unwrap();
    std::os::unix::fs::symlink("phone", dir.path().join("site")).unwrap();
    let store = open(dir.path(), writer(dir.path()));
    assert_eq!(store.held().len(), 1, "{:?}", store.invalid());
    assert_eq!(store.held()[0].license.kind(), Kind::Phone);
    assert_eq!(names(dir.path(), "phone"), ["0000000001.cfg"]);
    assert!(fs::symlink_metadata(dir.path().join("site"))
        .unwrap()
        .is_dir());
    assert!(
        store.invalid()[0].reason.contains("symbolic link"),
        "{:?}",
        store.invalid()
    );
}

/// A license dropped because it ended is recorded as `ended`, dated by the wall clock
/// of the drop, and the record survives a restart; a file of its own that the store
/// (as an older agent's) neither takes for a license nor sets aside.
#[test]
fn a_license_that_ends_is_recorded_and_the_record_survives_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    let (t, l) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 10 * DAY))]);
    store.add(t.as_bytes(), l.clone(), &[], T0, T0).unwrap();
    assert!(store.dropped().is_empty());
    let wall = T0 + 10 * DAY + 7;
    assert!(store.prune(T0 + 10 * DAY, wall));
    let want = vec![Dropped {
        license: l,
        at: wall,
        reason: Reason::Ended,
    }];
    assert_eq!(store.dropped(), want);
    drop(store);
    let again = open(dir.path(), writer(dir.path()));
    assert_eq!(again.dropped(), want);
    assert!(again.invalid().is_empty(), "{:?}", again.invalid());
    assert!(names(dir.path(), "rejected").is_empty());
    assert!(dir.path().join(dropped::FILE).is_file());
}

#[test]
fn a_license_replaced_is_recorded_as_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    let (t1, l1) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 100 * DAY))]);
    let (t2, l2) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 200 * DAY))]);
    store.add(t1.as_bytes(), l1.clone(), &[], T0, T0).unwrap();
    store
        .add(t2.as_bytes(), l2, &[site(1)], T0, T0 + 3)
        .unwrap();
    let got: Vec<_> = store
        .dropped()
        .iter()
        .map(|d| (d.license.signed_message(), d.at, d.reason))
        .collect();
    assert_eq!(got, [(l1.signed_message(), T0 + 3, Reason::Replaced)]);
}

/// A record 90 days past its license's end is gone at the next write.
#[test]
fn a_record_goes_90_days_after_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), writer(dir.path()));
    let end = T0 + 10 * DAY;
    let (t1, l1) = lic_file(Kind::Site, &[(2, T0, Some(end))]);
    let (t2, l2) = lic_file(Kind::Phone, &[(3, T0, Some(end + 90 * DAY))]);
    store.add(t1.as_bytes(), l1, &[], T0, T0).unwrap();
    store.add(t2.as_bytes(), l2.clone(), &[], T0, T0).unwrap();
    assert!(store.prune(end, end));
    assert_eq!(store.dropped().len(), 1);
    assert!(store.prune(end + 90 * DAY, end + 90 * DAY));
    drop(store);
    let again = open(dir.path(), writer(dir.path()));
    let kept: Vec<_> = again
        .dropped()
        .iter()
        .map(|d| d.license.signed_message())
        .collect();
    assert_eq!(kept, [l2.signed_message()]);
}

/// A record file that is damaged, oversize or not a file is ignored: the store opens,
/// holds its licenses, sets nothing aside and leaves it where it is.
#[test]
fn a_damaged_record_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (t, l) = lic_file(Kind::Phone, &[(1, T0, None)]);
    open(dir.path(), writer(dir.path()))
        .add(t.as_bytes(), l, &[], T0, T0)
        .unwrap();
    let path = dir.path().join(dropped::FILE);
    let oversize = vec![b' '; dropped::MAX_FILE_SIZE as usize + 1];
    for damage in [&b"garbage"[..], b"{\"records\": 5}", &oversize] {
        fs::write(&path, damage).unwrap();
        let store = open(dir.path(), writer(dir.path()));
        assert_eq!(store.held().len(), 1);
        assert!(store.dropped().is_empty());
        assert!(store.invalid().is_empty(), "{:?}", store.invalid());
        assert_eq!(fs::read(&path).unwrap(), damage);
    }
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let store = open(dir.path(), writer(dir.path()));
    assert!(store.dropped().is_empty() && store.invalid().is_empty());
}

mod memory;
