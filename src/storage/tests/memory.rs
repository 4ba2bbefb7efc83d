//! The store on the in-memory disk: the same sequence gives the same store as on a real
//! disk, strange entries are set aside alike, and injected faults fail the writes, are
//! noted, and are recovered from at the next write.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;

use super::{site, writer};
use crate::format::Kind;
use crate::storage::disk::{Disk, FileType, RealDisk, Special};
use crate::storage::memdisk::{MemDisk, Node, OpKind};
use crate::storage::{Invalid, Mode, Store};
use crate::testkit::{identity, keyring, lic_file, DAY, T0};

/// Where the store is on the in-memory disk.
const DIR: &str = "/state";

fn open_on(disk: Arc<dyn Disk>, dir: &Path, mode: Mode, now: i64) -> Store {
    Store::open_on(disk, dir, keyring(), &identity(), mode, now).unwrap()
}

/// `text` with the folder's own path made `<dir>`: the two disks' stores are in
/// different places.
fn placeless(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "<dir>")
}

/// Every entry below `dir` on `disk`: relative path, type, and bytes of a regular file
/// (placeless). The writer lock's file (a real disk's only) is left out.
fn listing(disk: &dyn Disk, dir: &Path) -> BTreeSet<(String, FileType, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for (name, kind) in disk.list(&d).unwrap() {
            let path = d.join(&name);
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if rel == crate::storage::lock::LOCK_FILE {
                continue;
            }
            let bytes = match kind {
                FileType::Folder => {
                    stack.push(path.clone());
                    String::new()
                }
                FileType::Regular => {
                    let bytes = disk.read(&path, u64::MAX).unwrap();
                    placeless(&String::from_utf8_lossy(&bytes), dir)
                }
                _ => String::new(),
            };
            out.insert((rel, kind, bytes));
        }
    }
    out
}

/// What a store says, placeless: held, invalid, events and the rest of the metadata,
/// the drops recorded, the next number.
fn said(store: &Store, dir: &Path) -> String {
    let invalid: Vec<Invalid> = store
        .invalid()
        .iter()
        .map(|i| Invalid {
            path: PathBuf::from(placeless(&i.path.display().to_string(), dir)),
            reason: placeless(&i.reason, dir),
            moved_to: i
                .moved_to
                .as_ref()
                .map(|p| PathBuf::from(placeless(&p.display().to_string(), dir))),
        })
        .collect();
    placeless(
        &format!(
            "held {:?}\ninvalid {invalid:?}\nmeta {:?}\ndropped {:?}\nnext {}\nfailure {:?}",
            store.held(),
            store.meta(),
            store.dropped(),
            store.next_seq(),
            store.write_failure()
        ),
        dir,
    )
}

/// Adds (one replacing another), a prune that drops an expired license, the metadata
/// saved; then the store opened again.
fn a_sequence(disk: Arc<dyn Disk>, dir: &Path, mode: &dyn Fn() -> Mode) -> Store {
    let mut store = open_on(disk.clone(), dir, mode(), T0);
    let (t1, l1) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 100 * DAY))]);
    let (t2, l2) = lic_file(Kind::Site, &[(2, T0, Some(T0 + 200 * DAY))]);
    let (t3, l3) = lic_file(Kind::Phone, &[(1, T0, Some(T0 + 10 * DAY))]);
    store.add(t1.as_bytes(), l1, &[], T0, T0).unwrap();
    store
        .add(t2.as_bytes(), l2, &[site(1)], T0, T0 + 1)
        .unwrap();
    store.add(t3.as_bytes(), l3, &[], T0, T0 + 2).unwrap();
    assert!(store.prune(T0 + 10 * DAY, T0 + 3));
    store.meta_mut().latest_trusted = Some(T0 + 3);
    store.save_meta().unwrap();
    let disk = store.disk().clone();
    drop(store);
    open_on(disk, dir, mode(), T0 + 4)
}

