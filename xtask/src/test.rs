//! `cargo xtask test`: host unit tests, then every integration scenario booted in an emulator.
//! Ends with `N passed, N failed`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::thread;

use anyhow::{Context, Result};

use crate::build::{self, Image};
use crate::config::{ArchName, EmulatorName};
use crate::emulator::{self, Accel, Feed, Run};
use crate::scenario::{self, Rule};
use crate::{
    Arch, RecoveryMode, cluster, flash, guests, hil, inject, linux, monitor, recovery_campaign,
    root, tools, user_images,
};

/// Scenarios whose names contain this boot Debian's arm64 kernel (`cargo xtask fetch-linux`).
const LINUX_DEBIAN: &str = "linux-debian";

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

/// Sums libtest's `test result:` lines.
fn count_unit_results(output: &str, tally: &mut Tally) {
    for line in output.lines().filter(|l| l.starts_with("test result:")) {
        let number = |word: &str| {
            line.split(';')
                .find(|part| part.trim_end().ends_with(word))
                .and_then(|part| part.split_whitespace().rev().nth(1))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        };
        tally.passed += number("passed");
        tally.failed += number("failed");
    }
}

fn unit_tests(tally: &mut Tally) -> Result<()> {
    println!("== host unit tests (cargo test)");
    let out = Command::new("cargo")
        .current_dir(root())
        // The workspace's default members are exactly the host-testable crates.
        .arg("test")
        .output()
        .context("running cargo test")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let before = tally.failed;
    count_unit_results(&stdout, tally);
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("test result:") || l.contains("FAILED") || l.contains("panicked"))
    {
        println!("   {line}");
    }
    if !out.status.success() && tally.failed == before {
        // A build failure runs no test; count it so the run fails.
        println!("{}", String::from_utf8_lossy(&out.stderr));
        tally.failed += 1;
    }
    Ok(())
}

/// A scenario whose image is built (or failed to build), waiting for an emulator: Bochs boots
/// an ISO, QEMU x86 one too when images travel beside the hypervisor, QEMU otherwise the ELF
/// itself.
struct Prepared {
    name: String,
    image: Result<(Image, Option<PathBuf>)>,
    rules: Vec<Rule>,
}

impl Prepared {
    fn new(s: Scenario, guests: &guests::Guests) -> Self {
        let cmdline = scenario::cmdline(&s.rules);
        let image = build::build_on(
            &s.config,
            s.board.as_deref(),
            guests,
            &format!("test-{}", s.name.replace('/', "-")),
        )
        .and_then(|img| {
            let iso = build::boot_iso(&img, &cmdline, scenario::module(&s.rules))?;
            Ok((img, iso))
        });
        Self {
            name: s.name,
            image,
            rules: s.rules,
        }
    }

    fn run(self, tally: &Mutex<Tally>) {
        let cmdline = scenario::cmdline(&self.rules);
        let accel = if self.rules.contains(&Rule::QemuTcg) {
            Accel::Tcg
        } else {
            Accel::Kvm
        };
        let steps = scenario::input(&self.rules);
        let run = self.image.and_then(|(img, iso)| {
            // Kept whole beside the run, for whoever looks into it afterwards.
            let bytes: Vec<u8> = steps.iter().flat_map(|s| s.bytes.clone()).collect();
            std::fs::write(img.dir.join("console.in"), bytes)?;
            Ok((img, iso))
        });
        // With `wait:` rules the line gets its input in steps, otherwise `console.in` at once.
        let feed = || {
            if steps.iter().any(|s| s.after.is_some()) {
                Feed::Script(steps.clone())
            } else {
                Feed::File
            }
        };
        let run = run.and_then(|(img, iso)| {
            let board = &img.config.board;
            let qemu_timeout = scenario::timeout(&self.rules, emulator::QEMU_TIMEOUT);
            match (board.arch, board.emulator, iso) {
                (ArchName::Aarch64, ..) => {
                    emulator::qemu_aarch64_fed(&img, &cmdline, qemu_timeout, feed())
                }
                (_, EmulatorName::Bochs, Some(iso)) => emulator::bochs_fed(
                    &img,
                    &iso,
                    scenario::timeout(&self.rules, emulator::BOCHS_TIMEOUT),
                    feed(),
                ),
                (_, EmulatorName::Bochs, None) => anyhow::bail!("Bochs boots from an ISO"),
                (_, EmulatorName::None, _) => {
                    anyhow::bail!("board `{}` has no emulator", board.name)
                }
                (_, EmulatorName::Qemu, iso) => {
                    emulator::qemu(&img, iso.as_deref(), &cmdline, accel, qemu_timeout)
                }
            }
        });
        report(&self.name, run, &self.rules, tally);
    }
}

