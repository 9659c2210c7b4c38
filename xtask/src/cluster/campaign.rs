//! `cargo xtask inject --campaign ft-boards`: the pair across boards under seeded faults, each
//! run judged by the output oracle across boards (`scenarios::judge`): a board killed (the
//! primary's or the backup's), a board frozen for a while, a combination of links cut and healed
//! later, the witness restarted before the primary's board dies, or the primary's board killed
//! and then, once the live copy re-protected onto the spare board, the live copy's. Writes `runs.jsonl`,
//! `report.json` and `report.html` like `ft-kill`, with the split-brain matrix: per combination
//! of cut links, how many runs ended with no live copy, one, or two.

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use super::run::{Action, Outcome, Step, Trigger};
use super::scenarios::{
    self, Expect, PAIR, REPROTECTED_BY, at_line, cut_name, cuts, number_before, plan, spare_first,
    step,
};
use crate::inject::{
    self, Campaign, Percentiles, Verdict, mix, print_failed, progress, write_reports,
};
use crate::{root, tools};

/// The campaign's name on the command line.
pub const FT_BOARDS: &str = "ft-boards";

/// One run's fault, drawn from its seed.
struct Fault {
    what: String,
    /// With the spare board running (started first), or the pair's two alone.
    spare: bool,
    steps: Vec<Step>,
    expect: Expect,
    /// The links cut, for the split-brain matrix.
    cut: Option<u8>,
}

fn draw(seed: u64) -> Fault {
    let r = mix(seed);
    let line = 5 + (r >> 8) % 45;
    let ms = |bits: u64| Duration::from_millis(100 + bits % 2400);
    match r % 7 {
        0 => Fault {
            what: format!("kill the primary's board at line {line}"),
            spare: false,
            steps: vec![step(at_line(line), Action::Kill(0))],
            expect: Expect::Failover,
            cut: None,
        },
        1 => Fault {
            what: format!("kill the backup's board at line {line}"),
            spare: false,
            steps: vec![step(at_line(line), Action::Kill(1))],
            expect: Expect::PrimaryGoesOn,
            cut: None,
        },
        2 | 3 => {
            let board = (r % 7 - 2) as usize;
            let held = ms(r >> 20);
            Fault {
                what: format!("freeze board {board} at line {line} for {held:?}"),
                spare: false,
                steps: vec![
                    step(at_line(line), Action::Freeze(board)),
                    step(Trigger::After(held), Action::Thaw(board)),
                ],
                expect: Expect::OneLive,
                cut: None,
            }
        }
        4 => {
            let mask = 1 + ((r >> 20) % 7) as u8;
            let held = ms(r >> 24);
            let mut steps: Vec<Step> = cuts(mask)
                .into_iter()
                .map(|link| step(at_line(line), Action::Cut(link)))
                .collect();
            steps.push(Step {
                optional: true,
                ..step(Trigger::After(held), Action::Heal)
            });
            Fault {
                what: format!("cut {} at line {line} for {held:?}", cut_name(mask)),
                spare: false,
                steps,
                expect: if mask & 1 == 0 {
                    Expect::Protected
                } else {
                    Expect::OneLive
                },
                cut: Some(mask),
            }
        }
        5 => Fault {
            what: format!(
                "restart the witness at line {line}, kill the primary's board 5 lines later"
            ),
            spare: false,
            steps: vec![
                step(at_line(line), Action::RestartWitness),
                step(at_line(line + 5), Action::Kill(0)),
            ],
            expect: Expect::Failover,
            cut: None,
        },
        _ => {
            // Early enough that the live copy has re-protected by the second kill even under
            // Bochs, where a re-protection takes some 25 lines.
            let first = 3 + (r >> 8) % 8;
            let second = REPROTECTED_BY + (r >> 20) % 15;
            Fault {
                what: format!(
                    "kill the primary's board at line {first}, the live copy's at its line {second}"
                ),
                spare: true,
                steps: vec![
                    step(at_line(first), Action::Kill(0)),
                    step(
                        Trigger::Shows {
                            board: 1,
                            text: format!("[{PAIR}] count {second} "),
                        },
                        Action::Kill(1),
                    ),
                ],
                expect: Expect::SecondFailover,
                cut: None,
            }
        }
    }
}

