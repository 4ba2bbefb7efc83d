//! Fetching (and uploading the status report) off the daemon's loop.
//!
//! A fetch cycle (both license files) runs on a thread of its own, started for that
//! cycle and ended with it; the loop learns that it is over from a pipe whose writing end
//! the thread holds and closes when it has sent its results, so the pipe's reading end
//! sits in the loop's `poll` beside the supervisor link, the control socket, the signals
//! and the timer. Why a thread rather than non-blocking I/O in the loop: the HTTP
//! client is a blocking one (reqwest's, over rustls), and the FTP(S) and TFTP clients
//! are written the same plain way; a thread keeps every one of them simple and out of
//! the loop, and costs nothing while no fetch runs (it exists only during one).
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
use crate::config::ServerUrl;
use crate::time::UnixTime;
use crate::trust::update::{document_name, judge, Trust};

/// Where license files come from, for one cycle (an open HTTP client, an FTP or FTPS
/// session, a TFTP server, a folder, or a fake in tests).
pub(crate) trait Source {
    /// Fetches `name`, whole.
    fn fetch(&self, name: &str) -> FetchOutcome;

    /// Stores `bytes` as `name` on the server (the status report), replacing what is
    /// there; on success, what was tried beside the plain way, in words. A source that
    /// takes no uploads says so ([`FailureKind::Setup`]).
    fn upload(&self, name: &str, bytes: &[u8]) -> Result<Option<String>, FetchError> {
        let _ = bytes;
        Err(FetchError::new(
            name,
            FailureKind::Setup,
            "this server takes no uploads",
        ))
    }
}

/// The provisioning servers, in the order they are tried: says where they are, and
/// opens a [`Source`] for one of them when a cycle first needs it (on the fetch thread).
pub(crate) trait Server: Send + Sync {
    /// The servers' base URLs; never empty.
    fn bases(&self) -> &[ServerUrl];

    /// Opens a source on the `index`-th server for one cycle (reading CA files, setting
    /// up a client).
    fn open(&self, index: usize) -> Result<Box<dyn Source>, FetchError>;
}

/// What one file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub(crate) name: String,
    pub(crate) outcome: FetchOutcome,
    /// The server that answered (none when every one failed).
    pub(crate) server: Option<ServerUrl>,
}

/// Work under way on a thread of its own (a fetch cycle, an upload): the loop polls
/// [`Job::fd`], readable once the thread has sent its result or ended.
pub(crate) struct Job<T> {
    result: Receiver<T>,
    /// Readable (end of file) once the thread has sent its result or ended.
    done: OwnedFd,
}

impl<T: Send + 'static> Job<T> {
    /// Runs `work` on a new thread called `name`.
    pub(crate) fn start(
        name: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Job<T>> {
        use nix::fcntl::OFlag;
        let (done, done_writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(std::io::Error::from)?;
        let (sender, result) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = sender.send(work());
                // The pipe closes after the result is in the channel.
                drop(done_writer);
            })?;
        Ok(Job { result, done })
    }
}

impl<T> Job<T> {
    /// The descriptor to poll: readable once the work is over.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.done.as_fd()
    }

    /// The result once the work is over: `None` while it runs, `Some(None)` for a
    /// thread that ended without one (it cannot, short of a bug).
    pub(crate) fn try_take(&self) -> Option<Option<T>> {
        match self.result.try_recv() {
            Ok(value) => Some(Some(value)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        }
    }
}

/// A fetch cycle under way on its thread, and what its work found beside the files
/// (`L`: where it found the server, for a cycle that looks for it first).
pub(crate) struct InFlight<L = ()> {
    job: Job<(Vec<Fetched>, Option<L>)>,
    names: Vec<String>,
}

impl<L: Send + 'static> InFlight<L> {
    /// Starts a cycle on `server` on a new thread: the trust documents (with `trust`),
    /// then `files` in order.
    pub(crate) fn start(
        server: Arc<dyn Server>,
        trust: Option<TrustAsk>,
        files: Vec<String>,
    ) -> std::io::Result<Self> {
        Self::start_with(files, move |files| {
            (fetch_cycle(server.as_ref(), trust.as_ref(), files), None)
        })
    }

    /// Starts `work` on `files` on a new thread.
    pub(crate) fn start_with(
        files: Vec<String>,
        work: impl FnOnce(&[String]) -> (Vec<Fetched>, Option<L>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let names = files.clone();
        let job = Job::start("fetch", move || work(&files))?;
        Ok(InFlight { job, names })
    }
}

