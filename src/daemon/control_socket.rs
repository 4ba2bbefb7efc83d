//! The control socket's listener: bound at start and at a reload that moves it, without
//! ever waiting on anyone, and never at the cost of another file.
//!
//! - A path that is already there is probed with a non-blocking `connect`: a daemon
//!   that answers (or a listener whose backlog is full: `EAGAIN`) keeps it, and this one
//!   binds no socket for now; a refused connection means a stale socket, removed. A path
//!   that is not a socket (a license, the keyring, a folder a configuration named by
//!   mistake) is never removed.
//! - A socket that cannot be bound is no reason to stop: the agent runs on without one
//!   (it publishes its feature set and talks to the supervisor all the same) and tries
//!   again with back-off; `status` cannot answer meanwhile, and the log says why.
//! - At the end, the socket file is removed only if it is still the one this agent
//!   bound (same device and inode).
//!
//! Every call here is a local file-system call or a non-blocking socket call: none waits
//! on a peer.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::config::Secs;
use crate::fetch::backoff;
use crate::time::Mono;

const RETRY_INITIAL: Secs = Secs(1);
const RETRY_MAX: Secs = Secs(60);

/// The control socket at one path: bound, or when to try again.
pub(crate) struct ControlSocket {
    path: PathBuf,
    bound: Option<Bound>,
    failures: u32,
    next_attempt: Option<Mono>,
    jitter: u64,
}

struct Bound {
    listener: UnixListener,
    /// The socket file's device and inode, to remove only it at the end.
    id: (u64, u64),
}

impl ControlSocket {
    /// Binds the socket at `path`, or says why not (and tries again later).
    pub(crate) fn open(path: PathBuf, jitter: u64, now: Mono) -> ControlSocket {
        let mut socket = ControlSocket {
            path,
            bound: None,
            failures: 0,
            next_attempt: Some(now),
            jitter,
        };
        socket.retry_if_due(now);
        socket
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, while bound.
    pub(crate) fn listener(&self) -> Option<&UnixListener> {
        self.bound.as_ref().map(|b| &b.listener)
    }

    /// When to try binding again, while not bound.
    pub(crate) fn next_attempt(&self) -> Option<Mono> {
        self.next_attempt
    }

    /// Tries to bind if an attempt is due; whether it is bound.
    pub(crate) fn retry_if_due(&mut self, now: Mono) -> bool {
        if self.bound.is_some() {
            return true;
        }
        if self.next_attempt.is_some_and(|t| t > now) {
            return false;
        }
        match bind(&self.path) {
            Ok(bound) => {
                if self.failures > 0 {
                    log::info!("control socket bound at {}", self.path.display());
                }
                self.bound = Some(bound);
                self.next_attempt = None;
                self.failures = 0;
                true
            }
            Err(why) => {
                let delay = backoff(self.failures, RETRY_INITIAL, RETRY_MAX, self.jitter);
                // Said when it starts and then at back-off's pace, never per pass.
                log::error!("{why}; running without a control socket, trying again in {delay} s");
                self.failures = self.failures.saturating_add(1);
                self.next_attempt = Some(now.plus_secs(delay));
                false
            }
        }
    }

    /// Removes the socket file if it is still the one bound here.
    pub(crate) fn close(self) {
        let Some(bound) = self.bound else {
            return;
        };
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == bound.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the control socket, mode 0600 (see the module doc for an existing path).
fn bind(path: &Path) -> Result<Bound, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!(
                "cannot listen on {}: something that is not a socket is there (left as it is)",
                path.display()
            ))
        }
        Ok(_) => match probe(path) {
            Probe::Answers => {
                return Err(format!(
                    "cannot listen on {}: another daemon answers there",
                    path.display()
                ))
            }
            Probe::Busy => {
                return Err(format!(
                    "cannot listen on {}: a listener that does not accept holds it",
                    path.display()
                ))
            }
            Probe::Stale => std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?,
        },
        Err(_) => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // No window in which others could connect: the umask makes it 0600 from the start.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("control socket: {e}"))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Bound {
        listener,
        id: (meta.dev(), meta.ino()),
    })
}

/// What a non-blocking `connect` to an existing socket path found.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Connected: someone listens and accepts.
    Answers,
    /// Someone listens but its backlog is full (or the call could not say).
    Busy,
    /// Nobody listens: a socket left by a process that ended.
    Stale,
}

fn probe(path: &Path) -> Probe {
    match crate::supervisor::link::connect_nonblocking(path) {
        Ok(_) => Probe::Answers,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::ECONNREFUSED | nix::libc::ENOENT)
            ) =>
        {
            Probe::Stale
        }
        Err(_) => Probe::Busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // A file that is not a socket stays as it is.
        let file = dir.path().join("keyring");
        std::fs::write(&file, b"keys").unwrap();
        let socket = ControlSocket::open(file.clone(), 1, Mono::from_secs(1));
        assert!(socket.listener().is_none());
        assert_eq!(std::fs::read(&file).unwrap(), b"keys");
        assert_eq!(socket.next_attempt(), Some(Mono::from_secs(2)));
        // A socket nobody listens on is replaced.
        let stale = dir.path().join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let socket = ControlSocket::open(stale.clone(), 1, Mono::from_secs(1));
        assert!(socket.listener().is_some());
        socket.close();
        assert!(!stale.exists());
    }

    #[test]
    fn a_listener_that_never_accepts_is_left_alone_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sock");
        let busy = UnixListener::bind(&path).unwrap();
        // Fill its backlog: a blocking connect would now wait for ever.
        let mut held = Vec::new();
        while let Ok(s) = crate::supervisor::link::connect_nonblocking(&path) {
            held.push(s);
            assert!(held.len() < 10_000);
        }
        let start = std::time::Instant::now();
        let mut socket = ControlSocket::open(path.clone(), 1, Mono::from_secs(1));
        assert!(socket.listener().is_none());
        assert!(!socket.retry_if_due(Mono::from_secs(100)));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(path.exists());
        drop(busy);
    }
}
