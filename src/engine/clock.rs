//! Time sanity (`agent-rules.md`, "Time"): is the wall clock fit to judge expiry, and at
//! which instant should the agent judge?
//!
//! - Before the agent's build time the clock is *unsynced* (a phone boots at 1970 until
//!   SNTP sets it): no time-based decision at all. So is a clock past 2106-02-07, the
//!   last instant a license can name (a clock set absurdly far ahead must not be trusted,
//!   or its trusted time would expire every license for good).
//! - More than the tolerance (24 h by default) behind the latest time the agent has
//!   trusted, it was *wound back*: judge at the trusted time, so setting the clock back
//!   never revives an expired license.

use crate::time::{secs_i64, UnixTime};

include!(concat!(env!("OUT_DIR"), "/build_time.rs"));

/// How often, at most, the latest trusted time is written to flash.
pub(crate) const TRUSTED_TIME_WRITE_INTERVAL: i64 = 3_600;

crate::words::words! {
    /// What the clock is fit for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum ClockVerdict {
        /// Judge at the wall clock.
        Ok = "ok",
        /// Earlier than the build time: make no time-based decision.
        Unsynced = "unsynced",
        /// More than the tolerance behind the latest trusted time: judge at that time.
        Windback = "windback",
    }
}

/// The clock as judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClockReading {
    pub(crate) verdict: ClockVerdict,
    /// What the wall clock said.
    pub(crate) wall: UnixTime,
    /// The instant to judge at; `None` when unsynced.
    pub(crate) judge_at: Option<UnixTime>,
}

/// Judges the wall clock against the build time and the persisted latest trusted time.
pub(crate) fn judge_clock(
    wall: UnixTime,
    build_time: UnixTime,
    latest_trusted: Option<UnixTime>,
    windback_tolerance: u64,
) -> ClockReading {
    let tolerance = secs_i64(windback_tolerance);
    // Past the last instant a license can name (2106) is no time to judge at either, and
    // a trusted time out of that range (a damaged meta.json) is no trusted time.
    let last = i64::from(u32::MAX);
    let latest_trusted = latest_trusted.filter(|t| (0..=last).contains(t));
    let (verdict, judge_at) = if wall < build_time || wall > last {
        (ClockVerdict::Unsynced, None)
    } else {
        match latest_trusted {
            Some(trusted) if wall < trusted.saturating_sub(tolerance) => {
                (ClockVerdict::Windback, Some(trusted))
            }
            _ => (ClockVerdict::Ok, Some(wall)),
        }
    };
    ClockReading {
        verdict,
        wall,
        judge_at,
    }
}

/// The trusted time to persist now, if a write is due: only from a sane clock, only
/// forward, and at most once per [`TRUSTED_TIME_WRITE_INTERVAL`] to spare the flash.
pub(crate) fn trusted_time_to_write(
    reading: &ClockReading,
    persisted: Option<UnixTime>,
) -> Option<UnixTime> {
    if reading.verdict != ClockVerdict::Ok {
        return None;
    }
    match persisted {
        Some(p) if reading.wall < p.saturating_add(TRUSTED_TIME_WRITE_INTERVAL) => None,
        _ => Some(reading.wall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: UnixTime = 1_790_000_000;
    const DAY: u64 = 86_400;

    #[test]
    fn a_clock_before_the_build_time_is_unsynced() {
        let r = judge_clock(0, BUILD, None, DAY);
        assert_eq!((r.verdict, r.judge_at), (ClockVerdict::Unsynced, None));
        let r = judge_clock(BUILD - 1, BUILD, Some(BUILD + 100), DAY);
        assert_eq!(r.verdict, ClockVerdict::Unsynced);
        assert_eq!(
            judge_clock(BUILD, BUILD, None, DAY).verdict,
            ClockVerdict::Ok
        );
    }

    #[test]
    fn a_clock_past_2106_is_unsynced_and_a_trusted_time_out_of_range_is_none() {
        let last = i64::from(u32::MAX);
        assert_eq!(
            judge_clock(last, BUILD, None, DAY).verdict,
            ClockVerdict::Ok
        );
        for wall in [last + 1, i64::MAX] {
            let r = judge_clock(wall, BUILD, None, DAY);
            assert_eq!((r.verdict, r.judge_at), (ClockVerdict::Unsynced, None));
        }
        for trusted in [i64::MAX, last + 1, -1, i64::MIN] {
            let r = judge_clock(BUILD, BUILD, Some(trusted), DAY);
            assert_eq!(
                (r.verdict, r.judge_at),
                (ClockVerdict::Ok, Some(BUILD)),
                "{trusted}"
            );
        }
        // Any reading at all: no overflow, and a judged instant a license can name.
        for wall in [i64::MIN, -1, 0, BUILD, last, i64::MAX] {
            for trusted in [None, Some(i64::MIN), Some(BUILD + 5), Some(i64::MAX)] {
                for tolerance in [0, DAY, u64::MAX] {
                    let r = judge_clock(wall, BUILD, trusted, tolerance);
                    assert!(r.judge_at.is_none_or(|t| (0..=last).contains(&t)), "{r:?}");
                    let _ = trusted_time_to_write(&r, trusted);
                }
            }
        }
    }

    #[test]
    fn windback_beyond_the_tolerance_judges_at_the_trusted_time() {
        let trusted = BUILD + 10 * 86_400;
        // Exactly the tolerance behind: still ok, judged at the wall clock.
        let r = judge_clock(trusted - 86_400, BUILD, Some(trusted), DAY);
        assert_eq!(
            (r.verdict, r.judge_at),
            (ClockVerdict::Ok, Some(trusted - 86_400))
        );
        // One second more: windback, judged at the trusted time.
        let r = judge_clock(trusted - 86_401, BUILD, Some(trusted), DAY);
        assert_eq!(
            (r.verdict, r.judge_at),
            (ClockVerdict::Windback, Some(trusted))
        );
        // A configured tolerance of one hour.
        let r = judge_clock(trusted - 3_601, BUILD, Some(trusted), 3_600);
        assert_eq!(r.verdict, ClockVerdict::Windback);
    }

    #[test]
    fn trusted_time_is_written_at_most_hourly_and_only_forward_from_a_sane_clock() {
        let ok = |wall| judge_clock(wall, BUILD, Some(BUILD), DAY);
        assert_eq!(
            trusted_time_to_write(&ok(BUILD + 10), None),
            Some(BUILD + 10)
        );
        assert_eq!(trusted_time_to_write(&ok(BUILD + 3_599), Some(BUILD)), None);
        assert_eq!(
            trusted_time_to_write(&ok(BUILD + 3_600), Some(BUILD)),
            Some(BUILD + 3_600)
        );
        let wound = judge_clock(BUILD, BUILD, Some(BUILD + 5 * 86_400), DAY);
        assert_eq!(
            trusted_time_to_write(&wound, Some(BUILD + 5 * 86_400)),
            None
        );
        let unsynced = judge_clock(5, BUILD, None, DAY);
        assert_eq!(trusted_time_to_write(&unsynced, None), None);
    }
}
