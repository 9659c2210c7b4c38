//! A HIL scenario: a short script in TOML, run step by step against a rig's boards.
//!
//! ```toml
//! [[step]]
//! do = "power"          # power = { board, on }
//! board = "a"
//! on = true
//! [[step]]
//! do = "expect"         # a console line containing `line`, within `within`
//! board = "a"
//! line = "[counter] count 5"
//! within = "30s"
//! ```
//! Other steps: `cut-power` (`board`, `for`), `reset` (`board`), `fault` (`board`, `line`,
//! `asserted`), `expect-log` (`board`, `line`, `within`: the hypervisor's log), `wait` (`for`),
//! `oracle` (`board`, `partition`, `count`, `boots`),
//! `failover-oracle` (`boards`, `partition`, `count`).

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::oracle;
use super::rig::Board;

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    Power {
        board: String,
        on: bool,
    },
    /// Power off, wait, power on.
    CutPower {
        board: String,
        #[serde(rename = "for")]
        off_for: Span,
    },
    Reset {
        board: String,
    },
    Fault {
        board: String,
        line: String,
        asserted: bool,
    },
    /// Waits for a console line containing `line` after the last one an `expect` matched.
    Expect {
        board: String,
        line: String,
        within: Span,
    },
    /// Waits for a line of the hypervisor's log containing `line`.
    ExpectLog {
        board: String,
        line: String,
        within: Span,
    },
    Wait {
        #[serde(rename = "for")]
        time: Span,
    },
    /// Checks a partition's numbered lines over the whole scenario ([`oracle::numbered`]).
    Oracle {
        board: String,
        partition: String,
        count: u32,
        boots: usize,
    },
    /// Checks a fault-tolerant partition's numbered lines, gathered from `boards` in the order
    /// they printed them ([`oracle::across`]).
    FailoverOracle {
        boards: Vec<String>,
        partition: String,
        count: u32,
    },
}

/// A time span written `500ms`, `2s` or `1m`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Span(pub Duration);

