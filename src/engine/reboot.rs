//! When to ask the phone supervisor for a reboot (`agent-rules.md`, "When the agent asks
//! for a reboot"; `supervisor-protocol.md`, "Rules for the agent"), as an explicit state
//! machine of plain functions, in the spirit of zincati's update agent: every input is an
//! event with the time it happened, every decision is "ask now" or "not now, look again
//! at T", and anything unknown fails safe to "not now".
//!
//! - A *need* for a reboot has a cause (`license-expired`, `license-changed`,
//!   `feature-licensed`). At most one need per cause. Which causes a change of the
//!   feature set calls for is [`causes()`] (`reboot/causes.rs`); [`RebootMachine::settle`]
//!   makes the needs those.
//! - A REBOOT is sent only while connected, while the last call state heard is `idle`,
//!   after `idle_grace` of continuous idle, and (for a cause from a site license) after
//!   the MAC's stagger delay. Until the supervisor has said `CALL-STATE idle`, the phone
//!   counts as busy.
//! - One request at a time; one reboot serves every need. `BUSY` or a dropped connection
//!   means no reboot: wait for a fresh idle period and ask again. `OK` means the reboot
//!   will happen: nothing more is asked, unless the agent is still running `reboot_reask`
//!   later, when it logs that and asks again.

use std::collections::BTreeMap;

use ring::digest;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::engine::window::{Occurrence, Schedule};
use crate::format::Serial;
use crate::time::{secs_i64, Mono, Stamp, UnixTime};

mod causes;
pub(crate) use causes::{causes, InForce, InForceSet};

/// Why a reboot is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// A feature in force ended and no renewal keeps it.
    LicenseExpired,
    /// A new license changed the enabled set.
    LicenseChanged,
    /// A licensable feature enabled in the configuration got its license.
    FeatureLicensed,
}

impl Cause {
    /// Every cause, in protocol order.
    pub(crate) const ALL: [Cause; 3] = [
        Cause::LicenseExpired,
        Cause::LicenseChanged,
        Cause::FeatureLicensed,
    ];

    /// The protocol's word.
    pub fn word(self) -> &'static str {
        match self {
            Cause::LicenseExpired => "license-expired",
            Cause::LicenseChanged => "license-changed",
            Cause::FeatureLicensed => "feature-licensed",
        }
    }

    /// The cause a protocol word names (exact, lower case).
    pub fn parse(word: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.word() == word)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// The phone's call state as the supervisor says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallState {
    Idle,
    Active,
}

impl CallState {
    /// The protocol's word: `idle` or `active`.
    pub fn word(self) -> &'static str {
        match self {
            CallState::Idle => "idle",
            CallState::Active => "active",
        }
    }

    /// The state a protocol word names (exact, lower case).
    pub fn parse(word: &str) -> Option<CallState> {
        match word {
            "idle" => Some(CallState::Idle),
            "active" => Some(CallState::Active),
            _ => None,
        }
    }
}

impl std::fmt::Display for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// The timers of the rules (from the configuration), in seconds, all measured on the
/// monotonic clock; and the reboot windows, on the wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RebootTiming {
    /// Continuous idle before a REBOOT may be sent (30 s).
    pub idle_grace: u64,
    /// After `OK`, how long before asking again if still running (10 min).
    pub reask: u64,
    /// The site-license stagger window (1 h).
    pub(crate) stagger_window: u64,
    /// The reboot windows (`[reboot]`) and this phone's MAC, which spreads the fleet
    /// over each window; `None`: no window, a reboot is asked when idle.
    pub(crate) windows: Option<(Arc<Schedule>, Serial)>,
}

/// The extra delay of this phone for reboots caused by a site license:
/// `(first 8 bytes of SHA-256(mac) as u64) mod window`, the MAC written as in its file
/// name (12 lowercase hex digits), the 8 bytes read big-endian.
pub(crate) fn stagger_delay(mac: Serial, window: u64) -> u64 {
    if window == 0 {
        return 0;
    }
    let hash = digest::digest(&digest::SHA256, mac.to_string().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_be_bytes(first) % window
}

/// Where a need stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Waiting for the moment to ask.
    Waiting,
    /// REBOOT `id` sent at `at`; no answer yet.
    Asked { id: u64, at: UnixTime },
    /// `OK` at `at` (`at_mono` on the monotonic clock): the reboot will happen.
    Accepted {
        at: UnixTime,
        #[serde(default)]
        at_mono: Mono,
    },
}

