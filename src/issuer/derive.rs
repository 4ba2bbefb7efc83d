//! A new license file built from the file in force for a serial, in the vendor portal's
//! terms (`shared/seeds/000_*.txt`):
//!
//! - [`addon`]: "an add-on license is issued to increase the capacity of a Managed Device
//!   during the term of an existing New or Renewal license". Site licenses only (capacity
//!   is counted over a site's devices; a phone license binds one phone).
//! - [`renew`]: "a renewal license ... rolling together any Addon licenses into a single
//!   Renewal license for the new term".
//!
//! The new file replaces the old one on the server, and the agent uses the file with the
//! latest end (newest on a tie), so the new file must carry every grant of the old one:
//! every record not named is kept as it is (its 16 bytes unchanged, in its place), and the
//! named feature's record is replaced, since one file cannot hold an id twice.

use crate::format::features::rfc3339;
use crate::format::{End, FeatureEntry, FeatureId, Kind, License, Transaction};

use super::LicenseSpec;

/// A license to sign, and what the operator should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub spec: LicenseSpec,
    /// One line each, for standard error.
    pub notes: Vec<String>,
}

/// An Addon for one feature of a site license.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddonRequest {
    pub feature: FeatureId,
    /// The capacity added (the Addon record's limit).
    pub limit: u32,
    /// When the added capacity starts; `None`: now, or the record's own start if that is
    /// later (an Addon for a term posted before it began).
    pub start: Option<u32>,
}

/// A Renewal of some features of a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewRequest {
    /// The end of the new term.
    pub until: u32,
    /// The features renewed; empty: every record that ends and is not a Trial.
    pub features: Vec<FeatureId>,
    /// The start of every Renewal record; `None`: each record's current end (see
    /// [`renew`] for when an earlier one is needed).
    pub start: Option<u32>,
    /// The limit of every Renewal record; `None`: each record's current limit.
    pub limit: Option<u32>,
}

fn find(current: &License, id: FeatureId) -> Result<(usize, FeatureEntry), String> {
    current
        .features()
        .iter()
        .copied()
        .enumerate()
        .find(|(_, e)| e.id == id)
        .ok_or_else(|| {
            let held: Vec<String> = current.features().iter().map(|e| e.id.name()).collect();
            format!(
                "{id} is not in the current file (it grants {}); a feature it lacks is sold \
                 as a New license (license-issuer sign)",
                held.join(", ")
            )
        })
}

/// The file in force with one feature's record replaced by an Addon of `req.limit` from
/// the start to that record's end. Refused on a phone license, for a feature the file
/// lacks, a Trial record, a record that never ends, an Addon of no capacity, a start
/// before the record's own or at or after its end.
pub fn addon(current: &License, req: &AddonRequest, now: u32) -> Result<Derived, String> {
    if current.kind() == Kind::Phone {
        return Err(format!(
            "{} is a phone license: an Addon adds Managed Device capacity, which is counted \
             over a site's devices; Addons are for site licenses",
            current.serial()
        ));
    }
    let (index, old) = find(current, req.feature)?;
    let id = req.feature;
    if old.transaction == Transaction::Trial {
        return Err(format!(
            "{id} is a Trial record: an Addon adds capacity during the term of a New or \
             Renewal license"
        ));
    }
    let end = match old.end {
        End::At(end) => end,
        End::Never => {
            return Err(format!(
                "{id} never ends in the current file: an Addon adds capacity during a term \
                 (of a New or Renewal license), and this record has none"
            ))
        }
    };
    if req.limit == 0 {
        return Err("an Addon adds capacity: --limit must be at least 1".into());
    }
    let start = match req.start {
        Some(s) if s < old.start => {
            return Err(format!(
                "--start {} is before {id}'s term starts ({}): an Addon adds capacity during \
                 the term",
                rfc3339(s),
                rfc3339(old.start)
            ))
        }
        Some(s) => s,
        None => now.max(old.start),
    };
    if end <= start {
        return Err(format!(
            "{id}'s term ends {} in the current file, not after the Addon's start {}: an \
             Addon adds capacity during the term; renew it first (license-issuer renew)",
            rfc3339(end),
            rfc3339(start)
        ));
    }
    let mut features = current.features().to_vec();
    features[index] = FeatureEntry {
        id,
        transaction: Transaction::Addon,
        start,
        end: old.end,
        limit: req.limit,
    };
    let notes = vec![format!(
        "{id}: an Addon of {} from {} to {} replaces its {} record (limit {}) in the new \
         file; its limit now shows the added capacity only, and at renewal `renew --limit \
         TOTAL` rolls the capacities together",
        req.limit,
        rfc3339(start),
        rfc3339(end),
        old.transaction,
        old.limit
    )];
    Ok(Derived {
        spec: LicenseSpec {
            serial: current.serial(),
            kind: current.kind(),
            features,
        },
        notes,
    })
}

