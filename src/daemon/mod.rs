//! `license-agent run`: what the phone firmware starts at boot, and the loop that never
//! stalls.
//!
//! At start it reads the configuration and the store, opens the supervisor link (so
//! HELLO and FEATURES with the stored set go out at once, whatever the server does),
//! starts the boot fetch cycle, and then lives in one `poll` that holds everything the
//! agent answers to: the supervisor link, the control socket and its clients, the
//! signals (a signalfd: SIGTERM and SIGINT stop it, SIGHUP re-reads the configuration),
//! the end of a fetch cycle (run on a thread of its own, `fetch::worker`), and two
//! clocks. UnixTimes of the rules (a status change, a retry, a poll) arm a
//! `CLOCK_REALTIME` timerfd with `TFD_TIMER_CANCEL_ON_SET`, so a step of the wall clock
//! wakes it to decide again; waits the rules state as lengths (the idle grace, the
//! stagger delay, the re-ask after OK, the link's back-off, the clients' deadlines) are
//! the `poll` timeout, measured on the monotonic clock. Nothing in the loop waits on the
//! network, a peer or a file: it only ever acts on fresh facts. Before a REBOOT is sent,
//! everything the supervisor has sent so far is read, and the decision is taken on a
//! clock read after that. The boot cycle's end publishes the feature set and tells
//! systemd READY=1; the features file appears then, so the phone application, which
//! waits for it, starts with the set the phone booted with.
//!
//! # Every system call in the loop, and what bounds it
//!
//! `poll` is the loop's only wait, and its timeout is the earliest deadline of the
//! rules, the link, the clients, the control socket's retry and the log's folded lines
//! (a deadline already passed never sets it: a busy loop). Nothing else waits on anyone:
//! - signals and the wall-clock timer: a signalfd and a timerfd, both non-blocking;
//! - the supervisor link (`supervisor::link`): a non-blocking socket; `connect` that
//!   would wait (a full backlog) fails with `EAGAIN` and is retried with back-off; a
//!   read takes at most 64 KiB a pass; lines go out through a bounded buffer, a REBOOT
//!   only whole and only on a clear link (`SIOCOUTQ`, an `ioctl` that never waits);
//! - the control socket (`control_socket`, `clients`): bound at start and at a reload
//!   with a non-blocking probe of what is there, never at the cost of starting; every
//!   client non-blocking, with deadlines and slots; `accept` out of descriptors pauses
//!   the listener instead of spinning;
//! - fetches and uploads, name resolution included: on threads of their own
//!   (`fetch::worker`), the loop polling only the pipe that says they ended; at most one
//!   cycle given up by a reload runs beside the current one (a SIGHUP meanwhile waits
//!   for it), and a reload carries the report's upload over instead of starting another;
//! - files (configuration, keyring, certificates, the store, `/proc`'s boot id): opened
//!   with `O_NONBLOCK` and only if regular, read to a bound (`files`); writes are the
//!   store's and the features file's, local and atomic; the store's writer lock is taken
//!   without waiting at a reload;
//! - the log: standard error, each line escaped and repeats folded (`logging`).
//!
//! The test clock, a **test aid**, is [`clock`]'s.
//!
//! The decisions are the [`core`]'s, a state machine with no I/O: this module only reads
//! the world into it and does what it asks ([`core::Action`]).

mod clients;
mod clock;
mod control_socket;
pub(crate) mod core;
pub(crate) mod notify;
pub(crate) mod publish;
mod reporting;
#[cfg(test)]
mod sim;
mod timer;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal as SysSignal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};

use crate::config;
use crate::control::{CheckSyncJson, Request, Response};
use crate::fetch::worker::{self, InFlight, Job, Taken};
use crate::fetch::{FetchError, Provisioning, Server};
use crate::locate::{Located, Locator};
use crate::phone::{load_phone, Phone, PhoneError};
use crate::storage::{Mode, Store, StoreError, WriterLock};
use crate::supervisor::link::Link;
use crate::supervisor::protocol::ToSupervisor;
use crate::time::{real_now, Mono, UnixTime};
use clients::{ClientId, Clients};
pub(crate) use clock::DaemonClock;
use control_socket::ControlSocket;
use core::agent::{Agent, FetchStart};
use core::uploads::{UploadFailure, Uploads};
use core::{Action, Core, Reloaded, Signal};
pub(crate) use timer::block_signals;
use timer::{arm, read_timer, Armed, TimerEvent};

