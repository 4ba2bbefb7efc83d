//! The fleet view as data, from the phones' reports at one instant: the portal's summary
//! (each license once, by fingerprint), the license list with the phones using each
//! counted feature against its limit, and what needs attention. Pure: reports and an
//! instant in, a [`Fleet`] out.
//!
//! Reports are gathered one at a time ([`Gather`]): each phone's newest report is kept
//! only as a small digest (the licenses it holds as indices into one table of licenses,
//! the features it uses, its attention items), so a folder of 100,000 reports is never
//! held in memory at once.

use std::collections::HashMap;

use serde::Serialize;

use super::slim::{self, Slim};
use crate::engine::status::status;
use crate::format::End;
use crate::phone::parse_instant;
use crate::time::UnixTime;

/// What to look for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// The instant the fleet is judged at.
    pub(crate) at: UnixTime,
    /// A feature ending within this many seconds needs attention.
    pub(crate) within: i64,
    /// A report older than this many seconds is stale.
    pub(crate) stale: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    pub(crate) all: usize,
    pub(crate) active: usize,
    pub(crate) expiring_shortly: usize,
    pub(crate) impending: usize,
    pub(crate) inactive: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LicenseRow {
    pub(crate) fingerprint: String,
    pub(crate) kind: String,
    pub(crate) serial: String,
    pub(crate) key: String,
    pub(crate) start: String,
    pub(crate) end: String,
    /// `active`, `expiring-shortly`, `impending`, `inactive` at the instant judged
    /// (`unknown` when a date does not read).
    pub(crate) status: String,
    /// The phones that hold it.
    pub(crate) phones: usize,
    pub(crate) grants: Vec<GrantRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GrantRow {
    pub(crate) name: String,
    /// What the feature is, for the features the spec names (empty otherwise).
    pub(crate) description: String,
    pub(crate) transaction: String,
    pub(crate) start: String,
    pub(crate) end: String,
    /// This record's own status at the instant judged (as for licenses).
    pub(crate) status: String,
    /// The Managed Device limit (0: not counted).
    pub(crate) limit: u32,
    /// The phones on which this license governs the feature and it is enabled.
    pub(crate) in_use: usize,
    /// `in_use` above a non-zero `limit`.
    pub(crate) over_limit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Attention {
    pub(crate) mac: String,
    /// `feature-ends`, `booted-expired`, `stale-report`, `future-report`, `refused`,
    /// `unknown-key`, `clock`, `reboot-pending` (see [`KINDS`]).
    pub(crate) what: String,
    pub(crate) detail: String,
}

/// Every kind of attention item, in the order a phone's items are listed.
pub(crate) const KINDS: [&str; 8] = [
    "feature-ends",
    "booted-expired",
    "stale-report",
    "future-report",
    "refused",
    "unknown-key",
    "clock",
    "reboot-pending",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Fleet {
    pub(crate) at: String,
    pub(crate) phones: usize,
    pub(crate) summary: Summary,
    pub(crate) licenses: Vec<LicenseRow>,
    pub(crate) attention: Vec<Attention>,
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

/// An RFC 3339 instant of a report, or `never`; `None` when it is neither.
fn end_of(text: &str) -> Option<End> {
    if text == "never" {
        return Some(End::Never);
    }
    let t = parse_instant(text).ok()?;
    u32::try_from(t).ok().map(End::At)
}

/// The status id of a span of a report at `at`, or `unknown`.
fn status_of(start: &str, end: &str, at: UnixTime) -> &'static str {
    match (parse_instant(start).ok(), end_of(end)) {
        (Some(start), Some(end)) => status(start, end, at).id(),
        _ => "unknown",
    }
}

/// One license of the table, and the file order of the report it was first read from
/// (the first file's copy describes it, whatever order the files are read in).
struct Known {
    row: LicenseRow,
    order: usize,
}

/// What one phone's newest report contributes.
struct Digest {
    reported: Option<UnixTime>,
    order: usize,
    /// The licenses it holds (indices into the table), each once.
    licenses: Vec<usize>,
    /// The enabled features governed by a license it holds: (license, feature).
    in_use: Vec<(usize, String)>,
    attention: Vec<Attention>,
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

    /// The table's index of `known`'s license: the first file's copy describes it.
    fn register(&mut self, known: Known) -> usize {
        match self.index.get(&known.row.fingerprint) {
            Some(&i) => {
                if let Some(k) = self.table.get_mut(i).filter(|k| known.order < k.order) {
                    *k = known;
                }
                i
            }
            None => {
                self.index
                    .insert(known.row.fingerprint.clone(), self.table.len());
                self.table.push(known);
                self.table.len() - 1
            }
        }
    }

    /// Adds the report read from the `order`-th file (in file-name order).
    pub(crate) fn add(&mut self, report: &Slim<'_>, order: usize) {
        let at = self.options.at;
        let mut licenses = Vec::with_capacity(report.licenses.len());
        for l in &report.licenses {
            // Known already (a site license): nothing to copy unless this file comes first.
            let seen = self.index.get(l.fingerprint.as_str()).copied();
            let i = match seen.and_then(|i| self.table.get(i).map(|k| (i, k.order))) {
                Some((i, first)) if first <= order => i,
                _ => self.register(Known {
                    row: row(l, at),
                    order,
                }),
            };
            if !licenses.contains(&i) {
                licenses.push(i);
            }
        }
        let reported = parse_instant(report.reported_at.as_str()).ok();
        if let Some(old) = self.phones.get(report.mac.as_str()) {
            if !replaces(reported, order, old, at) {
                return;
            }
        }
        let mut in_use: Vec<(usize, String)> = Vec::new();
        for f in report.features.iter().filter(|f| f.enabled) {
            let held = f
                .fingerprint
                .as_ref()
                .and_then(|fp| self.index.get(fp.as_str()))
                .filter(|i| licenses.contains(i));
            if let Some(&i) = held {
                if !in_use.iter().any(|(j, n)| *j == i && f.name == *n.as_str()) {
                    in_use.push((i, f.name.to_string()));
                }
            }
        }
        let attention = attention(report, reported, self.options);
        self.phones.insert(
            report.mac.to_string(),
            Digest {
                reported,
                order,
                licenses,
                in_use,
                attention,
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
            digest.in_use.iter_mut().for_each(|(i, _)| moved(i));
            self.phones.insert(mac, digest);
        }
    }

    /// The fleet: licenses by fingerprint, attention by MAC.
    pub(crate) fn finish(self) -> Fleet {
        let Gather {
            options,
            mut table,
            phones,
            ..
        } = self;
        let mut phones: Vec<(String, Digest)> = phones.into_iter().collect();
        phones.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut attention = Vec::new();
        for (_, digest) in &mut phones {
            for &i in &digest.licenses {
                if let Some(k) = table.get_mut(i) {
                    k.row.phones += 1;
                }
            }
            for (i, name) in &digest.in_use {
                let grant = table
                    .get_mut(*i)
                    .and_then(|k| k.row.grants.iter_mut().find(|g| g.name == *name));
                if let Some(g) = grant {
                    g.in_use += 1;
                }
            }
            attention.append(&mut digest.attention);
        }
        // A license only older, replaced reports held is nobody's.
        let mut licenses: Vec<LicenseRow> = table
            .into_iter()
            .map(|k| k.row)
            .filter(|row| row.phones > 0)
            .collect();
        licenses.sort_unstable_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        let mut summary = Summary::default();
        for row in &mut licenses {
            summary.all += 1;
            match row.status.as_str() {
                "active" => summary.active += 1,
                "expiring-shortly" => summary.expiring_shortly += 1,
                "impending" => summary.impending += 1,
                "inactive" => summary.inactive += 1,
                _ => {}
            }
            for g in &mut row.grants {
                g.over_limit = g.limit > 0 && g.in_use > g.limit as usize;
            }
        }
        Fleet {
            at: crate::status::time(options.at),
            phones: phones.len(),
            summary,
            licenses,
            attention,
        }
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

/// A license of a report as a row of the table, judged at `at`.
fn row(l: &slim::License<'_>, at: UnixTime) -> LicenseRow {
    LicenseRow {
        fingerprint: l.fingerprint.to_string(),
        kind: l.kind.to_string(),
        serial: l.serial.to_string(),
        key: l.key.to_string(),
        start: l.start.to_string(),
        end: l.end.to_string(),
        status: status_of(l.start.as_str(), l.end.as_str(), at).into(),
        phones: 0,
        grants: l
            .grants
            .iter()
            .map(|g| GrantRow {
                name: g.name.to_string(),
                description: description(g.name.as_str()).into(),
                transaction: g.transaction.to_string(),
                start: g.start.to_string(),
                end: g.end.to_string(),
                status: status_of(g.start.as_str(), g.end.as_str(), at).into(),
                limit: g.limit,
                in_use: 0,
                over_limit: false,
            })
            .collect(),
    }
}

/// What needs attention on one phone, in the order of [`KINDS`].
fn attention(report: &Slim<'_>, reported: Option<UnixTime>, options: Options) -> Vec<Attention> {
    let mut out = Vec::new();
    let mut add = |what: &str, detail: String| {
        out.push(Attention {
            mac: report.mac.to_string(),
            what: what.into(),
            detail,
        })
    };
    // A feature in force that ends within the window, judged at the instant.
    for f in report.features.iter().filter(|f| f.enabled) {
        if let Some(End::At(end)) = end_of(f.end.as_str()) {
            let left = i64::from(end).saturating_sub(options.at);
            if left >= 0 && left < options.within {
                // Counted as `license-agent status` counts them: a day begun counts.
                let days = crate::status::days_left(End::At(end), options.at).unwrap_or(0);
                add(
                    "feature-ends",
                    format!("{} ends {} ({days} days)", f.name, f.end),
                );
            }
        }
    }
    for detail in booted_expired(report) {
        add("booted-expired", detail);
    }
    if let Some(t) = reported.filter(|&t| t > options.at.saturating_add(FUTURE_TOLERANCE)) {
        add(
            "future-report",
            format!(
                "reported {}, {} days after the fleet's instant: the phone's clock is ahead \
                 (never preferred to a report of the present)",
                report.reported_at,
                t.saturating_sub(options.at) / 86_400
            ),
        );
    }
    match reported {
        Some(t) if options.at.saturating_sub(t) > options.stale => add(
            "stale-report",
            format!(
                "last report {} ({} days ago)",
                report.reported_at,
                options.at.saturating_sub(t) / 86_400
            ),
        ),
        Some(_) => {}
        // A time that cannot be read says nothing of when the phone last spoke: never
        // taken as fresh.
        None => add(
            "stale-report",
            format!(
                "reported_at {:?} is not an instant: when this phone last reported is unknown",
                report.reported_at.as_str()
            ),
        ),
    }
    for refusal in &report.refusals {
        match &refusal.key {
            Some(key) => add(
                "unknown-key",
                format!(
                    "{} signed with key {key}: the keyring may be stale",
                    refusal.subject
                ),
            ),
            None => add(
                "refused",
                format!("{}: {}", refusal.subject, refusal.detail),
            ),
        }
    }
    if report.clock != *"ok" {
        add("clock", format!("clock {}", report.clock));
    }
    if let Some(reboot) = &report.reboot {
        add(
            "reboot-pending",
            format!(
                "{} (waiting for {})",
                reboot
                    .causes
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                reboot.waiting_for.as_ref().map_or("-", |w| w.as_str())
            ),
        );
    }
    out
}

/// "Booted with an expired license": each feature the phone is configured for
/// (`configured`) that is not in the set it booted with (`booted`) nor enabled now,
/// while a license it holds granted it and that grant had ended by the instant the
/// phone judged its licenses at (`evaluated_at`). The phone runs without the feature
/// because its license ran out (a feature never licensed is not this). Judged from the
/// report alone, not at `--at`: it is what the phone booted with. Reports without
/// `configured`, `booted` or `evaluated_at` (an older agent, no daemon, an unsynced
/// clock) say nothing of it.
fn booted_expired(report: &Slim<'_>) -> Vec<String> {
    let (Some(configured), Some(booted)) = (&report.configured, &report.booted) else {
        return Vec::new();
    };
    let Some(judged) = report
        .evaluated_at
        .as_ref()
        .and_then(|t| parse_instant(t.as_str()).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, name) in configured.iter().enumerate() {
        if configured[..n].contains(name)
            || booted.contains(name)
            || report.features.iter().any(|f| f.enabled && f.name == *name)
        {
            continue;
        }
        // The latest end among the held licenses' records of the feature that ended.
        let ended = report
            .licenses
            .iter()
            .flat_map(|l| l.grants.iter().map(move |g| (l, g)))
            .filter(|(_, g)| g.name == *name)
            .filter_map(|(l, g)| match end_of(g.end.as_str()) {
                Some(End::At(end)) if i64::from(end) <= judged => Some((end, l, g)),
                _ => None,
            })
            .max_by_key(|(end, _, _)| *end);
        if let Some((_, l, g)) = ended {
            out.push(format!(
                "{name} is configured but the phone booted without it: its {} license {} ended {}",
                l.kind, l.serial, g.end
            ));
        }
    }
    out
}