/// One need for a reboot. The wall-clock instants are for people; the wait is decided
/// on the monotonic `ready_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Need {
    pub(crate) since: UnixTime,
    /// Not before this instant (the stagger delay of a site cause).
    pub not_before: UnixTime,
    /// The same on the monotonic clock (this boot's: the record is kept for one boot).
    #[serde(default)]
    pub ready_at: Mono,
    pub phase: Phase,
    /// For a cause that waits for a reboot window: until when (this boot's monotonic
    /// clock), after which it is asked at the next idle moment. Absent from records of
    /// agents before windows: such a need waits for none, as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_deadline: Option<Mono>,
}

/// What the machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send `REBOOT <id> <cause>`.
    SendReboot { id: u64, cause: Cause },
    /// Log this (for a field engineer).
    Log(String),
}

/// What a pending reboot waits for, for `status` (deadlines on the monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    Nothing,
    Connection,
    Idle,
    IdleGrace {
        until: Mono,
    },
    Stagger {
        until: Mono,
    },
    /// This phone's point in the next reboot window (`ready`, on the wall clock), or
    /// the window's deadline (`deadline`, monotonic), whichever comes first.
    Window {
        ready: UnixTime,
        occurrence: Occurrence,
        deadline: Mono,
    },
    Answer {
        id: u64,
    },
    StillRunningAfterOk {
        until: Mono,
    },
}

/// The reboot state machine. The needs are what persists across agent restarts; the
/// connection and call state are learned again from the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct RebootMachine {
    pub(crate) needs: BTreeMap<Cause, Need>,
    #[serde(skip)]
    connected: bool,
    /// The last call state heard and since when; `None`: unknown (counts as busy).
    #[serde(skip)]
    call: Option<(CallState, Stamp)>,
    #[serde(skip)]
    next_id: u64,
    /// The request made (asked, or accepted by `OK`), kept even when the needs it served
    /// are gone: a new need joins it instead of asking a second time while the first is
    /// unanswered or its reboot is under way.
    #[serde(skip)]
    request: Option<Phase>,
}

impl RebootMachine {
    /// A reboot is needed for `cause` from `now`; `site` causes wait the stagger delay.
    /// A need already there for that cause is kept as it is (one request per cause).
    pub(crate) fn need(
        &mut self,
        cause: Cause,
        site: bool,
        mac: Serial,
        timing: &RebootTiming,
        now: Stamp,
    ) {
        let delay = if site {
            stagger_delay(mac, timing.stagger_window)
        } else {
            0
        };
        // A request already outstanding or accepted serves this need too: the reboot
        // applies the whole feature set.
        let phase = self.request.unwrap_or(Phase::Waiting);
        let window_deadline = timing
            .windows
            .as_ref()
            .filter(|(schedule, _)| schedule.causes.contains(&cause))
            .map(|(schedule, _)| now.mono.plus_secs(schedule.deadline));
        self.needs.entry(cause).or_insert(Need {
            since: now.wall,
            not_before: now.wall.saturating_add(secs_i64(delay)),
            ready_at: now.mono.plus_secs(delay),
            phase,
            window_deadline,
        });
    }

    /// Makes the needs those of `wanted` (cause → site cause): a cause no longer called
    /// for is forgotten, a new one is added; one already there is kept as it is, so a
    /// cause is never asked twice. Returns the causes added.
    pub(crate) fn settle(
        &mut self,
        wanted: &BTreeMap<Cause, bool>,
        mac: Serial,
        timing: &RebootTiming,
        now: Stamp,
    ) -> Vec<Cause> {
        // Added first, so that a new cause joins a request already outstanding.
        let mut added = Vec::new();
        for (&cause, &site) in wanted {
            if !self.needs.contains_key(&cause) {
                self.need(cause, site, mac, timing, now);
                added.push(cause);
            }
        }
        self.needs.retain(|cause, _| wanted.contains_key(cause));
        added
    }

    /// The last call state heard and since when (`None`: unknown).
    pub fn call(&self) -> Option<(CallState, Stamp)> {
        self.call
    }

