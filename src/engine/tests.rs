//! Engine tests: every rule of `agent-rules.md`, each sentence of Technical Bulletin
//! 44210 as a named scenario, and property tests against a from-scratch reference.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::format::{FeatureId, Transaction};
use crate::testkit::{entry, identity, lic, license_with, DAY, MAC, SITE, T0};

/// The site license numbered `seq`.
fn site(seq: u64) -> StoreId {
    StoreId {
        kind: Kind::Site,
        seq,
    }
}

/// The phone license numbered `seq`.
fn phone(seq: u64) -> StoreId {
    StoreId {
        kind: Kind::Phone,
        seq,
    }
}

/// Runs arrivals through [`judge_candidate`] as the agent does; returns what is held and
/// each decision.
fn arrive(at: UnixTime, licenses: &[Verified<License>]) -> (Vec<Held>, Vec<Decision>) {
    let mut held: Vec<Held> = Vec::new();
    let mut decisions = Vec::new();
    for (i, l) in licenses.iter().enumerate() {
        let seq = i as u64 + 1;
        let d = judge_candidate(&identity(), &held, l, Origin::Installed, Some(at), seq);
        if let Decision::Accept { drop } = &d {
            held.retain(|h| !drop.contains(&h.id()));
            held.push(Held {
                seq,
                license: l.clone(),
            });
        }
        decisions.push(d);
    }
    (held, decisions)
}

fn enabled_ids(held: &[Held], at: UnixTime) -> Vec<u16> {
    evaluate(held, at).enabled().keys().map(|f| f.0).collect()
}

// ---- Technical Bulletin 44210, sentence by sentence ----

/// "Once the license file has been loaded one time by the phone, it is not necessary to
/// maintain the license file on the provisioning server."
#[test]
fn tb44210_phone_license_kept_after_the_server_drops_it() {
    let (held, _) = arrive(T0, &[lic(Kind::Phone, &[(1, T0 - DAY, None)])]);
    // Years later, with no download at all, the feature is still in force.
    assert_eq!(enabled_ids(&held, T0 + 3_650 * DAY), [1]);
}

/// "The resultant activated feature set will be the combination of the features licensed
/// in these two files."
#[test]
fn tb44210_site_plus_phone_features_combined() {
    let (held, _) = arrive(
        T0,
        &[
            lic(
                Kind::Site,
                &[
                    (2, T0 - DAY, Some(T0 + 365 * DAY)),
                    (3, T0 - DAY, Some(T0 + 365 * DAY)),
                ],
            ),
            lic(Kind::Phone, &[(1, T0 - DAY, None)]),
        ],
    );
    assert_eq!(enabled_ids(&held, T0), [1, 2, 3]);
    let ev = evaluate(&held, T0);
    let source: BTreeMap<u16, Kind> = ev
        .features
        .iter()
        .map(|f| (f.id.0, f.governing.kind))
        .collect();
    assert_eq!(
        source,
        BTreeMap::from([(1, Kind::Phone), (2, Kind::Site), (3, Kind::Site)])
    );
}

/// "When a phone has an existing license, the features and expiry time for the license
/// with the longest duration are used."
#[test]
fn tb44210_longest_duration_wins() {
    let long = lic(Kind::Site, &[(2, T0 - DAY, Some(T0 + 700 * DAY))]);
    let short = lic(Kind::Site, &[(3, T0 - DAY, Some(T0 + 300 * DAY))]);
    // Longer first, shorter later: the shorter is not taken.
    let (held, decisions) = arrive(T0, &[long.clone(), short.clone()]);
    assert_eq!(decisions[1], Decision::Superseded { by: site(1) });
    assert_eq!(enabled_ids(&held, T0), [2]);
    // Shorter first, longer later: the longer replaces it.
    let (held, decisions) = arrive(T0, &[short, long]);
    assert_eq!(
        decisions[1],
        Decision::Accept {
            drop: vec![site(1)]
        }
    );
    assert_eq!(enabled_ids(&held, T0), [2]);
    assert_eq!(
        evaluate(&held, T0).features[0].governing.entry.end,
        End::At((T0 + 700 * DAY) as u32)
    );
}

