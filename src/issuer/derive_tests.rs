//! Addon, Renewal and the fewer-features check, judged by the agent's own engine.

use super::compare::{compare, judge};
use super::derive::{addon, renew, AddonRequest, RenewRequest};
use super::*;
use crate::engine::{evaluate, select, Held};
use crate::format::{FeatureId, Transaction};

const Y2026: u32 = 1_767_225_600; // 2026-01-01T00:00:00Z
const Y2027: u32 = 1_798_761_600;
const Y2028: u32 = 1_830_297_600;
const DAY: u32 = 86_400;
const NOW: u32 = Y2026 + 100 * DAY;

const USB: FeatureId = FeatureId(1);
const VQMON: FeatureId = FeatureId(2);
const CONF: FeatureId = FeatureId(6);

fn key() -> SigningKey {
    SigningKey::from_seed(&[7; 32]).unwrap()
}

fn rec(id: FeatureId, transaction: Transaction, start: u32, end: End, limit: u32) -> FeatureEntry {
    FeatureEntry {
        id,
        transaction,
        start,
        end,
        limit,
    }
}

fn signed(kind: Kind, features: Vec<FeatureEntry>) -> Verified<License> {
    let spec = LicenseSpec {
        serial: Serial::parse("100000000001").unwrap(),
        kind,
        features,
    };
    issue_verified(&spec, &key()).unwrap().license
}

/// The finding's site file: vqmon, usb-call-recording and 100 managed devices of
/// conference-management, all New for 2026.
fn site_in_force() -> Verified<License> {
    signed(
        Kind::Site,
        vec![
            rec(VQMON, Transaction::New, Y2026, End::At(Y2027), 0),
            rec(USB, Transaction::New, Y2026, End::At(Y2027), 0),
            rec(CONF, Transaction::New, Y2026, End::At(Y2027), 100),
        ],
    )
}

fn sign_derived(spec: &LicenseSpec) -> Verified<License> {
    issue_verified(spec, &key()).unwrap().license
}

fn enabled_at(held: &[Held], at: u32) -> Vec<FeatureId> {
    evaluate(held, i64::from(at))
        .enabled()
        .into_keys()
        .collect()
}

fn held(files: &[&Verified<License>]) -> Vec<Held> {
    files
        .iter()
        .enumerate()
        .map(|(i, l)| Held {
            seq: i as u64 + 1,
            license: (*l).clone(),
        })
        .collect()
}

#[test]
fn an_addon_keeps_every_other_grant_byte_for_byte() {
    let current = site_in_force();
    let req = AddonRequest {
        feature: CONF,
        limit: 20,
        start: None,
    };
    let derived = addon(&current, &req, NOW).unwrap();
    let new = sign_derived(&derived.spec);
    let old_table = features::encode_table(current.features());
    let new_table = features::encode_table(new.features());
    assert_eq!(old_table.len(), new_table.len());
    for (i, (old, new)) in old_table.chunks(16).zip(new_table.chunks(16)).enumerate() {
        if i == 2 {
            assert_ne!(old, new);
        } else {
            assert_eq!(old, new, "record {i} is kept as it was");
        }
    }
    assert_eq!(
        new.features()[2],
        rec(CONF, Transaction::Addon, NOW, End::At(Y2027), 20)
    );
    assert_eq!(
        (new.serial(), new.kind()),
        (current.serial(), current.kind())
    );
    assert!(
        derived.notes[0].contains("limit 100"),
        "{:?}",
        derived.notes
    );
    // Posted after the file in force, the phones lose nothing.
    assert_eq!(compare(&current, &new, NOW).losses, []);
    let both = held(&[&current, &new]);
    assert_eq!(enabled_at(&both, NOW), [USB, VQMON, CONF]);
    // An explicit start within the term is kept.
    let at = AddonRequest {
        start: Some(Y2026 + 200 * DAY),
        ..req
    };
    assert_eq!(
        addon(&current, &at, NOW).unwrap().spec.features[2].start,
        Y2026 + 200 * DAY
    );
}

