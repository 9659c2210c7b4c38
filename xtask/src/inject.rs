//! `cargo xtask inject --campaign ft-kill`: boots a fault-tolerant partition many times, each
//! time killing its primary's CPU at a seeded point (an exit, or an edge of the output rule), and
//! judges every run with an output oracle against a fault-free golden run of the same image.
//!
//! Writes `runs.jsonl` (one object per run), `report.json` (the totals) and `report.html` (the
//! table and a failover-time histogram) to the output folder.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::build::{self, Image};
use crate::emulator::{self, Run};
use crate::{Arch, RecoveryMode, guests, root, scenario, terminal, tools};

/// The campaign `run` serves; the others are the recovery campaigns'.
pub const FT_KILL: &str = "ft-kill";

/// The partition the campaign protects, and the prefix of its numbered lines.
const PAIR: &str = "pair";
const NUMBERED: &str = "count";

/// What `cargo xtask inject` was asked.
pub struct Campaign {
    pub name: String,
    pub arch: Arch,
    pub runs: u64,
    pub seed: u64,
    pub out: Option<PathBuf>,
    pub replay: Option<u64>,
    /// How the hypervisor recovers from its own failures (the recovery campaigns; ft-kill
    /// ignores it).
    pub mode: RecoveryMode,
}

/// SplitMix64: a seed per run from the campaign's seed, so `--replay` reruns one alone.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the golden run showed: the protected partition's lines and how far it got.
struct Golden {
    lines: Vec<String>,
    exits: u64,
}

/// The boot option that kills the primary for the run with `seed`.
fn kill_point(seed: u64, golden: &Golden) -> String {
    let r = mix(seed);
    let outputs = golden.lines.len() as u64;
    match r % 4 {
        // The last exit (the guest's shutdown) has no boundary after it to die at.
        0 | 1 => format!(
            "ft-kill=exit:{}",
            1 + (r >> 8) % golden.exits.saturating_sub(1).max(1)
        ),
        2 => format!("ft-kill=sent:{}", (r >> 8) % outputs.max(1)),
        _ => match (r >> 4) % 2 {
            0 => format!("ft-kill=acked:{}", (r >> 8) % outputs.max(1)),
            _ => format!("ft-kill=printed:{}", (r >> 8) % outputs.max(1)),
        },
    }
}

/// One run, judged.
#[derive(Serialize)]
struct RunReport {
    seed: u64,
    kill: String,
    outcome: &'static str,
    lost_outputs: u64,
    duplicates: u64,
    duplicates_outside_cut: u64,
    split_brain: bool,
    divergences: u64,
    failover_ns: Option<u64>,
    problems: Vec<String>,
}

fn pair_lines(run: &Run) -> Vec<String> {
    let prefix = format!("[{PAIR}] ");
    run.console
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_string))
        .collect()
}

/// The number in a log line after `marker` and up to ` ns`.
fn ns_after(log: &[String], marker: &str) -> Option<u64> {
    let line = log.iter().find(|l| l.contains(marker))?;
    let (before, _) = line.split_once(" ns)")?;
    before.rsplit(['(', ' ']).next()?.parse().ok()
}

