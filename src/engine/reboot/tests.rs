//! Reboot state machine tests: each rule, the fleet's stagger spread, and a property over
//! random interleavings of calls, needs, answers and disconnections.

use proptest::prelude::*;

use super::*;
use crate::format::FeatureId;

const T: UnixTime = 1_790_000_000;
const TIMING: RebootTiming = RebootTiming {
    idle_grace: 30,
    reask: 600,
    stagger_window: 3_600,
    windows: None,
};

/// Both clocks at `t` seconds.
fn st(t: UnixTime) -> Stamp {
    Stamp::at_secs(t)
}

/// The monotonic instant of `t` seconds.
fn mono(t: UnixTime) -> Mono {
    st(t).mono
}

fn mac() -> Serial {
    Serial::parse("0004f2000001").unwrap()
}

fn sent(actions: &[Action]) -> Vec<(u64, Cause)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendReboot { id, cause } => Some((*id, *cause)),
            Action::Log(_) => None,
        })
        .collect()
}

fn connected_idle_at(t: UnixTime) -> RebootMachine {
    let mut m = RebootMachine::default();
    m.connection(true);
    m.call_state(CallState::Idle, st(t));
    m
}

#[test]
fn asks_only_after_the_idle_grace_and_only_once() {
    let mut m = connected_idle_at(T);
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T + 5));
    let (a, wake) = m.poll(st(T + 29), &TIMING);
    assert!(sent(&a).is_empty());
    assert_eq!(wake, Some(mono(T + 30)));
    assert_eq!(
        m.waiting(st(T + 29), &TIMING),
        Waiting::IdleGrace {
            until: mono(T + 30)
        }
    );
    let (a, _) = m.poll(st(T + 30), &TIMING);
    assert_eq!(sent(&a), [(1, Cause::LicenseExpired)]);
    // Outstanding: never a second REBOOT while the first is unanswered.
    let (a, _) = m.poll(st(T + 100), &TIMING);
    assert!(sent(&a).is_empty());
    assert_eq!(m.waiting(st(T + 100), &TIMING), Waiting::Answer { id: 1 });
}

#[test]
fn never_during_a_call_and_never_before_the_supervisor_said_idle() {
    let mut m = RebootMachine::default();
    m.connection(true);
    m.need(Cause::LicenseChanged, false, mac(), &TIMING, st(T));
    // No CALL-STATE heard yet: busy.
    assert!(sent(&m.poll(st(T + 1_000), &TIMING).0).is_empty());
    assert_eq!(m.waiting(st(T + 1_000), &TIMING), Waiting::Idle);
    m.call_state(CallState::Active, st(T + 1_000));
    assert!(sent(&m.poll(st(T + 5_000), &TIMING).0).is_empty());
    m.call_state(CallState::Idle, st(T + 5_000));
    assert!(sent(&m.poll(st(T + 5_029), &TIMING).0).is_empty());
    assert_eq!(
        sent(&m.poll(st(T + 5_030), &TIMING).0),
        [(1, Cause::LicenseChanged)]
    );
}

#[test]
fn busy_waits_for_a_fresh_idle_period() {
    let mut m = connected_idle_at(T);
    m.need(Cause::FeatureLicensed, false, mac(), &TIMING, st(T));
    assert_eq!(
        sent(&m.poll(st(T + 30), &TIMING).0),
        [(1, Cause::FeatureLicensed)]
    );
    assert!(m.busy(1, st(T + 31)).is_empty());
    // Still "idle" as far as the last CALL-STATE went, but BUSY said otherwise.
    assert!(sent(&m.poll(st(T + 1_000), &TIMING).0).is_empty());
    m.call_state(CallState::Idle, st(T + 1_000));
    assert!(sent(&m.poll(st(T + 1_029), &TIMING).0).is_empty());
    assert_eq!(
        sent(&m.poll(st(T + 1_030), &TIMING).0),
        [(2, Cause::FeatureLicensed)]
    );
}

