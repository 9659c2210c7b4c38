//! R1 of the report (recovery.md section 7): what was built and booted, on what emulator, and
//! how the faults were placed, so that a reader can repeat the campaign.

use std::path::Path;
use std::process::Command;

use serde::Serialize;
use tandem_core::config::ImageSource;

use super::golden::GoldenRuns;
use super::model::Model;
use super::trigger::{self, MAX_STEPS};
use crate::build::Image;
use crate::config::{ArchName, Bundled};
use crate::{RecoveryMode, emulator, root};

/// One partition of the workload.
#[derive(Serialize)]
pub struct Workload {
    pub partition: String,
    pub cpus: Vec<u8>,
    pub guest: String,
    pub args: String,
}

#[derive(Serialize)]
pub struct Setup {
    /// `git rev-parse HEAD`, marked `-dirty` when tracked files differ from it.
    pub commit: String,
    pub emulator: String,
    pub board: String,
    /// The partitions file, relative to the workspace.
    pub config: String,
    pub model: &'static str,
    pub mode: &'static str,
    pub workloads: Vec<Workload>,
    pub trigger: String,
    pub seed: u64,
    pub golden_runs: u64,
    pub golden_cmdline: String,
    /// Exits over all partitions in each golden run (equal when the emulator is deterministic).
    pub golden_exits: Vec<u64>,
    pub golden_wall_s: Vec<f64>,
    /// When the host ends a run that does not end by itself.
    pub host_timeout_s: u64,
    /// What the hypervisor logs about recovery in a fault-free run (its detectors, if it says).
    pub hypervisor_log: Vec<String>,
}

/// The output of a command, or why there is none: the report says so rather than failing.
fn output(program: &str, args: &[&str]) -> String {
    match Command::new(program)
        .current_dir(root())
        .args(args)
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => format!(
            "unknown ({program}: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("unknown ({program}: {e})"),
    }
}

/// The checked-out commit, `-dirty` with uncommitted changes to tracked files.
pub fn commit() -> String {
    let head = output("git", &["rev-parse", "HEAD"]);
    let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty { format!("{head}-dirty") } else { head }
}

/// The emulator, its Debian package version, and the options that make its runs repeat.
fn emulator(arch: ArchName) -> String {
    let version = |package| output("dpkg-query", &["-W", "-f=${Version}", package]);
    match arch {
        ArchName::X86_64 => format!(
            "Bochs {} (corei7_skylake_x with VT-x and EPT, clock sync=none)",
            version("bochs")
        ),
        ArchName::Aarch64 => format!(
            "QEMU {} (-M virt,virtualization=on,gic-version=3 -cpu max -icount shift=0,sleep=off)",
            version("qemu-system-arm")
        ),
    }
}

/// The test guest a partition runs, by name.
fn guest(image: &Image, source: ImageSource) -> String {
    match source {
        ImageSource::Bundle { index } => match image.config.images.get(usize::from(index)) {
            Some(Bundled::Guest(name)) => name.clone(),
            _ => "an image from a file".into(),
        },
        ImageSource::Beside { .. } => "an image from a file".into(),
    }
}

/// Everything R1 shows.
pub fn describe(
    model: Model,
    mode: RecoveryMode,
    seed: u64,
    commit: String,
    config: &Path,
    image: &Image,
    goldens: &GoldenRuns,
) -> Setup {
    let golden = &goldens.first;
    let (lo, hi) = trigger::exit_window(golden.exits);
    let arch = image.config.board.arch;
    Setup {
        commit,
        emulator: emulator(arch),
        board: image.config.board.name.clone(),
        config: config
            .strip_prefix(root())
            .unwrap_or(config)
            .display()
            .to_string(),
        model: model.name(),
        mode: mode.name(),
        workloads: image
            .config
            .system
            .partitions
            .iter()
            .map(|p| Workload {
                partition: p.name.to_string(),
                cpus: p.cpus.to_vec(),
                guest: guest(image, p.image.source),
                args: p.args.to_string(),
            })
            .collect(),
        trigger: format!(
            "after N exits of all partitions, N uniform in [{lo}, {hi}] (10 to 80 % of the golden \
             run's {}), then K instructions of hypervisor code, K uniform in [0, {MAX_STEPS})",
            golden.exits
        ),
        seed,
        golden_runs: goldens.runs,
        golden_cmdline: trigger::golden_cmdline(mode),
        golden_exits: goldens.exits.clone(),
        golden_wall_s: goldens.wall_s.clone(),
        host_timeout_s: match arch {
            ArchName::X86_64 => emulator::BOCHS_TIMEOUT,
            ArchName::Aarch64 => emulator::QEMU_TIMEOUT,
        }
        .as_secs(),
        hypervisor_log: golden.recovery_log.clone(),
    }
}
