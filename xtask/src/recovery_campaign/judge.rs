//! Judging one run: its class (recovery.md 5.5) from what its log says about the fault and the
//! recovery and from each partition's console stream against the golden run's, its latencies,
//! and everything wrong with it, as a line of `runs.jsonl`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Planned;
use super::golden::Golden;
use super::log::{self, Events};
use super::outcome::Outcome;
use super::stream::Stream;
use crate::emulator::Run;

/// One run, judged: a line of `runs.jsonl`.
#[derive(Serialize, Debug)]
pub struct RunReport {
    /// The run's replay id: `--replay SEED`.
    pub seed: u64,
    pub model: &'static str,
    pub mode: &'static str,
    pub cmdline: String,
    pub outcome: Outcome,
    pub sub_cause: Option<String>,
    /// The hypervisor said it understood the inject option (`fault injection armed`).
    pub armed: bool,
    /// What the hypervisor says it injected, where.
    pub injection: Option<String>,
    /// The first detection's cause.
    pub detection: Option<String>,
    pub detections: u64,
    /// From the injection to the first detection, in virtual ns.
    pub detection_latency_ns: Option<u64>,
    pub recoveries: u64,
    /// The first recovery's duration, as the hypervisor measured it, and its steps.
    pub recovery_ns: Option<u64>,
    pub recovery_steps_ns: BTreeMap<String, u64>,
    pub escalation: Option<String>,
    pub partitions: Vec<Stream>,
    pub wall_s: f64,
    pub problems: Vec<String>,
}

impl RunReport {
    /// The key its failure is counted under in the report's failure causes.
    pub fn cause(&self) -> String {
        match &self.sub_cause {
            Some(s) => format!("{}: {s}", self.outcome.name()),
            None => self.outcome.name().to_string(),
        }
    }

    fn empty(plan: &Planned, outcome: Outcome) -> RunReport {
        RunReport {
            seed: plan.seed,
            model: plan.model.name(),
            mode: plan.mode.name(),
            cmdline: plan.cmdline.clone(),
            outcome,
            sub_cause: None,
            armed: false,
            injection: None,
            detection: None,
            detections: 0,
            detection_latency_ns: None,
            recoveries: 0,
            recovery_ns: None,
            recovery_steps_ns: BTreeMap::new(),
            escalation: None,
            partitions: Vec::new(),
            wall_s: 0.0,
            problems: Vec::new(),
        }
    }
}

/// The class and sub-cause of a run from its events and streams.
fn classify(run: &Run, ev: &Events, streams: &[Stream]) -> (Outcome, Option<String>) {
    let affected: Vec<&Stream> = streams.iter().filter(|s| s.affected()).collect();
    let names = |s: &[&Stream]| {
        s.iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join("+")
    };
    if ev.injected.is_none() {
        return (Outcome::NotActivated, None);
    }
    if ev.detected.is_empty() {
        let crashed: Vec<&Stream> = streams.iter().filter(|s| s.crashed()).collect();
        return if run.timed_out {
            (Outcome::UndetectedHang, Some("host_timeout".into()))
        } else if !crashed.is_empty() {
            (
                Outcome::UndetectedCrash,
                Some(format!("{} stopped", names(&crashed))),
            )
        } else if !run.success {
            (Outcome::UndetectedCrash, Some("hypervisor_stopped".into()))
        } else if !affected.is_empty() {
            (
                Outcome::UndetectedSdc,
                Some(format!("{} differs", names(&affected))),
            )
        } else {
            (Outcome::NotManifested, None)
        };
    }
    let failure = |cause: &str| (Outcome::SystemFailure, Some(cause.to_string()));
    if ev.escalated.is_some() {
        return failure("escalated");
    }
    if ev.resumed.is_empty() {
        return failure("never_started");
    }
    if run.timed_out {
        return failure("hang_after_resume");
    }
    match affected[..] {
        [] if run.success => (Outcome::RecoveredNovmf, None),
        [lost] if run.success => (
            Outcome::RecoveredOneLost,
            Some(format!("lost {}", lost.name)),
        ),
        [] | [_] => failure("abnormal_end"),
        _ => failure("both_lost"),
    }
}

