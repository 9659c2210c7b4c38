//! `cargo xtask bench`: costs measured in emulated instructions, which Bochs counts exactly (its
//! TSC advances once per instruction), so results repeat run after run.

use anyhow::{Context, Result, bail};

use crate::emulator::{self};
use crate::{Arch, build, guests, root, tools};

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

pub fn run() -> Result<()> {
    x86_64()?;
    x86_64_ft()?;
    aarch64()
}

/// Boots `config` in Bochs and returns its run (which must end normally).
fn bochs_run(config: &str, name: &str, guests: &guests::Guests) -> Result<emulator::Run> {
    let image = build::build(&root().join(config), guests, name)?;
    let iso = build::iso(&image, "")?;
    let run = emulator::bochs(&image, &iso, emulator::BOCHS_TIMEOUT)?;
    if !run.success {
        run.print("  ");
        bail!(
            "the benchmark run {config} failed (status {:?})",
            run.status
        );
    }
    Ok(run)
}

/// Fault tolerance on x86_64: exit costs on an FT primary (every exit is a logging boundary),
/// the log's volume for an idle timer guest, and the time the output rule holds a line.
fn x86_64_ft() -> Result<()> {
    let guests = guests::build(Arch::X86_64)?;
    let run = bochs_run("tests/bench/x86_64-ft.toml", "bench-x86_64-ft", &guests)?;
    let result = bench_result(&run, "FT")?;
    println!("Fault tolerance, Bochs, primary on CPU 0 and backup on CPU 1");
    println!("  exit round trip on the FT primary: {result}");
    let run = bochs_run(
        "tests/bench/x86_64-ft-log.toml",
        "bench-x86_64-ft-log",
        &guests,
    )?;
    let log = run
        .log
        .iter()
        .find(|l| l.contains("FT primary log:"))
        .context("the FT primary reported no log statistics")?;
    let number = |marker: &str| number_after(std::slice::from_ref(log), marker).map(|(_, n)| n);
    let records = number("log: ").context("no record count")?;
    let bytes = number("records, ").context("no byte count")?;
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
    if let Some(hold) = run.log.iter().find(|l| l.contains("FT output rule:")) {
        println!(
            "  {}",
            hold.split("FT output rule: ").nth(1).unwrap_or("").trim()
        );
    }
    Ok(())
}

/// QEMU `virt` at EL2 with `-icount shift=0`: the guest's PMU cycle counter, counting at EL1 and
/// EL2, advances once per instruction (emulators.md 5.6).
fn aarch64() -> Result<()> {
    let guests = guests::build(Arch::Aarch64)?;
    let config = root().join("tests/bench/aarch64.toml");
    let image = build::build(&config, &guests, "bench-aarch64")?;
    let run = emulator::qemu_aarch64(&image, emulator::QEMU_TIMEOUT)?;
    if !run.success {
        run.print("  ");
        bail!("the aarch64 benchmark run failed (status {:?})", run.status);
    }
    let result = bench_result(&run, "aarch64")?;
    println!("QEMU virt -cpu max at EL2, -icount shift=0; 1 cycle = 1 instruction (EL1 + EL2)");
    println!(
        "  exit round trip (exiting instruction, exception to EL2, hypervisor, ERET): {result}"
    );
    Ok(())
}

fn x86_64() -> Result<()> {
    tools::require(tools::BOCHS)?;
    let guests = guests::build(Arch::X86_64)?;
    let run = bochs_run("tests/bench/x86_64.toml", "bench-x86_64", &guests)?;
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
    Ok(())
}
