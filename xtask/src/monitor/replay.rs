//! A recorded log played into a pseudo-terminal, which `monitor` reads as it reads a board's
//! serial port: how the tests check the monitor without a board.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// How long a replay may take before the line is closed under the monitor.
const DEADLINE: Duration = Duration::from_secs(30);

/// Plays `log` (a log file's bytes) into a pseudo-terminal and decodes it with [`super::open`]
/// and [`super::watch_log`] as `cargo xtask monitor` does, until a line contains `last`;
/// the lines shown.
pub fn through_pty(log: Vec<u8>, elf: &[u8], last: &str) -> Result<Vec<String>> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).context("opening a pty")?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave = PathBuf::from(ptsname(&master, Vec::new())?.into_string()?);
    // Opened (and made raw) before a byte is written, so the line discipline passes the log's
    // bytes as they are.
    let port = super::open(&slave, 115_200)?;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        let mut master = File::from(master);
        thread::spawn(move || {
            let _ = master.write_all(&log);
            // The master stays open until the monitor is done: closing it hangs the line up,
            // which can discard what the monitor has not read yet.
            let start = Instant::now();
            while !done.load(Ordering::Acquire) && start.elapsed() < DEADLINE {
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut lines = Vec::new();
    let watched = super::watch_log(port, elf, |line| {
        lines.push(line.to_string());
        !line.contains(last)
    });
    done.store(true, Ordering::Release);
    let _ = writer.join();
    watched.map(|()| lines)
}

/// A copy of the ELF at `elf` with its build id changed, written beside it: what a monitor
/// given the wrong image's ELF sees.
pub fn other_build(elf: &Path) -> Result<PathBuf> {
    let mut bytes = std::fs::read(elf)?;
    let id = super::build_id(&bytes)?;
    let at = bytes
        .windows(id.len())
        .position(|w| w == id.as_slice())
        .context("the build id is not in the file")?;
    bytes[at] ^= 0xff;
    let out = elf.with_extension("other-build.elf");
    std::fs::write(&out, bytes)?;
    Ok(out)
}

/// The monitor's test: `log`, recorded from a boot of the image whose ELF `flash` kept at
/// `elf`, decodes through a pty up to `last`, build id first checked; and the same log with
/// another build's ELF is refused, naming both builds.
pub fn check(elf: &Path, log: Vec<u8>, last: &str) -> Result<()> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let lines = through_pty(log.clone(), &bytes, last)?;
    for want in ["build id ", last] {
        if !lines.iter().any(|l| l.contains(want)) {
            anyhow::bail!(
                "no line with `{want}` among the decoded:\n{}",
                lines.join("\n")
            );
        }
    }
    let other = std::fs::read(other_build(elf)?)?;
    match through_pty(log, &other, last) {
        Ok(lines) => anyhow::bail!(
            "another build's ELF was not refused; it decoded:\n{}",
            lines.join("\n")
        ),
        Err(e) if e.to_string().contains("but the ELF is build") => Ok(()),
        Err(e) => Err(e.context("another build's ELF was refused, but not for its build id")),
    }
}
