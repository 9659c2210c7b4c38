//! Copies an image to its target with a progress bar, flushes it to the device and reads it
//! back, so a short write or a failing stick is reported rather than found at boot.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::terminal;

/// How much is copied between two updates of the progress bar.
const CHUNK: usize = 1 << 20;

/// Writes `image` to `to` (a file, created or truncated, or a whole disk, whose size is
/// `device_bytes`) and verifies it.
pub fn copy(image: &Path, to: &Path, device_bytes: Option<u64>) -> Result<()> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let total = bytes.len() as u64;
    if let Some(size) = device_bytes.filter(|&size| size < total) {
        bail!(
            "{}: {} MiB, too small for the {} MiB image",
            to.display(),
            size >> 20,
            total.div_ceil(1 << 20)
        );
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create(device_bytes.is_none())
        .truncate(device_bytes.is_none())
        .open(to)
        .with_context(|| format!("opening {} to write", to.display()))?;
    let mut done = 0u64;
    for chunk in bytes.chunks(CHUNK) {
        out.write_all(chunk)
            .with_context(|| format!("writing {} at byte {done}", to.display()))?;
        done += chunk.len() as u64;
        bar("writing", done, total);
    }
    out.sync_all()
        .with_context(|| format!("flushing {} to the device", to.display()))?;
    eprintln!();
    let mut back = vec![0u8; bytes.len()];
    File::open(to)
        .and_then(|mut f| f.read_exact(&mut back))
        .with_context(|| format!("reading {} back", to.display()))?;
    if let Some(at) = back.iter().zip(&bytes).position(|(a, b)| a != b) {
        bail!(
            "{}: byte {at} reads back different from what was written",
            to.display()
        );
    }
    Ok(())
}

fn bar(what: &str, done: u64, total: u64) {
    eprint!(
        "\r{what} {} {:.1} / {:.1} MiB",
        terminal::bar(done, total),
        done as f64 / f64::from(1 << 20),
        total as f64 / f64::from(1 << 20)
    );
    let _ = std::io::stderr().flush();
}
