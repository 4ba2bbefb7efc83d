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
//! The test clock (a **test aid**): when `LICENSE_AGENT_TEST_NOW` is set, the daemon's
//! wall clock starts there and runs on with the real clock, and the control socket
//! accepts `test-set-time`, so end-to-end tests cross expiries in seconds without
//! touching the machine's clock. Setting it forward is time passing (the idle grace and
//! the stagger delay can be crossed too); setting it back never shortens a wait (see
//! [`DaemonClock::stamp`]). Timers are armed on the real clocks, shifted by the same
//! offsets.

pub(crate) mod agent;
mod clients;
mod control_socket;
pub(crate) mod notify;
pub(crate) mod publish;
mod reporting;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::config;
use crate::control::{CheckSyncJson, Request, Response};
use crate::engine::clock::ClockVerdict;
use crate::fetch::worker::InFlight;
use crate::fetch::{Provisioning, Server};
use crate::phone::{load_phone, parse_instant, Phone, TEST_NOW_VAR};
use crate::storage::WriterLock;
use crate::supervisor::link::{Event as LinkEvent, Link};
use crate::supervisor::protocol::{FromSupervisor, ToSupervisor};
use crate::time::{real_now, secs_i64, Mono, Stamp, UnixTime};
use agent::{Agent, FetchStart, Snapshot};
use clients::{ClientId, Clients};
use control_socket::ControlSocket;
use reporting::Reporter;

/// Why the daemon could not run.
#[derive(Debug)]
pub(crate) struct DaemonError(pub(crate) String);

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: &str) -> impl FnOnce(Errno) -> DaemonError + '_ {
    move |e| DaemonError(format!("{what}: {e}"))
}

/// The daemon's clocks: the wall clock and the monotonic one, or (test aid) the test
/// clock.
pub(crate) struct DaemonClock {
    /// Added to the real wall clock (test clock only).
    offset: i64,
    /// The test clock's last monotonic reading: it never goes back.
    last_mono: std::cell::Cell<Mono>,
    /// The machine's monotonic clock at that reading.
    last_real: std::cell::Cell<Option<Mono>>,
    test: bool,
}

impl DaemonClock {
    /// The real clocks, or the test clock when [`TEST_NOW_VAR`] is set.
    pub(crate) fn from_env() -> Result<DaemonClock, DaemonError> {
        let real = DaemonClock {
            offset: 0,
            last_mono: std::cell::Cell::new(Mono::ZERO),
            last_real: std::cell::Cell::new(None),
            test: false,
        };
        match std::env::var(TEST_NOW_VAR) {
            Ok(text) => {
                let start = parse_instant(&text)
                    .map_err(|e| DaemonError(format!("{TEST_NOW_VAR}: {e}")))?;
                log::warn!("TEST CLOCK in use ({TEST_NOW_VAR}): time is not the machine's");
                Ok(DaemonClock {
                    offset: start.saturating_sub(real_now()),
                    test: true,
                    ..real
                })
            }
            Err(_) => Ok(real),
        }
    }

    /// Both clocks, read now. On the test clock the monotonic clock is the test wall
    /// clock in nanoseconds, running on with the machine's monotonic clock while the
    /// test sets the wall clock back: so it is the same for every agent started on that
    /// test clock (a restart within a "boot" keeps its deadlines), setting the time
    /// forward is time passing (the idle grace and the stagger delay can be crossed),
    /// setting it back never makes a wait shorter, and real time always passes.
    pub(crate) fn stamp(&self) -> Stamp {
        if !self.test {
            return Stamp {
                wall: real_now(),
                mono: Mono::now(),
            };
        }
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let wall = secs_i64(real.as_secs()).saturating_add(self.offset);
        let nanos = u64::try_from(wall)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(real.subsec_nanos()));
        // Real time passing always moves it on (held alone, it stood still after the
        // test set the clock far ahead and back: no grace ever ended again).
        let real_mono = Mono::now();
        let ran_on = match self.last_real.get() {
            Some(last) => self.last_mono.get().plus(real_mono.since(last)),
            None => Mono::ZERO,
        };
        let mono = ran_on.max(Mono::from_nanos(nanos));
        self.last_mono.set(mono);
        self.last_real.set(Some(real_mono));
        Stamp { wall, mono }
    }

    /// Test aid: the wall clock reads `t` from now on.
    fn set(&mut self, t: UnixTime) {
        self.offset = t.saturating_sub(real_now());
    }

    /// The real wall-clock instant at which the daemon's wall clock reads `t`.
    fn to_real(&self, t: UnixTime) -> UnixTime {
        t.saturating_sub(self.offset)
    }
}

