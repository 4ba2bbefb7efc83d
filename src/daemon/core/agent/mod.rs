//! The daemon's state, and what it does when something happens: apply what a fetch
//! cycle brought, publish the feature set, work out the reboots a change calls for, and
//! say when to wake next. The clocks (a [`Stamp`] of both), the provisioning server
//! ([`Server`]) and the supervisor's words are handed in; the agent does no waiting of
//! its own, so the loop that drives it never stalls (see `daemon`).
//!
//! The state is split by owner: [`fetching`] (cycles, retries, applying downloads),
//! [`reboots`] (the booted set, the reboot rules' machine, this boot's record), and
//! here the store and what is published. Each wake-up takes one [`Snapshot`] (both
//! clocks, the clock's verdict, the evaluation of the licenses held) and decides from it.

mod fetching;
mod reboots;
mod trusting;

use std::collections::BTreeSet;

pub(crate) use fetching::FetchStart;

use crate::accept::{install_into, FileBytes, InstallOutcome};
use crate::daemon::core::Action;
use crate::daemon::publish::{self, FeatureSet};
use crate::engine::poll::{self, poll_reason};
use crate::engine::reboot::RebootTiming;
use crate::engine::{clock, evaluate, ClockReading, ClockVerdict, Evaluation};
use crate::format::FeatureId;
use crate::phone::{read_clock, Phone};
use crate::status::{self, DaemonJson, StatusJson};
use crate::storage::{Meta, Store};
use crate::time::{secs_i64, Mono, Stamp, UnixTime};
use fetching::Fetching;
use reboots::Reboots;

/// The agent's view at one moment: both clocks, the wall clock's verdict, and (when the
/// clock can judge) the evaluation of the licenses held at the judged instant.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) stamp: Stamp,
    pub(crate) reading: ClockReading,
    pub(crate) eval: Option<Evaluation>,
}

/// When the agent next has something to do by the clocks alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Wake {
    /// An instant of the rules (a status change, a retry, a poll), on the wall clock.
    pub(crate) wall: Option<UnixTime>,
    /// The end of a wait (idle grace, stagger delay, re-ask), on the monotonic clock.
    pub(crate) mono: Option<Mono>,
}

/// The running agent.
pub(crate) struct Agent {
    pub(crate) phone: Phone,
    store: Store,
    fetching: Fetching,
    reboots: Reboots,
    /// Random bits for the back-off and poll jitter, fixed per process.
    jitter: u64,
    /// When to try failed writes again: the store's (read-only or full flash), or the
    /// features file's.
    write_retry_at: Option<Mono>,
    /// The features file could not be written at the last decision.
    publish_failed: bool,
    /// The features file is not written yet: the daemon waits for the clock at a start
    /// before SNTP (`boot_clock_wait`), so the phone application starts with the set
    /// the boot fetch brings, not with the stored one and a reboot later.
    publish_held: bool,
    /// Work for the executor (a fetch cycle to start), taken by the core.
    outbox: Vec<Action>,
    /// The store was opened for this agent and not read again since: the first cycle
    /// need not read it again before it starts.
    store_fresh: bool,
}

impl Agent {
    /// The agent of `phone` over its opened `store` (every file verified), fetching from
    /// the servers `server` names (their base URLs, or why there are none), in the boot
    /// `boot_id`.
    pub(crate) fn new(
        phone: Phone,
        store: Store,
        server: Result<Vec<crate::config::ServerUrl>, String>,
        jitter: u64,
        boot_id: Option<String>,
    ) -> Agent {
        for invalid in store.invalid() {
            log::warn!("set aside {}: {}", invalid.path.display(), invalid.reason);
        }
        let note = match &phone.config.supervisor {
            crate::config::Supervisor::Socket(path) => {
                format!("not connected yet ({})", path.display())
            }
            crate::config::Supervisor::None => "none on this board".to_string(),
        };
        let reboots = Reboots::restore(boot_id, store.meta().reboot.as_ref(), note);
        let mut fetching = Fetching::new(server);
        if let Some(record) = &store.meta().boot_server {
            match crate::locate::Known::from_record(record, crate::config::TRANSPORTS) {
                Ok(known) => fetching.known = Some(known),
                Err(why) => log::warn!("the remembered provisioning server is not used: {why}"),
            }
        }
        let mut agent = Agent {
            phone,
            store,
            fetching,
            reboots,
            jitter,
            write_retry_at: None,
            publish_failed: false,
            publish_held: false,
            outbox: Vec::new(),
            store_fresh: true,
        };
        agent.recover_set_aside();
        agent
    }

