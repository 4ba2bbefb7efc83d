//! The whole daemon simulated: the real [`Core`] driven, from one seed, by a simulated
//! executor on virtual time, with a simulated supervisor (calls, OK/BUSY/silence,
//! restarts, lines it stops reading, garbage), provisioning server (licenses posted,
//! renewed, withdrawn, forged; stalls and failures), control clients (status,
//! check-sync, installs, malformed requests), clocks (steps, windback, 1970, 2038,
//! 2106), signals (SIGHUP, SIGTERM), phone reboots and agent restarts. The same seed
//! gives the same run of a build (the phones start 10 days after its build time, which
//! `SOURCE_DATE_EPOCH` sets); a failing seed prints its trace and the line that replays
//! it, `SOURCE_DATE_EPOCH=<build time> SIM_SEED=<seed> cargo test --lib sim::replay --
//! --ignored --nocapture`.
//!
//! The invariants are the rules ([`World::check_reboot`], [`World::check_pass`]):
//! no REBOOT while a call is on, nor before the idle grace after the call, nor on
//! supervisor words not yet read; none twice for a cause while one is unanswered, nor
//! before the re-ask after OK; every client answered once, at once unless it waits for
//! a cycle, and none left waiting once no cycle runs; SIGTERM obeyed before anything
//! else; no pass that calls for another at the same instant for ever (a busy loop);
//! the features file the rules' set for what the store holds whenever the agent is
//! settled; and no license the store held lost but by a drop the rules make.
//!
//! The executor here keeps the real one's order of a pass (`daemon::Daemon::settle`):
//! timeouts, the link read whole, REBOOTs only on a clear link, then the report and the
//! next wake. [`Plant`] makes it break that order on purpose, to show the simulator
//! finds it.

mod world;

pub(crate) use world::{run_seed, Plant, Stats};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Runs `count` seeds from `first` on every core (fewer when one fails: the others
/// stop); returns the first failure's report, the seeds run, the seconds it took and
/// what the runs did.
fn run_many(first: u64, count: u64, plant: Plant) -> (Option<String>, u64, f64, Stats) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = AtomicU64::new(first);
    let runs = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None::<(u64, String)>);
    let stats = std::sync::Mutex::new(Stats::default());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = Stats::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first.saturating_add(count) {
                        break;
                    }
                    runs.fetch_add(1, Ordering::Relaxed);
                    match run_seed(seed, plant, false) {
                        Ok(s) => mine.add(&s),
                        Err(report) => {
                            let mut slot = failure.lock().unwrap_or_else(|e| e.into_inner());
                            if slot.as_ref().is_none_or(|(s, _)| seed < *s) {
                                *slot = Some((seed, report));
                            }
                            // Stop the others: the earliest failing seed so far is kept.
                            next.store(u64::MAX / 2, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                stats.lock().unwrap_or_else(|e| e.into_inner()).add(&mine);
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let failure = failure.into_inner().unwrap_or_else(|e| e.into_inner());
    let stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    let runs = runs.into_inner();
    (failure.map(|(_, report)| report), runs, secs, stats)
}

fn seeds_from_env(default: u64) -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The test command's search: 100,000 seeds (or `SIM_SEEDS`), every invariant held.
#[test]
fn the_rules_hold_over_a_hundred_thousand_simulated_runs() {
    let count = seeds_from_env(100_000);
    let first = std::env::var("SIM_FIRST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (failure, runs, secs, stats) = run_many(first, count, Plant::None);
    // The seeds run, not those asked for: a failure stops the search early.
    println!(
        "simulated {runs} seeds from {first} in {secs:.1} s: {:.0} seeds/s; {stats:?}",
        runs as f64 / secs.max(1e-9)
    );
    if let Some(report) = failure {
        panic!("{report}");
    }
}

/// A REBOOT decided on supervisor words not yet read (the link not drained first) is
/// found within the test command's budget.
#[test]
fn a_reboot_sent_without_reading_the_supervisor_first_is_found() {
    let (failure, _, _, _) = run_many(0, 100_000, Plant::NoDrain);
    let report = failure.expect("the simulator finds the planted bug");
    assert!(report.contains("arrived and unread"), "{report}");
    println!("{}", report.lines().next().unwrap_or(""));
}

/// A REBOOT written while lines of the agent's wait unread on the link (it could then
/// reach the supervisor after a call began) is found within the test command's budget.
#[test]
fn a_reboot_sent_on_a_link_that_is_not_clear_is_found() {
    let (failure, _, _, _) = run_many(0, 100_000, Plant::IgnoreUnclear);
    let report = failure.expect("the simulator finds the planted bug");
    assert!(report.contains("queued behind unread lines"), "{report}");
    println!("{}", report.lines().next().unwrap_or(""));
}

/// Replays one seed with its trace (`SIM_SEED`).
#[test]
#[ignore = "a tool: SIM_SEED=<seed> cargo test --lib sim::replay -- --ignored --nocapture"]
fn replay() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    match run_seed(seed, Plant::None, true) {
        Ok(stats) => println!("seed {seed}: every invariant held; {stats:?}"),
        Err(report) => panic!("{report}"),
    }
}

/// The soak (`scripts/soak-sim.sh`): `SIM_SEEDS` seeds (10,000,000 there).
#[test]
#[ignore = "the soak: scripts/soak-sim.sh"]
fn soak() {
    the_rules_hold_over_a_hundred_thousand_simulated_runs();
}
