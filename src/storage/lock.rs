//! The store's writer lock: one process at a time may write a state folder.
//!
//! A running daemon holds it for its whole life; `license-agent install` and
//! `run --once` hold it for their few milliseconds. A process that finds it taken while
//! a daemon runs hands its work to the daemon over the control socket instead of
//! writing beside it, so two writers never interleave (two `meta.json` writes, one
//! losing the other's events and reboot record, or two licenses racing for one number).
//!
//! It is an advisory `flock` on `<state_dir>/lock`: the kernel releases it when the
//! holder exits, however it exits, so a crash or a power cut never leaves it stale.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::{atomic, StoreError};

/// The lock file's name in the state folder.
pub(crate) const LOCK_FILE: &str = "lock";

/// Proof that this process is the store's only writer, for as long as it lives.
#[derive(Debug)]
pub struct WriterLock {
    dir: PathBuf,
    /// `None` on a read-only file system with no lock file: nobody can write there, so
    /// there is nothing to keep apart.
    _file: Option<Flock<File>>,
}

impl WriterLock {
    /// Takes the lock of `dir` (created if missing), or `None` when another process
    /// holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<WriterLock>, StoreError> {
        let at = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |error| StoreError {
                path,
                action,
                error,
            }
        };
        let path = dir.join(LOCK_FILE);
        let read_only = |e: &std::io::Error| e.raw_os_error() == Some(Errno::EROFS as i32);
        let open_rw = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&path)
        };
        set_aside_if_not_a_folder(dir);
        let opened = match atomic::ensure_dir(dir).and_then(|()| open_rw()) {
            // A folder in the lock's place (nothing else stops an open for writing): moved
            // to rejected/ like any stranger in the state folder, and a lock file made.
            Err(e) if path.is_dir() => {
                let rejected = dir.join(super::REJECTED_DIR);
                // Never in place of something set aside before (pids repeat at boot).
                atomic::ensure_dir(&rejected)
                    .and_then(|()| {
                        let base = format!("{LOCK_FILE}-{}", std::process::id());
                        let aside = rejected.join(atomic::unused_name(&rejected, &base, &[""])?);
                        log::warn!(
                            "{} is a folder, not a lock file: moved to {}",
                            path.display(),
                            aside.display()
                        );
                        atomic::rename(&path, &aside)
                    })
                    .map_err(|_| e)
                    .and_then(|()| open_rw())
            }
            other => other,
        };
        let file = match opened {
            Ok(file) => file,
            // Flash remounted read-only: the lock file as it is (a lock needs no write),
            // or, without one, no lock at all: nobody can write there.
            Err(e) if read_only(&e) => {
                match OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NONBLOCK)
                    .open(&path)
                {
                    Ok(file) => file,
                    Err(_) => {
                        log::warn!(
                            "{} is on a read-only file system: running on what it holds",
                            dir.display()
                        );
                        return Ok(Some(WriterLock {
                            dir: dir.to_path_buf(),
                            _file: None,
                        }));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || !dir.is_dir() => {
                return Err(at("create", dir)(e))
            }
            Err(e) => return Err(at("open the lock", &path)(e)),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(Some(WriterLock {
                dir: dir.to_path_buf(),
                _file: Some(file),
            })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(at("lock", &path)(std::io::Error::from(errno))),
        }
    }

    /// Takes the lock of `dir`, waiting up to `wait` for another holder to let go (a
    /// hand install holds it for milliseconds; a daemon holds it until it stops).
    pub(crate) fn acquire(dir: &Path, wait: Duration) -> Result<WriterLock, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(lock) = WriterLock::try_acquire(dir)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(StoreError {
                    path: dir.join(LOCK_FILE),
                    action: "take the writer lock",
                    error: std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        "another license-agent process holds it (is a daemon already running?)",
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `held` again when it is the lock of `dir` (a configuration reloaded with the same
    /// state folder), otherwise the lock of `dir`, waiting up to `wait`.
    pub(crate) fn reuse_or_acquire(
        held: Option<&Arc<WriterLock>>,
        dir: &Path,
        wait: Duration,
    ) -> Result<Arc<WriterLock>, StoreError> {
        match held {
            Some(lock) if same_dir(&lock.dir, dir) => Ok(Arc::clone(lock)),
            _ => WriterLock::acquire(dir, wait).map(Arc::new),
        }
    }

    /// The state folder this lock is for.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Something that is not a folder where the state folder goes (a FIFO, a file, a link
/// to a device) is damage: moved aside beside it, named so, and a fresh folder made, so
/// that licenses can be stored again. If it cannot be moved, the store's own errors say
/// so later, and the agent runs on nothing held.
fn set_aside_if_not_a_folder(dir: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.is_dir() || (meta.file_type().is_symlink() && dir.is_dir()) {
        return;
    }
    // Beside it, never in place of something set aside before (pids repeat at boot).
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let base = format!(
        "{}.not-a-folder-{}",
        name.to_string_lossy(),
        std::process::id()
    );
    let aside = match atomic::unused_name(parent, &base, &[""]) {
        Ok(name) => parent.join(name),
        Err(e) => {
            log::error!("{} is not a folder and cannot be moved: {e}", dir.display());
            return;
        }
    };
    match atomic::rename(dir, &aside) {
        Ok(()) => log::warn!(
            "{} is not a folder: moved to {}; starting with an empty state folder",
            dir.display(),
            aside.display()
        ),
        Err(e) => log::error!("{} is not a folder and cannot be moved: {e}", dir.display()),
    }
}

/// Whether `a` and `b` name one folder: the same path is (it is checked at every open of
/// the store, with the lock's own path: nothing to look up), else their canonical forms
/// are compared.
pub(super) fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = WriterLock::try_acquire(&state).unwrap().expect("free");
        // A second open file description is refused, even in the same process.
        assert!(WriterLock::try_acquire(&state).unwrap().is_none());
        let err = WriterLock::acquire(&state, Duration::from_millis(120)).unwrap_err();
        assert!(err
            .to_string()
            .contains("another license-agent process holds it"));
        drop(first);
        assert!(WriterLock::try_acquire(&state).unwrap().is_some());
    }

    #[test]
    fn a_reloaded_configuration_keeps_the_lock_of_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let held = Arc::new(WriterLock::try_acquire(&a).unwrap().unwrap());
        // The same folder, spelled differently: the same lock, not a wait on itself.
        let again =
            WriterLock::reuse_or_acquire(Some(&held), &dir.path().join("a/../a"), Duration::ZERO)
                .unwrap();
        assert!(Arc::ptr_eq(&held, &again));
        // Another folder: its own lock.
        let b = WriterLock::reuse_or_acquire(Some(&held), &dir.path().join("b"), Duration::ZERO)
            .unwrap();
        assert!(!Arc::ptr_eq(&held, &b));
        assert_eq!(b.dir(), dir.path().join("b"));
    }

    /// What is moved aside (a file where the state folder goes, a folder where the lock
    /// goes) never takes the place of what was moved aside before under the same name
    /// (process ids repeat from boot to boot).
    #[test]
    fn moving_aside_never_replaces_what_was_moved_aside_before() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let pid = std::process::id();
        let earlier = dir.path().join(format!("state.not-a-folder-{pid}"));
        std::fs::write(&earlier, b"earlier").unwrap();
        std::fs::write(&state, b"now").unwrap();
        drop(WriterLock::try_acquire(&state).unwrap().expect("free"));
        assert!(state.is_dir());
        assert_eq!(std::fs::read(&earlier).unwrap(), b"earlier");
        let now = dir.path().join(format!("state.not-a-folder-{pid}.2"));
        assert_eq!(std::fs::read(now).unwrap(), b"now");

        let rejected = state.join(super::super::REJECTED_DIR);
        std::fs::create_dir_all(&rejected).unwrap();
        std::fs::write(rejected.join(format!("{LOCK_FILE}-{pid}")), b"earlier").unwrap();
        std::fs::remove_file(state.join(LOCK_FILE)).unwrap();
        std::fs::create_dir_all(state.join(LOCK_FILE).join("inside")).unwrap();
        assert!(WriterLock::try_acquire(&state).unwrap().is_some());
        assert!(state.join(LOCK_FILE).is_file());
        assert_eq!(
            std::fs::read(rejected.join(format!("{LOCK_FILE}-{pid}"))).unwrap(),
            b"earlier"
        );
        assert!(rejected
            .join(format!("{LOCK_FILE}-{pid}.2/inside"))
            .is_dir());
    }

    #[test]
    fn an_unwritable_folder_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = WriterLock::try_acquire(&file.join("state")).unwrap_err();
        assert!(err.to_string().contains("plain-file"), "{err}");
    }
}
