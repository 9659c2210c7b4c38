//! Where each run's fault lands, from its seed alone (so `--replay` repeats it): recovery.md
//! 5.1's two-level trigger, after N exits of the partitions then K instructions of hypervisor
//! code, and the command line that carries it to the hypervisor.

use super::model::Model;
use crate::RecoveryMode;
use crate::inject::mix;

/// K is drawn from `0..MAX_STEPS`, as in the ReHype/NiLiHype campaigns.
pub const MAX_STEPS: u64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    pub exits: u64,
    pub steps: u64,
}

/// The exits N is drawn from: 10 % to 80 % of the golden run's, so the fault lands while the
/// workload runs rather than at its edges.
pub fn exit_window(golden_exits: u64) -> (u64, u64) {
    let lo = (golden_exits / 10).max(1);
    (lo, (golden_exits * 8 / 10).max(lo))
}

impl Trigger {
    pub fn for_seed(seed: u64, golden_exits: u64) -> Trigger {
        let (lo, hi) = exit_window(golden_exits);
        let r = mix(seed);
        Trigger {
            exits: lo + r % (hi - lo + 1),
            steps: mix(r) % MAX_STEPS,
        }
    }
}

/// The boot options of a fault-free run.
pub fn golden_cmdline(mode: RecoveryMode) -> String {
    format!("recovery={}", mode.name())
}

/// The boot options of the run with `seed`.
pub fn cmdline(mode: RecoveryMode, model: Model, seed: u64, t: Trigger) -> String {
    format!(
        "{} inject=model:{},seed:{seed},exits:{},steps:{}",
        golden_cmdline(mode),
        model.name(),
        t.exits,
        t.steps
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_stay_in_their_windows_and_repeat_for_a_seed() {
        for seed in 0..1000 {
            let t = Trigger::for_seed(seed, 3000);
            assert!((300..=2400).contains(&t.exits), "{t:?}");
            assert!(t.steps < MAX_STEPS);
            assert_eq!(t, Trigger::for_seed(seed, 3000));
        }
        assert_eq!(
            Trigger::for_seed(5, 3).exits,
            1,
            "a tiny run still has a trigger"
        );
    }

    #[test]
    fn the_command_line_names_mode_model_seed_and_trigger() {
        let t = Trigger {
            exits: 900,
            steps: 17,
        };
        assert_eq!(
            cmdline(RecoveryMode::Microreset, Model::Code, 42, t),
            "recovery=microreset inject=model:code,seed:42,exits:900,steps:17"
        );
    }
}