impl<L> InFlight<L> {
    /// The descriptor to poll: readable once the cycle is over.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.job.fd()
    }

    /// The results, once the cycle is over (`None` while it runs). A thread that ended
    /// without results (it cannot, short of a bug) counts as every file failing.
    pub(crate) fn try_take(&self) -> Option<(Vec<Fetched>, Option<L>)> {
        let fetched = self.job.try_take()?;
        Some(fetched.unwrap_or_else(|| {
            let fetched = self
                .names
                .iter()
                .map(|name| Fetched {
                    name: name.clone(),
                    outcome: FetchOutcome::Failed(FetchError::new(
                        name.as_str(),
                        FailureKind::Io,
                        "the fetch thread ended without an answer",
                    )),
                    server: None,
                })
                .collect();
            (fetched, None)
        }))
    }
}

/// An upload a server took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The server that took it.
    pub(crate) base: ServerUrl,
    /// What was tried beside the plain way, in words: the servers before it that failed,
    /// and the fallbacks of the one that took it (FTP's other names).
    pub(crate) tried: Option<String>,
}

/// Uploads `bytes` as `name` to the first of `server`'s servers that takes it, or every
/// server's failure (on the calling thread: run it in a [`Job`]).
pub(crate) fn upload(server: &dyn Server, name: &str, bytes: &[u8]) -> Result<Taken, FetchError> {
    let mut failures: Vec<FetchError> = Vec::new();
    for (index, base) in server.bases().iter().enumerate() {
        match server
            .open(index)
            .and_then(|source| source.upload(name, bytes))
        {
            Ok(note) => {
                let tried: Vec<String> = failures
                    .iter()
                    .map(ToString::to_string)
                    .chain(note)
                    .collect();
                return Ok(Taken {
                    base: base.clone(),
                    tried: (!tried.is_empty()).then(|| tried.join("; ")),
                });
            }
            Err(e) => failures.push(e),
        }
    }
    // "Takes no uploads" only when no server takes them; else the first other failure.
    let kind = failures
        .iter()
        .map(|e| e.kind)
        .find(|k| *k != FailureKind::NoUploads)
        .unwrap_or(FailureKind::NoUploads);
    let mut error = every_server_failed(failures);
    error.kind = kind;
    Err(error)
}

/// The cycle itself (on the fetch thread). Each file is asked of the servers in order
/// until one answers (a body or "no such file": that server has
/// answered); a server that failed for an earlier file of the cycle is asked only after
/// those that have not, so one server down costs its timeout once a cycle, not once a
/// file. A server's source is opened when first needed and kept for the cycle (one
/// connection for both files); all are dropped at the end.
#[cfg(test)]
pub(crate) fn fetch_all(server: &dyn Server, files: &[String]) -> Vec<Fetched> {
    fetch_cycle(server, None, files)
}

/// What a cycle asks of the trust documents (`docs/trust-update.md`, "Where updates
/// live"): the trust held as it started, and the instant judged then (`None`: the clock
/// is not judged). The thread follows the versions up only to know which to ask next;
/// the agent judges each again before it takes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustAsk {
    pub(crate) held: Trust,
    pub(crate) now: Option<UnixTime>,
}

/// The most trust documents one cycle asks for (a phone far behind catches up over a
/// few cycles, each due at once).
pub(crate) const MAX_TRUST_STEPS: usize = 16;

/// A whole cycle: the trust documents after the one held, in turn (with `trust`), then
/// `files`, over one set of sources.
pub(crate) fn fetch_cycle(
    server: &dyn Server,
    trust: Option<&TrustAsk>,
    files: &[String],
) -> Vec<Fetched> {
    let mut session = Session::new(server);
    let mut fetched = Vec::new();
    if let Some(ask) = trust {
        let mut held = ask.held.clone();
        for _ in 0..MAX_TRUST_STEPS {
            let Some(next) = held.version.checked_add(1) else {
                break;
            };
            let got = session.fetch(&document_name(next));
            let taken = match &got.outcome {
                FetchOutcome::Body { bytes } => judge(&held, bytes, ask.now).ok(),
                _ => None,
            };
            fetched.push(got);
            match taken {
                Some(trust) => held = trust,
                None => break,
            }
        }
    }
    fetched.extend(files.iter().map(|file| session.fetch(file)));
    fetched
}

