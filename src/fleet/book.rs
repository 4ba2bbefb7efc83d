//! The rows of the fleet view and how they link (`docs/fleet-model.md`): one row per
//! feature grant of the licenses the phones hold or dropped lately, Renewals linked to
//! the terms they renew, Addons to the terms they add to, and the phones counted on
//! each. Built once from the gathered table and digests ([`Book::new`]), then walked
//! phone by phone into the [`Fleet`] ([`Book::fleet`]).
//!
//! The same folder makes the same fleet whatever order the reports were gathered in:
//! every choice between rows is made by a total order on what the rows are, never by
//! where they sit. The work is sorted, not pairwise: a feature of a site holding
//! thousands of forged grants costs a sort, not their square.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::attention::{self, Item};
use super::model::{description, Fleet, Options, Row, Site, Summary};
use super::verify::{Def, Proof};
use crate::engine::status::{status, Status};
use crate::format::{End, Kind};
use crate::time::UnixTime;

/// One license of the table, and the file order of the report it was defined from
/// (among equally proved definitions, the first file's describes it, whatever order
/// the files are read in).
pub(crate) struct Known {
    pub(crate) fingerprint: String,
    pub(crate) def: Def,
    pub(crate) order: usize,
}

/// A feature a phone uses whose grant ends within the window: (license, feature).
pub(crate) struct Ending {
    pub(crate) license: usize,
    pub(crate) feature: String,
}

/// What one phone's newest report contributes.
pub(crate) struct Digest {
    pub(crate) reported: Option<UnixTime>,
    pub(crate) order: usize,
    /// The licenses it holds that are believed (indices into the table), each once.
    pub(crate) licenses: Vec<usize>,
    /// The licenses it dropped lately.
    pub(crate) dropped: Vec<usize>,
    /// The enabled features governed by a license it holds: (license, feature).
    pub(crate) in_use: Vec<(usize, String)>,
    pub(crate) ending: Vec<Ending>,
    pub(crate) attention: Vec<Item>,
}

/// The most terms a Renewal, or an Addon's search for its term, looks through: a real
/// site renews a feature once a year, so more is a flood of forged grants.
const MAX_SCAN: usize = 64;

/// A grant's identity: the same record in two files (a file rebuilt for an Addon
/// keeps its other grants as they were) is one row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RowKey {
    kind: Kind,
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
    /// Its family: the rows of its kind, serial and feature.
    family: usize,
    /// For an Addon: the term it adds to.
    term: Option<usize>,
    /// The row its devices in use are counted on, when not itself: an Addon's term; a
    /// Renewal's term still in force that it renews (one subscription, counted once).
    counts_on: Option<usize>,
}

impl Draft {
    fn is_term(&self) -> bool {
        matches!(self.row.transaction.as_str(), "trial" | "new" | "renewal")
    }

    fn in_force(&self) -> bool {
        self.row.term_status.is_some_and(Status::in_force)
    }

    /// A total order on what rows are (never on where they sit).
    fn order(&self, other: &Draft) -> Ordering {
        fn key(d: &Draft) -> (Option<UnixTime>, (u8, u32), u32, &str, &str, &str) {
            (
                d.start,
                end_key(d.end),
                d.row.limit,
                &d.row.transaction,
                &d.row.start,
                &d.row.end,
            )
        }
        key(self).cmp(&key(other))
    }
}

/// What linking decided for a row.
struct Link {
    row: usize,
    /// The end of the Renewal that renews it.
    renewed: Option<String>,
    /// For an Addon: its term.
    host: Option<usize>,
    counts_on: Option<usize>,
}

/// The terms of a family (Trial, New, Renewal grants ending at an instant), by end.
#[derive(Default)]
struct Family {
    terms_by_end: Vec<usize>,
}

