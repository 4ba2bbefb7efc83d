//! The fleet view as data, the vendor portal's model (`docs/fleet-model.md`): one row
//! per feature grant (License ID, feature, description, type, transaction, start, end,
//! devices in use against the capacity, status), counts that are counts of those rows,
//! Renewals that renew and Addons that add capacity, per-site totals, and what the
//! provider must act on, grouped. Pure: reports and an instant in, a [`Fleet`] out.
//!
//! Reports are gathered one at a time ([`Gather`]): each phone's newest report is kept
//! only as a small digest (the licenses it holds as indices into one table of licenses,
//! the features it uses, its own attention items), so a folder of 100,000 reports is
//! never held in memory at once. A license is defined by the signed content a report
//! carries ([`verify`](super::verify)), never by the report's words about it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::attention::{self, Item};
use super::slim::{self, Slim};
use super::verify::{self, Claim, Def, Proof};
use crate::engine::status::status;
use crate::format::End;
use crate::phone::parse_instant;
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

/// One license as the portal lists it: one feature grant of a license file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Row {
    /// The License ID: the license's serial (the site serial, or the phone's MAC).
    pub(crate) id: String,
    /// `site` or `phone`.
    pub(crate) kind: String,
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
    /// As the portal shows it: `active`, `expiring-shortly`, `impending`, `inactive`
    /// (`unknown` when a date does not read). A renewed term is `active`.
    pub(crate) status: String,
    /// The status its own dates give (differs from `status` only when renewed).
    pub(crate) term_status: String,
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
pub(crate) const KINDS: [&str; 14] = [
    "renewal-not-fetched",
    "feature-ends",
    "over-capacity",
    "feature-lost",
    "booted-expired",
    "forged-license",
    "unverified-license",
    "unknown-key",
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

/// The status id of a span at `at`, or `unknown`.
fn status_of(start: Option<UnixTime>, end: Option<End>, at: UnixTime) -> &'static str {
    match (start, end) {
        (Some(start), Some(end)) => status(start, end, at).id(),
        _ => "unknown",
    }
}

/// One license of the table, and the file order of the report it was defined from
/// (among equally proved definitions, the first file's describes it, whatever order
/// the files are read in).
struct Known {
    fingerprint: String,
    def: Def,
    order: usize,
}

/// A feature a phone uses whose grant ends within the window: (license, feature).
pub(crate) struct Ending {
    pub(crate) license: usize,
    pub(crate) feature: String,
}

/// What one phone's newest report contributes.
struct Digest {
    reported: Option<UnixTime>,
    order: usize,
    /// The licenses it holds that are believed (indices into the table), each once.
    licenses: Vec<usize>,
    /// The licenses it dropped lately.
    dropped: Vec<usize>,
    /// The enabled features governed by a license it holds: (license, feature).
    in_use: Vec<(usize, String)>,
    ending: Vec<Ending>,
    attention: Vec<Item>,
}

/// A fleet gathered report by report: one phone per MAC (its newest report; between two
/// reports of the same time, the first file's). Gathers of parts of a folder merge
/// into the gather of the whole, the same whatever the split.
pub(crate) struct Gather {
    options: Options,
    index: HashMap<String, usize>,
    table: Vec<Known>,
    phones: HashMap<String, Digest>,
}

/// How far a report's time may be ahead of the fleet's instant before the report is
/// "from the future" (a phone's clock ahead): flagged, and never preferred. A day, as
/// the agent's own default `windback_tolerance`.
pub(crate) const FUTURE_TOLERANCE: i64 = 86_400;

/// A report's time as it ranks: one from the future ranks with those whose time cannot
/// be read, below every other.
fn rank(reported: Option<UnixTime>, at: UnixTime) -> Option<UnixTime> {
    reported.filter(|&t| t <= at.saturating_add(FUTURE_TOLERANCE))
}

/// Whether a report (`reported`, `order`) replaces a phone's kept one, judged at `at`.
fn replaces(reported: Option<UnixTime>, order: usize, old: &Digest, at: UnixTime) -> bool {
    let (new, kept) = (rank(reported, at), rank(old.reported, at));
    new > kept || (new == kept && order < old.order)
}

impl Gather {
    pub(crate) fn new(options: Options) -> Gather {
        Gather {
            options,
            index: HashMap::new(),
            table: Vec::new(),
            phones: HashMap::new(),
        }
    }