/// The output oracle: the protected partition's stream is the golden run's first `a` lines
/// (printed by the primary up to the cut), then the golden run from some line `b <= a` on (the
/// backup re-performs what had no `OutputDone`): `a - b` lines repeat at the cut, none is lost,
/// none differs, nothing repeats elsewhere.
fn judge(seed: u64, kill: String, run: &Run, golden: &Golden) -> RunReport {
    let lines = pair_lines(run);
    let mut problems = Vec::new();
    let cut = lines
        .iter()
        .zip(&golden.lines)
        .take_while(|(a, b)| a == b)
        .count();
    let rest = &lines[cut..];
    let resumed = (0..=cut)
        .rev()
        .find(|&b| golden.lines.get(b..) == Some(rest));
    let (duplicates, outside_cut, lost) = match resumed {
        Some(b) => ((cut - b) as u64, 0, 0),
        None => {
            problems.push(format!(
                "the stream differs from the golden run after {cut} of {} lines",
                golden.lines.len()
            ));
            let repeated = lines
                .iter()
                .enumerate()
                .filter(|(i, l)| lines[..*i].contains(l))
                .count() as u64;
            let lost = golden.lines.iter().filter(|g| !lines.contains(g)).count() as u64;
            (repeated, repeated, lost)
        }
    };
    if !scenario::numbered(&run.console, PAIR, NUMBERED, 1) {
        problems.push("the numbered lines have a gap or step back".into());
    }
    let divergences = run
        .log
        .iter()
        .filter(|l| l.contains("FT divergence"))
        .count() as u64;
    let live = run.log.iter().any(|l| l.contains("FT backup goes live"));
    let primary_finished = run
        .log
        .iter()
        .any(|l| l.contains(&format!("partition {PAIR} stopped: shutdown")));
    let split_brain = live && primary_finished;
    if !run.success {
        problems.push(format!(
            "the run did not end normally (status {:?}{})",
            run.status,
            if run.timed_out { ", timed out" } else { "" }
        ));
    }
    let killed = run.log.iter().any(|l| l.contains("CPU dies at"));
    if !killed {
        problems.push("the primary was never killed".into());
    } else if !live {
        problems.push("the backup never went live".into());
    }
    if split_brain {
        problems.push("both copies ran the partition to its end".into());
    }
    if divergences > 0 {
        problems.push(format!("{divergences} divergences"));
    }
    let failover_ns = ns_after(&run.log, "FT backup goes live")
        .zip(ns_after(&run.log, "CPU dies at"))
        .map(|(live, died)| live.saturating_sub(died));
    RunReport {
        seed,
        kill,
        outcome: if problems.is_empty() {
            "passed"
        } else {
            "failed"
        },
        lost_outputs: lost,
        duplicates,
        duplicates_outside_cut: outside_cut,
        split_brain,
        divergences,
        failover_ns,
        problems,
    }
}

/// A copy of the image in its own folder, so runs can boot side by side.
fn image_in(image: &Image, dir: &Path) -> Result<Image> {
    fs::create_dir_all(dir)?;
    let elf = dir.join("tandem.elf");
    fs::copy(&image.elf, &elf)?;
    Ok(Image {
        dir: dir.to_path_buf(),
        elf,
        config: image.config.clone(),
    })
}

/// One boot of the campaign's machine with `cmdline`: Bochs for x86_64 (from a GRUB ISO), QEMU
/// `virt` for aarch64.
pub(crate) fn boot(image: &Image, dir: &Path, cmdline: &str) -> Result<Run> {
    boot_within(image, dir, cmdline, emulator::BOCHS_TIMEOUT)
}

/// [`boot`] with a wall-time bound of `bochs` for Bochs runs (QEMU's is its default).
pub(crate) fn boot_within(
    image: &Image,
    dir: &Path,
    cmdline: &str,
    bochs: Duration,
) -> Result<Run> {
    let image = image_in(image, dir)?;
    if Arch::from(image.config.board.arch) == Arch::Aarch64 {
        return emulator::qemu_aarch64(&image, cmdline, emulator::QEMU_TIMEOUT);
    }
    let iso = build::iso(&image, cmdline)?;
    emulator::bochs(&image, &iso, bochs)
}

