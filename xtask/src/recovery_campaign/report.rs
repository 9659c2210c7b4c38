//! `report.json`: the campaign's totals (recovery.md 5.6 and section 7): each outcome class,
//! the recovery rates out of detected failures with their 95 % Wilson intervals, detection
//! coverage, latencies, the golden runs' check, the setup (R1) and the top failure causes (R5).

use std::collections::BTreeMap;

use serde::Serialize;

use super::golden::GoldenRuns;
use super::judge::RunReport;
use super::outcome::Outcome;
use super::setup::Setup;
use super::stats::{rate, wilson};
use crate::inject::Percentiles;

/// Failure causes the report lists, and replay ids shown for each.
const TOP_CAUSES: usize = 10;
const REPLAYS_PER_CAUSE: usize = 5;

/// A rate out of `of` runs, with its interval.
#[derive(Serialize)]
pub struct Rate {
    pub count: u64,
    pub of: u64,
    pub rate: Option<f64>,
    pub ci95: Option<[f64; 2]>,
}

impl Rate {
    pub fn new(count: u64, of: u64) -> Rate {
        Rate {
            count,
            of,
            rate: rate(count, of),
            ci95: wilson(count, of),
        }
    }
}

/// One failure cause (R5): how many runs, and the seeds that replay a few of them.
#[derive(Serialize)]
pub struct Failure {
    pub cause: String,
    pub count: u64,
    pub replay: Vec<u64>,
}

#[derive(Serialize)]
pub struct Summary {
    pub campaign: &'static str,
    pub arch: &'static str,
    pub mode: &'static str,
    pub runs: u64,
    /// Runs the runner could not boot or read: in no class, and out of every rate.
    pub runner_errors: u64,
    /// Booted runs whose injection the hypervisor never armed: it measured nothing there.
    pub unarmed: u64,
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Runs whose failure the hypervisor detected: what the recovery rates are out of.
    pub detected: u64,
    /// Runs whose fault showed, detected or not: what detection coverage is out of.
    pub manifested: u64,
    /// At most one partition affected ("success"), out of the detected runs.
    pub recovered_rate: Option<f64>,
    pub recovered_ci95: Option<[f64; 2]>,
    /// No partition affected, out of the detected runs.
    pub novmf_rate: Option<f64>,
    pub novmf_ci95: Option<[f64; 2]>,
    pub detection_coverage: Option<f64>,
    pub detection_coverage_ci95: Option<[f64; 2]>,
    pub golden_runs: u64,
    pub golden_false_detections: u64,
    pub golden_problems: Vec<String>,
    /// The hypervisor's recovery time in the recovered runs (virtual ns).
    pub latency_ns: Percentiles,
    /// Each recovery step's time in the recovered runs.
    pub steps_ns: BTreeMap<String, Percentiles>,
    /// From injection to detection, in every detected run.
    pub detection_latency_ns: Percentiles,
    pub wall_s_per_run: Option<f64>,
    pub setup: Setup,
    pub top_failures: Vec<Failure>,
}

impl Summary {
    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes.get(o.name()).copied().unwrap_or(0)
    }

    /// Runs in some class: what the outcome table's percentages are out of.
    pub fn measured(&self) -> u64 {
        self.runs - self.runner_errors
    }

    /// The campaign measured what it should: the golden runs are clean, and every run booted
    /// with its injection armed.
    pub fn sound(&self) -> bool {
        self.golden_false_detections == 0
            && self.golden_problems.is_empty()
            && self.runner_errors == 0
            && self.unarmed == 0
    }
}

/// The failed runs grouped by cause, most frequent first.
fn top_failures(reports: &[RunReport]) -> Vec<Failure> {
    let mut by_cause: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in reports.iter().filter(|r| r.outcome.failed()) {
        by_cause.entry(r.cause()).or_default().push(r.seed);
    }
    let mut failures: Vec<Failure> = by_cause
        .into_iter()
        .map(|(cause, seeds)| Failure {
            cause,
            count: seeds.len() as u64,
            replay: seeds.into_iter().take(REPLAYS_PER_CAUSE).collect(),
        })
        .collect();
    // Stable: equal counts stay in the cause's alphabetical order.
    failures.sort_by_key(|f| std::cmp::Reverse(f.count));
    failures.truncate(TOP_CAUSES);
    failures
}

