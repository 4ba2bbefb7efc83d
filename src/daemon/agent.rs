//! The daemon's state and what it does at each wake-up: fetch both files, apply them
//! through the engine and the store, publish the feature set, and say when to wake next.
//! The clock (`now`) and the provisioning server ([`Source`]) are handed in, so every
//! step is a plain function of (state, now, what the server said).

use crate::cli::install::changes;
use crate::cli::setup::{read_clock, Phone};
use crate::daemon::control::CheckSyncJson;
use crate::daemon::publish::{self, FeatureSet};
use crate::engine::{clock, evaluate, judge_candidate, ClockVerdict, Decision, Instant, Origin};
use crate::fetch::{backoff, phone_file, FetchOutcome, Fetcher, SITE_FILE};
use crate::format::Kind;
use crate::status::{self, DaemonJson, FileFetchJson, StatusJson};
use crate::storage::{describe, Meta, Mode, Store, StoreError, Validator};

/// Where license files come from.
pub trait Source {
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
pub struct FetchState {
    pub last_fetch: Option<Instant>,
    pub files: Vec<FileFetchJson>,
    pub consecutive_failures: u32,
    pub next_retry: Option<Instant>,
}

/// The running agent.
pub struct Agent {
    pub phone: Phone,
    store: Store,
    source: Result<Box<dyn Source>, String>,
    fetch: FetchState,
    /// Random bits for the back-off jitter, fixed per process.
    jitter: u64,
    /// A fetch was skipped (unsynced clock) and is owed once the clock is sane.
    fetch_owed: bool,
}

impl Agent {
    /// Opens the store (verifying every file again) for `phone`.
    pub fn start(
        phone: Phone,
        source: Result<Box<dyn Source>, String>,
        now: Instant,
        jitter: u64,
    ) -> Result<Agent, StoreError> {
        let store = Store::open(
            &phone.config.state_dir,
            &phone.keyring,
            &phone.identity,
            Mode::Writer,
            now,
        )?;
        for invalid in store.invalid() {
            log::warn!("set aside {}: {}", invalid.path.display(), invalid.reason);
        }
        Ok(Agent {
            phone,
            store,
            source,
            fetch: FetchState::default(),
            jitter,
            fetch_owed: false,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens the store again from disk, so that what another process stored (a hand
    /// `install` while the daemon runs) is seen and verified before anything is decided.
    fn reload(&mut self, now: Instant) {
        let phone = &self.phone;
        match Store::open(
            &phone.config.state_dir,
            &phone.keyring,
            &phone.identity,
            Mode::Writer,
            now,
        ) {
            Ok(store) => self.store = store,
            Err(e) => log::error!("{e}; deciding from the store as last read"),
        }
    }

    /// Fetches both files (site first), applies them, then decides and publishes.
    pub fn cycle(&mut self, now: Instant) -> CheckSyncJson {
        self.reload(now);
        let before = self.enabled_now(now);
        let reading = read_clock(&self.phone, self.store.meta(), now);
        let mut files = Vec::new();
        let mut all_fetched = true;
        if let Err(why) = &self.source {
            // Nothing to fetch from until the configuration names a server (SIGHUP).
            files.push(file_result(now, "-", "skipped", why));
            all_fetched = false;
        } else if reading.verdict == ClockVerdict::Unsynced {
            // No time-based decision at all; the clock step will wake us.
            files.push(file_result(
                now,
                "-",
                "skipped",
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
                all_fetched &= result.outcome != "failed";
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
                self.fetch.next_retry =
                    Some(now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)));
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
                .lines()
                .skip(1)
                .map(|l| l.trim().to_string())
                .collect(),
            enabled: after.keys().map(|id| id.name()).collect(),
        }
    }

    fn fetch_one(
        &mut self,
        name: &str,
        kind: Kind,
        judge_at: Option<Instant>,
        now: Instant,
    ) -> FileFetchJson {
        let source = match &self.source {
            Ok(source) => source,
            Err(why) => return file_result(now, name, "failed", why),
        };
        let validator = self.store.meta().validators.get(name).cloned();
        let (bytes, validator) = match source.fetch(name, validator.as_ref()) {
            FetchOutcome::Body { bytes, validator } => (bytes, validator),
            FetchOutcome::NotModified => {
                return file_result(
                    now,
                    name,
                    "not-modified",
                    "304: unchanged since the last download",
                )
            }
            FetchOutcome::Absent { status } => {
                return file_result(
                    now,
                    name,
                    "absent",
                    &format!(
                        "{status}: not on the server; the stored {kind} license stays in force"
                    ),
                )
            }
            FetchOutcome::Failed(e) => {
                log::warn!("fetch failed: {e}");
                return file_result(now, name, "failed", &e.to_string());
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
                return file_result(now, name, "refused", &why);
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
                    file_result(now, name, "accepted", &subject)
                }
                Err(e) => file_result(now, name, "failed", &e.to_string()),
            },
            Decision::Identical { .. } => file_result(
                now,
                name,
                "unchanged",
                &format!("{subject}: already stored"),
            ),
            Decision::Superseded { .. } => file_result(
                now,
                name,
                "not-used",
                &format!("{subject}: a stored license of longer duration stays in use"),
            ),
            Decision::Refuse(refusal) => {
                let why = format!("{}: {refusal}", refusal.id());
                self.store
                    .meta_mut()
                    .record(now, "refused", subject.clone(), why.clone());
                file_result(now, name, "refused", &format!("{subject}: {why}"))
            }
        }
    }

    /// The names of the enabled features, in id order (what `FEATURES` carries).
    pub fn enabled_names(&self, now: Instant) -> Vec<String> {
        self.enabled_now(now).keys().map(|id| id.name()).collect()
    }

    /// The enabled set as the phone has it now (the last published one while unsynced).
    fn enabled_now(&self, now: Instant) -> FeatureSet {
        match read_clock(&self.phone, self.store.meta(), now).judge_at {
            Some(at) => evaluate(self.store.held(), at).enabled(),
            None => publish::from_meta(self.store.meta().published.as_deref().unwrap_or(&[])),
        }
    }

    /// At a wake-up (timer, clock step): fetch if a retry is due or a fetch is owed,
    /// otherwise decide again.
    pub fn wake(&mut self, now: Instant) {
        self.reload(now);
        let sane = read_clock(&self.phone, self.store.meta(), now)
            .judge_at
            .is_some();
        let retry_due = self.fetch.next_retry.is_some_and(|t| t <= now);
        if sane && (retry_due || self.fetch_owed) {
            let report = self.cycle(now);
            for f in &report.files {
                log::info!("fetch: {} {}: {}", f.file, f.outcome, f.detail);
            }
        } else {
            self.decide(now);
        }
    }

    /// Prunes, publishes the feature set when it changed, persists the trusted time when
    /// due; writes `meta.json` only when something in it changed.
    pub fn decide(&mut self, now: Instant) {
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
        if *self.store.meta() != before {
            if let Err(e) = self.store.save_meta() {
                log::error!("{e}");
            }
        }
    }

    /// When to wake next: the next status change or the next retry; while the clock is
    /// unsynced, the build time (a clock step wakes the daemon before that anyway).
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let reading = read_clock(&self.phone, self.store.meta(), now);
        let Some(at) = reading.judge_at else {
            return Some(clock::BUILD_TIME);
        };
        let change = match reading.verdict {
            // Wound back, the judged instant stays at the trusted time until the clock
            // is within the tolerance again: re-decide then.
            ClockVerdict::Windback => {
                let tolerance = i64::try_from(self.phone.config.timing.windback_tolerance.0)
                    .unwrap_or(i64::MAX);
                Some(at.saturating_sub(tolerance))
            }
            _ => evaluate(self.store.held(), at).next_change,
        };
        [change, self.fetch.next_retry].into_iter().flatten().min()
    }

    /// The status report, live.
    pub fn status(&self, now: Instant) -> StatusJson {
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
        });
        report
    }
}

fn file_result(now: Instant, file: &str, outcome: &str, detail: &str) -> FileFetchJson {
    FileFetchJson {
        file: file.to_string(),
        at: status::time(now),
        outcome: outcome.to_string(),
        detail: detail.to_string(),
    }
}