/// The rows and how licenses and phones map onto them.
pub(super) struct Book {
    drafts: Vec<Draft>,
    families: Vec<Family>,
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

/// The status of a span at `at`, or `None` (`unknown`) for dates that do not read.
fn status_of(start: Option<UnixTime>, end: Option<End>, at: UnixTime) -> Option<Status> {
    Some(status(start?, end?, at))
}

impl Book {
    pub(super) fn new(table: &[Known], phones: &[(String, Digest)], options: &Options) -> Book {
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
        let mut families: HashMap<(Kind, String, String), usize> = HashMap::new();
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
                    kind: k.def.kind,
                    serial: k.def.serial.clone(),
                    feature: g.name.clone(),
                    transaction: g.transaction.clone(),
                    start: g.start_text.clone(),
                    end: g.end_text.clone(),
                    limit: g.limit,
                };
                let family_count = families.len();
                let family = *families
                    .entry((key.kind, key.serial.clone(), key.feature.clone()))
                    .or_insert(family_count);
                let n = *keys.entry(key).or_insert_with(|| {
                    let own = status_of(g.start, g.end, at);
                    drafts.push(Draft {
                        row: Row {
                            id: k.def.serial.clone(),
                            kind: k.def.kind,
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
                            status: own,
                            term_status: own,
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
                        family,
                        term: None,
                        counts_on: None,
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
        for d in &mut drafts {
            d.row.licenses.sort_unstable();
        }
        let mut book = Book {
            drafts,
            families: Vec::new(),
            rows_of,
        };
        book.link(families.len());
        book
    }

    /// Renewals to the terms they renew, Addons to the terms they add to.
    fn link(&mut self, families: usize) {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); families];
        for (n, d) in self.drafts.iter().enumerate() {
            if let Some(m) = members.get_mut(d.family) {
                m.push(n);
            }
        }
        let drafts = &self.drafts;
        let by = |a: &usize, b: &usize| drafts[*a].order(&drafts[*b]);
        let mut links: Vec<Link> = Vec::new();
        self.families = Vec::with_capacity(families);
        for mut rows in members {
            rows.sort_by(by);
            // Renewals by start, each with the latest end among those starting no later.
            let mut renewals: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&r| drafts[r].row.transaction == "renewal" && drafts[r].start.is_some())
                .collect();
            renewals.sort_by(|a, b| drafts[*a].start.cmp(&drafts[*b].start).then(by(a, b)));
            let mut latest: Vec<usize> = Vec::with_capacity(renewals.len());
            for (i, &r) in renewals.iter().enumerate() {
                let best = match i.checked_sub(1).and_then(|p| latest.get(p)) {
                    Some(&b) if end_key(drafts[b].end) >= end_key(drafts[r].end) => b,
                    _ => r,
                };
                latest.push(best);
            }
            // Terms (New or Renewal) an Addon may fall in, by start.
            let hosts: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&h| {
                    matches!(drafts[h].row.transaction.as_str(), "new" | "renewal")
                        && drafts[h].start.is_some()
                })
                .collect();
            let mut terms_by_end: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&t| drafts[t].is_term() && matches!(drafts[t].end, Some(End::At(_))))
                .collect();
            terms_by_end.sort_by(|a, b| {
                end_key(drafts[*a].end)
                    .cmp(&end_key(drafts[*b].end))
                    .then(by(a, b))
            });
            for &n in &rows {
                let d = &drafts[n];
                // A term ending at an instant is renewed by a Renewal that starts no
                // later than its end and ends after it.
                let renewed = match d.end {
                    Some(End::At(end)) if d.is_term() => {
                        let k =
                            renewals.partition_point(|&r| drafts[r].start <= Some(i64::from(end)));
                        k.checked_sub(1)
                            .and_then(|i| latest.get(i))
                            .filter(|&&r| end_key(drafts[r].end) > end_key(d.end))
                            .map(|&r| drafts[r].row.end.clone())
                    }
                    _ => None,
                };
                // An Addon adds to the New or Renewal term in force at its start: the
                // latest started one.
                let host = match (d.row.transaction.as_str(), d.start) {
                    ("addon", Some(s)) => {
                        let k = hosts.partition_point(|&h| drafts[h].start <= Some(s));
                        hosts[..k]
                            .iter()
                            .rev()
                            .take(MAX_SCAN)
                            .find(|&&h| before_end(s, drafts[h].end))
                            .copied()
                    }
                    _ => None,
                };
                // A Renewal in force counts on the term it renews while that is in force.
                let counts_on = match (d.row.transaction.as_str(), d.start) {
                    ("renewal", Some(s)) if d.in_force() => {
                        renewed_terms(drafts, &terms_by_end, s, d.end)
                            .rfind(|&t| t != n && drafts[t].in_force())
                    }
                    _ => host,
                };
                links.push(Link {
                    row: n,
                    renewed,
                    host,
                    counts_on,
                });
            }
            self.families.push(Family { terms_by_end });
        }
        for link in links {
            if let Some(d) = self.drafts.get_mut(link.row) {
                d.row.renewed_until = link.renewed;
                d.term = link.host;
                d.counts_on = link.counts_on;
            }
        }
        // Renewed terms show as the portal shows them (an Addon of a renewed term is
        // rolled into the Renewal: renewed with it); Addons in force add capacity.
        for n in 0..self.drafts.len() {
            let Some(h) = self.drafts[n].term else {
                continue;
            };
            let (in_force, limit) = (self.drafts[n].in_force(), self.drafts[n].row.limit);
            let host = &mut self.drafts[h];
            if in_force {
                host.row.capacity = host.row.capacity.saturating_add(limit);
            }
            let (label, until) = (
                format!("{} {}", host.row.transaction, host.row.start),
                host.row.renewed_until.clone(),
            );
            let d = &mut self.drafts[n];
            // Nothing is counted against it: its term counts for both.
            d.row.adds_to = Some(label);
            d.row.capacity = 0;
            if d.row.renewed_until.is_none() {
                d.row.renewed_until = until;
            }
        }
        for d in &mut self.drafts {
            if d.counts_on.is_some() && d.row.transaction == "renewal" {
                d.row.capacity = 0;
            }
            if d.row.renewed_until.is_some() && d.row.term_status == Some(Status::ExpiringShortly) {
                d.row.status = Some(Status::Active);
            }
        }
    }

