//! The bytes of a syslog line: RFC 5424 for a server (`<PRI>1 TIMESTAMP HOSTNAME
//! APP-NAME PROCID MSGID SD MSG`, the time in UTC), the BSD form of RFC 3164 that
//! BusyBox `syslogd` reads from `/dev/log` (`<PRI>Mmm dd hh:mm:ss license-agent[pid]:
//! msg`), and RFC 6587's octet counting (`<length> <line>`) for TCP and TLS. UTC
//! throughout: the phone has no time-zone database, and a server stamps its own.
//!
//! PRI is `facility * 8 + severity`. The message comes escaped (`logging::escape`), so it
//! holds no control character that could end a line or forge another.

use std::time::{SystemTime, UNIX_EPOCH};

/// The app-name of every line.
pub(crate) const APP_NAME: &str = "license-agent";

/// The longest message sent, in bytes (RFC 5426 asks receivers for 2048-byte
/// datagrams at least; the header fits in the rest).
pub(crate) const MESSAGE_MAX: usize = 1900;

/// The RFC 5424 severity of a log record: `error` is err (3), `warn` warning (4), `info`
/// info (6), `debug` and `trace` debug (7); an `info` record of the target
/// [`NOTICE`](super::NOTICE) is notice (5).
pub(crate) fn severity(level: log::Level, target: &str) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info if target == super::NOTICE => 5,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `<PRI>`: facility (0–23) and severity (0–7); out-of-range values are clamped, so a
/// PRI is always one a receiver accepts.
pub(crate) fn pri(facility: u8, severity: u8) -> u16 {
    u16::from(facility.min(23)) * 8 + u16::from(severity.min(7))
}

/// The RFC 5424 line (no trailer): `hostname` is the phone's MAC or `-`.
pub(crate) fn rfc5424(
    facility: u8,
    severity: u8,
    time: SystemTime,
    hostname: &str,
    pid: u32,
    message: &str,
) -> String {
    let (secs, millis) = unix(time);
    let (y, mo, d, h, mi, s) = civil(secs);
    let hostname = if hostname.is_empty() { "-" } else { hostname };
    format!(
        "<{}>1 {y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z {hostname} {APP_NAME} {pid} - - {}",
        pri(facility, severity),
        cut(message)
    )
}

/// The BSD line for the local `syslogd`: `<PRI>Mmm dd hh:mm:ss license-agent[pid]: msg`.
pub(crate) fn rfc3164(
    facility: u8,
    severity: u8,
    time: SystemTime,
    pid: u32,
    message: &str,
) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (secs, _) = unix(time);
    let (_, mo, d, h, mi, s) = civil(secs);
    let month = MONTHS[(mo as usize).clamp(1, 12) - 1];
    format!(
        "<{}>{month} {d:>2} {h:02}:{mi:02}:{s:02} {APP_NAME}[{pid}]: {}",
        pri(facility, severity),
        cut(message)
    )
}

/// RFC 6587 octet counting: the line's length in bytes, a space, the line.
pub(crate) fn octet_counted(line: &str) -> Vec<u8> {
    let mut frame = format!("{} ", line.len()).into_bytes();
    frame.extend_from_slice(line.as_bytes());
    frame
}

/// `message` cut to [`MESSAGE_MAX`] bytes at a character boundary.
fn cut(message: &str) -> &str {
    if message.len() <= MESSAGE_MAX {
        return message;
    }
    let mut end = MESSAGE_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Seconds and milliseconds since the epoch (a clock before 1970 reads as 1970).
fn unix(time: SystemTime) -> (u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs(), since.subsec_millis())
}

/// The UTC calendar date and time of Unix seconds: year, month, day, hour, minute,
/// second (`crate::time`'s calendar).
fn civil(secs: u64) -> (u64, u32, u32, u32, u32, u32) {
    let rest = secs % 86_400;
    let (h, mi, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let (y, mo, d) = crate::time::civil_from_days(days);
    let part = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    (
        u64::try_from(y).unwrap_or(u64::MAX),
        part(mo),
        part(d),
        h as u32,
        mi as u32,
        s as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    #[test]
    fn pri_is_facility_times_eight_plus_severity() {
        assert_eq!(pri(16, 4), 132); // local0.warning
        assert_eq!(pri(16, 6), 134); // local0.info
        assert_eq!(pri(3, 3), 27); // daemon.err
        assert_eq!(pri(0, 0), 0);
        assert_eq!(pri(23, 7), 191);
        assert_eq!(pri(200, 200), 191, "clamped, never an invalid PRI");
        assert_eq!(severity(log::Level::Error, "x"), 3);
        assert_eq!(severity(log::Level::Warn, "x"), 4);
        assert_eq!(severity(log::Level::Info, "license_agent::daemon"), 6);
        assert_eq!(severity(log::Level::Info, super::super::NOTICE), 5);
        assert_eq!(severity(log::Level::Debug, "x"), 7);
        assert_eq!(severity(log::Level::Trace, "x"), 7);
    }

    #[test]
    fn an_rfc5424_line_has_every_field() {
        // 2026-12-07T07:34:29.042Z
        let line = rfc5424(
            16,
            4,
            at(1_796_628_869, 42),
            "0004f2000001",
            77,
            "refused: x",
        );
        assert_eq!(
            line,
            "<132>1 2026-12-07T07:34:29.042Z 0004f2000001 license-agent 77 - - refused: x"
        );
        let line = rfc5424(1, 6, at(951_782_400, 0), "", 1, "leap");
        assert_eq!(
            line,
            "<14>1 2000-02-29T00:00:00.000Z - license-agent 1 - - leap"
        );
        let line = rfc5424(1, 6, at(0, 999), "-", 1, "epoch");
        assert!(
            line.starts_with("<14>1 1970-01-01T00:00:00.999Z - "),
            "{line}"
        );
        // Before 1970: read as 1970, never a panic.
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert!(rfc5424(1, 6, before, "-", 1, "").contains(" 1970-01-01T00:00:00.000Z "));
    }

    #[test]
    fn a_bsd_line_is_what_busybox_syslogd_reads() {
        assert_eq!(
            rfc3164(16, 3, at(1_796_628_869, 0), 9, "cannot write"),
            "<131>Dec  7 07:34:29 license-agent[9]: cannot write"
        );
        assert_eq!(
            rfc3164(3, 6, at(1_798_761_599, 0), 9, "m"),
            "<30>Dec 31 23:59:59 license-agent[9]: m"
        );
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MESSAGE_MAX);
        let line = rfc5424(16, 6, at(0, 0), "-", 1, &long);
        let message = line.split(" - - ").nth(1).unwrap();
        assert!(message.len() <= MESSAGE_MAX && message.len() >= MESSAGE_MAX - 1);
        assert!(message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn octet_counting_frames_the_line_by_its_byte_length() {
        assert_eq!(octet_counted("<14>1 - x"), b"9 <14>1 - x".to_vec());
        // Bytes, not characters.
        assert_eq!(octet_counted("é"), "2 é".as_bytes().to_vec());
        assert_eq!(octet_counted(""), b"0 ".to_vec());
    }
}
