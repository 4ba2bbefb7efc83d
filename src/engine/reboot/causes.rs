//! Which reboot causes a change of the enabled set calls for (`agent-rules.md`, "When the
//! agent asks for a reboot"), as one plain function of the set the phone booted with, the
//! set in force now, and the instant: no history, so an agent restart derives the same
//! answer again and never asks twice for one cause.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Cause;
use crate::format::FeatureId;
use crate::time::UnixTime;

/// A feature in force, as far as reboots care: does a site license govern it, and when
/// does that entry end (`None`: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InForce {
    pub(crate) site: bool,
    pub(crate) end: Option<u32>,
}

/// A feature set with what governs each feature.
pub(crate) type InForceSet = BTreeMap<FeatureId, InForce>;

/// The causes the difference between `booted` (the set the phone applied at boot) and
/// `now_set` (the set in force at `now`) calls for, each with whether it is a site
/// license's doing alone (and so waits the stagger delay). Empty when the names are the
/// same: a renewal that only moves an end needs no reboot.
///
/// - a booted feature no longer in force whose entry has ended by `now`:
///   `license-expired`;
/// - any other feature lost, and any feature gained that the configuration does not
///   enable: `license-changed`;
/// - a gained feature the configuration enables (`configured`): `feature-licensed`.
///
/// A cause is a site cause when every feature behind it is governed by a site license
/// (before for a lost feature, now for a gained one); one phone-license feature makes it
/// the phone's own, asked without delay.
pub(crate) fn causes(
    booted: &InForceSet,
    now_set: &InForceSet,
    now: UnixTime,
    configured: &BTreeSet<FeatureId>,
) -> BTreeMap<Cause, bool> {
    let mut out: BTreeMap<Cause, bool> = BTreeMap::new();
    let mut add = |cause: Cause, site: bool| {
        let all_site = out.entry(cause).or_insert(true);
        *all_site &= site;
    };
    for (id, was) in booted {
        if now_set.contains_key(id) {
            continue;
        }
        let ended = was.end.is_some_and(|end| UnixTime::from(end) <= now);
        let cause = if ended {
            Cause::LicenseExpired
        } else {
            Cause::LicenseChanged
        };
        add(cause, was.site);
    }
    for (id, is) in now_set {
        if booted.contains_key(id) {
            continue;
        }
        let cause = if configured.contains(id) {
            Cause::FeatureLicensed
        } else {
            Cause::LicenseChanged
        };
        add(cause, is.site);
    }
    out
}