#[test]
fn ok_ends_the_asking_until_the_reask_time() {
    let mut m = connected_idle_at(T);
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T));
    let (a, _) = m.poll(st(T + 30), &TIMING);
    assert_eq!(sent(&a), [(1, Cause::LicenseExpired)]);
    assert!(m.ok(1, st(T + 31)).is_empty());
    // A new cause arriving now is served by the reboot already accepted.
    m.need(Cause::LicenseChanged, false, mac(), &TIMING, st(T + 40));
    let (a, wake) = m.poll(st(T + 600), &TIMING);
    assert!(sent(&a).is_empty());
    assert_eq!(wake, Some(mono(T + 631)));
    // Still running ten minutes after OK: log, and ask again (the oldest cause).
    let (a, _) = m.poll(st(T + 631), &TIMING);
    assert!(matches!(&a[0], Action::Log(l) if l.contains("still running")));
    assert_eq!(sent(&a), [(2, Cause::LicenseExpired)]);
    // Answers to unknown ids change nothing.
    assert_eq!(m.ok(99, st(T + 700)).len(), 1);
    assert_eq!(m.waiting(st(T + 700), &TIMING), Waiting::Answer { id: 2 });
}

#[test]
fn a_dropped_connection_is_no_reboot_and_asks_again_after_reconnecting() {
    let mut m = connected_idle_at(T);
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T));
    assert_eq!(
        sent(&m.poll(st(T + 30), &TIMING).0),
        [(1, Cause::LicenseExpired)]
    );
    m.connection(false);
    assert_eq!(m.waiting(st(T + 40), &TIMING), Waiting::Connection);
    assert!(sent(&m.poll(st(T + 40), &TIMING).0).is_empty());
    m.connection(true);
    m.call_state(CallState::Idle, st(T + 50));
    assert_eq!(
        sent(&m.poll(st(T + 80), &TIMING).0),
        [(2, Cause::LicenseExpired)]
    );
    assert!(
        m.ok(1, st(T + 81)).len() == 1,
        "the old request's answer is not taken"
    );
}

#[test]
fn a_call_state_heard_while_disconnected_counts_for_nothing() {
    let mut m = RebootMachine::default();
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T));
    // Read from the old connection's buffer after it dropped.
    m.call_state(CallState::Idle, st(T));
    m.connection(true);
    // Long past the grace of that idle, but the new connection has said nothing yet.
    assert!(sent(&m.poll(st(T + 1_000), &TIMING).0).is_empty());
    assert_eq!(m.waiting(st(T + 1_000), &TIMING), Waiting::Idle);
    m.call_state(CallState::Idle, st(T + 1_000));
    assert!(sent(&m.poll(st(T + 1_029), &TIMING).0).is_empty());
    assert_eq!(
        sent(&m.poll(st(T + 1_030), &TIMING).0),
        [(1, Cause::LicenseExpired)]
    );
}

#[test]
fn a_site_cause_waits_for_this_phones_stagger_delay() {
    let delay = stagger_delay(mac(), 3_600) as i64;
    assert!(delay < 3_600);
    let mut m = connected_idle_at(T - 100);
    m.need(Cause::LicenseExpired, true, mac(), &TIMING, st(T));
    if delay > 0 {
        assert!(sent(&m.poll(st(T + delay - 1), &TIMING).0).is_empty());
        assert_eq!(
            m.waiting(st(T + delay - 1), &TIMING),
            Waiting::Stagger {
                until: mono(T + delay)
            }
        );
    }
    assert_eq!(sent(&m.poll(st(T + delay), &TIMING).0).len(), 1);
}

#[test]
fn stagger_delay_follows_the_formula() {
    // SHA-256("0004f2000001"), first 8 bytes big-endian, modulo the window.
    let hash = digest::digest(&digest::SHA256, b"0004f2000001");
    let first = u64::from_be_bytes(hash.as_ref()[..8].try_into().unwrap());
    assert_eq!(stagger_delay(mac(), 3_600), first % 3_600);
    assert_eq!(stagger_delay(mac(), 0), 0);
    assert_eq!(stagger_delay(mac(), 1), 0);
}