fn golden(image: &Image, dir: &Path) -> Result<Golden> {
    let run = boot(image, &dir.join("golden"), "")?;
    let lines = pair_lines(&run);
    let exits = run
        .log
        .iter()
        .find_map(|l| {
            let marker = format!("partition {PAIR} stopped after ");
            let rest = &l[l.find(&marker)? + marker.len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .context("the golden run did not report its exits")?;
    if !run.success || lines.is_empty() {
        bail!("the golden run failed:\n{}", run.console.join("\n"));
    }
    Ok(Golden { lines, exits })
}

#[derive(Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    /// p50, p99 and max of `values`, nearest rank (zeros when there are none).
    pub(crate) fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        Percentiles {
            p50: percentile(&values, 0.5),
            p99: percentile(&values, 0.99),
            max: values.last().copied().unwrap_or(0),
        }
    }
}

/// What the output oracle found in one run of a fault-tolerance campaign.
pub(crate) struct Verdict {
    pub(crate) passed: bool,
    pub(crate) lost_outputs: u64,
    pub(crate) duplicates: u64,
    pub(crate) duplicates_outside_cut: u64,
    pub(crate) split_brain: bool,
    pub(crate) divergences: u64,
    pub(crate) failover_ns: Option<u64>,
}

/// A fault-tolerance campaign's totals (`report.json`).
#[derive(Serialize)]
pub(crate) struct Summary {
    pub(crate) campaign: String,
    pub(crate) arch: &'static str,
    pub(crate) runs: u64,
    pub(crate) seed: u64,
    pub(crate) passed: u64,
    pub(crate) lost_outputs: u64,
    pub(crate) duplicates: u64,
    pub(crate) duplicates_outside_cut: u64,
    pub(crate) split_brain: u64,
    pub(crate) divergences: u64,
    pub(crate) failover_ns: Percentiles,
}

impl Summary {
    /// The totals of campaign `c` over its runs' verdicts.
    pub(crate) fn of(c: &Campaign, runs: &[Verdict]) -> Self {
        let sum = |f: fn(&Verdict) -> u64| runs.iter().map(f).sum();
        Summary {
            campaign: c.name.clone(),
            arch: c.arch.name(),
            runs: runs.len() as u64,
            seed: c.seed,
            passed: runs.iter().filter(|r| r.passed).count() as u64,
            lost_outputs: sum(|r| r.lost_outputs),
            duplicates: sum(|r| r.duplicates),
            duplicates_outside_cut: sum(|r| r.duplicates_outside_cut),
            split_brain: runs.iter().filter(|r| r.split_brain).count() as u64,
            divergences: sum(|r| r.divergences),
            failover_ns: Percentiles::of(runs.iter().filter_map(|r| r.failover_ns).collect()),
        }
    }

    pub(crate) fn all_passed(&self) -> bool {
        self.passed == self.runs
    }

    /// The campaign's last line: its totals and where its report is.
    pub(crate) fn print(&self, out: &Path) {
        println!(
            "{}: {} of {} runs passed; lost outputs {}, duplicates outside the cut {}, split brain {}, divergences {}; failover p50 {} ns, p99 {} ns, max {} ns; report in {}",
            self.campaign,
            self.passed,
            self.runs,
            self.lost_outputs,
            self.duplicates_outside_cut,
            self.split_brain,
            self.divergences,
            self.failover_ns.p50,
            self.failover_ns.p99,
            self.failover_ns.max,
            out.display()
        );
    }
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
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
    Summary::of(c, &verdicts)
}

/// The HTML report: totals, one row per run, and a histogram of failover times, all inline.
fn html(summary: &Summary, reports: &[RunReport]) -> String {
    let mut rows = String::new();
    for r in reports {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.seed,
            r.kill,
            r.outcome,
            r.failover_ns
                .map_or("-".into(), |n| format!("{:.2}", n as f64 / 1e6)),
            r.duplicates,
            r.lost_outputs,
            r.problems.join("; ")
        );
    }
    let times: Vec<u64> = reports.iter().filter_map(|r| r.failover_ns).collect();
    let max = times.iter().copied().max().unwrap_or(1).max(1);
    const BINS: usize = 20;
    let mut bins = [0u64; BINS];
    for t in &times {
        bins[((*t as f64 / max as f64) * (BINS - 1) as f64) as usize] += 1;
    }
    let tallest = bins.iter().copied().max().unwrap_or(1).max(1);
    let mut bars = String::new();
    for (i, &n) in bins.iter().enumerate() {
        let h = n * 150 / tallest;
        let _ = write!(
            bars,
            "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"{h}\" fill=\"#4a7\"><title>{n} runs</title></rect>",
            40 + i * 20,
            170 - h
        );
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Tandem {campaign} campaign</title>\
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;border-bottom:1px solid #ccc}}</style>\
<h1>{campaign} on {arch}: {passed} of {runs} runs passed</h1>\
<p>seed {seed}; lost outputs {lost}; duplicates {dups} ({outside} outside the cut); split brain {split}; divergences {div}; \
failover p50 {p50:.2} ms, p99 {p99:.2} ms, max {maxms:.2} ms (virtual time)</p>\
<h2>Failover time</h2><svg width=\"460\" height=\"200\">{bars}\
<line x1=\"40\" y1=\"170\" x2=\"440\" y2=\"170\" stroke=\"#000\"/>\
<text x=\"40\" y=\"190\">0</text><text x=\"380\" y=\"190\">{maxms:.2} ms</text></svg>\
<h2>Runs</h2><table><tr><th>seed</th><th>kill</th><th>outcome</th><th>failover ms</th><th>duplicates</th><th>lost</th><th>problems</th></tr>{rows}</table>",
        campaign = summary.campaign,
        arch = summary.arch,
        passed = summary.passed,
        runs = summary.runs,
        seed = summary.seed,
        lost = summary.lost_outputs,
        dups = summary.duplicates,
        outside = summary.duplicates_outside_cut,
        split = summary.split_brain,
        div = summary.divergences,
        p50 = summary.failover_ns.p50 as f64 / 1e6,
        p99 = summary.failover_ns.p99 as f64 / 1e6,
        maxms = summary.failover_ns.max as f64 / 1e6,
    )
}