/// Why the daemon could not run.
#[derive(Debug)]
pub(crate) enum DaemonError {
    /// A system call the loop is built on failed.
    Sys { what: &'static str, errno: Errno },
    /// The configuration, the keyring or the identity could not be used.
    Phone(PhoneError),
    /// The store could not be opened (or its writer lock taken).
    Store(StoreError),
    /// The test clock's variable is not an instant.
    TestClock(String),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Sys { what, errno } => write!(f, "{what}: {errno}"),
            DaemonError::Phone(e) => write!(f, "{e}"),
            DaemonError::Store(e) => write!(f, "{e}"),
            DaemonError::TestClock(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for DaemonError {}

fn err(what: &'static str) -> impl FnOnce(Errno) -> DaemonError {
    move |errno| DaemonError::Sys { what, errno }
}

fn jitter_seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes) ^ real_now().unsigned_abs()
}

/// How long a starting agent waits for the store's writer lock: a hand install holds it
/// for milliseconds, another daemon for ever.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// An agent set up from a configuration, and the server the executor fetches from.
pub(crate) struct Setup {
    pub(crate) agent: Agent,
    server: Option<Arc<dyn Server>>,
    /// With `[provisioning]` looking for the server (DHCP, the master file): each cycle
    /// finds it first, on the fetch thread.
    locator: Option<Arc<Locator>>,
}

/// The status report's uploads for `agent`, and the server they go to (the daemon's
/// alone: `run --once` uploads nothing).
fn reports(agent: &Agent) -> (Uploads, Option<Arc<dyn Server>>) {
    let phone = &agent.phone;
    let logs = agent.known_server().map(|k| &k.logs);
    let report_server = reporting::report_server(&phone.config, phone.identity.mac, logs);
    let t = &phone.config.timing;
    let uploads = Uploads::new(
        report_server
            .as_ref()
            .map(|s| s.bases().to_vec())
            .map_err(Clone::clone),
        phone.identity.mac,
        (t.retry_initial, t.retry_max),
        jitter_seed(),
    );
    (uploads, report_server.ok())
}

/// Sets the agent up for the configuration at `config_path` (read now: a reload).
/// `held` is the writer lock of the agent it replaces, kept when the state folder is
/// the same.
pub(crate) fn start(
    config_path: &Path,
    clock: &DaemonClock,
    held: Option<&Arc<WriterLock>>,
) -> Result<Setup, DaemonError> {
    let phone = load_phone(config_path).map_err(DaemonError::Phone)?;
    for e in &phone.config_set_aside {
        log::error!("{}", crate::status::set_aside_words(e));
    }
    start_with(phone, clock, held)
}

/// Sets the agent up for `phone`, its configuration and keyring read already (at start,
/// by the command that checked them: they are read once).
fn start_with(
    phone: Phone,
    clock: &DaemonClock,
    held: Option<&Arc<WriterLock>>,
) -> Result<Setup, DaemonError> {
    // A reload (the loop running) never waits: another state folder whose lock is
    // taken keeps the old configuration.
    let wait = if held.is_some() {
        Duration::ZERO
    } else {
        LOCK_WAIT
    };
    let lock = WriterLock::reuse_or_acquire(held, &phone.config.state_dir, wait)
        .map_err(DaemonError::Store)?;
    let config = &phone.config;
    let locates = config.boot_server.locates();
    let locator = locates.then(|| {
        Arc::new(Locator {
            settings: config.boot_server.clone(),
            statics: config.servers.clone(),
            fetch: config.fetch.clone(),
            mac: phone.identity.mac,
            schemes: config::TRANSPORTS.to_vec(),
        })
    });
    let server = if locates {
        // Found at each cycle; the static list, checked then, is only the fallback.
        Ok(None)
    } else {
        Provisioning::new(&config.servers, &config.fetch, phone.identity.mac)
            .map(|p| Some(Arc::new(p) as Arc<dyn Server>))
            .map_err(|e| e.to_string())
    };
    if let Err(why) = &server {
        log::warn!("{why}");
    }
    let store = Store::open(
        &phone.config.state_dir,
        &phone.keyring,
        &phone.identity,
        Mode::Writer(lock),
        clock.stamp().wall,
    )
    .map_err(DaemonError::Store)?;
    let bases = match &server {
        Ok(Some(server)) => Ok(server.bases().to_vec()),
        Ok(None) => Ok(phone.config.servers.clone()),
        Err(why) => Err(why.clone()),
    };
    Ok(Setup {
        agent: Agent::new(phone, store, bases, jitter_seed(), boot_id()),
        server: server.ok().flatten(),
        locator,
    })
}

/// Where Linux tells one boot from the next.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's id (a UUID), if the kernel says.
fn boot_id() -> Option<String> {
    let bytes = crate::files::read_regular(Path::new(BOOT_ID), 64).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.trim();
    let plain =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    plain.then(|| id.to_string())
}

/// What the loop holds: the core, and everything it reads the world from.
struct Daemon {
    config_path: PathBuf,
    clock: DaemonClock,
    core: Core,
    /// Where fetch cycles and uploads go.
    server: Option<Arc<dyn Server>>,
    /// Or how each cycle finds where they go.
    locator: Option<Arc<Locator>>,
    report_server: Option<Arc<dyn Server>>,
    /// The supervisor link (`None` on a board without supervisor).
    link: Option<Link>,
    /// The control socket (not bound while its path is taken: tried again later).
    control: ControlSocket,
    clients: Clients,
    /// The fetch cycle under way, by number.
    running: Option<(u64, InFlight<Located>)>,
    /// The cycle a reload gave up, until its thread ends.
    abandoned: Option<(u64, InFlight<Located>)>,
    /// The report's upload under way.
    upload: Option<Job<Result<Taken, FetchError>>>,
    /// The wall-clock instant the timer is armed for (re-armed only on a change).
    armed: Option<Option<UnixTime>>,
    /// The exit status asked for.
    exit: Option<i32>,
}

fn link_for(config: &config::Config) -> Option<Link> {
    match &config.supervisor {
        config::Supervisor::Socket(path) => Some(Link::new(path.clone(), jitter_seed())),
        config::Supervisor::None => None,
    }
}

/// Runs the daemon for `phone`, read from `config_path` (read again at each SIGHUP),
/// until SIGTERM or SIGINT. Returns the exit status.
pub(crate) fn run(config_path: &Path, phone: Phone) -> Result<i32, DaemonError> {
    // Signals are blocked before anything else and read from a signalfd.
    let mask = block_signals()?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(err("signalfd"))?;
    let timer = TimerFd::new(
        ClockId::CLOCK_REALTIME,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .map_err(err("timerfd"))?;

    let clock = DaemonClock::from_env()?;
    let setup = start_with(phone, &clock, None)?;
    let config = &setup.agent.phone.config;
    // A control socket that cannot be bound does not stop the agent: tried again later.
    let control = ControlSocket::open(config.control_socket.clone(), jitter_seed(), Mono::now());
    log::info!(
        "license-agent {} started for MAC {}; control socket {}",
        crate::VERSION,
        setup.agent.phone.identity.mac,
        control.path().display()
    );
    // The boot cycle may wait for the clock, then fetches two files, each within the
    // total timeout; a cycle that finds the server first may ask each server it may try
    // for the master file too (the DHCP one, the remembered one, the static list).
    let asked = if config.boot_server.master_config {
        // Two master files on each (a slow 404, then a hang), then the two licenses.
        2 + 2 * (2 + config.servers.len() as u64)
    } else {
        2
    };
    let fetch_bound = config.fetch.total_timeout.0.saturating_mul(asked);
    let clock_bound = config.timing.boot_clock_wait.0;
    notify::starting_within(Duration::from_secs(
        fetch_bound.saturating_add(clock_bound).saturating_add(30),
    ));
    let link = link_for(config);
    let (uploads, report_server) = reports(&setup.agent);
    let mut daemon = Daemon {
        config_path: config_path.to_path_buf(),
        clock,
        core: Core::new(setup.agent, uploads),
        server: setup.server,
        locator: setup.locator,
        report_server,
        link,
        control,
        clients: Clients::default(),
        running: None,
        abandoned: None,
        upload: None,
        armed: None,
        exit: None,
    };
    // The link first: HELLO and FEATURES (the stored set) go out before any fetch.
    daemon.connect_link_if_due();
    daemon.core.start(daemon.clock.stamp());
    daemon.execute();
    let code = daemon.run(&signals, &timer);
    daemon.control.close();
    code
}

/// `run --once` for `phone`: one boot cycle, fetched on this thread (nothing else runs
/// meanwhile), then the status; no loop.
pub(crate) fn once(
    phone: Phone,
) -> Result<(CheckSyncJson, crate::status::StatusJson), DaemonError> {
    let clock = DaemonClock::from_env()?;
    let Setup {
        mut agent,
        server,
        locator,
    } = start_with(phone, &clock, None)?;
    let snap = agent.snapshot(clock.stamp());
    let mut report = match agent.fetch_now(&snap) {
        FetchStart::Done(report) => report,
        FetchStart::Pending(_) => CheckSyncJson::default(),
    };
    for action in agent.take_actions() {
        if let Action::StartFetch {
            number,
            trust,
            files,
        } = action
        {
            let fetched = match (&locator, &server) {
                (Some(locator), _) => {
                    let (fetched, located) =
                        locator.run(agent.known_server(), trust.as_ref(), &files);
                    agent.located(number, located);
                    fetched
                }
                (None, Some(server)) => {
                    worker::fetch_cycle(server.as_ref(), trust.as_ref(), &files)
                }
                (None, None) => continue,
            };
            let reports = agent.fetch_finished(number, fetched, clock.stamp());
            if let Some((_, done)) = reports.into_iter().find(|(m, _)| *m >= number) {
                report = done;
            }
        }
    }
    let status = agent.status(&agent.snapshot(clock.stamp()));
    Ok((report, status))
}

/// What `poll` said of one pass.
#[derive(Default)]
struct Ready {
    timer: bool,
    signals: bool,
    listener: bool,
    link: bool,
    fetch: bool,
    abandoned: bool,
    report: bool,
    clients: Vec<bool>,
}

impl Daemon {
    fn run(&mut self, signals: &SignalFd, timer: &TimerFd) -> Result<i32, DaemonError> {
        loop {
            let timeout = self.settle(timer)?;
            if let Some(code) = self.exit {
                return Ok(code);
            }
            let ready = self.wait(signals, timer, timeout).map_err(err("poll"))?;
            // Signals first: a stop is a stop, whatever else is pending.
            if ready.signals {
                match signals.read_signal() {
                    Ok(Some(info)) if info.ssi_signo == SysSignal::SIGHUP as u32 => {
                        self.core.handle_signal(Signal::Reload)
                    }
                    Ok(Some(info)) => self
                        .core
                        .handle_signal(Signal::Stop(i32::try_from(info.ssi_signo).unwrap_or(0))),
                    Ok(None) | Err(_) => {}
                }
                self.execute();
                if let Some(code) = self.exit {
                    return Ok(code);
                }
            }
            if ready.link {
                self.read_link();
            }
            if ready.fetch {
                self.fetch_ended(false);
            }
            if ready.abandoned {
                self.fetch_ended(true);
            }
            if ready.report {
                self.upload_ended();
            }
            if ready.timer {
                match read_timer(timer) {
                    TimerEvent::Expired => self.core.handle_timer(self.clock.stamp()),
                    TimerEvent::ClockStepped => self.core.handle_clock_step(self.clock.stamp()),
                    TimerEvent::Nothing => {}
                }
                self.armed = None;
            }
            self.execute();
            if ready.clients.iter().any(|r| *r) {
                let now = Mono::now();
                for (id, request) in self.clients.serve(&ready.clients, now) {
                    self.handle_request(id, request);
                }
            }
            if let Some(listener) = self.control.listener().filter(|_| ready.listener) {
                let now = Mono::now();
                let mut received = self.clients.accept_all(listener, now);
                // A request often arrives with the connection: read it now.
                received.extend(self.clients.read_readers(now));
                for (id, request) in received {
                    self.handle_request(id, request);
                }
            }
        }
    }

    /// Does what the core asks, in order, handing back what doing it gave.
    fn execute(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::StartFetch {
                    number,
                    trust,
                    files,
                } => {
                    let started = match (&self.locator, &self.server) {
                        (Some(locator), _) => {
                            let locator = locator.clone();
                            let known = self.core.agent().known_server().cloned();
                            InFlight::start_with(files, move |files| {
                                let (fetched, located) =
                                    locator.run(known.as_ref(), trust.as_ref(), files);
                                (fetched, Some(located))
                            })
                            .map_err(|e| e.to_string())
                        }
                        (None, Some(server)) => {
                            InFlight::start(server.clone(), trust, files).map_err(|e| e.to_string())
                        }
                        (None, None) => Err("no provisioning server".to_string()),
                    };
                    match started {
                        Ok(flight) => self.running = Some((number, flight)),
                        Err(why) => {
                            self.core
                                .handle_fetch_not_started(number, &why, self.clock.stamp())
                        }
                    }
                }
                Action::AbandonFetch { number } => {
                    if self.running.as_ref().is_some_and(|(n, _)| *n == number) {
                        self.abandoned = self.running.take();
                    }
                }
                Action::Send(message) => {
                    let event = self
                        .link
                        .as_mut()
                        .and_then(|link| link.send(&message, Mono::now()));
                    if let Some(event) = event {
                        self.core.handle_supervisor(event, self.clock.stamp());
                    }
                }
                Action::Reboot { id, cause } => {
                    let Some(link) = self.link.as_mut() else {
                        continue;
                    };
                    let (sent, event) =
                        link.send_now(&ToSupervisor::Reboot { id, cause }, Mono::now());
                    if sent {
                        log::info!(target: crate::syslog::NOTICE, "asked the supervisor for a reboot: REBOOT {id} {cause}");
                    } else {
                        log::info!("REBOOT {id} {cause} withdrawn: the link was not clear");
                    }
                    if let Some(event) = event {
                        self.core.handle_supervisor(event, self.clock.stamp());
                    }
                }
                Action::Answer { client, response } => {
                    self.clients.answer(client, &response, Mono::now())
                }
                Action::Upload { name, body } => {
                    let started = match &self.report_server {
                        Some(server) => {
                            let server = server.clone();
                            Job::start("report", move || {
                                worker::upload(server.as_ref(), &name, &body)
                            })
                            .map_err(|e| e.to_string())
                        }
                        None => Err("no server to upload to".to_string()),
                    };
                    match started {
                        Ok(job) => self.upload = Some(job),
                        Err(why) => self.core.handle_upload_done(
                            Err(UploadFailure::NotStarted(why)),
                            self.clock.stamp(),
                        ),
                    }
                }
                Action::Reload => self.reload(),
                Action::NotifyReady => notify::ready(),
                Action::Exit(code) => {
                    self.exit = Some(code);
                    return;
                }
            }
        }
    }

