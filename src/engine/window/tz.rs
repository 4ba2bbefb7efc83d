//! The phone's local time from a POSIX `TZ` rule (POSIX.1-2017, 8.3 "TZ"), as embedded
//! phones give it instead of a time-zone database: `CET-1CEST,M3.5.0,M10.5.0/3`.
//!
//! `std offset [dst [offset] [,start[/time],end[/time]]]`: names of three or more
//! letters, or `<...>` quoted (`<+03>-3`); offsets `[+|-]hh[:mm[:ss]]` west of
//! Greenwich (so `CET-1` is UTC+1); the daylight offset defaults to one hour ahead of
//! standard; rules `Jn` (1–365, no 29 February), `n` (0–365, counting it) or `Mm.w.d`
//! (day `d` of week `w` of month `m`, week 5 the last), each at a local `time` (default
//! 02:00, and, as glibc and RFC 8536 allow, −167 to 167 hours). A rule with daylight
//! time and no dates takes the US rule (`M3.2.0,M11.1.0`), as glibc does.
//!
//! Pure and overflow-free: instants are `i64` Unix seconds, every sum checked or
//! saturating, every year's transitions computed from the civil calendar.

use std::fmt;

use crate::time::{civil_from_days, days_from_civil};

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tz {
    text: String,
    std_name: String,
    /// Seconds east of UTC (the negation of POSIX's).
    std_offset: i64,
    dst: Option<Dst>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dst {
    name: String,
    offset: i64,
    start: Rule,
    end: Rule,
}

/// A transition date and the local time (of the time in force before it) it happens at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    date: Date,
    time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Date {
    /// `Jn`: day 1–365, 29 February never counted.
    Julian(u16),
    /// `n`: day 0–365, 29 February counted.
    Zero(u16),
    /// `Mm.w.d`.
    Month { month: u8, week: u8, weekday: u8 },
}

/// Why a rule does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TzError(pub(crate) String);

impl fmt::Display for TzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest rule read (a phone's are under 50 characters).
const MAX_LEN: usize = 128;

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn fail<T>(&self, what: &str) -> Result<T, TzError> {
        Err(TzError(format!(
            "{what} at character {} of {:?}",
            self.at + 1,
            String::from_utf8_lossy(self.text)
        )))
    }

    fn name(&mut self) -> Result<String, TzError> {
        let start = self.at;
        if self.eat(b'<') {
            let from = self.at;
            while let Some(b) = self.peek() {
                if b == b'>' {
                    break;
                }
                if !(b.is_ascii_alphanumeric() || b == b'+' || b == b'-') {
                    return self.fail("a quoted name holds letters, digits, + and - only");
                }
                self.at += 1;
            }
            let name = String::from_utf8_lossy(&self.text[from..self.at]).into_owned();
            if !self.eat(b'>') {
                return self.fail("a quoted name without its closing >");
            }
            if name.len() < 3 {
                return self.fail("a name of fewer than three characters");
            }
            return Ok(name);
        }
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.at += 1;
        }
        if self.at - start < 3 {
            return self.fail("a time-zone name of three or more letters");
        }
        Ok(String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
    }

    fn number(&mut self, max: i64) -> Result<i64, TzError> {
        let from = self.at;
        let mut value: i64 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            value = value * 10 + i64::from(b - b'0');
            self.at += 1;
            if value > max {
                return self.fail(&format!("a number above {max}"));
            }
        }
        if self.at == from {
            return self.fail("a number");
        }
        Ok(value)
    }

    /// `[+|-]hh[:mm[:ss]]`, hours up to `max_hours`, in seconds.
    fn hms(&mut self, max_hours: i64) -> Result<i64, TzError> {
        let sign = if self.eat(b'-') {
            -1
        } else {
            self.eat(b'+');
            1
        };
        let mut secs = self.number(max_hours)? * 3600;
        if self.eat(b':') {
            secs += self.number(59)? * 60;
            if self.eat(b':') {
                secs += self.number(59)?;
            }
        }
        Ok(sign * secs)
    }

    fn rule(&mut self) -> Result<Rule, TzError> {
        let date = if self.eat(b'J') {
            let day = self.number(365)?;
            if day < 1 {
                return self.fail("a Julian day of 1 to 365");
            }
            Date::Julian(day as u16)
        } else if self.eat(b'M') {
            let month = self.number(12)?;
            if !self.eat(b'.') {
                return self.fail("Mm.w.d");
            }
            let week = self.number(5)?;
            if !self.eat(b'.') {
                return self.fail("Mm.w.d");
            }
            let weekday = self.number(6)?;
            if month < 1 || week < 1 {
                return self.fail("a month of 1 to 12 and a week of 1 to 5");
            }
            Date::Month {
                month: month as u8,
                week: week as u8,
                weekday: weekday as u8,
            }
        } else {
            Date::Zero(self.number(365)? as u16)
        };
        let time = if self.eat(b'/') { self.hms(167)? } else { 7200 };
        Ok(Rule { date, time })
    }
}