struct Scenario {
    name: String,
    config: PathBuf,
    /// The board it runs on instead of the one its file names (its GICv2 twin).
    board: Option<String>,
    rules: Vec<Rule>,
}

/// The GICv2 twin of an aarch64 board: the same machine with `gic-version=2`, every scenario's
/// second run (`aarch64-gicv2/...`). A scenario may expect otherwise there in
/// `NAME.gicv2.expect` (a board misdeclared on a GICv2 names another field).
const GICV2_TWIN: &str = "-gicv2";

fn scenarios(arch: Arch, filter: Option<&str>) -> Result<Vec<Scenario>> {
    let dir = root().join("tests/scenarios").join(arch.name());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let mut runs = vec![(format!("{}/{stem}", arch.name()), None, "expect")];
        if arch == Arch::Aarch64 {
            let board = crate::config::board_of(&path)?.name + GICV2_TWIN;
            let twin = format!("{}{GICV2_TWIN}/{stem}", arch.name());
            runs.push((twin, Some(board), "gicv2.expect"));
        }
        for (name, board, expect) in runs {
            if filter.is_some_and(|f| !name.contains(f)) {
                continue;
            }
            let own = path.with_extension(expect);
            let expect = if own.exists() {
                own
            } else {
                path.with_extension("expect")
            };
            found.push(Scenario {
                name,
                config: path.clone(),
                board,
                rules: scenario::parse(&expect)?,
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn report(name: &str, run: Result<Run>, rules: &[Rule], tally: &Mutex<Tally>) {
    let failures = match &run {
        Ok(run) => scenario::check(rules, run),
        Err(e) => vec![format!("{e:#}")],
    };
    let mut t = tally.lock().unwrap();
    let elapsed = run.as_ref().map(|r| r.elapsed.as_secs_f64()).unwrap_or(0.0);
    if failures.is_empty() {
        t.passed += 1;
        println!("test {name} ... ok ({elapsed:.1}s)");
    } else {
        t.failed += 1;
        println!("test {name} ... FAILED ({elapsed:.1}s)");
        for f in &failures {
            println!("    {f}");
        }
        if let Ok(run) = &run {
            println!("    --- output");
            run.print("    ");
            println!("    --- emulator log tail\n{}", run.emulator_log);
        }
    }
}

fn integration(arch: Arch, filter: Option<&str>, tally: &Mutex<Tally>) -> Result<()> {
    let list = scenarios(arch, filter)?;
    if list.is_empty() {
        return Ok(());
    }
    println!(
        "== {} integration tests ({} scenarios)",
        arch.name(),
        list.len()
    );
    tools::require(match arch {
        Arch::X86_64 => tools::BOCHS,
        Arch::Aarch64 => tools::QEMU_AARCH64,
    })?;
    let guests = guests::build(arch)?;
    user_images::build(arch)?;
    // Scenarios that boot Debian's kernel fail on their own (missing files) if it cannot be
    // fetched; the others run.
    if list.iter().any(|s| s.name.contains(LINUX_DEBIAN))
        && let Err(e) = linux::fetch()
    {
        println!("    cannot fetch Linux: {e:#}");
    }
    // Builds share cargo's target directory, so they run one at a time; boots run two at a time.
    let ready: Vec<Prepared> = list
        .into_iter()
        .map(|s| Prepared::new(s, &guests))
        .collect();
    let queue = Mutex::new(ready.into_iter());
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some(p) = next else { break };
                    p.run(tally);
                }
            });
        }
    });
    Ok(())
}