    /// The needs as a restarted agent takes them back, with the reboot the supervisor
    /// last accepted (`accepted`, kept even when the needs it served are gone): a
    /// request that was outstanding went with the old connection (no answer will come),
    /// so it is asked again; an accepted one stays accepted, and a new need joins it.
    pub(crate) fn restored(needs: BTreeMap<Cause, Need>, accepted: Option<Phase>) -> RebootMachine {
        let request = needs
            .values()
            .map(|n| n.phase)
            .chain(accepted)
            .find(|p| matches!(p, Phase::Accepted { .. }));
        let mut m = RebootMachine {
            needs,
            request,
            ..RebootMachine::default()
        };
        m.connection(false);
        m
    }

    /// The reboot the supervisor accepted (`OK`), if any: kept by a restarted agent.
    pub(crate) fn accepted(&self) -> Option<Phase> {
        self.request.filter(|p| matches!(p, Phase::Accepted { .. }))
    }

    /// The supervisor connection came up (after HELLO) or went down.
    pub(crate) fn connection(&mut self, up: bool) {
        self.connected = up;
        if !up {
            // No answer will come on this connection: no reboot counted, ask again.
            self.call = None;
            if let Some(Phase::Asked { .. }) = self.request {
                self.request = None;
            }
            for need in self.needs.values_mut() {
                if let Phase::Asked { .. } = need.phase {
                    need.phase = Phase::Waiting;
                }
            }
        }
    }

    /// `CALL-STATE` from the supervisor. Only the connection that is up speaks for the
    /// phone: a line read after its connection dropped (still in the read buffer) counts
    /// for nothing, or a reconnect could take an old idle for the new one's.
    pub fn call_state(&mut self, call: CallState, now: Stamp) {
        if !self.connected {
            return;
        }
        // Idle continues from its start when repeated; any change restarts the clock.
        if self.call.map(|(c, _)| c) != Some(call) {
            self.call = Some((call, now));
        }
    }

    /// `OK <id>`: the reboot will happen; every need it served is accepted.
    pub fn ok(&mut self, id: u64, now: Stamp) -> Vec<Action> {
        if !self.is_outstanding(id) {
            return vec![Action::Log(format!(
                "OK {id} answers no outstanding REBOOT; ignored"
            ))];
        }
        let accepted = Phase::Accepted {
            at: now.wall,
            at_mono: now.mono,
        };
        self.request = Some(accepted);
        for need in self.needs.values_mut() {
            need.phase = accepted;
        }
        Vec::new()
    }

    /// `BUSY <id>`: refused because of a call: wait for a fresh idle period.
    pub fn busy(&mut self, id: u64, now: Stamp) -> Vec<Action> {
        if !self.is_outstanding(id) {
            return vec![Action::Log(format!(
                "BUSY {id} answers no outstanding REBOOT; ignored"
            ))];
        }
        self.request = None;
        for need in self.needs.values_mut() {
            need.phase = Phase::Waiting;
        }
        // The supervisor says a call is on, whatever it said before.
        self.call = Some((CallState::Active, now));
        Vec::new()
    }

    /// Whether `id` is the REBOOT sent and not answered yet.
    pub(crate) fn is_outstanding(&self, id: u64) -> bool {
        matches!(self.request, Some(Phase::Asked { id: asked, .. }) if asked == id)
    }

    /// Decides at `now`: the actions to take, and when to look again.
    pub fn poll(&mut self, now: Stamp, timing: &RebootTiming) -> (Vec<Action>, Option<Mono>) {
        let mut actions = Vec::new();
        // After OK and still running `reask` later: say so, and ask again.
        if let Some(Phase::Accepted { at_mono, .. }) = self.request {
            if now.mono >= at_mono.plus_secs(timing.reask) {
                self.request = None;
            }
        }
        for (cause, need) in self.needs.iter_mut() {
            if let Phase::Accepted { at_mono, .. } = need.phase {
                if now.mono >= at_mono.plus_secs(timing.reask) {
                    actions.push(Action::Log(format!(
                        "still running {} s after the supervisor accepted the reboot for {}; asking again",
                        now.mono.since(at_mono).as_secs(),
                        cause.word()
                    )));
                    need.phase = Phase::Waiting;
                }
            }
        }
        let waiting = self.waiting(now, timing);
        if waiting == Waiting::Nothing && self.needs.values().any(|n| n.phase == Phase::Waiting) {
            // One request serves every need; it names the oldest cause.
            let cause = self
                .needs
                .iter()
                .filter(|(_, n)| n.phase == Phase::Waiting)
                .min_by_key(|(_, n)| n.since)
                .map(|(c, _)| *c);
            if let Some(cause) = cause {
                self.next_id += 1;
                let id = self.next_id;
                for need in self
                    .needs
                    .values_mut()
                    .filter(|n| n.phase == Phase::Waiting)
                {
                    need.phase = Phase::Asked { id, at: now.wall };
                }
                self.request = Some(Phase::Asked { id, at: now.wall });
                actions.push(Action::SendReboot { id, cause });
            }
        }
        (actions, self.poll_wake(now, timing))
    }

