//! What needs attention: the items one phone's report shows by itself (its clock, its
//! refusals, a configured feature it runs without...), and the grouping of every
//! phone's items by what the provider must do ([`Groups`]): one group per kind and
//! subject, its phones listed.

use std::collections::HashMap;

use super::model::{Group, Options, PhoneItem, FUTURE_TOLERANCE, KINDS};
use super::slim::Slim;
use super::verify::end_of;
use crate::engine::clock::ClockVerdict;
use crate::format::End;
use crate::phone::parse_instant;
use crate::status::WaitingFor;
use crate::storage::dropped::Reason as DropReason;
use crate::time::UnixTime;

/// One phone's item: the kind of group, its subject (the group's key), and what is
/// particular to the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) what: &'static str,
    pub(crate) subject: String,
    pub(crate) detail: String,
}

/// The items of one report that it shows by itself, judged at the fleet's instant
/// (`booted-expired` and `feature-lost` from the report alone: what the phone runs).
pub(crate) fn of_phone(
    report: &Slim<'_>,
    reported: Option<UnixTime>,
    options: &Options,
) -> Vec<Item> {
    let mut out = Vec::new();
    let mut add = |what: &'static str, subject: String, detail: String| {
        out.push(Item {
            what,
            subject,
            detail,
        })
    };
    for (name, detail) in lost(report) {
        add(name.0, name.1, detail);
    }
    if let Some(t) = reported.filter(|&t| t > options.at.saturating_add(FUTURE_TOLERANCE)) {
        add(
            "future-report",
            "reports dated after the fleet's instant".into(),
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
            format!("no report for more than {} days", options.stale / 86_400),
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
            "reports whose time cannot be read".into(),
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
                format!("licenses signed with key {key}"),
                format!(
                    "{} signed with key {key}: the phone's keyring may be stale",
                    refusal.subject
                ),
            ),
            None => add(
                "refused",
                refusal.verdict.id().to_string(),
                format!("{}: {}", refusal.subject, refusal.detail),
            ),
        }
    }
    if let Some(trust) = &report.trust {
        if trust.expired {
            add(
                "trust-expired",
                format!("trust version {}", trust.version),
                format!(
                    "trust version {} expired at {}: licenses not stored already are refused",
                    trust.version,
                    trust.expires.as_str()
                ),
            );
        }
        // A document taken is news, not work; one waiting for the clock comes by itself.
        let refused = trust
            .last_update
            .as_ref()
            .filter(|l| !matches!(l.verdict.as_str(), "taken" | "waits for the clock"));
        if let Some(last) = refused {
            add(
                "trust-refused",
                format!("trust-{}.cfg: {}", last.version, last.verdict.as_str()),
                last.detail.as_str().to_string(),
            );
        }
        for aside in &trust.set_aside {
            add(
                "trust-set-aside",
                format!(
                    "licenses of key {} removed by trust version {}",
                    aside.key.as_str(),
                    aside.version
                ),
                format!("{} set aside", aside.license.as_str()),
            );
        }
    }
    // Bounded as the agent bounds it: a report claiming more says no more.
    for aside in report
        .config_set_aside
        .iter()
        .take(crate::report::MAX_CONFIG_SET_ASIDE)
    {
        add(
            "config-set-aside",
            format!("configuration key {}", aside.key),
            aside.detail.to_string(),
        );
    }
    if report.clock != ClockVerdict::Ok {
        let clock = format!("clock {}", report.clock.id());
        add("clock", clock.clone(), clock);
    }
    if let Some(reboot) = &report.reboot {
        let causes = reboot
            .causes
            .iter()
            .map(|c| c.word())
            .collect::<Vec<_>>()
            .join(", ");
        add(
            "reboot-pending",
            format!("reboot for {causes}"),
            format!(
                "{causes} (waiting for {})",
                reboot.waiting_for.map_or("-", WaitingFor::id)
            ),
        );
    }
    out
}

/// Each feature the phone is configured for (`configured`) that it neither has enabled
/// nor holds a license for (one not started yet counts as licensed: it comes by
/// itself), whatever the cause, with the cause when the report shows it:
/// `booted-expired` when a license it holds granted it until an end already past when
/// the phone judged its licenses (`evaluated_at`; the phone booted without it because
/// its license ran out), else `feature-lost`: a license it dropped for another that
/// does not grant it (a site file posted without the feature), or no license at all.
/// Reports without `configured` (an older agent) say nothing of it.
fn lost(report: &Slim<'_>) -> Vec<((&'static str, String), String)> {
    let Some(configured) = &report.configured else {
        return Vec::new();
    };
    let judged = report
        .evaluated_at
        .as_ref()
        .and_then(|t| parse_instant(t.as_str()).ok());
    let mut out = Vec::new();
    for (n, name) in configured.iter().enumerate() {
        let name = name.as_str();
        if configured[..n].iter().any(|c| c.as_str() == name)
            || report.features.iter().any(|f| f.enabled && f.name == *name)
        {
            continue;
        }
        let grants = || {
            report
                .licenses
                .iter()
                .flat_map(|l| l.grants.iter().map(move |g| (l, g)))
                .filter(move |(_, g)| g.name == *name)
        };
        // Licensed from a later start: it comes by itself, nothing is lost.
        let coming = grants().any(
            |(_, g)| match (parse_instant(g.start.as_str()).ok(), judged) {
                (Some(start), Some(t)) => start > t,
                _ => false,
            },
        );
        if coming {
            continue;
        }
        let booted_with = report
            .booted
            .as_ref()
            .is_some_and(|b| b.iter().any(|x| x.as_str() == name));
        // The latest end among the held licenses' records of the feature that ended.
        let ended = judged.and_then(|judged| {
            grants()
                .filter_map(|(l, g)| match end_of(g.end.as_str()) {
                    Some(End::At(end)) if i64::from(end) <= judged => Some((end, l, g)),
                    _ => None,
                })
                .max_by_key(|(end, _, _)| *end)
        });
        let subject = format!("{name} configured but not enabled");
        if let (Some((_, l, g)), false, Some(_)) = (ended, booted_with, report.booted.as_ref()) {
            out.push((
                ("booted-expired", subject),
                format!(
                    "{name} is configured but the phone booted without it: its {} license {} ended {}",
                    l.kind, l.serial, g.end
                ),
            ));
            continue;
        }
        let replaced =
            report.dropped.iter().flatten().find(|d| {
                d.reason == DropReason::Replaced && d.grants.iter().any(|g| g.name == *name)
            });
        let detail = match (replaced, ended) {
            (Some(d), _) => format!(
                "{name} is configured but not enabled: the {} license {} that granted it was \
                 replaced {} by one that does not grant it",
                d.kind, d.serial, d.dropped_at
            ),
            (None, Some((_, l, g))) => format!(
                "{name} is configured but not enabled: its {} license {} ended {}",
                l.kind, l.serial, g.end
            ),
            (None, None) => {
                format!(
                    "{name} is configured but not enabled: no license this phone holds grants it"
                )
            }
        };
        out.push((("feature-lost", subject), detail));
    }
    out
}

