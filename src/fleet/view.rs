//! The fleet view gathered from the phones' reports at one instant: pure, reports and
//! an instant in, a [`Fleet`] (`model`) out, built by [`Book`] from what was gathered.
//!
//! Reports are gathered one at a time ([`Gather`]): each phone's newest report is kept
//! only as a small digest (the licenses it holds as indices into one table of licenses,
//! the features it uses, its own attention items), so a folder of 100,000 reports is
//! never held in memory at once. A license is defined by the signed content a report
//! carries ([`verify`](super::verify)), never by the report's words about it.

use std::collections::HashMap;

use super::attention::{self, Item};
use super::book::{Book, Digest, Ending, Known};
use super::model::{Fleet, Options, FUTURE_TOLERANCE};
use super::slim::{self, Slim};
use super::verify::{self, Claim, Proof};
use crate::format::End;
use crate::phone::parse_instant;
use crate::time::UnixTime;

/// A fleet gathered report by report: one phone per MAC (its newest report; between two
/// reports of the same time, the first file's). Gathers of parts of a folder merge
/// into the gather of the whole, the same whatever the split.
pub(crate) struct Gather {
    options: Options,
    index: HashMap<String, usize>,
    table: Vec<Known>,
    phones: HashMap<String, Digest>,
    /// Content the keyring refused, by (fingerprint, signature) (content that hashed to
    /// the fingerprint: the two say all that was checked): a forgery copied into many
    /// reports costs one check, not one each.
    refused: HashMap<(String, String), verify::Doubt>,
}

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
            refused: HashMap::new(),
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
        // Only a keyring checks signatures: without one there is nothing to remember.
        let seen_before = signed
            .filter(|_| keyring.is_some())
            .map(|s| (claim.fingerprint.to_string(), s.signature.to_string()));
        let judged = match seen_before.as_ref().and_then(|k| self.refused.get(k)) {
            Some(doubt) => Err(doubt.clone()),
            None => {
                let judged = verify::judge(claim, signed, keyring.as_deref(), verified);
                // Only a signature refused for content that hashed to the fingerprint:
                // the fingerprint and signature then say all of what was checked.
                if let (Err(doubt), Some(key)) = (&judged, seen_before) {
                    if doubt.what == "unverified-license" {
                        self.refused.insert(key, doubt.clone());
                    }
                }
                judged
            }
        }
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
                kind: l.kind,
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
                kind: d.kind,
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
        if options.keyring.is_some() {
            for (_, digest) in &mut phones {
                unproved(&table, digest);
            }
        }
        let book = Book::new(&table, &phones, &options);
        book.fleet(&table, phones, &options)
    }
}

/// With a keyring, what a phone's report names without content that verifies is not
/// its: unless another report's content proved the same fingerprint (its identity), a
/// license it holds is `unverified-license`, and a record of one it dropped is left
/// out (an agent leaves content out past its report's budget; a dropped record is
/// history, not a claim to act on).
fn unproved(table: &[Known], digest: &mut Digest) {
    let proved = |i: &usize| {
        table
            .get(*i)
            .is_some_and(|k| k.def.proof == Proof::Verified)
    };
    for &i in digest.licenses.iter().filter(|i| !proved(i)) {
        if let Some(k) = table.get(i) {
            let short = k.fingerprint.get(..12).unwrap_or(&k.fingerprint);
            digest.attention.push(Item {
                what: "unverified-license",
                subject: short.into(),
                detail: format!(
                    "license {short} ({} {}): the report carries no signed content to \
                     verify, and no other report proves it",
                    k.def.kind, k.def.serial
                ),
            });
        }
    }
    digest.licenses.retain(proved);
    digest.dropped.retain(proved);
    digest.in_use.retain(|(i, _)| proved(i));
    digest.ending.retain(|e| proved(&e.license));
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
