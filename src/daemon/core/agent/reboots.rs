//! The agent's reboots: the set the phone booted with, the reboot rules' state machine
//! ([`crate::engine::reboot`]) fed the supervisor's words with both clocks' readings,
//! and the record of this boot kept in `meta.json` so that a restarted agent neither
//! forgets a need nor asks twice.

use super::{Agent, Snapshot};
use crate::engine::reboot::{causes, Action, CallState, Cause, InForceSet, RebootMachine};
use crate::engine::Evaluation;
use crate::status::{self, NeedJson, NeedPhase, RebootJson, WaitingFor};
use crate::storage::RebootRecord;
use crate::time::Stamp;

/// What the agent owns for reboots.
pub(super) struct Reboots {
    pub(super) machine: RebootMachine,
    /// The set the phone booted with: fixed at the first decision after the boot cycle
    /// with a sane clock (so licenses found expired at start never ask for a reboot), or
    /// taken back from `meta.json` by an agent restarted within the same boot.
    pub(super) booted: Option<InForceSet>,
    /// This boot's id; without one nothing about reboots is persisted (a restart could
    /// not be told from a reboot, and needs carried over a reboot would loop).
    pub(super) boot_id: Option<String>,
    /// The supervisor link's state in words, for `status` (set by the daemon).
    pub(super) supervisor_note: String,
}

impl Reboots {
    /// The reboot state for boot `boot_id`, given the record `meta.json` holds.
    pub(super) fn restore(
        boot_id: Option<String>,
        record: Option<&RebootRecord>,
        supervisor_note: String,
    ) -> Reboots {
        let (booted, machine) = match (&boot_id, record) {
            (Some(id), Some(record)) if record.boot_id == *id => {
                for cause in record.needs.keys() {
                    log::info!(
                        "restarted within the same boot: a reboot is still needed ({cause})"
                    );
                }
                (
                    Some(record.booted_set()),
                    RebootMachine::restored(record.needs.clone(), record.accepted),
                )
            }
            _ => (None, RebootMachine::default()),
        };
        if boot_id.is_none() {
            log::warn!("no boot id: reboot needs are not kept across an agent restart");
        }
        Reboots {
            machine,
            booted,
            boot_id,
            supervisor_note,
        }
    }
}

