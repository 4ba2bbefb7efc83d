//! The license engine: which licenses are used, which features are in force, until when,
//! and why (`agent-rules.md`). Pure: it decides from (licenses held, identity, instant)
//! and never reads a clock or a file, so every rule is a plain, testable function.
//!
//! - `judge_candidate`: accept or refuse a license that arrives (download or install).
//! - `select`: per kind, the primary license (longest duration, last received on a
//!   tie), the bridging ones while the primary is Impending, and what to drop.
//! - `evaluate`: every license's role and status, the merged feature set with the
//!   governing entry of each feature, and the next instant at which anything changes.
//!
//! A held license is named by its [`StoreId`]: its kind and its received number. The
//! numbers order the licenses of one kind and are unique in its folder only (a file
//! copied in by hand can give a site license the phone license's number), so every
//! decision that names a license (a drop, a replacement, the primary) names both, and a
//! number is never looked up across kinds.

pub(crate) mod clock;
pub(crate) mod poll;
pub(crate) mod reboot;
pub(crate) mod status;
pub(crate) mod window;

use std::collections::BTreeMap;
use std::fmt;

use crate::format::{End, FeatureEntry, FeatureId, Kind, License, Serial};
use crate::time::UnixTime;
use crate::trust::{Rejection, Verified};
pub(crate) use clock::{judge_clock, ClockReading, ClockVerdict};
pub(crate) use status::{entry_status, license_span, license_status, Status};

/// Most licenses of one kind kept in storage.
pub(crate) const MAX_PER_KIND: usize = 4;

/// A license the agent holds, with the order it was received in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Received order among the licenses of its kind: a later license has a larger
    /// number. Unique in its kind only: see [`StoreId`].
    pub(crate) seq: u64,
    pub license: Verified<License>,
}

impl Held {
    /// Which held license this is: its kind and number.
    pub(crate) fn id(&self) -> StoreId {
        StoreId {
            kind: self.license.kind(),
            seq: self.seq,
        }
    }
}

/// A held license's identity in the store: the folder of its kind and its received
/// number there (the file `<kind>/<number>.cfg`). A number alone names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreId {
    pub(crate) kind: Kind,
    pub(crate) seq: u64,
}

/// Who this phone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub mac: Serial,
    /// The configured site serial; `None` accepts any site serial.
    pub site_serial: Option<Serial>,
}

/// How a candidate arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Fetched under the file name of this kind (`<mac>-license.cfg` is Phone,
    /// `000000000000-license.cfg` is Site).
    Fetched(Kind),
    /// Installed by hand (`license-agent install`): the kind is the content's.
    Installed,
}

/// Why a verified license is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A phone license for another MAC.
    NotThisPhone { serial: Serial, mac: Serial },
    /// A site license for another site.
    OtherSite { serial: Serial, site: Serial },
    /// The file name says one kind, the content another.
    WrongFileKind { file: Kind, content: Kind },
    /// The clock is unsynced: expiry cannot be judged yet.
    ClockUnsynced,
    /// Inactive: only a non-expired license is taken.
    Expired { end: End },
}

impl Refusal {
    /// Its verdict.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Refusal::NotThisPhone { .. } => Verdict::NotThisPhone,
            Refusal::OtherSite { .. } => Verdict::OtherSite,
            Refusal::WrongFileKind { .. } => Verdict::WrongFileKind,
            Refusal::ClockUnsynced => Verdict::ClockUnsynced,
            Refusal::Expired { .. } => Verdict::Expired,
        }
    }
}

crate::words::words! {
    /// Why a license file or a license was refused: a file's [`Rejection`] or a
    /// license's [`Refusal`], as events, the status and the report carry it. An unknown
    /// word (from a newer agent) reads as [`Verdict::Refused`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub(crate) enum Verdict {
        Malformed = "malformed",
        UnsupportedVersion = "unsupported-version",
        UnknownKey = "unknown-key",
        BadSignature = "bad-signature",
        NotThisPhone = "not-this-phone",
        OtherSite = "other-site",
        WrongFileKind = "wrong-file-kind",
        ClockUnsynced = "clock-unsynced",
        Expired = "expired",
        /// Refused, why not said (an event of an agent before the verdict was recorded).
        Refused = "refused",
    } else Refused
}