impl Tz {
    /// Reads a rule.
    pub(crate) fn parse(text: &str) -> Result<Tz, TzError> {
        if text.len() > MAX_LEN {
            return Err(TzError(format!("longer than {MAX_LEN} characters")));
        }
        if !text.is_ascii() || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(TzError(format!(
                "{text:?}: only printable ASCII without spaces"
            )));
        }
        // `:characters` names a database file: there is none on the phone.
        if text.starts_with(':') {
            return Err(TzError(format!(
                "{text:?} names a time-zone database file; give a POSIX rule such as CET-1CEST,M3.5.0,M10.5.0/3"
            )));
        }
        let mut r = Reader {
            text: text.as_bytes(),
            at: 0,
        };
        let std_name = r.name()?;
        let std_offset = -r.hms(24)?;
        let dst = if r.peek().is_none() {
            None
        } else {
            let name = r.name()?;
            let offset = match r.peek() {
                Some(b',') | None => std_offset + 3600,
                Some(_) => -r.hms(24)?,
            };
            let (start, end) = if r.eat(b',') {
                let start = r.rule()?;
                if !r.eat(b',') {
                    return r.fail("a comma before the end rule");
                }
                (start, r.rule()?)
            } else {
                let us = |month, week| Rule {
                    date: Date::Month {
                        month,
                        week,
                        weekday: 0,
                    },
                    time: 7200,
                };
                (us(3, 2), us(11, 1))
            };
            Some(Dst {
                name,
                offset,
                start,
                end,
            })
        };
        if r.peek().is_some() {
            return r.fail("nothing more");
        }
        Ok(Tz {
            text: text.to_string(),
            std_name,
            std_offset,
            dst,
        })
    }

    /// Coordinated Universal Time.
    pub(crate) fn utc() -> Tz {
        Tz {
            text: "UTC0".into(),
            std_name: "UTC".into(),
            std_offset: 0,
            dst: None,
        }
    }

    /// The offset east of UTC at `t`, and the name in force.
    pub(crate) fn at(&self, t: i64) -> (i64, &str) {
        let Some(dst) = &self.dst else {
            return (self.std_offset, &self.std_name);
        };
        let year = civil_from_days(t.div_euclid(86_400)).0;
        // The year of `t` in local standard time, and its neighbours: a transition of
        // one year may fall in the next (a /time past 24 h).
        let mut transitions: Vec<(i64, bool)> = Vec::with_capacity(6);
        for y in [year - 1, year, year + 1] {
            // Each transition happens at the local time in force before it.
            let on = instant(y, dst.start, self.std_offset);
            let off = instant(y, dst.end, dst.offset);
            transitions.push((on, true));
            transitions.push((off, false));
        }
        transitions.sort_unstable();
        let in_dst = transitions
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .is_some_and(|(_, on)| *on);
        if in_dst {
            (dst.offset, &dst.name)
        } else {
            (self.std_offset, &self.std_name)
        }
    }

    /// The instant of the local wall time `local` (seconds since 1970-01-01 00:00 in
    /// local terms). A time that happens twice (the hour repeated when clocks go back)
    /// is its first; a time that never happens (the hour skipped when they go forward)
    /// is taken with the offset before the jump, so it lands as far past the jump as it
    /// lay past its start (02:30 skipped becomes 03:30).
    pub(crate) fn instant_of_local(&self, local: i64) -> i64 {
        let offsets = match &self.dst {
            None => vec![self.std_offset],
            Some(dst) => vec![self.std_offset, dst.offset],
        };
        let mut fits: Vec<i64> = offsets
            .iter()
            .map(|o| local.saturating_sub(*o))
            .filter(|t| t.saturating_add(self.at(*t).0) == local)
            .collect();
        fits.sort_unstable();
        if let Some(first) = fits.first() {
            return *first;
        }
        // In a gap: the offset in force just before it (the smaller one, east).
        let before = offsets.iter().copied().min().unwrap_or(self.std_offset);
        local.saturating_sub(before)
    }

    /// The abbreviation in force at `t`.
    pub(crate) fn name_at(&self, t: i64) -> &str {
        self.at(t).1
    }
}