    /// The row a phone's use of `feature` under license `license` counts on: the grant's
    /// row, or the row it counts on.
    fn counted_row(&self, license: usize, feature: &str, table: &[Known]) -> Option<usize> {
        let k = table.get(license)?;
        let g = k.def.grants.iter().position(|g| g.name == feature)?;
        let n = *self.rows_of.get(license)?.get(g)?;
        Some(self.drafts.get(n).and_then(|d| d.counts_on).unwrap_or(n))
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

    /// The renewed terms (not ended) a phone depends on, and whether it holds a Renewal
    /// of each: a term it holds, or the term of an Addon it holds (the Addon's file may
    /// have replaced the term's); a Renewal it holds, or the Renewal of an Addon it holds.
    fn renewals_of(&self, held: &[usize]) -> Vec<(usize, bool)> {
        let mut marks: Vec<(usize, bool)> = Vec::new();
        let mut mark = |t: usize, renewal: bool| match marks.iter_mut().find(|(m, _)| *m == t) {
            Some((_, r)) => *r |= renewal,
            None => marks.push((t, renewal)),
        };
        let renewed = |t: usize| {
            self.drafts.get(t).is_some_and(|d| {
                d.row.renewed_until.is_some()
                    && d.is_term()
                    && d.row.term_status != Some(Status::Inactive)
            })
        };
        for &h in held {
            let Some(d) = self.drafts.get(h) else {
                continue;
            };
            let row = d.term.unwrap_or(h);
            if renewed(row) {
                mark(row, false);
            }
            let Some(r) = self
                .drafts
                .get(row)
                .filter(|r| r.row.transaction == "renewal")
            else {
                continue;
            };
            let (Some(start), Some(family)) = (r.start, self.families.get(r.family)) else {
                continue;
            };
            for t in renewed_terms(&self.drafts, &family.terms_by_end, start, r.end) {
                if t != row && renewed(t) {
                    mark(t, true);
                }
            }
        }
        marks
    }

    /// A row's words in a group's subject: what it is, unique to it.
    fn label(&self, n: usize) -> String {
        self.drafts.get(n).map_or_else(String::new, |d| {
            let limit = if d.row.limit > 0 {
                format!(", limit {}", d.row.limit)
            } else {
                String::new()
            };
            format!(
                "{} {} {} ({} {} until {}{limit})",
                d.row.feature, d.row.kind, d.row.id, d.row.transaction, d.row.start, d.row.end
            )
        })
    }

    pub(super) fn fleet(
        mut self,
        table: &[Known],
        phones: Vec<(String, Digest)>,
        options: &Options,
    ) -> Fleet {
        let at = options.at;
        let mut groups = attention::Groups::default();
        let mut counted: Vec<Vec<usize>> = Vec::with_capacity(phones.len());
        let mut site_phones: HashMap<String, usize> = HashMap::new();
        for (mac, digest) in &phones {
            let held = self.rows_held(digest);
            for &n in &held {
                if let Some(d) = self.drafts.get_mut(n) {
                    d.row.phones += 1;
                }
            }
            let mut sites: Vec<&str> = Vec::new();
            for &i in &digest.licenses {
                if let Some(k) = table.get(i).filter(|k| k.def.kind == Kind::Site) {
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
                let Some(d) = self.drafts.get_mut(n) else {
                    continue;
                };
                d.row.in_use += 1;
                if d.row.term_status == Some(Status::Inactive) {
                    // The subject's words only for the rare item, not for every use.
                    let detail = format!(
                        "uses {} under a grant that ended {}: the phone has not reported since, or its clock is behind",
                        d.row.feature, d.row.end
                    );
                    groups.add(
                        mac,
                        Item {
                            what: "inactive-in-use",
                            subject: self.label(n),
                            detail,
                        },
                    );
                }
            }
            // Renewals: fetched, or to be fetched.
            for (t, has_renewal) in self.renewals_of(&held) {
                let Some(d) = self.drafts.get_mut(t) else {
                    continue;
                };
                *d.row.renewal_phones.get_or_insert(0) += 1;
                *d.row.renewal_fetched.get_or_insert(0) += usize::from(has_renewal);
                if !has_renewal {
                    let d = &self.drafts[t];
                    let subject = self.label(t);
                    groups.add(
                        mac,
                        Item {
                            what: "renewal-not-fetched",
                            subject,
                            detail: format!(
                                "holds the term ending {} but not its Renewal (renewed until {})",
                                d.row.end,
                                d.row.renewed_until.as_deref().unwrap_or("-")
                            ),
                        },
                    );
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
                if d.row.renewed_until.is_some() {
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
                a.row.kind != Kind::Site,
                end_key(a.end),
                &a.row.id,
                &a.row.feature,
            )
                .cmp(&(
                    b.row.kind != Kind::Site,
                    end_key(b.end),
                    &b.row.id,
                    &b.row.feature,
                ))
                .then_with(|| a.order(b))
        });
        let rows: Vec<Row> = drafts.into_iter().map(|d| d.row).collect();
        let mut summary = Summary::default();
        let mut sites: HashMap<String, Site> = HashMap::new();
        for row in &rows {
            count(&mut summary, row.status);
            if row.kind == Kind::Site {
                let site = sites.entry(row.id.clone()).or_insert_with(|| Site {
                    serial: row.id.clone(),
                    ..Site::default()
                });
                count(&mut site.rows, row.status);
                let in_force = row.term_status.is_some_and(Status::in_force);
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

/// The terms of a family a Renewal from `start` to `end` renews: those ending at or
/// after its start and before its end (at most [`MAX_SCAN`]).
fn renewed_terms<'a>(
    drafts: &'a [Draft],
    terms_by_end: &'a [usize],
    start: UnixTime,
    end: Option<End>,
) -> impl DoubleEndedIterator<Item = usize> + 'a {
    let from = terms_by_end.partition_point(|&t| match drafts[t].end {
        Some(End::At(e)) => i64::from(e) < start,
        _ => false,
    });
    let to = terms_by_end.partition_point(|&t| end_key(drafts[t].end) < end_key(end));
    terms_by_end[from..to.max(from)]
        .iter()
        .copied()
        .take(MAX_SCAN)
}

fn count(summary: &mut Summary, status: Option<Status>) {
    summary.all += 1;
    match status {
        Some(Status::Active) => summary.active += 1,
        Some(Status::ExpiringShortly) => summary.expiring_shortly += 1,
        Some(Status::Impending) => summary.impending += 1,
        Some(Status::Inactive) => summary.inactive += 1,
        None => {}
    }
}