/// A small seeded slice of each fault-injection campaign on each architecture (the full ones
/// are `cargo xtask inject`): ft-kill on one board, ft-boards across two.
fn campaigns(filter: Option<&str>, tally: &Mutex<Tally>) {
    const SLICES: [(&str, u64); 2] = [(inject::FT_KILL, 4), (cluster::campaign::FT_BOARDS, 3)];
    let wanted: Vec<(Arch, &str, u64)> = SLICES
        .into_iter()
        .flat_map(|(name, runs)| Arch::ALL.into_iter().map(move |a| (a, name, runs)))
        .filter(|(a, name, _)| {
            filter.is_none_or(|f| format!("{}/campaign-{name}", a.name()).contains(f))
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    println!("== campaigns (a seeded slice of each)");
    for (arch, name, runs) in wanted {
        let test = format!("{}/campaign-{name}", arch.name());
        let campaign = inject::Campaign {
            name: name.into(),
            arch,
            runs,
            seed: 1,
            out: Some(root().join(format!("build/test-campaign-{name}-{}", arch.name()))),
            replay: None,
            // These campaigns boot without recovery options.
            mode: RecoveryMode::Microreboot,
        };
        let result = if name == inject::FT_KILL {
            inject::run(&campaign)
        } else {
            cluster::campaign::run(&campaign)
        };
        let mut t = tally.lock().unwrap();
        match result {
            Ok(true) => {
                t.passed += 1;
                println!("test {test} ... ok");
            }
            other => {
                t.failed += 1;
                println!("test {test} ... FAILED");
                if let Err(e) = other {
                    println!("    {e:#}");
                }
            }
        }
    }
}

/// The recovery campaigns' slices: each fault model a few seeded runs, in one of the modes. A
/// failstop or a hang is always detected and, here, always recovered with no partition
/// affected; the bit-flip models' outcomes vary by seed, so their slices check that every run
/// was armed and judged and that the fault-free runs saw no detection.
fn recovery_campaigns(filter: Option<&str>, tally: &Mutex<Tally>) {
    const RUNS: u64 = 3;
    const MODELS: [(&str, RecoveryMode); 5] = [
        ("failstop", RecoveryMode::Microreboot),
        ("hang", RecoveryMode::Microreset),
        ("register", RecoveryMode::Microreboot),
        ("code", RecoveryMode::Microreboot),
        ("memory", RecoveryMode::Microreset),
    ];
    for arch in Arch::ALL {
        for (model, mode) in MODELS {
            let name = format!("{}/campaign-{model}", arch.name());
            if filter.is_some_and(|f| !name.contains(f)) {
                continue;
            }
            let campaign = inject::Campaign {
                name: model.into(),
                arch,
                runs: RUNS,
                seed: 1,
                out: Some(root().join(format!("build/test-campaign-{model}-{}", arch.name()))),
                replay: None,
                mode,
            };
            let verdict = recovery_campaign::measure(&campaign).map(|s| {
                let always = matches!(model, "failstop" | "hang");
                let mut problems = Vec::new();
                if !s.sound() {
                    problems.push("the campaign did not measure soundly".to_string());
                }
                if always && (s.detected != RUNS || s.novmf_rate != Some(1.0)) {
                    problems.push(format!(
                        "{} of {RUNS} runs detected, noVMF rate {:?}",
                        s.detected, s.novmf_rate
                    ));
                }
                problems
            });
            let mut t = tally.lock().unwrap();
            match verdict {
                Ok(problems) if problems.is_empty() => {
                    t.passed += 1;
                    println!("test {name} ... ok");
                }
                other => {
                    t.failed += 1;
                    println!("test {name} ... FAILED");
                    match other {
                        Ok(problems) => problems.iter().for_each(|p| println!("    {p}")),
                        Err(e) => println!("    {e:#}"),
                    }
                }
            }
        }
    }
}

/// The pair-across-boards scenarios on each architecture (`cluster::scenarios`): one image per
/// architecture, booted on two or three emulated boards joined by the hub, with the witness.
fn ft_boards(filter: Option<&str>, tally: &Mutex<Tally>) {
    // aarch64's pair also runs on its board's GICv2 twin, as the integration scenarios do.
    let twin = cluster::scenarios::config(Arch::Aarch64);
    let twin = crate::config::board_of(&twin).map(|b| b.name + GICV2_TWIN);
    let runs = [
        (Arch::X86_64, Arch::X86_64.name().to_string(), None),
        (Arch::Aarch64, Arch::Aarch64.name().to_string(), None),
        (
            Arch::Aarch64,
            format!("{}{GICV2_TWIN}", Arch::Aarch64.name()),
            Some(twin),
        ),
    ];
    for (arch, label, board) in runs {
        let name = |s: &str| format!("{label}/ft-boards-{s}");
        let list: Vec<_> = cluster::scenarios::all()
            .into_iter()
            .filter(|s| filter.is_none_or(|f| name(&s.name).contains(f)))
            .collect();
        if list.is_empty() {
            continue;
        }
        println!(
            "== {label} fault tolerance across boards ({} scenarios)",
            list.len()
        );
        let image = match &board {
            Some(Err(e)) => Err(anyhow::anyhow!("{e}")),
            Some(Ok(b)) => {
                cluster::scenarios::image_on(arch, Some(b), &format!("test-{label}-ft-boards"))
            }
            None => cluster::scenarios::image(arch, &format!("test-{label}-ft-boards")),
        };
        for s in &list {
            let result = image
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|(image, iso)| cluster::scenarios::run_one(image, iso.as_deref(), s));
            let mut t = tally.lock().unwrap();
            match result {
                Ok((outcome, problems)) if problems.is_empty() => {
                    t.passed += 1;
                    println!(
                        "test {} ... ok ({:.1}s)",
                        name(&s.name),
                        outcome.elapsed.as_secs_f64()
                    );
                }
                Ok((outcome, problems)) => {
                    t.failed += 1;
                    println!("test {} ... FAILED", name(&s.name));
                    problems.iter().for_each(|p| println!("    {p}"));
                    for (i, run) in outcome.boards.iter().enumerate() {
                        if let Some(run) = run {
                            println!("    --- board {i}");
                            run.print("    ");
                        }
                    }
                    println!("    --- witness");
                    outcome.witness_log.iter().for_each(|l| println!("    {l}"));
                    println!("    --- network (frames from, to: frames, bytes, dropped by a cut)");
                    for (from, row) in outcome.traffic.iter().enumerate() {
                        for (to, t) in row.iter().enumerate().filter(|(_, t)| t.frames + t.cut > 0)
                        {
                            println!(
                                "    {from} -> {to}: {} frames, {} bytes, {} cut",
                                t.frames, t.bytes, t.cut
                            );
                        }
                    }
                }
                Err(e) => {
                    t.failed += 1;
                    println!("test {} ... FAILED\n    {e:#}", name(&s.name));
                }
            }
        }
    }
}

/// The monitor decoding a recorded boot's log through a pty ([`monitor::replay::check`]).
const MONITOR_TEST: &str = "x86_64/monitor-pc";

/// `cargo xtask flash` to a file, then that very file booted as a PC would ([`flash::boot`]),
/// and the monitor on the log of its boot in Bochs (which then runs even if not selected).
fn flashed(filter: Option<&str>, tally: &Mutex<Tally>) {
    let selected = |name: &str| filter.is_none_or(|f| name.contains(f));
    let monitor = selected(MONITOR_TEST);
    let tests: Vec<_> = flash::boot::TESTS
        .iter()
        .filter(|t| selected(t.name) || (monitor && matches!(t.boot, flash::boot::Boot::BochsCd)))
        .collect();
    if tests.is_empty() {
        return;
    }
    println!("== flashed images ({} boots)", tests.len());
    let to = root().join("build/test-flash/pc-x86_64.img");
    let flashed = to
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(anyhow::Error::from)
        .and_then(|()| flash::run("pc-x86_64", None, &to, None, true));
    let mut bochs_log = None;
    for t in tests {
        let (rules, run) = match scenario::parse(&t.rules_file()) {
            Ok(rules) => {
                let run = flashed
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("flashing: {e:#}"))
                    .and_then(|f| t.run(f, &rules));
                (rules, run)
            }
            Err(e) => (Vec::new(), Err(e)),
        };
        if let (flash::boot::Boot::BochsCd, Ok(f)) = (t.boot, &flashed) {
            bochs_log = std::fs::read(f.image.dir.join("log.bin")).ok();
        }
        if selected(t.name) {
            report(t.name, run, &rules, tally);
        }
    }
    if monitor {
        let checked = match bochs_log {
            Some(log) => monitor::replay::check(
                &monitor::flashed_elf("pc-x86_64"),
                log,
                "all partitions stopped",
            ),
            None => Err(anyhow::anyhow!("the Bochs boot left no log to monitor")),
        };
        let mut t = tally.lock().unwrap();
        match checked {
            Ok(()) => {
                t.passed += 1;
                println!("test {MONITOR_TEST} ... ok");
            }
            Err(e) => {
                t.failed += 1;
                println!("test {MONITOR_TEST} ... FAILED\n    {e:#}");
            }
        }
    }
}

