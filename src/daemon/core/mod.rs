//! The daemon's decisions, with no I/O: a state machine in the manner of quinn-proto's
//! `Connection`. Events go in (`handle_*`), each with the clocks read when it happened
//! (a [`Stamp`]); work comes out ([`Core::poll_action`]: start a fetch cycle, send to the
//! supervisor, answer a client, upload the report, read the configuration again, …); and
//! [`Core::end_pass`] says when the clocks alone next call for a decision. The executor
//! (`daemon`) does the work over the real sockets, threads and files, and a simulator
//! (`tests/sim`) does it on virtual time, so the rules are checked over millions of
//! interleavings without a socket.
//!
//! Nothing here waits, opens a socket or starts a thread (a test fails if `std::fs`,
//! `std::net`, `std::thread` or `nix` creeps in). The store is the exception that is not
//! one: its writes are local, bounded and atomic, and a license counts only once its
//! write is made, so the store is called in place, on the file system it was opened
//! on (the real one, or the simulator's).
//!
//! # A pass of the executor
//!
//! 1. Hand in what happened: [`Core::handle_signal`], [`Core::handle_supervisor`] (each
//!    line as read), [`Core::handle_fetch_done`], [`Core::handle_upload_done`],
//!    [`Core::handle_timer`], [`Core::handle_clock_step`], [`Core::handle_request`].
//! 2. [`Core::handle_timeout`]: what is due by the clocks (the end of the wait for the
//!    clock at a start, writes to try again).
//! 3. Do the actions ([`Core::poll_action`] until `None`).
//! 4. With the supervisor link up: read everything it sent (step 1 again), and only if
//!    nothing the agent wrote waits on the link, [`Core::handle_link_clear`]: the
//!    REBOOTs due, decided on the clocks read after that; do them.
//! 5. [`Core::end_pass`]: the report offered when it changed, and when to wake.

pub(crate) mod agent;
pub(crate) mod uploads;

use crate::fetch::worker::TrustAsk;
use std::collections::VecDeque;
use std::time::Duration;

use crate::control::{CheckSyncJson, Request, Response};
use crate::engine::clock::ClockVerdict;
use crate::engine::reboot::Cause;
use crate::fetch::worker::{Fetched, Taken};
use crate::supervisor::protocol::{FromSupervisor, LinkEvent, ToSupervisor};
use crate::time::{Mono, Stamp};
use agent::{Agent, FetchStart, Snapshot, Wake};
use uploads::{UploadFailure, Uploads};

/// A control client, as the executor names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ClientId(pub(crate) u64);

/// A signal the daemon obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGTERM, SIGINT: stop now.
    Stop(i32),
    /// SIGHUP: read the configuration again.
    Reload,
}

/// Work for the executor.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start fetch cycle `number`: the trust documents after the one held (with
    /// `trust`), then `files` in order, from the provisioning server, off the loop;
    /// [`Core::handle_fetch_done`] (or `handle_fetch_not_started`) when it ends.
    StartFetch {
        number: u64,
        trust: Option<TrustAsk>,
        files: Vec<String>,
    },
    /// Cycle `number` is given up (a reload): its fetching runs on to its timeouts, its
    /// end is still handed in (at most one such cycle runs).
    AbandonFetch { number: u64 },
    /// A line for the supervisor, queued behind what waits.
    Send(ToSupervisor),
    /// REBOOT, written whole at once or not at all (the link was clear when asked).
    Reboot { id: u64, cause: Cause },
    /// The answer to a client's request.
    Answer {
        client: ClientId,
        response: Box<Response>,
    },
    /// Upload the status report `body` as `name`; [`Core::handle_upload_done`] after.
    Upload { name: String, body: Vec<u8> },
    /// Read the configuration again and hand in [`Core::handle_reloaded`].
    Reload,
    /// Tell the service manager the boot set is published (READY=1).
    NotifyReady,
    /// Stop with this exit status.
    Exit(i32),
}