/// One run, judged.
#[derive(Serialize)]
struct RunReport {
    seed: u64,
    fault: String,
    outcome: &'static str,
    lost_outputs: u64,
    duplicates: u64,
    duplicates_outside_cut: u64,
    split_brain: bool,
    divergences: u64,
    /// Copies that ran the partition to its end.
    live_copies: usize,
    cut: Option<String>,
    /// Detection (the backup's silence before it suspected) plus catch-up and go-live, in the
    /// backup's virtual time.
    failover_ns: Option<u64>,
    /// The re-protection onto the spare board: its whole time and the guest's pause, in the
    /// live copy's virtual time; then the spare's failover when the live copy died in turn.
    reprotect_ns: Option<u64>,
    reprotect_pause_ns: Option<u64>,
    second_failover_ns: Option<u64>,
    problems: Vec<String>,
}

/// A backup's failover time, on board `board`: how long the primary had been silent when it
/// suspected, plus the time from then to going live.
fn failover_ns(outcome: &Outcome, board: usize) -> Option<u64> {
    let log = &outcome.boards.get(board)?.as_ref()?.log;
    let suspect = log
        .iter()
        .find(|l| l.contains("FT backup suspects the primary"))?;
    let silence = number_before(suspect, " ns of silence")?;
    let suspected_at = number_before(suspect, " ns): asking")?;
    let live = log.iter().find(|l| l.contains("FT backup goes live"))?;
    let live_at = number_before(live, " ns); printing")?;
    Some(silence + live_at.saturating_sub(suspected_at))
}

/// The re-protection's whole time and the guest's pause, from the live copy's log.
fn reprotection_ns(outcome: &Outcome) -> (Option<u64>, Option<u64>) {
    let line = outcome
        .boards
        .get(1)
        .and_then(Option::as_ref)
        .and_then(|r| {
            r.log
                .iter()
                .find(|l| l.contains("FT re-protection of") && l.contains("across boards:"))
        });
    line.map_or((None, None), |l| {
        (number_before(l, " ns in all"), number_before(l, " ns, "))
    })
}

/// A row of the split-brain matrix.
#[derive(Serialize, Default, Clone)]
struct MatrixRow {
    cut: String,
    runs: u64,
    no_live_copy: u64,
    one_live_copy: u64,
    split_brain: u64,
}

/// The campaign's totals, as ft-kill's, and its split-brain matrix.
#[derive(Serialize)]
struct Summary {
    #[serde(flatten)]
    totals: inject::Summary,
    split_brain_matrix: Vec<MatrixRow>,
    reprotection: Reprotection,
}

/// The re-protections onto the spare board across the runs that made one.
#[derive(Serialize)]
struct Reprotection {
    runs: u64,
    time_ns: Percentiles,
    pause_ns: Percentiles,
    second_failover_ns: Percentiles,
}

impl Reprotection {
    fn of(reports: &[RunReport]) -> Self {
        let values = |f: fn(&RunReport) -> Option<u64>| reports.iter().filter_map(f).collect();
        Reprotection {
            runs: reports.iter().filter(|r| r.reprotect_ns.is_some()).count() as u64,
            time_ns: Percentiles::of(values(|r| r.reprotect_ns)),
            pause_ns: Percentiles::of(values(|r| r.reprotect_pause_ns)),
            second_failover_ns: Percentiles::of(values(|r| r.second_failover_ns)),
        }
    }

    fn describe(&self) -> String {
        if self.runs == 0 {
            return "no run re-protected onto the spare board".into();
        }
        let ms = |p: &Percentiles| {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                p.p50 as f64 / 1e6,
                p.p99 as f64 / 1e6,
                p.max as f64 / 1e6
            )
        };
        format!(
            "{} re-protections onto the spare board: time {}; the guest paused {}; the spare's failover {}",
            self.runs,
            ms(&self.time_ns),
            ms(&self.pause_ns),
            ms(&self.second_failover_ns)
        )
    }
}