/// Everything wrong with the run, for a person reading the report.
fn problems(run: &Run, ev: &Events, streams: &[Stream]) -> Vec<String> {
    let mut p = Vec::new();
    if !ev.armed {
        p.push("the hypervisor did not arm the injection (no `fault injection armed` line)".into());
    }
    if ev.injected.is_none() && !ev.detected.is_empty() {
        p.push("a detection without an injection".into());
    }
    if let (Some(i), Some(d)) = (&ev.injected, ev.detected.first())
        && d.ns < i.ns
    {
        p.push(format!(
            "detected at {} ns, before the injection at {} ns",
            d.ns, i.ns
        ));
    }
    if !ev.detected.is_empty() && ev.resumed.is_empty() {
        p.push("the recovery never resumed the partitions".into());
    }
    if let Some(why) = &ev.escalated {
        p.push(format!("escalated to a full reset: {why}"));
    }
    p.extend(streams.iter().flat_map(Stream::problems));
    if run.timed_out {
        p.push(format!(
            "the host's timeout ended the run after {:.0} s",
            run.elapsed.as_secs_f64()
        ));
    } else if !run.success {
        p.push(format!(
            "the run did not end normally (status {:?}{})",
            run.status,
            if run.failed_cleanly {
                ", the hypervisor's failure signal"
            } else {
                ""
            }
        ));
    }
    p
}

/// Judges `run`, booted as `plan` said, against `golden`.
pub fn judge(plan: &Planned, run: &Run, golden: &Golden) -> RunReport {
    let ev = log::events(&run.log);
    let streams: Vec<Stream> = golden
        .partitions
        .iter()
        .map(|(name, lines)| Stream::of(name, lines, run, &ev))
        .collect();
    let (outcome, sub_cause) = classify(run, &ev, &streams);
    let first_detection = ev.detected.first();
    let first_recovery = ev.resumed.first();
    RunReport {
        sub_cause,
        armed: ev.armed,
        injection: ev.injected.as_ref().map(|i| i.text.clone()),
        detection: first_detection.map(|d| d.cause.clone()),
        detections: ev.detected.len() as u64,
        detection_latency_ns: ev
            .injected
            .as_ref()
            .zip(first_detection)
            .and_then(|(i, d)| d.ns.checked_sub(i.ns)),
        recoveries: ev.resumed.len() as u64,
        recovery_ns: first_recovery.map(|r| r.ns),
        recovery_steps_ns: first_recovery.map(|r| r.steps.clone()).unwrap_or_default(),
        escalation: ev.escalated.clone(),
        wall_s: run.elapsed.as_secs_f64(),
        problems: problems(run, &ev, &streams),
        partitions: streams,
        ..RunReport::empty(plan, outcome)
    }
}