/// The servers' sources for one cycle, each opened when first needed, and which failed.
struct Session<'a> {
    server: &'a dyn Server,
    sources: Vec<Option<Result<Box<dyn Source>, FetchError>>>,
    failed_before: Vec<bool>,
}

impl<'a> Session<'a> {
    fn new(server: &'a dyn Server) -> Session<'a> {
        let count = server.bases().len();
        Session {
            server,
            sources: (0..count).map(|_| None).collect(),
            failed_before: vec![false; count],
        }
    }

    /// `file` from the first server that answers.
    fn fetch(&mut self, file: &str) -> Fetched {
        let bases = self.server.bases();
        let mut order: Vec<usize> = (0..bases.len()).collect();
        order.sort_by_key(|&i| self.failed_before[i]);
        let mut failures = Vec::new();
        for index in order {
            let server = self.server;
            let source = self.sources[index].get_or_insert_with(|| server.open(index));
            let outcome = match source {
                Ok(source) => source.fetch(file),
                Err(e) => FetchOutcome::Failed(e.clone()),
            };
            match outcome {
                FetchOutcome::Failed(e) => {
                    self.failed_before[index] = true;
                    failures.push(e);
                }
                answered => {
                    return Fetched {
                        name: file.to_string(),
                        outcome: answered,
                        server: Some(bases[index].clone()),
                    }
                }
            }
        }
        Fetched {
            name: file.to_string(),
            outcome: FetchOutcome::Failed(every_server_failed(failures)),
            server: None,
        }
    }
}

/// One error for a file that no server gave: the only one, or all of them in order
/// (the kind of the first).
pub(crate) fn every_server_failed(mut failures: Vec<FetchError>) -> FetchError {
    if failures.len() <= 1 {
        return failures
            .pop()
            .unwrap_or_else(|| FetchError::new("-", FailureKind::Setup, "no provisioning server"));
    }
    let detail = failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; then ");
    FetchError::new(
        format!("every server ({})", failures.len()),
        failures[0].kind,
        detail,
    )
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
        fn fetch(&self, name: &str) -> FetchOutcome {
            let _held = self.gate.lock();
            if name.starts_with("0000") {
                FetchOutcome::Body {
                    bytes: b"site".to_vec(),
                }
            } else {
                FetchOutcome::Absent {
                    answer: "404".into(),
                }
            }
        }
    }

    struct ScriptServer {
        gate: Arc<Mutex<()>>,
        bases: Vec<ServerUrl>,
    }

    impl Server for ScriptServer {
        fn bases(&self) -> &[ServerUrl] {
            &self.bases
        }
        fn open(&self, _: usize) -> Result<Box<dyn Source>, FetchError> {
            Ok(Box::new(Script {
                gate: self.gate.clone(),
            }))
        }
    }