fn summarize(c: &Campaign, reports: &[RunReport]) -> Summary {
    let verdicts: Vec<Verdict> = reports
        .iter()
        .map(|r| Verdict {
            passed: r.outcome == "passed",
            lost_outputs: r.lost_outputs,
            duplicates: r.duplicates,
            duplicates_outside_cut: r.duplicates_outside_cut,
            split_brain: r.split_brain,
            divergences: r.divergences,
            failover_ns: r.failover_ns,
        })
        .collect();
    let mut matrix: Vec<MatrixRow> = (1..8u8)
        .map(|mask| MatrixRow {
            cut: cut_name(mask),
            ..MatrixRow::default()
        })
        .collect();
    for r in reports {
        if let Some(row) = matrix.iter_mut().find(|m| Some(&m.cut) == r.cut.as_ref()) {
            row.runs += 1;
            match (r.live_copies, r.split_brain) {
                (_, true) => row.split_brain += 1,
                (0, _) => row.no_live_copy += 1,
                _ => row.one_live_copy += 1,
            }
        }
    }
    Summary {
        totals: inject::Summary::of(c, &verdicts),
        split_brain_matrix: matrix,
        reprotection: Reprotection::of(reports),
    }
}

fn html(summary: &Summary, reports: &[RunReport]) -> String {
    let s = &summary.totals;
    let mut rows = String::new();
    for r in reports {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.seed,
            r.fault,
            r.outcome,
            r.failover_ns
                .map_or("-".into(), |n| format!("{:.1}", n as f64 / 1e6)),
            r.duplicates,
            r.lost_outputs,
            r.problems.join("; ")
        );
    }
    let mut matrix = String::new();
    for m in &summary.split_brain_matrix {
        let _ = writeln!(
            matrix,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            m.cut, m.runs, m.no_live_copy, m.one_live_copy, m.split_brain
        );
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Tandem ft-boards campaign</title>\
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;border-bottom:1px solid #ccc}}</style>\
<h1>ft-boards on {arch}: {passed} of {runs} runs passed</h1>\
<p>seed {seed}; lost outputs {lost}; duplicates {dups} ({outside} outside the cut); split brain {split}; divergences {div}; \
failover p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (the backup's virtual time: detection, catch-up, go-live)</p>\
<p>{reprotection} (virtual time)</p>\
<h2>Split-brain matrix</h2><table><tr><th>links cut</th><th>runs</th><th>no live copy</th><th>one live copy</th><th>split brain</th></tr>{matrix}</table>\
<h2>Runs</h2><table><tr><th>seed</th><th>fault</th><th>outcome</th><th>failover ms</th><th>duplicates</th><th>lost</th><th>problems</th></tr>{rows}</table>",
        arch = s.arch,
        passed = s.passed,
        runs = s.runs,
        seed = s.seed,
        lost = s.lost_outputs,
        dups = s.duplicates,
        outside = s.duplicates_outside_cut,
        split = s.split_brain,
        div = s.divergences,
        p50 = s.failover_ns.p50 as f64 / 1e6,
        p99 = s.failover_ns.p99 as f64 / 1e6,
        max = s.failover_ns.max as f64 / 1e6,
        reprotection = summary.reprotection.describe(),
    )
}

