//! `cargo xtask bench`, Linux section: the Debian arm64 kernel of `cargo xtask fetch-linux`
//! booted to `/init` in a Tandem partition (the `linux-debian-1cpu` and `-2cpu` scenarios' systems)
//! and, with the same kernel, RAM disk, command line and `-icount shift=0,sleep=off`, on plain
//! QEMU `virt` at EL1 with as many CPUs. Times are the kernel's own printk clock at `Run /init`
//! (its virtual counter: from the partition's start under Tandem, from reset on plain QEMU), and
//! the hypervisor's counter from its entry to the partition's first instruction.

use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wait_timeout::ChildExt;

use crate::{Arch, build, emulator, guests, linux, root, tools};

const TIMEOUT: Duration = Duration::from_secs(300);
const CMDLINE: &str = "console=ttyAMA0 panic=0";
/// QEMU `virt`'s generic counter: 62.5 MHz, 16 ns a tick.
const NS_PER_TICK: u64 = 16;

/// The kernel's timestamp, in ns, on the console line that contains `marker`.
fn kernel_time_ns(console: &[String], marker: &str) -> Option<u64> {
    let line = console.iter().find(|l| l.contains(marker))?;
    let stamp = line[..line.find(marker)?].rsplit('[').next()?;
    let seconds: f64 = stamp.trim().trim_end_matches(']').trim().parse().ok()?;
    Some((seconds * 1e9).round() as u64)
}

/// The count after `marker` on some log line.
fn count_after(log: &[String], marker: &str) -> Option<u64> {
    log.iter().find_map(|l| {
        let rest = &l[l.find(marker)? + marker.len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Boots the kernel on plain QEMU at EL1 with `cpus` CPUs; its console lines.
fn plain_qemu(files: &linux::Files, cpus: u32) -> Result<Vec<String>> {
    let dir = root().join(format!("build/bench-linux-el1-{cpus}"));
    fs::create_dir_all(&dir)?;
    let out = dir.join("console.out");
    let mut child = Command::new("qemu-system-aarch64")
        .args(["-M", "virt,gic-version=3", "-cpu", "max"])
        .args(["-display", "none", "-nodefaults", "-no-reboot"])
        .args(["-smp", &cpus.to_string(), "-m", "256M"])
        .args(["-icount", "shift=0,sleep=off"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(&files.image)
        .arg("-initrd")
        .arg(&files.initramfs)
        .args(["-append", CMDLINE])
        .stdin(Stdio::null())
        .stdout(File::create(&out)?)
        .stderr(File::create(dir.join("emulator.err"))?)
        .spawn()
        .context("starting qemu-system-aarch64")?;
    if child.wait_timeout(TIMEOUT)?.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "Linux on plain QEMU did not power off within {} s",
            TIMEOUT.as_secs()
        );
    }
    Ok(fs::read_to_string(&out)?
        .lines()
        .map(str::to_string)
        .collect())
}

pub fn run() -> Result<()> {
    tools::require(tools::QEMU_AARCH64)?;
    let files = linux::fetch()?;
    let guests = guests::build(Arch::Aarch64)?;
    let version =
        fs::read_to_string(root().join("target/linux/aarch64/VERSION")).unwrap_or_default();
    println!(
        "Linux on aarch64 ({}), -icount shift=0,sleep=off: boot to /init on the kernel's clock",
        version
            .lines()
            .next()
            .unwrap_or("Debian arm64 kernel")
            .trim_end_matches(".deb")
    );
    for cpus in [1u32, 2] {
        let config = root().join(format!(
            "tests/scenarios/aarch64/linux-debian-{cpus}cpu.toml"
        ));
        let image = build::build(&config, &guests, &format!("bench-linux-{cpus}"))?;
        let run = emulator::qemu_aarch64(&image, "", TIMEOUT)?;
        if !run.success {
            run.print("  ");
            bail!("Linux in a partition with {cpus} vCPUs did not end normally");
        }
        let tandem = kernel_time_ns(&run.console, "Run /init")
            .context("the partition's kernel did not reach /init")?;
        let plain = kernel_time_ns(&plain_qemu(&files, cpus)?, "Run /init")
            .context("the kernel on plain QEMU did not reach /init")?;
        let entered = count_after(&run.log, "entered at count ").context("no boot count")?;
        let first = count_after(
            &run.log,
            "partition linux: vCPU 0 enters on CPU 0 at count ",
        )
        .context("no partition entry count")?;
        println!(
            "  {cpus} vCPU(s): in a partition {:.3} ms, plain QEMU at EL1 {:.3} ms ({:+.1} %); hypervisor entry to the partition's first instruction {:.3} ms",
            tandem as f64 / 1e6,
            plain as f64 / 1e6,
            (tandem as f64 / plain as f64 - 1.0) * 100.0,
            (first.saturating_sub(entered) * NS_PER_TICK) as f64 / 1e6,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_timestamp_and_log_counts() {
        let console = vec![
            "[linux] [    0.000000] Booting Linux".to_string(),
            "[linux] [    0.808087] Run /init as init process".to_string(),
        ];
        assert_eq!(kernel_time_ns(&console, "Run /init"), Some(808_087_000));
        let plain = vec!["[    0.777546] Run /init as init process".to_string()];
        assert_eq!(kernel_time_ns(&plain, "Run /init"), Some(777_546_000));
        let log =
            vec!["INFO  partition linux: vCPU 0 enters on CPU 0 at count 19287035".to_string()];
        assert_eq!(
            count_after(&log, "partition linux: vCPU 0 enters on CPU 0 at count "),
            Some(19_287_035)
        );
    }
}
