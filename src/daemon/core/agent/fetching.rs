//! The agent's fetching: which cycle runs, what the last one gave, when to retry, and
//! applying what a cycle brought through the engine and the store.
//!
//! A cycle is started by the loop (boot, CHECK-SYNC, a check-sync client, a retry or
//! poll falling due, a feature about to end) and runs on its own thread
//! ([`crate::fetch::worker`]); the loop goes on meanwhile and hands the results back
//! with [`Agent::fetch_finished`]. One cycle runs at a time: one asked for while another
//! runs is started when that one ends, so a check-sync always sees the server as it is
//! after the request.

use super::{Agent, Snapshot};
use crate::config::ServerUrl;
use crate::control::CheckSyncJson;
use crate::daemon::core::Action;
use crate::daemon::publish::FeatureSet;
use crate::engine::{judge_candidate, ClockVerdict, Decision, Origin};
use crate::fetch::worker::Fetched;
use crate::fetch::{backoff, phone_file, FetchOutcome, SITE_FILE};
use crate::format::Kind;
use crate::locate::{Known, Located};
use crate::status::{FileFetchJson, FileOutcome};
use crate::storage::describe;
use crate::time::Stamp;
use crate::time::{secs_i64, UnixTime};

/// The last fetch and the retry schedule.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchState {
    pub(crate) last_fetch: Option<UnixTime>,
    pub(crate) files: Vec<FileFetchJson>,
    pub(crate) consecutive_failures: u32,
    pub(crate) next_retry: Option<UnixTime>,
}

/// A cycle under way (its fetching is the executor's: [`Action::StartFetch`]).
struct Cycle {
    number: u64,
    /// The enabled set when it started (for the changes a check-sync reports).
    before: FeatureSet,
}

/// What the agent owns for fetching.
pub(super) struct Fetching {
    /// The provisioning servers, or why there is none.
    pub(super) server: Result<Vec<ServerUrl>, String>,
    pub(super) state: FetchState,
    /// A fetch was skipped (unsynced clock) and is owed once the clock is sane.
    pub(super) owed: bool,
    running: Option<Cycle>,
    /// Cycles started so far (the number of the last one).
    started: u64,
    /// Another cycle was asked for while one ran.
    again: bool,
    /// A wake-up came during the cycle: decide again when it ends.
    pub(super) decide_after: bool,
    /// No cycle has finished with a sane clock yet (nor can one: no server): the set
    /// the phone booted with is not known before the boot cycle.
    pub(super) boot_cycle_pending: bool,
    /// The server that answered last and its folders (from the store at start): the
    /// remembered server of a cycle on which DHCP names none.
    pub(super) known: Option<Known>,
    /// Where the last cycle that looked for the server found it (`[provisioning]`).
    pub(super) located: Option<Located>,
    /// The licenses set aside for a key unknown then that the trust held now has were
    /// looked for (once, at the first cycle: after a firmware rolled back and forward
    /// again, say).
    pub(super) took_back: bool,
}

/// What asking for a cycle gave.
#[derive(Debug)]
pub(crate) enum FetchStart {
    /// Cycle `n` will answer (started now, or after the one running).
    Pending(u64),
    /// Nothing can be fetched (no server, or the clock is not set): the answer now.
    Done(CheckSyncJson),
}

impl Fetching {
    pub(super) fn new(server: Result<Vec<ServerUrl>, String>) -> Fetching {
        let boot_cycle_pending = server.is_ok();
        Fetching {
            server,
            state: FetchState::default(),
            owed: false,
            running: None,
            started: 0,
            again: false,
            decide_after: false,
            boot_cycle_pending,
            known: None,
            located: None,
            took_back: false,
        }
    }

    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

impl Agent {
    /// The number of the cycle under way, if one is.
    pub(crate) fn running_cycle(&self) -> Option<u64> {
        self.fetching.running.as_ref().map(|cycle| cycle.number)
    }

    /// Numbers its cycles on from `old`'s, the agent this one replaces (a reload): a
    /// cycle `old` gave up still ends under its number, which must name no cycle of
    /// this one (found by the simulator: the new agent's first cycle, numbered 1 like
    /// the one given up, was taken for it, and never ended).
    pub(crate) fn number_cycles_after(&mut self, old: &Agent) {
        self.fetching.started = self.fetching.started.max(old.fetching.started);
    }