/// Fleet check: 10,000 random MACs over a one-hour window; no minute gets more than
/// 1.5 times its fair share of reboots.
#[test]
fn a_fleet_spreads_its_reboots_evenly_over_the_window() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut minutes = [0u32; 60];
    for _ in 0..10_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&state.to_be_bytes()[2..]);
        minutes[(stagger_delay(Serial(mac), 3_600) / 60) as usize] += 1;
    }
    let fair = 10_000.0 / 60.0;
    let max = *minutes.iter().max().unwrap();
    let min = *minutes.iter().min().unwrap();
    println!("10,000 MACs, 1 h window: per minute min {min}, max {max}, fair share {fair:.1} (bound {:.1})", 1.5 * fair);
    assert!(
        f64::from(max) <= 1.5 * fair,
        "minute with {max} reboots: {minutes:?}"
    );
    assert_eq!(minutes.iter().sum::<u32>(), 10_000);
}

#[derive(Debug, Clone)]
enum Event {
    Call(bool),
    Need(u8, bool),
    /// An expiry or a check-sync changed the set: the causes it calls for now (a bit
    /// mask over `Cause::ALL`, and whether they are site causes).
    SetChange(u8, bool),
    Ok,
    Busy,
    Drop,
    Reconnect,
    Wait(u16),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        any::<bool>().prop_map(Event::Call),
        (0..3u8, any::<bool>()).prop_map(|(c, s)| Event::Need(c, s)),
        (0..8u8, any::<bool>()).prop_map(|(m, s)| Event::SetChange(m, s)),
        Just(Event::Ok),
        Just(Event::Busy),
        Just(Event::Drop),
        Just(Event::Reconnect),
        (0..900u16).prop_map(Event::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whatever happens (calls, expiries and check-syncs changing the set, answers,
    /// drops, time), a REBOOT is never sent while the last call state is active or
    /// unknown, never before `idle_grace` of idle, never while another is unanswered,
    /// and never again for a cause the supervisor accepted, within `reask` of its OK.
    #[test]
    fn reboot_only_when_idle_long_enough_and_never_twice(events in prop::collection::vec(event(), 1..80)) {
        let causes = [Cause::LicenseExpired, Cause::LicenseChanged, Cause::FeatureLicensed];
        let mut m = RebootMachine::default();
        let mut now = T;
        let mut connected = false;
        let mut call: Option<(bool, UnixTime)> = None; // (active, since) as the supervisor said
        let mut outstanding: Option<u64> = None;
        let mut accepted_at: Option<UnixTime> = None;
        // Causes an OK served, while still needed.
        let mut served: BTreeMap<Cause, UnixTime> = BTreeMap::new();
        for e in events {
            match e {
                Event::Call(active) => {
                    // A line read after the connection dropped (from its buffer) reaches
                    // the machine too: it must count for nothing.
                    if connected && call.map(|(a, _)| a) != Some(active) {
                        call = Some((active, now));
                    }
                    m.call_state(if active { CallState::Active } else { CallState::Idle }, st(now));
                }
                Event::Need(c, site) => m.need(causes[c as usize], site, mac(), &TIMING, st(now)),
                Event::SetChange(mask, site) => {
                    let wanted: BTreeMap<Cause, bool> = Cause::ALL
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, c)| (c, site))
                        .collect();
                    m.settle(&wanted, mac(), &TIMING, st(now));
                    served.retain(|c, _| wanted.contains_key(c));
                }
                Event::Ok => if let Some(id) = outstanding.take() {
                    m.ok(id, st(now));
                    accepted_at = Some(now);
                    for c in m.needs.keys() { served.entry(*c).or_insert(now); }
                },
                Event::Busy => if let Some(id) = outstanding.take() { m.busy(id, st(now)); call = Some((true, now)); },
                Event::Drop => { m.connection(false); connected = false; outstanding = None; call = None; }
                Event::Reconnect => if !connected { m.connection(true); connected = true; }
                Event::Wait(s) => now += i64::from(s),
            }
            let (actions, wake) = m.poll(st(now), &TIMING);
            if let Some(w) = wake { prop_assert!(w > mono(now), "wake {w:?} not after now {now}"); }
            for (id, cause) in sent(&actions) {
                if let Some(at) = served.get(&cause) {
                    prop_assert!(now >= at + TIMING.reask as i64, "{cause} asked again {} s after OK", now - at);
                }
                prop_assert!(connected, "REBOOT while disconnected");
                let (active, since) = call.expect("a REBOOT before any CALL-STATE");
                prop_assert!(!active, "REBOOT during a call");
                prop_assert!(now >= since + TIMING.idle_grace as i64, "REBOOT {} s into idle", now - since);
                prop_assert!(outstanding.is_none(), "REBOOT while another is unanswered");
                if let Some(at) = accepted_at {
                    prop_assert!(now >= at + TIMING.reask as i64, "REBOOT again {} s after OK", now - at);
                }
                outstanding = Some(id);
            }
        }
    }
}

