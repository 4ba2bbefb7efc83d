//! Trusted storage: the accepted license files, exactly as received, and `meta.json`.
//!
//! ```text
//! <state_dir>/phone/0000000003.cfg    accepted phone licenses (name = received order)
//! <state_dir>/site/0000000004.cfg     accepted site licenses
//! <state_dir>/rejected/…              files that no longer verify, each with a .why note
//! <state_dir>/meta.json               latest trusted time, published set, events
//! <state_dir>/dropped.json            records of the licenses dropped (`dropped`)
//! ```
//!
//! The kind folders are the record of what is held: adding a license is one atomic,
//! durable rename (the commit point); the drops it implies come after and are decided
//! again by the engine at every load, so a power cut at any instant converges to the old
//! or the new state. At every load each file is verified again; one that fails (a changed
//! keyring, a damaged file, another phone's license) is moved to `rejected/` with a note
//! of why, never used and never deleted.
//!
//! Nothing in the folder stops the store from opening: an unreadable, oversize or
//! strange `meta.json` (a directory, a FIFO) is set aside like an unparseable one, and a
//! folder that cannot be written (flash remounted read-only after errors, a full file
//! system) only fails the writes. Those failures are noted ([`Store::write_failure`]) and
//! the agent runs on what it holds, publishing it and trying the writes again later: the
//! engine's drops do not depend on them having been made, and a license is only ever
//! removed by a drop the engine decided.
//!
//! # Numbers, and files the agent did not put there
//!
//! Anyone with a shell can copy files into the folders, so nothing found there may make
//! the agent delete or overwrite another file:
//!
//! - A held license is named by its kind and number ([`StoreId`]): the number orders the
//!   licenses of one kind and is looked up in its own folder only. The store gives each
//!   number once, across both folders, but a copied file can repeat one (a site license
//!   copied in as `site/<the phone license's number>.cfg`), and then the two are still
//!   two licenses: a drop of one never touches the other.
//! - Such a repeat is not a file the agent stored as it is: when the engine drops a
//!   license whose number the other kind also holds, it is set aside, not removed.
//! - The next number is one past the largest of the licenses held (verified). A file set
//!   aside pushes nothing, so a junk `18446744073709551615.cfg` takes no number away.
//!   The store writes at most [`MAX_SEQ`] (ten digits); a genuine license held with a
//!   number at or past it (renamed by hand, or stored by an earlier release, whose names
//!   could grow past ten digits, which are still read as the store's own) makes the
//!   store renumber what it holds (in writer mode, at the open, and at an add that finds
//!   no number left): renamed, one at a time and from the lowest, to the lowest free
//!   numbers, so their order is kept at every instant and a power cut between two
//!   renames leaves a store that loads and renumbers the rest next time. Renumbering
//!   never renames onto a name that is there. An earlier release reads the store as
//!   before: the names and `meta.json` are unchanged.
//! - Nothing is removed but a license the engine drops and the agent's own leftovers:
//!   a plain file named `.tmp-<a name the store writes>`, in a kind folder, is a write
//!   that never reached its commit point (`atomic::write` names its temporaries so, and
//!   a power cut leaves exactly that), so it is removed, and must be: the power-cut
//!   tests expect `rejected/` to stay empty after cuts. The agent cannot tell such a
//!   leftover from a copy someone gave that name, but the name is the agent's own, and
//!   nothing in it was ever stored. Anything else under the temporary prefix (another
//!   name, a folder, a link, a FIFO) is set aside like any stranger.
//! - Setting aside never replaces what is in `rejected/`: a name already taken there
//!   gets a `.2`, `.3`, … suffix.
//!
//! # The disk
//!
//! Every file operation goes through a [`disk::Disk`]: the real file system
//! ([`Store::open`]), or an in-memory one that fails calls on command, for the simulator
//! ([`Store::open_on`] with a `memdisk::MemDisk` and its `writer_mode`, a writer that
//! needs no lock because no other process sees that disk). The writer lock itself is
//! the real disk's only.

pub(crate) mod atomic;
pub(crate) mod disk;
pub(crate) mod dropped;
pub(crate) mod lock;
// Outside the tests its user is the simulator of the daemon's sans-io core (being built).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod memdisk;
pub(crate) mod meta;
pub(crate) mod trust;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{self, Held, Identity, Status, StoreId, Verdict};
use crate::format::{self, Kind, License};
use crate::time::UnixTime;
use crate::trust::{Keyring, Verified};
use disk::{Disk, FileType, RealDisk};
pub(crate) use dropped::{Dropped, Reason, SignedParts};
pub use lock::WriterLock;
#[cfg(test)]
pub(crate) use meta::Validator;
pub(crate) use meta::{Meta, PublishedFeature, RebootRecord};