    /// Gives up the cycle under way (a reload): its fetching runs on to its timeouts,
    /// its results unread. The caller keeps its number until it ends, to bound how many
    /// run.
    pub(crate) fn abandon_cycle(&mut self) -> Option<u64> {
        self.fetching.running.take().map(|cycle| cycle.number)
    }

    /// Asks for a fetch cycle now.
    pub(crate) fn fetch_now(&mut self, snap: &Snapshot) -> FetchStart {
        let now = snap.stamp.wall;
        if let Err(why) = &self.fetching.server {
            // Nothing to fetch from until the configuration names a server (SIGHUP).
            let files = vec![file_result(now, "-", FileOutcome::Skipped, why)];
            return FetchStart::Done(self.skipped(files, snap));
        }
        if snap.reading.verdict == ClockVerdict::Unsynced {
            // No time-based decision at all; the clock step will wake us.
            self.fetching.owed = true;
            let files = vec![file_result(
                now,
                "-",
                FileOutcome::Skipped,
                "the clock is not set yet: nothing is fetched or judged until it is",
            )];
            return FetchStart::Done(self.skipped(files, snap));
        }
        if self.fetching.running.is_some() {
            self.fetching.again = true;
            return FetchStart::Pending(self.fetching.started + 1);
        }
        self.start_cycle(snap)
    }

    fn skipped(&mut self, files: Vec<FileFetchJson>, snap: &Snapshot) -> CheckSyncJson {
        let enabled = self.enabled(snap);
        self.decide(snap.stamp);
        CheckSyncJson {
            files,
            fetched: false,
            changes: Vec::new(),
            enabled: enabled.keys().map(|id| id.name()).collect(),
        }
    }

    fn start_cycle(&mut self, snap: &Snapshot) -> FetchStart {
        if self.fetching.server.is_err() {
            return FetchStart::Done(CheckSyncJson::default());
        }
        // What is stored is read again first (an install by hand may have changed it),
        // unless it was read just now, when the agent started.
        if !std::mem::take(&mut self.store_fresh) {
            self.reload(snap.stamp.wall);
        }
        let files = vec![SITE_FILE.to_string(), phone_file(self.phone.identity.mac)];
        let before = self.enabled(snap);
        self.fetching.started += 1;
        let number = self.fetching.started;
        self.fetching.running = Some(Cycle { number, before });
        let trust = self.trust_ask(snap);
        self.outbox.push(Action::StartFetch {
            number,
            trust,
            files,
        });
        FetchStart::Pending(number)
    }

    /// The executor could not start cycle `number` (no thread): every waiter is
    /// answered now, and the fetch is owed.
    pub(crate) fn fetch_not_started(
        &mut self,
        number: u64,
        why: &str,
        stamp: Stamp,
    ) -> Vec<(u64, CheckSyncJson)> {
        if self.running_cycle() != Some(number) {
            return Vec::new();
        }
        self.fetching.running = None;
        let snap = self.snapshot(stamp);
        let files = vec![file_result(
            stamp.wall,
            "-",
            FileOutcome::Failed,
            &format!("cannot start a fetch thread: {why}"),
        )];
        self.fetching.owed = true;
        let mut reports = vec![(number, self.skipped(files, &snap))];
        reports.extend(self.start_again_if_asked(stamp));
        reports
    }

    /// Cycle `number` is over with `fetched`: applies it, decides, and returns the
    /// reports of the cycles now over by number (this one, and the one asked for
    /// meanwhile if it could not even start). A cycle not running (given up) gives none.
    pub(crate) fn fetch_finished(
        &mut self,
        number: u64,
        fetched: Vec<Fetched>,
        stamp: Stamp,
    ) -> Vec<(u64, CheckSyncJson)> {
        if self.running_cycle() != Some(number) {
            return Vec::new();
        }
        let Some(cycle) = self.fetching.running.take() else {
            return Vec::new();
        };
        let snap = self.snapshot(stamp);
        let mut reports = vec![(cycle.number, self.apply_cycle(fetched, cycle.before, &snap))];
        reports.extend(self.start_again_if_asked(stamp));
        reports
    }

    /// What the last server that answered is known to be (the remembered server).
    pub(crate) fn known_server(&self) -> Option<&Known> {
        self.fetching.known.as_ref()
    }

    /// Keeps what `old` (the agent this one replaces at a reload, in the same process)
    /// knew of the server found last, when it is the one the store names: in memory it
    /// has the credentials a DHCP URL gave, which the store never keeps.
    pub(crate) fn keep_known(&mut self, old: &Agent) {
        let Some(known) = &old.fetching.known else {
            return;
        };
        let same = match &self.fetching.known {
            None => true,
            Some(mine) => mine.record() == known.record(),
        };
        if same {
            self.fetching.known = Some(known.clone());
            self.fetching.located.clone_from(&old.fetching.located);
        }
    }