fn set(entries: &[(u16, bool, Option<u32>)]) -> InForceSet {
    entries
        .iter()
        .map(|&(id, site, end)| (FeatureId(id), InForce { site, end }))
        .collect()
}

fn configured(ids: &[u16]) -> std::collections::BTreeSet<FeatureId> {
    ids.iter().map(|&i| FeatureId(i)).collect()
}

const END: u32 = 1_800_000_000;

#[test]
fn a_renewal_that_only_moves_an_end_calls_for_nothing() {
    let booted = set(&[(2, true, Some(END)), (4, false, None)]);
    let renewed = set(&[(2, true, Some(END + 86_400 * 365)), (4, false, None)]);
    assert!(causes(&booted, &renewed, i64::from(END) + 10, &configured(&[2])).is_empty());
    assert!(causes(&booted, &booted, i64::from(END) - 10, &configured(&[])).is_empty());
}

#[test]
fn an_ended_feature_is_license_expired_and_site_when_a_site_license_governed_it() {
    let booted = set(&[(2, true, Some(END)), (4, false, None)]);
    let after = set(&[(4, false, None)]);
    let at = i64::from(END);
    assert_eq!(
        causes(&booted, &after, at, &configured(&[])),
        [(Cause::LicenseExpired, true)].into()
    );
    // Governed by the phone's own license: no stagger.
    let booted = set(&[(2, false, Some(END)), (4, false, None)]);
    assert_eq!(
        causes(&booted, &after, at, &configured(&[])),
        [(Cause::LicenseExpired, false)].into()
    );
}

#[test]
fn a_feature_lost_before_its_end_is_license_changed() {
    let booted = set(&[(2, true, Some(END)), (4, false, None)]);
    let after = set(&[(4, false, None)]);
    assert_eq!(
        causes(&booted, &after, i64::from(END) - 1, &configured(&[])),
        [(Cause::LicenseChanged, true)].into()
    );
}

#[test]
fn a_gained_feature_is_feature_licensed_only_when_the_configuration_enables_it() {
    let booted = set(&[(4, false, None)]);
    let after = set(&[(2, true, Some(END)), (4, false, None)]);
    let at = i64::from(END) - 100;
    assert_eq!(
        causes(&booted, &after, at, &configured(&[2])),
        [(Cause::FeatureLicensed, true)].into()
    );
    assert_eq!(
        causes(&booted, &after, at, &configured(&[3])),
        [(Cause::LicenseChanged, true)].into()
    );
}

#[test]
fn one_phone_license_feature_makes_a_cause_the_phones_own() {
    let booted = set(&[(2, true, Some(END)), (3, false, Some(END))]);
    let after = set(&[]);
    assert_eq!(
        causes(&booted, &after, i64::from(END), &configured(&[])),
        [(Cause::LicenseExpired, false)].into()
    );
    // Expired and changed at once: two causes.
    let after = set(&[(5, true, None)]);
    assert_eq!(
        causes(&booted, &after, i64::from(END), &configured(&[5])),
        [
            (Cause::LicenseExpired, false),
            (Cause::FeatureLicensed, true)
        ]
        .into()
    );
}

