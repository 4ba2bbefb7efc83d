//! The wall-clock timer: a `CLOCK_REALTIME` timerfd with `TFD_TIMER_CANCEL_ON_SET`,
//! armed for the rules' next instant, so that a step of the wall clock wakes the loop to
//! decide again; and the signals the loop reads from a signalfd.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::timerfd::{TimerFd, TimerSetTimeFlags};

use super::{err, DaemonError};
use crate::time::UnixTime;

/// Arms the timer for real instant `at` (absolute, cancelled by a clock step).
pub(super) fn arm(timer: &TimerFd, at: Option<UnixTime>) -> Result<Armed, DaemonError> {
    // Never 0 (0 disarms); nothing to wait for is the end of the 64-bit range.
    let secs = at.unwrap_or(i64::MAX).max(1);
    let flags = TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET;
    match timerfd_settime_abs(timer, secs, flags) {
        Ok(()) => Ok(Armed::Yes),
        // The clock was set since the timer was last read: the kernel refuses to arm it
        // until that is read (found on the emulated phone, SNTP setting the clock while
        // the loop was busy: the daemon used to exit here).
        Err(Errno::ECANCELED) => {
            let _ = read_timer(timer);
            Ok(Armed::ClockStepped)
        }
        Err(e) => Err(err("arming the timer")(e)),
    }
}

/// What arming the timer found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Armed {
    Yes,
    /// Not armed: the wall clock was set meanwhile (now read from the timer).
    ClockStepped,
}

/// Arms `timer` for the wall-clock instant `secs`, where `time_t` is 64 bits.
#[cfg(not(all(target_arch = "arm", target_env = "gnu")))]
fn timerfd_settime_abs(timer: &TimerFd, secs: i64, flags: TimerSetTimeFlags) -> nix::Result<()> {
    use nix::sys::{time::TimeSpec, timerfd::Expiration};
    #[allow(clippy::unnecessary_cast)] // time_t is i64 on every target but 32-bit ARM
    let secs = secs.min(nix::libc::time_t::MAX as i64) as nix::libc::time_t;
    timer.set(Expiration::OneShot(TimeSpec::new(secs, 0)), flags)
}

/// Arms `timer` for the wall-clock instant `secs` on 32-bit ARM, whose glibc `time_t`
/// (and so nix's) is 32 bits: an instant past 2038-01-19 would be clamped into the
/// past and the timer would fire at once, for ever (a busy loop, found on the emulated
/// phone). The kernel's `timerfd_settime64` takes 64-bit seconds.
#[cfg(all(target_arch = "arm", target_env = "gnu"))]
fn timerfd_settime_abs(timer: &TimerFd, secs: i64, flags: TimerSetTimeFlags) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    /// `struct __kernel_timespec`: 64-bit seconds and nanoseconds.
    #[repr(C)]
    struct KernelTimespec {
        sec: i64,
        nsec: i64,
    }
    /// `struct __kernel_itimerspec`.
    #[repr(C)]
    struct KernelItimerspec {
        interval: KernelTimespec,
        value: KernelTimespec,
    }
    /// `__NR_timerfd_settime64` on ARM EABI (Linux 5.1 and later).
    const SYS_TIMERFD_SETTIME64: nix::libc::c_long = 411;
    let spec = KernelItimerspec {
        interval: KernelTimespec { sec: 0, nsec: 0 },
        value: KernelTimespec { sec: secs, nsec: 0 },
    };
    // SAFETY: the syscall reads one `__kernel_itimerspec` from `spec`, which lives
    // across the call, and writes nothing (the old value pointer is null).
    let rc = unsafe {
        nix::libc::syscall(
            SYS_TIMERFD_SETTIME64,
            timer.as_fd().as_raw_fd(),
            flags.bits(),
            &spec as *const KernelItimerspec,
            std::ptr::null_mut::<KernelItimerspec>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// What the timer said when it became readable.
pub(super) enum TimerEvent {
    Expired,
    ClockStepped,
    Nothing,
}

pub(super) fn read_timer(timer: &TimerFd) -> TimerEvent {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 8];
    match nix::unistd::read(timer.as_fd().as_raw_fd(), &mut buf) {
        Ok(_) => TimerEvent::Expired,
        Err(Errno::ECANCELED) => TimerEvent::ClockStepped,
        Err(_) => TimerEvent::Nothing,
    }
}

/// Blocks the signals the daemon reads from its signalfd. Called first thing by `run`
/// (before the configuration is read), so that a SIGHUP sent while the agent starts is
/// kept for the loop instead of killing it.
pub(crate) fn block_signals() -> Result<SigSet, DaemonError> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(err("blocking signals"))?;
    Ok(mask)
}