    /// Where cycle `number` found the server (before its files: [`Agent::fetch_finished`]).
    /// A server that answered becomes the known one, kept in the store when it changed
    /// (a failed write is tried again with the store's next one). A cycle not running
    /// (given up) changes nothing.
    pub(crate) fn located(&mut self, number: u64, located: Located) {
        if self.running_cycle() != Some(number) {
            return;
        }
        if let Some(found) = &located.found {
            if self.fetching.known.as_ref() != Some(found) {
                log::info!(
                    "provisioning server {} ({}): licenses from {}, reports to {}",
                    found.server.url,
                    found.server.origin,
                    found.licenses,
                    found.logs
                );
            }
            let record = found.record();
            if self.store.meta().boot_server.as_ref() != Some(&record) {
                self.store.meta_mut().boot_server = Some(record);
                let _ = self.store.save_meta();
            }
            self.fetching.known = Some(found.clone());
        }
        self.fetching.located = Some(located);
    }

    /// Starts the cycle asked for while one ran; if it cannot even start, its report.
    fn start_again_if_asked(&mut self, stamp: Stamp) -> Option<(u64, CheckSyncJson)> {
        if !std::mem::take(&mut self.fetching.again) {
            return None;
        }
        let snap = self.snapshot(stamp);
        match self.fetch_now(&snap) {
            FetchStart::Done(report) => {
                // The cycle promised to those who asked meanwhile could not start.
                self.fetching.started += 1;
                Some((self.fetching.started, report))
            }
            FetchStart::Pending(_) => None,
        }
    }

    fn apply_cycle(
        &mut self,
        fetched: Vec<Fetched>,
        before: FeatureSet,
        snap: &Snapshot,
    ) -> CheckSyncJson {
        let now = snap.stamp.wall;
        // The store is not read again: it was read as the cycle started (or as the agent
        // was made, for its first), the daemon is its only writer, and an install during
        // the cycle went into this same store.
        let judge_at = snap.reading.judge_at;
        // The trust documents first: a license signed by a key new in this cycle's
        // update verifies in this cycle.
        let (trust, fetched): (Vec<Fetched>, Vec<Fetched>) = fetched
            .into_iter()
            .partition(|f| super::trusting::is_trust_file(&f.name));
        if !std::mem::replace(&mut self.fetching.took_back, true) {
            self.take_back_unknown_keys(now);
        }
        let trust = self.apply_trust(trust, snap);
        let mut all_fetched = trust.files.iter().all(|f| f.outcome != FileOutcome::Failed);
        let mut files = trust.files;
        for file in fetched {
            let kind = if file.name == SITE_FILE {
                Kind::Site
            } else {
                Kind::Phone
            };
            let mut result = self.apply_file(&file.name, kind, file.outcome, judge_at, now);
            result.transport = file.server.as_ref().map(|s| s.scheme().to_string());
            result.server = file.server.map(|s| s.to_string());
            all_fetched &= result.outcome != FileOutcome::Failed;
            files.push(result);
        }
        let state = &mut self.fetching.state;
        if all_fetched {
            state.consecutive_failures = 0;
            state.next_retry = None;
        } else {
            let t = &self.phone.config.timing;
            let delay = backoff(
                state.consecutive_failures,
                t.retry_initial,
                t.retry_max,
                self.jitter,
            );
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.next_retry = Some(now.saturating_add(secs_i64(delay)));
        }
        if trust.more {
            // More versions may wait on the server: the next cycle at once.
            state.next_retry = Some(now);
        }
        state.last_fetch = Some(now);
        state.files = files.clone();
        self.fetching.owed = false;
        self.fetching.decide_after = false;
        if snap.reading.judge_at.is_some() {
            self.fetching.boot_cycle_pending = false;
        }
        self.decide(snap.stamp);
        let after = self.enabled(&self.snapshot(snap.stamp));
        for f in &files {
            log::info!("fetch: {} {}: {}", f.file, f.outcome, f.detail);
        }
        CheckSyncJson {
            files,
            fetched: all_fetched,
            changes: crate::accept::changes(&before, &after)
                .iter()
                .map(ToString::to_string)
                .collect(),
            enabled: after.keys().map(|id| id.name()).collect(),
        }
    }

