//! One simulated run: the world around the core, its events, and the invariants.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use crate::config::{Config, ServerUrl};
use crate::control::Request;
use crate::daemon::core::agent::Agent;
use crate::daemon::core::uploads::{UploadFailure, Uploads};
use crate::daemon::core::{Action, ClientId, Core, Reloaded, Signal};
use crate::engine::reboot::{CallState, Cause};
use crate::engine::Held;
use crate::fetch::worker::{Fetched, Taken};
use crate::fetch::{phone_file, FailureKind, FetchError, FetchOutcome, SITE_FILE};
use crate::format::End;
use crate::format::Kind;
use crate::phone::Phone;
use crate::storage::memdisk::{MemDisk, Node, OpKind};
use crate::storage::Store;
use crate::supervisor::protocol::{FromSupervisor, LinkEvent};
use crate::testkit::{self, DAY};
use crate::time::{Mono, Stamp, UnixTime};
use nix::errno::Errno;

/// A bug the simulated executor plants on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plant {
    None,
    /// REBOOTs decided before the supervisor's words that arrived are read.
    NoDrain,
    /// REBOOTs sent while lines of the agent's wait unread on the link.
    IgnoreUnclear,
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The instant the simulated phones start at, near every license of the pool.
const START: UnixTime = crate::engine::clock::BUILD_TIME + 10 * DAY;
const GRACE: u64 = 30;
const REASK: u64 = 600;
const SEC: u64 = 1_000_000_000;
/// The steps a failure's report shows.
const TRACE_STEPS: usize = 120;

/// The licenses the simulated server posts, the same for every seed: signed once.
fn pool() -> &'static Vec<(&'static str, Vec<u8>)> {
    static POOL: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    POOL.get_or_init(|| {
        let t = START;
        let s = |kind, entries: &[testkit::E]| testkit::lic_file(kind, entries).0.into_bytes();
        let mut forged = s(Kind::Site, &[(1, t - DAY, None)]);
        if let Some(i) = forged.iter().position(|b| *b == b'=') {
            // A changed byte in the signed part: the signature no longer verifies.
            if let Some(b) = forged.get_mut(i.saturating_sub(3)) {
                *b = if *b == b'A' { b'B' } else { b'A' };
            }
        }
        let other_phone = testkit::file_with(
            Kind::Phone,
            "0004f2000002",
            vec![testkit::entry(
                (2, t - DAY, None),
                crate::format::Transaction::New,
                0,
            )],
        )
        .into_bytes();
        vec![
            (
                "site: usb-call-recording, ends in an hour",
                s(Kind::Site, &[(1, t - 10 * DAY, Some(t + 3_600))]),
            ),
            (
                "site: usb-call-recording, ends in a day",
                s(Kind::Site, &[(1, t - 10 * DAY, Some(t + DAY))]),
            ),
            (
                "site: renewal to 60 days",
                s(Kind::Site, &[(1, t - 10 * DAY, Some(t + 60 * DAY))]),
            ),
            (
                "site: renewal from the day's end",
                s(Kind::Site, &[(1, t + DAY, Some(t + 90 * DAY))]),
            ),
            ("site: never ends", s(Kind::Site, &[(1, t - DAY, None)])),
            (
                "site: two features, ends in 3 days",
                s(
                    Kind::Site,
                    &[
                        (1, t - DAY, Some(t + 3 * DAY)),
                        (3, t - DAY, Some(t + 3 * DAY)),
                    ],
                ),
            ),
            (
                "site: ended",
                s(Kind::Site, &[(1, t - 30 * DAY, Some(t - DAY))]),
            ),
            (
                "site: starts in 2 days",
                s(Kind::Site, &[(3, t + 2 * DAY, Some(t + 40 * DAY))]),
            ),
            (
                "phone: vqmon, ends in 2 hours",
                s(Kind::Phone, &[(2, t - DAY, Some(t + 7_200))]),
            ),
            (
                "phone: vqmon, ends in 10 days",
                s(Kind::Phone, &[(2, t - DAY, Some(t + 10 * DAY))]),
            ),
            (
                "phone: vqmon renewal to a year",
                s(Kind::Phone, &[(2, t - DAY, Some(t + 365 * DAY))]),
            ),
            ("phone: vqmon never", s(Kind::Phone, &[(2, t - DAY, None)])),
            (
                "phone: ends at 2038-01-19",
                s(Kind::Phone, &[(2, t - DAY, Some(2_147_483_647))]),
            ),
            (
                "phone: ends in 2106",
                s(Kind::Phone, &[(2, t - DAY, Some(4_294_967_294))]),
            ),
            ("forged site license", forged),
            ("another phone's license", other_phone),
            ("junk", b"<not a license/>".to_vec()),
        ]
    })
}

/// The simulation's configurations: a stagger window of a second, or of 20 minutes, or
/// 20 minutes with reboot windows in central European time (a gap of an hour and a
/// half each day, a deadline of two hours): parsed once, the text being the same for
/// every seed.
fn config(which: u64) -> &'static Config {
    static CONFIGS: OnceLock<[Config; 3]> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        [("1s", ""), ("20m", ""), ("20m", WINDOWS)].map(|(stagger, windows)| {
            let text = format!(
                "mac = \"{}\"\nsite_serial = \"{}\"\nkeyring = \"keyring\"\nstate_dir = \"state\"\n\
                 control_socket = \"control.sock\"\nfeatures_file = \"features\"\n\
                 supervisor_socket = \"sup.sock\"\nserver = \"http://sim/\"\n\
                 enabled_features = [\"vqmon\"]\n\
                 [timing]\nidle_grace = \"{GRACE}s\"\nreboot_reask = \"{REASK}s\"\nstagger_window = \"{stagger}\"\n{windows}",
                testkit::MAC,
                testkit::SITE
            );
            Config::parse(&text, std::path::Path::new("/sim/agent.toml"))
                .expect("the simulation's configuration")
        })
    });
    &configs[(which % 3) as usize]
}