#[test]
fn settle_keeps_what_is_there_adds_what_is_new_and_forgets_what_is_gone() {
    let mut m = connected_idle_at(T);
    let wanted = [(Cause::LicenseExpired, false)].into();
    assert_eq!(
        m.settle(&wanted, mac(), &TIMING, st(T + 40)),
        [Cause::LicenseExpired]
    );
    let (a, _) = m.poll(st(T + 40), &TIMING);
    assert_eq!(sent(&a), [(1, Cause::LicenseExpired)]);
    // The same cause again: kept as it is (asked, not asked twice).
    assert!(m.settle(&wanted, mac(), &TIMING, st(T + 50)).is_empty());
    assert!(sent(&m.poll(st(T + 50), &TIMING).0).is_empty());
    // A new cause joins the outstanding request; a vanished one is forgotten.
    let wanted = [(Cause::LicenseChanged, true)].into();
    assert_eq!(
        m.settle(&wanted, mac(), &TIMING, st(T + 60)),
        [Cause::LicenseChanged]
    );
    assert_eq!(
        m.needs.keys().copied().collect::<Vec<_>>(),
        [Cause::LicenseChanged]
    );
    assert_eq!(m.waiting(st(T + 60), &TIMING), Waiting::Answer { id: 1 });
    // Back to the booted set: nothing is needed.
    m.settle(&BTreeMap::new(), mac(), &TIMING, st(T + 70));
    assert!(m.needs.is_empty());
    assert_eq!(m.waiting(st(T + 70), &TIMING), Waiting::Nothing);
}

#[test]
fn a_restored_machine_asks_again_what_was_outstanding_but_not_what_was_accepted() {
    let mut m = connected_idle_at(T);
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T + 40));
    m.poll(st(T + 40), &TIMING);
    let restored = RebootMachine::restored(m.needs.clone(), None);
    assert_eq!(restored.needs[&Cause::LicenseExpired].phase, Phase::Waiting);
    assert_eq!(restored.waiting(st(T + 41), &TIMING), Waiting::Connection);

    m.ok(1, st(T + 41));
    let restored = RebootMachine::restored(m.needs.clone(), None);
    assert_eq!(
        restored.waiting(st(T + 42), &TIMING),
        Waiting::StillRunningAfterOk {
            until: mono(T + 41 + 600)
        }
    );

    // The need gone (a renewal), the accepted reboot is still kept, and taken back: a
    // need that comes after the restart joins it, asked only at the re-ask.
    m.settle(&BTreeMap::new(), mac(), &TIMING, st(T + 50));
    assert!(m.needs.is_empty());
    let mut restored = RebootMachine::restored(m.needs.clone(), m.accepted());
    restored.connection(true);
    restored.call_state(CallState::Idle, st(T + 60));
    restored.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T + 60));
    assert!(sent(&restored.poll(st(T + 100), &TIMING).0).is_empty());
    assert_eq!(
        sent(&restored.poll(st(T + 41 + 600), &TIMING).0),
        [(1, Cause::LicenseExpired)]
    );
}

/// Found by the property: the set went back to the booted one while REBOOT 1 was
/// unanswered, then changed again; the new need must join request 1, not send REBOOT 2.
#[test]
fn a_need_that_returns_while_a_request_is_unanswered_joins_it() {
    let mut m = connected_idle_at(T);
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T));
    assert_eq!(
        sent(&m.poll(st(T + 30), &TIMING).0),
        [(1, Cause::LicenseExpired)]
    );
    m.settle(&BTreeMap::new(), mac(), &TIMING, st(T + 31));
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T + 32));
    assert!(sent(&m.poll(st(T + 100), &TIMING).0).is_empty());
    assert_eq!(m.waiting(st(T + 100), &TIMING), Waiting::Answer { id: 1 });
    // Its OK covers the new need; nothing more until `reask`.
    m.ok(1, st(T + 101));
    assert!(sent(&m.poll(st(T + 600), &TIMING).0).is_empty());
    assert_eq!(
        sent(&m.poll(st(T + 701), &TIMING).0),
        [(2, Cause::LicenseExpired)]
    );
}

fn any_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Waiting),
        (any::<u64>(), any::<i64>()).prop_map(|(id, at)| Phase::Asked { id, at }),
        (any::<i64>(), any::<u64>()).prop_map(|(at, m)| Phase::Accepted {
            at,
            at_mono: Mono::from_nanos(m)
        }),
    ]
}