impl Verdict {
    /// The verdict of a file's rejection.
    pub(crate) fn of(rejection: &Rejection) -> Verdict {
        match rejection {
            Rejection::Malformed(_) => Verdict::Malformed,
            Rejection::UnsupportedVersion { .. } => Verdict::UnsupportedVersion,
            Rejection::UnknownKey { .. } => Verdict::UnknownKey,
            Rejection::BadSignature { .. } => Verdict::BadSignature,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotThisPhone { serial, mac } => write!(
                f,
                "phone license for MAC {serial}, not for this phone ({mac})"
            ),
            Refusal::OtherSite { serial, site } => write!(
                f,
                "site license for site {serial}, but this phone belongs to site {site}"
            ),
            Refusal::WrongFileKind { file, content } => write!(
                f,
                "a {content} license in the {file} license file ({})",
                match file {
                    Kind::Phone => "<mac>-license.cfg",
                    Kind::Site => "000000000000-license.cfg",
                }
            ),
            Refusal::ClockUnsynced => f.write_str(
                "the clock is not set yet (earlier than this agent's build), so expiry cannot be judged; try again once it is",
            ),
            Refusal::Expired { end } => write!(f, "expired on {end}: only a license that has not expired is taken"),
        }
    }
}

/// What to do with a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Store it; then drop these held licenses (all of its kind).
    Accept { drop: Vec<StoreId> },
    /// The same signed message is held already (`id`): nothing changes.
    Identical { id: StoreId },
    /// Valid and bound, but a held license of its kind lasts longer and is in use, so it
    /// would be dropped at once: nothing changes.
    Superseded { by: StoreId },
    /// Refused.
    Refuse(Refusal),
}

/// Judges a verified candidate. `judge_at` is `None` while the clock is unsynced.
/// `next_seq` is the received number the candidate would get: larger than that of every
/// held license of its kind.
pub(crate) fn judge_candidate(
    identity: &Identity,
    held: &[Held],
    candidate: &Verified<License>,
    origin: Origin,
    judge_at: Option<UnixTime>,
    next_seq: u64,
) -> Decision {
    let kind = candidate.kind();
    let serial = candidate.serial();
    match kind {
        Kind::Phone if serial != identity.mac => {
            return Decision::Refuse(Refusal::NotThisPhone {
                serial,
                mac: identity.mac,
            })
        }
        Kind::Site => {
            if let Some(site) = identity.site_serial.filter(|s| *s != serial) {
                return Decision::Refuse(Refusal::OtherSite { serial, site });
            }
        }
        Kind::Phone => {}
    }
    if let Origin::Fetched(file) = origin {
        if file != kind {
            return Decision::Refuse(Refusal::WrongFileKind {
                file,
                content: kind,
            });
        }
    }
    // Identical to a license that still counts: a repeat. A copy of one that no longer
    // counts (a drop not yet written) arrives anew, as it would once the drop was made.
    let used = judge_at.map(|at| select(held, kind, at));
    let counts = |h: &Held| {
        used.as_ref()
            .is_none_or(|s| s.role(h.id()) != Role::Dropped)
    };
    if let Some(same) = held.iter().find(|h| {
        h.license.kind() == kind
            && h.license.signed_message() == candidate.signed_message()
            && counts(h)
    }) {
        return Decision::Identical { id: same.id() };
    }
    let Some(at) = judge_at else {
        return Decision::Refuse(Refusal::ClockUnsynced);
    };
    if license_status(candidate, at) == Status::Inactive {
        return Decision::Refuse(Refusal::Expired {
            end: license_span(candidate).1,
        });
    }
    let arriving = Held {
        seq: next_seq,
        license: candidate.clone(),
    };
    let id = arriving.id();
    let mut after: Vec<Held> = held.to_vec();
    after.push(arriving);
    let selection = select(&after, kind, at);
    if selection.drop.contains(&id) {
        let by = selection.primary.unwrap_or(id);
        return Decision::Superseded { by };
    }
    Decision::Accept {
        drop: selection.drop,
    }
}