/// A run the runner could not boot or read.
pub fn runner_error(plan: &Planned, error: &anyhow::Error) -> RunReport {
    RunReport {
        problems: vec![format!("{error:#}")],
        ..RunReport::empty(plan, Outcome::RunnerError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery_campaign::fixtures::{
        ALL, ARMED, DETECTED, INJECTED, RESUMED, golden, run, timed_out,
    };

    fn plan() -> Planned {
        crate::recovery_campaign::fixtures::plan(9)
    }

    fn outcome(r: &RunReport) -> (Outcome, Option<&str>) {
        (r.outcome, r.sub_cause.as_deref())
    }

    #[test]
    fn a_run_without_an_injection_is_not_activated_and_an_unarmed_one_says_so() {
        let r = judge(&plan(), &run(ALL, ALL, &[ARMED]), &golden());
        assert_eq!(outcome(&r), (Outcome::NotActivated, None));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let unarmed = judge(&plan(), &run(ALL, ALL, &[]), &golden());
        assert_eq!(unarmed.outcome, Outcome::NotActivated);
        assert!(!unarmed.armed && unarmed.problems[0].contains("did not arm"));
    }

    #[test]
    fn an_injection_without_effect_is_not_manifested() {
        let r = judge(&plan(), &run(ALL, ALL, &[ARMED, INJECTED]), &golden());
        assert_eq!(outcome(&r), (Outcome::NotManifested, None));
        assert_eq!(
            r.injection.as_deref(),
            Some("bit 3 of RBX flipped on CPU 0 at RIP 0x1234")
        );
    }

    #[test]
    fn a_clean_recovery_is_novmf_with_its_latencies_and_steps() {
        let r = judge(
            &plan(),
            &run(ALL, ALL, &[ARMED, INJECTED, DETECTED, RESUMED]),
            &golden(),
        );
        assert_eq!(outcome(&r), (Outcome::RecoveredNovmf, None));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.detection.as_deref(), Some("exception"));
        assert_eq!(
            (r.detection_latency_ns, r.recovery_ns),
            (Some(500), Some(4000))
        );
        assert_eq!(r.recovery_steps_ns["image"], 3000);
        assert!(r.partitions.iter().all(|s| s.identical && s.in_order));
    }

    #[test]
    fn a_recovery_that_repeats_one_partitions_line_loses_that_partition() {
        let r = judge(
            &plan(),
            &run(
                &[1, 2, 3, 3, 4, 5],
                ALL,
                &[ARMED, INJECTED, DETECTED, RESUMED],
            ),
            &golden(),
        );
        assert_eq!(outcome(&r), (Outcome::RecoveredOneLost, Some("lost uart")));
        let uart = &r.partitions[0];
        assert_eq!((uart.repeated, uart.missing, uart.in_order), (1, 0, false));
        let audited = judge(
            &plan(),
            &run(
                ALL,
                ALL,
                &[
                    ARMED,
                    INJECTED,
                    DETECTED,
                    RESUMED,
                    "WARN  recovery audit: partition calls made no progress in 10 ms",
                ],
            ),
            &golden(),
        );
        assert_eq!(
            outcome(&audited),
            (Outcome::RecoveredOneLost, Some("lost calls"))
        );
    }

    #[test]
    fn failed_recoveries_are_system_failures_with_their_sub_causes() {
        let escalated = run(
            ALL,
            ALL,
            &[
                ARMED,
                INJECTED,
                DETECTED,
                "ERROR recovery: escalating to a full reset: ledger CRC mismatch",
            ],
        );
        let never = run(ALL, &[1, 2], &[ARMED, INJECTED, DETECTED]);
        let hang = timed_out(run(&[1, 2], ALL, &[ARMED, INJECTED, DETECTED, RESUMED]));
        let both = run(&[1, 2], &[1, 2, 4], &[ARMED, INJECTED, DETECTED, RESUMED]);
        for (r, cause) in [
            (escalated, "escalated"),
            (never, "never_started"),
            (hang, "hang_after_resume"),
            (both, "both_lost"),
        ] {
            let r = judge(&plan(), &r, &golden());
            assert_eq!(outcome(&r), (Outcome::SystemFailure, Some(cause)));
            assert!(r.outcome.detected() && r.outcome.failed());
        }
    }

    #[test]
    fn undetected_faults_are_sdc_hang_or_crash() {
        let sdc = judge(
            &plan(),
            &run(ALL, &[1, 2, 3, 4, 6], &[ARMED, INJECTED]),
            &golden(),
        );
        assert_eq!(
            outcome(&sdc),
            (Outcome::UndetectedSdc, Some("calls differs"))
        );
        assert_eq!(
            (sdc.partitions[1].missing, sdc.partitions[1].changed),
            (1, 1)
        );
        let hang = judge(
            &plan(),
            &timed_out(run(ALL, &[1], &[ARMED, INJECTED])),
            &golden(),
        );
        assert_eq!(
            outcome(&hang),
            (Outcome::UndetectedHang, Some("host_timeout"))
        );
        let crash = judge(
            &plan(),
            &run(
                &[1, 2],
                ALL,
                &[
                    ARMED,
                    INJECTED,
                    "ERROR partition uart stopped: exception 13 raises itself again on every delivery",
                ],
            ),
            &golden(),
        );
        assert_eq!(
            outcome(&crash),
            (Outcome::UndetectedCrash, Some("uart stopped"))
        );
        assert!(crash.problems.iter().any(|p| p.contains("exception 13")));
    }

    #[test]
    fn a_runner_error_is_no_measurement() {
        let r = runner_error(&plan(), &anyhow::anyhow!("bochs not found"));
        assert_eq!(r.outcome, Outcome::RunnerError);
        assert!(!r.outcome.detected() && r.outcome.failed());
        assert_eq!(r.problems, ["bochs not found"]);
    }
}
