//! Each invariant has a deliberate bug that breaks it; the simulator must catch every one.

use tandem_ft::mutant::Mutants;
use tandem_ft::sim::{Scenario, Violation, run};

/// Seeds tried per mutant before concluding the simulator is blind to it.
const BUDGET: u64 = 3_000;

/// The first seed whose run with `mutants` breaks an invariant the way `expected` says.
fn first_catch(mutants: Mutants, expected: fn(&Violation) -> bool) -> Option<(u64, Violation)> {
    (0..BUDGET).find_map(|seed| {
        let scenario = Scenario {
            mutants,
            ..Scenario::from_seed(seed)
        };
        match run(&scenario) {
            Err(v) if expected(&v) => Some((seed, v)),
            _ => None,
        }
    })
}

#[test]
fn releasing_output_before_the_ack_loses_output() {
    let caught = first_catch(
        Mutants {
            release_before_ack: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::LostOutput { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "release before ack went unnoticed");
}

#[test]
fn skipping_arbitration_makes_two_live_primaries() {
    let caught = first_catch(
        Mutants {
            skip_arbitration: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::TwoLivePrimaries { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "split brain went unnoticed");
}

#[test]
fn ignoring_output_done_duplicates_outside_the_cut() {
    let caught = first_catch(
        Mutants {
            ignore_output_done: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::DuplicateOutsideCut { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "needless duplicates went unnoticed");
}

#[test]
fn skipping_divergence_checks_lets_divergence_through() {
    let caught = first_catch(
        Mutants {
            skip_divergence_check: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::UndetectedDivergence { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "undetected divergence went unnoticed");
}

#[test]
fn running_past_a_precise_horizon_reports_a_false_divergence() {
    let caught = first_catch(
        Mutants {
            ignore_precise_horizon: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::FalseDivergence { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "a false divergence went unnoticed");
}

#[test]
fn releasing_after_a_stall_without_asking_the_arbiter_prints_after_the_takeover() {
    let caught = first_catch(
        Mutants {
            skip_fence: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::OutputAfterTakeover { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "output after the takeover went unnoticed");
}

#[test]
fn skipping_a_pending_output_at_go_live_leaves_a_gap() {
    let caught = first_catch(
        Mutants {
            skip_first_pending: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::OutputGap { .. }),
    );
    println!("caught: {caught:?}");
    assert!(
        caught.is_some(),
        "a gap in the output stream went unnoticed"
    );
}

#[test]
fn performing_go_live_outputs_late_breaks_the_order() {
    let caught = first_catch(
        Mutants {
            late_go_live_outputs: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::OutputOutOfOrder { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "outputs out of order went unnoticed");
}

#[test]
fn forgetting_the_last_pending_output_at_go_live_loses_it() {
    let caught = first_catch(
        Mutants {
            drop_last_pending: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::OutputNeverPerformed { .. }),
    );
    println!("caught: {caught:?}");
    assert!(caught.is_some(), "an output never performed went unnoticed");
}

#[test]
fn a_backup_that_never_goes_live_misses_the_takeover_deadline() {
    let caught = first_catch(
        Mutants {
            never_go_live: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::SlowTakeover { .. }),
    );
    println!("caught: {caught:?}");
    assert!(
        caught.is_some(),
        "a copy that never took over went unnoticed"
    );
}

#[test]
fn a_backup_cloned_from_a_stale_copy_reports_a_divergence_never_injected() {
    let caught = first_catch(
        Mutants {
            stale_clone: true,
            ..Mutants::default()
        },
        |v| matches!(v, Violation::FalseDivergence { .. }),
    );
    println!("caught: {caught:?}");
    assert!(
        caught.is_some(),
        "a stale re-protection copy went unnoticed"
    );
}