    /// Reads the configuration again ([`Action::Reload`]): the new agent, servers,
    /// supervisor link and control socket, handed to the core; nothing in the new
    /// configuration stops the daemon.
    fn reload(&mut self) {
        let held = self.core.agent().store().lock().cloned();
        let mut setup = match start(&self.config_path, &self.clock, held.as_ref()) {
            Ok(setup) => setup,
            Err(e) => {
                self.core
                    .handle_reloaded(Err(e.to_string()), self.clock.stamp());
                return;
            }
        };
        let config = &setup.agent.phone.config;
        if config.syslog != self.core.agent().phone.config.syslog {
            // A new sink replaces the old, whose thread ends once its queue is sent.
            crate::logging::start_syslog(
                &config.syslog,
                &setup.agent.phone.identity.mac.to_string(),
            );
        }
        self.link = link_for(config);
        self.armed = None;
        let wanted = config.control_socket.clone();
        if wanted != self.control.path() {
            // The new socket first: one that cannot be bound leaves the old one serving.
            let moved = ControlSocket::open(wanted, jitter_seed(), Mono::now());
            if moved.listener().is_some() || self.control.listener().is_none() {
                let old = std::mem::replace(&mut self.control, moved);
                old.close();
            } else {
                log::error!(
                    "the control socket stays at {}",
                    self.control.path().display()
                );
            }
        }
        // Before the report's target is chosen: it may be the known server's folder.
        setup.agent.keep_known(self.core.agent());
        let (uploads, report_server) = reports(&setup.agent);
        self.server = setup.server;
        self.locator = setup.locator;
        self.report_server = report_server;
        let reloaded = Reloaded {
            agent: setup.agent,
            uploads,
        };
        self.core.handle_reloaded(Ok(reloaded), self.clock.stamp());
        if !self.core.uploads().uploading() {
            // Given up with the old configuration's uploads.
            self.upload = None;
        }
    }