impl TryFrom<String> for Span {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}`: a time is a number and a unit (ms, s or m)"))?;
        match unit {
            "ms" => Ok(Span(Duration::from_millis(n))),
            "s" => Ok(Span(Duration::from_secs(n))),
            "m" => Ok(Span(Duration::from_secs(n * 60))),
            _ => Err(format!("`{text}`: the unit is ms, s or m")),
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let scenario: Self =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        if scenario.steps.is_empty() {
            bail!(
                "{}: `step`: a scenario has at least one step",
                path.display()
            );
        }
        Ok(scenario)
    }

    /// The boards the steps name.
    pub fn boards(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.steps.iter().flat_map(Step::boards).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Runs every step in order against `boards`; the first that fails ends the scenario.
    pub fn run(&self, boards: &mut BTreeMap<String, Box<dyn Board>>) -> Result<()> {
        let mut cursors: BTreeMap<String, usize> = BTreeMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            step.run(boards, &mut cursors)
                .with_context(|| format!("step {} ({})", i + 1, step.describe()))?;
        }
        Ok(())
    }
}

impl Step {
    fn boards(&self) -> Vec<&str> {
        match self {
            Step::Power { board, .. }
            | Step::CutPower { board, .. }
            | Step::Reset { board }
            | Step::Fault { board, .. }
            | Step::Expect { board, .. }
            | Step::ExpectLog { board, .. }
            | Step::Oracle { board, .. } => vec![board],
            Step::FailoverOracle { boards, .. } => boards.iter().map(String::as_str).collect(),
            Step::Wait { .. } => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Step::Power { board, on } => {
                format!("power board `{board}` {}", if *on { "on" } else { "off" })
            }
            Step::CutPower { board, off_for } => {
                format!("cut board `{board}`'s power for {:?}", off_for.0)
            }
            Step::Reset { board } => format!("reset board `{board}`"),
            Step::Fault {
                board,
                line,
                asserted,
            } => format!(
                "{} board `{board}`'s fault line `{line}`",
                if *asserted { "assert" } else { "release" }
            ),
            Step::Expect {
                board,
                line,
                within,
            } => format!("expect `{line}` on board `{board}` within {:?}", within.0),
            Step::ExpectLog {
                board,
                line,
                within,
            } => format!(
                "expect `{line}` in board `{board}`'s log within {:?}",
                within.0
            ),
            Step::Wait { time } => format!("wait {:?}", time.0),
            Step::Oracle {
                board, partition, ..
            } => format!("oracle on partition `{partition}` of board `{board}`"),
            Step::FailoverOracle {
                boards, partition, ..
            } => format!(
                "oracle on partition `{partition}` across boards {}",
                boards.join(", ")
            ),
        }
    }

    fn run(
        &self,
        boards: &mut BTreeMap<String, Box<dyn Board>>,
        cursors: &mut BTreeMap<String, usize>,
    ) -> Result<()> {
        let name = match (self, self.boards().as_slice()) {
            (Step::Wait { time }, _) => {
                thread::sleep(time.0);
                return Ok(());
            }
            (
                Step::FailoverOracle {
                    partition, count, ..
                },
                names,
            ) => {
                let consoles = names
                    .iter()
                    .map(|&n| Ok(board(boards, n)?.console().lines()))
                    .collect::<Result<Vec<_>>>()?;
                return oracle::across(&consoles, partition, *count);
            }
            (_, &[name]) => name,
            (_, names) => bail!("a step about one board names {}", names.len()),
        };
        let board = board(boards, name)?;
        match self {
            Step::Power { on, .. } => board.power(*on),
            Step::CutPower { off_for, .. } => {
                board.power(false)?;
                thread::sleep(off_for.0);
                board.power(true)
            }
            Step::Reset { .. } => board.reset(),
            Step::Fault { line, asserted, .. } => board.fault(line, *asserted),
            Step::Expect { line, within, .. } => {
                let cursor = cursors.entry(name.to_string()).or_default();
                let console = board.console();
                wait_for(
                    within.0,
                    || {
                        let at = console.find(*cursor, line);
                        *cursor = at.map_or(*cursor, |at| at + 1);
                        Ok(at.is_some())
                    },
                    || {
                        Ok(format!(
                            "the console's last lines:\n{}",
                            console.tail(8).join("\n")
                        ))
                    },
                )
            }
            Step::ExpectLog { line, within, .. } => wait_for(
                within.0,
                || Ok(board.log()?.iter().any(|l| l.contains(line.as_str()))),
                || {
                    let log = board.log()?;
                    let tail = &log[log.len().saturating_sub(8)..];
                    Ok(format!("the log's last lines:\n{}", tail.join("\n")))
                },
            ),
            Step::Oracle {
                partition,
                count,
                boots,
                ..
            } => oracle::numbered(&board.console().lines(), partition, *count, *boots),
            Step::Wait { .. } | Step::FailoverOracle { .. } => Ok(()),
        }
    }
}

/// Polls `found` until it holds, or fails after `within` with what `seen` shows.
fn wait_for(
    within: Duration,
    mut found: impl FnMut() -> Result<bool>,
    seen: impl FnOnce() -> Result<String>,
) -> Result<()> {
    let start = Instant::now();
    while !found()? {
        if start.elapsed() >= within {
            bail!("no such line; {}", seen()?);
        }
        thread::sleep(POLL);
    }
    Ok(())
}

/// How often a waiting step looks again.
const POLL: Duration = Duration::from_millis(50);

fn board<'b>(
    boards: &'b mut BTreeMap<String, Box<dyn Board>>,
    name: &str,
) -> Result<&'b mut Box<dyn Board>> {
    boards
        .get_mut(name)
        .ok_or_else(|| anyhow!("the rig has no board `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_spans_parse_and_a_bad_one_is_named() {
        let s: Scenario = toml::from_str(
            r#"
            [[step]]
            do = "cut-power"
            board = "a"
            for = "1500ms"
            [[step]]
            do = "wait"
            for = "2s"
            "#,
        )
        .unwrap();
        assert!(
            matches!(&s.steps[0], Step::CutPower { off_for, .. } if off_for.0 == Duration::from_millis(1500))
        );
        assert_eq!(s.boards(), ["a"]);
        let e = toml::from_str::<Scenario>("[[step]]\ndo = \"wait\"\nfor = \"2 weeks\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the unit is ms, s or m"), "{e}");
        let e = toml::from_str::<Scenario>("[[step]]\ndo = \"jump\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jump"), "{e}");
    }
}