proptest! {
    /// Needs read back from `meta.json` can hold any numbers (a damaged or hand-edited
    /// file that still parses): restoring them and running the machine at any instant
    /// never panics, and a REBOOT still waits for a connection and an idle phone.
    #[test]
    fn restored_needs_with_any_numbers_never_panic(
        needs in prop::collection::btree_map(0..3usize, (any::<i64>(), any::<i64>(), any::<u64>(), any_phase()), 0..4),
        times in prop::collection::vec(any::<i64>(), 1..6),
        grace in any::<u64>(),
        reask in any::<u64>(),
        window in any::<u64>(),
    ) {
        let timing = RebootTiming { idle_grace: grace, reask, stagger_window: window, windows: None };
        let needs = needs
            .into_iter()
            .map(|(c, (since, not_before, ready, phase))| (Cause::ALL[c], Need { since, not_before, ready_at: Mono::from_nanos(ready), phase, window_deadline: None }))
            .collect();
        let mut m = RebootMachine::restored(needs, None);
        prop_assert!(sent(&m.poll(st(times[0]), &timing).0).is_empty(), "asked while disconnected");
        m.connection(true);
        for &t in &times {
            m.call_state(CallState::Idle, st(t));
            let _ = m.poll(st(t), &timing);
            let _ = m.waiting(st(t), &timing);
            m.need(Cause::LicenseChanged, true, mac(), &timing, st(t));
        }
    }
}

/// Found by the simulator (seed 1058): after OK, a reload (or a dropped link) left the
/// machine without a connection past the re-ask, and `poll_wake` kept naming that past
/// instant: the loop woke at once, again and again, until the supervisor was back. A
/// wait that is over wakes nobody: what it waits for now (the link, an idle phone)
/// comes as an event, and the next `poll` acts.
#[test]
fn a_wait_that_is_over_is_no_wake() {
    let mut m = connected_idle_at(T);
    m.need(Cause::LicenseExpired, false, mac(), &TIMING, st(T));
    let (a, _) = m.poll(st(T + 30), &TIMING);
    let (id, _) = sent(&a)[0];
    m.ok(id, st(T + 31));
    assert_eq!(m.poll_wake(st(T + 40), &TIMING), Some(mono(T + 31 + 600)));
    // The link drops before the re-ask; no poll can act until it is back.
    m.connection(false);
    for t in [T + 631, T + 700, T + 10_000] {
        assert_eq!(m.poll_wake(st(t), &TIMING), None, "at {t}");
    }
    // Back: the next poll asks again.
    m.connection(true);
    m.call_state(CallState::Idle, st(T + 10_000));
    let (a, _) = m.poll(st(T + 10_030), &TIMING);
    assert_eq!(sent(&a).len(), 1);
}

/// Reboot windows (issue 29): `daily 01:00-04:00` in UTC unless said, the two default
/// causes waiting for them, a deadline of `deadline` seconds.
fn windowed(windows: &[&str], tz: &str, deadline: u64) -> RebootTiming {
    use crate::engine::window::{tz::Tz, Schedule, Window};
    RebootTiming {
        windows: Some((
            Arc::new(Schedule {
                windows: windows.iter().map(|w| Window::parse(w).unwrap()).collect(),
                tz: Tz::parse(tz).unwrap(),
                causes: [Cause::FeatureLicensed, Cause::LicenseChanged]
                    .into_iter()
                    .collect(),
                deadline,
            }),
            mac(),
        )),
        ..TIMING
    }
}

/// Midnight UTC of a day: `T` falls on 2026-09-21 (a Monday) 12:53:20 UTC.
const DAY0: UnixTime = T - T.rem_euclid(86_400);

/// This phone's point in the window of `opens` lasting `length` seconds.
fn point(opens: UnixTime, length: u64) -> UnixTime {
    opens + stagger_delay(mac(), length) as i64
}

