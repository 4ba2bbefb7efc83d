//! When to look at the provisioning server again without being asked
//! (`agent-rules.md`): every `poll_interval` (1 h) while a licensable feature the
//! configuration enables is not in force, and every `renewal_check_interval` (1 day)
//! while a feature in force is Expiring Shortly, so that a renewal posted early is taken
//! before the end, without a reboot. Each interval is spread by ±10 % so that a fleet
//! that booted together does not poll together.

use std::collections::BTreeSet;

use super::{Evaluation, Status};
use crate::format::FeatureId;
use crate::time::{secs_i64, UnixTime};

/// Why the agent polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollReason {
    /// A configured feature has no license in force.
    Unlicensed(FeatureId),
    /// A feature in force is Expiring Shortly.
    Renewal(FeatureId),
}

/// The reason to poll at all, judged on `eval`; the unlicensed feature first, as its
/// interval is the shorter one by default.
pub(crate) fn poll_reason(eval: &Evaluation, configured: &BTreeSet<FeatureId>) -> Vec<PollReason> {
    let mut reasons: Vec<PollReason> = configured
        .iter()
        .filter(|id| !eval.features.iter().any(|f| f.id == **id && f.enabled()))
        .map(|id| PollReason::Unlicensed(*id))
        .collect();
    reasons.extend(
        eval.features
            .iter()
            .filter(|f| f.status == Status::ExpiringShortly)
            .map(|f| PollReason::Renewal(f.id)),
    );
    reasons
}

/// The interval `reason` calls for.
pub(crate) fn interval(reason: PollReason, poll_interval: u64, renewal_check_interval: u64) -> u64 {
    match reason {
        PollReason::Unlicensed(_) => poll_interval,
        PollReason::Renewal(_) => renewal_check_interval,
    }
}

/// The next poll after a fetch at `last`, `interval` seconds later spread by ±10 %:
/// `jitter` is any number (random per process); it is mixed with `last` so each poll
/// gets its own spread. At least 1 s after `last`; no overflow for any input.
pub(crate) fn next_poll(last: UnixTime, interval: u64, jitter: u64) -> UnixTime {
    let interval = interval.max(1);
    let tenth = interval / 10;
    let mixed = (jitter ^ last.unsigned_abs().rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // interval - tenth + [0, 2 × tenth]: within ±10 %, never below 1 s.
    let delay = (interval - tenth)
        .saturating_add((mixed >> 32) % (2 * tenth + 1))
        .max(1);
    last.saturating_add(secs_i64(delay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{evaluate, Held};
    use crate::format::Kind;
    use crate::testkit::{lic, T0};

    #[test]
    fn next_poll_stays_within_ten_percent_and_spreads() {
        let mut seen = BTreeSet::new();
        for jitter in 0..2_000u64 {
            let t = next_poll(1_000, 3_600, jitter.wrapping_mul(0x1234_5678_9abc_def1));
            assert!((1_000 + 3_240..=1_000 + 3_960).contains(&t), "{t}");
            seen.insert(t);
        }
        // Spread over the window, not a handful of values.
        assert!(seen.len() > 500, "{}", seen.len());
        // Tiny and huge intervals: at least 1 s, no overflow.
        assert_eq!(next_poll(5, 0, 7), 6);
        assert_eq!(next_poll(i64::MAX - 1, u64::MAX, 7), i64::MAX);
    }

    #[test]
    fn polls_for_an_unlicensed_configured_feature_and_for_a_renewal() {
        // vqmon (2) from a phone license until 1_800_000_000.
        let held = vec![Held {
            seq: 1,
            license: lic(Kind::Phone, &[(2, T0, Some(1_800_000_000))]),
        }];
        let configured: BTreeSet<FeatureId> = [FeatureId(2), FeatureId(3)].into();
        // Long before the end: only the configured feature 3 lacks a license.
        let eval = evaluate(&held, T0 + 1);
        assert_eq!(
            poll_reason(&eval, &configured),
            [PollReason::Unlicensed(FeatureId(3))]
        );
        // Within 31 days of the end: the renewal check joins.
        let eval = evaluate(&held, 1_800_000_000 - 86_400);
        assert_eq!(
            poll_reason(&eval, &configured),
            [
                PollReason::Unlicensed(FeatureId(3)),
                PollReason::Renewal(FeatureId(2))
            ]
        );
        // Ended: vqmon is unlicensed now.
        let eval = evaluate(&held, 1_800_000_000);
        assert_eq!(
            poll_reason(&eval, &configured),
            [
                PollReason::Unlicensed(FeatureId(2)),
                PollReason::Unlicensed(FeatureId(3))
            ]
        );
        assert!(poll_reason(&evaluate(&held, T0 + 1), &BTreeSet::new()).is_empty());
    }
}