pub fn summarize(
    (campaign, arch): (&'static str, &'static str),
    setup: Setup,
    goldens: &GoldenRuns,
    reports: &[RunReport],
) -> Summary {
    let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count() as u64;
    let detected = reports.iter().filter(|r| r.outcome.detected()).count() as u64;
    let undetected = [
        Outcome::UndetectedSdc,
        Outcome::UndetectedHang,
        Outcome::UndetectedCrash,
    ]
    .map(count)
    .iter()
    .sum::<u64>();
    let novmf = Rate::new(count(Outcome::RecoveredNovmf), detected);
    let recovered = Rate::new(novmf.count + count(Outcome::RecoveredOneLost), detected);
    let coverage = Rate::new(detected, detected + undetected);
    let recovered_runs = || reports.iter().filter(|r| r.outcome.recovered());
    let mut steps: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in recovered_runs() {
        for (step, ns) in &r.recovery_steps_ns {
            steps.entry(step.clone()).or_default().push(*ns);
        }
    }
    let booted: Vec<f64> = reports
        .iter()
        .filter(|r| r.outcome != Outcome::RunnerError)
        .map(|r| r.wall_s)
        .collect();
    Summary {
        campaign,
        arch,
        mode: setup.mode,
        runs: reports.len() as u64,
        runner_errors: count(Outcome::RunnerError),
        unarmed: reports
            .iter()
            .filter(|r| r.outcome != Outcome::RunnerError && !r.armed)
            .count() as u64,
        outcomes: Outcome::CLASSES
            .into_iter()
            .map(|o| (o.name(), count(o)))
            .collect(),
        detected,
        manifested: coverage.of,
        recovered_rate: recovered.rate,
        recovered_ci95: recovered.ci95,
        novmf_rate: novmf.rate,
        novmf_ci95: novmf.ci95,
        detection_coverage: coverage.rate,
        detection_coverage_ci95: coverage.ci95,
        golden_runs: goldens.runs,
        golden_false_detections: goldens.false_detections,
        golden_problems: goldens.problems.clone(),
        latency_ns: Percentiles::of(recovered_runs().filter_map(|r| r.recovery_ns).collect()),
        steps_ns: steps
            .into_iter()
            .map(|(k, v)| (k, Percentiles::of(v)))
            .collect(),
        detection_latency_ns: Percentiles::of(
            reports
                .iter()
                .filter_map(|r| r.detection_latency_ns)
                .collect(),
        ),
        wall_s_per_run: (!booted.is_empty())
            .then(|| booted.iter().sum::<f64>() / booted.len() as f64),
        setup,
        top_failures: top_failures(reports),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::recovery_campaign::fixtures::{
        ALL, ARMED, DETECTED, INJECTED, RESUMED, goldens, plan, run, setup,
    };
    use crate::recovery_campaign::judge::judge;

    /// A campaign of eight runs: two recovered without a loss, one with one partition lost, one
    /// escalated, one never recovered, one undetected SDC, one not manifested, one not activated.
    pub fn campaign() -> (Summary, Vec<RunReport>) {
        let detected_log = |extra: &'static str| vec![ARMED, INJECTED, DETECTED, extra];
        let runs = [
            run(ALL, ALL, &detected_log(RESUMED)),
            run(ALL, ALL, &detected_log(RESUMED)),
            run(&[1, 2, 2, 3, 4, 5], ALL, &detected_log(RESUMED)),
            run(
                ALL,
                ALL,
                &detected_log("ERROR recovery: escalating to a full reset: ledger CRC mismatch"),
            ),
            run(ALL, &[1, 2], &[ARMED, INJECTED, DETECTED]),
            run(ALL, &[1, 2, 3, 5], &[ARMED, INJECTED]),
            run(ALL, ALL, &[ARMED, INJECTED]),
            run(ALL, ALL, &[ARMED]),
        ];
        let reports: Vec<RunReport> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| judge(&plan(i as u64), r, &goldens().first))
            .collect();
        (
            summarize(("register", "x86_64"), setup(), &goldens(), &reports),
            reports,
        )
    }

    #[test]
    fn the_summary_counts_classes_rates_and_failures() {
        let (s, _) = campaign();
        assert_eq!(s.runs, 8);
        let counts: Vec<(&str, u64)> = s
            .outcomes
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(o, n)| (*o, *n))
            .collect();
        assert_eq!(
            counts,
            [
                ("not_activated", 1),
                ("not_manifested", 1),
                ("recovered_novmf", 2),
                ("recovered_one_lost", 1),
                ("system_failure", 2),
                ("undetected_sdc", 1)
            ]
        );
        assert_eq!((s.detected, s.manifested), (5, 6));
        assert_eq!(s.recovered_rate, Some(0.6));
        assert_eq!(s.novmf_rate, Some(0.4));
        assert_eq!(s.recovered_ci95, wilson(3, 5));
        assert_eq!(s.detection_coverage, Some(5.0 / 6.0));
        assert_eq!((s.latency_ns.p50, s.latency_ns.max), (4000, 4000));
        assert_eq!(s.steps_ns["image"].max, 3000);
        assert_eq!(s.detection_latency_ns.p50, 500);
        let causes: Vec<(&str, u64, &[u64])> = s
            .top_failures
            .iter()
            .map(|f| (f.cause.as_str(), f.count, f.replay.as_slice()))
            .collect();
        assert_eq!(
            causes,
            [
                ("system_failure: escalated", 1, &[3][..]),
                ("system_failure: never_started", 1, &[4][..]),
                ("undetected_sdc: calls differs", 1, &[5][..])
            ]
        );
        assert!(s.sound());
    }

    #[test]
    fn a_run_the_hypervisor_did_not_arm_makes_the_campaign_unsound() {
        let (_, mut reports) = campaign();
        reports.push(judge(&plan(8), &run(ALL, ALL, &[]), &goldens().first));
        let s = summarize(("register", "x86_64"), setup(), &goldens(), &reports);
        assert_eq!((s.unarmed, s.count(Outcome::NotActivated)), (1, 2));
        assert!(!s.sound());
    }

    #[test]
    fn the_report_json_has_the_agreed_keys_and_no_runs_still_makes_one() {
        let (s, _) = campaign();
        let json = serde_json::to_value(&s).unwrap();
        for key in [
            "campaign",
            "arch",
            "mode",
            "runs",
            "outcomes",
            "recovered_rate",
            "recovered_ci95",
            "novmf_rate",
            "novmf_ci95",
            "detection_coverage",
            "golden_false_detections",
            "latency_ns",
            "setup",
            "top_failures",
        ] {
            assert!(json.get(key).is_some(), "no {key}");
        }
        assert_eq!(json["latency_ns"]["p50"], 4000);
        let empty = summarize(("register", "x86_64"), setup(), &goldens(), &[]);
        assert_eq!(
            (empty.runs, empty.recovered_rate, empty.recovered_ci95),
            (0, None, None)
        );
        assert_eq!(
            serde_json::to_value(&empty).unwrap()["recovered_rate"],
            serde_json::Value::Null
        );
    }
}