/// "If a new non-expired license is downloaded: when a phone has no existing license, the
/// features and expiry time for the new license are used" - and only a non-expired one.
#[test]
fn tb44210_only_a_non_expired_download_is_taken() {
    let expired = lic(Kind::Site, &[(2, T0 - 400 * DAY, Some(T0 - DAY))]);
    let fresh = lic(Kind::Site, &[(3, T0 - DAY, Some(T0 + 100 * DAY))]);
    let (held, decisions) = arrive(T0, &[expired, fresh]);
    assert_eq!(
        decisions[0],
        Decision::Refuse(Refusal::Expired {
            end: End::At((T0 - DAY) as u32)
        })
    );
    assert!(matches!(decisions[1], Decision::Accept { .. }));
    assert_eq!(enabled_ids(&held, T0), [3]);
}

/// "Ensure that you post a new license file at least one month prior to the expiry of
/// the current license file": the renewal bridges without a gap.
#[test]
fn tb44210_renewal_posted_early_bridges_without_a_gap() {
    let term_end = T0 + 365 * DAY;
    let current = lic(Kind::Site, &[(2, T0 - 365 * DAY, Some(term_end))]);
    let renewal = lic(Kind::Site, &[(2, term_end, Some(term_end + 365 * DAY))]);
    let posted = term_end - 40 * DAY;
    let (held, decisions) = arrive(posted, &[current, renewal]);
    assert_eq!(
        decisions[1],
        Decision::Accept { drop: vec![] },
        "the current term is kept"
    );
    let ev = evaluate(&held, posted);
    let roles: Vec<Role> = ev.licenses.iter().map(|l| l.role).collect();
    assert_eq!(roles, [Role::Bridging, Role::Primary]);
    assert_eq!(ev.licenses[1].status, Status::Impending);
    // At every instant from posting to well into the new term, the feature is in force.
    let mut at = posted;
    let mut checked = 0;
    while at < term_end + 60 * DAY {
        let ev = evaluate(&held, at);
        assert!(ev.enabled().contains_key(&FeatureId(2)), "gap at {at}");
        // Probe each change, and the second before it.
        let next = ev.next_change.unwrap_or(at + DAY);
        for probe in [next - 1, next] {
            assert!(
                evaluate(&held, probe).enabled().contains_key(&FeatureId(2)),
                "gap at {probe}"
            );
        }
        at = next.min(at + 7 * DAY);
        checked += 1;
    }
    assert!(checked > 10);
    // Once the renewal starts, the old term is dropped.
    assert_eq!(select(&held, Kind::Site, term_end).drop, vec![site(1)]);
}

// ---- The rules of agent-rules.md ----

#[test]
fn binding_to_this_phone_and_site() {
    let d =
        |l: &Verified<License>, origin| judge_candidate(&identity(), &[], l, origin, Some(T0), 1);
    let other_mac = license_with(
        Kind::Phone,
        "0004f2999999",
        vec![entry((1, T0, None), Transaction::New, 0)],
    );
    assert!(matches!(
        d(&other_mac, Origin::Installed),
        Decision::Refuse(Refusal::NotThisPhone { .. })
    ));
    let other_site = license_with(
        Kind::Site,
        "200000000002",
        vec![entry((1, T0, None), Transaction::New, 0)],
    );
    assert!(matches!(
        d(&other_site, Origin::Installed),
        Decision::Refuse(Refusal::OtherSite { .. })
    ));
    // No site serial configured: any site serial is accepted.
    let anywhere = Identity {
        site_serial: None,
        ..identity()
    };
    assert!(matches!(
        judge_candidate(&anywhere, &[], &other_site, Origin::Installed, Some(T0), 1),
        Decision::Accept { .. }
    ));
    // The file name's kind must match the content's.
    let site = lic(Kind::Site, &[(2, T0, None)]);
    assert_eq!(
        d(&site, Origin::Fetched(Kind::Phone)),
        Decision::Refuse(Refusal::WrongFileKind {
            file: Kind::Phone,
            content: Kind::Site
        })
    );
    assert!(matches!(
        d(&site, Origin::Fetched(Kind::Site)),
        Decision::Accept { .. }
    ));
}

