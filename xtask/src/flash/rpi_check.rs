//! Checks a flashed Raspberry Pi 4 card image the way its firmware will read it, from the file
//! alone (no emulator models the board): the MBR, read here; the FAT, through mtools; the
//! files on it; the settings in `config.txt`; and `kernel8.img` against `llvm-objcopy -O
//! binary` of the ELF that was built, a flattening done independently of the one that wrote it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::Flashed;
use super::mbr::{self, FAT32_LBA};
use super::rpi_config::{self, IMAGES, KERNEL};
use super::rpi_firmware::REQUIRED;
use super::rpi_sd::{self, CONFIG, PARTITION_START};
use crate::build::IMAGES_FILE;
use crate::tools;

/// Every way `flashed` differs from a bootable card, or nothing.
pub fn check(flashed: &Flashed) -> Result<()> {
    let problems = problems(flashed)?;
    if !problems.is_empty() {
        bail!("{}:\n    {}", flashed.to.display(), problems.join("\n    "));
    }
    Ok(())
}

fn problems(flashed: &Flashed) -> Result<Vec<String>> {
    let card = &flashed.to;
    let mut problems = Vec::new();
    let bytes = std::fs::read(card).with_context(|| format!("reading {}", card.display()))?;
    match mbr::decode(&bytes) {
        Err(e) => problems.push(format!("MBR: {e}")),
        Ok(parts) => match parts.as_slice() {
            [p] if p.kind != FAT32_LBA => problems.push(format!(
                "MBR: the partition's type is {:#04x}, not {FAT32_LBA:#04x} (FAT32, LBA)",
                p.kind
            )),
            [p] if p.start * mbr::SECTOR != PARTITION_START => problems.push(format!(
                "MBR: the partition starts at sector {}, not at 1 MiB",
                p.start
            )),
            [p] if (p.start + p.sectors) * mbr::SECTOR > bytes.len() as u64 => {
                problems.push(format!(
                    "MBR: the partition runs past the image's {} bytes",
                    bytes.len()
                ))
            }
            [_] => {}
            other => problems.push(format!(
                "MBR: {} partitions, not one FAT32 partition",
                other.len()
            )),
        },
    }
    let listing = String::from_utf8_lossy(&mtools("mdir", card, &["-b", "::"])?).into_owned();
    let on_card: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("::/"))
        .collect();
    let images = !flashed.image.config.beside.is_empty();
    let mut wanted = vec![CONFIG, KERNEL];
    wanted.extend(REQUIRED);
    if images {
        wanted.push(IMAGES);
    } else if on_card.contains(&IMAGES) {
        problems.push(format!(
            "{IMAGES} is on the card, but the build made no images file"
        ));
    }
    for name in &wanted {
        if !on_card.contains(name) {
            problems.push(format!(
                "{name} is not on the card (it holds {})",
                on_card.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Ok(problems);
    }
    let board = &flashed.image.config.system.board;
    let config =
        String::from_utf8_lossy(&mtools("mcopy", card, &["::/config.txt", "-"])?).into_owned();
    let settings = rpi_config::settings(&config);
    let mut expected = vec![
        "arm_64bit=1".to_string(),
        format!("kernel={KERNEL}"),
        format!("kernel_address={:#x}", board.hypervisor.base.raw()),
        format!("device_tree_address={:#x}", board.ram.base.raw()),
        "enable_gic=1".to_string(),
    ];
    if let Some(area) = board.images.filter(|_| images) {
        expected.push(format!("initramfs {IMAGES} {:#x}", area.range.base.raw()));
    }
    for line in &expected {
        if !settings.contains(&line.as_str()) {
            problems.push(format!("{CONFIG} lacks the line `{line}`"));
        }
    }
    let reference = flashed.image.dir.join("kernel8.objcopy.bin");
    tools::run(
        Command::new(tools::llvm("llvm-objcopy")?)
            .args(["-O", "binary"])
            .arg(&flashed.image.elf)
            .arg(&reference),
    )?;
    let kernel = mtools("mcopy", card, &[&format!("::/{KERNEL}"), "-"])?;
    same(
        &mut problems,
        KERNEL,
        &kernel,
        &std::fs::read(&reference)?,
        "llvm-objcopy -O binary of the ELF",
    );
    if images {
        let on_card = mtools("mcopy", card, &[&format!("::/{IMAGES}"), "-"])?;
        let built = std::fs::read(flashed.image.dir.join(IMAGES_FILE))?;
        same(
            &mut problems,
            IMAGES,
            &on_card,
            &built,
            "the images file the build made",
        );
    }
    Ok(problems)
}

/// Notes where `got` first differs from `want`.
fn same(problems: &mut Vec<String>, name: &str, got: &[u8], want: &[u8], what: &str) {
    if got.len() != want.len() {
        problems.push(format!(
            "{name}: {} bytes, but {what} has {}",
            got.len(),
            want.len()
        ));
    } else if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        problems.push(format!("{name}: byte {at} differs from {what}"));
    }
}

/// An mtools command's output on the card's FAT.
fn mtools(tool: &str, card: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(tool)
        .args(["-i", &rpi_sd::fat(card)])
        .args(args)
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {} on {} failed: {}",
            args.join(" "),
            card.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
