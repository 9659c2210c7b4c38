//! Deterministic simulation of a protected pair under faults (host only, `sim` feature).
//!
//! One seed fixes everything: workload, link, timing, precise or exit-boundary delivery, crashes
//! (at any time and at the protocol's critical points), network faults, partitions against the
//! arbiter, stalls, replay bugs, and re-protection after a failover followed by further crashes.
//! Each run ends with a drain (the client goes quiet, no new fault starts) and is then checked
//! against the invariants in [`oracle`]; a failing seed reruns alone with `TANDEM_FT_SEED=N`.

pub mod guest;
pub mod idle;
pub mod load;
pub mod net;
pub mod oracle;
pub mod rng;
pub mod scenario;
pub mod world;

pub use oracle::Violation;
pub use scenario::Scenario;
pub use world::{Outcome, run};

/// Run the faulty scenario for `seed`.
pub fn run_seed(seed: u64) -> Result<Outcome, Violation> {
    run(&Scenario::from_seed(seed))
}