    /// When [`poll`](Self::poll) has something to do next by the clock alone (the end of
    /// the idle grace, of the stagger delay, or of the wait after `OK`), if still ahead
    /// of `now`. A wait already over is no wake: `poll` acts on it at once when it can,
    /// and when it cannot (no link, a call on) what it waits for comes as an event; a
    /// past instant would only wake the loop again and again (found by the simulator).
    pub fn poll_wake(&self, now: Stamp, timing: &RebootTiming) -> Option<Mono> {
        match self.waiting(now, timing) {
            Waiting::IdleGrace { until }
            | Waiting::Stagger { until }
            | Waiting::Window {
                deadline: until, ..
            }
            | Waiting::StillRunningAfterOk { until } => Some(until).filter(|u| *u > now.mono),
            _ => None,
        }
    }

    /// When [`poll`](Self::poll) has something to do next by the wall clock: this
    /// phone's point in the next reboot window, if that is what it waits for. (A clock
    /// step wakes the loop anyway: the window is looked at again then.)
    pub fn poll_wake_wall(&self, now: Stamp, timing: &RebootTiming) -> Option<UnixTime> {
        match self.waiting(now, timing) {
            Waiting::Window { ready, .. } => Some(ready).filter(|r| *r > now.wall),
            _ => None,
        }
    }

    /// What a pending reboot waits for now.
    pub fn waiting(&self, now: Stamp, timing: &RebootTiming) -> Waiting {
        let waiting: Vec<&Need> = self
            .needs
            .values()
            .filter(|n| n.phase == Phase::Waiting)
            .collect();
        if waiting.is_empty() {
            if let Some(id) = self.needs.values().find_map(|n| match n.phase {
                Phase::Asked { id, .. } => Some(id),
                _ => None,
            }) {
                return Waiting::Answer { id };
            }
            return match self
                .needs
                .values()
                .filter_map(|n| match n.phase {
                    Phase::Accepted { at_mono, .. } => Some(at_mono.plus_secs(timing.reask)),
                    _ => None,
                })
                .min()
            {
                Some(until) => Waiting::StillRunningAfterOk { until },
                None => Waiting::Nothing,
            };
        }
        if !self.connected {
            return Waiting::Connection;
        }
        // Every reboot waiting waits for a window (none past its deadline): the window
        // first, then the call. Any other asks as before, and serves them all.
        let window = timing.windows.as_ref().and_then(|(schedule, mac)| {
            let deadline = waiting
                .iter()
                .map(|n| n.window_deadline.filter(|d| now.mono < *d))
                .collect::<Option<Vec<Mono>>>()?
                .into_iter()
                .min()?;
            let occurrence = schedule.current_or_next(now.wall)?;
            let length = occurrence.closes.saturating_sub(occurrence.opens);
            let spread = stagger_delay(*mac, u64::try_from(length).unwrap_or(0));
            let ready = occurrence.opens.saturating_add(secs_i64(spread));
            Some((ready, occurrence, deadline))
        });
        if let Some((ready, occurrence, deadline)) = window {
            if now.wall < ready {
                return Waiting::Window {
                    ready,
                    occurrence,
                    deadline,
                };
            }
        }
        let idle_since = match self.call {
            Some((CallState::Idle, since)) => since,
            _ => return Waiting::Idle,
        };
        // On the monotonic clock, to the nanosecond: never a moment short of the grace.
        let grace_end = idle_since.mono.plus_secs(timing.idle_grace);
        if now.mono < grace_end {
            return Waiting::IdleGrace { until: grace_end };
        }
        if window.is_some() {
            // In the window, past this phone's point in it: the spread over the window
            // replaces the hour's stagger.
            return Waiting::Nothing;
        }
        // A site cause waits for its stagger delay (the earliest need decides).
        let ready_at = waiting.iter().map(|n| n.ready_at).min().unwrap_or(now.mono);
        if now.mono < ready_at {
            return Waiting::Stagger { until: ready_at };
        }
        Waiting::Nothing
    }
}

#[cfg(test)]
mod tests;