#[test]
fn an_identical_license_changes_nothing() {
    let l = lic(Kind::Phone, &[(1, T0, None)]);
    let (_, decisions) = arrive(T0, &[l.clone(), l]);
    assert_eq!(decisions[1], Decision::Identical { id: phone(1) });
}

/// "Identical to one already stored": a copy of a license that was dropped is a new
/// arrival, and as the one received last it wins a tie (found by the property test).
#[test]
fn a_copy_of_a_dropped_license_arrives_anew() {
    let a = lic(Kind::Site, &[(2, T0, None)]);
    let b = lic(Kind::Site, &[(3, T0, None)]);
    let (held, decisions) = arrive(T0, &[a.clone(), b, a]);
    assert_eq!(
        decisions[1],
        Decision::Accept {
            drop: vec![site(1)]
        }
    );
    assert_eq!(
        decisions[2],
        Decision::Accept {
            drop: vec![site(2)]
        }
    );
    assert_eq!(enabled_ids(&held, T0), [2]);
}

/// A license stops counting at the instant its successor starts, and never again, whatever
/// writes happened: A bridges to B until B starts; C (Impending) arriving after B started
/// does not bring A back, whether or not a write dropped A at B's start.
#[test]
fn a_license_stops_counting_when_its_successor_starts_whatever_writes_happened() {
    let a = lic(Kind::Phone, &[(2, T0, Some(T0 + 650 * DAY)), (1, T0, None)]);
    let b = lic(Kind::Phone, &[(1, T0 + 40 * DAY, None)]);
    let (held, _) = arrive(T0, &[a, b]);
    assert_eq!(enabled_ids(&held, T0 + 39 * DAY), [1, 2], "A bridges to B");
    let after_b = T0 + 41 * DAY;
    assert_eq!(enabled_ids(&held, after_b), [1], "A stops at B's start");
    // No write at B's start: A is still held when C arrives.
    let c = lic(Kind::Phone, &[(1, after_b + 5 * DAY, None)]);
    let d = judge_candidate(&identity(), &held, &c, Origin::Installed, Some(after_b), 3);
    let Decision::Accept { drop } = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        drop,
        [phone(1)],
        "A is dropped, not brought back as a bridge to C"
    );
    let mut with_c = held.clone();
    with_c.push(Held { seq: 3, license: c });
    for t in [after_b, after_b + 4 * DAY, after_b + 6 * DAY] {
        assert_eq!(enabled_ids(&with_c, t), [1], "at {t}");
    }
}

#[test]
fn an_unsynced_clock_takes_no_time_based_decision() {
    let l = lic(Kind::Phone, &[(1, T0, None)]);
    assert_eq!(
        judge_candidate(&identity(), &[], &l, Origin::Installed, None, 1),
        Decision::Refuse(Refusal::ClockUnsynced)
    );
}

#[test]
fn a_license_starts_expires_and_is_dropped_at_its_exact_instants() {
    let end = T0 + 100 * DAY;
    let l = lic(Kind::Site, &[(2, T0, Some(end))]);
    let held = vec![Held { seq: 1, license: l }];
    let status_at = |t| evaluate(&held, t).licenses[0].status;
    assert_eq!(status_at(T0 - 1), Status::Impending);
    assert_eq!(status_at(T0), Status::Active);
    assert_eq!(status_at(end - status::EXPIRING_WINDOW), Status::Active);
    assert_eq!(
        status_at(end - status::EXPIRING_WINDOW + 1),
        Status::ExpiringShortly
    );
    assert_eq!(status_at(end - 1), Status::ExpiringShortly);
    assert_eq!(status_at(end), Status::Inactive);
    assert_eq!(enabled_ids(&held, end - 1), [2]);
    assert!(enabled_ids(&held, end).is_empty());
    // Ended, the feature is still shown, as Inactive.
    let ended = evaluate(&held, end).features;
    assert_eq!((ended.len(), ended[0].status), (1, Status::Inactive));
    // A license dropped while live (superseded) shows nothing at all.
    let longer = lic(Kind::Site, &[(3, T0, Some(end + DAY))]);
    let both = vec![
        held[0].clone(),
        Held {
            seq: 2,
            license: longer,
        },
    ];
    let ids: Vec<u16> = evaluate(&both, T0)
        .features
        .iter()
        .map(|f| f.id.0)
        .collect();
    assert_eq!(ids, [3]);
    assert_eq!(select(&held, Kind::Site, end - 1).drop, Vec::new());
    assert_eq!(
        select(&held, Kind::Site, end).drop,
        vec![site(1)],
        "an Inactive license is dropped"
    );
}

