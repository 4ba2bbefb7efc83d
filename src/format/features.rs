//! The feature table: 16-byte big-endian records of (id, transaction type, flags, start,
//! end, limit), their names, and the rules every table must obey.

use std::fmt;

/// Bytes in one record of the feature table.
pub(crate) const RECORD_LEN: usize = 16;
/// Most records one license may carry.
pub(crate) const MAX_RECORDS: usize = 256;
/// The raw `end` value that means "never expires".
pub(crate) const NEVER: u32 = 0xFFFF_FFFF;

/// Feature ids the spec names; any other id is kept and shown as `feature-XXXX`.
const KNOWN_FEATURES: [(u16, &str); 6] = [
    (0x0001, "usb-call-recording"),
    (0x0002, "vqmon"),
    (0x0003, "productivity-suite"),
    (0x0004, "h323"),
    (0x0005, "lync"),
    (0x0006, "conference-management"),
];

/// A licensable feature, by its 16-bit id (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeatureId(pub(crate) u16);

impl FeatureId {
    /// The spec's name for the id, or `feature-XXXX` (four lowercase hex digits).
    pub(crate) fn name(self) -> String {
        match KNOWN_FEATURES.iter().find(|(id, _)| *id == self.0) {
            Some((_, name)) => (*name).to_string(),
            None => format!("feature-{:04x}", self.0),
        }
    }

    /// Reads a feature the way people write one: a known name (`vqmon`), the
    /// `feature-XXXX` form, or a number (`2`, `0x0002`). Id 0 is refused.
    pub fn parse(text: &str) -> Result<FeatureId, String> {
        let lower = text.trim().to_ascii_lowercase();
        let id = if let Some((id, _)) = KNOWN_FEATURES.iter().find(|(_, n)| *n == lower) {
            Some(*id)
        } else if let Some(hex) = lower.strip_prefix("feature-").filter(|h| h.len() == 4) {
            u16::from_str_radix(hex, 16).ok()
        } else if let Some(hex) = lower.strip_prefix("0x") {
            u16::from_str_radix(hex, 16).ok()
        } else {
            lower.parse::<u16>().ok()
        };
        match id {
            Some(0) => Err(format!("feature {text:?}: id 0 is not a feature")),
            Some(id) => Ok(FeatureId(id)),
            None => Err(format!(
                "feature {text:?}: not a known name ({}) nor an id like 0x0002",
                KNOWN_FEATURES.map(|(_, n)| n).join(", ")
            )),
        }
    }
}

impl fmt::Display for FeatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// How a feature entry came to be sold (the vendor portal's "Transaction Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transaction {
    Trial = 1,
    New = 2,
    Addon = 3,
    Renewal = 4,
}

impl Transaction {
    const ALL: [Transaction; 4] = [
        Transaction::Trial,
        Transaction::New,
        Transaction::Addon,
        Transaction::Renewal,
    ];

    /// The type coded by `byte`, if any.
    pub(crate) fn from_byte(byte: u8) -> Option<Transaction> {
        Transaction::ALL.into_iter().find(|t| *t as u8 == byte)
    }

    /// Lowercase name, as shown in `inspect`, `verify --json` and `status`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transaction::Trial => "trial",
            Transaction::New => "new",
            Transaction::Addon => "addon",
            Transaction::Renewal => "renewal",
        }
    }

    /// Reads a name (any case) or the code 1–4.
    pub fn parse(text: &str) -> Result<Transaction, String> {
        let lower = text.trim().to_ascii_lowercase();
        Transaction::ALL
            .into_iter()
            .find(|t| t.name() == lower || (*t as u8).to_string() == lower)
            .ok_or_else(|| {
                format!("transaction type {text:?}: expected trial, new, addon or renewal")
            })
    }
}

impl fmt::Display for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a feature entry stops: at an instant, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// Unix seconds, UTC (always below `NEVER`).
    At(u32),
    /// `0xFFFFFFFF` in the table. Orders after every instant.
    Never,
}

impl End {
    fn from_raw(raw: u32) -> End {
        if raw == NEVER {
            End::Never
        } else {
            End::At(raw)
        }
    }

    fn raw(self) -> u32 {
        match self {
            End::At(t) => t,
            End::Never => NEVER,
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::At(t) => f.write_str(&rfc3339(*t)),
            End::Never => f.write_str("never"),
        }
    }
}