    /// The table's index of `known`'s license: the best proved definition describes
    /// it, the first file's among equals.
    fn register(&mut self, known: Known) -> usize {
        match self.index.get(&known.fingerprint) {
            Some(&i) => {
                if let Some(k) = self.table.get_mut(i) {
                    let better = (known.def.proof, std::cmp::Reverse(known.order))
                        > (k.def.proof, std::cmp::Reverse(k.order));
                    if better {
                        *k = known;
                    }
                }
                i
            }
            None => {
                self.index
                    .insert(known.fingerprint.clone(), self.table.len());
                self.table.push(known);
                self.table.len() - 1
            }
        }
    }

    /// The table index of a license a report names, judged from its signed content;
    /// a doubt becomes the phone's attention item.
    fn believe(
        &mut self,
        claim: &Claim<'_, '_>,
        signed: Option<&slim::Signed<'_>>,
        order: usize,
        phone: &verify::Phone<'_>,
        doubts: &mut Vec<Item>,
    ) -> Option<usize> {
        let seen = self.index.get(claim.fingerprint).copied();
        let known = seen
            .and_then(|i| self.table.get(i))
            .map(|k| (k.def.proof, k.order, k.def.signature));
        // Verified already with this signature: only the claim's own content is
        // checked (a cheap hash), never the same signature again.
        let keyring = self.options.keyring.clone();
        let verified = known.as_ref().and_then(|k| k.2.as_ref());
        let judged = verify::judge(claim, signed, keyring.as_deref(), verified)
            .and_then(|def| verify::bound(def, claim.fingerprint, phone));
        match judged {
            Ok(def) => {
                let i = match (seen, known) {
                    (Some(i), Some((proof, first, _)))
                        if (proof, std::cmp::Reverse(first))
                            >= (def.proof, std::cmp::Reverse(order)) =>
                    {
                        i
                    }
                    _ => self.register(Known {
                        fingerprint: claim.fingerprint.to_string(),
                        def,
                        order,
                    }),
                };
                Some(i)
            }
            Err(doubt) => {
                doubts.push(Item {
                    what: doubt.what,
                    subject: claim
                        .fingerprint
                        .get(..12)
                        .unwrap_or(claim.fingerprint)
                        .into(),
                    detail: doubt.detail,
                });
                None
            }
        }
    }

    /// Adds the report read from the `order`-th file (in file-name order).
    pub(crate) fn add(&mut self, report: &Slim<'_>, order: usize) {
        let at = self.options.at;
        let reported = parse_instant(report.reported_at.as_str()).ok();
        if let Some(old) = self.phones.get(report.mac.as_str()) {
            if !replaces(reported, order, old, at) {
                return;
            }
        }
        let mut doubts = Vec::new();
        let phone = verify::Phone {
            mac: report.mac.as_str(),
            site_serial: report.site_serial.as_ref().map(|s| s.as_str()),
        };
        let mut licenses = Vec::with_capacity(report.licenses.len());
        let mut held: Vec<(&str, usize)> = Vec::with_capacity(report.licenses.len());
        for l in &report.licenses {
            let claim = Claim {
                fingerprint: l.fingerprint.as_str(),
                kind: l.kind.as_str(),
                serial: l.serial.as_str(),
                key: l.key.as_str(),
                grants: &l.grants,
            };
            if let Some(i) = self.believe(&claim, l.signed.as_ref(), order, &phone, &mut doubts) {
                if !licenses.contains(&i) {
                    licenses.push(i);
                    held.push((l.fingerprint.as_str(), i));
                }
            }
        }
        let mut dropped = Vec::new();
        for d in report.dropped.iter().flatten() {
            let claim = Claim {
                fingerprint: d.fingerprint.as_str(),
                kind: d.kind.as_str(),
                serial: d.serial.as_str(),
                key: d.key.as_str(),
                grants: &d.grants,
            };
            if let Some(i) = self.believe(&claim, d.signed.as_ref(), order, &phone, &mut doubts) {
                if !dropped.contains(&i) && !licenses.contains(&i) {
                    dropped.push(i);
                }
            }
        }
        let mut in_use: Vec<(usize, String)> = Vec::new();
        let mut ending = Vec::new();
        for f in report.features.iter().filter(|f| f.enabled) {
            let governing = f
                .fingerprint
                .as_ref()
                .and_then(|fp| held.iter().find(|(h, _)| *h == fp.as_str()))
                .map(|(_, i)| *i);
            let Some(i) = governing else { continue };
            if !in_use.iter().any(|(j, n)| *j == i && f.name == *n.as_str()) {
                in_use.push((i, f.name.to_string()));
            }
            if let Some(End::At(end)) = verify::end_of(f.end.as_str()) {
                let left = i64::from(end).saturating_sub(at);
                if (0..self.options.within).contains(&left) {
                    ending.push(Ending {
                        license: i,
                        feature: f.name.to_string(),
                    });
                }
            }
        }
        let mut items = attention::of_phone(report, reported, &self.options);
        items.append(&mut doubts);
        self.phones.insert(
            report.mac.to_string(),
            Digest {
                reported,
                order,
                licenses,
                dropped,
                in_use,
                ending,
                attention: items,
            },
        );
    }