/// Writes a campaign's files into `out`: `runs.jsonl` (one object per run), `report.json` (the
/// summary) and `report.html`.
pub(crate) fn write_reports<R: Serialize, S: Serialize>(
    out: &Path,
    runs: &[R],
    summary: &S,
    html: &str,
) -> Result<()> {
    let mut jsonl = String::new();
    for r in runs {
        jsonl.push_str(&serde_json::to_string(r)?);
        jsonl.push('\n');
    }
    fs::write(out.join("runs.jsonl"), jsonl)?;
    fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    fs::write(out.join("report.html"), html)?;
    Ok(())
}

/// Names a failed run of campaign `c` with the command that reruns it alone.
pub(crate) fn print_failed(c: &Campaign, seed: u64, what: &str, problems: &[String]) {
    println!(
        "run {seed} ({what}) failed: {} (cargo xtask inject --campaign {} --arch {} --replay {seed})",
        problems.join("; "),
        c.name,
        c.arch.name()
    );
}

pub(crate) fn progress(done: u64, total: u64, failed: u64) {
    eprint!(
        "\r{} {done}/{total} runs, {failed} failed",
        terminal::bar(done, total)
    );
    let _ = std::io::stderr().flush();
}

/// Runs the campaign; true when every run passed.
pub fn run(c: &Campaign) -> Result<bool> {
    if c.name != FT_KILL {
        bail!(
            "unknown campaign `{}` (this runner has `{FT_KILL}`)",
            c.name
        );
    }
    tools::require(match c.arch {
        Arch::X86_64 => tools::BOCHS,
        Arch::Aarch64 => tools::QEMU_AARCH64,
    })?;
    let config = root().join(format!("tests/campaigns/ft-kill-{}.toml", c.arch.name()));
    let guests = guests::build(c.arch)?;
    let out = c
        .out
        .clone()
        .unwrap_or_else(|| root().join(format!("build/campaign-ft-kill-{}/report", c.arch.name())));
    // Campaigns writing to different folders build and boot in different folders too, so they
    // can run at once (the test suite's slice next to a long campaign).
    let tag = out
        .file_name()
        .map_or("report".into(), |n| n.to_string_lossy().to_string());
    let image = build::build(
        &config,
        &guests,
        &format!("campaign-ft-kill-{}-{tag}", c.arch.name()),
    )?;
    fs::create_dir_all(&out)?;
    let scratch = image.dir.join("runs");
    let golden = golden(&image, &scratch)?;
    let seeds: Vec<u64> = match c.replay {
        Some(seed) => vec![seed],
        None => (0..c.runs).map(|i| mix(c.seed ^ mix(i))).collect(),
    };
    let queue = Mutex::new(seeds.iter().copied().enumerate());
    let reports = Mutex::new(Vec::new());
    let total = seeds.len() as u64;
    progress(0, total, 0);
    thread::scope(|scope| {
        for worker in 0..2 {
            let (queue, reports, image, golden, scratch) =
                (&queue, &reports, &image, &golden, &scratch);
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((_, seed)) = next else { break };
                    let kill = kill_point(seed, golden);
                    let dir = scratch.join(format!("worker-{worker}"));
                    let report = match boot(image, &dir, &kill) {
                        Ok(run) => judge(seed, kill, &run, golden),
                        Err(e) => RunReport {
                            seed,
                            kill,
                            outcome: "failed",
                            lost_outputs: 0,
                            duplicates: 0,
                            duplicates_outside_cut: 0,
                            split_brain: false,
                            divergences: 0,
                            failover_ns: None,
                            problems: vec![format!("{e:#}")],
                        },
                    };
                    let mut all = reports.lock().unwrap();
                    all.push(report);
                    let failed = all.iter().filter(|r| r.outcome != "passed").count() as u64;
                    progress(all.len() as u64, total, failed);
                }
            });
        }
    });
    eprintln!();
    let mut reports = reports.into_inner().unwrap();
    reports.sort_by_key(|r| seeds.iter().position(|&s| s == r.seed));
    let summary = summarize(c, &reports);
    write_reports(&out, &reports, &summary, &html(&summary, &reports))?;
    for r in reports.iter().filter(|r| r.outcome != "passed") {
        print_failed(c, r.seed, &r.kill, &r.problems);
    }
    summary.print(&out);
    Ok(summary.all_passed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn golden() -> Golden {
        Golden {
            lines: (1..=5).map(|i| format!("count {i}")).collect(),
            exits: 100,
        }
    }

    fn run_printing(lines: &[u32], log: &[&str]) -> Run {
        Run {
            success: true,
            failed_cleanly: false,
            status: Some(0),
            timed_out: false,
            console: lines.iter().map(|i| format!("[pair] count {i}")).collect(),
            log: log.iter().map(|l| l.to_string()).collect(),
            malformed_frames: 0,
            emulator_log: String::new(),
            elapsed: Duration::ZERO,
            ended_by_user: false,
        }
    }

    const LIVE: &[&str] = &[
        "WARN  injected: the FT primary's CPU dies at Exit(3) (1000 ns)",
        "WARN  FT backup goes live at exit 9 (5000 ns); printing outputs 2..3",
    ];

    #[test]
    fn a_clean_failover_passes_and_measures_the_failover_time() {
        let r = judge(
            1,
            "k".into(),
            &run_printing(&[1, 2, 3, 4, 5], LIVE),
            &golden(),
        );
        assert_eq!(r.outcome, "passed", "{:?}", r.problems);
        assert_eq!(r.failover_ns, Some(4000));
    }

    #[test]
    fn a_repeat_at_the_cut_is_counted_not_failed() {
        let r = judge(
            1,
            "k".into(),
            &run_printing(&[1, 2, 3, 2, 3, 4, 5], LIVE),
            &golden(),
        );
        assert_eq!((r.outcome, r.duplicates), ("passed", 2));
    }

    #[test]
    fn a_lost_line_a_late_repeat_and_a_split_brain_fail() {
        let lost = judge(1, "k".into(), &run_printing(&[1, 2, 4, 5], LIVE), &golden());
        assert_eq!((lost.outcome, lost.lost_outputs), ("failed", 1));
        let late = judge(
            1,
            "k".into(),
            &run_printing(&[1, 2, 3, 4, 5, 2], LIVE),
            &golden(),
        );
        assert_eq!(late.outcome, "failed");
        let mut both = LIVE.to_vec();
        both.push("INFO  partition pair stopped: shutdown with code 0");
        let split = judge(
            1,
            "k".into(),
            &run_printing(&[1, 2, 3, 4, 5], &both),
            &golden(),
        );
        assert!(split.split_brain && split.outcome == "failed");
        let never = judge(
            1,
            "k".into(),
            &run_printing(&[1, 2, 3, 4, 5], &[]),
            &golden(),
        );
        assert_eq!(never.outcome, "failed", "the backup must go live");
    }
}
