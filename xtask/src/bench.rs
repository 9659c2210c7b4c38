//! `cargo xtask bench`: costs measured in emulated instructions, which Bochs counts exactly (its
//! TSC advances once per instruction), so results repeat run after run.

use anyhow::{Context, Result, bail};

use crate::emulator::{self};
use crate::{Arch, bench_linux, build, guests, root, tools};

/// What the bench guest of `run` printed after `bench:`.
fn bench_result<'a>(run: &'a emulator::Run, which: &str) -> Result<&'a str> {
    let line = run
        .console
        .iter()
        .find(|l| l.contains("bench:"))
        .with_context(|| format!("the {which} bench guest printed no result"))?;
    Ok(line.split("bench:").nth(1).unwrap_or("").trim())
}

fn number_after<'a>(lines: &'a [String], marker: &str) -> Option<(&'a str, u64)> {
    lines.iter().find_map(|l| {
        let rest = &l[l.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some((l.as_str(), digits.parse().ok()?))
    })
}

/// A part of the bench: an architecture's exit costs and fault tolerance, or Linux's boot.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    #[value(name = "x86_64")]
    X86_64,
    Aarch64,
    Linux,
    /// Fault tolerance across two emulated boards, both architectures.
    FtBoards,
}

/// Runs every section, or `only` one.
pub fn run(only: Option<Section>) -> Result<()> {
    let wanted = |s: Section| only.is_none_or(|o| o == s);
    if wanted(Section::X86_64) {
        x86_64()?;
        fault_tolerance(Arch::X86_64)?;
    }
    if wanted(Section::Aarch64) {
        aarch64()?;
        fault_tolerance(Arch::Aarch64)?;
    }
    if wanted(Section::Linux) {
        bench_linux::run()?;
    }
    if wanted(Section::FtBoards) {
        for arch in Arch::ALL {
            crate::cluster::bench::run(arch)?;
        }
    }
    Ok(())
}

/// Boots `config` on `arch`'s emulator (Bochs, or QEMU `virt`) and returns its run, which must
/// end normally.
fn emulator_run(
    arch: Arch,
    config: &str,
    name: &str,
    guests: &guests::Guests,
) -> Result<emulator::Run> {
    emulator_run_with(arch, config, name, guests, "")
}

/// [`emulator_run`] with the hypervisor's boot command line `cmdline`.
fn emulator_run_with(
    arch: Arch,
    config: &str,
    name: &str,
    guests: &guests::Guests,
    cmdline: &str,
) -> Result<emulator::Run> {
    let image = build::build(&root().join(config), guests, name)?;
    let run = match arch {
        Arch::X86_64 => {
            let iso = build::iso(&image, cmdline)?;
            emulator::bochs(&image, &iso, emulator::BOCHS_TIMEOUT)?
        }
        Arch::Aarch64 => emulator::qemu_aarch64(&image, cmdline, emulator::QEMU_TIMEOUT)?,
    };
    if !run.success {
        run.print("  ");
        bail!(
            "the benchmark run {config} failed (status {:?})",
            run.status
        );
    }
    Ok(run)
}

