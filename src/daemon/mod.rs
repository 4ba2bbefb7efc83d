//! `license-agent run`: what the phone firmware starts at boot.
//!
//! Start, load and re-verify the store, fetch both files, decide, publish; then sleep in
//! one `poll` with no timeout until something is due. No periodic tick: the only timer is
//! a `CLOCK_REALTIME` timerfd armed for the next instant that matters (a status change or
//! a retry), with `TFD_TIMER_CANCEL_ON_SET` so that a step of the wall clock (SNTP setting
//! it at boot, a hand correction) wakes it to re-decide at once. Signals arrive through a
//! signalfd: SIGTERM and SIGINT stop it cleanly, SIGHUP re-reads the configuration. The
//! control socket ([`crate::control`]) answers `status` and `check-sync`. The phone supervisor's
//! socket (`crate::supervisor::link`) is in the same `poll`: the agent greets it, tells
//! it the feature set after HELLO and on every change, and fetches when it says
//! CHECK-SYNC; a missing socket or dropped connection is retried with back-off.
//!
//! The test clock (a **test aid**): when `LICENSE_AGENT_TEST_NOW` is set, the daemon's
//! time starts there and runs on with the real clock, and the control socket accepts
//! `test-set-time`, so end-to-end tests cross expiries in seconds without touching the
//! machine's clock. Timers are armed on the real clock, shifted by the same offset.

pub(crate) mod agent;
pub(crate) mod notify;
pub(crate) mod publish;

use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::config;
use crate::control::{self, read_request, write_response, Request, Response, PERMISSION_DENIED};
use crate::fetch::Fetcher;
use crate::phone::{load_phone, parse_instant, Phone, TEST_NOW_VAR};
use crate::storage::WriterLock;
use crate::supervisor::link::{Event as LinkEvent, Link};
use crate::supervisor::protocol::{FromSupervisor, ToSupervisor};
use crate::time::{real_now, UnixTime};
use agent::{Agent, Source};

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

/// The daemon's clock: the wall clock, or (test aid) the wall clock shifted.
pub(crate) struct DaemonClock {
    offset: i64,
    test: bool,
}

impl DaemonClock {
    /// The wall clock, or the test clock when [`TEST_NOW_VAR`] is set.
    pub(crate) fn from_env() -> Result<DaemonClock, DaemonError> {
        match std::env::var(TEST_NOW_VAR) {
            Ok(text) => {
                let start = parse_instant(&text)
                    .map_err(|e| DaemonError(format!("{TEST_NOW_VAR}: {e}")))?;
                log::warn!("TEST CLOCK in use ({TEST_NOW_VAR}): time is not the machine's");
                Ok(DaemonClock {
                    offset: start - real_now(),
                    test: true,
                })
            }
            Err(_) => Ok(DaemonClock {
                offset: 0,
                test: false,
            }),
        }
    }

    pub(crate) fn now(&self) -> UnixTime {
        real_now().saturating_add(self.offset)
    }

    fn set(&mut self, t: UnixTime) {
        self.offset = t - real_now();
    }

    /// The real-clock instant at which the daemon's clock reads `t`.
    fn to_real(&self, t: UnixTime) -> UnixTime {
        t.saturating_sub(self.offset)
    }
}

/// The provisioning server of a phone, or why there is none.
fn source_for(phone: &Phone) -> Result<Box<dyn Source>, String> {
    let server = phone
        .config
        .server
        .as_deref()
        .ok_or_else(|| "no provisioning server configured (server =)".to_string())?;
    Fetcher::new(server, &phone.config.fetch, phone.identity.mac)
        .map(|f| Box::new(f) as Box<dyn Source>)
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
    let lock = WriterLock::reuse_or_acquire(held, &phone.config.state_dir, LOCK_WAIT)
        .map_err(|e| DaemonError(e.to_string()))?;
    let source = source_for(&phone);
    if let Err(why) = &source {
        log::warn!("{why}");
    }
    Agent::start(phone, lock, source, clock.now(), jitter_seed(), boot_id())
        .map_err(|e| DaemonError(e.to_string()))
}

/// Where Linux tells one boot from the next.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's id (a UUID), if the kernel says.
fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string(BOOT_ID).ok()?;
    let id = text.trim();
    let plain =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    plain.then(|| id.to_string())
}