#[test]
fn next_change_is_the_next_start_mark_or_end() {
    let end = T0 + 100 * DAY;
    let held = vec![Held {
        seq: 1,
        license: lic(Kind::Site, &[(2, T0, Some(end)), (3, T0 + 10 * DAY, None)]),
    }];
    let next = |t| evaluate(&held, t).next_change;
    assert_eq!(next(T0 - 5), Some(T0));
    assert_eq!(next(T0), Some(T0 + 10 * DAY));
    assert_eq!(next(T0 + 10 * DAY), Some(end - status::EXPIRING_WINDOW));
    assert_eq!(next(end - status::EXPIRING_WINDOW), Some(end));
    assert_eq!(
        next(end),
        None,
        "after the end, a never-ending entry changes no more"
    );
}

#[test]
fn entries_of_one_license_have_their_own_status() {
    let held = vec![Held {
        seq: 1,
        license: lic(
            Kind::Phone,
            &[
                (1, T0, None),
                (2, T0 + 5 * DAY, None),
                (3, T0 - 9 * DAY, Some(T0 - DAY)),
            ],
        ),
    }];
    let ev = evaluate(&held, T0);
    let statuses: Vec<(u16, Status)> = ev.features.iter().map(|f| (f.id.0, f.status)).collect();
    assert_eq!(
        statuses,
        [
            (1, Status::Active),
            (2, Status::Impending),
            (3, Status::Inactive)
        ]
    );
    assert_eq!(enabled_ids(&held, T0), [1]);
}

#[test]
fn across_kinds_the_latest_end_governs_a_shared_feature() {
    let phone = license_with(
        Kind::Phone,
        MAC,
        vec![entry(
            (3, T0 - DAY, Some(T0 + 100 * DAY)),
            Transaction::Trial,
            5,
        )],
    );
    let site = license_with(
        Kind::Site,
        SITE,
        vec![entry(
            (3, T0 - DAY, Some(T0 + 200 * DAY)),
            Transaction::Renewal,
            25,
        )],
    );
    let (held, _) = arrive(T0, &[phone, site]);
    let f = evaluate(&held, T0).features[0];
    assert_eq!(
        (
            f.governing.kind,
            f.governing.entry.transaction,
            f.governing.entry.limit
        ),
        (Kind::Site, Transaction::Renewal, 25)
    );
    // Once the phone entry has ended, the site entry alone keeps the feature in force.
    let f = evaluate(&held, T0 + 150 * DAY).features[0];
    assert_eq!((f.governing.kind, f.status), (Kind::Site, Status::Active));
    // A never-ending phone entry beats any dated one.
    let forever = license_with(
        Kind::Phone,
        MAC,
        vec![entry((3, T0 - DAY, None), Transaction::New, 0)],
    );
    let (held, _) = arrive(
        T0,
        &[
            lic(Kind::Site, &[(3, T0 - DAY, Some(T0 + 200 * DAY))]),
            forever,
        ],
    );
    assert_eq!(evaluate(&held, T0).features[0].governing.kind, Kind::Phone);
}

#[test]
fn on_a_tie_of_duration_the_last_received_is_primary() {
    let a = lic(Kind::Site, &[(2, T0 - DAY, Some(T0 + 100 * DAY))]);
    let b = lic(Kind::Site, &[(3, T0 - DAY, Some(T0 + 100 * DAY))]);
    let (held, decisions) = arrive(T0, &[a, b]);
    assert_eq!(
        decisions[1],
        Decision::Accept {
            drop: vec![site(1)]
        }
    );
    assert_eq!(enabled_ids(&held, T0), [3]);
}

