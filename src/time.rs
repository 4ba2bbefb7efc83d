//! Time as the agent counts it, on two clocks.
//!
//! - The wall clock, for the rules' instants (a license's start and end, the next poll):
//!   [`UnixTime`], Unix seconds, read once by [`real_now`].
//! - The monotonic clock, for every wait the agent measures as a length (the idle grace
//!   before a REBOOT, the stagger delay, the re-ask after `OK`, the supervisor link's
//!   back-off, the control clients' deadlines): [`Mono`], nanoseconds on
//!   `CLOCK_BOOTTIME`. It starts at the boot, never goes back, and is the same for every
//!   process of one boot, so a deadline kept in the boot's reboot record still holds for
//!   an agent restarted within that boot; a wall-clock step (SNTP setting the clock at
//!   boot, a hand correction) neither shortens nor stretches a wait. A `u64` of
//!   nanoseconds lasts 584 years of uptime.
//!
//! A [`Stamp`] is both read at one moment. Every operation saturates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Wall-clock Unix seconds, UTC. Signed, so a phone clock at 1970 or before is still a
/// number.
pub(crate) type UnixTime = i64;

/// The real wall clock now (0 before 1970).
pub(crate) fn real_now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| secs_i64(d.as_secs()))
}

/// A count of seconds as a signed number, saturating at `i64::MAX`.
pub(crate) fn secs_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// An instant of the monotonic clock: nanoseconds since the boot.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub(crate) struct Mono(u64);

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Mono {
    /// The boot.
    pub(crate) const ZERO: Mono = Mono(0);

    /// Reads `CLOCK_BOOTTIME` (`CLOCK_MONOTONIC` if the kernel lacks it).
    pub(crate) fn now() -> Mono {
        use nix::time::{clock_gettime, ClockId};
        let read = clock_gettime(ClockId::CLOCK_BOOTTIME)
            .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC));
        match read {
            Ok(t) => {
                let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
                let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
                Mono(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos))
            }
            // Both clocks exist on every Linux this runs on; if not, time stands still
            // and every wait simply lasts longer (never shorter).
            Err(_) => Mono::ZERO,
        }
    }

    pub(crate) const fn from_nanos(nanos: u64) -> Mono {
        Mono(nanos)
    }

    #[cfg(test)]
    pub(crate) const fn from_secs(secs: u64) -> Mono {
        Mono(secs.saturating_mul(NANOS_PER_SEC))
    }

    #[cfg(test)]
    pub(crate) const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    pub(crate) fn plus(self, d: Duration) -> Mono {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Mono(self.0.saturating_add(nanos))
    }

    /// `self + secs` seconds, saturating.
    pub(crate) fn plus_secs(self, secs: u64) -> Mono {
        Mono(self.0.saturating_add(secs.saturating_mul(NANOS_PER_SEC)))
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub(crate) fn since(self, earlier: Mono) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Whole seconds from `self` to `later`, rounded up (zero if `later` is earlier): how
    /// a monotonic deadline is shown on the wall clock without showing it early.
    pub(crate) fn secs_until_ceil(self, later: Mono) -> u64 {
        let nanos = later.0.saturating_sub(self.0);
        nanos / NANOS_PER_SEC + u64::from(nanos % NANOS_PER_SEC != 0)
    }

    /// Whole milliseconds from `self` to `later`, rounded up: a `poll` timeout that
    /// never wakes before the deadline.
    pub(crate) fn millis_until_ceil(self, later: Mono) -> u64 {
        let nanos = later.0.saturating_sub(self.0);
        nanos / 1_000_000 + u64::from(nanos % 1_000_000 != 0)
    }
}

/// Both clocks read at one moment: the wall clock for the rules' instants, the
/// monotonic one for the waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Unix seconds (the daemon's wall clock).
    pub(crate) wall: UnixTime,
    pub(crate) mono: Mono,
}

impl Stamp {
    #[cfg(test)]
    /// A stamp where both clocks read `secs` (tests, and pure code fed whole seconds).
    pub(crate) fn at_secs(secs: UnixTime) -> Stamp {
        Stamp {
            wall: secs,
            mono: Mono::from_secs(u64::try_from(secs).unwrap_or(0)),
        }
    }

    /// The wall-clock second at which monotonic instant `at` comes (rounded up), as
    /// seen from this reading: for showing a monotonic deadline to people.
    pub(crate) fn wall_of(&self, at: Mono) -> UnixTime {
        if at >= self.mono {
            let ahead = i64::try_from(self.mono.secs_until_ceil(at)).unwrap_or(i64::MAX);
            self.wall.saturating_add(ahead)
        } else {
            let ago = self.mono.since(at).as_secs();
            self.wall
                .saturating_sub(i64::try_from(ago).unwrap_or(i64::MAX))
        }
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm), in the
/// proleptic Gregorian calendar, on either side of 1970.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of days since 1970-01-01: the one calendar of
/// the crate (the status's RFC 3339, the reboot windows' local time, syslog's dates).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_and_rounds_towards_never_early() {
        let t = Mono::from_nanos(1_500_000_000);
        assert_eq!(t.plus(Duration::from_millis(500)), Mono::from_secs(2));
        assert_eq!(
            Mono::from_nanos(u64::MAX).plus_secs(u64::MAX).as_nanos(),
            u64::MAX
        );
        assert_eq!(Mono::from_secs(u64::MAX).as_nanos(), u64::MAX);
        assert_eq!(Mono::ZERO.since(t), Duration::ZERO);
        assert_eq!(t.millis_until_ceil(t.plus(Duration::from_nanos(1))), 1);
        assert_eq!(t.millis_until_ceil(t.plus(Duration::from_millis(3))), 3);
        assert_eq!(t.millis_until_ceil(Mono::ZERO), 0);
        assert_eq!(t.secs_until_ceil(t.plus(Duration::from_millis(2_001))), 3);
        let s = Stamp {
            wall: 1_000,
            mono: t,
        };
        assert_eq!(s.wall_of(t.plus(Duration::from_millis(2_001))), 1_003);
        assert_eq!(s.wall_of(t), 1_000);
        assert_eq!(s.wall_of(Mono::ZERO), 999);
    }

    #[test]
    fn the_clock_goes_forward() {
        let a = Mono::now();
        let b = Mono::now();
        assert!(b >= a && a > Mono::ZERO);
    }
}