/// Unix seconds as RFC 3339 in UTC, to the second (`2026-01-01T00:00:00Z`). Written out
/// by hand, not through chrono: the daemon dates every line of its status with it at
/// each event, and the proleptic Gregorian calendar of 1970 to 2106 is a few divisions
/// (checked against chrono, in the tests).
pub(crate) fn rfc3339(unix: u32) -> String {
    let (year, month, day) = civil_from_days(unix / 86_400);
    let in_day = unix % 86_400;
    let two = |v: u32| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    let [y1, y2] = two(year / 100);
    let [y3, y4] = two(year % 100);
    let [mo1, mo2] = two(month);
    let [d1, d2] = two(day);
    let [h1, h2] = two(in_day / 3_600);
    let [mi1, mi2] = two(in_day / 60 % 60);
    let [s1, s2] = two(in_day % 60);
    let text = [
        y1, y2, y3, y4, b'-', mo1, mo2, b'-', d1, d2, b'T', h1, h2, b':', mi1, mi2, b':', s1, s2,
        b'Z',
    ];
    // ASCII digits and signs: always UTF-8.
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

/// The (year, month, day) of a day counted from 1970-01-01 (`crate::time`'s calendar;
/// 2106 is the last year a `u32` of seconds reaches, so each part fits a `u32`).
fn civil_from_days(days: u32) -> (u32, u32, u32) {
    let (y, m, d) = crate::time::civil_from_days(i64::from(days));
    let part = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    (part(y), part(m), part(d))
}

/// One record of the feature table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureEntry {
    pub id: FeatureId,
    pub transaction: Transaction,
    /// Unix seconds, UTC.
    pub start: u32,
    pub end: End,
    /// Capacity of a counted feature (e.g. managed devices); 0 means not counted.
    pub limit: u32,
}

impl FeatureEntry {
    /// The 16 bytes of this record (flags are always 0 in version 2.0).
    pub(crate) fn to_bytes(self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..2].copy_from_slice(&self.id.0.to_be_bytes());
        out[2] = self.transaction as u8;
        out[3] = 0;
        out[4..8].copy_from_slice(&self.start.to_be_bytes());
        out[8..12].copy_from_slice(&self.end.raw().to_be_bytes());
        out[12..16].copy_from_slice(&self.limit.to_be_bytes());
        out
    }
}