/// Reboot windows for the simulation.
const WINDOWS: &str = "[reboot]\nwindows = [\"daily 00:00-12:00\", \"daily 13:30-23:59\"]\n\
                       timezone = \"CET-1CEST,M3.5.0,M10.5.0/3\"\ndeadline = \"2h\"\n";

/// The simulated server's URL, parsed once.
fn server() -> ServerUrl {
    static SERVER: OnceLock<ServerUrl> = OnceLock::new();
    SERVER
        .get_or_init(|| ServerUrl::test("http://sim/"))
        .clone()
}

/// What the server has at one name.
#[derive(Clone)]
enum Posted {
    Absent,
    License(usize),
    Failing,
}

/// The simulated supervisor.
struct Supervisor {
    /// Connected and greeted (the core told so).
    up: bool,
    /// A connection is being made: HELLO comes at this instant.
    hello_at: Option<u64>,
    /// The call state it last sent (the truth: a line may still be on its way).
    call: CallState,
    /// The call state of the last line the core read.
    read_call: CallState,
    /// Lines it sent, not yet read by the core: (when it sent them, the event).
    inbox: VecDeque<(u64, LinkEvent)>,
    /// When the core read the last `CALL-STATE idle` of an idle spell.
    idle_read_at: Option<u64>,
    /// Whether it reads what the agent writes; unread lines keep the link unclear.
    reading: bool,
    unread: u32,
    /// It reads again then (a supervisor stalls; it does not stop for ever).
    read_again_at: Option<u64>,
    /// REBOOTs of this connection not yet answered, by cause.
    outstanding: BTreeMap<Cause, u64>,
    /// The REBOOTs sent on this connection whose answer the core has not read, by id
    /// (an answer to another id, stray or late, is no answer to them).
    asked: BTreeMap<u64, Cause>,
    /// When the core read an OK for a cause, on this boot.
    ok_at: BTreeMap<Cause, u64>,
    /// Answers it will give: (when, id, accepted).
    answers: VecDeque<(u64, u64, bool)>,
    /// It accepted a REBOOT: the phone reboots then.
    reboot_at: Option<u64>,
}

impl Supervisor {
    fn new() -> Supervisor {
        Supervisor {
            up: false,
            hello_at: None,
            call: CallState::Idle,
            read_call: CallState::Idle,
            inbox: VecDeque::new(),
            idle_read_at: None,
            reading: true,
            unread: 0,
            read_again_at: None,
            outstanding: BTreeMap::new(),
            asked: BTreeMap::new(),
            ok_at: BTreeMap::new(),
            answers: VecDeque::new(),
            reboot_at: None,
        }
    }
}

/// A control client that asked, not answered yet.
struct Client {
    /// When it gives up and goes (the `license-agent check-sync` command waits
    /// `daemon_wait`); an answer the core has not given by then comes too late.
    gives_up_at: u64,
}

/// What the runs did, summed: so a search that never reaches a rule is seen.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) reboots_asked: u64,
    pub(crate) phone_reboots: u64,
    pub(crate) restarts: u64,
    pub(crate) reloads: u64,
    pub(crate) cycles: u64,
    pub(crate) requests: u64,
    pub(crate) clock_steps: u64,
    pub(crate) passes: u64,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Stats) {
        self.reboots_asked += o.reboots_asked;
        self.phone_reboots += o.phone_reboots;
        self.restarts += o.restarts;
        self.reloads += o.reloads;
        self.cycles += o.cycles;
        self.requests += o.requests;
        self.clock_steps += o.clock_steps;
        self.passes += o.passes;
    }
}

pub(crate) struct World {
    rng: Rng,
    plant: Plant,
    verbose: bool,
    /// What happened, for the report of a failure: the last steps (virtual monotonic
    /// time, wall clock, what).
    trace: VecDeque<(u64, UnixTime, String)>,
    /// Virtual monotonic time (ns) and the wall clock's offset from it (s).
    mono: u64,
    wall_offset: i64,
    /// The phone's flash: the store and the features file, in memory, failing on
    /// command.
    disk: MemDisk,
    /// The flash is read-only until then (remounted after errors).
    read_only_until: Option<u64>,
    config: &'static Config,
    boot: u64,
    core: Option<Core>,
    sup: Supervisor,
    posted: [Posted; 2],
    /// The cycle under way: (number, when it ends, files).
    fetch: Option<(u64, u64, Vec<String>)>,
    /// A cycle given up by a reload, still running.
    abandoned: Option<(u64, u64)>,
    upload: Option<u64>,
    clients: BTreeMap<ClientId, Client>,
    next_client: u64,
    /// The licenses the store held at the last look, by signed message.
    held: BTreeMap<Vec<u8>, Held>,
    /// Passes at the current instant (a busy loop makes many).
    passes_now: (u64, u32),
    wake_wall: Option<UnixTime>,
    wake_mono: Option<u64>,
    stats: Stats,
    /// The latest instant the licenses were judged at.
    latest_judged: Option<UnixTime>,
}

