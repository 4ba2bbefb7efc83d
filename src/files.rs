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
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for reading without blocking, and only if it is a regular file (a
/// symbolic link is followed: its target must be one).
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    ))
}

/// Reads the regular file at `path`, refusing one larger than `cap` bytes (read at most
/// `cap + 1` bytes to tell).
pub(crate) fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(bytes)
}

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
