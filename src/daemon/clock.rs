//! The daemon's clocks: the wall clock and the monotonic one, read together as a
//! [`Stamp`], or (a **test aid**) the test clock: when `LICENSE_AGENT_TEST_NOW` is set,
//! the wall clock starts there and runs on with the real clock, and the control socket's
//! `test-set-time` moves it. Setting it forward is time passing (the idle grace and the
//! stagger delay can be crossed too); setting it back never shortens a wait (see
//! [`DaemonClock::stamp`]). Timers are armed on the real clocks, shifted by the same
//! offsets.

use super::DaemonError;
use crate::phone::{parse_instant, TEST_NOW_VAR};
use crate::time::{real_now, secs_i64, Mono, Stamp, UnixTime};

/// The daemon's clocks: the wall clock and the monotonic one, or (test aid) the test
/// clock.
pub(crate) struct DaemonClock {
    /// Added to the real wall clock (test clock only).
    offset: i64,
    /// The test clock's last monotonic reading: it never goes back.
    last_mono: std::cell::Cell<Mono>,
    /// The machine's monotonic clock at that reading.
    last_real: std::cell::Cell<Option<Mono>>,
    pub(super) test: bool,
}

impl DaemonClock {
    /// The real clocks, or the test clock when [`TEST_NOW_VAR`] is set.
    pub(crate) fn from_env() -> Result<DaemonClock, DaemonError> {
        let real = DaemonClock {
            offset: 0,
            last_mono: std::cell::Cell::new(Mono::ZERO),
            last_real: std::cell::Cell::new(None),
            test: false,
        };
        match std::env::var(TEST_NOW_VAR) {
            Ok(text) => {
                let start = parse_instant(&text)
                    .map_err(|e| DaemonError::TestClock(format!("{TEST_NOW_VAR}: {e}")))?;
                log::warn!("TEST CLOCK in use ({TEST_NOW_VAR}): time is not the machine's");
                Ok(DaemonClock {
                    offset: start.saturating_sub(real_now()),
                    test: true,
                    ..real
                })
            }
            Err(_) => Ok(real),
        }
    }

    /// Both clocks, read now. On the test clock the monotonic clock is the test wall
    /// clock in nanoseconds, running on with the machine's monotonic clock while the
    /// test sets the wall clock back: so it is the same for every agent started on that
    /// test clock (a restart within a "boot" keeps its deadlines), setting the time
    /// forward is time passing (the idle grace and the stagger delay can be crossed),
    /// setting it back never makes a wait shorter, and real time always passes.
    pub(crate) fn stamp(&self) -> Stamp {
        if !self.test {
            return Stamp {
                wall: real_now(),
                mono: Mono::now(),
            };
        }
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let wall = secs_i64(real.as_secs()).saturating_add(self.offset);
        let nanos = u64::try_from(wall)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(real.subsec_nanos()));
        // Real time passing always moves it on (held alone, it stood still after the
        // test set the clock far ahead and back: no grace ever ended again).
        let real_mono = Mono::now();
        let ran_on = match self.last_real.get() {
            Some(last) => self.last_mono.get().plus(real_mono.since(last)),
            None => Mono::ZERO,
        };
        let mono = ran_on.max(Mono::from_nanos(nanos));
        self.last_mono.set(mono);
        self.last_real.set(Some(real_mono));
        Stamp { wall, mono }
    }

    /// Test aid: the wall clock reads `t` from now on.
    pub(super) fn set(&mut self, t: UnixTime) {
        self.offset = t.saturating_sub(real_now());
    }

    /// The real wall-clock instant at which the daemon's wall clock reads `t`.
    pub(super) fn to_real(&self, t: UnixTime) -> UnixTime {
        t.saturating_sub(self.offset)
    }
}
