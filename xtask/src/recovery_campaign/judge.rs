//! Classifying one run (recovery.md 5.5) from what its log says about the fault and the
//! recovery, and from each partition's console stream compared with the golden run's.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Planned;
use super::golden::{Golden, lines_of};
use super::log::{self, CLEAN_STOP, Events};
use crate::emulator::Run;
use crate::scenario;

/// The prefix of the workload's numbered lines.
const NUMBERED: &str = "count";

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

/// One partition's console stream against the golden run's.
#[derive(Serialize, Debug)]
pub struct Stream {
    pub name: String,
    pub lines: u64,
    pub golden_lines: u64,
    /// Golden lines the stream lacks (its gaps).
    pub missing: u64,
    /// Lines the stream had already printed.
    pub repeated: u64,
    /// Lines the golden run never printed.
    pub changed: u64,
    /// The numbered lines count 1, 2, 3... with no gap and no step back.
    pub in_order: bool,
    pub identical: bool,
    /// Why the partition stopped (`shutdown with code 0` when it finished), if it did.
    pub stop: Option<String>,
    /// The audit after a recovery found it made no progress.
    pub no_progress: bool,
}

impl Stream {
    fn of(name: &str, golden: &[String], run: &Run, ev: &Events) -> Stream {
        let lines = lines_of(&run.console, name);
        let count = |n: usize| n as u64;
        Stream {
            name: name.to_string(),
            lines: count(lines.len()),
            golden_lines: count(golden.len()),
            missing: count(golden.iter().filter(|g| !lines.contains(g)).count()),
            repeated: count(
                lines
                    .iter()
                    .enumerate()
                    .filter(|(i, l)| lines[..*i].contains(l))
                    .count(),
            ),
            changed: count(lines.iter().filter(|l| !golden.contains(l)).count()),
            in_order: scenario::numbered(&run.console, name, NUMBERED, 0),
            identical: lines == golden,
            stop: ev.stopped.get(name).cloned(),
            no_progress: ev.no_progress.iter().any(|n| n == name),
        }
    }

    /// Stopped, but not by finishing.
    fn crashed(&self) -> bool {
        self.stop.as_deref().is_some_and(|s| s != CLEAN_STOP)
    }

    /// The partition is lost: its output is not the golden one, or it did not finish, or it
    /// stopped making progress.
    fn affected(&self) -> bool {
        !self.identical || self.stop.as_deref() != Some(CLEAN_STOP) || self.no_progress
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.identical {
            p.push(format!(
                "partition {}: {} lines of the golden {}, {} missing, {} repeated, {} changed{}",
                self.name,
                self.lines,
                self.golden_lines,
                self.missing,
                self.repeated,
                self.changed,
                if self.in_order {
                    ""
                } else {
                    ", the count has a gap or steps back"
                }
            ));
        }
        match &self.stop {
            None => p.push(format!("partition {} never stopped", self.name)),
            Some(s) if s != CLEAN_STOP => p.push(format!("partition {} stopped: {s}", self.name)),
            Some(_) => {}
        }
        if self.no_progress {
            p.push(format!(
                "partition {} made no progress after the recovery",
                self.name
            ));
        }
        p
    }
}

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