#[test]
fn a_sequence_in_memory_leaves_what_it_leaves_on_a_real_disk() {
    let real = tempfile::tempdir().unwrap();
    let on_real = a_sequence(Arc::new(RealDisk), real.path(), &|| writer(real.path()));
    let mem = MemDisk::new();
    let on_mem = a_sequence(Arc::new(mem.clone()), Path::new(DIR), &|| mem.writer_mode());
    assert_eq!(on_mem.held().len(), 1, "{:?}", on_mem.held());
    assert_eq!(on_mem.dropped().len(), 2);
    assert_eq!(said(&on_mem, Path::new(DIR)), said(&on_real, real.path()));
    assert_eq!(
        listing(&mem, Path::new(DIR)),
        listing(&RealDisk, real.path())
    );
}

#[test]
fn strange_entries_in_memory_are_set_aside_as_on_a_real_disk() {
    let (text, license) = lic_file(Kind::Phone, &[(1, T0, None)]);
    let (site_text, _) = lic_file(Kind::Site, &[(2, T0, None)]);
    // The same scene on both: a license held; the site folder a link; meta.json a FIFO;
    // in the phone folder a folder under a temporary's name, a junk file, and a link
    // to meta.json (a FIFO, set aside before the link is read: then it leads nowhere).
    let real = tempfile::tempdir().unwrap();
    let r = real.path();
    open_on(Arc::new(RealDisk), r, writer(r), T0)
        .add(text.as_bytes(), license.clone(), &[], T0, T0)
        .unwrap();
    std::fs::remove_dir(r.join("site")).unwrap();
    std::os::unix::fs::symlink("phone", r.join("site")).unwrap();
    nix::unistd::mkfifo(
        &r.join("meta.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::create_dir(r.join("phone/.tmp-0000000009.cfg")).unwrap();
    std::fs::write(r.join("phone/notes.txt"), &site_text).unwrap();
    std::os::unix::fs::symlink("../meta.json", r.join("phone/0000000002.cfg")).unwrap();

    let mem = MemDisk::new();
    let m = Path::new(DIR);
    open_on(Arc::new(mem.clone()), m, mem.writer_mode(), T0)
        .add(text.as_bytes(), license, &[], T0, T0)
        .unwrap();
    mem.put(&m.join("site"), Node::Symlink("phone".into()));
    mem.put(&m.join("meta.json"), Node::Other(Special::Fifo));
    mem.put(&m.join("phone/.tmp-0000000009.cfg"), Node::Folder);
    mem.put(&m.join("phone/notes.txt"), Node::File(site_text.into()));
    mem.put(
        &m.join("phone/0000000002.cfg"),
        Node::Symlink("../meta.json".into()),
    );

    let on_real = open_on(Arc::new(RealDisk), r, writer(r), T0 + 1);
    let on_mem = open_on(Arc::new(mem.clone()), m, mem.writer_mode(), T0 + 1);
    assert_eq!(on_mem.held().len(), 1);
    let reasons: Vec<&str> = on_mem.invalid().iter().map(|i| &*i.reason).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].contains("(a FIFO)"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("a symbolic link")));
    assert!(on_mem.invalid().iter().all(|i| i.moved_to.is_some()));
    assert_eq!(said(&on_mem, m), said(&on_real, r));
    assert_eq!(listing(&mem, m), listing(&RealDisk, r));
}