#[test]
fn at_most_four_licenses_per_kind_are_kept() {
    // An Impending primary, then five Impending licenses that would bridge to it.
    let mut arrivals = vec![lic(
        Kind::Site,
        &[(2, T0 + 200 * DAY, Some(T0 + 1_000 * DAY))],
    )];
    arrivals.extend((0..5).map(|i| {
        lic(
            Kind::Site,
            &[(10 + i, T0 + DAY, Some(T0 + (50 + i as i64) * DAY))],
        )
    }));
    let (held, decisions) = arrive(T0, &arrivals);
    assert_eq!(held.len(), MAX_PER_KIND);
    assert_eq!(
        decisions[4],
        Decision::Accept {
            drop: vec![site(2)]
        },
        "the shortest bridging one goes"
    );
    // The primary and the three bridging licenses that last longest; once they start,
    // the longest of them is the one that counts.
    let ids = |h: &[Held]| -> Vec<u16> {
        h.iter()
            .flat_map(|h| h.license.features().iter().map(|e| e.id.0))
            .collect()
    };
    assert_eq!(ids(&held), [2, 12, 13, 14]);
    assert_eq!(enabled_ids(&held, T0 + DAY), [14]);
    // A shorter one still is not taken at all.
    let shorter = lic(Kind::Site, &[(20, T0 + DAY, Some(T0 + 10 * DAY))]);
    assert!(matches!(
        judge_candidate(
            &identity(),
            &held,
            &shorter,
            Origin::Installed,
            Some(T0),
            99
        ),
        Decision::Superseded { .. }
    ));
}

// ---- Property tests ----

/// A license drawn from a small pool, so that repeats and ties happen.
#[derive(Debug, Clone)]
struct Draw {
    kind: Kind,
    foreign: bool,
    feature: u16,
    start: i64,
    end: Option<i64>,
}

fn draw() -> impl Strategy<Value = Draw> {
    (
        any::<bool>(),
        0..10u8,
        1..4u16,
        -3..3i64,
        prop::option::weighted(0.8, -2..6i64),
    )
        .prop_map(|(site, foreign, feature, start, end)| {
            let start = T0 + start * 100 * DAY;
            Draw {
                kind: if site { Kind::Site } else { Kind::Phone },
                foreign: foreign == 0,
                feature,
                start,
                end: end.map(|e| start + (1 + e.abs()) * 120 * DAY),
            }
        })
}

fn make(d: &Draw) -> Verified<License> {
    let serial = match (d.kind, d.foreign) {
        (Kind::Phone, false) => MAC,
        (Kind::Phone, true) => "0004f2999999",
        (Kind::Site, false) => SITE,
        (Kind::Site, true) => "200000000002",
    };
    // Foreign licenses carry feature ids of their own, so they can be told apart.
    let id = if d.foreign {
        100 + d.feature
    } else {
        d.feature
    };
    license_with(
        d.kind,
        serial,
        vec![entry((id, d.start, d.end), Transaction::New, 0)],
    )
}

// ---- The status rules, written again from `agent-rules.md` ----
//
// "Status of a license, or of one feature entry, at time t", restated here in wide
// arithmetic and without calling `status`, `license_status`, `entry_status` or
// `license_span`: a boundary slip in those shows as a disagreement, not as a copy.

/// "Expiring Shortly": end − t < 31 days (2,678,400 s).
const RULE_WINDOW: i128 = 2_678_400;

/// An end as a number that orders like the rules: `None` (never) after every instant.
fn rule_end(end: End) -> Option<i128> {
    match end {
        End::At(e) => Some(i128::from(e)),
        End::Never => None,
    }
}

/// Orders ends: a dated end before a later one, never last of all.
fn rule_end_key(end: Option<i128>) -> i128 {
    end.unwrap_or(i128::MAX)
}