crate::words::words! {
    /// The role of a held license.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Role {
        /// The license of its kind in use: the longest duration.
        Primary = "primary",
        /// In force until the Impending primary starts.
        Bridging = "bridging",
        /// Neither: to be dropped from storage (or Inactive).
        Dropped = "dropped",
    }
}

/// Per kind: which held licenses are used, and which are to be dropped (all of that
/// kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    pub(crate) primary: Option<StoreId>,
    pub(crate) bridging: Vec<StoreId>,
    pub(crate) drop: Vec<StoreId>,
}

impl Selection {
    /// The role of `id` in this selection (a license of another kind has none here).
    fn role(&self, id: StoreId) -> Role {
        if self.primary == Some(id) {
            Role::Primary
        } else if self.bridging.contains(&id) {
            Role::Bridging
        } else {
            Role::Dropped
        }
    }
}

/// The "longest duration" order: latest end, then last received.
fn duration_key(h: &Held) -> (End, u64) {
    (license_span(&h.license).1, h.seq)
}

/// Chooses the primary and bridging licenses of `kind` at `at`. Inactive licenses are
/// never used. The primary is the longest; a license stops counting at the instant a
/// license that outlasts it starts, and never counts again. So, from the longest down,
/// every license up to the first one started counts (the Impending ones bridge to the
/// primary), and none after it. This is a function of the licenses held, their order and
/// `at` alone: a drop that was never written (no daemon ran at that instant, or the store
/// was read-only) changes nothing. At most [`MAX_PER_KIND`] are kept (the longest).
pub(crate) fn select(held: &[Held], kind: Kind, at: UnixTime) -> Selection {
    let mut live: Vec<&Held> = held
        .iter()
        .filter(|h| h.license.kind() == kind && license_status(&h.license, at) != Status::Inactive)
        .collect();
    live.sort_by_key(|h| std::cmp::Reverse(duration_key(h)));
    let started = live
        .iter()
        .position(|h| license_status(&h.license, at) != Status::Impending);
    let counting = match started {
        Some(first) => &live[..=first],
        None => &live[..],
    };
    let mut selection = Selection {
        primary: None,
        bridging: Vec::new(),
        drop: Vec::new(),
    };
    if let Some((primary, rest)) = counting.split_first() {
        selection.primary = Some(primary.id());
        selection.bridging = rest.iter().take(MAX_PER_KIND - 1).map(|h| h.id()).collect();
    }
    selection.drop = held
        .iter()
        .filter(|h| h.license.kind() == kind && selection.role(h.id()) == Role::Dropped)
        .map(Held::id)
        .collect();
    selection
}

/// A held license as evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LicenseView {
    pub(crate) seq: u64,
    pub(crate) kind: Kind,
    pub(crate) serial: Serial,
    pub(crate) role: Role,
    pub(crate) status: Status,
    pub(crate) start: UnixTime,
    pub(crate) end: End,
}

impl LicenseView {
    /// Which held license this is a view of.
    pub(crate) fn id(&self) -> StoreId {
        StoreId {
            kind: self.kind,
            seq: self.seq,
        }
    }
}

/// The entry that governs one feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Governing {
    pub(crate) kind: Kind,
    pub(crate) seq: u64,
    pub(crate) entry: FeatureEntry,
}

impl Governing {
    /// The held license the entry is from.
    pub(crate) fn id(&self) -> StoreId {
        StoreId {
            kind: self.kind,
            seq: self.seq,
        }
    }
}

/// One feature of the merged set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeatureView {
    pub(crate) id: FeatureId,
    pub(crate) status: Status,
    pub(crate) governing: Governing,
}

impl FeatureView {
    pub(crate) fn enabled(&self) -> bool {
        self.status.in_force()
    }
}

