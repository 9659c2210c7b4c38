//! The fault-free runs every run is judged against: each partition's console lines, and the
//! exits over all partitions that place each run's trigger.

use anyhow::{Result, bail};

use super::log;
use crate::emulator::Run;

/// What a fault-free run showed.
pub struct Golden {
    /// Each partition's name and console lines, in the configuration's order.
    pub partitions: Vec<(String, Vec<String>)>,
    pub exits: u64,
    /// The hypervisor's own lines about recovery and injection, for the report's setup table
    /// (whatever it says about its detectors).
    pub recovery_log: Vec<String>,
}

/// Partition `name`'s console lines, without their `[name] ` prefix.
pub fn lines_of(console: &[String], name: &str) -> Vec<String> {
    let prefix = format!("[{name}] ");
    console
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_string))
        .collect()
}

/// Whether the hypervisor detected a failure in `run`: in a fault-free run, a false detection.
fn detected(run: &Run) -> bool {
    !log::events(&run.log).detected.is_empty()
}

impl Golden {
    /// Reads a fault-free run of partitions `names`; fails unless it ended normally with every
    /// partition printing and finishing cleanly.
    pub fn from_run(run: &Run, names: &[String]) -> Result<Golden> {
        let events = log::events(&run.log);
        let partitions: Vec<(String, Vec<String>)> = names
            .iter()
            .map(|n| (n.clone(), lines_of(&run.console, n)))
            .collect();
        let unclean: Vec<&String> = names
            .iter()
            .filter(|n| events.stopped.get(*n).map(String::as_str) != Some(log::CLEAN_STOP))
            .collect();
        if !run.success || partitions.iter().any(|(_, l)| l.is_empty()) || !unclean.is_empty() {
            bail!(
                "the golden run failed (status {:?}{}; not finished cleanly: {unclean:?}):\n{}\n{}",
                run.status,
                if run.timed_out { ", timed out" } else { "" },
                run.console.join("\n"),
                run.log.join("\n")
            );
        }
        if events.exits == 0 {
            bail!("the golden run did not report its partitions' exits");
        }
        Ok(Golden {
            partitions,
            exits: events.exits,
            recovery_log: run
                .log
                .iter()
                .filter(|l| l.contains("recovery") || l.contains("fault injection"))
                .cloned()
                .collect(),
        })
    }

    /// Why a later fault-free run does not repeat this one (none when it does).
    fn differences(&self, later: &Golden) -> Vec<String> {
        self.partitions
            .iter()
            .zip(&later.partitions)
            .filter(|(a, b)| a != b)
            .map(|((name, _), _)| {
                format!(
                    "partition {name} printed other lines in a later golden run than in the first"
                )
            })
            .collect()
    }
}

/// A campaign's fault-free runs (recovery.md 5.5, class 8: no detection and no difference
/// allowed), the first of which every run is judged against.
pub struct GoldenRuns {
    pub first: Golden,
    pub runs: u64,
    pub exits: Vec<u64>,
    pub wall_s: Vec<f64>,
    /// Golden runs in which the hypervisor detected a failure of its own.
    pub false_detections: u64,
    /// Why a later golden run is not the first one again.
    pub problems: Vec<String>,
}

impl GoldenRuns {
    /// Starts with the first fault-free run, which must be whole.
    pub fn first(run: &Run, names: &[String]) -> Result<GoldenRuns> {
        let first = Golden::from_run(run, names)?;
        Ok(GoldenRuns {
            runs: 1,
            exits: vec![first.exits],
            wall_s: vec![run.elapsed.as_secs_f64()],
            false_detections: u64::from(detected(run)),
            problems: Vec::new(),
            first,
        })
    }

    /// Adds a later fault-free run, which must repeat the first.
    pub fn add(&mut self, run: &Run, names: &[String]) {
        self.runs += 1;
        self.false_detections += u64::from(detected(run));
        self.wall_s.push(run.elapsed.as_secs_f64());
        match Golden::from_run(run, names) {
            Ok(later) => {
                self.exits.push(later.exits);
                self.problems.extend(self.first.differences(&later));
            }
            Err(e) => self.problems.push(format!("a later golden run: {e:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(uart: &[&str], detected: bool) -> Run {
        let mut log = vec![
            "INFO  partition uart stopped after 10 deterministic and 2 asynchronous exits".into(),
            format!("INFO  partition uart stopped: {}", log::CLEAN_STOP),
        ];
        if detected {
            log.push("ERROR recovery: detected hang on CPU 0 (5 ns)".into());
        }
        Run {
            success: true,
            failed_cleanly: false,
            status: Some(0),
            timed_out: false,
            console: uart.iter().map(|l| format!("[uart] {l}")).collect(),
            log,
            malformed_frames: 0,
            emulator_log: String::new(),
            elapsed: Duration::from_secs(2),
            ended_by_user: false,
        }
    }

    #[test]
    fn golden_runs_count_exits_false_detections_and_differences() {
        let names = ["uart".to_string()];
        let mut g = GoldenRuns::first(&run(&["count 1", "count 2"], false), &names).unwrap();
        assert_eq!(g.first.exits, 12);
        assert_eq!(g.first.partitions[0].1, ["count 1", "count 2"]);
        g.add(&run(&["count 1", "count 2"], true), &names);
        assert_eq!((g.runs, g.false_detections), (2, 1));
        assert!(g.problems.is_empty());
        g.add(&run(&["count 1", "count 3"], false), &names);
        assert_eq!(g.problems.len(), 1);
        let mut failed = run(&[], false);
        failed.success = false;
        assert!(GoldenRuns::first(&failed, &names).is_err());
    }
}