/// What a reload gives the core: the new configuration's agent and uploads.
pub(crate) struct Reloaded {
    pub(crate) agent: Agent,
    pub(crate) uploads: Uploads,
}

/// The daemon's side of the supervisor: what the link is and was last told.
#[derive(Default)]
struct SupervisorView {
    up: bool,
    /// The feature set last sent with FEATURES on this connection.
    sent: Option<Vec<String>>,
}

/// A check-sync client waiting for the end of fetch cycle `cycle`, until `until`.
struct Waiter {
    client: ClientId,
    cycle: u64,
    /// When it is told the cycle did not end in time: a little before the client itself
    /// gives up. Fixed when it asked: a reload hands it a new cycle, never more time.
    until: Mono,
}

/// Check-sync clients waiting for a fetch cycle at once; the next is answered at once
/// (each holds a descriptor, and waiters hold none of the executor's client slots).
pub(crate) const MAX_CHECK_SYNCS: usize = 32;

/// What a check-sync client is told when its cycle did not end in time.
pub(crate) const NOT_IN_TIME: &str =
    "the fetch cycle did not end in time; `status` shows how it went";

/// The daemon's state and rules.
pub(crate) struct Core {
    agent: Agent,
    uploads: Uploads,
    supervisor: SupervisorView,
    /// Check-sync clients waiting for a fetch cycle's end.
    check_syncs: Vec<Waiter>,
    /// The boot cycle, until it is over (then the set is published and READY=1 sent).
    boot_cycle: Option<u64>,
    /// Started before the clock was set: until this instant (or the clock is set) the
    /// boot fetch, the features file and READY=1 wait for it (`boot_clock_wait`).
    clock_wait: Option<Mono>,
    /// A reboot was due and the link not clear: when to look at the link again.
    link_recheck: Option<Mono>,
    /// The cycle a reload gave up, until it ends (at most one at a time).
    abandoned: Option<u64>,
    /// A SIGHUP came while an abandoned cycle still ran: the reload waits for its end.
    reload_deferred: bool,
    /// A reload was asked of the executor and not yet handed back.
    reloading: bool,
    /// Events handed in: the report is made again only after one.
    events: u64,
    /// The events counted when the report was last made.
    reported_at_events: Option<u64>,
    actions: VecDeque<Action>,
}

/// How soon a reboot held back by a link that is not clear is looked at again.
pub(crate) const LINK_RECHECK: Duration = Duration::from_millis(100);

impl Core {
    /// The core of a daemon starting at `now` with `agent` and `uploads`. The executor
    /// opens the supervisor link first (so HELLO and FEATURES with the stored set go
    /// out before any fetch), then calls [`Core::start`].
    pub(crate) fn new(agent: Agent, uploads: Uploads) -> Core {
        Core {
            agent,
            uploads,
            supervisor: SupervisorView::default(),
            check_syncs: Vec::new(),
            boot_cycle: None,
            clock_wait: None,
            link_recheck: None,
            abandoned: None,
            reload_deferred: false,
            reloading: false,
            events: 0,
            reported_at_events: None,
            actions: VecDeque::new(),
        }
    }

    /// The start: the boot cycle, or (the clock not set yet) the wait for the clock.
    pub(crate) fn start(&mut self, now: Stamp) {
        self.events += 1;
        let snap = self.agent.snapshot(now);
        let wait = self.agent.phone.config.timing.boot_clock_wait.0;
        if snap.reading.verdict == ClockVerdict::Unsynced && wait > 0 {
            log::info!(
                "the clock is not set yet: the boot fetch and the feature set wait for it (at most {wait}s)"
            );
            self.agent.hold_publishing(true);
            self.clock_wait = Some(now.mono.plus_secs(wait));
        } else {
            self.boot_fetch(&snap);
        }
        self.settle(now);
    }

