//! Opening the files the agent reads so that nothing put in their place can hold it.
//!
//! A FIFO named like the keyring blocks `open(2)` until a writer comes; a character
//! device such as `/dev/zero` never ends; a directory or a socket cannot be read at all.
//! Every file the agent reads from disk (configuration, keyring, CA and client
//! certificates, the store's licenses and `meta.json`) goes through [`open_regular`]: it
//! opens with `O_NONBLOCK` (so a FIFO returns at once instead of waiting for a writer),
//! then refuses anything `fstat` does not call a regular file, and [`read_regular`] reads
//! at most a bound. The check is made on the open descriptor, not on the path, so a file
//! swapped between a look and the open cannot slip through.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::storage::disk::{FileType, Special};

/// Opens `path` for reading without blocking, and only if it is a regular file (a
/// symbolic link is followed: its target must be one).
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    match FileType::of(file.metadata()?.file_type()) {
        FileType::Regular => Ok(file),
        other => Err(not_regular(other)),
    }
}

/// The refusal of anything but a regular file (of type `kind`, links followed).
pub(crate) fn not_regular(kind: FileType) -> io::Error {
    let what = match kind {
        FileType::Folder => "a directory",
        FileType::Other(Special::Fifo) => "a FIFO",
        FileType::Other(Special::CharDevice) => "a character device",
        FileType::Other(Special::BlockDevice) => "a block device",
        FileType::Other(Special::Socket) => "a socket",
        _ => "not a plain file",
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    )
}

/// Reads the regular file at `path`, refusing one larger than `cap` bytes (read at most
/// `cap + 1` bytes to tell).
pub(crate) fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    within(bytes, cap)
}

/// `bytes`, read up to `cap + 1`, unless they are more than `cap`: the refusal of
/// [`read_regular`] (told apart by [`is_too_large`]).
pub(crate) fn within(bytes: Vec<u8>, cap: u64) -> io::Result<Vec<u8>> {
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(io::ErrorKind::InvalidData, TooLarge(cap)));
    }
    Ok(bytes)
}

/// A file refused for its size by [`read_regular`] (not for what could not be read).
pub(crate) fn is_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// The size refusal: a type of its own, so that it is never mistaken for a read error.
#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "larger than {} bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_opened_and_never_wait() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"12345").unwrap();
        assert_eq!(read_regular(&plain, 5).unwrap(), b"12345");
        let e = read_regular(&plain, 4).unwrap_err();
        assert!(e.to_string().contains("larger than 4 bytes"), "{e}");
        assert!(is_too_large(&e));
        assert!(!is_too_large(&read_regular(dir.path(), 10).unwrap_err()));

        // A FIFO with no writer: a blocking open would wait for ever.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_regular(&fifo, 10).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");

        let e = read_regular(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");

        // A symbolic link to a device that never ends.
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_regular(&link, 10).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");

        let e = read_regular(&dir.path().join("missing"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