    /// Takes in the gather of another part of the folder.
    pub(crate) fn merge(&mut self, other: Gather) {
        let map: Vec<usize> = other.table.into_iter().map(|k| self.register(k)).collect();
        let moved = |i: &mut usize| *i = map.get(*i).copied().unwrap_or(usize::MAX);
        for (mac, mut digest) in other.phones {
            if let Some(old) = self.phones.get(&mac) {
                if !replaces(digest.reported, digest.order, old, self.options.at) {
                    continue;
                }
            }
            digest.licenses.iter_mut().for_each(moved);
            digest.dropped.iter_mut().for_each(moved);
            digest.in_use.iter_mut().for_each(|(i, _)| moved(i));
            digest.ending.iter_mut().for_each(|e| moved(&mut e.license));
            self.phones.insert(mac, digest);
        }
    }

    /// The fleet at the instant.
    pub(crate) fn finish(self) -> Fleet {
        let Gather {
            options,
            table,
            phones,
            ..
        } = self;
        let mut phones: Vec<(String, Digest)> = phones.into_iter().collect();
        phones.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let book = Book::new(&table, &phones, &options);
        book.fleet(&table, phones, &options)
    }
}

/// A grant's identity: the same record in two files (a file rebuilt for an Addon
/// keeps its other grants as they were) is one row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RowKey {
    kind: String,
    serial: String,
    feature: String,
    transaction: String,
    start: String,
    end: String,
    limit: u32,
}

/// A row being built, with what the rules need.
struct Draft {
    row: Row,
    start: Option<UnixTime>,
    end: Option<End>,
    /// Listed: carried by a license a phone holds, or dropped lately and not ended
    /// longer ago than `--inactive`.
    listed: bool,
    /// For a term: the Renewals that renew it.
    renewals: Vec<usize>,
    /// For an Addon: the term it adds to.
    term: Option<usize>,
}

/// The rows and how licenses and phones map onto them.
struct Book {
    drafts: Vec<Draft>,
    /// For each license of the table, the row of each of its grants.
    rows_of: Vec<Vec<usize>>,
}

/// Whether the instant `t` is before `end` (never: always).
fn before_end(t: UnixTime, end: Option<End>) -> bool {
    match end {
        Some(End::At(e)) => t < i64::from(e),
        Some(End::Never) => true,
        None => false,
    }
}

/// Ends in order: instants, then never, then unreadable.
fn end_key(end: Option<End>) -> (u8, u32) {
    match end {
        Some(End::At(t)) => (0, t),
        Some(End::Never) => (1, 0),
        None => (2, 0),
    }
}

