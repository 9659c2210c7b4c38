//! The outcome classes of a run (recovery.md 5.5), and which of them count as detected,
//! recovered or failed.

use serde::Serialize;

#[derive(Serialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No `injected:` line: the run ended before the trigger point.
    NotActivated,
    /// Injected, never detected, and both streams are the golden ones.
    NotManifested,
    /// Detected and recovered, both streams the golden ones: no VM failure.
    RecoveredNovmf,
    /// Detected and recovered, one partition lost and the other intact (ReHype's "success").
    RecoveredOneLost,
    /// Detected, but recovery never resumed, escalated, hung, or lost both partitions.
    SystemFailure,
    /// Never detected, and a stream differs: silent data corruption.
    UndetectedSdc,
    /// Never detected, and only the host's timeout ended the run: a watchdog gap.
    UndetectedHang,
    /// Never detected, and a partition or the hypervisor stopped abnormally.
    UndetectedCrash,
    /// The runner could not boot or read the run: no measurement at all.
    RunnerError,
}

impl Outcome {
    /// recovery.md 5.5's classes, in report order (a runner error is none of them).
    pub const CLASSES: [Outcome; 8] = [
        Outcome::NotActivated,
        Outcome::NotManifested,
        Outcome::RecoveredNovmf,
        Outcome::RecoveredOneLost,
        Outcome::SystemFailure,
        Outcome::UndetectedSdc,
        Outcome::UndetectedHang,
        Outcome::UndetectedCrash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::NotActivated => "not_activated",
            Outcome::NotManifested => "not_manifested",
            Outcome::RecoveredNovmf => "recovered_novmf",
            Outcome::RecoveredOneLost => "recovered_one_lost",
            Outcome::SystemFailure => "system_failure",
            Outcome::UndetectedSdc => "undetected_sdc",
            Outcome::UndetectedHang => "undetected_hang",
            Outcome::UndetectedCrash => "undetected_crash",
            Outcome::RunnerError => "runner_error",
        }
    }

    /// The hypervisor detected its failure: the runs recovery rates are out of.
    pub fn detected(self) -> bool {
        matches!(
            self,
            Outcome::RecoveredNovmf | Outcome::RecoveredOneLost | Outcome::SystemFailure
        )
    }

    /// At most one partition affected, the hypervisor working (ReHype's "success").
    pub fn recovered(self) -> bool {
        matches!(self, Outcome::RecoveredNovmf | Outcome::RecoveredOneLost)
    }

    /// The fault got past recovery or the detectors, or the runner failed: the runs the
    /// console names with their replay command and the report lists as failure causes.
    pub fn failed(self) -> bool {
        matches!(
            self,
            Outcome::SystemFailure
                | Outcome::UndetectedSdc
                | Outcome::UndetectedHang
                | Outcome::UndetectedCrash
                | Outcome::RunnerError
        )
    }
}
