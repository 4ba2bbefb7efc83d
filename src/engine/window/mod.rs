//! Reboot windows (issue 29): the times a site wants its phones to reboot, by weekday
//! and local time, in the phone's time zone given as a POSIX `TZ` rule ([`tz`]: no
//! time-zone database on the flash), with daylight saving time handled.
//!
//! Pure: a [`Schedule`] and an instant in, the window occurrence in force or next out.
//! A window is `DAYS HH:MM-HH:MM` (`Mon-Fri 01:00-04:00`, `Sat,Sun 22:00-02:00` across
//! midnight, `daily 02:00-03:00`; an end equal to the start is 24 hours), starting on
//! each of its days at its local start time and lasting its length in real seconds
//! (a window over a change of the clocks is an hour longer or shorter on the local
//! dial, never in time). A start in the hour the clocks skip comes as far past the jump
//! as it lay past its start; a start in the hour they repeat is the first one.

pub(crate) mod tz;

use std::collections::BTreeSet;
use std::fmt;

use crate::engine::reboot::Cause;
use tz::Tz;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One window: the weekdays it starts on (bit 0 Monday … bit 6 Sunday), its local start
/// (seconds of the day) and its length (seconds, 1 to a day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    days: u8,
    start: i64,
    length: i64,
    text: String,
}

/// Why a window does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowError(pub(crate) String);

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn day_of(name: &str) -> Option<u8> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// `HH:MM` as seconds of the day (`24:00` is the end of the day).
fn clock_time(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let plain = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !plain(h) || !plain(m) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    let fits = (h < 24 && m < 60) || (h == 24 && m == 0);
    fits.then_some(h * 3600 + m * 60)
}

impl Window {
    /// Reads `DAYS HH:MM-HH:MM`.
    pub(crate) fn parse(text: &str) -> Result<Window, WindowError> {
        let bad = |why: &str| {
            Err(WindowError(format!(
                "{text:?}: {why} (a window is DAYS HH:MM-HH:MM, such as \"Mon-Fri 01:00-04:00\")"
            )))
        };
        let Some((days_text, times)) = text.trim().split_once(' ') else {
            return bad("days, a space, then the times");
        };
        let mut days = 0u8;
        if days_text.eq_ignore_ascii_case("daily") || days_text == "*" {
            days = 0x7f;
        } else {
            for part in days_text.split(',') {
                let (from, to) = part.split_once('-').unwrap_or((part, part));
                let (Some(from), Some(to)) = (day_of(from), day_of(to)) else {
                    return bad("days are Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges of them (Mon-Fri), or daily");
                };
                let mut d = from;
                loop {
                    days |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
        let Some((start, end)) = times.trim().split_once('-') else {
            return bad("a start and an end, HH:MM-HH:MM");
        };
        let (Some(start), Some(end)) = (clock_time(start), clock_time(end)) else {
            return bad("times are HH:MM, 00:00 to 24:00");
        };
        if start == 86_400 {
            return bad("a window starts before 24:00");
        }
        let length = (end - start).rem_euclid(86_400);
        Ok(Window {
            days,
            start,
            length: if length == 0 { 86_400 } else { length },
            text: text.trim().to_string(),
        })
    }

    /// The days in words (`Mon–Fri`, `Sat,Sun`, `daily`).
    fn days_words(&self) -> String {
        if self.days == 0x7f {
            return "daily".into();
        }
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for d in 0..7 {
            if self.days & (1 << d) == 0 {
                continue;
            }
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == d => *end = d,
                _ => runs.push((d, d)),
            }
        }
        runs.iter()
            .map(|&(a, b)| match b - a {
                0 => DAY_NAMES[a].to_string(),
                1 => format!("{},{}", DAY_NAMES[a], DAY_NAMES[b]),
                _ => format!("{}–{}", DAY_NAMES[a], DAY_NAMES[b]),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `Mon–Fri 01:00–04:00`.
    fn words(&self) -> String {
        let hm = |s: i64| format!("{:02}:{:02}", s / 3600 % 24, s / 60 % 60);
        format!(
            "{} {}–{}",
            self.days_words(),
            hm(self.start),
            hm(self.start + self.length)
        )
    }
}

/// One occurrence of a window: when it opens and closes, and which window it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Occurrence {
    pub(crate) opens: i64,
    pub(crate) closes: i64,
    pub(crate) window: usize,
}

/// The reboot windows of a phone, and which reboots wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub(crate) windows: Vec<Window>,
    pub(crate) tz: Tz,
    /// The causes whose reboot waits for a window.
    pub(crate) causes: BTreeSet<Cause>,
    /// How long a reboot waits for a window at most (seconds); after it, it is asked at
    /// the next idle moment.
    pub(crate) deadline: u64,
}

impl Schedule {
    /// The occurrence in force at `t` (the earliest, if several are), or the next one.
    /// `None` only without windows.
    pub(crate) fn current_or_next(&self, t: i64) -> Option<Occurrence> {
        let (offset, _) = self.tz.at(t);
        let today = t.saturating_add(offset).div_euclid(86_400);
        let mut best: Option<Occurrence> = None;
        // A window opened yesterday may still be open; every weekday comes within 8.
        for day in today.saturating_sub(1)..=today.saturating_add(8) {
            // 1970-01-01 was a Thursday: weekday 3 counting from Monday.
            let weekday = (day + 3).rem_euclid(7);
            for (i, w) in self.windows.iter().enumerate() {
                if w.days & (1 << weekday) == 0 {
                    continue;
                }
                let opens = self
                    .tz
                    .instant_of_local(day.saturating_mul(86_400).saturating_add(w.start));
                let closes = opens.saturating_add(w.length);
                if closes <= t {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => opens < b.opens,
                };
                if better {
                    best = Some(Occurrence {
                        opens,
                        closes,
                        window: i,
                    });
                }
            }
        }
        best
    }

    /// The window of `occurrence` in words with the zone's name then (`Mon–Fri
    /// 01:00–04:00 CET`).
    pub(crate) fn words(&self, occurrence: &Occurrence) -> String {
        let name = self.tz.name_at(occurrence.opens);
        match self.windows.get(occurrence.window) {
            Some(w) => format!("{} {name}", w.words()),
            None => String::new(),
        }
    }

    /// `t` in the phone's local time, with its offset (`2027-04-02T01:00+01:00`).
    pub(crate) fn local_time(&self, t: i64) -> String {
        let (offset, _) = self.tz.at(t);
        let local = t.saturating_add(offset);
        let (y, m, d) = crate::time::civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        let sign = if offset < 0 { '-' } else { '+' };
        let off = offset.unsigned_abs();
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}{sign}{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            off / 3600,
            off / 60 % 60
        )
    }
}

#[cfg(test)]
mod tests;