    /// The work the agent asked for since the last call (the core executes it).
    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the snapshot of `stamp`: the clock judged and the licenses evaluated once.
    pub(crate) fn snapshot(&self, stamp: Stamp) -> Snapshot {
        let reading = read_clock(&self.phone, self.store.meta(), stamp.wall);
        let eval = reading.judge_at.map(|at| evaluate(self.store.held(), at));
        Snapshot {
            stamp,
            reading,
            eval,
        }
    }

    /// The reboot timers from the configuration.
    fn reboot_timing(&self) -> RebootTiming {
        let t = &self.phone.config.timing;
        RebootTiming {
            idle_grace: t.idle_grace.0,
            reask: t.reboot_reask.0,
            stagger_window: t.stagger_window.0,
            windows: self
                .phone
                .config
                .reboot_windows
                .clone()
                .map(|schedule| (schedule, self.phone.identity.mac)),
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
        self.store_fresh = false;
        let phone = &self.phone;
        if !self.store.writer() {
            return;
        }
        match self.store.reopen(&phone.keyring, &phone.identity, now) {
            Ok(mut store) => {
                store.keep_unsaved(&self.store);
                self.store = store;
                let by_trust = self.store.invalid().iter().any(|i| {
                    i.moved_to.is_some() && i.reason.contains(" removed by trust version ")
                });
                if by_trust {
                    self.recover_set_aside();
                }
            }
            Err(e) => log::error!("{e}; deciding from the store as last read"),
        }
    }

    /// Takes over the metadata `old` could not write, when both keep the same store.
    pub(crate) fn keep_unsaved(&mut self, old: &Agent) {
        if self.phone.config.state_dir == old.phone.config.state_dir {
            self.store.keep_unsaved(&old.store);
        }
    }

    /// The enabled set as the phone has it at `snap` (the last published one while
    /// unsynced).
    fn enabled(&self, snap: &Snapshot) -> FeatureSet {
        match &snap.eval {
            Some(eval) => eval.enabled(),
            None => publish::from_meta(self.store.meta().published.as_deref().unwrap_or(&[])),
        }
    }

    /// The names of the enabled features, in id order (what `FEATURES` carries).
    pub(crate) fn enabled_names(&self, snap: &Snapshot) -> Vec<String> {
        self.enabled(snap).keys().map(|id| id.name()).collect()
    }

    /// Installs a license file given by hand (`license-agent install` while this daemon
    /// holds the store), then applies the result at once, without fetching: publishes
    /// the set, and asks for a reboot if it changed.
    pub(crate) fn install(&mut self, bytes: &[u8], file: &str, now: Stamp) -> InstallOutcome {
        let done = install_into(
            &self.phone,
            &mut self.store,
            FileBytes::judge(bytes),
            file,
            now.wall,
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

    /// Tries failed writes again when it is time: reads the store again and decides
    /// (which writes what is owed: the store's records, the features file).
    /// Returns whether it did.
    pub(crate) fn retry_writes_if_due(&mut self, stamp: Stamp) -> bool {
        if self.write_retry_at.is_none_or(|at| at > stamp.mono) {
            return false;
        }
        log::info!("trying the failed writes again");
        self.write_retry_at = None;
        self.wake(stamp);
        true
    }

    /// At a wake-up (timer, clock step, the test clock set): start a fetch if one is due
    /// (deciding once it is over), otherwise decide again.
    pub(crate) fn wake(&mut self, stamp: Stamp) {
        if self.fetching.is_running() {
            // What the running cycle brings comes first.
            self.fetching.decide_after = true;
            return;
        }
        let snap = self.snapshot(stamp);
        if self.fetch_due(&snap) {
            // (The cycle reads the store again first.)
            if let FetchStart::Pending(_) = self.fetch_now(&snap) {
                return;
            }
        }
        self.reload(stamp.wall);
        self.decide(stamp);
    }

    /// Whether the boot cycle (the first with a sane clock) is still to finish.
    pub(crate) fn boot_cycle_pending(&self) -> bool {
        self.fetching.boot_cycle_pending
    }

    /// The boot cycle is behind (an agent taking over from another after SIGHUP).
    pub(crate) fn boot_cycle_done(&mut self) {
        self.fetching.boot_cycle_pending = false;
    }

    /// Whether the set in force at `snap` lacks a feature of the set last published.
    fn loses_features(&self, snap: &Snapshot) -> bool {
        let published = publish::from_meta(self.store.meta().published.as_deref().unwrap_or(&[]));
        let now_set = self.enabled(snap);
        published.keys().any(|id| !now_set.contains_key(id))
    }

    /// When to poll the server next (`engine::poll`), if a reason to poll holds.
    fn poll_after(&self, eval: &Evaluation) -> Option<UnixTime> {
        let last = self.fetching.state.last_fetch?;
        self.fetching.server.as_ref().ok()?;
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
    pub(crate) fn decide(&mut self, stamp: Stamp) {
        let before: Meta = self.store.meta().clone();
        let reading = read_clock(&self.phone, self.store.meta(), stamp.wall);
        if let Some(at) = reading.judge_at {
            self.store.prune(at, stamp.wall);
            if let Some(t) =
                clock::trusted_time_to_write(&reading, self.store.meta().latest_trusted)
            {
                self.store.meta_mut().latest_trusted = Some(t);
            }
        }
        // Taken after pruning: what is held now is what is decided on.
        let snap = self.snapshot(stamp);
        // Unsynced: the last published set stands (and is written again if /run lost it).
        if !self.publish_held {
            self.publish(&snap);
        }
        // Unsynced: no reboot is asked and none is forgotten.
        if let Some(eval) = &snap.eval {
            self.settle_reboots(eval, stamp);
        }
        self.store.meta_mut().reboot = self.reboot_record();
        if self.store.meta() != &before || self.store.meta_unsaved() {
            // A failure is noted in the store, shown in the status, and retried.
            let _ = self.store.save_meta();
        }
        let failed = self.store.write_failure().is_some() || self.publish_failed;
        self.write_retry_at = match (failed, self.write_retry_at) {
            (false, _) => None,
            (true, Some(at)) => Some(at),
            (true, None) => Some(stamp.mono.plus_secs(self.phone.config.timing.write_retry.0)),
        };
    }

    /// Writes the features file (when the set changed or the file is missing) and
    /// records the set published.
    fn publish(&mut self, snap: &Snapshot) {
        let set = self.enabled(snap);
        let features_file = &self.phone.config.features_file;
        self.publish_failed = match publish::publish_on(&**self.store.disk(), features_file, &set) {
            Ok(written) => {
                if written {
                    log::info!(
                        "published {} feature(s) to {}",
                        set.len(),
                        features_file.display()
                    );
                }
                false
            }
            Err(e) => {
                log::error!(
                    "cannot publish to {}: {e}; trying again later",
                    features_file.display()
                );
                true
            }
        };
        self.store.meta_mut().published = Some(publish::to_meta(&set));
    }

    /// Holds the features file back (see `publish_held`), or lets it be written again.
    pub(crate) fn hold_publishing(&mut self, held: bool) {
        self.publish_held = held;
    }

    /// When to wake next by the clocks: the next status change, retry or poll (wall),
    /// and the end of the reboot rules' current wait (monotonic). While a fetch cycle
    /// runs, only the reboot rules' waits count: the cycle's end decides the rest.
    pub(crate) fn next_wake(&self, snap: &Snapshot) -> Wake {
        // The reboot rules' waits only while the clock is judged: unsynced, no reboot is
        // asked (`reboot_actions`), so a wait that ends would end for ever, and its
        // instant, past, would wake the loop at once, again and again (found by the
        // simulator: OK, then the clock set to 1970).
        let reboot_wait = snap.eval.as_ref().and_then(|_| {
            self.reboots
                .machine
                .poll_wake(snap.stamp, &self.reboot_timing())
        });
        let mono = [reboot_wait, self.write_retry_at]
            .into_iter()
            .flatten()
            .min();
        if self.fetching.is_running() {
            return Wake { wall: None, mono };
        }
        let Some(eval) = &snap.eval else {
            // Unsynced: the build time, if still ahead (a clock step wakes the daemon
            // before that); past 2106 nothing is ahead but a clock step.
            let ahead = snap.stamp.wall < clock::BUILD_TIME;
            return Wake {
                wall: ahead.then_some(clock::BUILD_TIME),
                mono,
            };
        };
        let change = match snap.reading.verdict {
            // Wound back, the judged instant stays at the trusted time until the clock
            // is within the tolerance again: re-decide then.
            ClockVerdict::Windback => {
                let tolerance = secs_i64(self.phone.config.timing.windback_tolerance.0);
                Some(eval.at.saturating_sub(tolerance))
            }
            _ => eval.next_change,
        };
        // The reboot rules' point in a window, on the wall clock.
        let window = self
            .reboots
            .machine
            .poll_wake_wall(snap.stamp, &self.reboot_timing());
        let wall = [
            change,
            self.fetching.state.next_retry,
            self.poll_after(eval),
            window,
        ]
        .into_iter()
        .flatten()
        .min();
        Wake { wall, mono }
    }

    /// The features file as the rules want it at `stamp`, when the agent is settled: the
    /// clock judged, no cycle running (an ending feature waits for its fetch), the file
    /// not held back, and the last writes made. (For the simulator's invariant.)
    #[cfg(test)]
    pub(crate) fn settled_features(&self, stamp: Stamp) -> Option<String> {
        let settled = !self.fetching.is_running()
            && !self.publish_held
            && !self.publish_failed
            && self.store.write_failure().is_none()
            && !self.fetching.owed;
        let snap = self.snapshot(stamp);
        let eval = snap.eval.as_ref().filter(|_| settled)?;
        Some(publish::render(&eval.enabled()))
    }

    /// The status report, live.
    pub(crate) fn status(&self, snap: &Snapshot) -> StatusJson {
        let now = snap.stamp.wall;
        let mut report = status::build(&self.phone, self.store(), now, None);
        report.source = "daemon".into();
        let wake = self.next_wake(snap);
        let next_wake = [wake.wall, wake.mono.map(|m| snap.stamp.wall_of(m))]
            .into_iter()
            .flatten()
            .min();
        let fetch = &self.fetching.state;
        let provisioning = self.provisioning_status();
        report.daemon = Some(DaemonJson {
            server: match (&self.fetching.server, &provisioning) {
                (Err(why), _) => format!("none: {why}"),
                // Found at each cycle: the one found last.
                (Ok(_), Some(p)) => p
                    .server
                    .clone()
                    .unwrap_or_else(|| "none found yet".to_string()),
                (Ok(bases), None) => crate::config::listed(bases),
            },
            provisioning,
            last_fetch: fetch.last_fetch.map(status::time),
            fetching: self.fetching.is_running(),
            files: fetch.files.clone(),
            consecutive_failures: fetch.consecutive_failures,
            next_retry: fetch.next_retry.map(status::time),
            published: self.enabled_names(snap),
            features_file: self.phone.config.features_file.display().to_string(),
            next_wake: next_wake.map(status::time),
            next_poll: snap
                .eval
                .as_ref()
                .and_then(|e| self.poll_after(e))
                .map(status::time),
            poll_reason: self.poll_reason_words(snap),
            supervisor: self.reboots.supervisor_note.clone(),
            call_state: self
                .reboots
                .machine
                .call()
                .map(|(state, since)| format!("{state} since {}", status::time(since.wall))),
            reboot: self.reboot_status(snap),
            // The daemon adds its uploads (the agent does not do them).
            report: None,
            config_set_aside: self
                .phone
                .config_set_aside
                .iter()
                .map(status::ConfigSetAsideJson::of)
                .collect(),
        });
        report
    }

    /// Where the server comes from and what was found there, when the agent looks for
    /// it (`[provisioning]`: DHCP, or the master file).
    fn provisioning_status(&self) -> Option<crate::status::ProvisioningJson> {
        let settings = &self.phone.config.boot_server;
        if !settings.locates() {
            return None;
        }
        let source = match settings.source {
            crate::config::ServerSource::Dhcp => "dhcp",
            crate::config::ServerSource::Static => "static",
        };
        let located = self.fetching.located.as_ref();
        // Before a cycle has looked: the server remembered, if any.
        let found = match located {
            Some(located) => located.found.as_ref(),
            None => self.fetching.known.as_ref(),
        };
        let origin = match (located, found) {
            (None, Some(_)) => Some("remembered".to_string()),
            (_, found) => found.map(|f| f.server.origin.to_string()),
        };
        Some(crate::status::ProvisioningJson {
            source: source.into(),
            server: found.map(|f| f.server.url.to_string()),
            origin,
            licenses: found.map(|f| f.licenses.to_string()),
            logs: found.map(|f| f.logs.to_string()),
            master: located
                .map(|l| l.master.clone())
                .or_else(|| Some("not read yet".into())),
            notes: located.map(|l| l.notes.clone()).unwrap_or_default(),
        })
    }

    fn poll_reason_words(&self, snap: &Snapshot) -> Option<String> {
        let eval = snap.eval.as_ref()?;
        let words: Vec<String> = poll_reason(eval, &self.configured())
            .into_iter()
            .map(|r| match r {
                poll::PollReason::Unlicensed(id) => format!("{id} is enabled but not licensed"),
                poll::PollReason::Renewal(id) => format!("{id} is Expiring Shortly"),
            })
            .collect();
        (!words.is_empty()).then(|| words.join("; "))
    }
}

#[cfg(test)]
mod tests;
