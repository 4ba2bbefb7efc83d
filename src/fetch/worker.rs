//! Fetching off the daemon's loop.
//!
//! A fetch cycle (both license files) runs on a thread of its own, started for that
//! cycle and ended with it; the loop learns that it is over from a pipe whose writing end
//! the thread holds and closes when it has sent its results, so the pipe's reading end
//! sits in the loop's `poll` beside the supervisor link, the control socket, the signals
//! and the timer. Why a thread rather than non-blocking I/O in the loop: the HTTP
//! client is a blocking one (reqwest's, over rustls) and later transports (FTP, TFTP)
//! will be written the same plain way; a thread keeps every one of them simple and
//! out of the loop, and costs nothing while no fetch runs (it exists only during one).
//!
//! Everything a fetch needs is opened on the thread and dropped there when the cycle
//! ends: the [`Server`] opens a fresh [`Source`] (for HTTP a new client with its
//! connection pool and runtime thread) for each cycle, so nothing of it is left behind
//! (no keep-alive connection, no pool timer, no idle runtime thread) once the cycle is
//! over. A cycle the loop no longer wants (SIGHUP gave a new server, SIGTERM stops the
//! daemon) is simply abandoned: its thread ends by itself within the fetch timeouts and
//! nobody reads what it sends.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;

use super::{FailureKind, FetchError, FetchOutcome};
use crate::storage::Validator;

/// Where license files come from, for one cycle (an open HTTP client, a folder, or a
/// fake in tests).
pub(crate) trait Source {
    /// Fetches `name`; `validator` is what was stored with the last copy downloaded.
    fn fetch(&self, name: &str, validator: Option<&Validator>) -> FetchOutcome;
}

/// A provisioning server: says where it is, and opens a [`Source`] for each cycle (on
/// the fetch thread).
pub(crate) trait Server: Send + Sync {
    /// The base URL, for people.
    fn base(&self) -> &str;
    /// Opens a source for one cycle (reading CA files, setting up a client).
    fn open(&self) -> Result<Box<dyn Source>, FetchError>;
}

/// One file to fetch, with the validator stored for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) name: String,
    pub(crate) validator: Option<Validator>,
}

/// What one file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub(crate) name: String,
    pub(crate) outcome: FetchOutcome,
}

/// A fetch cycle under way on its thread.
pub(crate) struct InFlight {
    results: Receiver<Vec<Fetched>>,
    /// Readable (end of file) once the thread has sent its results or ended.
    done: OwnedFd,
    names: Vec<String>,
}

impl InFlight {
    /// Starts fetching `files` in order from `server` on a new thread.
    pub(crate) fn start(server: Arc<dyn Server>, files: Vec<Wanted>) -> std::io::Result<InFlight> {
        use nix::fcntl::OFlag;
        let (done, done_writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(std::io::Error::from)?;
        let (sender, results) = mpsc::channel();
        let names = files.iter().map(|f| f.name.clone()).collect();
        std::thread::Builder::new()
            .name("fetch".into())
            .spawn(move || {
                let fetched = fetch_all(server.as_ref(), &files);
                let _ = sender.send(fetched);
                // The pipe closes after the results are in the channel.
                drop(done_writer);
            })?;
        Ok(InFlight {
            results,
            done,
            names,
        })
    }

    /// The descriptor to poll: readable once the cycle is over.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.done.as_fd()
    }

    /// The results, once the cycle is over (`None` while it runs). A thread that ended
    /// without results (it cannot, short of a bug) counts as every file failing.
    pub(crate) fn try_take(&self) -> Option<Vec<Fetched>> {
        match self.results.try_recv() {
            Ok(fetched) => Some(fetched),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(
                self.names
                    .iter()
                    .map(|name| Fetched {
                        name: name.clone(),
                        outcome: FetchOutcome::Failed(FetchError::new(
                            name.as_str(),
                            FailureKind::Io,
                            "the fetch thread ended without an answer",
                        )),
                    })
                    .collect(),
            ),
        }
    }
}

/// The cycle itself (on the fetch thread): one source for every file, dropped at the end.
fn fetch_all(server: &dyn Server, files: &[Wanted]) -> Vec<Fetched> {
    let source = server.open();
    let fetched = files
        .iter()
        .map(|file| Fetched {
            name: file.name.clone(),
            outcome: match &source {
                Ok(source) => source.fetch(&file.name, file.validator.as_ref()),
                Err(e) => FetchOutcome::Failed(e.clone()),
            },
        })
        .collect();
    drop(source);
    fetched
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Answers from a script; optionally waits on a gate first.
    struct Script {
        gate: Arc<Mutex<()>>,
    }

    impl Source for Script {
        fn fetch(&self, name: &str, _: Option<&Validator>) -> FetchOutcome {
            let _held = self.gate.lock();
            if name.starts_with("0000") {
                FetchOutcome::NotModified
            } else {
                FetchOutcome::Absent { status: 404 }
            }
        }
    }

    struct ScriptServer {
        gate: Arc<Mutex<()>>,
    }

    impl Server for ScriptServer {
        fn base(&self) -> &str {
            "script:"
        }
        fn open(&self) -> Result<Box<dyn Source>, FetchError> {
            Ok(Box::new(Script {
                gate: self.gate.clone(),
            }))
        }
    }

    fn wanted(name: &str) -> Wanted {
        Wanted {
            name: name.into(),
            validator: None,
        }
    }

    fn readable(fd: BorrowedFd<'_>, ms: u16) -> bool {
        use nix::poll::{poll, PollFd, PollFlags};
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        poll(&mut fds, ms).unwrap() == 1
    }

    #[test]
    fn a_cycle_runs_off_the_caller_and_says_when_it_is_over() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let server = Arc::new(ScriptServer { gate: gate.clone() });
        let cycle = InFlight::start(
            server,
            vec![
                wanted("000000000000-license.cfg"),
                wanted("0004f2000001-license.cfg"),
            ],
        )
        .unwrap();
        // The source is stuck: the caller is not, and the pipe stays quiet.
        assert!(!readable(cycle.fd(), 50));
        assert_eq!(cycle.try_take(), None);
        drop(held);
        assert!(readable(cycle.fd(), 5_000));
        let fetched = cycle.try_take().unwrap();
        assert_eq!(fetched.len(), 2);
        assert_eq!(fetched[0].outcome, FetchOutcome::NotModified);
        assert_eq!(fetched[1].outcome, FetchOutcome::Absent { status: 404 });
    }

    struct Unusable;

    impl Server for Unusable {
        fn base(&self) -> &str {
            "https://prov/"
        }
        fn open(&self) -> Result<Box<dyn Source>, FetchError> {
            Err(FetchError::new(
                "https://prov/",
                FailureKind::Setup,
                "no CA",
            ))
        }
    }

    #[test]
    fn a_server_that_cannot_be_opened_fails_every_file() {
        let cycle = InFlight::start(Arc::new(Unusable), vec![wanted("a"), wanted("b")]).unwrap();
        assert!(readable(cycle.fd(), 5_000));
        std::thread::sleep(Duration::from_millis(1));
        let fetched = cycle.try_take().unwrap();
        assert!(fetched.iter().all(
            |f| matches!(&f.outcome, FetchOutcome::Failed(e) if e.kind == FailureKind::Setup)
        ));
    }
}