const META_FILE: &str = "meta.json";
pub(crate) const REJECTED_DIR: &str = "rejected";
/// `meta.json` stays small (events are bounded); anything bigger is damage.
const MAX_META_SIZE: u64 = 1 << 20;
/// The largest received number the store gives: ten digits, the width of its names.
/// Past it, the store renumbers what it holds instead (see the module doc).
pub(crate) const MAX_SEQ: u64 = 9_999_999_999;

/// Why the store cannot be used.
#[derive(Debug)]
pub struct StoreError {
    pub(crate) path: PathBuf,
    pub(crate) action: &'static str,
    pub(crate) error: std::io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state store: cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// The same failure again (an `io::Error` is not `Clone`): the OS error number when
    /// there is one, else its kind and words.
    fn again(&self) -> StoreError {
        let error = match self.error.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(self.error.kind(), self.error.to_string()),
        };
        StoreError {
            path: self.path.clone(),
            action: self.action,
            error,
        }
    }
}

fn io_at<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |error| StoreError {
        path: path.to_path_buf(),
        action,
        error,
    }
}

/// A stored file that is not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
    /// Where it was moved (writer mode), or `None` when only reported (read-only mode).
    pub(crate) moved_to: Option<PathBuf>,
}

/// A file set aside in `rejected/` and its note ([`Store::rejected_notes`]).
#[derive(Debug, Clone)]
pub(crate) struct RejectedNote {
    pub(crate) file: PathBuf,
    pub(crate) reason: String,
    pub(crate) at: UnixTime,
    /// Decoded, never verified: for words only.
    pub(crate) license: Option<License>,
}

/// How the store was opened.
#[derive(Debug, Clone)]
pub enum Mode {
    /// May write: creates folders, moves invalid files aside, removes uncommitted
    /// temporaries, prunes what the engine drops. Only the holder of the folder's
    /// [`WriterLock`] can open it so.
    Writer(Arc<WriterLock>),
    /// May write as [`Mode::Writer`] does, holding no lock: only on a disk that no other
    /// process sees (the simulator's in-memory one, whose `writer_mode` makes it). Refused
    /// on a real disk, where only the lock keeps two writers apart.
    InMemoryWriter(InMemory),
    /// Never writes (`status`): problems are only reported.
    ReadOnly,
}

/// The token of [`Mode::InMemoryWriter`]: made only by the in-memory disk (its field is
/// private to the storage module).
#[derive(Debug, Clone)]
pub struct InMemory(());

/// The licenses held and the metadata.
#[derive(Debug)]
pub struct Store {
    /// Where every file operation goes (the real file system but in the simulator).
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    mode: Mode,
    held: Vec<Held>,
    meta: Meta,
    invalid: Vec<Invalid>,
    /// The licenses dropped lately (`dropped.json`), verified, oldest drop first.
    dropped: Vec<Dropped>,
    next_seq: u64,
    /// The last write that failed, in words (cleared by a `meta.json` written).
    write_failure: Option<StoreError>,
    /// `meta.json` in memory differs from the one on disk (a write failed).
    meta_unsaved: bool,
    /// How many of the events were read from disk (the rest were recorded since).
    events_on_disk: usize,
    /// The store could not be read just now (descriptors or memory ran out): the open
    /// fails with this, and nothing is judged by it.
    unreadable_now: Option<StoreError>,
}

/// Errors that say nothing of a file, only of the moment: descriptors or memory running
/// out, a call interrupted. A store read under them is not read at all (the open fails:
/// the daemon keeps deciding from the store as last read); nothing is set aside, started
/// afresh or taken as absent for them (a neighbour exhausting the descriptors made the
/// store look empty: `FEATURES -` and a REBOOT, `meta.json` set aside).
pub(crate) fn passing(e: &std::io::Error) -> bool {
    use nix::libc::{EAGAIN, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM};
    matches!(
        e.raw_os_error(),
        Some(EMFILE | ENFILE | ENOMEM | ENOBUFS | EAGAIN | EINTR)
    )
}

fn kind_dir(kind: Kind) -> &'static str {
    kind.id()
}

fn file_name(seq: u64) -> String {
    format!("{seq:010}.cfg")
}

/// The received number of a stored file's name, if it is one the store wrote: exactly
/// the name [`file_name`] gives. Ten digits; more are read too (an earlier release wrote
/// them once numbers outgrew ten digits), and such a license is renumbered.
fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".cfg")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq: u64 = digits.parse().ok()?;
    (file_name(seq) == name).then_some(seq)
}

/// A license in words, for events and notes.
pub(crate) fn describe(license: &License) -> String {
    format!("{} license {}", license.kind(), license.serial())
}

