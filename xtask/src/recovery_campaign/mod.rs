//! `cargo xtask inject --campaign failstop|register|code|memory|hang`: the hypervisor's
//! self-recovery campaigns (recovery.md sections 5 and 7). Each run boots the two-partition
//! workload of `tests/campaigns/recovery-ARCH.toml` with `recovery=MODE` and one seeded fault
//! injected into the hypervisor itself (`inject=model:M,seed:S,exits:N,steps:K`), and is
//! classified (5.5) from the hypervisor's log and each partition's console stream against
//! fault-free golden runs. Writes `runs.jsonl`, `report.json` and `report.html`.

#[cfg(test)]
mod fixtures;
mod golden;
mod html;
mod judge;
mod log;
mod model;
mod outcome;
mod report;
mod setup;
mod stats;
mod stream;
mod trigger;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use self::golden::{Golden, GoldenRuns};
use self::judge::{RunReport, judge, runner_error};
use self::model::Model;
use self::report::Summary;
use self::trigger::Trigger;
use crate::build::{self, Image};
use crate::inject::{Campaign, FT_KILL, boot, boot_within, mix, progress};
use crate::{Arch, RecoveryMode, guests, root, tools};

/// A faulty run's wall-time bound in Bochs: a normal run takes about 3 s, so an undetected hang
/// is called after 30 s rather than the default 120 (QEMU runs keep their default).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs booted at once, one emulator each: the machine has two cores.
const WORKERS: usize = 2;

/// What one run is to be.
pub struct Planned {
    /// The run's replay id, and the seed the hypervisor draws its fault from.
    pub seed: u64,
    pub model: Model,
    pub mode: RecoveryMode,
    pub cmdline: String,
}

/// The command that reruns the run with `seed` alone.
pub fn replay_command(model: &str, arch: &str, mode: &str, seed: u64) -> String {
    format!("cargo xtask inject --campaign {model} --arch {arch} --mode {mode} --replay {seed}")
}

/// Boots and judges every planned run, [`WORKERS`] at a time, each in its worker's folder (a
/// single run, as `--replay` makes, in `worker-0`).
fn run_all(image: &Image, golden: &Golden, plans: &[Planned], scratch: &Path) -> Vec<RunReport> {
    let queue = Mutex::new(plans.iter());
    let reports = Mutex::new(Vec::new());
    let total = plans.len() as u64;
    progress(0, total, 0);
    thread::scope(|scope| {
        for worker in 0..WORKERS.min(plans.len()) {
            let (queue, reports) = (&queue, &reports);
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some(plan) = next else { break };
                    let dir = scratch.join(format!("worker-{worker}"));
                    let report = match boot_within(image, &dir, &plan.cmdline, RUN_TIMEOUT) {
                        Ok(run) => judge(plan, &run, golden),
                        Err(e) => runner_error(plan, &e),
                    };
                    let mut all = reports.lock().unwrap();
                    all.push(report);
                    let failed = all.iter().filter(|r| r.outcome.failed()).count() as u64;
                    progress(all.len() as u64, total, failed);
                }
            });
        }
    });
    eprintln!();
    let mut reports = reports.into_inner().unwrap();
    reports.sort_by_key(|r| plans.iter().position(|p| p.seed == r.seed));
    reports
}

fn write_reports(out: &Path, summary: &Summary, model: Model, reports: &[RunReport]) -> Result<()> {
    let mut jsonl = String::new();
    for r in reports {
        jsonl.push_str(&serde_json::to_string(r)?);
        jsonl.push('\n');
    }
    let write = |name: &str, text: String| {
        fs::write(out.join(name), text)
            .with_context(|| format!("writing {}", out.join(name).display()))
    };
    write("runs.jsonl", jsonl)?;
    write("report.json", serde_json::to_string_pretty(summary)?)?;
    write("report.html", html::render(summary, model, reports))
}