/// Binds the control socket, mode 0600. A live socket means another daemon runs.
fn bind_control(path: &Path) -> Result<UnixListener, DaemonError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(DaemonError(format!(
                "another daemon answers at {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| DaemonError(format!("cannot remove stale {}: {e}", path.display())))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| DaemonError(format!("cannot create {}: {e}", dir.display())))?;
    }
    // No window in which others could connect: the umask makes it 0600 from the start.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener =
        bound.map_err(|e| DaemonError(format!("cannot listen on {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| DaemonError(format!("cannot set the mode of {}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| DaemonError(format!("control socket: {e}")))?;
    Ok(listener)
}

/// Arms the timer for real instant `at` (absolute, cancelled by a clock step).
fn arm(timer: &TimerFd, at: Option<UnixTime>) -> Result<(), DaemonError> {
    // time_t is 32 bits on armv7 glibc: clamp, and never 0 (0 disarms).
    #[allow(clippy::unnecessary_cast)] // time_t is i32 on armv7, i64 on x86_64
    let max = i64::from(i32::MAX).max(nix::libc::time_t::MAX as i64);
    let secs = at.unwrap_or(max).clamp(1, max);
    timer
        .set(
            Expiration::OneShot(TimeSpec::new(secs as nix::libc::time_t, 0)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
        )
        .map_err(err("arming the timer"))
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

/// Whether a peer may use the control socket: root, or the daemon's own user.
fn peer_allowed(stream: &UnixStream) -> bool {
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
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

    let mut clock = DaemonClock::from_env()?;
    let mut agent = start(config_path, &clock, None)?;
    let mut socket_path: PathBuf = agent.phone.config.control_socket.clone();
    let mut listener = bind_control(&socket_path)?;
    log::info!(
        "license-agent {} started for MAC {}; control socket {}",
        crate::VERSION,
        agent.phone.identity.mac,
        socket_path.display()
    );
    // The boot cycle fetches two files, each within the total timeout.
    let fetch_bound = agent.phone.config.fetch.total_timeout.0;
    notify::starting_within(Duration::from_secs(
        fetch_bound.saturating_mul(2).saturating_add(30),
    ));
    let report = agent.cycle(clock.now());
    log_cycle("boot", &report);
    // The boot set is published (or the fetch gave up): what the phone application,
    // ordered after this service, must see when it starts.
    notify::ready();
    let mut supervisor = Supervisor::new(&agent);

    let code = loop {
        supervisor.connect_if_due(&mut agent, &clock);
        supervisor.sync_features(&mut agent, &clock);
        supervisor.ask_reboots(&mut agent, &clock);
        let wake = agent.next_wake(clock.now()).map(|w| clock.to_real(w));
        let attempt = supervisor.link.as_ref().and_then(Link::next_attempt);
        arm(&timer, [wake, attempt].into_iter().flatten().min())?;
        let link_fd = supervisor.link.as_ref().and_then(Link::fd);
        let mut fds = vec![
            PollFd::new(timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(fd) = link_fd {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => break Err(DaemonError(format!("poll: {e}"))),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (timer_ready, signal_ready, socket_ready, link_ready) =
            (ready(0), ready(1), ready(2), ready(3));
        drop(fds);
        if link_ready {
            supervisor.read(&mut agent, &clock);
        }
        if timer_ready {
            match read_timer(&timer) {
                TimerEvent::Expired => agent.wake(clock.now()),
                TimerEvent::ClockStepped => {
                    log::info!("the wall clock was set: deciding again");
                    agent.wake(clock.now());
                }
                TimerEvent::Nothing => {}
            }
        }
        if signal_ready {
            match signals.read_signal() {
                Ok(Some(info)) if info.ssi_signo == Signal::SIGHUP as u32 => {
                    log::info!("SIGHUP: reading the configuration again");
                    match start(config_path, &clock, agent.store().lock()) {
                        Ok(new_agent) => {
                            agent = new_agent;
                            supervisor = Supervisor::new(&agent);
                            if agent.phone.config.control_socket != socket_path {
                                let _ = std::fs::remove_file(&socket_path);
                                socket_path = agent.phone.config.control_socket.clone();
                                listener = bind_control(&socket_path)?;
                            }
                            agent.decide(clock.now());
                        }
                        Err(e) => log::error!("configuration not reloaded, the old one stays: {e}"),
                    }
                }
                Ok(Some(info)) => {
                    log::info!("signal {}: stopping", info.ssi_signo);
                    break Ok(0);
                }
                Ok(None) | Err(_) => {}
            }
        }
        if socket_ready {
            serve_clients(&listener, &mut agent, &mut clock);
        }
    };
    let _ = std::fs::remove_file(&socket_path);
    code
}

/// The daemon's side of the phone supervisor: the link, and what it was last told.
struct Supervisor {
    /// `None` on a board without supervisor.
    link: Option<Link>,
    /// The feature set last sent with FEATURES on this connection.
    sent: Option<Vec<String>>,
}

impl Supervisor {
    fn new(agent: &Agent) -> Supervisor {
        let link = match &agent.phone.config.supervisor {
            config::Supervisor::Socket(path) => Some(Link::new(path.clone(), jitter_seed())),
            config::Supervisor::None => None,
        };
        Supervisor { link, sent: None }
    }

    fn connect_if_due(&mut self, agent: &mut Agent, clock: &DaemonClock) {
        let event = self
            .link
            .as_mut()
            .and_then(|l| l.connect_if_due(real_now()));
        if let Some(event) = event {
            self.handle(event, agent, clock);
        }
    }

    fn read(&mut self, agent: &mut Agent, clock: &DaemonClock) {
        let events = self
            .link
            .as_mut()
            .map(|l| l.read(real_now()))
            .unwrap_or_default();
        for event in events {
            self.handle(event, agent, clock);
        }
    }

    fn handle(&mut self, event: LinkEvent, agent: &mut Agent, clock: &DaemonClock) {
        let now = clock.now();
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
                let report = agent.cycle(now);
                log_cycle("check-sync from the supervisor", &report);
            }
            LinkEvent::Message(FromSupervisor::CallState(state)) => {
                log::info!("supervisor: call {state}");
                agent.call_state(state, now);
            }
            LinkEvent::Message(FromSupervisor::Ok(id)) => agent.reboot_answer(id, true, now),
            LinkEvent::Message(FromSupervisor::Busy(id)) => agent.reboot_answer(id, false, now),
            LinkEvent::Message(other) => log::info!("supervisor: {}", other.to_line().trim_end()),
        }
        self.sync_features(agent, clock);
    }

    /// Sends the REBOOT requests the reboot rules want now (after FEATURES, so the
    /// supervisor knows the set the reboot applies).
    fn ask_reboots(&mut self, agent: &mut Agent, clock: &DaemonClock) {
        for (id, cause) in agent.reboot_actions(clock.now()) {
            let Some(link) = self.link.as_mut() else {
                break;
            };
            log::info!("asking the supervisor for a reboot: REBOOT {id} {cause}");
            if let Some(LinkEvent::Down(why)) =
                link.send(&ToSupervisor::Reboot { id, cause }, real_now())
            {
                self.handle(LinkEvent::Down(why), agent, clock);
            }
        }
    }

    /// Sends FEATURES after HELLO and whenever the enabled set changed.
    fn sync_features(&mut self, agent: &mut Agent, clock: &DaemonClock) {
        let Some(link) = self.link.as_mut().filter(|l| l.is_up()) else {
            return;
        };
        let names = agent.enabled_names(clock.now());
        if self.sent.as_ref() == Some(&names) {
            return;
        }
        match link.send(&ToSupervisor::Features(names.clone()), real_now()) {
            None => self.sent = Some(names),
            Some(LinkEvent::Down(why)) => {
                log::info!("supervisor: {why}");
                agent.supervisor_link(false, format!("not connected: {why}"));
            }
            Some(_) => {}
        }
    }
}

fn log_cycle(what: &str, report: &control::CheckSyncJson) {
    for f in &report.files {
        log::info!("{what}: {} {}: {}", f.file, f.outcome, f.detail);
    }
    for c in &report.changes {
        log::info!("{what}: {c}");
    }
}

/// Answers every waiting client, one request each.
fn serve_clients(listener: &UnixListener, agent: &mut Agent, clock: &mut DaemonClock) {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                log::warn!("control socket: {e}");
                return;
            }
        };
        // A slow or silent client is cut off; it never holds the daemon for long.
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let response = if !peer_allowed(&stream) {
            log::warn!("control socket: a peer of another user was refused");
            Response::error(PERMISSION_DENIED)
        } else {
            match read_request(&mut stream) {
                Ok(request) => answer(request, agent, clock),
                Err(e) => Response::error(e),
            }
        };
        let _ = write_response(&mut stream, &response);
        // Closing with unread input would reset the connection before the client reads
        // the answer: half-close, then drain what is left (bounded, and under the read
        // timeout).
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(
            &mut std::io::Read::take(&mut stream, 1 << 16),
            &mut std::io::sink(),
        );
    }
}

fn answer(request: Request, agent: &mut Agent, clock: &mut DaemonClock) -> Response {
    match request {
        Request::Status {} => Response {
            ok: true,
            status: Some(agent.status(clock.now())),
            ..Response::default()
        },
        Request::CheckSync {} => {
            let report = agent.cycle(clock.now());
            log_cycle("check-sync", &report);
            Response {
                ok: true,
                check_sync: Some(report),
                ..Response::default()
            }
        }
        Request::Install { file, license } => {
            let Ok(bytes) = hex::decode(&license) else {
                return Response::error("malformed request: license: not hex digits");
            };
            let done = agent.install(&bytes, &file, clock.now());
            Response {
                ok: true,
                status: Some(agent.status(clock.now())),
                install: Some(done.into()),
                ..Response::default()
            }
        }
        Request::TestSetTime { now } if clock.test => {
            clock.set(now);
            agent.wake(clock.now());
            Response {
                ok: true,
                status: Some(agent.status(clock.now())),
                ..Response::default()
            }
        }
        Request::TestSetTime { .. } => Response::error(format!(
            "test-set-time needs the test clock ({TEST_NOW_VAR})"
        )),
    }
}
