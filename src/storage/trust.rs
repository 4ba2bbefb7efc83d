//! The trust documents a phone has taken (`docs/trust-update.md`, "Rollback"):
//! `trust/trust-N.cfg` in the state folder, each written durably and atomically before
//! it is used, read back at start for the chain (`trust::chain`). An older agent does
//! not look into this folder.
//!
//! Nothing here judges a document: the bytes are kept and read back as they were taken,
//! and whatever else is in the folder is reported, never removed, but the agent's own
//! unfinished writes (a power cut between the temporary file and its rename).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::atomic::TEMP_PREFIX;
use super::disk::{Disk, FileType};
use crate::trust::update::MAX_DOCUMENT;

/// The folder, under the state folder.
pub(crate) const TRUST_DIR: &str = "trust";

/// The most documents read back: a phone takes a handful a year; more is not a store
/// this agent wrote, and the lowest versions are the ones the chain needs.
pub(crate) const MAX_STORED: usize = 256;

pub(crate) use crate::trust::update::document_name as file_name;

/// The version a file name holds, if it is one the store writes.
fn version_of(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("trust-")?.strip_suffix(".cfg")?;
    let plain = !digits.is_empty()
        && digits.len() <= 10
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    plain.then(|| digits.parse().ok()).flatten()
}

/// What the folder holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Each version's bytes, as taken.
    pub(crate) documents: BTreeMap<u32, Vec<u8>>,
    /// Everything else, with why it is not read (left where it is).
    pub(crate) strangers: Vec<(String, String)>,
    /// The agent's own unfinished writes, for the writer to remove.
    pub(crate) leftovers: Vec<PathBuf>,
}

/// Reads the folder of `state_dir` (none yet: nothing stored).
pub(crate) fn read(disk: &dyn Disk, state_dir: &Path) -> io::Result<Stored> {
    let dir = state_dir.join(TRUST_DIR);
    let mut stored = Stored::default();
    let mut entries = match disk.list(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stored),
        Err(e) => return Err(e),
    };
    entries.sort_by_key(|(name, _)| (version_of(name).unwrap_or(u32::MAX), name.clone()));
    for (name, kind) in entries {
        let leftover = name
            .strip_prefix(TEMP_PREFIX)
            .is_some_and(|rest| version_of(rest).is_some());
        if leftover && kind == FileType::Regular {
            stored.leftovers.push(dir.join(&name));
            continue;
        }
        let Some(version) = version_of(&name) else {
            stored
                .strangers
                .push((name, "not a name the agent writes".into()));
            continue;
        };
        if kind != FileType::Regular {
            stored.strangers.push((name, "not a regular file".into()));
            continue;
        }
        if stored.documents.len() == MAX_STORED {
            stored
                .strangers
                .push((name, format!("more than {MAX_STORED} documents stored")));
            continue;
        }
        match disk.read(&dir.join(&name), MAX_DOCUMENT as u64) {
            Ok(bytes) => {
                stored.documents.insert(version, bytes);
            }
            Err(e) if crate::files::is_too_large(&e) => stored.strangers.push((
                name,
                format!("larger than a trust document ({MAX_DOCUMENT} bytes)"),
            )),
            Err(e) => stored
                .strangers
                .push((name, format!("cannot be read: {e}"))),
        }
    }
    Ok(stored)
}

/// Keeps version `version` (durably: temporary file, fsync, rename, fsync of the folder).
pub(crate) fn write(
    disk: &dyn Disk,
    state_dir: &Path,
    version: u32,
    bytes: &[u8],
) -> io::Result<PathBuf> {
    let dir = state_dir.join(TRUST_DIR);
    disk.ensure_dir(&dir)?;
    disk.write(&dir, &file_name(version), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memdisk::{MemDisk, Node, OpKind};
    use nix::errno::Errno;

    fn state() -> PathBuf {
        PathBuf::from("/data/license-agent")
    }

    #[test]
    fn what_is_written_is_read_back_and_nothing_else_is_taken_or_removed() {
        let disk = MemDisk::new();
        assert_eq!(read(&disk, &state()).unwrap(), Stored::default());
        write(&disk, &state(), 2, b"two").unwrap();
        write(&disk, &state(), 1, b"one").unwrap();
        let dir = state().join(TRUST_DIR);
        disk.put(&dir.join("trust-07.cfg"), Node::File(b"x".to_vec()));
        disk.put(&dir.join("notes.txt"), Node::File(b"x".to_vec()));
        disk.put(&dir.join("trust-3.cfg"), Node::Folder);
        disk.put(
            &dir.join("trust-4.cfg"),
            Node::File(vec![b'#'; MAX_DOCUMENT + 1]),
        );
        disk.put(&dir.join(".tmp-trust-5.cfg"), Node::File(b"half".to_vec()));
        let stored = read(&disk, &state()).unwrap();
        assert_eq!(
            stored.documents.into_iter().collect::<Vec<_>>(),
            [(1, b"one".to_vec()), (2, b"two".to_vec())]
        );
        let strangers: Vec<&str> = stored.strangers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            strangers,
            ["trust-3.cfg", "trust-4.cfg", "notes.txt", "trust-07.cfg"]
        );
        assert!(stored.strangers[1].1.contains("larger than"));
        assert_eq!(stored.leftovers, [dir.join(".tmp-trust-5.cfg")]);
        // Reading removed nothing.
        assert!(disk.get(&dir.join("notes.txt")).is_some());
    }

    #[test]
    fn a_write_that_fails_says_so_and_leaves_what_was_there() {
        let disk = MemDisk::new();
        write(&disk, &state(), 1, b"one").unwrap();
        disk.fail_next(OpKind::Rename, 1, Errno::ENOSPC);
        assert!(write(&disk, &state(), 1, b"changed").is_err());
        let stored = read(&disk, &state()).unwrap();
        assert_eq!(
            stored.documents.get(&1).map(Vec::as_slice),
            Some(&b"one"[..])
        );
    }
}
