//! Many seeded faulty runs; every invariant must hold in each.
//!
//! `TANDEM_FT_SEEDS=N` runs N seeds instead of 10,000; `TANDEM_FT_SEED=N` reruns one seed alone.

use std::env;
use tandem_ft::sim::{Outcome, Scenario, run_seed};

const DEFAULT_SEEDS: u64 = 10_000;
/// The seeds are split over this many tests so the test harness runs them in parallel.
const SHARDS: u64 = 4;

fn seed_count() -> u64 {
    env::var("TANDEM_FT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

fn run_shard(shard: u64) -> Vec<Outcome> {
    if let Some(seed) = env::var("TANDEM_FT_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        if shard != 0 {
            return Vec::new();
        }
        println!("{:#?}", Scenario::from_seed(seed));
        return match run_seed(seed) {
            Ok(outcome) => {
                println!("seed {seed}: {outcome:#?}");
                vec![outcome]
            }
            Err(v) => panic!("seed {seed} failed: {v:?}"),
        };
    }
    let mut outcomes = Vec::new();
    let mut seed = shard;
    while seed < seed_count() {
        match run_seed(seed) {
            Ok(outcome) => outcomes.push(outcome),
            Err(v) => panic!(
                "seed {seed} failed: {v:?}\nrerun alone: TANDEM_FT_SEED={seed} cargo test -p tandem-ft --test simulation"
            ),
        }
        seed += SHARDS;
    }
    outcomes
}

fn check_coverage(outcomes: &[Outcome]) {
    if outcomes.len() < 500 {
        return;
    }
    // The runs must actually exercise failover, divergence and the cut, not just pass vacuously.
    let failovers = outcomes
        .iter()
        .filter(|o| o.failover.live_at.is_some())
        .count();
    let divergences = outcomes.iter().filter(|o| o.divergence_reported).count();
    let duplicates = outcomes.iter().filter(|o| o.duplicates > 0).count();
    let survived = outcomes.iter().filter(|o| o.survivor.is_some()).count();
    let settled = outcomes.iter().filter(|o| o.settled).count();
    let reprotected = outcomes.iter().filter(|o| o.reprotections > 0).count();
    let cycles = outcomes.iter().filter(|o| o.go_lives >= 2).count();
    // Re-protected pairs share the network with the pairs before them.
    let stale = outcomes
        .iter()
        .filter(|o| o.link.dropped_stale_epoch + o.backup_link.dropped_stale_epoch > 0)
        .count();
    let outputs: usize = outcomes.iter().map(|o| o.outputs_seen).sum();
    println!(
        "{} runs: {failovers} failovers, {divergences} divergences reported, {duplicates} with duplicates at the cut, {survived} with a survivor, {settled} settled by the drain, {reprotected} re-protected, {cycles} with a second failover, {stale} with datagrams of an earlier epoch dropped, {outputs} outputs",
        outcomes.len()
    );
    assert!(
        failovers * 10 > outcomes.len(),
        "too few failovers: {failovers}"
    );
    assert!(
        divergences * 50 > outcomes.len(),
        "too few divergences: {divergences}"
    );
    assert!(duplicates > 0, "no run duplicated an output at the cut");
    assert!(
        reprotected * 10 > outcomes.len(),
        "too few re-protections: {reprotected}"
    );
    assert!(
        cycles * 20 > outcomes.len(),
        "too few crash, go-live, re-protect, crash cycles: {cycles}"
    );
    assert!(
        stale * 20 > outcomes.len(),
        "too few runs where an earlier pair's datagrams reached a later one: {stale}"
    );
    assert!(
        survived * 100 > outcomes.len() * 95,
        "too few survivors: {survived}"
    );
    // Every one of the 10,000 seeds settles since the datagram link resends only the frames the
    // backup lacks (go-back-N, resending whole windows under loss and reordering, left 12 still
    // catching up on the guest's backlog when the drain ended); the margin is for such a run.
    assert!(
        settled * 1000 >= outcomes.len() * 998,
        "too few runs settled by the drain: {settled}"
    );
}

#[test]
fn seeds_shard_0() {
    check_coverage(&run_shard(0));
}

#[test]
fn seeds_shard_1() {
    check_coverage(&run_shard(1));
}

#[test]
fn seeds_shard_2() {
    check_coverage(&run_shard(2));
}

#[test]
fn seeds_shard_3() {
    check_coverage(&run_shard(3));
}

#[test]
fn a_seed_reruns_identically() {
    for seed in [3, 1_234, 99_999] {
        assert_eq!(
            run_seed(seed),
            run_seed(seed),
            "seed {seed} is not deterministic"
        );
    }
}