/// The instant of `rule` in `year`, at the local time of `offset`.
fn instant(year: i64, rule: Rule, offset: i64) -> i64 {
    let day = match rule.date {
        Date::Julian(n) => {
            // 1..=365, 29 February never counted: day n is the same date every year.
            let n = i64::from(n);
            let feb29 = is_leap(year) && n >= 60;
            days_from_civil(year, 1, 1) + n - 1 + i64::from(feb29)
        }
        Date::Zero(n) => days_from_civil(year, 1, 1) + i64::from(n),
        Date::Month {
            month,
            week,
            weekday,
        } => {
            let first = days_from_civil(year, i64::from(month), 1);
            // 1970-01-01 was a Thursday (4).
            let first_weekday = (first + 4).rem_euclid(7);
            let mut day = first + (i64::from(weekday) - first_weekday).rem_euclid(7);
            day += 7 * (i64::from(week) - 1);
            let len = month_len(year, i64::from(month));
            let last = first + len - 1;
            while day > last {
                day -= 7;
            }
            day
        }
    };
    day * 86_400 + rule.time - offset
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_len(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn central_europe_changes_on_the_last_sundays_at_one_utc() {
        let tz = Tz::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2027: 28 March and 31 October.
        let on = utc(2027, 3, 28, 1, 0);
        assert_eq!(tz.at(on - 1), (3600, "CET"));
        assert_eq!(tz.at(on), (7200, "CEST"));
        let off = utc(2027, 10, 31, 1, 0);
        assert_eq!(tz.at(off - 1), (7200, "CEST"));
        assert_eq!(tz.at(off), (3600, "CET"));
        assert_eq!(tz.at(utc(2027, 1, 15, 12, 0)).0, 3600);
        assert_eq!(tz.at(utc(2027, 7, 15, 12, 0)).0, 7200);
    }

    #[test]
    fn every_form_reads_and_agrees_with_the_calendar() {
        // US Eastern, the default rule (no dates), Sydney (daylight over new year),
        // a quoted name, Julian days, a fixed offset.
        let ny = Tz::parse("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(
            Tz::parse("EST5EDT").unwrap().at(utc(2027, 7, 1, 0, 0)).0,
            -4 * 3600
        );
        assert_eq!(ny.at(utc(2027, 3, 14, 6, 59)).0, -5 * 3600);
        assert_eq!(ny.at(utc(2027, 3, 14, 7, 0)).0, -4 * 3600);
        assert_eq!(ny.at(utc(2027, 11, 7, 5, 59)).0, -4 * 3600);
        assert_eq!(ny.at(utc(2027, 11, 7, 6, 0)).0, -5 * 3600);
        let syd = Tz::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(syd.at(utc(2027, 1, 10, 0, 0)), (11 * 3600, "AEDT"));
        assert_eq!(syd.at(utc(2027, 6, 10, 0, 0)), (10 * 3600, "AEST"));
        let quoted = Tz::parse("<+0330>-3:30").unwrap();
        assert_eq!(quoted.at(0), (3 * 3600 + 1800, "+0330"));
        let julian = Tz::parse("XST3XDT,J60/0,J300").unwrap();
        // J60 is 1 March, leap year or not.
        assert_eq!(julian.at(utc(2028, 3, 1, 3, 0) - 1).0, -3 * 3600);
        assert_eq!(julian.at(utc(2028, 3, 1, 3, 0)).0, -2 * 3600);
        assert_eq!(Tz::parse("UTC0").unwrap().at(12345), (0, "UTC"));
    }

    #[test]
    fn local_times_in_the_skipped_and_the_repeated_hour() {
        let tz = Tz::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let local = |y, mo, d, h, mi| utc(y, mo, d, h, mi);
        // 02:30 on 28 March 2027 never happens: 03:30 CEST (01:30 UTC).
        assert_eq!(
            tz.instant_of_local(local(2027, 3, 28, 2, 30)),
            utc(2027, 3, 28, 1, 30)
        );
        // 02:30 on 31 October 2027 happens twice: the first, in CEST (00:30 UTC).
        assert_eq!(
            tz.instant_of_local(local(2027, 10, 31, 2, 30)),
            utc(2027, 10, 31, 0, 30)
        );
        // An ordinary time.
        assert_eq!(
            tz.instant_of_local(local(2027, 5, 3, 1, 0)),
            utc(2027, 5, 2, 23, 0)
        );
    }

    #[test]
    fn what_is_not_a_rule_is_refused_with_where() {
        for bad in [
            "",
            "C",
            "CET",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M13.5.0,M10.5.0",
            "CET-1CEST,M3.6.0,M10.5.0",
            "CET-1CEST,M3.5.7,M10.5.0",
            "CET-25",
            "CET-1 ",
            ":Europe/Paris",
            "<AB>1",
            "CET-1CEST,J0,J300",
            "CET-1CEST,M3.5.0/200,M10.5.0",
            "CET-1x",
        ] {
            assert!(Tz::parse(bad).is_err(), "{bad:?}");
        }
        let e = Tz::parse("CET-1CEST,M3.5.0").unwrap_err();
        assert!(e.0.contains("character 17"), "{e}");
    }

    #[test]
    fn the_calendar_round_trips_over_the_phones_years() {
        for days in (0..50_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