type Check = Result<(), String>;

impl World {
    fn new(seed: u64, plant: Plant, verbose: bool) -> World {
        let mut rng = Rng(seed);
        let config = config(rng.below(3));
        let posted = [
            if rng.chance(70) {
                Posted::License(rng.below(8) as usize)
            } else {
                Posted::Absent
            },
            if rng.chance(60) {
                Posted::License(8 + rng.below(4) as usize)
            } else {
                Posted::Absent
            },
        ];
        World {
            rng,
            plant,
            verbose,
            trace: VecDeque::with_capacity(TRACE_STEPS),
            mono: 1_000 * SEC,
            wall_offset: START - 1_000,
            disk: MemDisk::new(),
            read_only_until: None,
            config,
            boot: 1,
            core: None,
            sup: Supervisor::new(),
            posted,
            fetch: None,
            abandoned: None,
            upload: None,
            clients: BTreeMap::new(),
            next_client: 0,
            held: BTreeMap::new(),
            passes_now: (0, 0),
            wake_wall: None,
            wake_mono: None,
            stats: Stats::default(),
            latest_judged: None,
        }
    }

    fn wall(&self) -> UnixTime {
        i64::try_from(self.mono / SEC)
            .unwrap_or(i64::MAX)
            .saturating_add(self.wall_offset)
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            wall: self.wall(),
            mono: Mono::from_nanos(self.mono),
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        let text = what();
        if self.verbose {
            println!(
                "{:>12} ms {:>10}  {text}",
                self.mono / 1_000_000,
                self.wall()
            );
        }
        // The last steps are the ones a failure needs; a line is laid out only then.
        if self.trace.len() >= TRACE_STEPS {
            self.trace.pop_front();
        }
        self.trace.push_back((self.mono, self.wall(), text));
    }

    fn phone(&self) -> Phone {
        Phone::new(
            self.config.clone(),
            testkit::identity(),
            testkit::keyring().clone(),
        )
    }

    /// An agent and its uploads, on the store as it is on disk.
    fn setup(&mut self) -> (Agent, Uploads) {
        let phone = self.phone();
        let store = Store::open_on(
            Arc::new(self.disk.clone()),
            &phone.config.state_dir,
            &phone.keyring,
            &phone.identity,
            self.disk.writer_mode(),
            self.wall(),
        )
        .expect("the store opens (no read fails)");
        let jitter = self.rng.next();
        let t = &phone.config.timing;
        let uploads = Uploads::new(
            Ok(vec![server()]),
            phone.identity.mac,
            (t.retry_initial, t.retry_max),
            jitter,
        );
        let boot = format!("boot-{}", self.boot);
        let agent = Agent::new(phone, store, Ok(vec![server()]), jitter, Some(boot));
        (agent, uploads)
    }

    /// Starts the daemon (at a boot, or a restart within one).
    fn start_daemon(&mut self) -> Check {
        self.core = None;
        let (agent, uploads) = self.setup();
        // The store as read from disk: nothing the running agent held is lost.
        let judge_at = judged_at(&agent, self.wall());
        check_held(
            &mut self.held,
            &mut self.latest_judged,
            agent.store().held(),
            judge_at,
        )?;
        let mut core = Core::new(agent, uploads);
        self.new_link();
        self.fetch = None;
        self.abandoned = None;
        self.upload = None;
        self.clients.clear();
        core.start(self.stamp());
        self.core = Some(core);
        self.note(|| "daemon started".into());
        self.execute()?;
        self.pass()
    }

    fn core(&mut self) -> &mut Core {
        self.core.as_mut().expect("a daemon runs")
    }

    /// Does what the core asks, checking each action.
    fn execute(&mut self) -> Check {
        while let Some(action) = self.core().poll_action() {
            let text = brief(&action);
            self.note(|| format!("core: {text}"));
            match action {
                Action::StartFetch { number, files, .. } => {
                    self.stats.cycles += 1;
                    let wait = if self.rng.chance(20) {
                        // A server that stalls to the timeouts.
                        self.rng.below(60) * SEC
                    } else {
                        self.rng.below(2 * SEC)
                    };
                    self.fetch = Some((number, self.mono + wait, files));
                }
                Action::AbandonFetch { number } => {
                    if let Some((n, at, _)) = self.fetch.take() {
                        if n != number {
                            return Err(format!("cycle {number} given up, cycle {n} runs"));
                        }
                        self.abandoned = Some((n, at));
                    }
                }
                Action::Send(_) => {
                    if !self.sup.up {
                        return Err("a line sent to a supervisor not connected".into());
                    }
                    if !self.sup.reading {
                        self.sup.unread += 1;
                    }
                }
                Action::Reboot { id, cause } => self.check_reboot(id, cause)?,
                Action::Answer { client, .. } => match self.clients.remove(&client) {
                    Some(_) => {}
                    None => {
                        return Err(format!("client {client:?} answered twice, or never asked"))
                    }
                },
                Action::Upload { .. } => {
                    if self.upload.is_some() {
                        return Err("two uploads at once".into());
                    }
                    self.upload = Some(self.mono + self.rng.below(3 * SEC));
                }
                Action::Reload => {
                    let (agent, uploads) = self.setup();
                    self.new_link();
                    let stamp = self.stamp();
                    self.core()
                        .handle_reloaded(Ok(Reloaded { agent, uploads }), stamp);
                    if !self.core().uploads().uploading() {
                        self.upload = None;
                    }
                }
                Action::NotifyReady => {}
                Action::Exit(code) => {
                    return Err(format!("exit {code} without a stop asked"));
                }
            }
        }
        Ok(())
    }