impl Book {
    fn new(table: &[Known], phones: &[(String, Digest)], options: &Options) -> Book {
        let at = options.at;
        let mut held = vec![false; table.len()];
        let mut dropped = vec![false; table.len()];
        for (_, d) in phones {
            for &i in &d.licenses {
                if let Some(h) = held.get_mut(i) {
                    *h = true;
                }
            }
            for &i in &d.dropped {
                if let Some(h) = dropped.get_mut(i) {
                    *h = true;
                }
            }
        }
        let mut keys: HashMap<RowKey, usize> = HashMap::new();
        let mut drafts: Vec<Draft> = Vec::new();
        let mut rows_of = Vec::with_capacity(table.len());
        let verified = options.keyring.is_some();
        for (i, k) in table.iter().enumerate() {
            let (is_held, is_dropped) = (held[i], dropped[i]);
            if !is_held && !is_dropped {
                rows_of.push(Vec::new());
                continue;
            }
            let mut mine = Vec::with_capacity(k.def.grants.len());
            for g in &k.def.grants {
                let key = RowKey {
                    kind: k.def.kind.clone(),
                    serial: k.def.serial.clone(),
                    feature: g.name.clone(),
                    transaction: g.transaction.clone(),
                    start: g.start_text.clone(),
                    end: g.end_text.clone(),
                    limit: g.limit,
                };
                let n = *keys.entry(key).or_insert_with(|| {
                    let own = status_of(g.start, g.end, at);
                    drafts.push(Draft {
                        row: Row {
                            id: k.def.serial.clone(),
                            kind: k.def.kind.clone(),
                            feature: g.name.clone(),
                            description: description(&g.name).into(),
                            kind_of_count: if g.limit > 0 {
                                "managed-device"
                            } else {
                                "feature"
                            }
                            .into(),
                            transaction: g.transaction.clone(),
                            start: g.start_text.clone(),
                            end: g.end_text.clone(),
                            days_left: g.end.and_then(|e| crate::status::days_left(e, at)),
                            status: own.into(),
                            term_status: own.into(),
                            renewed_until: None,
                            renewal_fetched: None,
                            renewal_phones: None,
                            adds_to: None,
                            limit: g.limit,
                            capacity: g.limit,
                            in_use: 0,
                            over: false,
                            phones: 0,
                            licenses: Vec::new(),
                            verified,
                        },
                        start: g.start,
                        end: g.end,
                        listed: false,
                        renewals: Vec::new(),
                        term: None,
                    });
                    drafts.len() - 1
                });
                if let Some(d) = drafts.get_mut(n) {
                    if !d.row.licenses.contains(&k.fingerprint) {
                        d.row.licenses.push(k.fingerprint.clone());
                    }
                    d.row.verified &= k.def.proof == Proof::Verified;
                    let recent = match g.end {
                        Some(End::At(end)) => at.saturating_sub(i64::from(end)) <= options.inactive,
                        _ => true,
                    };
                    d.listed |= is_held || recent;
                }
                mine.push(n);
            }
            rows_of.push(mine);
        }
        let mut book = Book { drafts, rows_of };
        book.link();
        book
    }

