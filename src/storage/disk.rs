//! The file system the store and the features file are written on, as a port: the
//! daemon uses the real one ([`RealDisk`]), the simulator an in-memory one
//! ([`super::memdisk::MemDisk`]) that can fail any operation on command.
//!
//! Two layers, so that nothing of the store's file logic exists twice:
//!
//! - [`Disk`], what the store and `publish` call: list, look, read, the durable write,
//!   remove, rename and folder creation of [`super::atomic`], and the unused-name search.
//! - [`Calls`], the system calls those are made of (`unlink`, `rename`, `fsync` of a
//!   folder, …). A file system implements only these; every [`Calls`] is a [`Disk`]
//!   through the one protocol in [`super::atomic`], so a fault injected into one call
//!   (an `fsync` of the folder after the rename, say) leaves exactly what it would leave
//!   on a real disk.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::atomic;

/// What is at a path, as `lstat` says (a symbolic link is not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum FileType {
    Regular,
    Folder,
    Symlink,
    /// Anything else: what the store treats as a stranger.
    Other(Special),
}

/// The kinds of [`FileType::Other`], named in the store's notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Special {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// The type could not be told.
    Unknown,
}

impl FileType {
    pub(crate) fn of(t: fs::FileType) -> FileType {
        if t.is_file() {
            FileType::Regular
        } else if t.is_dir() {
            FileType::Folder
        } else if t.is_symlink() {
            FileType::Symlink
        } else if t.is_fifo() {
            FileType::Other(Special::Fifo)
        } else if t.is_socket() {
            FileType::Other(Special::Socket)
        } else if t.is_char_device() {
            FileType::Other(Special::CharDevice)
        } else if t.is_block_device() {
            FileType::Other(Special::BlockDevice)
        } else {
            FileType::Other(Special::Unknown)
        }
    }

    /// In words, for a note (`a folder`, `a symbolic link`, …).
    pub(crate) fn words(self) -> &'static str {
        match self {
            FileType::Regular => "a file",
            FileType::Folder => "a folder",
            FileType::Symlink => "a symbolic link",
            FileType::Other(Special::Fifo) => "a FIFO",
            FileType::Other(Special::Socket) => "a socket",
            FileType::Other(Special::CharDevice | Special::BlockDevice) => "a device",
            FileType::Other(Special::Unknown) => "something unreadable",
        }
    }
}

/// The file operations of the store and of `publish`. Shared as `Arc<dyn Disk>`.
pub(crate) trait Disk: fmt::Debug + Send + Sync {
    /// The names in `dir`, each with its type, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, FileType)>>;
    /// What is at `path`, not following a last symbolic link.
    fn file_type(&self, path: &Path) -> io::Result<FileType>;
    /// The regular file at `path`, at most `cap` bytes: the contract and the errors of
    /// [`crate::files::read_regular`].
    fn read(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>>;
    /// Writes `dir/name` atomically and durably ([`atomic::write`]).
    fn write(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf>;
    /// Removes a file durably ([`atomic::remove_on`]).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Moves a file durably ([`atomic::rename`]).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates a folder and its parents if missing, durably ([`atomic::ensure_dir`]).
    fn ensure_dir(&self, dir: &Path) -> io::Result<()>;
    /// A name in `dir` that replaces nothing ([`atomic::unused_name`]).
    fn unused_name(&self, dir: &Path, base: &str, suffixes: &[&str]) -> io::Result<String>;
    /// Whether other processes see this disk: a writer there must hold the folder's
    /// [`super::WriterLock`]. Only an in-memory disk is private.
    fn shared(&self) -> bool;
}

/// The system calls the operations of a [`Disk`] are made of. Errors are those of the
/// calls (raw OS errors), so that the store judges them alike on every disk.
pub(crate) trait Calls {
    /// `lstat(2)`: the type, not following a last symbolic link.
    fn lstat(&self, path: &Path) -> io::Result<FileType>;
    /// Whether a folder is there, following symbolic links (any error: no).
    fn is_dir(&self, path: &Path) -> bool;
    /// The names in a folder, with their types.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<(String, FileType)>>;
    /// [`crate::files::read_regular`].
    fn read_regular(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>>;
    /// `unlink(2)`.
    fn unlink(&self, path: &Path) -> io::Result<()>;
    /// Creates a new file (never through a symbolic link, never waiting on a FIFO),
    /// writes `bytes` and fsyncs it.
    fn create_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// `rename(2)`.
    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Fsyncs a folder, opened as one (anything else in its place is refused at once).
    fn fsync_dir(&self, dir: &Path) -> io::Result<()>;
    /// `mkdir -p`.
    fn mkdir_all(&self, dir: &Path) -> io::Result<()>;
    /// [`Disk::shared`].
    fn shared(&self) -> bool;
}

impl<C: Calls + fmt::Debug + Send + Sync> Disk for C {
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, FileType)>> {
        self.read_dir(dir)
    }

    fn file_type(&self, path: &Path) -> io::Result<FileType> {
        self.lstat(path)
    }

    fn read(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
        self.read_regular(path, cap)
    }

    fn write(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        atomic::write_on(self, dir, name, bytes)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        atomic::remove_on(self, path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        atomic::rename_on(self, from, to)
    }

    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        atomic::ensure_dir_on(self, dir)
    }

    fn unused_name(&self, dir: &Path, base: &str, suffixes: &[&str]) -> io::Result<String> {
        atomic::unused_name_on(self, dir, base, suffixes)
    }

    fn shared(&self) -> bool {
        Calls::shared(self)
    }
}

/// The real file system (`std::fs`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RealDisk;

impl Calls for RealDisk {
    fn lstat(&self, path: &Path) -> io::Result<FileType> {
        fs::symlink_metadata(path).map(|m| FileType::of(m.file_type()))
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<(String, FileType)>> {
        fs::read_dir(dir)?
            .map(|entry| {
                entry.map(|e| {
                    // The type is the listing's (no call on most file systems); one that
                    // went in between is told by the calls that follow, as before.
                    let kind = e
                        .file_type()
                        .map_or(FileType::Other(Special::Unknown), FileType::of);
                    (e.file_name().to_string_lossy().into_owned(), kind)
                })
            })
            .collect()
    }

    fn read_regular(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
        crate::files::read_regular(path, cap)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn fsync_dir(&self, dir: &Path) -> io::Result<()> {
        OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NONBLOCK)
            .open(dir)?
            .sync_all()
    }

    fn mkdir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn shared(&self) -> bool {
        true
    }
}