/// Why a feature table breaks the rules, and which record (0-based) if one is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableError {
    pub(crate) record: Option<usize>,
    pub(crate) reason: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            Some(i) => write!(f, "feature record {} of the table: {}", i + 1, self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

fn record_error(record: usize, reason: String) -> TableError {
    TableError {
        record: Some(record),
        reason,
    }
}

/// Decodes a raw table (already hex-decoded), applying every rule of the spec.
pub(crate) fn decode_table(bytes: &[u8]) -> Result<Vec<FeatureEntry>, TableError> {
    if bytes.len() % RECORD_LEN != 0 {
        return Err(TableError {
            record: None,
            reason: format!(
                "the feature table is {} bytes, not a whole number of {RECORD_LEN}-byte records",
                bytes.len()
            ),
        });
    }
    let mut entries = Vec::with_capacity(bytes.len() / RECORD_LEN);
    for (i, rec) in bytes.chunks_exact(RECORD_LEN).enumerate() {
        let word = |at: usize| u32::from_be_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
        let transaction = Transaction::from_byte(rec[2]).ok_or_else(|| {
            record_error(
                i,
                format!(
                    "transaction type {} is not 1 (trial), 2 (new), 3 (addon) or 4 (renewal)",
                    rec[2]
                ),
            )
        })?;
        if rec[3] != 0 {
            return Err(record_error(
                i,
                format!("flags are 0x{:02x}; version 2.0 requires 0", rec[3]),
            ));
        }
        entries.push(FeatureEntry {
            id: FeatureId(u16::from_be_bytes([rec[0], rec[1]])),
            transaction,
            start: word(4),
            end: End::from_raw(word(8)),
            limit: word(12),
        });
    }
    check_table(&entries)?;
    Ok(entries)
}

/// The rules on a whole table that do not depend on its byte form: 1 to 256 records,
/// no id 0, no id twice, every end after its start.
pub(crate) fn check_table(entries: &[FeatureEntry]) -> Result<(), TableError> {
    if entries.is_empty() {
        return Err(TableError {
            record: None,
            reason: "the feature table is empty; a license carries 1 to 256 features".into(),
        });
    }
    if entries.len() > MAX_RECORDS {
        return Err(TableError {
            record: None,
            reason: format!(
                "the feature table has {} records; at most {MAX_RECORDS} are allowed",
                entries.len()
            ),
        });
    }
    for (i, e) in entries.iter().enumerate() {
        if e.id.0 == 0 {
            return Err(record_error(i, "feature id 0 is not allowed".into()));
        }
        if let Some(first) = entries[..i].iter().position(|o| o.id == e.id) {
            return Err(record_error(
                i,
                format!(
                    "feature {} (0x{:04x}) already appears in record {}",
                    e.id,
                    e.id.0,
                    first + 1
                ),
            ));
        }
        if e.end.raw() <= e.start {
            return Err(record_error(
                i,
                format!("end {} is not after start {}", e.end, rfc3339(e.start)),
            ));
        }
    }
    Ok(())
}

/// The table as bytes, in record order.
pub(crate) fn encode_table(entries: &[FeatureEntry]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u16, start: u32, end: End) -> FeatureEntry {
        FeatureEntry {
            id: FeatureId(id),
            transaction: Transaction::New,
            start,
            end,
            limit: 0,
        }
    }

    #[test]
    fn rfc3339_is_chronos_every_day_from_1970_to_2106() {
        use chrono::{DateTime, SecondsFormat, Utc};
        let chrono = |t: u32| {
            DateTime::<Utc>::from_timestamp(i64::from(t), 0)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap()
        };
        for day in 0..=u64::from(u32::MAX) / 86_400 {
            // Each day's first and last second, and one second in between.
            let first = day * 86_400;
            for s in [first, first + 86_399, first + day * 7_919 % 86_400] {
                if let Ok(s) = u32::try_from(s) {
                    assert_eq!(rfc3339(s), chrono(s), "{s}");
                }
            }
        }
        for s in [
            0,
            951_782_400,
            2_147_483_647,
            2_147_483_648,
            4_102_444_800,
            u32::MAX,
        ] {
            assert_eq!(rfc3339(s), chrono(s), "{s}");
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(u32::MAX), "2106-02-07T06:28:15Z");
    }

    #[test]
    fn names_known_and_unknown_ids() {
        assert_eq!(FeatureId(2).name(), "vqmon");
        assert_eq!(FeatureId(0x00ab).name(), "feature-00ab");
        assert_eq!(FeatureId::parse("VQMON"), Ok(FeatureId(2)));
        assert_eq!(FeatureId::parse("feature-00ab"), Ok(FeatureId(0xab)));
        assert_eq!(FeatureId::parse("0x0006"), Ok(FeatureId(6)));
        assert_eq!(FeatureId::parse("17"), Ok(FeatureId(17)));
        assert!(FeatureId::parse("0").is_err());
        assert!(FeatureId::parse("fax").is_err());
        assert!(FeatureId::parse("70000").is_err());
    }

    #[test]
    fn transaction_codes_and_names() {
        assert_eq!(Transaction::from_byte(4), Some(Transaction::Renewal));
        assert_eq!(Transaction::from_byte(0), None);
        assert_eq!(Transaction::from_byte(5), None);
        assert_eq!(Transaction::parse("Addon"), Ok(Transaction::Addon));
        assert_eq!(Transaction::parse("1"), Ok(Transaction::Trial));
        assert!(Transaction::parse("gift").is_err());
    }

    #[test]
    fn record_round_trips_through_bytes() {
        let e = FeatureEntry {
            id: FeatureId(3),
            transaction: Transaction::Renewal,
            start: 1_767_225_600,
            end: End::At(1_798_761_600),
            limit: 25,
        };
        let bytes = e.to_bytes();
        assert_eq!(hex::encode(bytes), "000304006955b9006b36ec8000000019");
        assert_eq!(decode_table(&bytes), Ok(vec![e]));
    }

    #[test]
    fn never_orders_after_every_instant() {
        assert!(End::Never > End::At(NEVER - 1));
        assert_eq!(End::Never.to_string(), "never");
        assert_eq!(End::At(1_767_225_600).to_string(), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn table_rules() {
        assert!(check_table(&[]).is_err());
        assert!(check_table(&[entry(0, 1, End::Never)]).is_err());
        assert!(check_table(&[entry(1, 5, End::At(5))]).is_err());
        assert!(check_table(&[entry(1, 5, End::At(6))]).is_ok());
        // start at the "never" value leaves no room for an end after it.
        assert!(check_table(&[entry(1, NEVER, End::Never)]).is_err());
        let dup = check_table(&[entry(1, 1, End::Never), entry(1, 2, End::Never)]).unwrap_err();
        assert_eq!(dup.record, Some(1));
        let many: Vec<_> = (1..=257).map(|i| entry(i, 1, End::Never)).collect();
        assert!(check_table(&many[..256]).is_ok());
        assert!(check_table(&many).is_err());
    }

    #[test]
    fn decode_rejects_bad_lengths_types_and_flags() {
        assert!(decode_table(&[0u8; 15]).is_err());
        let mut rec = entry(1, 1, End::Never).to_bytes();
        rec[2] = 9;
        assert!(decode_table(&rec)
            .unwrap_err()
            .reason
            .contains("transaction type 9"));
        rec[2] = 1;
        rec[3] = 0x80;
        assert!(decode_table(&rec).unwrap_err().reason.contains("flags"));
    }
}
