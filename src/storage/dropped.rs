//! Records of the licenses this agent dropped from its store (`dropped.json` beside
//! `meta.json`), so the fleet view can show a license that ended as Inactive, as the
//! vendor's portal does, after the phone no longer holds it (`docs/report-schema.md`,
//! `dropped[]`).
//!
//! A record is the license's signed content in canonical form ([`SignedParts`]), the
//! wall-clock instant it was dropped at, and why: `ended` (Inactive at the instant judged)
//! or `replaced` (neither the primary nor bridging to it). Everything else shown of it
//! (fingerprint, serial, span, grants) is derived from that content once it verified
//! again, so nothing in the file is taken on its word: a record that does not verify
//! against the keyring is left out (logged), as is a whole file that cannot be read or
//! parsed, or that is larger than [`MAX_FILE_SIZE`]. Nothing in it can stop the agent.
//!
//! Kept: each record until [`KEEP_AFTER_END`] past its license's end, and at most
//! [`MAX_RECORDS`] (the one of the earliest end goes first; a license that never ends is
//! never past its end, so it goes last). Which records stand is decided from (records,
//! instant) alone, by [`keep`].
//!
//! The file is written atomically and durably (`atomic::write`) only when a drop adds a
//! record. It is a file of its own, not a field of `meta.json`, so that `meta.json` (written
//! hourly) stays small, and because an older agent never looks at it: the store reads
//! `meta.json` and the kind folders only, so it neither takes `dropped.json` for a license
//! nor sets it aside nor deletes it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::disk::Disk;
use crate::engine::license_span;
use crate::format::features::encode_table;
use crate::format::{End, License};
use crate::time::UnixTime;
use crate::trust::{Keyring, Verified};

/// The file's name in the state folder.
pub(crate) const FILE: &str = "dropped.json";
/// Most records kept.
pub(crate) const MAX_RECORDS: usize = 8;
/// How long a record is kept after its license's end: 90 days.
pub(crate) const KEEP_AFTER_END: UnixTime = 90 * 86_400;
/// The largest file read: [`MAX_RECORDS`] of the largest licenses (a 256-record table is
/// 8 KiB of hex) take under 80 KiB; anything bigger is damage.
pub(crate) const MAX_FILE_SIZE: u64 = 256 * 1024;

/// The parts of a license file whose canonical forms make its signed message
/// (`license-file.md`, "Signature"), so that anyone can rebuild the message, hash it to
/// the fingerprint, and check the signature against a keyring. Public content: no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SignedParts {
    /// 12 lowercase hex digits.
    pub(crate) serial: String,
    /// `Site` or `Phone`.
    pub(crate) description: String,
    /// 8 uppercase hex digits.
    pub(crate) key: String,
    /// The feature table, lowercase hex, 32 digits per 16-byte record.
    pub(crate) features: String,
    /// 128 lowercase hex digits.
    pub(crate) signature: String,
}

impl SignedParts {
    /// The canonical parts of `license`.
    pub(crate) fn of(license: &License) -> SignedParts {
        SignedParts {
            serial: license.serial().to_string(),
            description: license.kind().description().into(),
            key: license.key_id().to_string(),
            features: crate::format::hex_lower(&encode_table(license.features())),
            signature: crate::format::hex_lower(license.signature()),
        }
    }

    /// The license file these parts make (checked by the strict reader like any file).
    fn file(&self) -> String {
        format!(
            "<LICENSE><Serial>{}</Serial><Version>2.0</Version><Description>{}</Description>\
             <Key>{}</Key><Features>{}</Features><Signature>{}</Signature></LICENSE>",
            self.serial, self.description, self.key, self.features, self.signature
        )
    }
}

crate::words::words! {
    /// Why a license was dropped.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Reason {
        /// Inactive: its end had passed.
        Ended = "ended",
        /// Neither the primary license of its kind nor bridging to it.
        Replaced = "replaced",
    }
}

/// A license dropped from the store, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) license: Verified<License>,
    /// The wall clock when the drop was decided (Unix seconds).
    pub(crate) at: UnixTime,
    pub(crate) reason: Reason,
}

impl Dropped {
    fn end(&self) -> End {
        license_span(&self.license).1
    }
}

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    signed: SignedParts,
    dropped_at: UnixTime,
    reason: Reason,
}

/// The file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Records {
    #[serde(default)]
    records: Vec<Record>,
}

/// Whether a record of a license ending at `end` is kept at `at`.
fn within(end: End, at: UnixTime) -> bool {
    match end {
        End::Never => true,
        End::At(e) => at < i64::from(e).saturating_add(KEEP_AFTER_END),
    }
}

/// The records that stand at `at` (`None`: the clock is unsynced, nothing is judged
/// past its end): at most [`MAX_RECORDS`], those of the latest ends (then the latest
/// drops), one per signed message (the latest drop of it). Order: as dropped.
pub(crate) fn keep(mut records: Vec<Dropped>, at: Option<UnixTime>) -> Vec<Dropped> {
    if let Some(at) = at {
        records.retain(|d| within(d.end(), at));
    }
    // One record per license: a later drop of the same one replaces the earlier.
    records.sort_by_key(|d| d.at);
    let later = |i: usize, d: &Dropped| {
        records[i + 1..]
            .iter()
            .any(|r| r.license.signed_message() == d.license.signed_message())
    };
    let mut unique: Vec<(usize, Dropped)> = records
        .iter()
        .enumerate()
        .filter(|(i, d)| !later(*i, d))
        .map(|(i, d)| (i, d.clone()))
        .collect();
    // The earliest end goes first; among equal ends, the earliest drop.
    unique.sort_by_key(|(i, d)| std::cmp::Reverse((d.end(), d.at, *i)));
    unique.truncate(MAX_RECORDS);
    unique.sort_by_key(|(i, _)| *i);
    unique.into_iter().map(|(_, d)| d).collect()
}

