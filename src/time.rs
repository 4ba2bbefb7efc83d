//! Time as the agent counts it: wall-clock Unix seconds ([`UnixTime`]), the one reading
//! of the real clock ([`real_now`]), and saturating conversions of second counts.

use std::time::{SystemTime, UNIX_EPOCH};

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
