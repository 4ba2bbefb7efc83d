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
    open_sized(path).map(|(file, _)| file)
}

/// [`open_regular`], and the file's size as `fstat` gave it.
fn open_sized(path: &Path) -> io::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    match FileType::of(meta.file_type()) {
        FileType::Regular => Ok((file, meta.len())),
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
/// `cap + 1` bytes to tell). Room for the size `fstat` gave (up to the cap) and one
/// byte more is made first, so a file read whole takes two reads, the second finding
/// its end (an empty buffer grows from 32 bytes, a read each time it doubles). A file
/// of size 0 may hold something all the same (`/proc`'s): room for up to
/// [`SIZELESS_ROOM`] bytes then. A file that grew meanwhile is read on as it comes.
pub(crate) fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let (file, size) = open_sized(path)?;
    read_sized(file, size, cap)
}

/// What [`read_regular`] reads from `source`, which `fstat` said has `size` bytes.
fn read_sized(source: impl Read, size: u64, cap: u64) -> io::Result<Vec<u8>> {
    let expected = if size == 0 { SIZELESS_ROOM } else { size };
    let room = expected.min(cap).saturating_add(1);
    let mut bytes = Vec::with_capacity(usize::try_from(room).unwrap_or(0));
    source.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    within(bytes, cap)
}

/// The room [`read_regular`] makes for a file whose size is 0.
const SIZELESS_ROOM: u64 = 4096;

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

    /// Bytes read through `read` calls, counted.
    struct Counted<'a> {
        bytes: &'a [u8],
        reads: usize,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.bytes.read(buf)
        }
    }

    /// A file whose size `fstat` gives is read in two calls (its bytes, then its end),
    /// whatever its size up to the cap; one of size 0 (`/proc`'s) that holds less than
    /// [`SIZELESS_ROOM`] too. A file larger than the cap is still refused after `cap + 1`
    /// bytes, and a file that grew after `fstat` is read whole all the same.
    #[test]
    fn a_file_is_read_in_two_calls() {
        let content: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        for (len, size, cap) in [
            (0, 0, 100),
            (37, 0, 64),
            (449, 449, 65_536),
            (1046, 1046, 65_536),
            (5000, 5000, 5000),
        ] {
            let mut source = Counted {
                bytes: &content[..len],
                reads: 0,
            };
            let got = read_sized(&mut source, size, cap).unwrap();
            assert_eq!(got, &content[..len]);
            assert!(source.reads <= 2, "{len} bytes: {} reads", source.reads);
        }
        let mut bigger = Counted {
            bytes: &content,
            reads: 0,
        };
        let e = read_sized(&mut bigger, 5000, 4999).unwrap_err();
        assert!(is_too_large(&e), "{e}");
        let mut grew = Counted {
            bytes: &content[..3000],
            reads: 0,
        };
        assert_eq!(
            read_sized(&mut grew, 1000, 65_536).unwrap(),
            &content[..3000]
        );
    }

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