/// Runs the campaign; true when every run passed.
pub fn run(c: &Campaign) -> Result<bool> {
    if c.runs == 0 && c.replay.is_none() {
        bail!("--runs must be at least 1");
    }
    tools::require(match c.arch {
        crate::Arch::X86_64 => tools::BOCHS,
        crate::Arch::Aarch64 => tools::QEMU_AARCH64,
    })?;
    let out = c.out.clone().unwrap_or_else(|| {
        root().join(format!("build/campaign-ft-boards-{}/report", c.arch.name()))
    });
    let tag = out
        .file_name()
        .map_or("report".into(), |n| n.to_string_lossy().to_string());
    let (image, iso) = scenarios::image(
        c.arch,
        &format!("campaign-ft-boards-{}-{tag}", c.arch.name()),
    )?;
    fs::create_dir_all(&out)?;
    let seeds: Vec<u64> = match c.replay {
        Some(seed) => vec![seed],
        None => (0..c.runs).map(|i| mix(c.seed ^ mix(i))).collect(),
    };
    let total = seeds.len() as u64;
    let mut reports = Vec::new();
    progress(0, total, 0);
    // One run at a time: each runs two emulators paced to wall time, and two runs at once would
    // leave them too little of a two-core machine to keep pace.
    for &seed in &seeds {
        let fault = draw(seed);
        let dir = image.dir.join(match c.replay {
            Some(seed) => format!("replay-{seed}"),
            None => "run".into(),
        });
        let plan = if fault.spare {
            spare_first(fault.steps)
        } else {
            plan(fault.steps)
        };
        let result = super::run::run(&image, iso.as_deref(), &dir, &plan);
        let report = match result {
            Ok(outcome) => {
                let judged = scenarios::judge(&outcome, fault.expect);
                let (reprotect_ns, reprotect_pause_ns) = reprotection_ns(&outcome);
                RunReport {
                    seed,
                    outcome: if judged.problems.is_empty() {
                        "passed"
                    } else {
                        "failed"
                    },
                    lost_outputs: judged.verdict.lost,
                    duplicates: judged.verdict.duplicates,
                    duplicates_outside_cut: judged.verdict.duplicates_outside_cut,
                    split_brain: judged.verdict.split_brain || judged.finishers.len() > 1,
                    divergences: judged.divergences,
                    live_copies: judged.finishers.len(),
                    cut: fault.cut.map(cut_name),
                    failover_ns: failover_ns(&outcome, 1),
                    reprotect_ns,
                    reprotect_pause_ns,
                    second_failover_ns: (fault.expect == Expect::SecondFailover)
                        .then(|| failover_ns(&outcome, 2))
                        .flatten(),
                    fault: fault.what,
                    problems: judged.problems,
                }
            }
            Err(e) => RunReport {
                seed,
                fault: fault.what,
                outcome: "failed",
                lost_outputs: 0,
                duplicates: 0,
                duplicates_outside_cut: 0,
                split_brain: false,
                divergences: 0,
                live_copies: 0,
                cut: fault.cut.map(cut_name),
                failover_ns: None,
                reprotect_ns: None,
                reprotect_pause_ns: None,
                second_failover_ns: None,
                problems: vec![format!("{e:#}")],
            },
        };
        if report.outcome != "passed" && c.replay.is_none() {
            // Kept for whoever looks into it: the next run reuses `run`.
            let kept = image.dir.join(format!("failed-{seed}"));
            let _ = fs::remove_dir_all(&kept);
            let _ = fs::rename(&dir, &kept);
            eprintln!(
                "\nrun {seed} ({}) failed: {}; its files are in {}",
                report.fault,
                report.problems.join("; "),
                kept.display()
            );
        }
        reports.push(report);
        let failed = reports.iter().filter(|r| r.outcome != "passed").count() as u64;
        progress(reports.len() as u64, total, failed);
    }
    eprintln!();
    let summary = summarize(c, &reports);
    write_reports(&out, &reports, &summary, &html(&summary, &reports))?;
    for r in reports.iter().filter(|r| r.outcome != "passed") {
        print_failed(c, r.seed, &r.fault, &r.problems);
    }
    summary.totals.print(&out);
    println!("{}", summary.reprotection.describe());
    Ok(summary.totals.all_passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failover_time_is_read_from_the_backups_log() {
        let line = "WARN  FT backup suspects the primary after 200000000 ns of silence (700000000 ns): asking the arbiter";
        assert_eq!(number_before(line, " ns of silence"), Some(200_000_000));
        assert_eq!(number_before(line, " ns): asking"), Some(700_000_000));
    }

    #[test]
    fn every_kind_of_fault_is_drawn() {
        let kinds: std::collections::HashSet<String> = (0..200)
            .map(|s| {
                draw(s)
                    .what
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert!(kinds.len() >= 6, "{kinds:?}");
        assert!((0..400).any(|s| draw(s).cut == Some(7)));
    }
}