    /// A fetch cycle's thread ended (the current one, or the one a reload gave up).
    fn fetch_ended(&mut self, abandoned: bool) {
        let slot = if abandoned {
            &mut self.abandoned
        } else {
            &mut self.running
        };
        let Some(fetched) = slot.as_ref().and_then(|(_, flight)| flight.try_take()) else {
            return;
        };
        let Some((number, _)) = slot.take() else {
            return;
        };
        let (fetched, located) = fetched;
        if let Some(located) = located {
            self.core.handle_located(number, located);
            if !abandoned {
                self.follow_report_folder();
            }
        }
        self.core
            .handle_fetch_done(number, fetched, self.clock.stamp());
    }

    /// With `report = true` and a cycle that finds the server, reports go to the log
    /// folder of the server found last: a new server for them when that changed.
    fn follow_report_folder(&mut self) {
        let agent = self.core.agent();
        let config = &agent.phone.config;
        if config.report != config::ReportTo::Servers {
            return;
        }
        let Some(logs) = agent.known_server().map(|k| k.logs.clone()) else {
            return;
        };
        let current = self.report_server.as_ref().and_then(|s| s.bases().first());
        // Compared with the credentials (a URL's own may change with the lease).
        if current == Some(&logs) {
            return;
        }
        let server = reporting::report_server(config, agent.phone.identity.mac, Some(&logs));
        let target = server
            .as_ref()
            .map(|s| s.bases().to_vec())
            .map_err(Clone::clone);
        self.report_server = server.ok();
        self.core.retarget_reports(target);
    }

