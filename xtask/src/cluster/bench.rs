//! `cargo xtask bench --only ft-boards`: what the pair across boards costs on the network. Two
//! workloads (`tests/bench/ARCH-ft-boards-{idle,loaded}.toml`) on two emulated boards; from the
//! hub's capture, the log's and the acknowledgements' bandwidth and frames; from the primary's
//! log, the output rule's hold (the latency it adds to each line); and a second run with the
//! spare board, whose primary's board is killed at line 5: the re-protection onto the spare, its
//! time and the guest's pause, from the live copy's and the spare's logs. The boards run paced
//! to wall time, so the capture's timestamps are the boards' time too, within the pacing's error.

use std::fs;

use anyhow::{Context, Result};

use super::run::{self, Action, Outcome, Plan};
use super::scenarios::{at_line, spare_first, step};
use crate::build::{self, Module};
use crate::{Arch, guests, root};

/// Frames from one station to another in a capture, and the time they span.
#[derive(Default)]
struct Flow {
    frames: u64,
    bytes: u64,
    first_us: Option<u64>,
    last_us: u64,
}

impl Flow {
    fn kbit_per_s(&self) -> f64 {
        let span = self
            .last_us
            .saturating_sub(self.first_us.unwrap_or(0))
            .max(1);
        self.bytes as f64 * 8.0 * 1000.0 / span as f64
    }
}

/// The log (board 0 to board 1) and acknowledgement (back) flows of `pcap`.
fn flows(pcap: &[u8], primary: [u8; 6], backup: [u8; 6]) -> (Flow, Flow) {
    let (mut log, mut acks) = (Flow::default(), Flow::default());
    let mut at = 24;
    while let Some(header) = pcap.get(at..at + 16) {
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let us = u64::from(word(0)) * 1_000_000 + u64::from(word(4));
        let len = word(8) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        let (dst, src) = (&frame[..6.min(len)], frame.get(6..12).unwrap_or(&[]));
        let flow = match (src, dst) {
            (s, d) if s == primary && d == backup => &mut log,
            (s, d) if s == backup && d == primary => &mut acks,
            _ => continue,
        };
        flow.frames += 1;
        flow.bytes += len as u64;
        flow.first_us.get_or_insert(us);
        flow.last_us = us;
    }
    (log, acks)
}

fn workload(arch: Arch, kind: &str, guests: &guests::Guests) -> Result<()> {
    let config = root().join(format!("tests/bench/{}-ft-boards-{kind}.toml", arch.name()));
    let image = build::build(
        &config,
        guests,
        &format!("bench-{}-ft-boards-{kind}", arch.name()),
    )?;
    let iso = build::boot_iso(&image, "", Module::AsBuilt)?;
    let dir = image.dir.join("run");
    let plan = Plan {
        start: vec![0, 1],
        steps: vec![],
        timeout: std::time::Duration::from_secs(300),
        echo: false,
    };
    let outcome = run::run(&image, iso.as_deref(), &dir, &plan)?;
    let macs = &image.config.ft_boards;
    let (log, acks) = flows(&fs::read(dir.join("network.pcap"))?, macs[0].0, macs[1].0);
    let line = |marker: &str| logged(&outcome, 0, marker, &dir);
    println!(
        "  {kind}: log {:.1} kbit/s ({} frames, {:.0} bytes each on the wire), acknowledgements {:.1} kbit/s ({} frames)",
        log.kbit_per_s(),
        log.frames,
        log.bytes as f64 / log.frames.max(1) as f64,
        acks.kbit_per_s(),
        acks.frames
    );
    println!("    {}", line("FT primary log:")?);
    println!("    {}", line("FT output rule:")?);
    let dir = image.dir.join("reprotect");
    let plan = spare_first(vec![step(at_line(5), Action::Kill(0))]);
    let outcome = run::run(&image, iso.as_deref(), &dir, &plan)?;
    for (board, marker) in [
        (1, "FT re-protection of pair across boards:"),
        (2, "FT spare of pair restored"),
    ] {
        println!("    {}", logged(&outcome, board, marker, &dir)?);
    }
    Ok(())
}

/// The line of board `board`'s log that contains `marker`, from a run in `dir` whose boards all
/// ended normally (but those it killed).
fn logged(outcome: &Outcome, board: usize, marker: &str, dir: &std::path::Path) -> Result<String> {
    let ended = outcome
        .boards
        .iter()
        .enumerate()
        .all(|(b, r)| outcome.killed.contains(&b) || r.as_ref().is_none_or(|r| r.success));
    if !ended {
        anyhow::bail!("a board did not end normally; see {}", dir.display());
    }
    let run = outcome.boards[board]
        .as_ref()
        .with_context(|| format!("board {board} did not run; see {}", dir.display()))?;
    let line = run
        .log
        .iter()
        .find(|l| l.contains(marker))
        .with_context(|| {
            format!(
                "board {board} never logged {marker:?}; see {}",
                dir.display()
            )
        })?;
    Ok(line.trim_start_matches("INFO  ").to_string())
}

/// The section on `arch`.
pub fn run(arch: Arch) -> Result<()> {
    println!(
        "== fault tolerance across boards, {} (hub capture; 5 ms heartbeats)",
        arch.name()
    );
    let guests = guests::build(arch)?;
    for kind in ["idle", "loaded"] {
        workload(arch, kind, &guests)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_count_each_direction_and_span_their_time() {
        let (a, b) = ([1u8; 6], [2u8; 6]);
        let mut pcap = vec![0u8; 24];
        for (us, dst, src, len) in [(10u32, b, a, 60u32), (20, a, b, 60), (1_000_010, b, a, 100)] {
            pcap.extend_from_slice(&0u32.to_le_bytes());
            pcap.extend_from_slice(&us.to_le_bytes());
            pcap.extend_from_slice(&len.to_le_bytes());
            pcap.extend_from_slice(&len.to_le_bytes());
            let mut frame = vec![0u8; len as usize];
            frame[..6].copy_from_slice(&dst);
            frame[6..12].copy_from_slice(&src);
            pcap.extend_from_slice(&frame);
        }
        let (log, acks) = flows(&pcap, a, b);
        assert_eq!((log.frames, log.bytes, acks.frames), (2, 160, 1));
        assert!(
            (log.kbit_per_s() - 1.28).abs() < 0.01,
            "{}",
            log.kbit_per_s()
        );
    }
}