/// The status of `[start, end)` at `t`, per the table: Impending t < start; Inactive
/// t ≥ end; Expiring Shortly start ≤ t < end and end − t < 31 days; Active otherwise
/// (a never-ending entry is Active once started).
fn rule_status(start: i128, end: Option<i128>, t: i128) -> Status {
    if t < start {
        Status::Impending
    } else {
        match end {
            None => Status::Active,
            Some(end) if t >= end => Status::Inactive,
            Some(end) if end - t < RULE_WINDOW => Status::ExpiringShortly,
            Some(_) => Status::Active,
        }
    }
}

/// A whole license's span: the earliest start and the latest end of its entries.
fn rule_span(l: &License) -> (i128, Option<i128>) {
    let start = l.features().iter().map(|e| i128::from(e.start)).min();
    let end = l
        .features()
        .iter()
        .map(|e| rule_end(e.end))
        .max_by_key(|e| rule_end_key(*e));
    (start.unwrap_or(0), end.unwrap_or(Some(0)))
}

/// The status of a whole license at `t`.
fn rule_license_status(l: &License, t: UnixTime) -> Status {
    let (start, end) = rule_span(l);
    rule_status(start, end, i128::from(t))
}

/// The status of one entry at `t`.
fn rule_entry_status(e: &FeatureEntry, t: UnixTime) -> Status {
    rule_status(i128::from(e.start), rule_end(e.end), i128::from(t))
}

/// The rules' text as a simulation: a store that changes only at the instants the rules
/// name. Licenses arrive at instants of their own; at every start and end of a stored
/// license, drops happen at once. Written apart from [`select`] and its closed form.
#[derive(Default)]
struct Reference {
    /// (received number, license), per the order of arrival.
    stored: Vec<(u64, Verified<License>)>,
    /// The instant the store has been brought to.
    now: UnixTime,
}

impl Reference {
    fn outlasts(a: &(u64, Verified<License>), b: &(u64, Verified<License>)) -> bool {
        (rule_end_key(rule_span(&a.1).1), a.0) > (rule_end_key(rule_span(&b.1).1), b.0)
    }

    /// Drops what the rules drop at instant `t`: an Inactive license; a license once one
    /// of its kind that outlasts it has started ("stay in force until it starts": a
    /// license stops counting at the instant its successor starts); beyond four of a
    /// kind, the shortest.
    fn drops_at(&mut self, t: UnixTime) {
        let before = self.stored.clone();
        self.stored.retain(|l| {
            rule_license_status(&l.1, t) != Status::Inactive
                && !before.iter().any(|m| {
                    m.1.kind() == l.1.kind()
                        && Self::outlasts(m, l)
                        && rule_license_status(&m.1, t) != Status::Impending
                })
        });
        for kind in [Kind::Phone, Kind::Site] {
            let mut of_kind: Vec<_> = self
                .stored
                .iter()
                .filter(|l| l.1.kind() == kind)
                .cloned()
                .collect();
            of_kind.sort_by_key(|l| std::cmp::Reverse((rule_end_key(rule_span(&l.1).1), l.0)));
            for extra in of_kind.iter().skip(MAX_PER_KIND) {
                self.stored.retain(|l| l.0 != extra.0);
            }
        }
    }

    /// Lets time run to `t`, stopping at every start and end of a stored license.
    fn advance(&mut self, t: UnixTime) {
        loop {
            let next = self
                .stored
                .iter()
                .flat_map(|(_, l)| {
                    let (start, end) = rule_span(l);
                    [Some(start), end]
                })
                .flatten()
                .filter(|i| *i > i128::from(self.now) && *i <= i128::from(t))
                .min();
            let Some(instant) = next else { break };
            let instant = UnixTime::try_from(instant).expect("a start or end of a u32");
            self.now = instant;
            self.drops_at(instant);
        }
        self.now = t;
        self.drops_at(t);
    }

    /// A license arrives at `t` with received number `seq`.
    fn arrive(&mut self, t: UnixTime, seq: u64, l: &Verified<License>) {
        self.advance(t);
        let bound = match l.kind() {
            Kind::Phone => l.serial().to_string() == MAC,
            Kind::Site => l.serial().to_string() == SITE,
        };
        let repeat = self
            .stored
            .iter()
            .any(|(_, s)| s.signed_message() == l.signed_message());
        if bound && !repeat && rule_license_status(l, t) != Status::Inactive {
            self.stored.push((seq, l.clone()));
            self.drops_at(t);
        }
    }

