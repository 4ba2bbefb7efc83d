//! Trusted storage: the accepted license files, exactly as received, and `meta.json`.
//!
//! ```text
//! <state_dir>/phone/0000000003.cfg    accepted phone licenses (name = received order)
//! <state_dir>/site/0000000004.cfg     accepted site licenses
//! <state_dir>/rejected/…              files that no longer verify, each with a .why note
//! <state_dir>/meta.json               latest trusted time, published set, validators, events
//! ```
//!
//! The kind folders are the record of what is held: adding a license is one atomic,
//! durable rename (the commit point); the drops it implies come after and are decided
//! again by the engine at every load, so a power cut at any instant converges to the old
//! or the new state. At every load each file is verified again; one that fails (a changed
//! keyring, a damaged file, another phone's license) is moved to `rejected/` with a note
//! of why, never used and never deleted.

pub(crate) mod atomic;
pub(crate) mod lock;
pub(crate) mod meta;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{self, Held, Identity};
use crate::format::{self, Capped, Kind, License};
use crate::time::UnixTime;
use crate::trust::{Keyring, Verified};
pub use lock::WriterLock;
pub(crate) use meta::{Meta, PublishedFeature, RebootRecord, Validator};

const META_FILE: &str = "meta.json";
const REJECTED_DIR: &str = "rejected";
/// `meta.json` stays small (events are bounded); anything bigger is damage.
const MAX_META_SIZE: u64 = 1 << 20;

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

/// How the store was opened.
#[derive(Debug, Clone)]
pub enum Mode {
    /// May write: creates folders, moves invalid files aside, removes uncommitted
    /// temporaries, prunes what the engine drops. Only the holder of the folder's
    /// [`WriterLock`] can open it so.
    Writer(Arc<WriterLock>),
    /// Never writes (`status`): problems are only reported.
    ReadOnly,
}

/// The licenses held and the metadata.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    mode: Mode,
    held: Vec<Held>,
    meta: Meta,
    invalid: Vec<Invalid>,
    next_seq: u64,
}

fn kind_dir(kind: Kind) -> &'static str {
    kind.name()
}

fn file_name(seq: u64) -> String {
    format!("{seq:010}.cfg")
}