#[test]
fn a_new_feature_waits_for_the_window_and_this_phones_point_in_it() {
    let timing = windowed(&["daily 01:00-04:00"], "UTC0", 7 * 86_400);
    let mut m = connected_idle_at(T);
    m.need(Cause::FeatureLicensed, false, mac(), &timing, st(T + 5));
    // Idle for hours: nothing before the window.
    let (a, _) = m.poll(st(T + 3_600), &timing);
    assert!(sent(&a).is_empty());
    let opens = DAY0 + 86_400 + 3_600;
    let ready = point(opens, 3 * 3_600);
    assert!(ready > opens && ready < opens + 3 * 3_600);
    match m.waiting(st(T + 3_600), &timing) {
        Waiting::Window {
            ready: r,
            occurrence,
            ..
        } => {
            assert_eq!(r, ready);
            assert_eq!(
                (occurrence.opens, occurrence.closes),
                (opens, opens + 3 * 3_600)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.poll_wake_wall(st(T + 3_600), &timing), Some(ready));
    // The deadline is a wake on the monotonic clock.
    assert_eq!(
        m.poll_wake(st(T + 3_600), &timing),
        Some(mono(T + 5 + 7 * 86_400))
    );
    assert!(
        sent(&m.poll(st(opens), &timing).0).is_empty(),
        "opened, not its point yet"
    );
    assert!(sent(&m.poll(st(ready - 1), &timing).0).is_empty());
    assert_eq!(
        sent(&m.poll(st(ready), &timing).0),
        [(1, Cause::FeatureLicensed)]
    );
}

#[test]
fn an_ended_license_does_not_wait_and_takes_the_waiting_ones_with_it() {
    let timing = windowed(&["daily 01:00-04:00"], "UTC0", 7 * 86_400);
    let mut m = connected_idle_at(T);
    m.need(Cause::FeatureLicensed, false, mac(), &timing, st(T));
    assert!(sent(&m.poll(st(T + 60), &timing).0).is_empty());
    m.need(Cause::LicenseExpired, false, mac(), &timing, st(T + 60));
    // Not a window cause: asked when idle, as today; one request serves both.
    assert_eq!(
        sent(&m.poll(st(T + 61), &timing).0),
        [(1, Cause::FeatureLicensed)]
    );
    assert!(m
        .needs
        .values()
        .all(|n| matches!(n.phase, Phase::Asked { .. })));
}

#[test]
fn a_call_through_the_whole_window_waits_for_the_next_then_the_deadline() {
    let timing = windowed(&["daily 01:00-04:00"], "UTC0", 2 * 86_400);
    let mut m = connected_idle_at(T);
    m.need(Cause::LicenseChanged, true, mac(), &timing, st(T));
    let opens = DAY0 + 86_400 + 3_600;
    // In a call from before the window to after it.
    m.call_state(CallState::Active, st(opens - 60));
    for t in [opens, point(opens, 10_800), opens + 10_799] {
        assert!(
            sent(&m.poll(st(t), &timing).0).is_empty(),
            "in a call at {t}"
        );
    }
    // Idle after it closed: the next night's window.
    m.call_state(CallState::Idle, st(opens + 10_800));
    assert!(sent(&m.poll(st(opens + 10_800 + 60), &timing).0).is_empty());
    let next = opens + 86_400;
    assert!(matches!(
        m.waiting(st(opens + 11_000), &timing),
        Waiting::Window { occurrence, .. } if occurrence.opens == next
    ));
    // In a call through that one too...
    m.call_state(CallState::Active, st(next - 60));
    assert!(sent(&m.poll(st(next + 10_799), &timing).0).is_empty());
    // ...and until past the deadline (2 days after the need): then the next idle
    // moment, outside any window.
    let deadline = T + 2 * 86_400;
    assert!(deadline > next + 10_800 && deadline < next + 86_400);
    m.call_state(CallState::Idle, st(deadline + 100));
    assert!(
        sent(&m.poll(st(deadline + 129), &timing).0).is_empty(),
        "the idle grace"
    );
    assert_eq!(
        sent(&m.poll(st(deadline + 130), &timing).0),
        [(1, Cause::LicenseChanged)]
    );
}

#[test]
fn a_clock_step_into_the_window_asks_and_one_out_of_it_waits() {
    let timing = windowed(&["daily 01:00-04:00"], "UTC0", 7 * 86_400);
    let mut m = connected_idle_at(T);
    m.need(Cause::FeatureLicensed, false, mac(), &timing, st(T));
    let opens = DAY0 + 86_400 + 3_600;
    let ready = point(opens, 10_800);
    // The wall clock steps forward into the window past this phone's point; the
    // monotonic one goes on a minute.
    let stepped = Stamp {
        wall: ready + 5,
        mono: mono(T + 60),
    };
    // A step out of any window instead (to 23:00 the evening before): nothing.
    let back = Stamp {
        wall: opens - 7_200,
        mono: mono(T + 61),
    };
    let mut elsewhere = m.clone();
    assert!(sent(&elsewhere.poll(back, &timing).0).is_empty());
    assert!(matches!(
        elsewhere.waiting(back, &timing),
        Waiting::Window { .. }
    ));
    assert_eq!(
        sent(&m.poll(stepped, &timing).0),
        [(1, Cause::FeatureLicensed)]
    );
    // And out of it again after the REBOOT was refused as BUSY: it waits once more.
    m.busy(1, stepped);
    m.call_state(CallState::Idle, stepped);
    let out = Stamp {
        wall: opens + 10_800 + 60,
        mono: mono(T + 200),
    };
    assert!(sent(&m.poll(out, &timing).0).is_empty());
    assert!(matches!(m.waiting(out, &timing), Waiting::Window { .. }));
}

#[test]
fn a_site_fleet_is_spread_over_the_window_not_the_hour() {
    // 3,000 MACs over a 3-hour window: each third gets about a third of them.
    let (opens, length) = (DAY0 + 3_600, 10_800u64);
    let mut thirds = [0usize; 3];
    for i in 0..3_000u64 {
        let mac = Serial::parse(&format!("0004f2{:06x}", i)).unwrap();
        let at = stagger_delay(mac, length);
        assert!(at < length);
        thirds[(at / 3_600) as usize] += 1;
        let _ = opens;
    }
    for n in thirds {
        assert!((850..=1150).contains(&n), "{thirds:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The property of the rules with windows: every reboot waiting for a window (both
    /// default causes; the deadline far off), whatever the calls, answers, drops and
    /// time, is asked only inside a window occurrence at or after this phone's point in
    /// it, and still never during a call or before the idle grace.
    #[test]
    fn with_windows_a_reboot_is_asked_only_in_a_window_and_only_when_idle(
        events in prop::collection::vec(event(), 1..80),
        start in 0..86_400i64,
    ) {
        let timing = windowed(&["Mon-Fri 01:00-03:00", "Sat,Sun 22:00-02:00"], "CET-1CEST,M3.5.0,M10.5.0/3", 365 * 86_400);
        let causes = [Cause::FeatureLicensed, Cause::LicenseChanged];
        let (schedule, _) = timing.windows.clone().unwrap();
        let mut m = RebootMachine::default();
        let mut now = T + start;
        let mut connected = false;
        let mut call: Option<(bool, UnixTime)> = None;
        let mut outstanding: Option<u64> = None;
        for e in events {
            match e {
                Event::Call(active) => {
                    if connected && call.map(|(a, _)| a) != Some(active) {
                        call = Some((active, now));
                    }
                    m.call_state(if active { CallState::Active } else { CallState::Idle }, st(now));
                }
                Event::Need(c, site) | Event::SetChange(c, site) => {
                    m.need(causes[(c % 2) as usize], site, mac(), &timing, st(now))
                }
                Event::Ok => if let Some(id) = outstanding.take() { m.ok(id, st(now)); },
                Event::Busy => if let Some(id) = outstanding.take() { m.busy(id, st(now)); call = Some((true, now)); },
                Event::Drop => { m.connection(false); connected = false; outstanding = None; call = None; }
                Event::Reconnect => if !connected { m.connection(true); connected = true; }
                Event::Wait(s) => now += i64::from(s) * 20,
            }
            let (actions, _) = m.poll(st(now), &timing);
            if let Some(w) = m.poll_wake_wall(st(now), &timing) { prop_assert!(w > now); }
            for (id, _) in sent(&actions) {
                let o = schedule.current_or_next(now).unwrap();
                prop_assert!(o.opens <= now && now < o.closes, "REBOOT outside a window at {now}");
                let spread = stagger_delay(mac(), (o.closes - o.opens) as u64) as i64;
                prop_assert!(now >= o.opens + spread, "REBOOT before this phone's point");
                prop_assert!(connected);
                let (active, since) = call.expect("a REBOOT before any CALL-STATE");
                prop_assert!(!active, "REBOOT during a call");
                prop_assert!(now >= since + TIMING.idle_grace as i64);
                outstanding = Some(id);
            }
        }
    }
}
