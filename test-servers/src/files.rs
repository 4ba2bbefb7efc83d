//! Changing the files a test server serves. [`crate::nginx::put_file`] replaces a file so
//! that every server's validators change (a modification time at least one second
//! later); the functions here replace one keeping its size and modification time
//! exactly, as `rsync -t` ([`put_same_time`]: a new file renamed over the old one) or
//! `cp -p` ([`overwrite_same_time`]: the same file rewritten in place) would. That is
//! the renewal a server whose validators are only the modification time and the size
//! (nginx, Apache, lighttpd's `Last-Modified`, BusyBox) answers with 304: new bytes
//! the client never gets if it trusts those validators alone.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

/// The size and modification time (to the nanosecond) of the existing file `path`.
fn size_and_mtime(path: &Path, bytes: &[u8]) -> SystemTime {
    let meta = fs::metadata(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (a same-time renewal replaces a file)",
            path.display()
        )
    });
    assert_eq!(
        meta.len(),
        bytes.len() as u64,
        "{}: a same-time renewal keeps the size ({} bytes), got {} bytes",
        path.display(),
        meta.len(),
        bytes.len()
    );
    meta.modified()
        .unwrap_or_else(|e| panic!("mtime of {}: {e}", path.display()))
}

/// Replaces the existing file `path` atomically (a temp file in the same folder renamed
/// over it, so a new inode) with `bytes` of the same length, and gives it the replaced
/// file's modification time exactly and its mode, as `rsync -t` would. Panics if `path` is missing or
/// `bytes` has another length.
pub fn put_same_time(path: &Path, bytes: &[u8]) {
    let mtime = size_and_mtime(path, bytes);
    let dir = path.parent().expect("a file inside a folder");
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .unwrap_or_else(|e| panic!("temp file in {}: {e}", dir.display()));
    let mode = fs::metadata(path).map(|m| m.permissions());
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().set_modified(mtime))
        .and_then(|()| mode.and_then(|mode| tmp.as_file().set_permissions(mode)))
        .unwrap_or_else(|e| panic!("write {}: {e}", tmp.path().display()));
    tmp.persist(path)
        .unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// Rewrites the existing file `path` in place (same inode, same mode and owner) with
/// `bytes` of the same length and sets its modification time back to what it was, as
/// `cp -p` over an existing file would. Not atomic: a server reading meanwhile may send
/// a mix. Panics if `path` is missing or `bytes` has another length.
pub fn overwrite_same_time(path: &Path, bytes: &[u8]) {
    let mtime = size_and_mtime(path, bytes);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(bytes)
        .and_then(|()| file.set_modified(mtime))
        .unwrap_or_else(|e| panic!("rewrite {}: {e}", path.display()));
}

/// Writes `path` atomically (a temp file in the same folder renamed over it), its
/// modification time now; an error instead of a panic (for a server's own threads).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or(std::io::ErrorKind::InvalidInput)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `root/name` atomically ([`crate::nginx::put_file`]: a new modification time)
/// and world-readable, as every server's user must read it.
pub fn serve(root: &Path, name: &str, bytes: &[u8]) {
    let path = root.join(name);
    crate::nginx::put_file(&path, bytes);
    crate::tftp::set_mode(&path, 0o644);
}

/// Removes `path`; nothing if it is missing.
pub fn remove_file(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn same_time_renewals_keep_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cfg");
        crate::nginx::put_file(&path, b"first");
        let before = fs::metadata(&path).unwrap();
        put_same_time(&path, b"secnd");
        let after = fs::metadata(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secnd");
        assert_eq!(after.modified().unwrap(), before.modified().unwrap());
        assert_eq!(after.len(), before.len());
        assert_ne!(after.ino(), before.ino(), "renamed over: a new inode");
        overwrite_same_time(&path, b"third");
        let again = fs::metadata(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"third");
        assert_eq!(again.modified().unwrap(), before.modified().unwrap());
        assert_eq!(
            again.ino(),
            after.ino(),
            "rewritten in place: the same inode"
        );
    }

    #[test]
    #[should_panic(expected = "keeps the size")]
    fn same_time_renewal_refuses_another_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cfg");
        fs::write(&path, b"four").unwrap();
        put_same_time(&path, b"five!");
    }
}