#[test]
fn a_full_or_read_only_disk_fails_the_writes_which_recover_at_the_next() {
    let (text, license) = lic_file(Kind::Site, &[(2, T0, None)]);
    for errno in [Errno::ENOSPC, Errno::EROFS, Errno::EIO] {
        let mem = MemDisk::new();
        let dir = Path::new(DIR);
        let mut store = open_on(Arc::new(mem.clone()), dir, mem.writer_mode(), T0);
        let is = |e: &crate::storage::StoreError| e.error.raw_os_error() == Some(errno as i32);
        // save_meta: whichever call of the durable write fails, nothing is written.
        for kind in [OpKind::Write, OpKind::Fsync, OpKind::Rename] {
            mem.fail_next(kind, 1, errno);
            assert!(is(&store.save_meta().unwrap_err()), "{errno} on {kind:?}");
            assert!(store.write_failure().is_some_and(is));
            assert!(store.meta_unsaved());
            assert_eq!(mem.get(&dir.join("meta.json")), None, "{kind:?}");
        }
        store.save_meta().unwrap();
        assert!(store.write_failure().is_none() && !store.meta_unsaved());
        let on_disk = match mem.get(&dir.join("meta.json")) {
            Some(Node::File(bytes)) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(store.meta(), &on_disk);

        // add: every change in the site folder fails (a look still works: a folder
        // that cannot be looked in takes every number, which is another story); the
        // license is not stored, nor held.
        let site_dir = dir.join("site");
        mem.decide(move |op| {
            let change = !matches!(op.kind, OpKind::Stat | OpKind::List | OpKind::Read);
            (change && op.path.starts_with(&site_dir)).then_some(errno)
        });
        let e = store
            .add(text.as_bytes(), license.clone(), &[], T0, T0)
            .unwrap_err();
        assert!(is(&e), "{e}");
        assert!(store.write_failure().is_some_and(is));
        assert!(store.held().is_empty());
        mem.clear_faults();
        assert!(mem.faults_injected() >= 4);
        let id = store
            .add(text.as_bytes(), license.clone(), &[], T0, T0)
            .unwrap();
        assert_eq!(id, site(1));
        // Nothing left behind by the failed writes: only the license and meta.json.
        let files: Vec<PathBuf> = mem
            .entries()
            .into_iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            files,
            [dir.join("meta.json"), dir.join("site/0000000001.cfg")]
        );
        // The failure is said until meta.json is written again.
        store.save_meta().unwrap();
        assert!(store.write_failure().is_none());
        let again = open_on(Arc::new(mem.clone()), dir, mem.writer_mode(), T0);
        assert_eq!(again.held(), store.held());
    }
}

#[test]
fn only_a_private_disk_is_written_without_the_lock() {
    let mem = MemDisk::new();
    let real = tempfile::tempdir().unwrap();
    let e = Store::open(real.path(), keyring(), &identity(), mem.writer_mode(), T0).unwrap_err();
    assert!(e.to_string().contains("without the writer lock"), "{e}");
    assert_eq!(std::fs::read_dir(real.path()).unwrap().count(), 0);
    // Read-only in memory writes nothing either.
    let store = open_on(Arc::new(mem.clone()), Path::new(DIR), Mode::ReadOnly, T0);
    assert!(store.held().is_empty());
    assert_eq!(mem.entries().len(), 1, "only /");
}

/// Found while putting the store on the in-memory disk: a kind folder whose entries
/// cannot be looked at (EIO from a failing flash, EACCES) made every number "taken",
/// and `add` looked at every one up to ten billion: the agent stalled. Now the add fails
/// at the first, noted like any failed write, and the license is fetched again later.
#[test]
fn a_folder_that_cannot_be_looked_in_fails_an_add_at_once() {
    let mem = MemDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(mem.clone());
    let mut store = open_on(disk, Path::new(DIR), mem.writer_mode(), T0);
    let site_dir = PathBuf::from(DIR).join("site");
    mem.decide(move |op| {
        (op.kind == OpKind::Stat && op.path.starts_with(&site_dir)).then_some(Errno::EIO)
    });
    let (text, license) = lic_file(Kind::Site, &[(1, T0 - DAY, None)]);
    let added = store.add(text.as_bytes(), license, &[], T0, T0);
    assert!(added.is_err(), "{added:?}");
    assert!(
        mem.faults_injected() <= 4,
        "{} looks at a failing folder",
        mem.faults_injected()
    );
    assert!(store.write_failure().is_some());
    assert!(store.held().is_empty());
}