/// The received number of a stored file's name, if it is one the store wrote.
fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".cfg")?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
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
        if let Mode::Writer(lock) = &mode {
            if !lock::same_dir(lock.dir(), dir) {
                return Err(StoreError {
                    path: dir.to_path_buf(),
                    action: "write (the writer lock held is for another folder)",
                    error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                });
            }
            for sub in [kind_dir(Kind::Phone), kind_dir(Kind::Site), REJECTED_DIR] {
                let path = dir.join(sub);
                atomic::ensure_dir(&path).map_err(io_at("create", &path))?;
            }
        }
        let mut store = Store {
            dir: dir.to_path_buf(),
            mode,
            held: Vec::new(),
            meta: Meta::default(),
            invalid: Vec::new(),
            next_seq: 1,
        };
        store.load_meta(now)?;
        for kind in [Kind::Phone, Kind::Site] {
            store.load_kind(kind, keyring, identity, now)?;
        }
        store.held.sort_by_key(|h| h.seq);
        if store.invalid.iter().any(|i| i.moved_to.is_some()) {
            store.save_meta()?;
        }
        Ok(store)
    }

    fn load_meta(&mut self, now: UnixTime) -> Result<(), StoreError> {
        let path = self.dir.join(META_FILE);
        let bytes = match read_capped(&path, MAX_META_SIZE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(()), // a new store
            Err(e) => return Err(io_at("read", &path)(e)),
        };
        match serde_json::from_slice::<Meta>(&bytes) {
            Ok(meta) => self.meta = meta,
            Err(e) => {
                let reason = format!("metadata unreadable ({e}); started afresh (latest trusted time and events lost)");
                self.set_aside(&path, reason, now)?;
            }
        }
        Ok(())
    }

    fn load_kind(
        &mut self,
        kind: Kind,
        keyring: &Keyring,
        identity: &Identity,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let dir = self.dir.join(kind_dir(kind));
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at("list", &dir)(e)),
        };
        let mut names: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at("list", &dir))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            if name.starts_with(atomic::TEMP_PREFIX) {
                // A write that never reached its commit point: nothing was stored.
                if self.writer() {
                    atomic::remove(&path).map_err(io_at("remove", &path))?;
                    self.meta.record(
                        now,
                        "removed-leftover",
                        name,
                        "an unfinished write (power cut or crash) that never committed",
                    );
                }
                continue;
            }
            let Some(seq) = seq_of(&name) else {
                self.set_aside(&path, "not a file this agent stored".into(), now)?;
                continue;
            };
            self.next_seq = self.next_seq.max(seq + 1);
            match verify_stored(&path, kind, keyring, identity) {
                Ok(license) => self.held.push(Held { seq, license }),
                Err(reason) => self.set_aside(&path, reason, now)?,
            }
        }
        Ok(())
    }

    /// Moves an unusable file to `rejected/` with a note (writer mode), or reports it.
    fn set_aside(&mut self, path: &Path, reason: String, now: UnixTime) -> Result<(), StoreError> {
        let mut moved_to = None;
        if self.writer() {
            let rejected = self.dir.join(REJECTED_DIR);
            let origin = path
                .strip_prefix(&self.dir)
                .unwrap_or(path)
                .to_string_lossy()
                .replace('/', "-");
            let target_name = format!("{now}-{origin}");
            let note = format!(
                "{}\nmoved here from {} at {} (Unix {now})\n",
                reason,
                path.display(),
                format::features::rfc3339(u32::try_from(now.max(0)).unwrap_or(u32::MAX))
            );
            // The note first: a power cut in between leaves the file in place, to be
            // judged again at the next load.
            atomic::write(&rejected, &format!("{target_name}.why"), note.as_bytes())
                .map_err(io_at("write note in", &rejected))?;
            let target = rejected.join(&target_name);
            atomic::rename(path, &target).map_err(io_at("move aside", path))?;
            self.meta.record(
                now,
                "moved-aside",
                path.display().to_string(),
                reason.clone(),
            );
            moved_to = Some(target);
        }
        self.invalid.push(Invalid {
            path: path.to_path_buf(),
            reason,
            moved_to,
        });
        Ok(())
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

    fn writer(&self) -> bool {
        matches!(self.mode, Mode::Writer(_))
    }

    /// The writer lock this store was opened with (`None` read-only).
    pub(crate) fn lock(&self) -> Option<&Arc<WriterLock>> {
        match &self.mode {
            Mode::Writer(lock) => Some(lock),
            Mode::ReadOnly => None,
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.mode {
            Mode::Writer(_) => Ok(()),
            Mode::ReadOnly => Err(StoreError {
                path: self.dir.clone(),
                action: "write (opened read-only)",
                error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }),
        }
    }

    /// Stores an accepted license exactly as received (`bytes`), then drops the held
    /// licenses the acceptance replaces. Returns its received number.
    pub(crate) fn add(
        &mut self,
        bytes: &[u8],
        license: Verified<License>,
        drop: &[u64],
        now: UnixTime,
    ) -> Result<u64, StoreError> {
        self.writable()?;
        let dir = self.dir.join(kind_dir(license.kind()));
        // Another process (a hand install while the daemon runs) may have used numbers
        // since this store was opened: never write over a file that is there.
        let mut seq = self.next_seq;
        while dir.join(file_name(seq)).exists() {
            seq += 1;
        }
        atomic::write(&dir, &file_name(seq), bytes).map_err(io_at("store a license in", &dir))?;
        self.next_seq = seq + 1;
        self.meta.record(
            now,
            "accepted",
            describe(&license),
            format!("stored as {}/{}", kind_dir(license.kind()), file_name(seq)),
        );
        self.held.push(Held { seq, license });
        self.drop_held(drop, now, "replaced by a license of longer duration")?;
        Ok(seq)
    }

    /// Removes held licenses (the engine's drops: replaced, or Inactive).
    pub(crate) fn drop_held(
        &mut self,
        seqs: &[u64],
        now: UnixTime,
        why: &str,
    ) -> Result<(), StoreError> {
        self.writable()?;
        for seq in seqs {
            let Some(pos) = self.held.iter().position(|h| h.seq == *seq) else {
                continue;
            };
            let path = self.path_of(&self.held[pos]);
            atomic::remove(&path).map_err(io_at("remove", &path))?;
            let gone = self.held.remove(pos);
            self.meta
                .record(now, "dropped", describe(&gone.license), why.to_string());
        }
        Ok(())
    }

    /// Applies the engine's drops at `at` (a sane clock only: the caller never prunes
    /// while the clock is unsynced). Returns whether anything was dropped.
    pub fn prune(&mut self, at: UnixTime, now: UnixTime) -> Result<bool, StoreError> {
        let drops: Vec<u64> = [Kind::Phone, Kind::Site]
            .into_iter()
            .flat_map(|k| engine::select(&self.held, k, at).drop)
            .collect();
        if drops.is_empty() {
            return Ok(false);
        }
        self.drop_held(
            &drops,
            now,
            "neither the primary license nor bridging to it, or expired",
        )?;
        Ok(true)
    }

    /// Writes `meta.json` atomically.
    pub(crate) fn save_meta(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        let bytes = serde_json::to_vec_pretty(&self.meta).map_err(|e| StoreError {
            path: self.dir.join(META_FILE),
            action: "encode",
            error: std::io::Error::other(e),
        })?;
        atomic::write(&self.dir, META_FILE, &bytes).map_err(io_at("write", &self.dir))?;
        Ok(())
    }
}

/// Reads at most `cap` bytes; `None` when the file does not exist.
fn read_capped(path: &Path, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    // Never a FIFO or a device: they could hold the agent for ever.
    let file = match crate::files::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(Some(bytes))
}

/// Verifies a stored file again: signature, kind folder, binding to this phone.
fn verify_stored(
    path: &Path,
    kind: Kind,
    keyring: &Keyring,
    identity: &Identity,
) -> Result<Verified<License>, String> {
    let file = crate::files::open_regular(path).map_err(|e| format!("unreadable: {e}"))?;
    let bytes = match format::read_capped(file).map_err(|e| format!("unreadable: {e}"))? {
        Capped::Content(bytes) => bytes,
        Capped::TooBig(m) => return Err(format!("no longer verifies: malformed: {m}")),
    };
    let license = keyring
        .verify_bytes(&bytes)
        .map_err(|e| format!("no longer verifies: {}: {e}", e.verdict()))?;
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
