//! Durable file operations: a power cut at any instant leaves the old or the new state,
//! never a torn one. Write a temporary file, fsync it, rename it over the target, fsync
//! the directory (so the rename itself survives).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The prefix of temporary files; a leftover one is a write that never committed.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Fsyncs a directory, opened as one (`O_DIRECTORY`: anything else in its place, a FIFO
/// included, is refused at once instead of blocking).
fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NONBLOCK)
        .open(dir)?
        .sync_all()
}

/// Writes `bytes` to `dir/name` atomically and durably.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let target = dir.join(name);
    let result = (|| {
        // A leftover temporary (or anything put in its place) goes first; the new one is
        // created afresh, never through a symbolic link, and never waiting on a FIFO.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

/// Removes a file durably.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Moves a file durably (both folders on the same file system).
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    if let Some(dir) = to.parent() {
        sync_dir(dir)?;
    }
    match from.parent() {
        Some(dir) if Some(dir) != to.parent() => sync_dir(dir),
        _ => Ok(()),
    }
}

/// Most names [`unused_name`] tries.
const MAX_NAME_TRIES: u32 = 1_000;

/// A name to move something to in `dir` without replacing anything there: the first of
/// `base`, `base.2`, `base.3`, … for which no `<name><suffix>` exists, for every one of
/// `suffixes` (`""` for the name itself). Anything but "not there" counts as there.
pub(crate) fn unused_name(dir: &Path, base: &str, suffixes: &[&str]) -> io::Result<String> {
    let free = |name: &str| {
        suffixes.iter().all(|suffix| {
            matches!(
                fs::symlink_metadata(dir.join(format!("{name}{suffix}"))),
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

/// Creates a folder (and its parents) if missing, durably.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