    /// A REBOOT the core sent: the rules' promises, checked on the simulation's truth.
    fn check_reboot(&mut self, id: u64, cause: Cause) -> Check {
        self.note(|| format!("REBOOT {id} {cause}"));
        self.stats.reboots_asked += 1;
        if !self.sup.up {
            return Err(format!("REBOOT {id} {cause} on a link not up"));
        }
        // Lines cross on the wire: a CALL-STATE active still on its way when the REBOOT
        // leaves is the supervisor's to refuse (BUSY, below). What has arrived must
        // have been read, and say idle.
        let arrived = self.sup.inbox.iter().filter(|l| l.0 <= self.mono).count();
        if arrived > 0 {
            return Err(format!(
                "REBOOT {id} {cause} with {arrived} supervisor line(s) arrived and unread"
            ));
        }
        if self.sup.read_call != CallState::Idle {
            return Err(format!("REBOOT {id} {cause} while a call is on"));
        }
        match self.sup.idle_read_at {
            Some(at) if self.mono >= at + GRACE * SEC => {}
            Some(at) => {
                return Err(format!(
                    "REBOOT {id} {cause} {} ms into the idle grace of {GRACE} s",
                    (self.mono - at) / 1_000_000
                ))
            }
            None => return Err(format!("REBOOT {id} {cause} with no idle read")),
        }
        if self
            .sup
            .inbox
            .iter()
            .any(|l| matches!(l.1, LinkEvent::Down(_)))
        {
            // The supervisor restarted; the core has not read it yet: this REBOOT goes
            // to a connection that is gone, and no answer comes (the core asks again on
            // the next, once it reads the Down).
            self.note(|| format!("REBOOT {id} is lost with the old connection"));
            return Ok(());
        }
        if let Some(other) = self.sup.outstanding.get(&cause) {
            return Err(format!(
                "REBOOT {id} {cause} while REBOOT {other} for it is unanswered"
            ));
        }
        if let Some(ok) = self.sup.ok_at.get(&cause) {
            if self.mono < ok + REASK * SEC {
                return Err(format!(
                    "REBOOT {id} {cause} {} s after OK, before the re-ask",
                    (self.mono - ok) / SEC
                ));
            }
        }
        if !self.sup.reading || self.sup.unread > 0 {
            return Err(format!("REBOOT {id} {cause} queued behind unread lines"));
        }
        self.sup.outstanding.insert(cause, id);
        self.sup.asked.insert(id, cause);
        // Its answer: OK, BUSY, or none; BUSY whenever a call is on as it arrives.
        let roll = self.rng.below(10);
        let at = self.mono + self.rng.below(2 * SEC);
        if self.sup.call != CallState::Idle {
            self.sup.answers.push_back((at, id, false));
        } else if roll < 5 {
            self.sup.answers.push_back((at, id, true));
        } else if roll < 8 {
            self.sup.answers.push_back((at, id, false));
        }
        Ok(())
    }