    /// Judges and stores what one file gave.
    fn apply_file(
        &mut self,
        name: &str,
        kind: Kind,
        outcome: FetchOutcome,
        judge_at: Option<UnixTime>,
        now: UnixTime,
    ) -> FileFetchJson {
        // Validators written by an older agent are dropped at the file's first fetch,
        // on disk too (once: nothing else may be written at this fetch): none is ever
        // sent (`fetch`, "Every file whole, every time"), and one left would be stale
        // for an older agent after a rollback. A failed write is owed (`meta_unsaved`).
        if self.store.meta_mut().validators.remove(name).is_some() {
            let _ = self.store.save_meta();
        }
        let bytes = match outcome {
            FetchOutcome::Body { bytes } => bytes,
            FetchOutcome::Absent { answer } => {
                return file_result(
                    now,
                    name,
                    FileOutcome::Absent,
                    &format!(
                        "{answer}: not on the server; the stored {kind} license stays in force"
                    ),
                );
            }
            FetchOutcome::Failed(e) => {
                log::warn!("fetch failed: {e}");
                return file_result(now, name, FileOutcome::Failed, &e.to_string());
            }
        };
        let license = match self.phone.keyring.verify_bytes(&bytes) {
            Ok(license) => license,
            Err(rejection) => {
                let why = self
                    .store
                    .meta_mut()
                    .record_rejection(now, name.to_string(), &rejection);
                log::warn!("{name} refused: {why}");
                return file_result(now, name, FileOutcome::Refused, &why);
            }
        };
        let subject = describe(&license);
        let decision = judge_candidate(
            &self.phone.identity,
            self.store.held(),
            &license,
            Origin::Fetched(kind),
            judge_at,
            self.store.next_seq(),
        );
        let frozen = judge_at.and_then(|at| self.phone.keyring.frozen(at));
        match decision {
            Decision::Accept { .. } if frozen.is_some() => {
                let why = frozen.unwrap_or_default();
                log::warn!("{name} refused: {why}");
                self.store
                    .meta_mut()
                    .record(now, "refused", subject.clone(), why.clone());
                file_result(
                    now,
                    name,
                    FileOutcome::Refused,
                    &format!("{subject}: {why}"),
                )
            }
            Decision::Accept { drop } => {
                match self
                    .store
                    .add(&bytes, license, &drop, judge_at.unwrap_or(now), now)
                {
                    Ok(_) => {
                        log::info!(target: crate::syslog::NOTICE, "{name}: accepted {subject}");
                        file_result(now, name, FileOutcome::Accepted, &subject)
                    }
                    Err(e) => file_result(now, name, FileOutcome::Failed, &e.to_string()),
                }
            }
            Decision::Identical { .. } => file_result(
                now,
                name,
                FileOutcome::Unchanged,
                &format!("{subject}: already stored"),
            ),
            Decision::Superseded { .. } => file_result(
                now,
                name,
                FileOutcome::NotUsed,
                &format!("{subject}: a stored license of longer duration stays in use"),
            ),
            Decision::Refuse(refusal) => {
                let why = self
                    .store
                    .meta_mut()
                    .record_refusal(now, subject.clone(), &refusal);
                file_result(
                    now,
                    name,
                    FileOutcome::Refused,
                    &format!("{subject}: {why}"),
                )
            }
        }
    }

    /// Whether a fetch is due at this wake-up: a retry or poll fell due, a fetch is owed
    /// since the clock was unsynced, or a feature in force is ending (fetch both files
    /// first, so that a renewal already on the server keeps it without a reboot).
    pub(super) fn fetch_due(&self, snap: &Snapshot) -> bool {
        let Some(eval) = &snap.eval else {
            return false;
        };
        let now = snap.stamp.wall;
        let retry_due = self.fetching.state.next_retry.is_some_and(|t| t <= now);
        let poll_due = self.poll_after(eval).is_some_and(|t| t <= now);
        let ending = self.fetching.server.is_ok() && self.loses_features(snap);
        if ending {
            log::info!("a feature in force ends: fetching once before deciding");
        }
        retry_due || self.fetching.owed || poll_due || ending
    }
}

pub(super) fn file_result(
    now: UnixTime,
    file: &str,
    outcome: FileOutcome,
    detail: &str,
) -> FileFetchJson {
    FileFetchJson {
        file: file.to_string(),
        at: crate::status::time(now),
        outcome,
        detail: detail.to_string(),
        server: None,
        transport: None,
    }
}