/// Fault tolerance: exit costs on an FT primary (every exit is a logging boundary), then for an
/// idle timer guest the log's volume, the time the output rule holds a line and how far the
/// backup lags.
fn fault_tolerance(arch: Arch) -> Result<()> {
    let guests = guests::build(arch)?;
    let name = arch.name();
    let run = emulator_run(
        arch,
        &format!("tests/bench/{name}-ft.toml"),
        &format!("bench-{name}-ft"),
        &guests,
    )?;
    let result = bench_result(&run, "FT")?;
    println!("Fault tolerance on {name}, primary on CPU 0 and backup on CPU 1");
    println!("  exit round trip on the FT primary: {result}");
    if arch == Arch::Aarch64 {
        println!(
            "    (QEMU's virtual time counts every CPU's instructions: this includes what the backup ran meanwhile)"
        );
    }
    let run = emulator_run(
        arch,
        &format!("tests/bench/{name}-ft-log.toml"),
        &format!("bench-{name}-ft-log"),
        &guests,
    )?;
    let (records, bytes, _) = log_volume(&run)?;
    let ticks = run
        .console
        .iter()
        .find_map(|l| {
            let rest = &l[l.find("timer ticks ")? + "timer ticks ".len()..];
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .context("the timer guest reported no ticks")?;
    println!(
        "  log of an idle guest (50 timer ticks of 1 ms, its time reads, lines, heartbeats): {records} records, {bytes} bytes = {} bytes per timer tick, all inclusive",
        bytes / ticks.max(1)
    );
    if let Some((_, frames)) = number_after(&run.log, "FT log frames: ") {
        println!("  in {frames} frames (one header and CRC each)");
    }
    for (marker, what) in [
        ("FT output rule: ", "output rule"),
        ("FT backup lag behind the primary: ", "backup lag"),
    ] {
        if let Some(line) = run.log.iter().find(|l| l.contains(marker)) {
            println!(
                "  {what}: {}",
                line.split(marker).nth(1).unwrap_or("").trim()
            );
        }
    }
    let run = emulator_run(
        arch,
        &format!("tests/bench/{name}-ft-lines.toml"),
        &format!("bench-{name}-ft-lines"),
        &guests,
    )?;
    let (records, bytes, lines) = log_volume(&run)?;
    println!(
        "  log of a printing guest ({lines} lines, their exits, heartbeats): {records} records, {bytes} bytes = {} bytes per line, all inclusive",
        bytes / lines.max(1)
    );
    // The re-protection scenario's first failover, a third of the way in.
    let kill = match arch {
        Arch::X86_64 => "ft-kill=exit:400",
        Arch::Aarch64 => "ft-kill=exit:1000",
    };
    let run = emulator_run_with(
        arch,
        &format!("tests/scenarios/{name}/ft-reprotect.toml"),
        &format!("bench-{name}-ft-reprotect"),
        &guests,
        kill,
    )?;
    let marker = "FT re-protection of pair: ";
    let line = run
        .log
        .iter()
        .find(|l| l.contains(marker))
        .context("the live copy reported no re-protection")?;
    println!(
        "  re-protection onto the spare after a failover ({kill}, 4 MiB guest writing 32 pages per line): {}",
        line.split(marker).nth(1).unwrap_or("").trim()
    );
    Ok(())
}

/// Records, bytes and outputs the FT primary of `run` logged.
fn log_volume(run: &emulator::Run) -> Result<(u64, u64, u64)> {
    let log = run
        .log
        .iter()
        .find(|l| l.contains("FT primary log:"))
        .context("the FT primary reported no log statistics")?;
    let number = |marker: &str| number_after(std::slice::from_ref(log), marker).map(|(_, n)| n);
    Ok((
        number("log: ").context("no record count")?,
        number("records, ").context("no byte count")?,
        number("heartbeats, ").context("no output count")?,
    ))
}

/// QEMU `virt` at EL2 with `-icount shift=0`: the guest's virtual counter follows the machine's
/// virtual time, one nanosecond per instruction any CPU executes (`tests/probes/pmu-smp.S`); the
/// other CPU idles, so it counts the bench partition's instructions, at EL1 and EL2.
fn aarch64() -> Result<()> {
    let guests = guests::build(Arch::Aarch64)?;
    let run = emulator_run(
        Arch::Aarch64,
        "tests/bench/aarch64.toml",
        "bench-aarch64",
        &guests,
    )?;
    let result = bench_result(&run, "aarch64")?;
    println!("QEMU virt -cpu max at EL2, -icount shift=0; 1 cycle = 1 instruction (EL1 + EL2)");
    println!(
        "  exit round trip (exiting instruction, exception to EL2, hypervisor, ERET): {result}"
    );
    recovery(Arch::Aarch64, &guests)
}

fn x86_64() -> Result<()> {
    tools::require(tools::BOCHS)?;
    let guests = guests::build(Arch::X86_64)?;
    let run = emulator_run(
        Arch::X86_64,
        "tests/bench/x86_64.toml",
        "bench-x86_64",
        &guests,
    )?;
    let entered = number_after(&run.log, "entered at TSC ")
        .context("no boot TSC in the log")?
        .1;
    let first = number_after(&run.log, "enters on CPU 0 at TSC ")
        .context("no guest entry TSC")?
        .1;
    let result = bench_result(&run, "x86_64")?;
    println!("Bochs corei7_skylake_x, 1 CPU busy; 1 tick = 1 emulated instruction");
    println!("  boot (reset) to hypervisor entry:        {entered:>10} instructions");
    println!(
        "  hypervisor entry to first guest entry:   {:>10} instructions",
        first - entered
    );
    println!("  reset to first guest instruction:        {first:>10} instructions");
    println!("  exit round trip (exiting instruction, VM exit, hypervisor, VM entry): {result}");
    recovery(Arch::X86_64, &guests)
}

/// Self-recovery: the exit round trip with recovery on (each exit journaled, the watchdog's
/// heartbeat), and the time of one microreboot and one microreset of the recovery scenarios'
/// machine, step by step (virtual time: Bochs 4 instructions per microsecond, QEMU one per ns).
fn recovery(arch: Arch, guests: &guests::Guests) -> Result<()> {
    let name = arch.name();
    let run = emulator_run_with(
        arch,
        &format!("tests/bench/{name}.toml"),
        &format!("bench-{name}-recovery"),
        guests,
        "recovery=microreboot",
    )?;
    println!(
        "  exit round trip with recovery on (exit journal, heartbeat): {}",
        bench_result(&run, &format!("{name} recovery"))?
    );
    for mode in ["microreboot", "microreset"] {
        let run = emulator_run_with(
            arch,
            &format!("tests/scenarios/{name}/recovery-panic.toml"),
            &format!("bench-{name}-{mode}"),
            guests,
            &format!("recovery={mode} inject=model:failstop,exits:400,cpu:0"),
        )?;
        let marker = format!("recovery: resumed by {mode} in ");
        let line = run
            .log
            .iter()
            .find(|l| l.contains(&marker))
            .with_context(|| format!("no {mode} reported a resume"))?;
        println!(
            "  {mode} of two partitions after a panic: {}",
            line.split(marker.as_str()).nth(1).unwrap_or("").trim()
        );
    }
    Ok(())
}