/// The file in force with the named features' records (by default every record that
/// ends and is not a Trial) replaced by Renewal records ending at `req.until`.
///
/// A Renewal record starts at the record's current end, so there is no gap, unless the
/// agent would use the new file earlier: the agent takes the file with the latest end
/// once any of its records has started, and from then on only that file counts, so a
/// Renewal record still waiting for its start would leave its feature off. So without
/// `--start`, the Renewal records start at the first instant (not before now) at which the
/// new file starts: the earliest start among the grants kept and the current ends; each
/// is also kept within its record's current term.
pub fn renew(current: &License, req: &RenewRequest, now: u32) -> Result<Derived, String> {
    let mut renewed: Vec<(usize, FeatureEntry, u32)> = Vec::new();
    if req.features.is_empty() {
        for (i, e) in current.features().iter().enumerate() {
            if let (End::At(end), false) = (e.end, e.transaction == Transaction::Trial) {
                renewed.push((i, *e, end));
            }
        }
        if renewed.is_empty() {
            return Err(
                "nothing to renew: every record of the current file never ends or is a Trial"
                    .into(),
            );
        }
    } else {
        for &id in &req.features {
            if renewed.iter().any(|(_, e, _)| e.id == id) {
                continue;
            }
            let (i, e) = find(current, id)?;
            if e.transaction == Transaction::Trial {
                return Err(format!(
                    "{id} is a Trial record: a Renewal renews a subscription; a Trial turns \
                     into a New license (license-issuer sign)"
                ));
            }
            match e.end {
                End::At(end) => renewed.push((i, e, end)),
                End::Never => {
                    return Err(format!(
                        "{id} never ends in the current file: nothing to renew"
                    ))
                }
            }
        }
    }
    if req.until <= now {
        return Err(format!(
            "--until {} is not in the future: the agent refuses a license that has ended",
            rfc3339(req.until)
        ));
    }
    for (_, e, end) in &renewed {
        if req.until <= *end {
            return Err(format!(
                "--until {} does not extend {}, which ends {}",
                rfc3339(req.until),
                e.id,
                rfc3339(*end)
            ));
        }
        if let Some(s) = req.start {
            if s > *end {
                return Err(format!(
                    "--start {} is after {}'s current end {}: the feature would be off in \
                     between",
                    rfc3339(s),
                    e.id,
                    rfc3339(*end)
                ));
            }
        }
    }
    // When the new file starts counting for the agent (see above).
    let kept_start = current
        .features()
        .iter()
        .enumerate()
        .filter(|(i, _)| !renewed.iter().any(|(r, _, _)| r == i))
        .map(|(_, e)| e.start)
        .min();
    let first_end = renewed.iter().map(|(_, _, end)| *end).min();
    let file_start = kept_start
        .into_iter()
        .chain(first_end)
        .min()
        .unwrap_or(now)
        .max(now);

    let mut features = current.features().to_vec();
    let mut notes = Vec::new();
    for (i, old, end) in renewed {
        let start = req
            .start
            .unwrap_or_else(|| file_start.max(old.start).min(end));
        if req.start.is_none() && start < end {
            notes.push(format!(
                "{}: the Renewal starts {}, not at its current end {}: the agent uses the \
                 new file from then on, and one file holds one record per feature",
                old.id,
                rfc3339(start),
                rfc3339(end)
            ));
        }
        let limit = req.limit.unwrap_or(old.limit);
        match (old.transaction, req.limit) {
            (Transaction::Addon, None) => notes.push(format!(
                "{}: the current record is an Addon of {}, the added capacity only; the \
                 Renewal keeps limit {}: give --limit TOTAL (the capacity before the Addons \
                 plus every Addon) to roll them together",
                old.id, old.limit, old.limit
            )),
            (Transaction::Addon, Some(l)) => notes.push(format!(
                "{}: limit {l} rolls together the Addon of {} and the capacity before it",
                old.id, old.limit
            )),
            (_, Some(l)) if l != old.limit => notes.push(format!(
                "{}: limit {l} (was {} in its {} record)",
                old.id, old.limit, old.transaction
            )),
            _ => {}
        }
        features[i] = FeatureEntry {
            id: old.id,
            transaction: Transaction::Renewal,
            start,
            end: End::At(req.until),
            limit,
        };
    }
    Ok(Derived {
        spec: LicenseSpec {
            serial: current.serial(),
            kind: current.kind(),
            features,
        },
        notes,
    })
}