    /// The agent (what it holds, its configuration).
    pub(crate) fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The next piece of work, in the order it was decided.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.collect();
        self.actions.pop_front()
    }

    fn collect(&mut self) {
        self.actions.extend(self.agent.take_actions());
    }

    fn push(&mut self, action: Action) {
        // The agent's work first: it was decided before this.
        self.collect();
        self.actions.push_back(action);
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
                self.push(Action::NotifyReady);
            }
        }
    }

    /// Ends the wait for the clock at a start when the clock is set or the wait is
    /// over: the boot cycle runs (or, still without a clock, the stored set is
    /// published). Returns whether it ended.
    fn end_clock_wait_if_due(&mut self, now: Stamp) -> bool {
        let Some(until) = self.clock_wait else {
            return false;
        };
        let snap = self.agent.snapshot(now);
        let set = snap.reading.verdict != ClockVerdict::Unsynced;
        if !set && now.mono < until {
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

    /// What is due by the clocks alone: the end of the wait for the clock, failed
    /// writes tried again, check-sync clients whose time is up.
    pub(crate) fn handle_timeout(&mut self, now: Stamp) {
        let ended = self.end_clock_wait_if_due(now);
        if self.agent.retry_writes_if_due(now) || ended {
            self.events += 1;
        }
        self.expire_check_syncs(now.mono);
        self.settle(now);
    }

    /// Tells the check-sync clients whose time is up that their cycle did not end in
    /// time (the cycle runs on; its end answers no one of them).
    fn expire_check_syncs(&mut self, now: Mono) {
        for waiter in self.take_check_syncs(|w| w.until <= now) {
            self.push(Action::Answer {
                client: waiter.client,
                response: Box::new(Response::error(NOT_IN_TIME)),
            });
        }
    }

    /// The wall-clock timer for the rules' next instant expired.
    pub(crate) fn handle_timer(&mut self, now: Stamp) {
        self.events += 1;
        self.agent.wake(now);
        self.settle(now);
    }

    /// The wall clock was set: the boot cycle if it waited for the clock, else decide
    /// again (fetching first if due).
    pub(crate) fn handle_clock_step(&mut self, now: Stamp) {
        self.events += 1;
        log::info!("the wall clock was set: deciding again");
        if !self.end_clock_wait_if_due(now) {
            self.agent.wake(now);
        }
        self.settle(now);
    }

    /// A signal.
    pub(crate) fn handle_signal(&mut self, signal: Signal) {
        self.events += 1;
        match signal {
            Signal::Stop(number) => {
                log::info!("signal {number}: stopping");
                // A stop is a stop, whatever else is pending.
                self.actions.clear();
                self.actions.push_back(Action::Exit(0));
            }
            Signal::Reload => self.reload(),
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
        if self.reloading {
            return;
        }
        log::info!("SIGHUP: reading the configuration again");
        self.reloading = true;
        self.push(Action::Reload);
    }

    /// The configuration read again ([`Action::Reload`]): `Err` keeps the old one. The
    /// executor has moved the supervisor link and the control socket already.
    pub(crate) fn handle_reloaded(&mut self, reloaded: Result<Reloaded, String>, now: Stamp) {
        self.events += 1;
        self.reloading = false;
        let Reloaded {
            mut agent,
            mut uploads,
        } = match reloaded {
            Ok(reloaded) => reloaded,
            Err(e) => {
                log::error!("configuration not reloaded, the old one stays: {e}");
                return;
            }
        };
        let boot_pending = self.agent.boot_cycle_pending();
        if let Some(number) = self.agent.abandon_cycle() {
            self.abandoned = Some(number);
            self.push(Action::AbandonFetch { number });
        }
        // The same process, the same boot: what the old agent knew and could not write
        // is not lost with it.
        agent.take_over_reboots(&mut self.agent);
        agent.keep_unsaved(&self.agent);
        agent.number_cycles_after(&self.agent);
        self.agent = agent;
        // Still waiting for the clock at the start: the new agent waits too.
        self.agent.hold_publishing(self.clock_wait.is_some());
        // A new link: FEATURES follows its HELLO.
        self.supervisor = SupervisorView::default();
        // An upload under way is abandoned, like a fetch cycle, unless it goes where
        // the new one would.
        uploads.continue_from(&mut self.uploads);
        self.uploads = uploads;
        if !boot_pending {
            self.agent.boot_cycle_done();
        }
        let waiting = self.boot_cycle.is_some() || !self.check_syncs.is_empty();
        if waiting || boot_pending {
            let snap = self.agent.snapshot(now);
            match self.agent.fetch_now(&snap) {
                FetchStart::Pending(n) => {
                    self.boot_cycle = self.boot_cycle.map(|_| n);
                    for waiter in &mut self.check_syncs {
                        waiter.cycle = n;
                    }
                }
                FetchStart::Done(report) => {
                    if self.boot_cycle.take().is_some() {
                        self.push(Action::NotifyReady);
                    }
                    self.answer_check_syncs(u64::MAX, &report);
                }
            }
        } else {
            self.agent.decide(now);
        }
        self.settle(now);
    }

    /// Fetch cycle `number` ended with `fetched`.
    pub(crate) fn handle_fetch_done(&mut self, number: u64, fetched: Vec<Fetched>, now: Stamp) {
        self.events += 1;
        if self.abandoned == Some(number) {
            self.abandoned = None;
            if std::mem::take(&mut self.reload_deferred) {
                self.reload();
            }
            return;
        }
        let reports = self.agent.fetch_finished(number, fetched, now);
        self.cycles_over(reports);
        self.settle(now);
    }

    /// Where fetch cycle `number` found the server, handed over before its files
    /// ([`Core::handle_fetch_done`]).
    pub(crate) fn handle_located(&mut self, number: u64, located: crate::locate::Located) {
        self.agent.located(number, located);
    }

    /// The status report goes to `server` from now on (the folder the master file
    /// names, or why none): the executor found it changed after a cycle.
    pub(crate) fn retarget_reports(
        &mut self,
        server: Result<Vec<crate::config::ServerUrl>, String>,
    ) {
        self.uploads.retarget(server);
    }

    /// Fetch cycle `number` could not be started (no thread: `why`).
    pub(crate) fn handle_fetch_not_started(&mut self, number: u64, why: &str, now: Stamp) {
        self.events += 1;
        if self.abandoned == Some(number) {
            self.abandoned = None;
            return;
        }
        let reports = self.agent.fetch_not_started(number, why, now);
        self.cycles_over(reports);
        self.settle(now);
    }

    /// Cycles over: their reports go to the log and to those who waited for them.
    fn cycles_over(&mut self, reports: Vec<(u64, CheckSyncJson)>) {
        for (number, report) in reports {
            let boot = self.boot_cycle == Some(number);
            log_cycle(if boot { "boot" } else { "fetch cycle" }, &report);
            if boot {
                // The boot set is published (or the fetch gave up): what the phone
                // application, ordered after this service, must see when it starts.
                self.boot_cycle = None;
                self.push(Action::NotifyReady);
            }
            self.answer_check_syncs(number, &report);
        }
    }

    fn answer_check_syncs(&mut self, number: u64, report: &CheckSyncJson) {
        for Waiter { client, .. } in self.take_check_syncs(|w| w.cycle <= number) {
            let response = Response {
                ok: true,
                check_sync: Some(report.clone()),
                ..Response::default()
            };
            self.push(Action::Answer {
                client,
                response: Box::new(response),
            });
        }
    }

    /// Takes out the check-sync waiters `done` picks; the others wait on.
    fn take_check_syncs(&mut self, done: impl Fn(&Waiter) -> bool) -> Vec<Waiter> {
        let (taken, waiting) = std::mem::take(&mut self.check_syncs)
            .into_iter()
            .partition(done);
        self.check_syncs = waiting;
        taken
    }

    /// The upload under way ended.
    pub(crate) fn handle_upload_done(&mut self, result: Result<Taken, UploadFailure>, now: Stamp) {
        self.events += 1;
        self.uploads.finished(result, now.mono);
    }

    /// One request of a control client (`Err`: what was wrong with it). The test
    /// clock's `test-set-time` is the executor's (it owns the clocks): here it is
    /// refused.
    pub(crate) fn handle_request(
        &mut self,
        client: ClientId,
        request: Result<Request, String>,
        now: Stamp,
    ) {
        self.events += 1;
        let response = match request {
            Err(e) => Response::error(e),
            Ok(Request::Status {}) => self.status_response(now),
            Ok(Request::CheckSync {}) if self.check_syncs.len() >= MAX_CHECK_SYNCS => {
                Response::error(format!(
                    "{MAX_CHECK_SYNCS} check-syncs already wait for a fetch cycle; `status` shows how it went"
                ))
            }
            Ok(Request::CheckSync {}) => {
                let snap = self.agent.snapshot(now);
                match self.agent.fetch_now(&snap) {
                    FetchStart::Pending(n) => {
                        // Answered when cycle n ends, or told it did not in time (a
                        // little before the client itself gives up).
                        let within = crate::phone::daemon_wait(&self.agent.phone)
                            .saturating_sub(Duration::from_secs(5));
                        self.check_syncs.push(Waiter {
                            client,
                            cycle: n,
                            until: now.mono.plus(within),
                        });
                        self.settle(now);
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
                    let done = self.agent.install(&bytes, &file, now);
                    Response {
                        ok: true,
                        status: Some(self.agent.status(&self.agent.snapshot(now))),
                        install: Some(done.into()),
                        ..Response::default()
                    }
                }
            },
            Ok(Request::TestSetTime { .. }) => Response::error(format!(
                "test-set-time needs the test clock ({})",
                crate::phone::TEST_NOW_VAR
            )),
        };
        self.push(Action::Answer {
            client,
            response: Box::new(response),
        });
        self.settle(now);
    }

    /// The status as `status` shows it, at `now`.
    pub(crate) fn status_response(&self, now: Stamp) -> Response {
        Response {
            ok: true,
            status: Some(self.status(&self.agent.snapshot(now))),
            ..Response::default()
        }
    }

    /// The status at `snap`, uploads included.
    fn status(&self, snap: &Snapshot) -> crate::status::StatusJson {
        let mut status = self.agent.status(snap);
        if let Some(daemon) = &mut status.daemon {
            daemon.report = Some(self.uploads.words());
        }
        status
    }

    /// Something the supervisor link said, read at `now`.
    pub(crate) fn handle_supervisor(&mut self, event: LinkEvent, now: Stamp) {
        self.events += 1;
        match event {
            LinkEvent::Up { version } => {
                log::info!("supervisor connected (supervisor/{version})");
                self.supervisor = SupervisorView {
                    up: true,
                    sent: None, // FEATURES follows HELLO
                };
                self.agent
                    .supervisor_link(true, format!("connected (supervisor/{version})"));
            }
            LinkEvent::Down(why) => {
                log::info!("supervisor: {why}");
                self.supervisor = SupervisorView::default();
                self.agent
                    .supervisor_link(false, format!("not connected: {why}"));
            }
            LinkEvent::Message(FromSupervisor::CheckSync) => {
                log::info!("supervisor: CHECK-SYNC");
                let snap = self.agent.snapshot(now);
                if let FetchStart::Done(report) = self.agent.fetch_now(&snap) {
                    log_cycle("check-sync from the supervisor", &report);
                }
            }
            LinkEvent::Message(FromSupervisor::CallState(state)) => {
                log::info!("supervisor: call {state}");
                self.agent.call_state(state, now);
            }
            LinkEvent::Message(FromSupervisor::Ok(id)) => self.agent.reboot_answer(id, true, now),
            LinkEvent::Message(FromSupervisor::Busy(id)) => {
                self.agent.reboot_answer(id, false, now)
            }
            LinkEvent::Message(other) => {
                log::info!("supervisor: {}", other.to_line().trim_end())
            }
        }
        self.settle(now);
    }

    /// The executor has read everything the supervisor sent so far and nothing of the
    /// agent's waits on the link: the REBOOTs the rules want now, decided on `now`
    /// (read after that). A REBOOT is never queued behind lines the supervisor has not
    /// read: it could then arrive after a `CALL-STATE active` read meanwhile.
    pub(crate) fn handle_link_clear(&mut self, now: Stamp) {
        self.link_recheck = None;
        if !self.supervisor.up {
            return;
        }
        let snap = self.agent.snapshot(now);
        for (id, cause) in self.agent.reboot_actions(&snap) {
            self.events += 1;
            self.push(Action::Reboot { id, cause });
        }
    }

    /// The executor read everything that arrived, but something of the agent's still
    /// waits on the link (a supervisor that stops reading): no REBOOT now; while one is
    /// due, the link is looked at again in [`LINK_RECHECK`].
    pub(crate) fn handle_link_not_clear(&mut self, now: Stamp) {
        self.link_recheck = self
            .agent
            .reboot_pending()
            .then(|| now.mono.plus(LINK_RECHECK));
    }

    /// Whether the supervisor link is up (after HELLO).
    pub(crate) fn link_up(&self) -> bool {
        self.supervisor.up
    }

    /// After every event: FEATURES when the enabled set differs from the one the
    /// supervisor was last told (after HELLO too).
    fn settle(&mut self, now: Stamp) {
        if !self.supervisor.up {
            return;
        }
        let names = self.agent.enabled_names(&self.agent.snapshot(now));
        if self.supervisor.sent.as_ref() == Some(&names) {
            return;
        }
        self.supervisor.sent = Some(names.clone());
        self.push(Action::Send(ToSupervisor::Features(names)));
    }

    /// The end of a pass: the status report offered when it changed (once the boot
    /// cycle is over: a report before it would say what the phone no longer holds), its
    /// upload started when due, and when the clocks next call for a decision.
    pub(crate) fn end_pass(&mut self, now: Stamp) -> Wake {
        let booting = self.boot_cycle.is_some() || self.clock_wait.is_some();
        // One snapshot for the report and the wake: the uploads change nothing it holds.
        let snap = self.agent.snapshot(now);
        if !booting && self.reported_at_events != Some(self.events) {
            self.reported_at_events = Some(self.events);
            let made = crate::status::time(now.wall);
            let report = crate::report::build(self.status(&snap), made, crate::report::BOARD);
            self.uploads.offer(report);
        }
        if !booting {
            if let Some(upload) = self.uploads.start_if_due(now.mono) {
                self.push(upload);
            }
        }
        let mut wake = self.agent.next_wake(&snap);
        // A look at the link that came and went (the link went down before it): over.
        self.link_recheck = self.link_recheck.filter(|at| *at > now.mono);
        wake.mono = [
            wake.mono,
            self.clock_wait,
            self.uploads.next_attempt(),
            self.link_recheck,
            self.check_syncs.iter().map(|w| w.until).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        wake
    }

    /// Until when check-sync client `client` waits for its cycle (`None`: it does not).
    #[cfg(test)]
    pub(crate) fn held_until(&self, client: ClientId) -> Option<Mono> {
        self.check_syncs
            .iter()
            .find(|w| w.client == client)
            .map(|w| w.until)
    }

    /// The uploads' state (a reload continues it).
    pub(crate) fn uploads(&self) -> &Uploads {
        &self.uploads
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

#[cfg(test)]
mod tests;