impl Agent {
    /// Works out the reboots the difference from the booted set calls for.
    pub(super) fn settle_reboots(&mut self, eval: &Evaluation, now: Stamp) {
        if self.reboots.booted.is_none() && self.fetching.boot_cycle_pending {
            // The booted set is what the boot cycle leaves in force.
            return;
        }
        let in_force = eval.in_force();
        let configured = self.configured();
        let booted = self.reboots.booted.get_or_insert_with(|| in_force.clone());
        let wanted = causes(booted, &in_force, eval.at, &configured);
        let timing = self.reboot_timing();
        let mac = self.phone.identity.mac;
        for cause in self.reboots.machine.settle(&wanted, mac, &timing, now) {
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

    /// Takes over what `old`, the agent this one replaces in the same process (a
    /// reload), knew of reboots: the set the phone booted with, the needs and the
    /// request answered. Read back from `meta.json`, it would be lost whenever the last
    /// write of it failed, and a need the supervisor accepted asked again at once (found
    /// by the simulator). The link is a new one: no answer comes on the old.
    pub(crate) fn take_over_reboots(&mut self, old: &mut Agent) {
        if self.reboots.boot_id != old.reboots.boot_id {
            return;
        }
        self.reboots.machine = std::mem::take(&mut old.reboots.machine);
        self.reboots.machine.connection(false);
        if old.reboots.booted.is_some() {
            self.reboots.booted = old.reboots.booted.take();
        }
    }

    /// The reboot record of this boot as it should be stored.
    pub(super) fn reboot_record(&self) -> Option<RebootRecord> {
        match (&self.reboots.boot_id, &self.reboots.booted) {
            (Some(id), Some(booted)) => Some(RebootRecord {
                boot_id: id.clone(),
                booted: RebootRecord::booted_list(booted),
                needs: self.reboots.machine.needs.clone(),
                accepted: self.reboots.machine.accepted(),
            }),
            // Unknown boot: nothing kept. Not yet booted: an older boot's record stays
            // until this boot's set is known (it is ignored anyway: another id).
            (None, _) => None,
            (Some(_), None) => self.store.meta().reboot.clone(),
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

    /// The supervisor link came up (after HELLO) or went down, and why (for `status`).
    pub(crate) fn supervisor_link(&mut self, up: bool, note: String) {
        self.reboots.machine.connection(up);
        self.reboots.supervisor_note = note;
    }

    /// `CALL-STATE` from the supervisor, read at `now`.
    pub(crate) fn call_state(&mut self, state: CallState, now: Stamp) {
        self.reboots.machine.call_state(state, now);
    }

    /// `OK <id>` (`accepted`) or `BUSY <id>` from the supervisor.
    pub(crate) fn reboot_answer(&mut self, id: u64, accepted: bool, now: Stamp) {
        // An answer to no REBOOT outstanding is only logged, by the machine.
        if self.reboots.machine.is_outstanding(id) {
            if accepted {
                log::info!("the supervisor accepted REBOOT {id}: the phone will reboot");
            } else {
                log::info!(
                    "the supervisor answered BUSY to REBOOT {id}: asking again after the next idle period"
                );
            }
        }
        let actions = if accepted {
            self.reboots.machine.ok(id, now)
        } else {
            self.reboots.machine.busy(id, now)
        };
        log_actions(&actions);
        self.save_reboot_record();
    }

    /// What the reboot rules want done at `snap` (REBOOT lines to send); persisted
    /// first, so a restart knows a request was made. The caller has read everything the
    /// supervisor sent before taking `snap`.
    pub(crate) fn reboot_actions(&mut self, snap: &Snapshot) -> Vec<(u64, Cause)> {
        // Unsynced clock: no reboot is asked.
        if snap.eval.is_none() {
            return Vec::new();
        }
        let timing = self.reboot_timing();
        let (actions, _) = self.reboots.machine.poll(snap.stamp, &timing);
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

    /// Whether a reboot need is pending (asked or not).
    pub(crate) fn reboot_pending(&self) -> bool {
        !self.reboots.machine.needs.is_empty()
    }

    /// The reboot part of the status report.
    pub(super) fn reboot_status(&self, snap: &Snapshot) -> RebootJson {
        use crate::engine::reboot::{Phase, Waiting};
        let stamp = snap.stamp;
        let timing = self.reboot_timing();
        let needs: Vec<NeedJson> = self
            .reboots
            .machine
            .needs
            .iter()
            .map(|(cause, need)| {
                let (phase, request) = match need.phase {
                    Phase::Waiting => (NeedPhase::Waiting, None),
                    Phase::Asked { id, .. } => (NeedPhase::Asked, Some(id)),
                    Phase::Accepted { .. } => (NeedPhase::Accepted, None),
                };
                NeedJson {
                    cause: *cause,
                    since: status::time(need.since),
                    not_before: status::time(need.not_before),
                    phase,
                    request,
                }
            })
            .collect();
        let note = &self.reboots.supervisor_note;
        let (word, until, detail) = match self.reboots.machine.waiting(stamp, &timing) {
            Waiting::Nothing if needs.is_empty() => (None, None, None),
            Waiting::Nothing => (
                Some(WaitingFor::Nothing),
                None,
                Some("asking now".to_string()),
            ),
            Waiting::Connection => (
                Some(WaitingFor::SupervisorConnection),
                None,
                Some(format!("the supervisor connection ({note})")),
            ),
            Waiting::Idle => (
                Some(WaitingFor::Idle),
                None,
                Some("the phone to be idle (a call is on, or the call state is unknown)".into()),
            ),
            Waiting::IdleGrace { until } => (
                Some(WaitingFor::IdleGrace),
                Some(stamp.wall_of(until)),
                Some(format!("{} s of continuous idle", timing.idle_grace)),
            ),
            Waiting::Stagger { until } => (
                Some(WaitingFor::StaggerDelay),
                Some(stamp.wall_of(until)),
                Some("this phone's stagger delay (a site license's reboot)".into()),
            ),
            Waiting::Window {
                ready,
                occurrence,
                deadline,
            } => (
                Some(WaitingFor::Window),
                Some(ready),
                timing.windows.as_ref().map(|(schedule, _)| {
                    window_words(schedule, &occurrence, ready, stamp, deadline)
                }),
            ),
            Waiting::Answer { id } => (
                Some(WaitingFor::Answer),
                None,
                Some(format!("the supervisor's answer to REBOOT {id}")),
            ),
            Waiting::StillRunningAfterOk { until } => (
                Some(WaitingFor::RebootAfterOk),
                Some(stamp.wall_of(until)),
                Some(
                    "the reboot the supervisor accepted; asked again if still running then".into(),
                ),
            ),
        };
        RebootJson {
            pending: !needs.is_empty(),
            booted: self
                .reboots
                .booted
                .as_ref()
                .map(|b| b.keys().map(|id| id.name()).collect()),
            needs,
            waiting_for: word,
            until: until.map(status::time),
            detail,
        }
    }
}

/// What a reboot waiting for a window waits for, in words: "the window Mon–Fri
/// 01:00–04:00 CET, opens 2027-04-02T01:00+01:00; ...".
fn window_words(
    schedule: &crate::engine::window::Schedule,
    occurrence: &crate::engine::window::Occurrence,
    ready: crate::time::UnixTime,
    stamp: Stamp,
    deadline: crate::time::Mono,
) -> String {
    let local = |t| schedule.local_time(t);
    let open = if occurrence.opens <= stamp.wall {
        format!("open since {}", local(occurrence.opens))
    } else {
        format!("opens {}", local(occurrence.opens))
    };
    format!(
        "the window {}, {open}; this phone asks from {} (its place in the window), and at \
         the next idle moment from {} whatever the window (the deadline)",
        schedule.words(occurrence),
        local(ready),
        status::time(stamp.wall_of(deadline))
    )
}

fn log_actions(actions: &[Action]) {
    for action in actions {
        if let Action::Log(text) = action {
            log::warn!("{text}");
        }
    }
}