/// Every phone's items grouped by kind and subject.
#[derive(Default)]
pub(crate) struct Groups {
    index: HashMap<(&'static str, String), usize>,
    groups: Vec<Group>,
}

impl Groups {
    pub(crate) fn add(&mut self, mac: &str, item: Item) {
        self.add_to(mac, item, None);
    }

    /// Adds `item`, the group's sentence being `detail` (else the kind's own).
    pub(crate) fn add_to(&mut self, mac: &str, item: Item, detail: Option<String>) {
        let key = (item.what, item.subject);
        let n = match self.index.get(&key) {
            Some(&n) => n,
            None => {
                self.groups.push(Group {
                    what: key.0.into(),
                    subject: key.1.clone(),
                    detail: detail.unwrap_or_default(),
                    phones: Vec::new(),
                });
                self.index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        if let Some(g) = self.groups.get_mut(n) {
            // A phone is listed once per group (its items come together): a second item
            // of the same phone adds to its detail.
            match g.phones.last_mut().filter(|p| p.mac == mac) {
                Some(p) => {
                    if !p.detail.split("; ").any(|d| d == item.detail) {
                        p.detail.push_str("; ");
                        p.detail.push_str(&item.detail);
                    }
                }
                None => g.phones.push(PhoneItem {
                    mac: mac.into(),
                    detail: item.detail,
                }),
            }
        }
    }

    /// The groups in the order of [`KINDS`], the biggest first within a kind, each with
    /// the sentence that says what to do.
    pub(crate) fn finish(self) -> Vec<Group> {
        let mut groups = self.groups;
        for g in groups.iter_mut().filter(|g| g.detail.is_empty()) {
            g.detail = what_to_do(&g.what, &g.subject, g.phones.len());
        }
        let rank = |what: &str| KINDS.iter().position(|k| *k == what).unwrap_or(KINDS.len());
        groups.sort_by(|a, b| {
            (rank(&a.what), std::cmp::Reverse(a.phones.len()), &a.subject).cmp(&(
                rank(&b.what),
                std::cmp::Reverse(b.phones.len()),
                &b.subject,
            ))
        });
        groups
    }
}

/// The sentence of a group: what it is, on how many phones, and what to do.
fn what_to_do(what: &str, subject: &str, n: usize) -> String {
    let phones = if n == 1 {
        "1 phone".to_string()
    } else {
        format!("{n} phones")
    };
    match what {
        "renewal-not-fetched" => format!(
            "{subject}: renewed, but {phones} have not fetched the Renewal yet; make them fetch it (check-sync) before the term ends"
        ),
        "feature-ends" => format!("{subject}: ends soon on {phones}; renew it"),
        "feature-lost" => format!("{subject}: on {phones}, neither enabled nor licensed; post a license that grants it"),
        "booted-expired" => format!("{subject}: on {phones}, booted without it after its license ended; renew it"),
        "forged-license" => format!("license {subject}: {phones} reported content that is not this license; the reports are not believed for it"),
        "unverified-license" => format!("license {subject}: on {phones}, not verified; it is not counted"),
        "unknown-key" => format!("{subject}: refused on {phones} (a stale keyring?); update their firmware's keyring"),
        "trust-expired" => format!("{subject}: expired on {phones}, which refuse new licenses; post the next trust version"),
        "trust-refused" => format!("{subject}: refused by {phones}; post a document the phones can take at that name"),
        "trust-set-aside" => format!("{subject}: set aside on {phones}; post licenses signed by a key they trust"),
        "config-set-aside" => format!("{subject}: a bad value set aside on {phones}, which read it as if absent; mend their configuration"),
        "refused" => format!("{subject}: a license refused on {phones}"),
        "stale-report" => format!("{subject}: {phones}; check that they are up and can upload"),
        "future-report" => format!("{subject}: {phones} with a clock ahead; check their time server"),
        "clock" => format!("{subject}: {phones}; check their time server"),
        "reboot-pending" => format!("{subject}: {phones} waiting to reboot"),
        "inactive-in-use" => format!("{subject}: ended, still in use on {phones}"),
        _ => format!("{subject}: {phones}"),
    }
}