/// Reads the records in `dir` on `disk`, each verified with `keyring`; anything unreadable
/// is left out and logged (never an error: nothing here may stop the agent).
pub(crate) fn load(disk: &dyn Disk, dir: &Path, keyring: &Keyring) -> Vec<Dropped> {
    let path = dir.join(FILE);
    let bytes = match disk.read(&path, MAX_FILE_SIZE) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log::warn!(
                "{}: unreadable ({e}); the records of dropped licenses are ignored",
                path.display()
            );
            return Vec::new();
        }
    };
    let records = match serde_json::from_slice::<Records>(&bytes) {
        Ok(r) => r.records,
        Err(e) => {
            log::warn!(
                "{}: unparseable ({e}); the records of dropped licenses are ignored",
                path.display()
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for r in records {
        match keyring.verify_bytes(r.signed.file().as_bytes()) {
            Ok(license) => out.push(Dropped {
                license,
                at: r.dropped_at,
                reason: r.reason,
            }),
            Err(e) => log::warn!(
                "{}: a record of a dropped {} license {} does not verify ({e}); left out",
                path.display(),
                r.signed.description,
                r.signed.serial
            ),
        }
    }
    keep(out, None)
}

/// The file's bytes for `records`.
pub(crate) fn encode(records: &[Dropped]) -> Vec<u8> {
    let records = Records {
        records: records
            .iter()
            .map(|d| Record {
                signed: SignedParts::of(&d.license),
                dropped_at: d.at,
                reason: d.reason,
            })
            .collect(),
    };
    // Plain data: serialising it cannot fail; an empty list is the fallback all the same.
    serde_json::to_vec(&records).unwrap_or_else(|_| b"{\"records\":[]}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Kind;
    use crate::storage::disk::RealDisk;
    use crate::testkit::{keyring, lic, DAY, T0};

    /// A site license of feature `id` from T0 to `end`, dropped at `at`.
    fn record(id: u16, end: Option<i64>, at: UnixTime) -> Dropped {
        Dropped {
            license: lic(Kind::Site, &[(id, T0, end)]),
            at,
            reason: Reason::Ended,
        }
    }

    fn ids(records: &[Dropped]) -> Vec<u16> {
        records
            .iter()
            .map(|d| d.license.features()[0].id.0)
            .collect()
    }

    #[test]
    fn a_record_is_kept_until_90_days_past_its_end() {
        let end = T0 + 10 * DAY;
        let records = vec![record(1, Some(end), end), record(2, None, end)];
        let last = end + KEEP_AFTER_END - 1;
        assert_eq!(ids(&keep(records.clone(), Some(last))), [1, 2]);
        // Past it: gone; the one that never ends stays.
        assert_eq!(ids(&keep(records.clone(), Some(last + 1))), [2]);
        // An unsynced clock judges nothing past its end.
        assert_eq!(ids(&keep(records, None)), [1, 2]);
    }

    #[test]
    fn at_most_8_are_kept_the_earliest_end_going_first() {
        // Dropped in the order 1..=10; ends: 1 latest, 2 never, then 3.. earlier each.
        let mut records = vec![record(1, Some(T0 + 100 * DAY), T0), record(2, None, T0 + 1)];
        for id in 3..=10u16 {
            let end = T0 + (50 - i64::from(id)) * DAY;
            records.push(record(id, Some(end), T0 + i64::from(id)));
        }
        let kept = keep(records, Some(T0));
        assert_eq!(kept.len(), MAX_RECORDS);
        // 10 and 9 ended earliest: evicted. The rest in the order dropped.
        assert_eq!(ids(&kept), [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_license_dropped_twice_is_one_record_of_the_later_drop() {
        let mut again = record(1, None, T0 + 5);
        again.reason = Reason::Replaced;
        let kept = keep(vec![record(1, None, T0), again], Some(T0));
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].at, kept[0].reason), (T0 + 5, Reason::Replaced));
    }

    #[test]
    fn records_read_back_verified_and_a_forged_one_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![record(1, Some(T0 + DAY), T0), record(2, None, T0 + 1)];
        std::fs::write(dir.path().join(FILE), encode(&records)).unwrap();
        assert_eq!(load(&RealDisk, dir.path(), keyring()), records);
        // The second's table changed (feature 2 made 3): its signature no longer holds.
        let mut value: serde_json::Value = serde_json::from_slice(&encode(&records)).unwrap();
        let features = value["records"][1]["signed"]["features"]
            .as_str()
            .unwrap()
            .replacen("0002", "0003", 1);
        value["records"][1]["signed"]["features"] = features.into();
        std::fs::write(dir.path().join(FILE), value.to_string()).unwrap();
        assert_eq!(load(&RealDisk, dir.path(), keyring()), records[..1]);
    }
}
