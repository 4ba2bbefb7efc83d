//! The daemon's state and what it does at each wake-up: fetch both files, apply them
//! through the engine and the store, publish the feature set, work out which reboots the
//! change calls for, and say when to wake next. The clock (`now`), the provisioning
//! server ([`Source`]) and the supervisor's words are handed in, so every step is a
//! plain function of (state, now, what the outside said).

use crate::accept::{changes, install_into, FileBytes, InstallOutcome};
use crate::control::CheckSyncJson;
use crate::daemon::publish::{self, FeatureSet};
use crate::phone::{read_clock, Phone};
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::engine::poll::{self, poll_reason};
use crate::engine::reboot::{
    causes, Action, CallState, Cause, InForceSet, RebootMachine, RebootTiming,
};
use crate::engine::{clock, evaluate, judge_candidate, ClockVerdict, Decision, Evaluation, Origin};
use crate::fetch::{backoff, phone_file, FetchOutcome, Fetcher, SITE_FILE};
use crate::format::FeatureId;
use crate::format::Kind;
use crate::status::{
    self, DaemonJson, FileFetchJson, FileOutcome, NeedJson, RebootJson, StatusJson,
};
use crate::storage::{
    describe, Meta, Mode, RebootRecord, Store, StoreError, Validator, WriterLock,
};
use crate::time::{secs_i64, UnixTime};

/// Where license files come from.
pub(crate) trait Source {
    /// The base URL, for people.
    fn base(&self) -> &str;
    fn fetch(&self, name: &str, validator: Option<&Validator>) -> FetchOutcome;
}

impl Source for Fetcher {
    fn base(&self) -> &str {
        Fetcher::base(self)
    }
    fn fetch(&self, name: &str, validator: Option<&Validator>) -> FetchOutcome {
        Fetcher::fetch(self, name, validator)
    }
}

/// The last fetch and the retry schedule.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchState {
    pub(crate) last_fetch: Option<UnixTime>,
    pub(crate) files: Vec<FileFetchJson>,
    pub(crate) consecutive_failures: u32,
    pub(crate) next_retry: Option<UnixTime>,
}

/// The running agent.
pub(crate) struct Agent {
    pub(crate) phone: Phone,
    store: Store,
    source: Result<Box<dyn Source>, String>,
    fetch: FetchState,
    /// Random bits for the back-off jitter, fixed per process.
    jitter: u64,
    /// A fetch was skipped (unsynced clock) and is owed once the clock is sane.
    fetch_owed: bool,
    /// The reboot rules' state.
    reboot: RebootMachine,
    /// The set the phone booted with: fixed at the first decision with a sane clock (so
    /// licenses found expired at start never ask for a reboot), or taken back from
    /// `meta.json` by an agent restarted within the same boot.
    booted: Option<InForceSet>,
    /// This boot's id; without one nothing about reboots is persisted (a restart could
    /// not be told from a reboot, and needs carried over a reboot would loop).
    boot_id: Option<String>,
    /// The supervisor link's state in words, for `status` (set by the daemon).
    pub(crate) supervisor_note: String,
}

impl Agent {
    /// Opens the store (verifying every file again) for `phone`, in the boot `boot_id`.
    pub(crate) fn start(
        phone: Phone,
        lock: Arc<WriterLock>,
        source: Result<Box<dyn Source>, String>,
        now: UnixTime,
        jitter: u64,
        boot_id: Option<String>,
    ) -> Result<Agent, StoreError> {
        let store = Store::open(
            &phone.config.state_dir,
            &phone.keyring,
            &phone.identity,
            Mode::Writer(lock),
            now,
        )?;
        for invalid in store.invalid() {
            log::warn!("set aside {}: {}", invalid.path.display(), invalid.reason);
        }
        let (booted, reboot) = match (&boot_id, &store.meta().reboot) {
            (Some(id), Some(record)) if record.boot_id == *id => {
                for cause in record.needs.keys() {
                    log::info!(
                        "restarted within the same boot: a reboot is still needed ({cause})"
                    );
                }
                (
                    Some(record.booted_set()),
                    RebootMachine::restored(record.needs.clone()),
                )
            }
            _ => (None, RebootMachine::default()),
        };
        if boot_id.is_none() {
            log::warn!("no boot id: reboot needs are not kept across an agent restart");
        }
        let supervisor_note = match &phone.config.supervisor {
            crate::config::Supervisor::Socket(path) => {
                format!("not connected yet ({})", path.display())
            }
            crate::config::Supervisor::None => "none on this board".to_string(),
        };
        Ok(Agent {
            phone,
            store,
            source,
            fetch: FetchState::default(),
            jitter,
            fetch_owed: false,
            reboot,
            booted,
            boot_id,
            supervisor_note,
        })
    }

