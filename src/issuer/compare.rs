//! What the phones would lose if a new file for a serial were posted after the previous
//! one. The agent keeps, per kind, the file with the latest end (newest on a tie) and
//! drops the other once that one has started (`agent-rules.md`, "Which license of a kind
//! is used"): a new file that lacks a feature of the previous one, or grants it only
//! later, takes it away from every phone of the serial, however long the previous file
//! still runs. That is how an Addon-only site file once removed vqmon and
//! usb-call-recording from a fleet.
//!
//! The check asks the agent's own engine: holding the previous file alone, and holding
//! both (the new one received last), at now and at every start and end of either file
//! after now (the enabled set changes at no other instant).

use std::collections::BTreeSet;

use crate::engine::{evaluate, Held, Role};
use crate::format::features::rfc3339;
use crate::format::{FeatureEntry, FeatureId, License};
use crate::trust::Verified;

/// A feature the previous file grants that the phones would lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub feature: FeatureId,
    /// The first instant (not before now) at which it would be off.
    pub at: u32,
    /// The previous file's record of it.
    pub previous: FeatureEntry,
    /// The new file's record of it, if it has one (starting later than `at`).
    pub new: Option<FeatureEntry>,
}

impl Loss {
    /// One line for standard error; `previous` and `new` name the two files.
    pub fn describe(&self, previous: &str, new: &str) -> String {
        let why = match self.new {
            None => format!("{new} does not grant it"),
            Some(e) => format!("{new} grants it only from {}", rfc3339(e.start)),
        };
        format!(
            "{feature}: {previous} grants it until {end}, but {why}; the agent uses the file \
             with the latest end (newest on a tie), so {feature} would be removed from every \
             phone using this license from {at}",
            feature = self.feature,
            end = self.previous.end,
            at = rfc3339(self.at),
        )
    }
}

/// What comparing two files found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Features lost, in id order, each once (at its first instant).
    pub losses: Vec<Loss>,
    /// The agent would never use the new file: the previous one outlasts it.
    pub unused: bool,
}

fn held(previous: &Verified<License>, new: Option<&Verified<License>>) -> Vec<Held> {
    let mut held = vec![Held {
        seq: 1,
        license: previous.clone(),
    }];
    if let Some(new) = new {
        held.push(Held {
            seq: 2,
            license: new.clone(),
        });
    }
    held
}

/// Whether two licenses are for the same serial and kind: the only files the agent weighs
/// against each other.
pub fn same_holder(a: &License, b: &License) -> bool {
    a.serial() == b.serial() && a.kind() == b.kind()
}

/// Compares `new` with `previous` (same serial and kind) from `now` on.
pub fn compare(previous: &Verified<License>, new: &Verified<License>, now: u32) -> Comparison {
    let alone = held(previous, None);
    let both = held(previous, Some(new));
    let mut instants: BTreeSet<u32> = BTreeSet::from([now]);
    for e in previous.features().iter().chain(new.features()) {
        instants.insert(e.start);
        if let crate::format::End::At(end) = e.end {
            instants.insert(end);
        }
    }
    let mut out = Comparison {
        losses: Vec::new(),
        unused: true,
    };
    for t in instants.into_iter().filter(|&t| t >= now) {
        let before = evaluate(&alone, i64::from(t));
        let after = evaluate(&both, i64::from(t));
        if after
            .licenses
            .iter()
            .any(|l| l.seq == 2 && l.role != Role::Dropped)
        {
            out.unused = false;
        }
        let kept = after.enabled();
        for (id, _) in before.enabled() {
            if kept.contains_key(&id) || out.losses.iter().any(|l| l.feature == id) {
                continue;
            }
            let record = |l: &License| l.features().iter().copied().find(|e| e.id == id);
            if let Some(previous) = record(previous) {
                out.losses.push(Loss {
                    feature: id,
                    at: t,
                    previous,
                    new: record(new),
                });
            }
        }
    }
    out.losses.sort_by_key(|l| l.feature);
    out
}

/// What to say about a new file, and whether to refuse writing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// One line each, for standard error.
    pub warnings: Vec<String>,
    /// Why nothing may be written, if so.
    pub refused: Option<String>,
}

/// Judges `new` (to be written as `new_name`) against the earlier files of its serial,
/// each with its name: every feature the phones would lose is a warning, and the file is
/// refused unless `allow_fewer`; an earlier file for another serial or kind is refused
/// (a comparison with it would say nothing).
pub fn judge(
    new: &Verified<License>,
    new_name: &str,
    earlier: &[(String, Verified<License>)],
    now: u32,
    allow_fewer: bool,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut lost = 0;
    for (name, previous) in earlier {
        if !same_holder(previous, new) {
            verdict.refused = Some(format!(
                "{name} is a {} license for {}, the new file a {} license for {}: they are \
                 not compared, and nothing is written",
                previous.kind(),
                previous.serial(),
                new.kind(),
                new.serial()
            ));
            return verdict;
        }
        if previous.signed_message() == new.signed_message() {
            continue;
        }
        let found = compare(previous, new, now);
        if found.unused {
            verdict.warnings.push(format!(
                "the agent would never use {new_name}: {name} ends later, or {new_name} \
                 has ended (the agent uses the file with the latest end)"
            ));
        }
        for loss in &found.losses {
            verdict.warnings.push(loss.describe(name, new_name));
        }
        lost += found.losses.len();
    }
    if lost > 0 && !allow_fewer {
        verdict.refused = Some(
            "nothing written: the new file would take features away from the phones \
             (above); add the missing grants, or give --allow-fewer if that is intended"
                .into(),
        );
    }
    verdict
}