    /// The features in force at the current instant: every entry in force of a stored
    /// license, the latest end winning.
    fn enabled(&self) -> BTreeMap<FeatureId, End> {
        let mut enabled: BTreeMap<FeatureId, End> = BTreeMap::new();
        for (_, l) in &self.stored {
            for e in l.features() {
                if rule_entry_status(e, self.now).in_force() {
                    let end = enabled.entry(e.id).or_insert(e.end);
                    if rule_end_key(rule_end(e.end)) > rule_end_key(rule_end(*end)) {
                        *end = e.end;
                    }
                }
            }
        }
        enabled
    }

    fn seqs(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.stored.iter().map(|(s, _)| *s).collect();
        seqs.sort_unstable();
        seqs
    }
}

/// One step of a history: a license arriving, or a look at the feature set, at an
/// instant; and whether the agent wrote its drops then (it may not have: no daemon ran,
/// the store was read-only, the write failed).
#[derive(Debug, Clone)]
struct Step {
    at: i64,
    arrival: Option<Draw>,
    written: bool,
}

fn history() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0..40i64, prop::option::weighted(0.6, draw()), any::<bool>()),
        1..16,
    )
    .prop_map(|steps| {
        let mut steps: Vec<Step> = steps
            .into_iter()
            .map(|(at, arrival, written)| Step {
                at: T0 + at * 25 * DAY,
                arrival,
                written,
            })
            .collect();
        steps.sort_by_key(|s| s.at);
        steps
    })
}

