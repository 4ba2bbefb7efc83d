use super::*;
use chrono::{TimeZone, Utc};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp()
}

fn schedule(windows: &[&str], tz: &str) -> Schedule {
    Schedule {
        windows: windows.iter().map(|w| Window::parse(w).unwrap()).collect(),
        tz: Tz::parse(tz).unwrap(),
        causes: BTreeSet::new(),
        deadline: 7 * 86_400,
    }
}

const CET: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

#[test]
fn windows_read_in_every_form_and_say_themselves() {
    let s = schedule(
        &[
            "Mon-Fri 01:00-04:00",
            "Sat,Sun 22:00-02:00",
            "daily 02:00-02:00",
            "Fri-Mon 23:30-24:00",
            "mon,WED 00:00-00:30",
        ],
        CET,
    );
    let words: Vec<String> = s.windows.iter().map(Window::words).collect();
    assert_eq!(
        words,
        [
            "Mon–Fri 01:00–04:00",
            "Sat,Sun 22:00–02:00",
            "daily 02:00–02:00",
            "Mon,Fri–Sun 23:30–00:00",
            "Mon,Wed 00:00–00:30",
        ]
    );
    assert_eq!(s.windows[2].length, 86_400);
    assert_eq!(s.windows[1].length, 4 * 3600);
    for bad in [
        "",
        "Mon-Fri",
        "Mon-Fri 1:00-04:00",
        "Mon-Fri 01:00",
        "Monday 01:00-02:00",
        "Mon-Fri 24:00-01:00",
        "Mon-Fri 01:60-02:00",
        "Mon-Fri 25:00-02:00",
        "Mon/Fri 01:00-02:00",
    ] {
        let e = Window::parse(bad).unwrap_err();
        assert!(e.0.contains("DAYS HH:MM-HH:MM"), "{bad:?}: {e}");
    }
}

#[test]
fn the_next_window_in_local_time_with_its_offset() {
    let s = schedule(&["Mon-Fri 01:00-04:00"], CET);
    // Thursday 1 April 2027, noon UTC: Friday 01:00 CEST is next.
    let o = s.current_or_next(utc(2027, 4, 1, 12, 0)).unwrap();
    assert_eq!(o.opens, utc(2027, 4, 1, 23, 0));
    assert_eq!(o.closes - o.opens, 3 * 3600);
    assert_eq!(s.local_time(o.opens), "2027-04-02T01:00+02:00");
    assert_eq!(s.words(&o), "Mon–Fri 01:00–04:00 CEST");
    // Inside it: the same occurrence.
    assert_eq!(s.current_or_next(o.opens + 60), Some(o));
    assert_eq!(s.current_or_next(o.closes - 1), Some(o));
    // At its close: Monday's (a weekend between).
    let monday = s.current_or_next(o.closes).unwrap();
    assert_eq!(s.local_time(monday.opens), "2027-04-05T01:00+02:00");
    // In winter, +01:00 and CET.
    let jan = s.current_or_next(utc(2027, 1, 5, 12, 0)).unwrap();
    assert_eq!(s.local_time(jan.opens), "2027-01-06T01:00+01:00");
    assert_eq!(s.words(&jan), "Mon–Fri 01:00–04:00 CET");
}

#[test]
fn a_window_across_midnight_is_open_after_midnight() {
    let s = schedule(&["Sat,Sun 22:00-02:00"], "UTC0");
    // Sunday 10 January 2027, 01:00: Saturday's window is still open.
    let o = s.current_or_next(utc(2027, 1, 10, 1, 0)).unwrap();
    assert_eq!(o.opens, utc(2027, 1, 9, 22, 0));
    assert_eq!(o.closes, utc(2027, 1, 10, 2, 0));
    // Monday 01:00: Sunday's is.
    let o = s.current_or_next(utc(2027, 1, 11, 1, 0)).unwrap();
    assert_eq!(o.opens, utc(2027, 1, 10, 22, 0));
    // Monday 03:00: the next Saturday's.
    let o = s.current_or_next(utc(2027, 1, 11, 3, 0)).unwrap();
    assert_eq!(o.opens, utc(2027, 1, 16, 22, 0));
}

#[test]
fn a_window_starting_in_the_skipped_hour_and_one_in_the_repeated_hour() {
    let s = schedule(&["daily 02:30-03:30"], CET);
    // 28 March 2027: 02:30 never happens; the window opens at 03:30 CEST and lasts an
    // hour.
    let o = s.current_or_next(utc(2027, 3, 27, 12, 0)).unwrap();
    assert_eq!(o.opens, utc(2027, 3, 28, 1, 30));
    assert_eq!(o.closes, utc(2027, 3, 28, 2, 30));
    assert_eq!(s.local_time(o.opens), "2027-03-28T03:30+02:00");
    // 31 October 2027: 02:30 happens twice; the first (CEST), for an hour of real time.
    let o = s.current_or_next(utc(2027, 10, 30, 12, 0)).unwrap();
    assert_eq!(o.opens, utc(2027, 10, 31, 0, 30));
    assert_eq!(o.closes, utc(2027, 10, 31, 1, 30));
    assert_eq!(s.local_time(o.opens), "2027-10-31T02:30+02:00");
    // The day after each: 02:30 as usual.
    let o = s.current_or_next(utc(2027, 3, 28, 12, 0)).unwrap();
    assert_eq!(s.local_time(o.opens), "2027-03-29T02:30+02:00");
    let o = s.current_or_next(utc(2027, 10, 31, 12, 0)).unwrap();
    assert_eq!(s.local_time(o.opens), "2027-11-01T02:30+01:00");
}

#[test]
fn every_instant_has_a_window_within_eight_days_from_1970_to_2106() {
    let s = schedule(&["Sun 03:00-03:15"], CET);
    let mut t = 0i64;
    while t < i64::from(u32::MAX) {
        let o = s.current_or_next(t).unwrap();
        assert!(o.closes > t && o.opens - t <= 8 * 86_400, "{t}: {o:?}");
        t += 86_400 * 37 + 4_321;
    }
}