    /// Renewals to the terms they renew, Addons to the terms they add to.
    fn link(&mut self) {
        let mut groups: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        for (n, d) in self.drafts.iter().enumerate() {
            groups
                .entry((d.row.kind.clone(), d.row.id.clone(), d.row.feature.clone()))
                .or_default()
                .push(n);
        }
        for members in groups.values() {
            for &t in members {
                let Some(term) = self.drafts.get(t) else {
                    continue;
                };
                if term.row.transaction == "addon" {
                    // The term in force at the Addon's start: a New or Renewal.
                    let start = term.start;
                    let host = members
                        .iter()
                        .filter_map(|&h| self.drafts.get(h).map(|d| (h, d)))
                        .filter(|(_, d)| matches!(d.row.transaction.as_str(), "new" | "renewal"))
                        .filter(|(_, d)| match (start, d.start) {
                            (Some(s), Some(ts)) => ts <= s && before_end(s, d.end),
                            _ => false,
                        })
                        .max_by_key(|(_, d)| d.start)
                        .map(|(h, _)| h);
                    if let Some(d) = self.drafts.get_mut(t) {
                        d.term = host;
                    }
                    continue;
                }
                // A term ending at an instant is renewed by a Renewal that starts no
                // later than its end and ends after it.
                let Some(End::At(end)) = term.end else {
                    continue;
                };
                let renewals: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&r| r != t)
                    .filter(|&r| {
                        self.drafts.get(r).is_some_and(|d| {
                            d.row.transaction == "renewal"
                                && d.start.is_some_and(|s| s <= i64::from(end))
                                && end_key(d.end) > end_key(Some(End::At(end)))
                                && d.end.is_some()
                        })
                    })
                    .collect();
                if let Some(d) = self.drafts.get_mut(t) {
                    d.renewals = renewals;
                }
            }
        }
        // Renewed terms show as the portal shows them; Addons in force add capacity.
        for t in 0..self.drafts.len() {
            let renewals = self.drafts[t].renewals.clone();
            let until = renewals
                .iter()
                .filter_map(|&r| self.drafts.get(r))
                .max_by_key(|d| end_key(d.end))
                .map(|d| d.row.end.clone());
            if let Some(d) = self.drafts.get_mut(t) {
                if until.is_some() && d.row.term_status == "expiring-shortly" {
                    d.row.status = "active".into();
                }
                d.row.renewed_until = until;
            }
            let addon = self.drafts.get(t).and_then(|d| {
                let in_force = matches!(d.row.term_status.as_str(), "active" | "expiring-shortly");
                d.term.map(|h| (h, d.row.limit, in_force))
            });
            if let Some((h, limit, in_force)) = addon {
                let label = self
                    .drafts
                    .get(h)
                    .map(|d| format!("{} {}", d.row.transaction, d.row.start));
                if let Some(term) = self.drafts.get_mut(h) {
                    if in_force {
                        term.row.capacity = term.row.capacity.saturating_add(limit);
                    }
                }
                if let Some(d) = self.drafts.get_mut(t) {
                    // Nothing is counted against it: its term counts for both.
                    d.row.adds_to = label;
                    d.row.capacity = 0;
                }
            }
        }
    }

    /// The row a phone's use of `feature` under license `license` counts on: the grant's
    /// row, or for an Addon the term it adds to.
    fn counted_row(&self, license: usize, feature: &str, table: &[Known]) -> Option<usize> {
        let k = table.get(license)?;
        let g = k.def.grants.iter().position(|g| g.name == feature)?;
        let n = *self.rows_of.get(license)?.get(g)?;
        Some(self.drafts.get(n).and_then(|d| d.term).unwrap_or(n))
    }

    /// The rows a phone holds, each once.
    fn rows_held(&self, digest: &Digest) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for &i in &digest.licenses {
            for &n in self.rows_of.get(i).map(Vec::as_slice).unwrap_or(&[]) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }

    fn label(&self, n: usize) -> String {
        self.drafts.get(n).map_or_else(String::new, |d| {
            format!(
                "{} {} {} ({} {} until {})",
                d.row.feature, d.row.kind, d.row.id, d.row.transaction, d.row.start, d.row.end
            )
        })
    }

    fn fleet(mut self, table: &[Known], phones: Vec<(String, Digest)>, options: &Options) -> Fleet {
        let at = options.at;
        let mut groups = attention::Groups::default();
        let mut counted: Vec<Vec<usize>> = Vec::with_capacity(phones.len());
        let mut site_phones: HashMap<String, usize> = HashMap::new();
        // The terms a Renewal renews, not ended (an ended term needs nothing).
        let renewed: Vec<usize> = (0..self.drafts.len())
            .filter(|&n| {
                self.drafts
                    .get(n)
                    .is_some_and(|d| !d.renewals.is_empty() && d.row.term_status != "inactive")
            })
            .collect();
        for (mac, digest) in &phones {
            let held = self.rows_held(digest);
            for &n in &held {
                if let Some(d) = self.drafts.get_mut(n) {
                    d.row.phones += 1;
                }
            }
            let mut sites: Vec<&str> = Vec::new();
            for &i in &digest.licenses {
                if let Some(k) = table.get(i).filter(|k| k.def.kind == "site") {
                    if !sites.contains(&k.def.serial.as_str()) {
                        sites.push(&k.def.serial);
                    }
                }
            }
            for s in sites {
                *site_phones.entry(s.to_string()).or_default() += 1;
            }
            // Devices in use, each row once per phone.
            let mut mine: Vec<usize> = Vec::new();
            for (i, feature) in &digest.in_use {
                if let Some(n) = self.counted_row(*i, feature, table) {
                    if !mine.contains(&n) {
                        mine.push(n);
                    }
                }
            }
            for &n in &mine {
                let label = self.label(n);
                if let Some(d) = self.drafts.get_mut(n) {
                    d.row.in_use += 1;
                    if d.row.term_status == "inactive" {
                        groups.add(
                            mac,
                            Item {
                                what: "inactive-in-use",
                                subject: label,
                                detail: format!(
                                    "uses {} under a grant that ended {}: the phone has not reported since, or its clock is behind",
                                    d.row.feature, d.row.end
                                ),
                            },
                        );
                    }
                }
            }
            // Renewals: fetched, or to be fetched, by the phones holding the term or
            // its Renewal.
            for &n in &renewed {
                let Some(d) = self.drafts.get(n) else {
                    continue;
                };
                let has_term = held.contains(&n);
                let has_renewal = d.renewals.iter().any(|r| held.contains(r));
                if !has_term && !has_renewal {
                    continue;
                }
                if !has_renewal {
                    let renewal = d
                        .renewals
                        .iter()
                        .filter_map(|&r| self.drafts.get(r))
                        .max_by_key(|r| end_key(r.end));
                    let until = renewal.map_or_else(String::new, |r| r.row.end.clone());
                    groups.add(
                        mac,
                        Item {
                            what: "renewal-not-fetched",
                            subject: self.label(n),
                            detail: format!(
                                "holds the term ending {} but not its Renewal until {until}",
                                d.row.end
                            ),
                        },
                    );
                }
                if let Some(d) = self.drafts.get_mut(n) {
                    *d.row.renewal_phones.get_or_insert(0) += 1;
                    *d.row.renewal_fetched.get_or_insert(0) += usize::from(has_renewal);
                }
            }
            // A feature ending soon with no Renewal posted: renew.
            for e in &digest.ending {
                let Some(n) = self.counted_row(e.license, &e.feature, table) else {
                    continue;
                };
                let Some(d) = self.drafts.get(n) else {
                    continue;
                };
                if !d.renewals.is_empty() {
                    continue;
                }
                groups.add(
                    mac,
                    Item {
                        what: "feature-ends",
                        subject: self.label(n),
                        detail: format!(
                            "{} ends {} ({} days)",
                            d.row.feature,
                            d.row.end,
                            d.row.days_left.unwrap_or(0)
                        ),
                    },
                );
            }
            for item in &digest.attention {
                groups.add(mac, item.clone());
            }
            counted.push(mine);
        }
        // Over capacity: the phones counted on each such row.
        for d in &mut self.drafts {
            d.row.over = d.row.capacity > 0 && d.row.in_use > d.row.capacity as usize;
        }
        for ((mac, _), mine) in phones.iter().zip(&counted) {
            for &n in mine {
                let Some(d) = self.drafts.get(n).filter(|d| d.row.over) else {
                    continue;
                };
                let subject = self.label(n);
                let detail = format!(
                    "{subject}: {} devices in use of {}: over by {}; buy an Addon or free devices",
                    d.row.in_use,
                    d.row.capacity,
                    d.row.in_use - d.row.capacity as usize
                );
                groups.add_to(
                    mac,
                    Item {
                        what: "over-capacity",
                        subject,
                        detail: format!("counted on {} {}", d.row.feature, d.row.id),
                    },
                    Some(detail),
                );
            }
        }
        let mut drafts: Vec<Draft> = self.drafts.into_iter().filter(|d| d.listed).collect();
        drafts.sort_by(|a, b| {
            (
                a.row.kind != "site",
                end_key(a.end),
                &a.row.id,
                &a.row.feature,
                a.start,
            )
                .cmp(&(
                    b.row.kind != "site",
                    end_key(b.end),
                    &b.row.id,
                    &b.row.feature,
                    b.start,
                ))
        });
        let rows: Vec<Row> = drafts.into_iter().map(|d| d.row).collect();
        let mut summary = Summary::default();
        let mut sites: HashMap<String, Site> = HashMap::new();
        for row in &rows {
            count(&mut summary, &row.status);
            if row.kind == "site" {
                let site = sites.entry(row.id.clone()).or_insert_with(|| Site {
                    serial: row.id.clone(),
                    ..Site::default()
                });
                count(&mut site.rows, &row.status);
                let in_force = matches!(row.term_status.as_str(), "active" | "expiring-shortly");
                if row.capacity > 0 && in_force {
                    site.in_use += row.in_use;
                    site.capacity += u64::from(row.capacity);
                }
            }
        }
        let mut sites: Vec<Site> = sites
            .into_values()
            .map(|mut s| {
                s.phones = site_phones.get(&s.serial).copied().unwrap_or(0);
                s
            })
            .collect();
        sites.sort_by(|a, b| a.serial.cmp(&b.serial));
        Fleet {
            at: crate::status::time(at),
            phones: phones.len(),
            verified: options.keyring.is_some(),
            summary,
            rows,
            sites,
            attention: groups.finish(),
        }
    }
}

fn count(summary: &mut Summary, status: &str) {
    summary.all += 1;
    match status {
        "active" => summary.active += 1,
        "expiring-shortly" => summary.expiring_shortly += 1,
        "impending" => summary.impending += 1,
        "inactive" => summary.inactive += 1,
        _ => {}
    }
}

/// The fleet of `reports` (one per phone: the newest wins when a MAC reports twice),
/// each read back from its JSON as the folder's files are.
#[cfg(test)]
pub(crate) fn fleet(reports: &[crate::report::Report], options: Options) -> Fleet {
    let mut gather = Gather::new(options);
    for (order, r) in reports.iter().enumerate() {
        let bytes = serde_json::to_vec(r).unwrap_or_default();
        if let Ok(slim) = serde_json::from_slice::<Slim<'_>>(&bytes) {
            gather.add(&slim, order);
        }
    }
    gather.finish()
}