proptest! {
    // The histories that tell the rules apart (a bridge, its successor started, a longer
    // one still Impending) are a few in a thousand: run enough to meet them every time.
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Whatever arrives, whenever, and whichever drops were written: the feature set and
    /// every status at every instant are the simulated rules' (statuses and spans computed
    /// by the reference itself, not by the engine's functions), and once the drops are
    /// written the store holds exactly what the rules keep.
    #[test]
    fn every_history_gives_the_feature_set_of_the_rules(steps in history()) {
        let mut reference = Reference { now: T0, ..Reference::default() };
        let mut held: Vec<Held> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let seq = i as u64 + 1;
            if step.written {
                let drops: Vec<StoreId> = [Kind::Phone, Kind::Site]
                    .into_iter()
                    .flat_map(|k| select(&held, k, step.at).drop)
                    .collect();
                held.retain(|h| !drops.contains(&h.id()));
            }
            if let Some(draw) = &step.arrival {
                let l = make(draw);
                reference.arrive(step.at, seq, &l);
                let d = judge_candidate(&identity(), &held, &l, Origin::Installed, Some(step.at), seq);
                if let Decision::Accept { drop } = d {
                    if step.written {
                        held.retain(|h| !drop.contains(&h.id()));
                    }
                    held.push(Held { seq, license: l });
                }
            } else {
                reference.advance(step.at);
            }
            let eval = evaluate(&held, step.at);
            prop_assert_eq!(eval.enabled(), reference.enabled(), "at step {}", i);
            // Every status shown is the rules' status, license and entry alike.
            for v in &eval.licenses {
                let h = held.iter().find(|h| h.seq == v.seq).expect("a view of a held license");
                prop_assert_eq!(v.status, rule_license_status(&h.license, step.at), "license {} at step {}", v.seq, i);
            }
            for f in &eval.features {
                prop_assert_eq!(f.status, rule_entry_status(&f.governing.entry, step.at), "feature {} at step {}", f.id.0, i);
            }
            if step.written {
                let mut pruned = held.clone();
                let drops: Vec<StoreId> = [Kind::Phone, Kind::Site]
                    .into_iter()
                    .flat_map(|k| select(&pruned, k, step.at).drop)
                    .collect();
                pruned.retain(|h| !drops.contains(&h.id()));
                let mut seqs: Vec<u64> = pruned.iter().map(|h| h.seq).collect();
                seqs.sort_unstable();
                prop_assert_eq!(seqs, reference.seqs(), "stored at step {}", i);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any instant at all, even ones no clock gives, and the instants either side of every
    /// start, 31-day mark and end: every license and entry status, every days-left figure
    /// and the next change equal what exact (i128) arithmetic gives, so a wrapping or
    /// saturating slip shows even where overflow checks would not panic.
    #[test]
    fn any_instant_is_evaluated_as_exact_arithmetic_gives(draws in prop::collection::vec(draw(), 1..6), at in any::<i64>()) {
        let arrivals: Vec<_> = draws.iter().map(make).collect();
        let (held, _) = arrive(T0, &arrivals);
        // Every instant at which a status changes, exactly.
        let mut changes: Vec<i128> = Vec::new();
        for h in &held {
            let (start, end) = rule_span(&h.license);
            let entries = h.license.features().iter().map(|e| (i128::from(e.start), rule_end(e.end)));
            for (start, end) in std::iter::once((start, end)).chain(entries) {
                changes.push(start);
                changes.extend(end.map(|e| e - RULE_WINDOW));
                changes.extend(end);
            }
        }
        let mut instants = vec![at, i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1, 0, -1];
        for c in &changes {
            for d in [-1, 0, 1] {
                instants.extend(UnixTime::try_from(c + d));
            }
        }
        for t in instants {
            let eval = evaluate(&held, t);
            for v in &eval.licenses {
                let h = held.iter().find(|h| h.seq == v.seq).expect("a view of a held license");
                prop_assert_eq!(v.status, rule_license_status(&h.license, t), "license {} at {}", v.seq, t);
                // Days left: the seconds to the end rounded up, none once ended, and at
                // most the count i64 seconds can hold.
                let want = rule_span(&h.license).1.map(|end| {
                    let days = ((end - i128::from(t)).max(0) + 86_399) / 86_400;
                    i64::try_from(days.min(i128::from(i64::MAX / 86_400))).expect("capped")
                });
                prop_assert_eq!(crate::status::days_left(v.end, t), want, "days left of {} at {}", v.seq, t);
            }
            for f in &eval.features {
                prop_assert_eq!(f.status, rule_entry_status(&f.governing.entry, t), "feature {} at {}", f.id.0, t);
            }
            // The next change is after t, and is one of the exact instants.
            if let Some(n) = eval.next_change {
                prop_assert!(n > t);
                prop_assert!(changes.contains(&i128::from(n)), "next change {} at {}", n, t);
            }
        }
    }

    /// An expired or foreign license never enables anything, and never more than four
    /// licenses of a kind are held.
    #[test]
    fn expired_or_foreign_never_enables_and_the_store_stays_small(draws in prop::collection::vec(draw(), 1..20)) {
        let arrivals: Vec<_> = draws.iter().map(make).collect();
        let mut held: Vec<Held> = Vec::new();
        for (i, l) in arrivals.iter().enumerate() {
            let seq = i as u64 + 1;
            if let Decision::Accept { drop } = judge_candidate(&identity(), &held, l, Origin::Installed, Some(T0), seq) {
                held.retain(|h| !drop.contains(&h.id()));
                held.push(Held { seq, license: l.clone() });
            }
            for kind in [Kind::Phone, Kind::Site] {
                prop_assert!(held.iter().filter(|h| h.license.kind() == kind).count() <= MAX_PER_KIND);
            }
            for h in &held {
                prop_assert!(license_status(&h.license, T0) != Status::Inactive);
            }
            for f in evaluate(&held, T0).enabled().keys() {
                prop_assert!(f.0 < 100, "feature {} of a foreign license enabled", f.0);
            }
            // Every enabled feature comes from an entry in force of a used license.
            for f in evaluate(&held, T0).features.iter().filter(|f| f.enabled()) {
                prop_assert!(entry_status(&f.governing.entry, T0).in_force());
            }
        }
        // Later, once everything dated has ended, only never-ending entries remain.
        let late = T0 + 10_000 * DAY;
        for f in evaluate(&held, late).features.iter().filter(|f| f.enabled()) {
            prop_assert_eq!(f.governing.entry.end, End::Never);
        }
    }
}
