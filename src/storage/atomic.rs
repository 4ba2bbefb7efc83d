//! Durable file operations: a power cut at any instant leaves the old or the new state,
//! never a torn one. Write a temporary file, fsync it, rename it over the target, fsync
//! the directory (so the rename itself survives).
//!
//! The protocol is written once, over the [`Calls`] of a file system: the real one here
//! (the free functions), an in-memory one in the simulator (through [`super::disk::Disk`]).

use std::io;
use std::path::{Path, PathBuf};

use super::disk::{Calls, RealDisk};

/// The prefix of temporary files; a leftover one is a write that never committed.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `dir/name` atomically and durably.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    write_on(&RealDisk, dir, name, bytes)
}

/// Moves a file durably (both folders on the same file system).
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    rename_on(&RealDisk, from, to)
}

/// A name to move something to in `dir` without replacing anything there (see
/// [`unused_name_on`]).
pub(crate) fn unused_name(dir: &Path, base: &str, suffixes: &[&str]) -> io::Result<String> {
    unused_name_on(&RealDisk, dir, base, suffixes)
}

/// Creates a folder (and its parents) if missing, durably.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    ensure_dir_on(&RealDisk, dir)
}

/// [`write`] on `fs`.
pub(crate) fn write_on<C: Calls + ?Sized>(
    fs: &C,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> io::Result<PathBuf> {
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let target = dir.join(name);
    let result = (|| {
        // A leftover temporary (or anything put in its place) goes first; the new one is
        // created afresh, never through a symbolic link, and never waiting on a FIFO.
        match fs.unlink(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs.create_synced(&tmp, bytes)?;
        fs.rename_entry(&tmp, &target)?;
        fs.fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs.unlink(&tmp);
    }
    result.map(|()| target)
}

/// Removes a file durably.
pub(crate) fn remove_on<C: Calls + ?Sized>(fs: &C, path: &Path) -> io::Result<()> {
    fs.unlink(path)?;
    fs.fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// [`rename`] on `fs`.
pub(crate) fn rename_on<C: Calls + ?Sized>(fs: &C, from: &Path, to: &Path) -> io::Result<()> {
    fs.rename_entry(from, to)?;
    if let Some(dir) = to.parent() {
        fs.fsync_dir(dir)?;
    }
    match from.parent() {
        Some(dir) if Some(dir) != to.parent() => fs.fsync_dir(dir),
        _ => Ok(()),
    }
}

/// Most names [`unused_name_on`] tries.
const MAX_NAME_TRIES: u32 = 1_000;

/// A name to move something to in `dir` without replacing anything there: the first of
/// `base`, `base.2`, `base.3`, … for which no `<name><suffix>` exists, for every one of
/// `suffixes` (`""` for the name itself). Anything but "not there" counts as there.
pub(crate) fn unused_name_on<C: Calls + ?Sized>(
    fs: &C,
    dir: &Path,
    base: &str,
    suffixes: &[&str],
) -> io::Result<String> {
    let free = |name: &str| {
        suffixes.iter().all(|suffix| {
            matches!(
                fs.lstat(&dir.join(format!("{name}{suffix}"))),
                Err(e) if e.kind() == io::ErrorKind::NotFound
            )
        })
    };
    if free(base) {
        return Ok(base.to_string());
    }
    (2..=MAX_NAME_TRIES)
        .map(|n| format!("{base}.{n}"))
        .find(|name| free(name))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{base} and {MAX_NAME_TRIES} names after it are all taken"),
            )
        })
}

/// [`ensure_dir`] on `fs`.
pub(crate) fn ensure_dir_on<C: Calls + ?Sized>(fs: &C, dir: &Path) -> io::Result<()> {
    if fs.is_dir(dir) {
        return Ok(());
    }
    fs.mkdir_all(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fs.fsync_dir(parent),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn write_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", b"one").unwrap();
        write(dir.path(), "a", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a"]);
    }

    #[test]
    fn an_unused_name_never_names_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(unused_name(d, "a", &["", ".why"]).unwrap(), "a");
        fs::write(d.join("a.why"), b"").unwrap();
        assert_eq!(unused_name(d, "a", &["", ".why"]).unwrap(), "a.2");
        std::os::unix::fs::symlink("/nowhere", d.join("a.2")).unwrap();
        assert_eq!(unused_name(d, "a", &[""]).unwrap(), "a");
        assert_eq!(unused_name(d, "a", &["", ".why"]).unwrap(), "a.3");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", b"old").unwrap();
        // The target is a directory: the rename fails, the temporary is cleaned up.
        fs::create_dir(dir.path().join("b")).unwrap();
        fs::write(dir.path().join("b/x"), b"").unwrap();
        assert!(write(dir.path(), "b", b"new").is_err());
        assert!(!dir.path().join(format!("{TEMP_PREFIX}b")).exists());
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"old");
    }
}
