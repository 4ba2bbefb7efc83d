//! The fleet view as data, from the phones' reports at one instant: the portal's summary
//! (each license once, by fingerprint), the license list with the phones using each
//! counted feature against its limit, and what needs attention. Pure: reports and an
//! instant in, a [`Fleet`] out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::status::status;
use crate::format::End;
use crate::phone::parse_instant;
use crate::report::Report;
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
    /// `active`, `expiring-shortly`, `impending`, `inactive` at the instant judged.
    pub(crate) status: String,
    /// The phones that hold it.
    pub(crate) phones: usize,
    pub(crate) grants: Vec<GrantRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GrantRow {
    pub(crate) name: String,
    pub(crate) transaction: String,
    pub(crate) end: String,
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
    /// `feature-ends`, `stale-report`, `refused`, `unknown-key`, `clock`, `reboot-pending`.
    pub(crate) what: String,
    pub(crate) detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Fleet {
    pub(crate) at: String,
    pub(crate) phones: usize,
    pub(crate) summary: Summary,
    pub(crate) licenses: Vec<LicenseRow>,
    pub(crate) attention: Vec<Attention>,
}

/// An RFC 3339 instant of a report, or `never`; `None` when it is neither.
fn end_of(text: &str) -> Option<End> {
    if text == "never" {
        return Some(End::Never);
    }
    let t = parse_instant(text).ok()?;
    u32::try_from(t).ok().map(End::At)
}

/// The fleet of `reports` (one per phone: the newest wins when a MAC reports twice).
pub(crate) fn fleet(reports: &[Report], options: Options) -> Fleet {
    let mut newest: BTreeMap<&str, &Report> = BTreeMap::new();
    for r in reports {
        let keep = newest
            .get(r.mac.as_str())
            .is_none_or(|old| reported(old) < reported(r));
        if keep {
            newest.insert(r.mac.as_str(), r);
        }
    }
    let mut rows: BTreeMap<String, LicenseRow> = BTreeMap::new();
    let mut attention = Vec::new();
    for (mac, report) in &newest {
        let mac = mac.to_string();
        for l in &report.licenses {
            let row = rows.entry(l.fingerprint.clone()).or_insert_with(|| {
                let (start, end) = (parse_instant(&l.start).ok(), end_of(&l.end));
                let status = match (start, end) {
                    (Some(start), Some(end)) => status(start, end, options.at).id(),
                    _ => "unknown",
                };
                LicenseRow {
                    fingerprint: l.fingerprint.clone(),
                    kind: l.kind.clone(),
                    serial: l.serial.clone(),
                    key: l.key.clone(),
                    start: l.start.clone(),
                    end: l.end.clone(),
                    status: status.into(),
                    phones: 0,
                    grants: l
                        .grants
                        .iter()
                        .map(|g| GrantRow {
                            name: g.name.clone(),
                            transaction: g.transaction.clone(),
                            end: g.end.clone(),
                            limit: g.limit,
                            in_use: 0,
                            over_limit: false,
                        })
                        .collect(),
                }
            });
            row.phones += 1;
        }
        for f in report.features.iter().filter(|f| f.enabled) {
            let Some(row) = f.fingerprint.as_ref().and_then(|fp| rows.get_mut(fp)) else {
                continue;
            };
            if let Some(grant) = row.grants.iter_mut().find(|g| g.name == f.name) {
                grant.in_use += 1;
            }
            // A feature in force that ends within the window, judged at the instant.
            if let Some(End::At(end)) = end_of(&f.end) {
                let left = i64::from(end).saturating_sub(options.at);
                if left >= 0 && left < options.within {
                    attention.push(Attention {
                        mac: mac.clone(),
                        what: "feature-ends".into(),
                        detail: format!("{} ends {} ({} days)", f.name, f.end, left / 86_400),
                    });
                }
            }
        }
        if let Some(t) = reported(report) {
            if options.at.saturating_sub(t) > options.stale {
                attention.push(Attention {
                    mac: mac.clone(),
                    what: "stale-report".into(),
                    detail: format!(
                        "last report {} ({} days ago)",
                        report.reported_at,
                        options.at.saturating_sub(t) / 86_400
                    ),
                });
            }
        }
        for refusal in &report.refusals {
            let (what, detail) = match &refusal.key {
                Some(key) => (
                    "unknown-key",
                    format!(
                        "{} signed with key {key}: the keyring may be stale",
                        refusal.subject
                    ),
                ),
                None => (
                    "refused",
                    format!("{}: {}", refusal.subject, refusal.detail),
                ),
            };
            attention.push(Attention {
                mac: mac.clone(),
                what: what.into(),
                detail,
            });
        }
        if report.clock != "ok" {
            attention.push(Attention {
                mac: mac.clone(),
                what: "clock".into(),
                detail: format!("clock {}", report.clock),
            });
        }
        if let Some(reboot) = &report.reboot {
            attention.push(Attention {
                mac: mac.clone(),
                what: "reboot-pending".into(),
                detail: format!(
                    "{} (waiting for {})",
                    reboot.causes.join(", "),
                    reboot.waiting_for.as_deref().unwrap_or("-")
                ),
            });
        }
    }
    let mut summary = Summary::default();
    for row in rows.values_mut() {
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
        phones: newest.len(),
        summary,
        licenses: rows.into_values().collect(),
        attention,
    }
}

fn reported(report: &Report) -> Option<UnixTime> {
    parse_instant(&report.reported_at).ok()
}