    /// The upload's thread ended.
    fn upload_ended(&mut self) {
        let Some(result) = self.upload.as_ref().and_then(Job::try_take) else {
            return;
        };
        self.upload = None;
        let result = match result {
            Some(result) => result.map_err(UploadFailure::Server),
            None => Err(UploadFailure::NoAnswer),
        };
        self.core.handle_upload_done(result, self.clock.stamp());
    }

    fn connect_link_if_due(&mut self) {
        let event = self
            .link
            .as_mut()
            .and_then(|l| l.connect_if_due(Mono::now()));
        if let Some(event) = event {
            self.core.handle_supervisor(event, self.clock.stamp());
        }
        self.execute();
    }

    /// Reads what the supervisor has sent (never waits; a bounded amount), each line
    /// stamped when it is read, and writes what waits to be written. Returns whether
    /// everything sent so far was read.
    fn read_link(&mut self) -> bool {
        let Some(link) = self.link.as_mut() else {
            return true;
        };
        let (events, drained) = link.read(Mono::now());
        let flushed = link.flush(Mono::now());
        for event in events.into_iter().chain(flushed) {
            self.core.handle_supervisor(event, self.clock.stamp());
        }
        self.execute();
        drained
    }

    /// The REBOOTs due, on fresh facts: everything the supervisor sent so far is read
    /// first, and the core decides only when nothing of the agent's waits on the link.
    fn ask_reboots(&mut self) {
        if !self.core.link_up() || self.link.as_ref().is_none_or(|l| !l.is_up()) {
            return;
        }
        if !self.read_link() {
            // A supervisor still sending (a flood): not now; the loop comes back.
            return;
        }
        if !self.link.as_ref().is_some_and(Link::clear) {
            // A supervisor that stops reading gets no REBOOT until it has read what
            // went before; the core says when to look again.
            self.core.handle_link_not_clear(self.clock.stamp());
            return;
        }
        self.core.handle_link_clear(self.clock.stamp());
        self.execute();
    }

