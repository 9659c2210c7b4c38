//! When a planned fault fires (`inject=model:M,...,exits:N[,cpu:C]`, `tandem_recovery::inject`):
//! at CPU C's Nth pass through its exit loop, or without a CPU at the machine's Nth pass over
//! all CPUs (the campaigns' trigger, which lands where the exits are). Fired once; the backend
//! does the faulting.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tandem_recovery::inject::Plan;

static PLAN: spin::Once<Option<Plan>> = spin::Once::new();
static FIRED: AtomicBool = AtomicBool::new(false);
static BEATS: AtomicU64 = AtomicU64::new(0);

/// Reads the plan from the boot command line; logs it when one is armed.
pub fn plan_from(cmdline: &str) {
    PLAN.call_once(|| match Plan::from_cmdline(cmdline) {
        Some(Ok(plan)) => {
            defmt::info!(
                "fault injection armed: model {=str} seed {=u64} after {=u64} exits then {=u64} instructions",
                plan.model.name(),
                plan.seed,
                plan.exits,
                plan.steps
            );
            Some(plan)
        }
        Some(Err(_)) => {
            defmt::warn!("the boot argument inject= is malformed; nothing is injected");
            None
        }
        None => None,
    });
}

/// The armed plan, if any.
pub fn plan() -> Option<&'static Plan> {
    PLAN.get().and_then(Option::as_ref)
}

/// The plan, if CPU `cpu`'s `beats`th pass is where it fires (once).
pub fn due(cpu: usize, beats: u64) -> Option<&'static Plan> {
    let plan = plan()?;
    let n = plan.exits.max(1);
    let now = match plan.cpu {
        Some(c) => usize::from(c) == cpu && beats == n,
        None => BEATS.fetch_add(1, Ordering::Relaxed) + 1 == n,
    };
    (now && !FIRED.swap(true, Ordering::AcqRel)).then_some(plan)
}

/// Logs that `plan`'s stepped fault is armed on CPU `cpu` at `now_ns`.
pub fn report_armed(plan: &Plan, cpu: usize, now_ns: u64) {
    defmt::warn!(
        "injection: {=str} fault armed on CPU {=usize} in {=u64} instructions ({=u64} ns)",
        plan.model.name(),
        cpu,
        plan.steps,
        now_ns
    );
}