    /// The reboot timers from the configuration.
    pub(crate) fn reboot_timing(&self) -> RebootTiming {
        let t = &self.phone.config.timing;
        let secs = |s: crate::config::Secs| secs_i64(s.0);
        RebootTiming {
            idle_grace: secs(t.idle_grace),
            reask: secs(t.reboot_reask),
            stagger_window: t.stagger_window.0,
        }
    }

    fn configured(&self) -> BTreeSet<FeatureId> {
        self.phone.config.enabled_features.iter().copied().collect()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Opens the store again from disk, verifying every file again before anything is
    /// decided: a file damaged on flash since the last look is set aside, never used.
    fn reload(&mut self, now: UnixTime) {
        let phone = &self.phone;
        let Some(lock) = self.store.lock().cloned() else {
            return;
        };
        match Store::open(
            &phone.config.state_dir,
            &phone.keyring,
            &phone.identity,
            Mode::Writer(lock),
            now,
        ) {
            Ok(store) => self.store = store,
            Err(e) => log::error!("{e}; deciding from the store as last read"),
        }
    }

    /// Fetches both files (site first), applies them, then decides and publishes.
    pub(crate) fn cycle(&mut self, now: UnixTime) -> CheckSyncJson {
        self.reload(now);
        let before = self.enabled_now(now);
        let reading = read_clock(&self.phone, self.store.meta(), now);
        let mut files = Vec::new();
        let mut all_fetched = true;
        if let Err(why) = &self.source {
            // Nothing to fetch from until the configuration names a server (SIGHUP).
            files.push(file_result(now, "-", FileOutcome::Skipped, why));
            all_fetched = false;
        } else if reading.verdict == ClockVerdict::Unsynced {
            // No time-based decision at all; the clock step will wake us.
            files.push(file_result(
                now,
                "-",
                FileOutcome::Skipped,
                "the clock is not set yet: nothing is fetched or judged until it is",
            ));
            all_fetched = false;
            self.fetch_owed = true;
        } else {
            let names = [
                (SITE_FILE.to_string(), Kind::Site),
                (phone_file(self.phone.identity.mac), Kind::Phone),
            ];
            for (name, kind) in names {
                let result = self.fetch_one(&name, kind, reading.judge_at, now);
                all_fetched &= result.outcome != FileOutcome::Failed;
                files.push(result);
            }
            if all_fetched {
                self.fetch.consecutive_failures = 0;
                self.fetch.next_retry = None;
            } else {
                let t = &self.phone.config.timing;
                let delay = backoff(
                    self.fetch.consecutive_failures,
                    t.retry_initial,
                    t.retry_max,
                    self.jitter,
                );
                self.fetch.consecutive_failures = self.fetch.consecutive_failures.saturating_add(1);
                self.fetch.next_retry = Some(now.saturating_add(secs_i64(delay)));
            }
            self.fetch.last_fetch = Some(now);
            self.fetch.files = files.clone();
            self.fetch_owed = false;
        }
        self.decide(now);
        let after = self.enabled_now(now);
        CheckSyncJson {
            files,
            fetched: all_fetched,
            changes: changes(&before, &after)
                .iter()
                .map(ToString::to_string)
                .collect(),
            enabled: after.keys().map(|id| id.name()).collect(),
        }
    }

    fn fetch_one(
        &mut self,
        name: &str,
        kind: Kind,
        judge_at: Option<UnixTime>,
        now: UnixTime,
    ) -> FileFetchJson {
        let source = match &self.source {
            Ok(source) => source,
            Err(why) => return file_result(now, name, FileOutcome::Failed, why),
        };
        let validator = self.store.meta().validators.get(name).cloned();
        let (bytes, validator) = match source.fetch(name, validator.as_ref()) {
            FetchOutcome::Body { bytes, validator } => (bytes, validator),
            FetchOutcome::NotModified => {
                return file_result(
                    now,
                    name,
                    FileOutcome::NotModified,
                    "304: unchanged since the last download",
                )
            }
            FetchOutcome::Absent { status } => {
                return file_result(
                    now,
                    name,
                    FileOutcome::Absent,
                    &format!(
                        "{status}: not on the server; the stored {kind} license stays in force"
                    ),
                )
            }
            FetchOutcome::Failed(e) => {
                log::warn!("fetch failed: {e}");
                return file_result(now, name, FileOutcome::Failed, &e.to_string());
            }
        };
        let meta = self.store.meta_mut();
        if validator == Validator::default() {
            meta.validators.remove(name);
        } else {
            meta.validators.insert(name.to_string(), validator);
        }
        let license = match self.phone.keyring.verify_bytes(&bytes) {
            Ok(license) => license,
            Err(rejection) => {
                let why = format!("{}: {rejection}", rejection.verdict());
                self.store
                    .meta_mut()
                    .record(now, "refused", name.to_string(), why.clone());
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
        match decision {
            Decision::Accept { drop } => match self.store.add(&bytes, license, &drop, now) {
                Ok(_) => {
                    log::info!("{name}: accepted {subject}");
                    file_result(now, name, FileOutcome::Accepted, &subject)
                }
                Err(e) => file_result(now, name, FileOutcome::Failed, &e.to_string()),
            },
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
                let why = format!("{}: {refusal}", refusal.id());
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
        }
    }

    /// The names of the enabled features, in id order (what `FEATURES` carries).
    pub(crate) fn enabled_names(&self, now: UnixTime) -> Vec<String> {
        self.enabled_now(now).keys().map(|id| id.name()).collect()
    }

    /// The enabled set as the phone has it now (the last published one while unsynced).
    fn enabled_now(&self, now: UnixTime) -> FeatureSet {
        match read_clock(&self.phone, self.store.meta(), now).judge_at {
            Some(at) => evaluate(self.store.held(), at).enabled(),
            None => publish::from_meta(self.store.meta().published.as_deref().unwrap_or(&[])),
        }
    }

    /// Installs a license file given by hand (`license-agent install` while this daemon
    /// holds the store), then applies the result at once, without fetching: publishes
    /// the set, and asks for a reboot if it changed.
    pub(crate) fn install(&mut self, bytes: &[u8], file: &str, now: UnixTime) -> InstallOutcome {
        let done = install_into(
            &self.phone,
            &mut self.store,
            FileBytes::judge(bytes),
            file,
            now,
        );
        let words = done.words();
        log::info!(
            "install {file}: {}",
            words
                .stdout
                .lines()
                .chain(words.stderr.lines())
                .next()
                .unwrap_or("")
        );
        if done.accepted() {
            self.decide(now);
        }
        done
    }

    /// At a wake-up (timer, clock step): fetch if a retry is due or a fetch is owed,
    /// otherwise decide again.
    pub(crate) fn wake(&mut self, now: UnixTime) {
        self.reload(now);
        let sane = read_clock(&self.phone, self.store.meta(), now)
            .judge_at
            .is_some();
        let retry_due = self.fetch.next_retry.is_some_and(|t| t <= now);
        let poll_due = self.next_poll(now).is_some_and(|t| t <= now);
        // A feature in force is ending: fetch both files once first, so that a renewal
        // already on the server keeps it without a reboot.
        let ending = sane && self.source.is_ok() && self.loses_features(now);
        if ending {
            log::info!("a feature in force ends: fetching once before deciding");
        }
        if sane && (retry_due || self.fetch_owed || poll_due || ending) {
            let report = self.cycle(now);
            for f in &report.files {
                log::info!("fetch: {} {}: {}", f.file, f.outcome, f.detail);
            }
        } else {
            self.decide(now);
        }
    }

    /// Whether the set in force at `now` lacks a feature of the set last published.
    fn loses_features(&self, now: UnixTime) -> bool {
        let published = publish::from_meta(self.store.meta().published.as_deref().unwrap_or(&[]));
        let now_set = self.enabled_now(now);
        published.keys().any(|id| !now_set.contains_key(id))
    }

    /// When to poll the server next (`engine::poll`), if a reason to poll holds.
    fn next_poll(&self, now: UnixTime) -> Option<UnixTime> {
        let at = read_clock(&self.phone, self.store.meta(), now).judge_at?;
        self.poll_after(&evaluate(self.store.held(), at))
    }

    /// [`next_poll`](Self::next_poll) from an evaluation already made.
    fn poll_after(&self, eval: &Evaluation) -> Option<UnixTime> {
        let last = self.fetch.last_fetch?;
        self.source.as_ref().ok()?;
        let t = &self.phone.config.timing;
        let interval = poll_reason(eval, &self.configured())
            .into_iter()
            .map(|r| poll::interval(r, t.poll_interval.0, t.renewal_check_interval.0))
            .min()?;
        Some(poll::next_poll(last, interval, self.jitter))
    }

    /// Prunes, publishes the feature set when it changed, persists the trusted time when
    /// due, settles the reboot needs; writes `meta.json` only when something in it
    /// changed.
    pub(crate) fn decide(&mut self, now: UnixTime) {
        let before: Meta = self.store.meta().clone();
        let reading = read_clock(&self.phone, self.store.meta(), now);
        if let Some(at) = reading.judge_at {
            if let Err(e) = self.store.prune(at, now) {
                log::error!("{e}");
            }
            if let Some(t) =
                clock::trusted_time_to_write(&reading, self.store.meta().latest_trusted)
            {
                self.store.meta_mut().latest_trusted = Some(t);
            }
        }
        // Unsynced: the last published set stands (and is written again if /run lost it).
        let set = self.enabled_now(now);
        match publish::publish(&self.phone.config.features_file, &set) {
            Ok(true) => log::info!(
                "published {} feature(s) to {}",
                set.len(),
                self.phone.config.features_file.display()
            ),
            Ok(false) => {}
            Err(e) => log::error!(
                "cannot publish to {}: {e}",
                self.phone.config.features_file.display()
            ),
        }
        self.store.meta_mut().published = Some(publish::to_meta(&set));
        // Unsynced: no reboot is asked and none is forgotten.
        if let Some(at) = reading.judge_at {
            self.settle_reboots(at, now);
        }
        self.save_if_changed(&before);
    }

    /// Works out the reboots the difference from the booted set calls for.
    fn settle_reboots(&mut self, at: UnixTime, now: UnixTime) {
        let in_force = evaluate(self.store.held(), at).in_force();
        let configured = self.configured();
        let booted = self.booted.get_or_insert_with(|| in_force.clone());
        let wanted = causes(booted, &in_force, at, &configured);
        let timing = self.reboot_timing();
        let mac = self.phone.identity.mac;
        for cause in self.reboot.settle(&wanted, mac, &timing, now) {
            let site = if wanted.get(&cause) == Some(&true) {
                " (a site license: after this phone's stagger delay)"
            } else {
                ""
            };
            log::warn!(
                "the enabled set differs from the one booted: a reboot is needed ({cause}){site}"
            );
            if self.phone.config.supervisor == crate::config::Supervisor::None {
                log::warn!(
                    "no supervisor on this board: would ask for a reboot ({cause}); reboot the phone to apply the set"
                );
            }
        }
    }

    /// Writes `meta.json` if it differs from `before`, with the reboot record of this
    /// boot brought up to date.
    fn save_if_changed(&mut self, before: &Meta) {
        self.store.meta_mut().reboot = self.reboot_record();
        if self.store.meta() != before {
            if let Err(e) = self.store.save_meta() {
                log::error!("{e}");
            }
        }
    }

    /// Writes `meta.json` if the reboot record changed (after the supervisor's answer or
    /// a REBOOT sent: the only changes outside a decision).
    fn save_reboot_record(&mut self) {
        let record = self.reboot_record();
        if self.store.meta().reboot != record {
            self.store.meta_mut().reboot = record;
            if let Err(e) = self.store.save_meta() {
                log::error!("{e}");
            }
        }
    }

    /// The reboot record of this boot as it should be stored.
    fn reboot_record(&self) -> Option<RebootRecord> {
        match (&self.boot_id, &self.booted) {
            (Some(id), Some(booted)) => Some(RebootRecord {
                boot_id: id.clone(),
                booted: RebootRecord::booted_list(booted),
                needs: self.reboot.needs.clone(),
            }),
            // Unknown boot: nothing kept. Not yet booted: an older boot's record stays
            // until this boot's set is known (it is ignored anyway: another id).
            (None, _) => None,
            (Some(_), None) => self.store.meta().reboot.clone(),
        }
    }

    /// The supervisor link came up (after HELLO) or went down, and why (for `status`).
    pub(crate) fn supervisor_link(&mut self, up: bool, note: String) {
        self.reboot.connection(up);
        self.supervisor_note = note;
    }

    /// `CALL-STATE` from the supervisor.
    pub(crate) fn call_state(&mut self, state: CallState, now: UnixTime) {
        self.reboot.call_state(state, now);
    }

    /// `OK <id>` (`accepted`) or `BUSY <id>` from the supervisor.
    pub(crate) fn reboot_answer(&mut self, id: u64, accepted: bool, now: UnixTime) {
        let actions = if accepted {
            log::info!("the supervisor accepted REBOOT {id}: the phone will reboot");
            self.reboot.ok(id, now)
        } else {
            log::info!("the supervisor answered BUSY to REBOOT {id}: asking again after the next idle period");
            self.reboot.busy(id, now)
        };
        log_actions(&actions);
        self.save_reboot_record();
    }

    /// What the reboot rules want done now (REBOOT lines to send); persisted first, so a
    /// restart knows a request was made.
    pub(crate) fn reboot_actions(&mut self, now: UnixTime) -> Vec<(u64, Cause)> {
        // Unsynced clock: no reboot is asked.
        if read_clock(&self.phone, self.store.meta(), now)
            .judge_at
            .is_none()
        {
            return Vec::new();
        }
        let timing = self.reboot_timing();
        let (actions, _) = self.reboot.poll(now, &timing);
        log_actions(&actions);
        self.save_reboot_record();
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::SendReboot { id, cause } => Some((id, cause)),
                Action::Log(_) => None,
            })
            .collect()
    }

    /// When to wake next: the next status change, retry, poll, or moment a reboot may be
    /// asked; while the clock is unsynced, the build time (a clock step wakes the daemon
    /// before that anyway).
    pub(crate) fn next_wake(&self, now: UnixTime) -> Option<UnixTime> {
        let reading = read_clock(&self.phone, self.store.meta(), now);
        let Some(at) = reading.judge_at else {
            return Some(clock::BUILD_TIME);
        };
        let eval = evaluate(self.store.held(), at);
        let change = match reading.verdict {
            // Wound back, the judged instant stays at the trusted time until the clock
            // is within the tolerance again: re-decide then.
            ClockVerdict::Windback => {
                let tolerance = secs_i64(self.phone.config.timing.windback_tolerance.0);
                Some(at.saturating_sub(tolerance))
            }
            _ => eval.next_change,
        };
        let reboot = self.reboot.poll_wake(now, &self.reboot_timing());
        [
            change,
            self.fetch.next_retry,
            self.poll_after(&eval),
            reboot,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The status report, live.
    pub(crate) fn status(&self, now: UnixTime) -> StatusJson {
        let mut report = status::build(&self.phone, self.store(), now, None);
        report.source = "daemon".into();
        report.daemon = Some(DaemonJson {
            server: match &self.source {
                Ok(s) => s.base().to_string(),
                Err(why) => format!("none: {why}"),
            },
            last_fetch: self.fetch.last_fetch.map(status::time),
            files: self.fetch.files.clone(),
            consecutive_failures: self.fetch.consecutive_failures,
            next_retry: self.fetch.next_retry.map(status::time),
            published: self.enabled_now(now).keys().map(|id| id.name()).collect(),
            features_file: self.phone.config.features_file.display().to_string(),
            next_wake: self.next_wake(now).map(status::time),
            next_poll: self.next_poll(now).map(status::time),
            poll_reason: self.poll_reason_words(now),
            supervisor: self.supervisor_note.clone(),
            call_state: self
                .reboot
                .call()
                .map(|(state, since)| format!("{state} since {}", status::time(since))),
            reboot: self.reboot_status(now),
        });
        report
    }

    fn poll_reason_words(&self, now: UnixTime) -> Option<String> {
        let at = read_clock(&self.phone, self.store.meta(), now).judge_at?;
        let eval = evaluate(self.store.held(), at);
        let words: Vec<String> = poll_reason(&eval, &self.configured())
            .into_iter()
            .map(|r| match r {
                poll::PollReason::Unlicensed(id) => format!("{id} is enabled but not licensed"),
                poll::PollReason::Renewal(id) => format!("{id} is Expiring Shortly"),
            })
            .collect();
        (!words.is_empty()).then(|| words.join("; "))
    }

    fn reboot_status(&self, now: UnixTime) -> RebootJson {
        use crate::engine::reboot::{Phase, Waiting};
        let needs: Vec<NeedJson> = self
            .reboot
            .needs
            .iter()
            .map(|(cause, need)| {
                let (phase, request) = match need.phase {
                    Phase::Waiting => ("waiting", None),
                    Phase::Asked { id, .. } => ("asked", Some(id)),
                    Phase::Accepted { .. } => ("accepted", None),
                };
                NeedJson {
                    cause: cause.word().to_string(),
                    since: status::time(need.since),
                    not_before: status::time(need.not_before),
                    phase: phase.to_string(),
                    request,
                }
            })
            .collect();
        let (word, until, detail) = match self.reboot.waiting(now, &self.reboot_timing()) {
            Waiting::Nothing if needs.is_empty() => (None, None, None),
            Waiting::Nothing => (Some("nothing"), None, "asking now".to_string().into()),
            Waiting::Connection => (
                Some("supervisor-connection"),
                None,
                Some(format!(
                    "the supervisor connection ({})",
                    self.supervisor_note
                )),
            ),
            Waiting::Idle => (
                Some("idle"),
                None,
                Some("the phone to be idle (a call is on, or the call state is unknown)".into()),
            ),
            Waiting::IdleGrace { until } => (
                Some("idle-grace"),
                Some(until),
                Some(format!(
                    "{} s of continuous idle",
                    self.reboot_timing().idle_grace
                )),
            ),
            Waiting::Stagger { until } => (
                Some("stagger-delay"),
                Some(until),
                Some("this phone's stagger delay (a site license's reboot)".into()),
            ),
            Waiting::Answer { id } => (
                Some("answer"),
                None,
                Some(format!("the supervisor's answer to REBOOT {id}")),
            ),
            Waiting::StillRunningAfterOk { until } => (
                Some("reboot-after-ok"),
                Some(until),
                Some(
                    "the reboot the supervisor accepted; asked again if still running then".into(),
                ),
            ),
        };
        RebootJson {
            pending: !needs.is_empty(),
            booted: self
                .booted
                .as_ref()
                .map(|b| b.keys().map(|id| id.name()).collect()),
            needs,
            waiting_for: word.map(str::to_string),
            until: until.map(status::time),
            detail,
        }
    }
}

fn log_actions(actions: &[Action]) {
    for action in actions {
        if let Action::Log(text) = action {
            log::warn!("{text}");
        }
    }
}

fn file_result(now: UnixTime, file: &str, outcome: FileOutcome, detail: &str) -> FileFetchJson {
    FileFetchJson {
        file: file.to_string(),
        at: status::time(now),
        outcome,
        detail: detail.to_string(),
    }
}
