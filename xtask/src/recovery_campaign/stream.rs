//! One partition's console stream compared with the golden run's: lines missing (gaps),
//! repeated or changed, whether it finished, and whether the post-recovery audit lost it.

use serde::Serialize;

use super::golden::lines_of;
use super::log::{CLEAN_STOP, Events};
use crate::emulator::Run;
use crate::scenario;

/// The prefix of the workload's numbered lines.
const NUMBERED: &str = "count";

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
    pub fn of(name: &str, golden: &[String], run: &Run, ev: &Events) -> Stream {
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
    pub fn crashed(&self) -> bool {
        self.stop.as_deref().is_some_and(|s| s != CLEAN_STOP)
    }

    /// The partition is lost: its output is not the golden one, or it did not finish, or it
    /// stopped making progress.
    pub fn affected(&self) -> bool {
        !self.identical || self.stop.as_deref() != Some(CLEAN_STOP) || self.no_progress
    }

    pub fn problems(&self) -> Vec<String> {
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