#[test]
fn an_addon_for_a_term_not_started_yet_starts_with_it() {
    let current = signed(
        Kind::Site,
        vec![rec(CONF, Transaction::Renewal, Y2027, End::At(Y2028), 100)],
    );
    let req = AddonRequest {
        feature: CONF,
        limit: 5,
        start: None,
    };
    assert_eq!(
        addon(&current, &req, NOW).unwrap().spec.features[0].start,
        Y2027
    );
}

#[test]
fn addon_refusals() {
    let current = site_in_force();
    let ok = AddonRequest {
        feature: CONF,
        limit: 20,
        start: None,
    };
    let refused = |license: &License, req: AddonRequest, why: &str| {
        let e = addon(license, &req, NOW).unwrap_err();
        assert!(e.contains(why), "{e}");
    };
    refused(
        &current,
        AddonRequest {
            feature: FeatureId(4),
            ..ok
        },
        "h323 is not in the current file",
    );
    refused(
        &current,
        AddonRequest {
            start: Some(Y2027),
            ..ok
        },
        "not after the Addon's start",
    );
    refused(&current, AddonRequest { limit: 0, ..ok }, "at least 1");
    refused(
        &current,
        AddonRequest {
            start: Some(Y2026 - 1),
            ..ok
        },
        "before conference-management's term starts",
    );
    let never = signed(
        Kind::Site,
        vec![rec(CONF, Transaction::New, Y2026, End::Never, 100)],
    );
    refused(&never, ok, "never ends");
    let trial = signed(
        Kind::Site,
        vec![rec(CONF, Transaction::Trial, Y2026, End::At(Y2027), 100)],
    );
    refused(&trial, ok, "Trial");
    let phone = signed(
        Kind::Phone,
        vec![rec(CONF, Transaction::New, Y2026, End::At(Y2027), 100)],
    );
    refused(&phone, ok, "phone license");
}