/// The Raspberry Pi 4's card image, checked as its firmware would read it.
const RPI4_SD_TEST: &str = "flash/rpi4-sd";

/// `cargo xtask flash --board rpi4` to a file, with Debian's firmware, and the file's structure
/// checked ([`flash::rpi_check`]): no emulator here models the board, so nothing boots it.
fn flashed_rpi4(filter: Option<&str>, tally: &Mutex<Tally>) {
    if filter.is_some_and(|f| !RPI4_SD_TEST.contains(f)) {
        return;
    }
    println!("== Raspberry Pi 4 SD card image (its structure; no emulator models the board)");
    let to = root().join("build/test-flash/rpi4.img");
    let checked = to
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(anyhow::Error::from)
        .and_then(|()| flash::run("rpi4", None, &to, None, true))
        .and_then(|flashed| flash::rpi_check::check(&flashed));
    let mut t = tally.lock().unwrap();
    match checked {
        Ok(()) => {
            t.passed += 1;
            println!("test {RPI4_SD_TEST} ... ok");
        }
        Err(e) => {
            t.failed += 1;
            println!("test {RPI4_SD_TEST} ... FAILED\n    {e:#}");
        }
    }
}

/// The stand-in rig's scenarios through `cargo xtask hil`'s runner.
fn hil(filter: Option<&str>, tally: &Mutex<Tally>) {
    let selected = |name: &str| filter.is_none_or(|f| name.contains(f));
    let rig = root().join(hil::STAND_IN);
    let mut announced = false;
    let ran = hil::run_rig(&rig, &selected, None, |case| {
        if !announced {
            println!("== hardware-in-the-loop scenarios on the stand-in rig ({STAND_IN_NOTE})");
            announced = true;
        }
        hil::print(case);
        let mut t = tally.lock().unwrap();
        match case.failure {
            None => t.passed += 1,
            Some(_) => t.failed += 1,
        }
    });
    if let Err(e) = ran {
        tally.lock().unwrap().failed += 1;
        println!("test hil ... FAILED\n    {e:#}");
    }
}

/// What the stand-in rig is, for the suite's heading.
const STAND_IN_NOTE: &str = "QEMU boards: pty serial, kill as power cut, QMP reset";

pub fn run(filter: Option<&str>) -> Result<bool> {
    let mut tally = Tally::default();
    if filter.is_none() {
        unit_tests(&mut tally)?;
    }
    let tally = Mutex::new(tally);
    for arch in Arch::ALL {
        integration(arch, filter, &tally)?;
    }
    flashed(filter, &tally);
    flashed_rpi4(filter, &tally);
    hil(filter, &tally);
    ft_boards(filter, &tally);
    campaigns(filter, &tally);
    recovery_campaigns(filter, &tally);
    let t = tally.into_inner().unwrap();
    println!("{} passed, {} failed", t.passed, t.failed);
    Ok(t.failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_are_summed() {
        let mut t = Tally::default();
        count_unit_results(
            "test result: ok. 33 passed; 0 failed; 0 ignored\ntest result: FAILED. 2 passed; 1 failed; 0 ignored",
            &mut t,
        );
        assert_eq!((t.passed, t.failed), (35, 1));
    }
}