    /// After every pass: the promises about the whole.
    fn check_pass(&mut self) -> Check {
        let stamp = self.stamp();
        let core = self.core.as_ref().expect("a daemon runs");
        // A cycle the core waits for is one the executor runs (a number given up and
        // reused would leave the core waiting for ever).
        let running = core.agent().running_cycle();
        if running != self.fetch.as_ref().map(|f| f.0) {
            return Err(format!(
                "the core waits for cycle {running:?}, the executor runs {:?}",
                self.fetch.as_ref().map(|f| f.0)
            ));
        }
        if core.agent().running_cycle().is_none() && self.fetch.is_none() {
            if let Some(client) = self.clients.keys().next() {
                return Err(format!(
                    "client {client:?} waits for a cycle, and none runs"
                ));
            }
        }
        for (id, client) in &self.clients {
            if core.held_until(*id).is_none() {
                return Err(format!("client {id:?} neither answered nor waiting"));
            }
            if client.gives_up_at <= self.mono {
                return Err(format!("client {id:?} gave up before it was answered"));
            }
        }
        if let Some(expected) = core.agent().settled_features(stamp) {
            let on_disk = match self.disk.get(std::path::Path::new("/sim/features")) {
                Some(Node::File(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            };
            if on_disk != expected {
                return Err(format!(
                    "the features file says\n{on_disk}but the rules say\n{expected}"
                ));
            }
        }
        let judge_at = judged_at(core.agent(), stamp.wall);
        let held = core.agent().store().held();
        check_held(&mut self.held, &mut self.latest_judged, held, judge_at)
    }

    /// One pass of the executor, in the real one's order.
    fn pass(&mut self) -> Check {
        self.stats.passes += 1;
        if self.passes_now.0 == self.mono {
            self.passes_now.1 += 1;
            if self.passes_now.1 > 200 {
                return Err("200 passes at one instant: a busy loop".into());
            }
        } else {
            self.passes_now = (self.mono, 1);
        }
        let stamp = self.stamp();
        self.core().handle_timeout(stamp);
        self.execute()?;
        if self.plant == Plant::NoDrain && self.core().link_up() {
            // Planted: the REBOOTs decided before what arrived is read.
            self.reboots_if_clear()?;
            self.deliver_supervisor()?;
        } else {
            // Everything that arrived is read first, then the REBOOTs on a clear link.
            self.deliver_supervisor()?;
            if self.core().link_up() {
                self.reboots_if_clear()?;
            }
        }
        let stamp = self.stamp();
        let wake = self.core().end_pass(stamp);
        self.execute()?;
        self.wake_wall = wake.wall;
        self.wake_mono = wake.mono.map(|m| m.as_nanos());
        if self.verbose {
            let mono = self.mono;
            self.note(|| {
                format!(
                    "wake at wall {:?}, mono {:?} (now {mono})",
                    wake.wall, wake.mono
                )
            });
        }
        self.check_pass()
    }

    /// The REBOOTs due, when nothing of the agent's waits unread on the link (else a
    /// look again shortly, as the executor does).
    fn reboots_if_clear(&mut self) -> Check {
        let clear = self.sup.reading && self.sup.unread == 0;
        if clear || self.plant == Plant::IgnoreUnclear {
            let stamp = self.stamp();
            self.core().handle_link_clear(stamp);
            self.execute()?;
        } else {
            let stamp = self.stamp();
            self.core().handle_link_not_clear(stamp);
        }
        Ok(())
    }

    /// Hands the core every supervisor line that has arrived, in order, each stamped
    /// as it is read.
    fn deliver_supervisor(&mut self) -> Check {
        while self.sup.inbox.front().is_some_and(|l| l.0 <= self.mono) {
            let Some((_, event)) = self.sup.inbox.pop_front() else {
                break;
            };
            match &event {
                LinkEvent::Message(FromSupervisor::CallState(CallState::Idle)) => {
                    self.sup.idle_read_at.get_or_insert(self.mono);
                    self.sup.read_call = CallState::Idle;
                }
                LinkEvent::Message(FromSupervisor::CallState(CallState::Active)) => {
                    self.sup.idle_read_at = None;
                    self.sup.read_call = CallState::Active;
                }
                LinkEvent::Message(FromSupervisor::Ok(id)) => {
                    if let Some(cause) = self.sup.asked.remove(id) {
                        self.sup.ok_at.insert(cause, self.mono);
                        self.sup.outstanding.retain(|_, v| v != id);
                    }
                }
                // An answer read ends the request it names, as the agent takes it.
                LinkEvent::Message(FromSupervisor::Busy(id))
                    if self.sup.asked.remove(id).is_some() =>
                {
                    self.sup.outstanding.retain(|_, v| v != id);
                }
                LinkEvent::Up { .. } => self.sup.up = true,
                LinkEvent::Down(_) => self.sup.up = false,
                _ => {}
            }
            let stamp = self.stamp();
            self.core().handle_supervisor(event, stamp);
            self.execute()?;
        }
        Ok(())
    }

    /// A new link (the daemon started, or reloaded): nothing on it yet, nothing asked
    /// on it, and the supervisor greets it within 50 ms.
    fn new_link(&mut self) {
        self.sup.up = false;
        self.sup.inbox.clear();
        self.sup.outstanding.clear();
        self.sup.asked.clear();
        self.sup.unread = 0;
        self.sup.hello_at = Some(self.mono + self.rng.below(50_000_000));
    }

    /// The supervisor sends a line (read by the core a little later).
    fn supervisor_says(&mut self, event: LinkEvent) {
        if !self.sup.up && !matches!(event, LinkEvent::Up { .. }) {
            return;
        }
        match &event {
            // The truth; what the core knows changes when it reads the line.
            LinkEvent::Message(FromSupervisor::CallState(state)) => self.sup.call = *state,
            LinkEvent::Message(FromSupervisor::Ok(id) | FromSupervisor::Busy(id)) => {
                let id = *id;
                self.sup.outstanding.retain(|_, v| *v != id);
            }
            _ => {}
        }
        // It arrives within 5 ms, read in the pass of the next whole second: so lines
        // often arrive with a timer of the rules (an idle grace ends on a whole second),
        // the moment a decision must read them first.
        let sent = self.mono + self.rng.below(5_000_000);
        let at = (sent.div_ceil(SEC) * SEC).max(self.sup.inbox.back().map_or(0, |l| l.0));
        self.note(|| format!("supervisor says {event:?}"));
        self.sup.inbox.push_back((at, event));
    }

    /// The earliest thing due inside the world, if any is due by `until`.
    fn next_internal(&self, until: u64) -> Option<u64> {
        let wall_due = self.wake_wall.map(|w| {
            let ahead = u64::try_from(w.saturating_sub(self.wall())).unwrap_or(0);
            // Due at the start of that wall second.
            self.mono - self.mono % SEC + ahead.saturating_mul(SEC)
        });
        [
            self.fetch.as_ref().map(|f| f.1),
            self.abandoned.map(|a| a.1),
            self.upload,
            self.sup.inbox.front().map(|l| l.0),
            self.sup.hello_at,
            self.sup.answers.front().map(|a| a.0),
            self.sup.reboot_at,
            self.sup.read_again_at,
            self.read_only_until,
            self.wake_mono,
            wall_due,
            self.clients.values().map(|c| c.gives_up_at).min(),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.max(self.mono))
        .filter(|t| *t <= until)
        .min()
    }

    /// Lets time run to `until`, doing everything due on the way, in order.
    fn run_to(&mut self, until: u64) -> Check {
        let mut steps = 0u32;
        while let Some(at) = self.next_internal(until) {
            steps += 1;
            if steps > 20_000 {
                return Err("20,000 internal events before the next outside one".into());
            }
            self.mono = at;
            self.internal()?;
        }
        self.mono = until;
        Ok(())
    }

    /// Everything due now inside the world.
    fn internal(&mut self) -> Check {
        let now = self.mono;
        if self.sup.reboot_at.is_some_and(|t| t <= now) {
            self.sup.reboot_at = None;
            return self.reboot();
        }
        if self.read_only_until.is_some_and(|t| t <= now) {
            self.read_only_until = None;
            self.disk.clear_faults();
            self.note(|| "the flash is writable again".into());
        }
        if self.sup.read_again_at.is_some_and(|t| t <= now) {
            self.sup.read_again_at = None;
            self.sup.reading = true;
            self.sup.unread = 0;
        }
        if self.sup.hello_at.is_some_and(|t| t <= now) {
            self.sup.hello_at = None;
            self.supervisor_says(LinkEvent::Up {
                version: "1".into(),
            });
            // The state of the phone comes right after HELLO.
            let (call, was_up) = (self.sup.call, self.sup.up);
            self.sup.up = true;
            self.supervisor_says(LinkEvent::Message(FromSupervisor::CallState(call)));
            // Up once the core reads HELLO (a Down may still be on its way before it).
            self.sup.up = was_up;
        }
        if self.sup.answers.front().is_some_and(|a| a.0 <= now) {
            if let Some((_, id, ok)) = self.sup.answers.pop_front() {
                if self.sup.up && self.sup.outstanding.values().any(|v| *v == id) {
                    if ok {
                        // Sometimes it says OK and never reboots.
                        if self.rng.chance(80) {
                            self.sup.reboot_at = Some(now + self.rng.below(20 * SEC));
                        }
                        self.supervisor_says(LinkEvent::Message(FromSupervisor::Ok(id)));
                    } else {
                        self.supervisor_says(LinkEvent::Message(FromSupervisor::Busy(id)));
                    }
                }
            }
        }
        if self.fetch.as_ref().is_some_and(|f| f.1 <= now) {
            if let Some((number, _, files)) = self.fetch.take() {
                let fetched = self.serve(&files);
                let stamp = self.stamp();
                self.note(|| format!("cycle {number} ends"));
                self.core().handle_fetch_done(number, fetched, stamp);
                self.execute()?;
            }
        }
        if self.abandoned.is_some_and(|a| a.1 <= now) {
            if let Some((number, _)) = self.abandoned.take() {
                let stamp = self.stamp();
                self.core().handle_fetch_done(number, Vec::new(), stamp);
                self.execute()?;
            }
        }
        if self.upload.is_some_and(|t| t <= now) {
            self.upload = None;
            let result = match self.rng.below(10) {
                0 => Err(UploadFailure::Server(fetch_error(
                    "http://sim/",
                    FailureKind::NoUploads,
                    "405",
                ))),
                1 | 2 => Err(UploadFailure::Server(fetch_error(
                    "http://sim/",
                    FailureKind::Connect,
                    "refused",
                ))),
                _ => Ok(Taken {
                    base: server(),
                    tried: None,
                }),
            };
            let stamp = self.stamp();
            self.core().handle_upload_done(result, stamp);
            self.execute()?;
        }
        let wall_due = self.wake_wall.is_some_and(|w| w <= self.wall());
        if wall_due {
            self.wake_wall = None;
            let stamp = self.stamp();
            self.core().handle_timer(stamp);
            self.execute()?;
        }
        self.pass()
    }

    /// The server's answer to a cycle, as it is now.
    fn serve(&mut self, files: &[String]) -> Vec<Fetched> {
        let phone = phone_file(testkit::identity().mac);
        files
            .iter()
            .map(|name| {
                let posted = if *name == SITE_FILE {
                    &self.posted[0]
                } else if *name == phone {
                    &self.posted[1]
                } else {
                    &Posted::Absent
                };
                let outcome = match posted {
                    Posted::Absent => FetchOutcome::Absent {
                        answer: "404".into(),
                    },
                    Posted::License(i) => FetchOutcome::Body {
                        bytes: pool()[*i].1.clone(),
                    },
                    Posted::Failing => FetchOutcome::Failed(fetch_error(
                        name.as_str(),
                        FailureKind::Timeout,
                        "stalled",
                    )),
                };
                Fetched {
                    name: name.clone(),
                    outcome,
                    server: Some(server()),
                }
            })
            .collect()
    }

    /// The phone reboots (the supervisor accepted a REBOOT): a new boot, the same store.
    fn reboot(&mut self) -> Check {
        self.note(|| "the phone reboots".into());
        self.stats.phone_reboots += 1;
        self.boot += 1;
        self.sup = Supervisor::new();
        // The wall clock survives a reboot (an RTC), the monotonic clock runs on.
        self.start_daemon()
    }

    /// One thing from outside.
    fn outside(&mut self) -> Check {
        let roll = self.rng.below(100);
        match roll {
            0..=17 => {
                let state = if self.sup.call == CallState::Idle {
                    CallState::Active
                } else {
                    CallState::Idle
                };
                self.supervisor_says(LinkEvent::Message(FromSupervisor::CallState(state)));
            }
            18..=21 => {
                // Garbage: the link reads a line it cannot parse as a call.
                self.supervisor_says(LinkEvent::Message(FromSupervisor::CallState(
                    CallState::Active,
                )));
                self.sup.call = CallState::Idle;
                self.supervisor_says(LinkEvent::Message(FromSupervisor::CallState(
                    CallState::Idle,
                )));
            }
            22..=23 => self.supervisor_says(LinkEvent::Message(FromSupervisor::CheckSync)),
            24 => {
                let id = self.rng.below(5);
                self.supervisor_says(LinkEvent::Message(FromSupervisor::Ok(id)));
            }
            // The supervisor restarts: the link goes down and comes back.
            25..=26 if self.sup.up => {
                self.supervisor_says(LinkEvent::Down("closed".into()));
                self.sup.outstanding.clear();
                self.sup.asked.clear();
                self.sup.hello_at = Some(self.mono + self.rng.below(3 * SEC));
            }
            27..=28 => {
                self.sup.reading = false;
                self.sup.read_again_at = Some(self.mono + self.rng.below(120 * SEC));
                self.note(|| "the supervisor stops reading for a while".into());
            }
            29..=40 => {
                let which = self.rng.below(2) as usize;
                let posted = match self.rng.below(10) {
                    0 => Posted::Absent,
                    1 => Posted::Failing,
                    _ => Posted::License(self.rng.below(pool().len() as u64) as usize),
                };
                let name = match &posted {
                    Posted::License(i) => pool()[*i].0,
                    Posted::Absent => "nothing",
                    Posted::Failing => "a failing server",
                };
                self.note(|| format!("the server posts {name} as file {which}"));
                self.posted[which] = posted;
            }
            41..=50 => self.request(Ok(Request::Status {}))?,
            51..=58 => self.request(Ok(Request::CheckSync {}))?,
            59..=61 => {
                let i = self.rng.below(pool().len() as u64) as usize;
                let license = hex::encode(&pool()[i].1);
                self.request(Ok(Request::Install {
                    file: "hand.cfg".into(),
                    license,
                }))?;
            }
            62 => self.request(Err("malformed request".into()))?,
            63..=67 => self.step_clock()?,
            68..=69 => {
                let stamp = self.stamp();
                self.note(|| "SIGHUP".into());
                self.stats.reloads += 1;
                self.core().handle_signal(Signal::Reload);
                let _ = stamp;
                self.execute()?;
            }
            70 => {
                self.note(|| "SIGTERM".into());
                self.stats.restarts += 1;
                // What the agent could not write is lost with the process: a REBOOT the
                // supervisor accepted may be asked again by the next one.
                let store = self.core().agent().store();
                if store.meta_unsaved() || store.write_failure().is_some() {
                    self.sup.ok_at.clear();
                }
                self.core().handle_signal(Signal::Stop(15));
                match self.core().poll_action() {
                    Some(Action::Exit(0)) => {}
                    other => return Err(format!("SIGTERM, and the first action is {other:?}")),
                }
                self.start_daemon()?;
            }
            71..=73 => {
                // Writes fail: a worn flash, a full one.
                let kind = match self.rng.below(5) {
                    0 => OpKind::Write,
                    1 => OpKind::Fsync,
                    2 => OpKind::Rename,
                    3 => OpKind::Remove,
                    _ => OpKind::MakeFolder,
                };
                let errno = *[Errno::EIO, Errno::ENOSPC, Errno::EROFS]
                    .get(self.rng.below(3) as usize)
                    .unwrap_or(&Errno::EIO);
                let count = 1 + self.rng.below(3) as u32;
                self.note(|| format!("the next {count} {kind:?} fail with {errno}"));
                self.disk.fail_next(kind, count, errno);
            }
            74 => {
                // Remounted read-only after errors, for a while.
                let until = self.mono + self.rng.below(600 * SEC);
                self.note(|| "the flash is read-only for a while".into());
                self.disk.decide(|op| {
                    let reads = matches!(op.kind, OpKind::Stat | OpKind::List | OpKind::Read);
                    (!reads).then_some(Errno::EROFS)
                });
                self.read_only_until = Some(until);
            }
            _ => {}
        }
        self.pass()
    }

    fn request(&mut self, request: Result<Request, String>) -> Check {
        self.stats.requests += 1;
        let client = ClientId(self.next_client);
        self.next_client += 1;
        let patience = crate::phone::daemon_wait(&self.core().agent().phone);
        let gives_up_at = self
            .mono
            .saturating_add(u64::try_from(patience.as_nanos()).unwrap_or(u64::MAX));
        self.clients.insert(client, Client { gives_up_at });
        self.note(|| format!("client {client:?} asks {request:?}"));
        let stamp = self.stamp();
        self.core().handle_request(client, request, stamp);
        self.execute()
    }

    fn step_clock(&mut self) -> Check {
        let wall = self.wall();
        let to = match self.rng.below(8) {
            0 => 0,
            1 => 2_147_483_648,
            2 => i64::from(u32::MAX),
            3 => wall - 2 * 3_600,
            4 => wall - 3 * DAY,
            5 => wall + 5 * DAY,
            6 => START + self.rng.below(100) as i64 * DAY,
            _ => wall + 40 * DAY,
        };
        self.note(|| format!("the wall clock is set to {to}"));
        self.stats.clock_steps += 1;
        self.wall_offset = to - i64::try_from(self.mono / SEC).unwrap_or(0);
        let stamp = self.stamp();
        self.core().handle_clock_step(stamp);
        self.execute()
    }

    fn report(&self, seed: u64, why: &str) -> String {
        let mut text = format!(
            "seed {seed} broke a rule: {why}\nreplay: SOURCE_DATE_EPOCH={} SIM_SEED={seed} cargo test --lib daemon::sim::replay -- --ignored --nocapture\nlast steps:\n",
            // The phones start 10 days after the build time: another build's runs differ.
            crate::engine::clock::BUILD_TIME
        );
        for (mono, wall, what) in &self.trace {
            let _ = writeln!(text, "  {:>12} ms {wall:>10}  {what}", mono / 1_000_000);
        }
        text
    }
}

/// Runs one seed. `Err`: which rule broke, and the trace.
pub(crate) fn run_seed(seed: u64, plant: Plant, verbose: bool) -> Result<Stats, String> {
    // The same few files are verified again and again: their verdicts are remembered.
    crate::trust::memo::enable();
    let mut world = World::new(seed, plant, verbose);
    let steps = 10 + world.rng.below(30);
    let result = (|| {
        world.start_daemon()?;
        for _ in 0..steps {
            let gap = match world.rng.below(10) {
                0..=4 => world.rng.below(2 * SEC),
                5..=7 => world.rng.below(120 * SEC),
                8 => world.rng.below(3_600 * SEC),
                // Days pass: ends, renewal windows, polls.
                _ => world.rng.below(DAY as u64 * SEC),
            };
            let until = world.mono + gap;
            world.run_to(until)?;
            world.outside()?;
        }
        let until = world.mono + 3_600 * SEC;
        world.run_to(until)
    })();
    result
        .map(|()| world.stats)
        .map_err(|why| world.report(seed, &why))
}

/// Every license held at the last look (`last`) is still held in `now`, or the rules
/// dropped it at `at`: it ended, or a license of its kind that outlasts it has started,
/// or four of its kind outlast it. `last` becomes `now`.
fn check_held(
    last: &mut BTreeMap<Vec<u8>, Held>,
    latest_judged: &mut Option<UnixTime>,
    now: &[Held],
    at: Option<UnixTime>,
) -> Check {
    // A license dropped at an instant stays dropped when the clock is set back within
    // the tolerance: judged at the latest instant judged so far.
    *latest_judged = (*latest_judged).max(at);
    let at = *latest_judged;
    let is_held = |h: &Held| {
        now.iter()
            .any(|n| n.license.signed_message() == h.license.signed_message())
    };
    // Most passes change nothing: then there is nothing to check or to copy.
    let same = now.len() == last.len()
        && now
            .iter()
            .all(|h| last.get(h.license.signed_message()) == Some(h))
        && last.values().all(is_held);
    if same {
        return Ok(());
    }
    if let Some(at) = at {
        for lost in last.values().filter(|h| !is_held(h)) {
            if !dropped_by_rules(lost, now, at) {
                let (kind, serial) = (lost.license.kind(), lost.license.serial());
                return Err(format!(
                    "the {kind} license {serial} (received {}) was lost at {at}, and no rule dropped it",
                    lost.seq
                ));
            }
        }
    }
    *last = now
        .iter()
        .map(|h| (h.license.signed_message().to_vec(), h.clone()))
        .collect();
    Ok(())
}

/// The instant `agent` judges its licenses at when the wall clock says `wall` (its
/// snapshot's, without the evaluation).
fn judged_at(agent: &Agent, wall: UnixTime) -> Option<UnixTime> {
    crate::phone::read_clock(&agent.phone, agent.store().meta(), wall).judge_at
}

/// The last instant of a license's term (its entries' latest end), as the rules order
/// ends: "never" after every date.
fn last_end(held: &Held) -> u64 {
    held.license
        .features()
        .iter()
        .map(|e| match e.end {
            End::Never => u64::MAX,
            End::At(t) => u64::from(t),
        })
        .max()
        .unwrap_or(0)
}

fn first_start(held: &Held) -> i64 {
    held.license
        .features()
        .iter()
        .map(|e| i64::from(e.start))
        .min()
        .unwrap_or(0)
}

/// The rules' drops, written from `agent-rules.md` ("Which license of a kind is used"):
/// an Inactive license; one a license of its kind outlasts once that one has started
/// (a later one on a tie); beyond four of a kind, the shortest.
fn dropped_by_rules(lost: &Held, held: &[Held], at: UnixTime) -> bool {
    let end = last_end(lost);
    let inactive = end != u64::MAX && i64::try_from(end).is_ok_and(|e| e <= at);
    let kind = lost.license.kind();
    let outlasting: Vec<&Held> = held
        .iter()
        .filter(|h| h.license.kind() == kind)
        .filter(|h| (last_end(h), h.seq) > (end, lost.seq))
        .collect();
    let replaced = outlasting.iter().any(|h| first_start(h) <= at);
    inactive || replaced || outlasting.len() >= crate::engine::MAX_PER_KIND
}

fn fetch_error(url: &str, kind: FailureKind, detail: &str) -> FetchError {
    FetchError {
        url: url.to_string(),
        kind,
        detail: detail.to_string(),
    }
}

/// An action in a few words, for the trace.
fn brief(action: &Action) -> String {
    match action {
        Action::Answer { client, response } => format!(
            "answer {client:?}: ok {}{}",
            response.ok,
            response
                .check_sync
                .as_ref()
                .map(|c| format!(", check-sync enabled {:?}", c.enabled))
                .unwrap_or_default()
        ),
        Action::Upload { name, body } => format!("upload {name} ({} bytes)", body.len()),
        other => format!("{other:?}"),
    }
}
