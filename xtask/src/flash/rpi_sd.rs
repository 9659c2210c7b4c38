//! The Raspberry Pi 4's SD card image (`flash = "raspberry-pi-sd"`): an MBR with one FAT32
//! partition from 1 MiB holding the firmware, `config.txt`, the hypervisor as `kernel8.img` and
//! its images file. The FAT is made and filled with mtools inside the image file, at the
//! partition's offset, so no root and no loop device are needed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::flat;
use super::mbr::{self, Partition};
use super::rpi_config::{self, IMAGES, KERNEL, Settings};
use super::rpi_firmware::Firmware;
use crate::build::{IMAGES_FILE, Image};
use crate::tools;

/// Where the partition starts: 1 MiB, the alignment SD cards' erase blocks and every
/// partitioning tool use.
pub const PARTITION_START: u64 = 1 << 20;
/// The smallest image: a 63 MiB partition, which mformat gives 512-byte clusters (the FAT32
/// specification's choice up to 260 MB), about 128,000 of them, well above the 65,525 that
/// make a FAT32 rather than a FAT16.
const MIN_IMAGE: u64 = 64 << 20;
pub const CONFIG: &str = "config.txt";

/// mtools' name for the FAT inside `image`: the file at the partition's offset.
pub fn fat(image: &Path) -> String {
    format!("{}@@{PARTITION_START}", image.display())
}

/// Builds the card image for `image` with `firmware`; returns its path.
pub fn image(image: &Image, firmware: &Firmware) -> Result<PathBuf> {
    tools::require(tools::MTOOLS)?;
    let flat = flat::flatten(&fs::read(&image.elf)?)
        .with_context(|| format!("{}: making {KERNEL}", image.elf.display()))?;
    let board = &image.config.system.board;
    let images = if image.config.beside.is_empty() {
        None
    } else {
        let area = board
            .images
            .context("the configuration carries images beside the hypervisor, but the board has no `images` area")?;
        Some(area.range.base.raw())
    };
    // Everything that goes on the card, as it will lie there; kept for whoever looks.
    let card = image.dir.join("sd");
    let _ = fs::remove_dir_all(&card);
    fs::create_dir_all(&card)?;
    fs::write(card.join(KERNEL), &flat.bytes)?;
    let settings = Settings {
        kernel_address: flat.base,
        device_tree_address: board.ram.base.raw(),
        images_address: images,
        disable_bt: firmware.disable_bt,
    };
    fs::write(card.join(CONFIG), rpi_config::text(&settings))?;
    if images.is_some() {
        fs::copy(image.dir.join(IMAGES_FILE), card.join(IMAGES))?;
    }
    for name in firmware.files() {
        let to = card.join(name);
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir)?;
        }
        let from = firmware.dir.join(name);
        fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
    }
    let out = image.dir.join("rpi-sd.img");
    write_image(&out, &card)?;
    Ok(out)
}

/// The bytes of every file under `dir`.
fn size_of(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        total += if entry.file_type()?.is_dir() {
            size_of(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

/// Writes `out`: the MBR, then a FAT32 holding everything in `card`.
fn write_image(out: &Path, card: &Path) -> Result<()> {
    // The FATs take under 2% with 512-byte clusters; a sixteenth more leaves room for them
    // and for directories, rounded up to whole MiB (whole cylinders of 64 heads x 32 sectors).
    let data = size_of(card)?;
    let wanted = PARTITION_START + data + data / 16 + (1 << 20);
    let total = wanted.next_multiple_of(1 << 20).max(MIN_IMAGE);
    let sectors = (total - PARTITION_START) / mbr::SECTOR;
    let partition = Partition {
        kind: mbr::FAT32_LBA,
        start: PARTITION_START / mbr::SECTOR,
        sectors,
    };
    let mut file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    file.set_len(total)?;
    file.write_all(&mbr::encode(partition)?)?;
    drop(file);
    let fat = fat(out);
    tools::run(
        Command::new("mformat")
            .args(["-i", &fat, "-F", "-v", "TANDEM"])
            .args(["-T", &sectors.to_string()])
            .args(["-h", &mbr::HEADS.to_string()])
            .args(["-s", &mbr::SECTORS_PER_TRACK.to_string()])
            // The sectors before the partition, which the boot sector records.
            .args(["-H", &partition.start.to_string()])
            .arg("::"),
    )?;
    let mut entries: Vec<PathBuf> = fs::read_dir(card)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    tools::run(
        Command::new("mcopy")
            .args(["-s", "-i", &fat])
            .args(&entries)
            .arg("::/"),
    )
}