/// The provisioning server of a phone, or why there is none.
fn server_for(phone: &Phone) -> Result<Arc<dyn Server>, String> {
    Provisioning::new(
        &phone.config.servers,
        &phone.config.fetch,
        phone.identity.mac,
    )
    .map(|p| Arc::new(p) as Arc<dyn Server>)
    .map_err(|e| e.to_string())
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

/// Starts the agent for the configuration at `config_path`. `held` is the writer lock of
/// the agent it replaces (a reloaded configuration), kept when the state folder is the
/// same.
pub(crate) fn start(
    config_path: &Path,
    clock: &DaemonClock,
    held: Option<&Arc<WriterLock>>,
) -> Result<Agent, DaemonError> {
    let phone = load_phone(config_path).map_err(|e| DaemonError(e.to_string()))?;
    // A reload (the loop running) never waits: another state folder whose lock is
    // taken keeps the old configuration.
    let wait = if held.is_some() {
        Duration::ZERO
    } else {
        LOCK_WAIT
    };
    let lock = WriterLock::reuse_or_acquire(held, &phone.config.state_dir, wait)
        .map_err(|e| DaemonError(e.to_string()))?;
    let server = server_for(&phone);
    if let Err(why) = &server {
        log::warn!("{why}");
    }
    Agent::start(
        phone,
        lock,
        server,
        clock.stamp().wall,
        jitter_seed(),
        boot_id(),
    )
    .map_err(|e| DaemonError(e.to_string()))
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

/// Arms the timer for real instant `at` (absolute, cancelled by a clock step).
fn arm(timer: &TimerFd, at: Option<UnixTime>) -> Result<Armed, DaemonError> {
    // Never 0 (0 disarms); nothing to wait for is the end of the 64-bit range.
    let secs = at.unwrap_or(i64::MAX).max(1);
    let flags = TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET;
    match timerfd_settime_abs(timer, secs, flags) {
        Ok(()) => Ok(Armed::Yes),
        // The clock was set since the timer was last read: the kernel refuses to arm it
        // until that is read (found on the emulated phone, SNTP setting the clock while
        // the loop was busy: the daemon used to exit here).
        Err(Errno::ECANCELED) => {
            let _ = read_timer(timer);
            Ok(Armed::ClockStepped)
        }
        Err(e) => Err(err("arming the timer")(e)),
    }
}

/// What arming the timer found.
#[derive(Debug, PartialEq, Eq)]
enum Armed {
    Yes,
    /// Not armed: the wall clock was set meanwhile (now read from the timer).
    ClockStepped,
}

/// Arms `timer` for the wall-clock instant `secs`, where `time_t` is 64 bits.
#[cfg(not(all(target_arch = "arm", target_env = "gnu")))]
fn timerfd_settime_abs(timer: &TimerFd, secs: i64, flags: TimerSetTimeFlags) -> nix::Result<()> {
    use nix::sys::{time::TimeSpec, timerfd::Expiration};
    #[allow(clippy::unnecessary_cast)] // time_t is i64 on every target but 32-bit ARM
    let secs = secs.min(nix::libc::time_t::MAX as i64) as nix::libc::time_t;
    timer.set(Expiration::OneShot(TimeSpec::new(secs, 0)), flags)
}

/// Arms `timer` for the wall-clock instant `secs` on 32-bit ARM, whose glibc `time_t`
/// (and so nix's) is 32 bits: an instant past 2038-01-19 would be clamped into the
/// past and the timer would fire at once, for ever (a busy loop, found on the emulated
/// phone). The kernel's `timerfd_settime64` takes 64-bit seconds.
#[cfg(all(target_arch = "arm", target_env = "gnu"))]
fn timerfd_settime_abs(timer: &TimerFd, secs: i64, flags: TimerSetTimeFlags) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    /// `struct __kernel_timespec`: 64-bit seconds and nanoseconds.
    #[repr(C)]
    struct KernelTimespec {
        sec: i64,
        nsec: i64,
    }
    /// `struct __kernel_itimerspec`.
    #[repr(C)]
    struct KernelItimerspec {
        interval: KernelTimespec,
        value: KernelTimespec,
    }
    /// `__NR_timerfd_settime64` on ARM EABI (Linux 5.1 and later).
    const SYS_TIMERFD_SETTIME64: nix::libc::c_long = 411;
    let spec = KernelItimerspec {
        interval: KernelTimespec { sec: 0, nsec: 0 },
        value: KernelTimespec { sec: secs, nsec: 0 },
    };
    // SAFETY: the syscall reads one `__kernel_itimerspec` from `spec`, which lives
    // across the call, and writes nothing (the old value pointer is null).
    let rc = unsafe {
        nix::libc::syscall(
            SYS_TIMERFD_SETTIME64,
            timer.as_fd().as_raw_fd(),
            flags.bits(),
            &spec as *const KernelItimerspec,
            std::ptr::null_mut::<KernelItimerspec>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// What the timer said when it became readable.
enum TimerEvent {
    Expired,
    ClockStepped,
    Nothing,
}

fn read_timer(timer: &TimerFd) -> TimerEvent {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 8];
    match nix::unistd::read(timer.as_fd().as_raw_fd(), &mut buf) {
        Ok(_) => TimerEvent::Expired,
        Err(Errno::ECANCELED) => TimerEvent::ClockStepped,
        Err(_) => TimerEvent::Nothing,
    }
}

/// Blocks the signals the daemon reads from its signalfd. Called first thing by `run`
/// (before the configuration is read), so that a SIGHUP sent while the agent starts is
/// kept for the loop instead of killing it.
pub(crate) fn block_signals() -> Result<SigSet, DaemonError> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(err("blocking signals"))?;
    Ok(mask)
}

/// What the loop holds besides the agent.
struct Daemon {
    config_path: PathBuf,
    clock: DaemonClock,
    agent: Agent,
    supervisor: Supervisor,
    /// The status report's uploads.
    reporter: Reporter,
    /// The control socket (not bound while its path is taken: tried again later).
    control: ControlSocket,
    clients: Clients,
    /// Check-sync clients and the cycle whose end answers each.
    check_syncs: Vec<(ClientId, u64)>,
    /// The boot cycle, until it is over (then the set is published and READY=1 sent).
    boot_cycle: Option<u64>,
    /// Started before the clock was set: until this instant (or the clock is set) the
    /// boot fetch, the features file and READY=1 wait for it (`boot_clock_wait`).
    clock_wait: Option<Mono>,
    /// The wall-clock instant the timer is armed for (re-armed only on a change).
    armed: Option<Option<UnixTime>>,
    /// The cycle a reload gave up, until its thread ends (at most one at a time).
    abandoned: Option<InFlight>,
    /// A SIGHUP came while an abandoned cycle still ran: the reload waits for its end.
    reload_deferred: bool,
}

/// Runs the daemon until SIGTERM or SIGINT. Returns the exit status.
pub(crate) fn run(config_path: &Path) -> Result<i32, DaemonError> {
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
    let agent = start(config_path, &clock, None)?;
    // A control socket that cannot be bound does not stop the agent: tried again later.
    let control = ControlSocket::open(
        agent.phone.config.control_socket.clone(),
        jitter_seed(),
        Mono::now(),
    );
    log::info!(
        "license-agent {} started for MAC {}; control socket {}",
        crate::VERSION,
        agent.phone.identity.mac,
        control.path().display()
    );
    // The boot cycle may wait for the clock, then fetches two files, each within the
    // total timeout.
    let fetch_bound = agent.phone.config.fetch.total_timeout.0;
    let clock_bound = agent.phone.config.timing.boot_clock_wait.0;
    notify::starting_within(Duration::from_secs(
        fetch_bound
            .saturating_mul(2)
            .saturating_add(clock_bound)
            .saturating_add(30),
    ));
    let supervisor = Supervisor::new(&agent);
    let reporter = Reporter::new(&agent.phone.config, agent.phone.identity.mac, jitter_seed());
    let mut daemon = Daemon {
        config_path: config_path.to_path_buf(),
        clock,
        agent,
        supervisor,
        reporter,
        control,
        clients: Clients::default(),
        check_syncs: Vec::new(),
        boot_cycle: None,
        clock_wait: None,
        armed: None,
        abandoned: None,
        reload_deferred: false,
    };
    // The link first: HELLO and FEATURES (the stored set) go out before any fetch.
    daemon
        .supervisor
        .connect_if_due(&mut daemon.agent, &daemon.clock);
    let snap = daemon.snapshot();
    let wait = daemon.agent.phone.config.timing.boot_clock_wait.0;
    if snap.reading.verdict == ClockVerdict::Unsynced && wait > 0 {
        log::info!(
            "the clock is not set yet: the boot fetch and the feature set wait for it (at most {wait}s)"
        );
        daemon.agent.hold_publishing(true);
        daemon.clock_wait = Some(Mono::now().plus_secs(wait));
    } else {
        daemon.boot_fetch(&snap);
    }
    let code = daemon.run(&signals, &timer);
    daemon.control.close();
    code
}

/// `run --once`: one boot cycle, waited for, then the status; no loop.
pub(crate) fn once(
    config_path: &Path,
) -> Result<(CheckSyncJson, crate::status::StatusJson), DaemonError> {
    let clock = DaemonClock::from_env()?;
    let mut agent = start(config_path, &clock, None)?;
    let snap = agent.snapshot(clock.stamp());
    let report = match agent.fetch_now(&snap) {
        FetchStart::Done(report) => report,
        FetchStart::Pending(n) => loop {
            if let Some(fd) = agent.fetch_fd() {
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(DaemonError(format!("poll: {e}"))),
                }
            }
            let reports = agent.fetch_finished(clock.stamp());
            if let Some((_, report)) = reports.into_iter().find(|(m, _)| *m >= n) {
                break report;
            }
        },
    };
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
    fn snapshot(&self) -> Snapshot {
        self.agent.snapshot(self.clock.stamp())
    }

    /// The boot cycle: READY=1 once it is over (at once when nothing is fetched). A
    /// cycle already under way (a check-sync's, or a clock step's) is the boot cycle.
    fn boot_fetch(&mut self, snap: &Snapshot) {
        if let Some(n) = self.agent.running_cycle() {
            self.boot_cycle = Some(n);
            return;
        }
        match self.agent.fetch_now(snap) {
            FetchStart::Pending(n) => self.boot_cycle = Some(n),
            FetchStart::Done(report) => {
                log_cycle("boot", &report);
                notify::ready();
            }
        }
    }

    /// The wall clock was set: the boot cycle if it waited for the clock, else decide
    /// again (fetching first if due).
    fn clock_changed(&mut self) {
        if !self.end_clock_wait_if_due() {
            self.agent.wake(self.clock.stamp());
        }
    }

    /// Ends the wait for the clock at a start when the clock is set or the wait is
    /// over: the boot cycle runs (or, still without a clock, the stored set is
    /// published). Returns whether it ended.
    fn end_clock_wait_if_due(&mut self) -> bool {
        let Some(until) = self.clock_wait else {
            return false;
        };
        let snap = self.snapshot();
        let set = snap.reading.verdict != ClockVerdict::Unsynced;
        if !set && Mono::now() < until {
            return false;
        }
        if set {
            log::info!("the clock is set: the boot fetch");
        } else {
            log::warn!("the clock is still not set: publishing the stored feature set");
        }
        self.clock_wait = None;
        self.agent.hold_publishing(false);
        self.boot_fetch(&snap);
        true
    }

    fn run(&mut self, signals: &SignalFd, timer: &TimerFd) -> Result<i32, DaemonError> {
        loop {
            let timeout = self.settle(timer)?;
            let ready = match self.wait(signals, timer, timeout) {
                Ok(ready) => ready,
                Err(e) => return Err(DaemonError(format!("poll: {e}"))),
            };
            // Signals first: a stop is a stop, whatever else is pending.
            if ready.signals {
                match signals.read_signal() {
                    Ok(Some(info)) if info.ssi_signo == Signal::SIGHUP as u32 => self.reload(),
                    Ok(Some(info)) => {
                        log::info!("signal {}: stopping", info.ssi_signo);
                        return Ok(0);
                    }
                    Ok(None) | Err(_) => {}
                }
            }
            if ready.link {
                let _ = self.supervisor.read(&mut self.agent, &self.clock);
            }
            if ready.fetch {
                self.fetch_finished();
            }
            if ready.abandoned
                && self
                    .abandoned
                    .as_ref()
                    .is_some_and(|f| f.try_take().is_some())
            {
                self.abandoned = None;
                if std::mem::take(&mut self.reload_deferred) {
                    self.reload();
                }
            }
            if ready.report {
                self.reporter.finished(Mono::now());
            }
            if ready.timer {
                match read_timer(timer) {
                    TimerEvent::Expired => self.agent.wake(self.clock.stamp()),
                    TimerEvent::ClockStepped => {
                        log::info!("the wall clock was set: deciding again");
                        self.clock_changed();
                    }
                    TimerEvent::Nothing => {}
                }
                self.armed = None;
            }
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

    /// Does what is due by the clocks, then says how long `poll` may wait (and arms
    /// the wall-clock timer).
    fn settle(&mut self, timer: &TimerFd) -> Result<PollTimeout, DaemonError> {
        self.clients.expire(Mono::now());
        self.control.retry_if_due(Mono::now());
        self.end_clock_wait_if_due();
        self.agent.retry_writes_if_due(self.clock.stamp());
        self.supervisor.connect_if_due(&mut self.agent, &self.clock);
        let snap = self.snapshot();
        self.supervisor.sync_features(&mut self.agent, &snap);
        self.supervisor.ask_reboots(&mut self.agent, &self.clock);
        let snap = self.snapshot();
        self.report(&snap);
        let wake = self.agent.next_wake(&snap);
        let wall = wake.wall.map(|w| self.clock.to_real(w));
        if self.armed != Some(wall) {
            if arm(timer, wall)? == Armed::ClockStepped {
                log::info!("the wall clock was set: deciding again");
                self.armed = None;
                self.clock_changed();
                // Settle again at once: what the new time calls for, then the timer.
                return Ok(PollTimeout::ZERO);
            }
            self.armed = Some(wall);
        }
        // The reboot rules' waits are on the daemon's clock (the test clock's, in
        // tests); the link's back-off and the clients' deadlines on the machine's
        // monotonic clock, whatever a test does with time.
        let real = Mono::now();
        let ms = [
            wake.mono.map(|at| snap.stamp.mono.millis_until_ceil(at)),
            [
                self.supervisor.link.as_ref().and_then(Link::next_attempt),
                self.supervisor.recheck,
                self.reporter.next_attempt(),
                self.clients.next_deadline(real),
                self.control.next_attempt(),
                self.clock_wait,
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

    /// The status report as it stands, uploaded when it changed (once the boot cycle is
    /// over: a report before it would say what the phone no longer holds).
    fn report(&mut self, snap: &Snapshot) {
        if self.boot_cycle.is_some() || self.clock_wait.is_some() {
            return;
        }
        let made = crate::status::time(snap.stamp.wall);
        let report = crate::report::build(&self.agent.status(snap), made, crate::report::BOARD);
        self.reporter.offer(&report);
        self.reporter.start_if_due(Mono::now());
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
        let listener_at = self.control.listener().map(|l| {
            fds.push(PollFd::new(l.as_fd(), listen));
            fds.len() - 1
        });
        let link = self.supervisor.link.as_ref();
        let link_flags = match link.is_some_and(Link::wants_write) {
            true => PollFlags::POLLIN | PollFlags::POLLOUT,
            false => PollFlags::POLLIN,
        };
        let link_at = link.and_then(Link::fd).map(|fd| {
            fds.push(PollFd::new(fd, link_flags));
            fds.len() - 1
        });
        let fetch_at = self.agent.fetch_fd().map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let abandoned_at = self.abandoned.as_ref().map(|f| {
            fds.push(PollFd::new(f.fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let report_at = self.reporter.fd().map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let first_client = fds.len();
        for (fd, flags) in self.clients.poll_fds() {
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

    /// A fetch cycle ended: its report goes to the log and to those who waited for it.
    fn fetch_finished(&mut self) {
        let reports = self.agent.fetch_finished(self.clock.stamp());
        for (number, report) in reports {
            let what = if self.boot_cycle == Some(number) {
                "boot"
            } else {
                "fetch cycle"
            };
            log_cycle(what, &report);
            if self.boot_cycle == Some(number) {
                // The boot set is published (or the fetch gave up): what the phone
                // application, ordered after this service, must see when it starts.
                self.boot_cycle = None;
                notify::ready();
            }
            self.answer_check_syncs(number, &report);
        }
    }

    fn answer_check_syncs(&mut self, number: u64, report: &CheckSyncJson) {
        let now = Mono::now();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.check_syncs)
            .into_iter()
            .partition(|(_, n)| *n <= number);
        self.check_syncs = waiting;
        let response = Response {
            ok: true,
            check_sync: Some(report.clone()),
            ..Response::default()
        };
        for (id, _) in done {
            self.clients.answer(id, &response, now);
        }
    }

    /// SIGHUP: the configuration again. The running cycle (if any) is abandoned; those
    /// waiting for it get a new one. Nothing in the new configuration stops the daemon.
    /// At most one abandoned cycle runs at a time: a SIGHUP while one still does (and
    /// another cycle is under way) waits for its end; SIGHUPs meanwhile are one reload.
    fn reload(&mut self) {
        if self.abandoned.is_some() && self.agent.running_cycle().is_some() {
            if !self.reload_deferred {
                log::info!(
                    "SIGHUP: the configuration is read again once the fetch cycle given up by the last reload has ended"
                );
            }
            self.reload_deferred = true;
            return;
        }
        log::info!("SIGHUP: reading the configuration again");
        let new_agent = match start(&self.config_path, &self.clock, self.agent.store().lock()) {
            Ok(agent) => agent,
            Err(e) => {
                log::error!("configuration not reloaded, the old one stays: {e}");
                return;
            }
        };
        let boot_pending = self.agent.boot_cycle_pending();
        if let Some(flight) = self.agent.abandon_cycle() {
            self.abandoned = Some(flight);
        }
        self.agent = new_agent;
        // Still waiting for the clock at the start: the new agent waits too.
        self.agent.hold_publishing(self.clock_wait.is_some());
        self.supervisor = Supervisor::new(&self.agent);
        let mut reporter = Reporter::new(
            &self.agent.phone.config,
            self.agent.phone.identity.mac,
            jitter_seed(),
        );
        // An upload under way is abandoned, like a fetch cycle.
        reporter.continue_from(&mut self.reporter);
        self.reporter = reporter;
        self.armed = None;
        let wanted = self.agent.phone.config.control_socket.clone();
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
        if !boot_pending {
            self.agent.boot_cycle_done();
        }
        let waiting = self.boot_cycle.is_some() || !self.check_syncs.is_empty();
        if waiting || boot_pending {
            let snap = self.snapshot();
            match self.agent.fetch_now(&snap) {
                FetchStart::Pending(n) => {
                    self.boot_cycle = self.boot_cycle.map(|_| n);
                    for waiter in &mut self.check_syncs {
                        waiter.1 = n;
                    }
                }
                FetchStart::Done(report) => {
                    if self.boot_cycle.take().is_some() {
                        notify::ready();
                    }
                    self.answer_check_syncs(u64::MAX, &report);
                }
            }
        } else {
            self.agent.decide(self.clock.stamp());
        }
    }

    /// One request of a control client.
    fn handle_request(&mut self, id: ClientId, request: Result<Request, String>) {
        let stamp = self.clock.stamp();
        let response = match request {
            Err(e) => Response::error(e),
            Ok(Request::Status {}) => {
                let mut status = self.agent.status(&self.agent.snapshot(stamp));
                if let Some(daemon) = &mut status.daemon {
                    daemon.report = Some(self.reporter.words());
                }
                Response {
                    ok: true,
                    status: Some(status),
                    ..Response::default()
                }
            }
            // Its own budget: waiters hold no slot a `status` needs.
            Ok(Request::CheckSync {}) if self.clients.waiters() > clients::MAX_WAITERS => {
                Response::error(format!(
                    "{} check-syncs already wait for a fetch cycle; `status` shows how it went",
                    clients::MAX_WAITERS
                ))
            }
            Ok(Request::CheckSync {}) => {
                let snap = self.agent.snapshot(stamp);
                match self.agent.fetch_now(&snap) {
                    FetchStart::Pending(n) => {
                        // Answered when cycle n ends, or told it did not in time (a
                        // little before the client itself gives up).
                        let bound = crate::phone::daemon_wait(&self.agent.phone)
                            .saturating_sub(Duration::from_secs(5));
                        self.clients.wait_until(id, Mono::now().plus(bound));
                        self.check_syncs.push((id, n));
                        return;
                    }
                    FetchStart::Done(report) => {
                        log_cycle("check-sync", &report);
                        Response {
                            ok: true,
                            check_sync: Some(report),
                            ..Response::default()
                        }
                    }
                }
            }
            Ok(Request::Install { file, license }) => match hex::decode(&license) {
                Err(_) => Response::error("malformed request: license: not hex digits"),
                Ok(bytes) => {
                    let done = self.agent.install(&bytes, &file, stamp);
                    Response {
                        ok: true,
                        status: Some(self.agent.status(&self.snapshot())),
                        install: Some(done.into()),
                        ..Response::default()
                    }
                }
            },
            Ok(Request::TestSetTime { now }) if !(0..=i64::from(u32::MAX)).contains(&now) => {
                Response::error(format!(
                    "test-set-time: {now} is outside the instants a license can name (0 to {})",
                    u32::MAX
                ))
            }
            Ok(Request::TestSetTime { now }) if self.clock.test => {
                self.clock.set(now);
                self.armed = None;
                self.clock_changed();
                // Whatever the new time calls for is done before the answer.
                let _ = self.supervisor_pass();
                Response {
                    ok: true,
                    status: Some(self.agent.status(&self.snapshot())),
                    ..Response::default()
                }
            }
            Ok(Request::TestSetTime { .. }) => Response::error(format!(
                "test-set-time needs the test clock ({TEST_NOW_VAR})"
            )),
        };
        self.clients.answer(id, &response, Mono::now());
    }

    /// Tells the supervisor what changed and asks the reboots due (as `settle` does).
    fn supervisor_pass(&mut self) -> Option<()> {
        let snap = self.snapshot();
        self.supervisor.sync_features(&mut self.agent, &snap);
        self.supervisor.ask_reboots(&mut self.agent, &self.clock);
        Some(())
    }
}

/// The daemon's side of the phone supervisor: the link, and what it was last told.
struct Supervisor {
    /// `None` on a board without supervisor.
    link: Option<Link>,
    /// The feature set last sent with FEATURES on this connection.
    sent: Option<Vec<String>>,
    /// A reboot is due but the link was not clear: when to look again.
    recheck: Option<Mono>,
}

/// How soon a reboot held back by a link that is not clear is looked at again.
const LINK_RECHECK: Duration = Duration::from_millis(100);

impl Supervisor {
    fn new(agent: &Agent) -> Supervisor {
        let link = match &agent.phone.config.supervisor {
            config::Supervisor::Socket(path) => Some(Link::new(path.clone(), jitter_seed())),
            config::Supervisor::None => None,
        };
        Supervisor {
            link,
            sent: None,
            recheck: None,
        }
    }

    fn connect_if_due(&mut self, agent: &mut Agent, clock: &DaemonClock) {
        let event = self
            .link
            .as_mut()
            .and_then(|l| l.connect_if_due(Mono::now()));
        if let Some(event) = event {
            self.handle(event, agent, clock);
        }
    }

    /// Reads what the supervisor has sent (never waits; a bounded amount) and acts on
    /// it; writes what waits to be written. Returns whether everything sent so far was
    /// read.
    fn read(&mut self, agent: &mut Agent, clock: &DaemonClock) -> bool {
        let Some(link) = self.link.as_mut() else {
            return true;
        };
        let (events, drained) = link.read(Mono::now());
        let flushed = link.flush(Mono::now());
        for event in events.into_iter().chain(flushed) {
            self.handle(event, agent, clock);
        }
        drained
    }

    fn handle(&mut self, event: LinkEvent, agent: &mut Agent, clock: &DaemonClock) {
        // Each line is stamped when it is read.
        let now = clock.stamp();
        match event {
            LinkEvent::Up { version } => {
                log::info!("supervisor connected (supervisor/{version})");
                self.sent = None; // FEATURES follows HELLO
                agent.supervisor_link(true, format!("connected (supervisor/{version})"));
            }
            LinkEvent::Down(why) => {
                log::info!("supervisor: {why}");
                self.sent = None;
                agent.supervisor_link(false, format!("not connected: {why}"));
            }
            LinkEvent::Message(FromSupervisor::CheckSync) => {
                log::info!("supervisor: CHECK-SYNC");
                let snap = agent.snapshot(now);
                if let FetchStart::Done(report) = agent.fetch_now(&snap) {
                    log_cycle("check-sync from the supervisor", &report);
                }
            }
            LinkEvent::Message(FromSupervisor::CallState(state)) => {
                log::info!("supervisor: call {state}");
                agent.call_state(state, now);
            }
            LinkEvent::Message(FromSupervisor::Ok(id)) => agent.reboot_answer(id, true, now),
            LinkEvent::Message(FromSupervisor::Busy(id)) => agent.reboot_answer(id, false, now),
            LinkEvent::Message(other) => log::info!("supervisor: {}", other.to_line().trim_end()),
        }
        let snap = agent.snapshot(clock.stamp());
        self.sync_features(agent, &snap);
    }

    /// Sends the REBOOT requests the reboot rules want now, on fresh facts: everything
    /// the supervisor sent so far is read first, nothing of the agent's waits ahead on
    /// the link (a REBOOT is written at once or not at all, never queued behind lines
    /// the supervisor has not read: it could then arrive after a `CALL-STATE active` read
    /// meanwhile), and the decision is taken on the clocks read after that. (After
    /// FEATURES, so the supervisor knows the set the reboot applies.)
    fn ask_reboots(&mut self, agent: &mut Agent, clock: &DaemonClock) {
        self.recheck = None;
        if self.link.as_ref().is_none_or(|l| !l.is_up()) {
            return;
        }
        if !self.read(agent, clock) {
            // A supervisor still sending (a flood): not now; the loop comes back.
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if !link.clear() {
            // Not now: looked at again shortly, while a reboot is pending (a supervisor
            // that stops reading gets no REBOOT until it has read what went before).
            if agent.reboot_pending() {
                self.recheck = Some(Mono::now().plus(LINK_RECHECK));
            }
            return;
        }
        let snap = agent.snapshot(clock.stamp());
        for (id, cause) in agent.reboot_actions(&snap) {
            let Some(link) = self.link.as_mut() else {
                break;
            };
            let (sent, event) = link.send_now(&ToSupervisor::Reboot { id, cause }, Mono::now());
            if sent {
                log::info!("asked the supervisor for a reboot: REBOOT {id} {cause}");
            } else {
                log::info!("REBOOT {id} {cause} withdrawn: the link was not clear");
            }
            if let Some(event) = event {
                self.handle(event, agent, clock);
            }
        }
    }

    /// Sends FEATURES after HELLO and whenever the enabled set changed.
    fn sync_features(&mut self, agent: &mut Agent, snap: &Snapshot) {
        let Some(link) = self.link.as_mut().filter(|l| l.is_up()) else {
            return;
        };
        let names = agent.enabled_names(snap);
        if self.sent.as_ref() == Some(&names) {
            return;
        }
        match link.send(&ToSupervisor::Features(names.clone()), Mono::now()) {
            None => self.sent = Some(names),
            Some(LinkEvent::Down(why)) => {
                log::info!("supervisor: {why}");
                agent.supervisor_link(false, format!("not connected: {why}"));
            }
            Some(_) => {}
        }
    }
}

fn log_cycle(what: &str, report: &CheckSyncJson) {
    for f in &report.files {
        log::info!("{what}: {} {}: {}", f.file, f.outcome, f.detail);
    }
    for c in &report.changes {
        log::info!("{what}: {c}");
    }
}