    fn wanted(name: &str) -> String {
        name.into()
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
        let server = Arc::new(ScriptServer {
            gate: gate.clone(),
            bases: vec![ServerUrl::test("http://script/")],
        });
        let cycle: InFlight = InFlight::start(
            server,
            None,
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
        let (fetched, _) = cycle.try_take().unwrap();
        assert_eq!(fetched.len(), 2);
        assert_eq!(
            fetched[0].outcome,
            FetchOutcome::Body {
                bytes: b"site".to_vec()
            }
        );
        assert_eq!(
            fetched[1].outcome,
            FetchOutcome::Absent {
                answer: "404".into()
            }
        );
    }

    struct Unusable(Vec<ServerUrl>);

    impl Server for Unusable {
        fn bases(&self) -> &[ServerUrl] {
            &self.0
        }
        fn open(&self, _: usize) -> Result<Box<dyn Source>, FetchError> {
            Err(FetchError::new(
                "https://prov/",
                FailureKind::Setup,
                "no CA",
            ))
        }
    }

    #[test]
    fn a_server_that_cannot_be_opened_fails_every_file() {
        let server = Arc::new(Unusable(vec![ServerUrl::test("https://prov/")]));
        let cycle: InFlight =
            InFlight::start(server, None, vec![wanted("a"), wanted("b")]).unwrap();
        assert!(readable(cycle.fd(), 5_000));
        std::thread::sleep(Duration::from_millis(1));
        let (fetched, _) = cycle.try_take().unwrap();
        assert!(fetched.iter().all(
            |f| matches!(&f.outcome, FetchOutcome::Failed(e) if e.kind == FailureKind::Setup)
        ));
    }

    /// Servers with fixed behaviours: `Down` fails every file, `Missing` answers "no
    /// such file", `Has` gives a body, `Unopenable` cannot even be opened. Every ask
    /// and every open is recorded.
    #[derive(Clone, Copy, Debug)]
    enum Behaviour {
        Down,
        Missing,
        Has,
        Unopenable,
    }

    struct Fleet {
        behaviours: Vec<Behaviour>,
        bases: Vec<ServerUrl>,
        log: Arc<Mutex<Vec<String>>>,
    }

    struct FleetSource(usize, Behaviour, Arc<Mutex<Vec<String>>>);

    impl Source for FleetSource {
        fn fetch(&self, name: &str) -> FetchOutcome {
            self.2.lock().unwrap().push(format!("{} {name}", self.0));
            match self.1 {
                Behaviour::Down | Behaviour::Unopenable => FetchOutcome::Failed(FetchError::new(
                    format!("s{}/{name}", self.0),
                    FailureKind::Connect,
                    "refused",
                )),
                Behaviour::Missing => FetchOutcome::Absent {
                    answer: "404".into(),
                },
                Behaviour::Has => FetchOutcome::Body { bytes: Vec::new() },
            }
        }
    }

    impl Server for Fleet {
        fn bases(&self) -> &[ServerUrl] {
            &self.bases
        }
        fn open(&self, index: usize) -> Result<Box<dyn Source>, FetchError> {
            self.log.lock().unwrap().push(format!("open {index}"));
            match self.behaviours[index] {
                Behaviour::Unopenable => Err(FetchError::new(
                    format!("s{index}"),
                    FailureKind::Setup,
                    "no CA",
                )),
                b => Ok(Box::new(FleetSource(index, b, self.log.clone()))),
            }
        }
    }

    fn run(behaviours: &[Behaviour]) -> (Vec<Fetched>, Vec<String>) {
        let fleet = Fleet {
            behaviours: behaviours.to_vec(),
            bases: (0..behaviours.len())
                .map(|i| ServerUrl::test(&format!("http://s{i}/")))
                .collect(),
            log: Arc::default(),
        };
        let fetched = fetch_all(&fleet, &[wanted("site"), wanted("phone")]);
        let log = fleet.log.lock().unwrap().clone();
        (fetched, log)
    }

    #[test]
    fn each_file_goes_to_the_first_server_that_answers_and_a_failed_one_is_asked_last() {
        use Behaviour::*;
        let (fetched, log) = run(&[Down, Missing, Has]);
        // "No such file" is an answer: the third server is never asked.
        assert_eq!(
            fetched
                .iter()
                .map(|f| (f.server.as_ref().map(ServerUrl::as_str), &f.outcome))
                .collect::<Vec<_>>(),
            [
                (
                    Some("http://s1/"),
                    &FetchOutcome::Absent {
                        answer: "404".into()
                    }
                ),
                (
                    Some("http://s1/"),
                    &FetchOutcome::Absent {
                        answer: "404".into()
                    }
                ),
            ]
        );
        // The phone file starts with s1: s0 failed for the site file.
        assert_eq!(log, ["open 0", "0 site", "open 1", "1 site", "1 phone"]);

        let (fetched, log) = run(&[Unopenable, Down, Has]);
        assert!(fetched
            .iter()
            .all(|f| f.server.as_ref().map(ServerUrl::as_str) == Some("http://s2/")));
        // Opened once each for the cycle; the failed ones asked again only after s2.
        assert_eq!(
            log,
            ["open 0", "open 1", "1 site", "open 2", "2 site", "2 phone"]
        );
    }

    #[test]
    fn when_every_server_fails_the_error_names_each_failure_in_order() {
        use Behaviour::*;
        let (fetched, log) = run(&[Down, Unopenable]);
        let FetchOutcome::Failed(e) = &fetched[0].outcome else {
            panic!("{fetched:?}");
        };
        assert_eq!(fetched[0].server, None);
        assert_eq!(e.kind, FailureKind::Connect);
        assert_eq!(
            e.to_string(),
            "every server (2): cannot connect: s0/site: cannot connect: refused; then \
             s1: cannot fetch: no CA"
        );
        // Both files asked of both (the phone file may be there when the site file is
        // not), each server opened once.
        assert_eq!(log, ["open 0", "0 site", "open 1", "0 phone"]);
        // One server: its error as it is.
        let (fetched, _) = run(&[Down]);
        assert_eq!(
            fetched[1].outcome,
            FetchOutcome::Failed(FetchError::new("s0/phone", FailureKind::Connect, "refused"))
        );
    }
}
