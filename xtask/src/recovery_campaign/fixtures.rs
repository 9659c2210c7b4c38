//! Synthetic runs, golden runs and setups for the campaign's unit tests.

use std::time::Duration;

use super::Planned;
use super::golden::{Golden, GoldenRuns};
use super::log::CLEAN_STOP;
use super::model::Model;
use super::setup::Setup;
use crate::RecoveryMode;
use crate::emulator::Run;

pub const ARMED: &str =
    "INFO  fault injection armed: model register seed 9 after 50 exits then 7 instructions";
pub const INJECTED: &str = "WARN  injected: bit 3 of RBX flipped on CPU 0 at RIP 0x1234 (1000 ns)";
pub const DETECTED: &str = "ERROR recovery: detected exception on CPU 0 (1500 ns)";
pub const RESUMED: &str = "WARN  recovery: resumed by microreboot in 4000 ns: quiesce 1000 ns, image 3000 ns (boots = 2, recoveries = 1)";

/// Every line of a partition that prints five.
pub const ALL: &[u32] = &[1, 2, 3, 4, 5];

fn numbered(lines: &[u32]) -> Vec<String> {
    lines.iter().map(|i| format!("count {i}")).collect()
}

/// Partitions `uart` and `calls`, each printing `count 1` to `count 5`.
pub fn golden() -> Golden {
    Golden {
        partitions: vec![
            ("uart".into(), numbered(ALL)),
            ("calls".into(), numbered(ALL)),
        ],
        exits: 100,
        recovery_log: Vec::new(),
    }
}

pub fn goldens() -> GoldenRuns {
    GoldenRuns {
        first: golden(),
        runs: 2,
        exits: vec![100, 100],
        wall_s: vec![2.0, 2.0],
        false_detections: 0,
        problems: Vec::new(),
    }
}

pub fn plan(seed: u64) -> Planned {
    Planned {
        seed,
        model: Model::Register,
        mode: RecoveryMode::Microreboot,
        cmdline: format!("recovery=microreboot inject=model:register,seed:{seed},exits:50,steps:7"),
    }
}

/// A run whose partitions print the numbered lines `uart` and `calls` and whose log has `log`,
/// then a clean stop for each partition `log` does not stop.
pub fn run(uart: &[u32], calls: &[u32], log: &[&str]) -> Run {
    let mut log: Vec<String> = log.iter().map(|l| l.to_string()).collect();
    for name in ["uart", "calls"] {
        if !log
            .iter()
            .any(|l| l.contains(&format!("partition {name} stopped:")))
        {
            log.push(format!("INFO  partition {name} stopped: {CLEAN_STOP}"));
        }
    }
    let console = uart
        .iter()
        .map(|i| format!("[uart] count {i}"))
        .chain(calls.iter().map(|i| format!("[calls] count {i}")))
        .collect();
    Run {
        success: true,
        failed_cleanly: false,
        status: Some(0),
        timed_out: false,
        console,
        log,
        malformed_frames: 0,
        emulator_log: String::new(),
        elapsed: Duration::from_secs(3),
        ended_by_user: false,
    }
}

/// `run` ended by the host's timeout.
pub fn timed_out(mut run: Run) -> Run {
    run.success = false;
    run.status = None;
    run.timed_out = true;
    run
}

pub fn setup() -> Setup {
    Setup {
        commit: "0123abc".into(),
        emulator: "Bochs 2.7".into(),
        board: "bochs-x86_64-smp3".into(),
        config: "tests/campaigns/recovery-x86_64.toml".into(),
        model: "register",
        mode: "microreboot",
        workloads: Vec::new(),
        trigger: "after N exits".into(),
        seed: 1,
        golden_runs: 2,
        golden_cmdline: "recovery=microreboot".into(),
        golden_exits: vec![100, 100],
        golden_wall_s: vec![2.0, 2.0],
        host_timeout_s: 120,
        hypervisor_log: Vec::new(),
    }
}