/// The console's account: each failed run with its replay command, then the totals.
fn print_results(c: &Campaign, summary: &Summary, reports: &[RunReport], out: &Path) {
    let arch = c.arch.name();
    for r in reports
        .iter()
        .filter(|r| r.outcome.failed() || c.replay.is_some())
    {
        let what = r.injection.as_deref().unwrap_or(&r.cmdline);
        let verdict = if r.outcome.failed() {
            "failed"
        } else {
            "ended"
        };
        println!(
            "run {} ({what}) {verdict}: {}{}{} ({})",
            r.seed,
            r.cause(),
            if r.problems.is_empty() { "" } else { ": " },
            r.problems.join("; "),
            replay_command(r.model, arch, r.mode, r.seed)
        );
    }
    if summary.unarmed > 0 {
        println!(
            "the hypervisor armed no injection in {} of {} runs (no `fault injection armed` line): \
             does it take `inject=model:...`?",
            summary.unarmed, summary.runs
        );
    }
    let pct = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.1} %", r * 100.0));
    let ci = |c: Option<[f64; 2]>| {
        c.map_or("-".into(), |[lo, hi]| {
            format!("{:.1}-{:.1} %", lo * 100.0, hi * 100.0)
        })
    };
    let outcomes: Vec<String> = summary
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(o, n)| format!("{o} {n}"))
        .collect();
    println!(
        "{} ({}) on {arch}: {} runs ({}); recovered {} of {} detected (95 % CI {}), noVMF {} ({}); \
         golden runs {}, false detections {}{}; runner errors {}, runs not armed {}; report in {}",
        c.name,
        summary.mode,
        summary.runs,
        if outcomes.is_empty() {
            "none".into()
        } else {
            outcomes.join(", ")
        },
        pct(summary.recovered_rate),
        summary.detected,
        ci(summary.recovered_ci95),
        pct(summary.novmf_rate),
        ci(summary.novmf_ci95),
        summary.golden_runs,
        summary.golden_false_detections,
        summary
            .golden_problems
            .iter()
            .map(|p| format!(", {p}"))
            .collect::<String>(),
        summary.runner_errors,
        summary.unarmed,
        out.display()
    );
}

/// Runs the campaign; true when it measured soundly (clean golden runs, every run booted with
/// its injection armed), whatever the rates: a campaign is a measurement, and a low rate is its
/// result.
pub fn run(c: &Campaign) -> Result<bool> {
    Ok(measure(c)?.sound())
}

/// Runs the campaign, writes and prints its reports, and returns its totals.
pub fn measure(c: &Campaign) -> Result<Summary> {
    let model = Model::parse(&c.name).ok_or_else(|| {
        let names: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
        anyhow!(
            "unknown campaign `{}` (there are {FT_KILL}, {})",
            c.name,
            names.join(", ")
        )
    })?;
    let arch = c.arch.name();
    tools::require(match c.arch {
        Arch::X86_64 => tools::BOCHS,
        Arch::Aarch64 => tools::QEMU_AARCH64,
    })?;
    let config = root().join(format!("tests/campaigns/recovery-{arch}.toml"));
    let guests = guests::build(c.arch)?;
    // A replay writes beside the campaign's report, not over it.
    let folder = c
        .replay
        .map_or("report".into(), |seed| format!("replay-{seed}"));
    let out = c
        .out
        .clone()
        .unwrap_or_else(|| root().join(format!("build/campaign-{}-{arch}/{folder}", c.name)));
    // Campaigns writing to different folders build and boot in different folders too, so they
    // can run at once.
    let tag = out
        .file_name()
        .map_or("report".into(), |n| n.to_string_lossy().to_string());
    // The commit the image is built from, taken now: commits made while the runs go on are
    // not in it.
    let commit = setup::commit();
    let image = build::build(
        &config,
        &guests,
        &format!("campaign-{}-{arch}-{tag}", c.name),
    )?;
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let scratch = image.dir.join("runs");
    let names: Vec<String> = image
        .config
        .system
        .partitions
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let golden_cmdline = trigger::golden_cmdline(c.mode);
    let first = boot(&image, &scratch.join("golden-first"), &golden_cmdline)?;
    let mut goldens = GoldenRuns::first(&first, &names)?;
    let seeds: Vec<u64> = match c.replay {
        Some(seed) => vec![seed],
        None => (0..c.runs).map(|i| mix(c.seed ^ mix(i))).collect(),
    };
    let plans: Vec<Planned> = seeds
        .into_iter()
        .map(|seed| Planned {
            seed,
            model,
            mode: c.mode,
            cmdline: trigger::cmdline(
                c.mode,
                model,
                seed,
                Trigger::for_seed(seed, goldens.first.exits),
            ),
        })
        .collect();
    let reports = run_all(&image, &goldens.first, &plans, &scratch);
    // A last fault-free run shows the runs' machine stayed the one the first judged against.
    match boot(&image, &scratch.join("golden-last"), &golden_cmdline) {
        Ok(last) => goldens.add(&last, &names),
        Err(e) => goldens
            .problems
            .push(format!("the last golden run did not boot: {e:#}")),
    }
    let setup = setup::describe(model, c.mode, c.seed, commit, &config, &image, &goldens);
    let summary = report::summarize((model.name(), arch), setup, &goldens, &reports);
    write_reports(&out, &summary, model, &reports)?;
    print_results(c, &summary, &reports, &out);
    if c.replay.is_some() {
        println!(
            "the run's files are in {}",
            scratch.join("worker-0").display()
        );
    }
    Ok(summary)
}