#[test]
fn a_renewal_starts_at_the_old_end_and_the_agent_takes_it_as_primary_while_bridging() {
    let current = site_in_force();
    let req = RenewRequest {
        until: Y2028,
        features: Vec::new(),
        start: None,
        limit: None,
    };
    let derived = renew(&current, &req, NOW).unwrap();
    let new = sign_derived(&derived.spec);
    for (old, e) in current.features().iter().zip(new.features()) {
        assert_eq!(
            *e,
            rec(
                old.id,
                Transaction::Renewal,
                Y2027,
                End::At(Y2028),
                old.limit
            )
        );
    }
    assert_eq!(derived.notes, Vec::<String>::new());
    // The agent holding both: the Renewal is primary, the old file bridges until it starts.
    let both = held(&[&current, &new]);
    for at in [NOW, Y2027 - 1] {
        let s = select(&both, Kind::Site, i64::from(at));
        assert_eq!(s.primary.map(|p| p.seq), Some(2), "at {at}");
        assert_eq!(s.bridging.iter().map(|b| b.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(enabled_at(&both, at), [USB, VQMON, CONF]);
    }
    for at in [Y2027, Y2028 - 1] {
        assert_eq!(enabled_at(&both, at), [USB, VQMON, CONF], "at {at}");
    }
    assert_eq!(compare(&current, &new, NOW).losses, []);
}

#[test]
fn a_partial_renewal_starts_when_the_agent_would_use_it_so_there_is_no_gap() {
    let current = site_in_force();
    let req = RenewRequest {
        until: Y2028,
        features: vec![VQMON],
        start: None,
        limit: None,
    };
    let derived = renew(&current, &req, NOW).unwrap();
    // usb and conf are kept and have started: the agent uses the new file at once, so the
    // Renewal of vqmon starts now, not at its old end.
    assert_eq!(
        derived.spec.features[0],
        rec(VQMON, Transaction::Renewal, NOW, End::At(Y2028), 0)
    );
    assert_eq!(&derived.spec.features[1..], &current.features()[1..]);
    assert!(derived.notes[0].contains("not at its current end"));
    let new = sign_derived(&derived.spec);
    assert_eq!(compare(&current, &new, NOW).losses, []);
    // At the old end: it is a Renewal of vqmon only; the others end with the old term.
    let both = held(&[&current, &new]);
    assert_eq!(enabled_at(&both, Y2027), [VQMON]);

    // Given --start at the old end instead, the check sees the gap.
    let gap = renew(
        &current,
        &RenewRequest {
            start: Some(Y2027),
            ..req
        },
        NOW,
    )
    .unwrap();
    let losses = compare(&current, &sign_derived(&gap.spec), NOW).losses;
    assert_eq!(losses.len(), 1);
    assert_eq!((losses[0].feature, losses[0].at), (VQMON, NOW));
    assert!(losses[0]
        .describe("old.cfg", "new.cfg")
        .contains("only from 2027-01-01"));
}

#[test]
fn a_renewal_rolls_addons_together_with_limit_and_says_so() {
    let current = site_in_force();
    let with_addon = sign_derived(
        &addon(
            &current,
            &AddonRequest {
                feature: CONF,
                limit: 20,
                start: None,
            },
            NOW,
        )
        .unwrap()
        .spec,
    );
    let mut req = RenewRequest {
        until: Y2028,
        features: vec![CONF, USB, VQMON],
        start: None,
        limit: None,
    };
    let kept = renew(&with_addon, &req, NOW).unwrap();
    assert_eq!(kept.spec.features[2].limit, 20);
    assert!(
        kept.notes.iter().any(|n| n.contains("Addon of 20")),
        "{:?}",
        kept.notes
    );
    req.features = vec![CONF];
    req.limit = Some(120);
    let rolled = renew(&with_addon, &req, NOW).unwrap();
    assert_eq!(
        rolled.spec.features[2],
        rec(CONF, Transaction::Renewal, NOW, End::At(Y2028), 120)
    );
    assert!(rolled.notes.iter().any(|n| n.contains("rolls together")));
}

#[test]
fn renewal_refusals() {
    let current = site_in_force();
    let ok = RenewRequest {
        until: Y2028,
        features: Vec::new(),
        start: None,
        limit: None,
    };
    let refused = |license: &License, req: RenewRequest, why: &str| {
        let e = renew(license, &req, NOW).unwrap_err();
        assert!(e.contains(why), "{e}");
    };
    refused(
        &current,
        RenewRequest {
            until: Y2027,
            ..ok.clone()
        },
        "does not extend",
    );
    refused(
        &current,
        RenewRequest {
            start: Some(Y2027 + 1),
            ..ok.clone()
        },
        "after vqmon's current end",
    );
    refused(
        &current,
        RenewRequest {
            features: vec![FeatureId(5)],
            ..ok.clone()
        },
        "lync is not in the current file",
    );
    refused(
        &current,
        RenewRequest {
            until: NOW,
            ..ok.clone()
        },
        "not in the future",
    );
    let mixed = signed(
        Kind::Phone,
        vec![
            rec(VQMON, Transaction::New, Y2026, End::Never, 0),
            rec(USB, Transaction::Trial, Y2026, End::At(Y2027), 0),
        ],
    );
    refused(&mixed, ok.clone(), "nothing to renew");
    refused(
        &mixed,
        RenewRequest {
            features: vec![VQMON],
            ..ok.clone()
        },
        "never ends",
    );
    refused(
        &mixed,
        RenewRequest {
            features: vec![USB],
            ..ok
        },
        "Trial",
    );
}

#[test]
fn an_addon_only_file_warns_fewer_features_and_is_refused_unless_allowed() {
    // The finding: same serial, same end, only the Addon; newest on the tie, so primary.
    let current = site_in_force();
    let addon_only = signed(
        Kind::Site,
        vec![rec(CONF, Transaction::Addon, NOW, End::At(Y2027), 20)],
    );
    let earlier = [("site.cfg".to_string(), current.clone())];
    let verdict = judge(&addon_only, "addon.cfg", &earlier, NOW, false);
    assert_eq!(verdict.warnings.len(), 2, "{:?}", verdict.warnings);
    assert!(verdict.warnings[0].starts_with("usb-call-recording: site.cfg grants it"));
    assert!(verdict.warnings[1].starts_with("vqmon: site.cfg grants it"));
    assert!(verdict.warnings[1].contains("addon.cfg does not grant it"));
    assert!(verdict.warnings[1].contains("latest end"));
    assert!(verdict.refused.unwrap().contains("--allow-fewer"));
    // --allow-fewer: the same warnings, and the file may be written.
    let allowed = judge(&addon_only, "addon.cfg", &earlier, NOW, true);
    assert_eq!(allowed.warnings.len(), 2);
    assert_eq!(allowed.refused, None);
    // A feature of the previous file that ends before the new file is used is no loss.
    let renewal_of_two = signed(
        Kind::Site,
        vec![
            rec(USB, Transaction::Renewal, Y2027, End::At(Y2028), 0),
            rec(CONF, Transaction::Renewal, Y2027, End::At(Y2028), 100),
        ],
    );
    let short_vqmon = signed(
        Kind::Site,
        vec![
            rec(
                VQMON,
                Transaction::New,
                Y2026,
                End::At(Y2026 + 200 * DAY),
                0,
            ),
            rec(USB, Transaction::New, Y2026, End::At(Y2027), 0),
            rec(CONF, Transaction::New, Y2026, End::At(Y2027), 100),
        ],
    );
    assert_eq!(compare(&short_vqmon, &renewal_of_two, NOW).losses, []);
    // ... but one still in force when it is used is.
    let long_vqmon = signed(
        Kind::Site,
        vec![
            rec(
                VQMON,
                Transaction::New,
                Y2026,
                End::At(Y2027 + 100 * DAY),
                0,
            ),
            rec(USB, Transaction::New, Y2026, End::At(Y2027), 0),
            rec(CONF, Transaction::New, Y2026, End::At(Y2027), 100),
        ],
    );
    let lost = compare(&long_vqmon, &renewal_of_two, NOW).losses;
    assert_eq!(
        lost.iter().map(|l| (l.feature, l.at)).collect::<Vec<_>>(),
        [(VQMON, Y2027)]
    );
    // The same file again, or a full Addon, says nothing.
    assert_eq!(
        judge(&current, "x", &earlier, NOW, false),
        Default::default()
    );
}

#[test]
fn files_of_another_serial_or_kind_are_not_compared() {
    let current = site_in_force();
    let phone = signed(
        Kind::Phone,
        vec![rec(VQMON, Transaction::New, Y2026, End::Never, 0)],
    );
    let verdict = judge(&phone, "new", &[("old".into(), current)], NOW, true);
    assert!(verdict.refused.unwrap().contains("not compared"));
}

#[test]
fn a_new_file_the_agent_would_never_use_is_named() {
    let current = site_in_force();
    let shorter = signed(
        Kind::Site,
        vec![
            rec(VQMON, Transaction::New, Y2026, End::At(Y2027 - DAY), 0),
            rec(USB, Transaction::New, Y2026, End::At(Y2027 - DAY), 0),
            rec(CONF, Transaction::New, Y2026, End::At(Y2027 - DAY), 100),
        ],
    );
    let verdict = judge(&shorter, "new", &[("old".into(), current)], NOW, false);
    assert_eq!(verdict.refused, None);
    assert!(
        verdict.warnings[0].contains("never use new"),
        "{:?}",
        verdict.warnings
    );
}