/// Everything decided at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evaluation {
    pub(crate) at: UnixTime,
    pub(crate) licenses: Vec<LicenseView>,
    /// Every feature carried by a used license, by id.
    pub(crate) features: Vec<FeatureView>,
    /// The next instant after `at` at which a status changes, if any.
    pub(crate) next_change: Option<UnixTime>,
}

impl Evaluation {
    /// The enabled features with their governing end: what the phone gets.
    pub(crate) fn enabled(&self) -> BTreeMap<FeatureId, End> {
        self.features
            .iter()
            .filter(|f| f.enabled())
            .map(|f| (f.id, f.governing.entry.end))
            .collect()
    }

    /// The enabled features with what reboots care about: site or phone, and the end.
    pub(crate) fn in_force(&self) -> reboot::InForceSet {
        self.features
            .iter()
            .filter(|f| f.enabled())
            .map(|f| {
                let end = match f.governing.entry.end {
                    End::At(t) => Some(t),
                    End::Never => None,
                };
                let site = f.governing.kind == Kind::Site;
                (f.id, reboot::InForce { site, end })
            })
            .collect()
    }
}

/// Which of two candidate entries for one feature governs: an entry in force beats one
/// that is not; among those in force the latest end wins (then phone over site, then the
/// later license); among those not in force the one starting soonest, then latest end.
fn better(a: &(Status, Governing), b: &(Status, Governing)) -> bool {
    let rank = |(s, g): &(Status, Governing)| {
        let kind = u8::from(g.kind == Kind::Phone);
        match s {
            s if s.in_force() => (3u8, Some(g.entry.end), 0i64, kind, g.seq),
            Status::Impending => (2, None, -i64::from(g.entry.start), kind, g.seq),
            _ => (1, Some(g.entry.end), 0, kind, g.seq),
        }
    };
    rank(a) > rank(b)
}

/// Evaluates everything held at `at`. The features are those of the used licenses, and
/// of the ones that have ended (shown as Inactive).
pub(crate) fn evaluate(held: &[Held], at: UnixTime) -> Evaluation {
    let selections = [
        (Kind::Phone, select(held, Kind::Phone, at)),
        (Kind::Site, select(held, Kind::Site, at)),
    ];
    let role_of = |h: &Held| {
        selections
            .iter()
            .find(|(k, _)| *k == h.license.kind())
            .map_or(Role::Dropped, |(_, s)| s.role(h.id()))
    };
    let mut licenses = Vec::with_capacity(held.len());
    let mut best: BTreeMap<FeatureId, (Status, Governing)> = BTreeMap::new();
    let mut next_change: Option<UnixTime> = None;
    let mut consider = |t: UnixTime| {
        if t > at {
            next_change = Some(next_change.map_or(t, |n| n.min(t)));
        }
    };
    for h in held {
        let (start, end) = license_span(&h.license);
        let role = role_of(h);
        let license_status = status::status(start, end, at);
        licenses.push(LicenseView {
            seq: h.seq,
            kind: h.license.kind(),
            serial: h.license.serial(),
            role,
            status: license_status,
            start,
            end,
        });
        // A dropped license counts for nothing; one that has wholly ended is still shown
        // (its entries are all Inactive, so they can never enable anything).
        if role == Role::Dropped && license_status != Status::Inactive {
            continue;
        }
        status::transitions(start, end).for_each(&mut consider);
        for entry in h.license.features() {
            status::transitions(i64::from(entry.start), entry.end).for_each(&mut consider);
            let candidate = (
                entry_status(entry, at),
                Governing {
                    kind: h.license.kind(),
                    seq: h.seq,
                    entry: *entry,
                },
            );
            match best.get(&entry.id) {
                Some(current) if !better(&candidate, current) => {}
                _ => {
                    best.insert(entry.id, candidate);
                }
            }
        }
    }
    let features = best
        .into_iter()
        .map(|(id, (status, governing))| FeatureView {
            id,
            status,
            governing,
        })
        .collect();
    Evaluation {
        at,
        licenses,
        features,
        next_change,
    }
}

#[cfg(test)]
mod tests;
