//! The four statuses of the vendor's portal, for one feature entry or a whole license,
//! at an instant (`agent-rules.md`, "Status of a license").

use std::fmt;

use crate::format::{End, FeatureEntry, License};
use crate::time::UnixTime;

/// "Expiring Shortly": fewer than 31 days left.
pub(crate) const EXPIRING_WINDOW: i64 = 31 * 86_400;

crate::words::words! {
    /// The status of an entry or license at an instant.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub(crate) enum Status {
        /// Start not reached yet.
        Impending = "impending",
        /// In force, with 31 days or more left (or no end).
        Active = "active",
        /// In force, with fewer than 31 days left.
        ExpiringShortly = "expiring-shortly",
        /// Ended.
        Inactive = "inactive",
    }
}

impl Status {
    /// Whether an entry with this status enables its feature.
    pub(crate) fn in_force(self) -> bool {
        matches!(self, Status::Active | Status::ExpiringShortly)
    }

    /// The portal's words, for people.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Impending => "Impending",
            Status::Active => "Active",
            Status::ExpiringShortly => "Expiring Shortly",
            Status::Inactive => "Inactive",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An end as an instant, `None` for never.
pub(crate) fn end_instant(end: End) -> Option<UnixTime> {
    match end {
        End::At(t) => Some(i64::from(t)),
        End::Never => None,
    }
}

/// The status of a span `[start, end)` at `at`.
pub(crate) fn status(start: UnixTime, end: End, at: UnixTime) -> Status {
    if at < start {
        return Status::Impending;
    }
    match end_instant(end) {
        Some(end) if at >= end => Status::Inactive,
        Some(end) if end.saturating_sub(at) < EXPIRING_WINDOW => Status::ExpiringShortly,
        _ => Status::Active,
    }
}

/// The instants at which the status of `[start, end)` changes: start, the 31-day mark,
/// end.
pub(crate) fn transitions(start: UnixTime, end: End) -> impl Iterator<Item = UnixTime> {
    let end = end_instant(end);
    [
        Some(start),
        end.map(|e| e.saturating_sub(EXPIRING_WINDOW)),
        end,
    ]
    .into_iter()
    .flatten()
}

/// A license's span: the earliest start and the latest end of its entries.
pub(crate) fn license_span(license: &License) -> (UnixTime, End) {
    let start = license
        .features()
        .iter()
        .map(|e| i64::from(e.start))
        .min()
        .unwrap_or(0);
    let end = license
        .features()
        .iter()
        .map(|e| e.end)
        .max()
        .unwrap_or(End::At(0));
    (start, end)
}

/// The status of a whole license.
pub(crate) fn license_status(license: &License, at: UnixTime) -> Status {
    let (start, end) = license_span(license);
    status(start, end, at)
}

/// The status of one entry.
pub(crate) fn entry_status(entry: &FeatureEntry, at: UnixTime) -> Status {
    status(i64::from(entry.start), entry.end, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: UnixTime = 1_767_225_600; // 2026-01-01
    const END: u32 = 1_798_761_600; // 2027-01-01

    #[test]
    fn the_four_statuses_at_their_exact_boundaries() {
        let end = End::At(END);
        let end_i = i64::from(END);
        let mark = end_i - EXPIRING_WINDOW;
        assert_eq!(status(START, end, START - 1), Status::Impending);
        assert_eq!(status(START, end, START), Status::Active);
        assert_eq!(status(START, end, mark - 1), Status::Active);
        assert_eq!(
            status(START, end, mark),
            Status::Active,
            "exactly 31 days left is not fewer"
        );
        assert_eq!(status(START, end, mark + 1), Status::ExpiringShortly);
        assert_eq!(status(START, end, end_i - 1), Status::ExpiringShortly);
        assert_eq!(status(START, end, end_i), Status::Inactive);
        assert_eq!(status(START, End::Never, START - 1), Status::Impending);
        assert_eq!(
            status(START, End::Never, i64::from(u32::MAX) + 10),
            Status::Active
        );
    }

    #[test]
    fn in_force_only_while_active_or_expiring() {
        assert!(Status::Active.in_force() && Status::ExpiringShortly.in_force());
        assert!(!Status::Impending.in_force() && !Status::Inactive.in_force());
    }

    #[test]
    fn transitions_of_a_span() {
        let t: Vec<_> = transitions(START, End::At(END)).collect();
        assert_eq!(t, [START, i64::from(END) - EXPIRING_WINDOW, i64::from(END)]);
        assert_eq!(transitions(START, End::Never).collect::<Vec<_>>(), [START]);
    }

    /// The machine names read back as the statuses they name, and nothing else: the one
    /// place a status id becomes the portal's words.
    #[test]
    fn ids_read_back() {
        for s in [
            Status::Impending,
            Status::Active,
            Status::ExpiringShortly,
            Status::Inactive,
        ] {
            assert_eq!(Status::from_id(s.id()), Some(s));
        }
        assert_eq!(Status::from_id("Active"), None);
        assert_eq!(Status::from_id("unknown"), None);
    }
}