    /// One request of a control client. The test clock's `test-set-time` is done here
    /// (the executor owns the clocks); everything else is the core's.
    fn handle_request(&mut self, id: ClientId, request: Result<Request, String>) {
        match request {
            Ok(Request::TestSetTime { now }) if !(0..=i64::from(u32::MAX)).contains(&now) => {
                let response = Response::error(format!(
                    "test-set-time: {now} is outside the instants a license can name (0 to {})",
                    u32::MAX
                ));
                self.clients.answer(id, &response, Mono::now());
            }
            Ok(Request::TestSetTime { now }) if self.clock.test => {
                self.clock.set(now);
                self.armed = None;
                self.core.handle_clock_step(self.clock.stamp());
                self.execute();
                // Whatever the new time calls for is done before the answer.
                self.ask_reboots();
                let response = self.core.status_response(self.clock.stamp());
                self.clients.answer(id, &response, Mono::now());
            }
            request => {
                self.core.handle_request(id, request, self.clock.stamp());
                self.execute();
            }
        }
    }

    /// Does what is due by the clocks, then says how long `poll` may wait (and arms
    /// the wall-clock timer).
    fn settle(&mut self, timer: &TimerFd) -> Result<PollTimeout, DaemonError> {
        self.clients.expire(Mono::now());
        self.control.retry_if_due(Mono::now());
        self.core.handle_timeout(self.clock.stamp());
        self.execute();
        self.connect_link_if_due();
        self.ask_reboots();
        let stamp = self.clock.stamp();
        let wake = self.core.end_pass(stamp);
        self.execute();
        let wall = wake.wall.map(|w| self.clock.to_real(w));
        if self.armed != Some(wall) {
            if arm(timer, wall)? == Armed::ClockStepped {
                self.armed = None;
                self.core.handle_clock_step(self.clock.stamp());
                self.execute();
                // Settle again at once: what the new time calls for, then the timer.
                return Ok(PollTimeout::ZERO);
            }
            self.armed = Some(wall);
        }
        // The core's waits are on the daemon's clock (the test clock's, in tests); the
        // link's back-off and the clients' deadlines on the machine's monotonic clock,
        // whatever a test does with time.
        let real = Mono::now();
        let ms = [
            wake.mono.map(|at| stamp.mono.millis_until_ceil(at)),
            [
                self.link.as_ref().and_then(Link::next_attempt),
                self.clients.next_deadline(real),
                self.control.next_attempt(),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|at| real.millis_until_ceil(at)),
            // The folded log lines' summary, written on time.
            crate::logging::summary_due_in().map(|d| {
                u64::try_from(d.as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_add(1)
            }),
        ]
        .into_iter()
        .flatten()
        .min();
        Ok(match ms {
            None => PollTimeout::NONE,
            Some(ms) => PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX))
                .unwrap_or(PollTimeout::MAX),
        })
    }

    /// One `poll` over everything the daemon answers to.
    fn wait(
        &self,
        signals: &SignalFd,
        timer: &TimerFd,
        timeout: PollTimeout,
    ) -> Result<Ready, Errno> {
        // A full house of clients leaves new connections in the backlog for a while.
        let listen = if self.clients.listening(Mono::now()) {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        let mut fds = vec![
            PollFd::new(timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        let mut add = |fd, flags| {
            fds.push(PollFd::new(fd, flags));
            fds.len() - 1
        };
        let listener_at = self.control.listener().map(|l| add(l.as_fd(), listen));
        let link = self.link.as_ref();
        let link_flags = match link.is_some_and(Link::wants_write) {
            true => PollFlags::POLLIN | PollFlags::POLLOUT,
            false => PollFlags::POLLIN,
        };
        let link_at = link.and_then(Link::fd).map(|fd| add(fd, link_flags));
        let fetch_at = self
            .running
            .as_ref()
            .map(|(_, f)| add(f.fd(), PollFlags::POLLIN));
        let abandoned_at = self
            .abandoned
            .as_ref()
            .map(|(_, f)| add(f.fd(), PollFlags::POLLIN));
        let report_at = self.upload.as_ref().map(|j| add(j.fd(), PollFlags::POLLIN));
        let client_fds = self.clients.poll_fds();
        let first_client = fds.len();
        for (fd, flags) in client_fds {
            fds.push(PollFd::new(fd, flags));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Ready::default()),
            Err(e) => return Err(e),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        Ok(Ready {
            timer: ready(0),
            signals: ready(1),
            listener: listener_at.is_some_and(ready),
            link: link_at.is_some_and(ready),
            fetch: fetch_at.is_some_and(ready),
            abandoned: abandoned_at.is_some_and(ready),
            report: report_at.is_some_and(ready),
            clients: (first_client..fds.len()).map(ready).collect(),
        })
    }
}