impl Store {
    /// Opens the store in `dir`, verifying every file with `keyring` and checking its
    /// binding to `identity`. `now` names moved-aside files and dates events.
    pub fn open(
        dir: &Path,
        keyring: &Keyring,
        identity: &Identity,
        mode: Mode,
        now: UnixTime,
    ) -> Result<Store, StoreError> {
        Store::open_on(Arc::new(RealDisk), dir, keyring, identity, mode, now)
    }

    /// [`Store::open`] on `disk`.
    pub(crate) fn open_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        keyring: &Keyring,
        identity: &Identity,
        mode: Mode,
        now: UnixTime,
    ) -> Result<Store, StoreError> {
        let refused = |action| {
            Err(StoreError {
                path: dir.to_path_buf(),
                action,
                error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            })
        };
        match &mode {
            Mode::Writer(lock) if !lock::same_dir(lock.dir(), dir) => {
                return refused("write (the writer lock held is for another folder)");
            }
            Mode::InMemoryWriter(_) if disk.shared() => {
                return refused("write (without the writer lock: only in memory)");
            }
            _ => {}
        }
        let mut store = Store {
            disk,
            dir: dir.to_path_buf(),
            mode,
            held: Vec::new(),
            meta: Meta::default(),
            invalid: Vec::new(),
            dropped: Vec::new(),
            next_seq: 1,
            write_failure: None,
            meta_unsaved: false,
            events_on_disk: 0,
            unreadable_now: None,
        };
        if store.writer() {
            for sub in [kind_dir(Kind::Phone), kind_dir(Kind::Site), REJECTED_DIR] {
                let path = dir.join(sub);
                if let Err(e) = store.disk.ensure_dir(&path) {
                    store.note(&io_at("create", &path)(e));
                }
            }
        }
        store.load_meta(now);
        for kind in [Kind::Phone, Kind::Site] {
            if store.unreadable_now.is_none() {
                store.load_kind(kind, keyring, identity, now);
            }
        }
        if let Some(e) = store.unreadable_now.take() {
            return Err(e);
        }
        // Records only: whatever is wrong with them is logged and left out.
        store.dropped = dropped::load(&*store.disk, dir, keyring);
        store.held.sort_by_key(|h| (h.seq, h.license.kind()));
        store.count_from_held();
        let mut renumbered = false;
        if store.writer() && store.next_seq > MAX_SEQ {
            match store.renumber(now) {
                Ok(moved) => renumbered = !moved.is_empty(),
                Err(e) => store.note(&e),
            }
        }
        if renumbered || store.invalid.iter().any(|i| i.moved_to.is_some()) {
            // Noted if it fails; the events are in memory and written with the next.
            let _ = store.save_meta();
        }
        Ok(store)
    }

    /// The store opened again from its disk, in its mode: every file verified again
    /// (a file damaged on flash since the last look is set aside, never used).
    pub(crate) fn reopen(
        &self,
        keyring: &Keyring,
        identity: &Identity,
        now: UnixTime,
    ) -> Result<Store, StoreError> {
        Store::open_on(
            self.disk.clone(),
            &self.dir,
            keyring,
            identity,
            self.mode.clone(),
            now,
        )
    }

    /// Notes a write that failed: the store goes on with what it holds.
    fn note(&mut self, e: &StoreError) {
        log::error!("{e}; going on with the licenses held, and trying again later");
        self.write_failure = Some(e.again());
    }

    /// The last write that failed, until `meta.json` is written again.
    pub(crate) fn write_failure(&self) -> Option<&StoreError> {
        self.write_failure.as_ref()
    }

    /// `meta.json` on disk is behind the one in memory (its last write failed).
    pub(crate) fn meta_unsaved(&self) -> bool {
        self.meta_unsaved
    }

    /// Takes over the metadata of `older`, the store this one replaces, when `older`
    /// could not write it: what it recorded is not lost with it. The events of this
    /// load (set aside, leftovers removed) follow the older ones.
    pub(crate) fn keep_unsaved(&mut self, older: &Store) {
        if !older.meta_unsaved {
            return;
        }
        let this_load = self
            .meta
            .events
            .split_off(self.events_on_disk.min(self.meta.events.len()));
        self.meta = older.meta.clone();
        for e in this_load {
            self.meta.record(e.at, &e.what, e.subject, e.detail);
        }
        self.meta_unsaved = true;
    }

    /// Reads `meta.json`. Anything but a regular file of at most [`MAX_META_SIZE`] bytes
    /// of valid metadata is set aside like a damaged one, and the store starts afresh.
    fn load_meta(&mut self, now: UnixTime) {
        let path = self.dir.join(META_FILE);
        let trouble = match self.disk.read(&path, MAX_META_SIZE) {
            Ok(bytes) => match serde_json::from_slice::<Meta>(&bytes) {
                Ok(meta) => {
                    self.events_on_disk = meta.events.len();
                    self.meta = meta;
                    return;
                }
                Err(e) => format!("unparseable ({e})"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return, // a new store
            Err(e) if passing(&e) => {
                self.unreadable_now = Some(io_at("read", &path)(e));
                return;
            }
            Err(e) => format!("unreadable ({e})"),
        };
        let reason =
            format!("metadata {trouble}; started afresh (latest trusted time and events lost)");
        self.set_aside(&path, reason, now);
    }

    /// Reads the licenses of `kind`. A folder that cannot be listed is reported (its
    /// licenses are not used, and not touched); anything but a folder in its place is set
    /// aside.
    fn load_kind(&mut self, kind: Kind, keyring: &Keyring, identity: &Identity, now: UnixTime) {
        let dir = self.dir.join(kind_dir(kind));
        // The kind folders are the agent's own: a link in their place (to the other
        // kind's folder, say) would have a license judged in the wrong folder and moved
        // out of its own. The link is set aside (its target is not touched).
        if self
            .disk
            .file_type(&dir)
            .is_ok_and(|t| t == FileType::Symlink)
        {
            let reason = format!("a symbolic link, where the {kind} licenses' own folder goes");
            return self.replace_with_folder(&dir, reason, now);
        }
        // Only the names: each is looked at again when judged (it may change meanwhile).
        let mut names: Vec<String> = match self.disk.list(&dir) {
            Ok(entries) => entries.into_iter().map(|(name, _)| name).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                let reason = format!("not a folder, where the {kind} licenses go");
                return self.replace_with_folder(&dir, reason, now);
            }
            Err(e) if passing(&e) => {
                self.unreadable_now = Some(io_at("list", &dir)(e));
                return;
            }
            Err(e) => {
                self.invalid.push(Invalid {
                    path: dir,
                    reason: format!("cannot list the {kind} licenses: {e}"),
                    moved_to: None,
                });
                return;
            }
        };
        names.sort();
        for name in names {
            let path = dir.join(&name);
            if let Some(stored) = name.strip_prefix(atomic::TEMP_PREFIX) {
                self.leftover(&path, stored, now);
                continue;
            }
            let Some(seq) = seq_of(&name) else {
                self.set_aside(&path, "not a file this agent stored".into(), now);
                continue;
            };
            match verify_stored(&*self.disk, &path, kind, keyring, identity) {
                Ok(license) => self.held.push(Held { seq, license }),
                Err(Unusable::Now(e)) => {
                    self.unreadable_now = Some(io_at("read", &path)(e));
                    return;
                }
                Err(Unusable::Because(reason)) => self.set_aside(&path, reason, now),
                Err(Unusable::KeyNotKnownNow(reason)) => {
                    // Kept where it is, not used: the trust held may be short of the
                    // version that trusts its key (`Keyring::incomplete`).
                    log::warn!("{}: {reason}; kept in place", path.display());
                    self.invalid.push(Invalid {
                        path,
                        reason: format!(
                            "{reason}; kept in place: the stored trust documents could not \
                             all be read, so its key may be one a later version trusts"
                        ),
                        moved_to: None,
                    });
                }
            }
        }
    }

    /// Makes sure the folder `name` of the state folder is one (writer mode): anything
    /// else standing there (a file, a link) is set aside with `what` said, as for the
    /// kind folders, so that nothing put there stops what the agent keeps in it.
    pub(crate) fn own_folder(&mut self, name: &str, what: &str, now: UnixTime) {
        let dir = self.dir.join(name);
        if !self.writer() {
            return;
        }
        match self.disk.file_type(&dir) {
            Ok(FileType::Folder) | Err(_) => {}
            Ok(_) => {
                let reason = format!("not a folder, where {what} go");
                self.replace_with_folder(&dir, reason, now);
            }
        }
    }

    /// Sets aside what stands where a kind folder goes, and puts a folder there.
    fn replace_with_folder(&mut self, dir: &Path, reason: String, now: UnixTime) {
        self.set_aside(dir, reason, now);
        if self.writer() {
            if let Err(e) = self.disk.ensure_dir(dir) {
                self.note(&io_at("create", dir)(e));
            }
        }
    }

    /// A name under the temporary prefix in a kind folder. The agent's own leftover (a
    /// plain file named for a name the store writes: a write that never reached its
    /// commit point, so nothing was stored) is removed; anything else is set aside.
    fn leftover(&mut self, path: &Path, stored: &str, now: UnixTime) {
        let plain = match self.disk.file_type(path) {
            Ok(t) => t == FileType::Regular,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => false,
        };
        if !plain || seq_of(stored).is_none() {
            let what = if plain {
                "not a file this agent stored (nor one it was writing)".to_string()
            } else {
                format!(
                    "not a file this agent stored ({}, under the name of an unfinished write)",
                    self.file_kind(path)
                )
            };
            self.set_aside(path, what, now);
            return;
        }
        if !self.writer() {
            return;
        }
        match self.disk.remove(path) {
            Ok(()) => self.meta.record(
                now,
                "removed-leftover",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                "an unfinished write (power cut or crash) that never committed",
            ),
            Err(e) => self.note(&io_at("remove", path)(e)),
        }
    }

    /// The next number: one past the largest held (a file set aside gives none).
    fn count_from_held(&mut self) {
        self.next_seq = self
            .held
            .iter()
            .map(|h| h.seq.saturating_add(1))
            .max()
            .unwrap_or(1);
    }

    /// Whether a file named for number `seq` is in either kind folder. A name that
    /// cannot be looked at (a folder that cannot be read, a failing flash) is an error,
    /// never "taken": counted as taken, every number after it was looked at in turn, up
    /// to [`MAX_SEQ`] (ten billion `lstat`s: the agent stalled).
    fn taken(&self, seq: u64) -> Result<bool, StoreError> {
        let name = file_name(seq);
        for kind in [Kind::Phone, Kind::Site] {
            let path = self.dir.join(kind_dir(kind)).join(&name);
            match self.disk.file_type(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at("look for a free number at", &path)(e)),
                Ok(_) => return Ok(true),
            }
        }
        Ok(false)
    }

    /// The number the next license gets: the first from `next_seq` that no file in
    /// either folder has (another process may have put one there since this store was
    /// opened), or `None` past [`MAX_SEQ`].
    fn free_number(&self) -> Result<Option<u64>, StoreError> {
        for seq in self.next_seq..=MAX_SEQ {
            if !self.taken(seq)? {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Renumbers the held licenses, from the lowest, to the lowest free numbers: each
    /// one renamed (durably, onto a name nobody has) to a number below its own and past
    /// those of the ones before it, so the received order holds at every instant (see
    /// the module doc). Returns what moved; stops at the first rename that fails (the
    /// ones made stay made, and are in the store as it is now).
    fn renumber(&mut self, now: UnixTime) -> Result<Vec<(StoreId, StoreId)>, StoreError> {
        self.writable()?;
        self.held.sort_by_key(|h| (h.seq, h.license.kind()));
        let mut moved = Vec::new();
        let mut next: u64 = 1;
        for i in 0..self.held.len() {
            let old = self.held[i].id();
            let mut target = next;
            while target < old.seq && self.taken(target)? {
                target += 1;
            }
            if target >= old.seq {
                next = old.seq.saturating_add(1);
                continue;
            }
            let from = self.path_of(&self.held[i]);
            let to = self.dir.join(kind_dir(old.kind)).join(file_name(target));
            self.disk
                .rename(&from, &to)
                .map_err(io_at("renumber", &from))?;
            self.held[i].seq = target;
            self.meta.record(
                now,
                "renumbered",
                describe(&self.held[i].license),
                format!(
                    "{}/{} is now {}/{}: the numbers had run out (at most {MAX_SEQ})",
                    kind_dir(old.kind),
                    file_name(old.seq),
                    kind_dir(old.kind),
                    file_name(target)
                ),
            );
            moved.push((old, self.held[i].id()));
            next = target + 1;
        }
        self.count_from_held();
        Ok(moved)
    }

    /// Moves an unusable file to `rejected/` with a note (writer mode), or reports it.
    /// A move that fails is noted; the file is not used either way.
    fn set_aside(&mut self, path: &Path, reason: String, now: UnixTime) {
        let mut moved_to = None;
        if self.writer() {
            match self.move_aside(path, &reason, now) {
                Ok(target) => {
                    self.meta.record(
                        now,
                        "moved-aside",
                        path.display().to_string(),
                        reason.clone(),
                    );
                    moved_to = Some(target);
                }
                Err(e) => self.note(&e),
            }
        }
        self.invalid.push(Invalid {
            path: path.to_path_buf(),
            reason,
            moved_to,
        });
    }

    fn move_aside(&self, path: &Path, reason: &str, now: UnixTime) -> Result<PathBuf, StoreError> {
        let rejected = self.dir.join(REJECTED_DIR);
        let origin = path
            .strip_prefix(&self.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('/', "-");
        // Never in place of something set aside before (the same name, the same second).
        let target_name = self
            .disk
            .unused_name(&rejected, &format!("{now}-{origin}"), &["", ".why"])
            .map_err(io_at("name a file in", &rejected))?;
        let note = format!(
            "{}\nmoved here from {} at {} (Unix {now})\n",
            reason,
            path.display(),
            format::features::rfc3339(u32::try_from(now.max(0)).unwrap_or(u32::MAX))
        );
        // The note first: a power cut in between leaves the file in place, to be judged
        // again at the next load.
        self.disk
            .write(&rejected, &format!("{target_name}.why"), note.as_bytes())
            .map_err(io_at("write a note in", &rejected))?;
        let target = rejected.join(&target_name);
        self.disk
            .rename(path, &target)
            .map_err(io_at("move aside", path))?;
        Ok(target)
    }

    /// The files set aside in `rejected/` whose note's reason `wanted` accepts, newest
    /// first, at most `max` notes read: each file (still there) with its reason, the
    /// instant its name gives, and the license it holds if it decodes (unverified: for
    /// words only). What the agent recorded of a set-aside can be lost to a power cut
    /// between the move and `meta.json`; the note, written first, cannot.
    pub(crate) fn rejected_notes(
        &self,
        wanted: &dyn Fn(&str) -> bool,
        max: usize,
    ) -> Vec<RejectedNote> {
        let dir = self.dir.join(REJECTED_DIR);
        let Ok(entries) = self.disk.list(&dir) else {
            return Vec::new();
        };
        let mut notes: Vec<String> = entries
            .into_iter()
            .filter(|(name, kind)| *kind == FileType::Regular && name.ends_with(".why"))
            .map(|(name, _)| name)
            .collect();
        notes.sort_unstable_by(|a, b| b.cmp(a));
        let mut found = Vec::new();
        for name in notes.into_iter().take(max) {
            let Ok(bytes) = self.disk.read(&dir.join(&name), 4096) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let reason = text.lines().next().unwrap_or_default().to_string();
            if !wanted(&reason) {
                continue;
            }
            let file = dir.join(name.trim_end_matches(".why"));
            // A note whose file was never moved (a cut in between) names nothing.
            let Ok(content) = self.disk.read(&file, format::MAX_FILE_SIZE as u64) else {
                continue;
            };
            let at = name
                .split('-')
                .next()
                .and_then(|t| t.parse::<UnixTime>().ok())
                .unwrap_or_default();
            found.push(RejectedNote {
                file,
                reason,
                at,
                license: format::parse(&content).ok(),
            });
        }
        found
    }

    /// The licenses held, in received order.
    pub fn held(&self) -> &[Held] {
        &self.held
    }

    /// Files found unusable at load.
    pub fn invalid(&self) -> &[Invalid] {
        &self.invalid
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The licenses dropped lately, oldest drop first (as recorded: the caller judges
    /// which still stand at its instant with [`dropped::keep`]).
    pub(crate) fn dropped(&self) -> &[Dropped] {
        &self.dropped
    }

    pub(crate) fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }

    /// The received number the next accepted license gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where a held license's file is.
    pub(crate) fn path_of(&self, held: &Held) -> PathBuf {
        self.dir
            .join(kind_dir(held.license.kind()))
            .join(file_name(held.seq))
    }

    /// The disk this store is on (to open it again there: the simulator's core).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// What is at `path`, in words, for a note (`a folder`, `a symbolic link`, …).
    fn file_kind(&self, path: &Path) -> &'static str {
        self.disk
            .file_type(path)
            .map_or("something unreadable", FileType::words)
    }

    pub(crate) fn writer(&self) -> bool {
        matches!(self.mode, Mode::Writer(_) | Mode::InMemoryWriter(_))
    }

    /// The writer lock this store was opened with (`None` read-only).
    pub(crate) fn lock(&self) -> Option<&Arc<WriterLock>> {
        match &self.mode {
            Mode::Writer(lock) => Some(lock),
            Mode::InMemoryWriter(_) | Mode::ReadOnly => None,
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.mode {
            Mode::Writer(_) | Mode::InMemoryWriter(_) => Ok(()),
            Mode::ReadOnly => Err(StoreError {
                path: self.dir.clone(),
                action: "write (opened read-only)",
                error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }),
        }
    }

    /// Stores an accepted license exactly as received (`bytes`), then drops the held
    /// licenses the acceptance replaces (named as they were when `drop` was decided, at
    /// `at`: a renumbering on the way is followed). Returns its identity. An error means the
    /// license was not stored (and nothing was lost: at most, held licenses were
    /// renumbered); a drop that fails is only noted.
    pub(crate) fn add(
        &mut self,
        bytes: &[u8],
        license: Verified<License>,
        drop: &[StoreId],
        at: UnixTime,
        now: UnixTime,
    ) -> Result<StoreId, StoreError> {
        self.writable()?;
        let dir = self.dir.join(kind_dir(license.kind()));
        // Never write over anything that is there, in either folder (another process may
        // have put a file there since this store was opened).
        let mut drop = drop.to_vec();
        let seq = match self.free_number().inspect_err(|e| self.note(e))? {
            Some(seq) => seq,
            None => {
                let moved = self.renumber(now).inspect_err(|e| self.note(e))?;
                for id in &mut drop {
                    if let Some((_, new)) = moved.iter().find(|(old, _)| old == id) {
                        *id = *new;
                    }
                }
                self.free_number()
                    .inspect_err(|e| self.note(e))?
                    .ok_or_else(|| StoreError {
                        path: dir.clone(),
                        action: "number a license in",
                        error: std::io::Error::other(format!(
                            "no received number is left (at most {MAX_SEQ}, with every one \
                         from {} taken)",
                            self.next_seq
                        )),
                    })?
            }
        };
        if let Err(e) = self.disk.write(&dir, &file_name(seq), bytes) {
            let e = io_at("store a license in", &dir)(e);
            self.note(&e);
            return Err(e);
        }
        self.next_seq = seq.saturating_add(1);
        self.meta.record(
            now,
            "accepted",
            describe(&license),
            format!("stored as {}/{}", kind_dir(license.kind()), file_name(seq)),
        );
        let added = Held { seq, license };
        let id = added.id();
        self.held.push(added);
        self.drop_held(&drop, at, now, "replaced by a license of longer duration");
        Ok(id)
    }

    /// Removes held licenses (the engine's drops: replaced, or Inactive), each named by
    /// kind and number. One whose number the other kind holds too was not stored by
    /// this agent as it is (the store gives a number once): it is set aside, not
    /// removed. One whose file cannot be removed (or moved) stays held (it is on disk),
    /// and the failure is noted: the engine gives it no role, so nothing it carries is
    /// in force.
    ///
    /// Each license dropped is recorded (`dropped.json`): `ended` when it is Inactive at
    /// `at`, the instant the drop was decided by, else `replaced`; dated `now`.
    pub(crate) fn drop_held(&mut self, ids: &[StoreId], at: UnixTime, now: UnixTime, why: &str) {
        if !self.writer() {
            return;
        }
        let recorded = self.dropped.len();
        for id in ids {
            let Some(pos) = self.held.iter().position(|h| h.id() == *id) else {
                continue;
            };
            let path = self.path_of(&self.held[pos]);
            let twin = self
                .held
                .iter()
                .find(|h| h.seq == id.seq && h.license.kind() != id.kind)
                .map(|h| self.path_of(h));
            if let Some(twin) = twin {
                let reason = format!(
                    "dropped ({why}), and its number is also the number of the {} license \
                     {}: not a file this agent stored as it is, so set aside, not removed",
                    other_kind(id.kind),
                    twin.display()
                );
                match self.move_aside(&path, &reason, now) {
                    Ok(target) => {
                        self.meta.record(
                            now,
                            "moved-aside",
                            path.display().to_string(),
                            reason.clone(),
                        );
                        self.invalid.push(Invalid {
                            path,
                            reason,
                            moved_to: Some(target),
                        });
                        let gone = self.held.remove(pos);
                        self.record_drop(gone, at, now);
                    }
                    Err(e) => self.note(&e),
                }
                continue;
            }
            if let Err(e) = self.disk.remove(&path) {
                self.note(&io_at("remove", &path)(e));
                continue;
            }
            let gone = self.held.remove(pos);
            self.meta
                .record(now, "dropped", describe(&gone.license), why.to_string());
            self.record_drop(gone, at, now);
        }
        if self.dropped.len() != recorded {
            self.save_dropped(at);
        }
    }

    /// Notes a license dropped, in memory (see [`Store::drop_held`]).
    fn record_drop(&mut self, gone: Held, at: UnixTime, now: UnixTime) {
        let reason = if engine::license_status(&gone.license, at) == Status::Inactive {
            Reason::Ended
        } else {
            Reason::Replaced
        };
        self.dropped.push(Dropped {
            license: gone.license,
            at: now,
            reason,
        });
    }

    /// Keeps the records that stand at `at` and writes them. A failure is only logged:
    /// the records are a view for the fleet, kept in memory meanwhile, and never decide
    /// anything.
    fn save_dropped(&mut self, at: UnixTime) {
        self.dropped = dropped::keep(std::mem::take(&mut self.dropped), Some(at));
        let bytes = dropped::encode(&self.dropped);
        if let Err(e) = self.disk.write(&self.dir, dropped::FILE, &bytes) {
            log::warn!(
                "cannot write {}: {e}; the records of dropped licenses are kept in memory",
                self.dir.join(dropped::FILE).display()
            );
        }
    }

    /// Applies the engine's drops at `at` (a sane clock only: the caller never prunes
    /// while the clock is unsynced). Returns whether anything was dropped.
    pub fn prune(&mut self, at: UnixTime, now: UnixTime) -> bool {
        let drops: Vec<StoreId> = [Kind::Phone, Kind::Site]
            .into_iter()
            .flat_map(|k| engine::select(&self.held, k, at).drop)
            .collect();
        let before = self.held.len();
        self.drop_held(
            &drops,
            at,
            now,
            "neither the primary license nor bridging to it, or expired",
        );
        self.held.len() != before
    }

    /// Writes `meta.json` atomically. A failure is noted too (and the write is owed).
    pub(crate) fn save_meta(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        let path = self.dir.join(META_FILE);
        let written = serde_json::to_vec_pretty(&self.meta)
            .map_err(|e| StoreError {
                path: path.clone(),
                action: "encode",
                error: std::io::Error::other(e),
            })
            .and_then(|bytes| {
                self.disk
                    .write(&self.dir, META_FILE, &bytes)
                    .map_err(io_at("write", &path))
            });
        match written {
            Ok(_) => {
                self.write_failure = None;
                self.meta_unsaved = false;
                Ok(())
            }
            Err(e) => {
                self.meta_unsaved = true;
                self.note(&e);
                Err(e)
            }
        }
    }
}

/// The other kind.
fn other_kind(kind: Kind) -> Kind {
    match kind {
        Kind::Phone => Kind::Site,
        Kind::Site => Kind::Phone,
    }
}

/// Verifies a stored file again: signature, kind folder, binding to this phone.
/// Why a stored file is not used: something about the file, or only the moment.
enum Unusable {
    Because(String),
    /// Signed by a key the keyring does not know, while the keyring is
    /// [`Keyring::incomplete`]: not used, not moved.
    KeyNotKnownNow(String),
    /// A [`passing`] error: the file was not read, and is judged by nothing.
    Now(std::io::Error),
}

impl From<String> for Unusable {
    fn from(reason: String) -> Unusable {
        Unusable::Because(reason)
    }
}

fn unreadable(e: std::io::Error) -> Unusable {
    if passing(&e) {
        Unusable::Now(e)
    } else {
        Unusable::Because(format!("unreadable: {e}"))
    }
}

fn verify_stored(
    disk: &dyn Disk,
    path: &Path,
    kind: Kind,
    keyring: &Keyring,
    identity: &Identity,
) -> Result<Verified<License>, Unusable> {
    let bytes = match disk.read(path, format::MAX_FILE_SIZE as u64) {
        Ok(bytes) => bytes,
        Err(e) if crate::files::is_too_large(&e) => {
            let m = format::too_big(None);
            return Err(format!("no longer verifies: malformed: {m}").into());
        }
        Err(e) => return Err(unreadable(e)),
    };
    judge_stored(&bytes, kind, keyring, identity).map_err(|reason| {
        let unknown_key = keyring.incomplete()
            && format::parse(&bytes).is_ok_and(|l| {
                keyring.get(l.key_id()).is_none() && keyring.removed_by(l.key_id()).is_none()
            });
        if unknown_key {
            Unusable::KeyNotKnownNow(reason)
        } else {
            Unusable::Because(reason)
        }
    })
}

/// Why a license of key `key` is set aside after trust version `version` removed it
/// (`docs/trust-update.md`, "Keys removed: stored licenses").
pub(crate) fn removed_key_reason(key: format::KeyId, version: u32) -> String {
    format!("key {key} removed by trust version {version}")
}

/// Judges a stored file's bytes again: signature, kind folder, binding to this phone.
fn judge_stored(
    bytes: &[u8],
    kind: Kind,
    keyring: &Keyring,
    identity: &Identity,
) -> Result<Verified<License>, String> {
    let license = keyring.verify_bytes(bytes).map_err(|e| match e {
        // A key a trust update removed: the reason the update gives, wherever the file
        // is found (the update's own set-aside may not have happened: a power cut).
        crate::trust::Rejection::UnknownKey { key_id } if keyring.removed_by(key_id).is_some() => {
            removed_key_reason(key_id, keyring.removed_by(key_id).unwrap_or_default())
        }
        e => format!("no longer verifies: {}: {e}", Verdict::of(&e).id()),
    })?;
    if license.kind() != kind {
        return Err(format!(
            "a {} license in the {} folder",
            license.kind(),
            kind
        ));
    }
    match kind {
        Kind::Phone if license.serial() != identity.mac => Err(format!(
            "bound to MAC {}, not to this phone ({})",
            license.serial(),
            identity.mac
        )),
        Kind::Site if identity.site_serial.is_some_and(|s| s != license.serial()) => Err(format!(
            "for site {}, not this phone's site",
            license.serial()
        )),
        _ => Ok(license),
    }
}

#[cfg(test)]
mod tests;
