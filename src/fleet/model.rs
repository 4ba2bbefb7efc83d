//! The fleet view's data: what to look for ([`Options`]) and what the view shows, the
//! vendor portal's model (`docs/fleet-model.md`): rows of feature grants, counts that
//! are counts of rows, per-site totals, and the groups of what to act on. Plain data,
//! serialised as `--json`, read by the table, the CSV and the page.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::status::Status;
use crate::format::Kind;
use crate::time::UnixTime;
use crate::trust::Keyring;

/// What to look for.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The instant the fleet is judged at.
    pub(crate) at: UnixTime,
    /// A feature ending within this many seconds needs attention.
    pub(crate) within: i64,
    /// A report older than this many seconds is stale.
    pub(crate) stale: i64,
    /// An ended grant stays listed (Inactive) this many seconds after its end.
    pub(crate) inactive: i64,
    /// The vendor keys: a license counts only when its content verifies with one.
    pub(crate) keyring: Option<Arc<Keyring>>,
}

impl Options {
    /// The defaults of `license-fleet` at `at`: 31, 7 and 90 days, no keyring.
    pub(crate) fn at(at: UnixTime) -> Options {
        Options {
            at,
            within: 31 * 86_400,
            stale: 7 * 86_400,
            inactive: 90 * 86_400,
            keyring: None,
        }
    }
}

/// The portal's counts: rows, by the status each is shown with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    pub(crate) all: usize,
    pub(crate) active: usize,
    pub(crate) expiring_shortly: usize,
    pub(crate) impending: usize,
    pub(crate) inactive: usize,
}

impl Summary {
    /// The rows of `status`.
    pub(crate) fn of(&self, status: Status) -> usize {
        match status {
            Status::Active => self.active,
            Status::ExpiringShortly => self.expiring_shortly,
            Status::Impending => self.impending,
            Status::Inactive => self.inactive,
        }
    }
}

/// One license as the portal lists it: one feature grant of a license file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Row {
    /// The License ID: the license's serial (the site serial, or the phone's MAC).
    pub(crate) id: String,
    pub(crate) kind: Kind,
    /// The Feature Code.
    pub(crate) feature: String,
    pub(crate) description: String,
    /// `managed-device` (a counted feature: a limit) or `feature`.
    #[serde(rename = "type")]
    pub(crate) kind_of_count: String,
    /// `trial`, `new`, `addon`, `renewal`.
    pub(crate) transaction: String,
    pub(crate) start: String,
    pub(crate) end: String,
    /// Days left at the instant, counted as `license-agent status` counts them (a day
    /// begun counts); `None` for a grant that never ends.
    pub(crate) days_left: Option<i64>,
    /// As the portal shows it (`None`, `unknown` in JSON, when a date does not read).
    /// A renewed term is Active.
    #[serde(with = "crate::words::or_unknown")]
    pub(crate) status: Option<Status>,
    /// The status its own dates give (differs from `status` only when renewed).
    #[serde(with = "crate::words::or_unknown")]
    pub(crate) term_status: Option<Status>,
    /// The end of the Renewal that renews this term, if one does.
    pub(crate) renewed_until: Option<String>,
    /// When renewed: the phones holding the Renewal, of [`Row::renewal_phones`].
    pub(crate) renewal_fetched: Option<usize>,
    /// When renewed: the phones holding this term or its Renewal (a phone that took
    /// the Renewal may have dropped the term's file for it).
    pub(crate) renewal_phones: Option<usize>,
    /// For an Addon: the term whose capacity it adds to (`new 2026-01-01T00:00:00Z`).
    pub(crate) adds_to: Option<String>,
    /// The grant's own Managed Device limit (0: not counted).
    pub(crate) limit: u32,
    /// What devices in use are counted against: the limit, plus the Addons in force
    /// within this term (0 for an Addon counted on its term, or a grant not counted).
    pub(crate) capacity: u32,
    /// The phones using the feature under this grant (an Addon's count toward its term).
    pub(crate) in_use: usize,
    /// `in_use` above a non-zero `capacity`.
    pub(crate) over: bool,
    /// The phones holding a license file that carries this grant.
    pub(crate) phones: usize,
    /// The license files carrying it, by fingerprint.
    pub(crate) licenses: Vec<String>,
    /// Every file carrying it verified with the keyring.
    pub(crate) verified: bool,
}

/// A site's totals: its rows by status, its phones and its counted devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Site {
    pub(crate) serial: String,
    /// Phones holding a license of the site.
    pub(crate) phones: usize,
    pub(crate) rows: Summary,
    /// Devices in use and capacity over its counted rows in force.
    pub(crate) in_use: usize,
    pub(crate) capacity: u64,
}

/// What the provider must act on: one group per thing to do, with its phones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Group {
    /// The kind of action (see [`KINDS`]).
    pub(crate) what: String,
    /// What it is about (a feature and license, a key, a verdict...): the group's key.
    pub(crate) subject: String,
    /// What to do, in a sentence.
    pub(crate) detail: String,
    pub(crate) phones: Vec<PhoneItem>,
}

/// One phone of a group, with what is particular to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PhoneItem {
    pub(crate) mac: String,
    pub(crate) detail: String,
}

/// Every kind of group, in the order groups are listed.
pub(crate) const KINDS: [&str; 18] = [
    "renewal-not-fetched",
    "feature-ends",
    "over-capacity",
    "feature-lost",
    "booted-expired",
    "forged-license",
    "unverified-license",
    "unknown-key",
    "trust-expired",
    "trust-refused",
    "trust-set-aside",
    "config-set-aside",
    "refused",
    "stale-report",
    "future-report",
    "clock",
    "reboot-pending",
    "inactive-in-use",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Fleet {
    pub(crate) at: String,
    pub(crate) phones: usize,
    /// Whether licenses were verified (`--keyring`): without, every row is the
    /// reports' word, its content at most matching its fingerprint.
    pub(crate) verified: bool,
    pub(crate) summary: Summary,
    pub(crate) rows: Vec<Row>,
    pub(crate) sites: Vec<Site>,
    pub(crate) attention: Vec<Group>,
}

impl Fleet {
    /// Phone items over all groups.
    pub(crate) fn attention_items(&self) -> usize {
        self.attention.iter().map(|g| g.phones.len()).sum()
    }
}

/// What a feature the spec names is, for the portal's Description column.
pub(crate) fn description(feature: &str) -> &'static str {
    match feature {
        "usb-call-recording" => "USB call recording",
        "vqmon" => "VQMon voice quality monitoring",
        "productivity-suite" => "Productivity Suite",
        "h323" => "H.323 calling",
        "lync" => "Microsoft Lync / Skype for Business",
        "conference-management" => "Conference management",
        _ => "",
    }
}

/// How far a report's time may be ahead of the fleet's instant before the report is
/// "from the future" (a phone's clock ahead): flagged, and never preferred. A day, as
/// the agent's own default `windback_tolerance`.
pub(crate) const FUTURE_TOLERANCE: i64 = 86_400;
