//! `cargo xtask flash --board B [--config FILE] --to PATH [--firmware DIR] [--yes]`: builds the
//! board's bootable image and writes it to a file or a whole disk, refusing a disk in use.

pub mod boot;
mod flat;
mod mbr;
pub mod rpi_check;
mod rpi_config;
mod rpi_firmware;
mod rpi_sd;
mod target;
mod write;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::build::{self, Image};
use crate::config::FlashFile;

use target::Target;

/// What `flash` wrote: the image it built (whose ELF decodes the board's log) and where.
pub struct Flashed {
    pub image: Image,
    pub to: PathBuf,
}

/// Builds `board`'s image (its own partitions, or `config`'s) and writes it to `to`; a Raspberry
/// Pi's card gets the firmware in `firmware`, or Debian's; `yes` overwrites a disk or a file that
/// is not an image without asking.
pub fn run(
    board: &str,
    config: Option<&Path>,
    to: &Path,
    firmware: Option<&Path>,
    yes: bool,
) -> Result<Flashed> {
    // Refused before the build, which takes a while.
    let user_firmware = match firmware {
        Some(dir) if crate::config::load_board(board)?.flash != Some(FlashFile::RaspberryPiSd) => {
            bail!(
                "--firmware {}: board `{board}` takes no firmware files (only a Raspberry Pi's \
                 SD card image does)",
                dir.display()
            )
        }
        Some(dir) => Some(rpi_firmware::user(dir)?),
        None => None,
    };
    let image = build::build_board(board, config)?;
    let built_for = &image.config.board;
    if built_for.name != board {
        bail!(
            "{}: its partitions are for board `{}`, not `{board}`",
            config.map_or_else(
                || "the board's partitions file".into(),
                |c| c.display().to_string()
            ),
            built_for.name
        );
    }
    let Some(kind) = built_for.flash else {
        bail!(
            "board `{board}` is run in an emulator, not flashed (boards/{board}/board.toml names \
             no `flash` image); flashable boards: {}",
            flashable().join(", ")
        );
    };
    // Checked before building the image file, and again (the target may have changed since)
    // right before writing.
    let target = target::check(to, &target::Host::this())?;
    consent(to, &target, yes)?;
    let file = match kind {
        FlashFile::GrubHybrid => build::pc_image(&image)?,
        FlashFile::RaspberryPiSd => {
            let firmware = match user_firmware {
                Some(firmware) => firmware,
                None => rpi_firmware::debian()?,
            };
            rpi_sd::image(&image, &firmware)?
        }
    };
    let device_bytes = match target::check(to, &target::Host::this())? {
        Target::Disk(disk) => Some(disk.bytes),
        Target::ImageFile | Target::OtherFile { .. } => None,
    };
    write::copy(&file, to, device_bytes)?;
    // What `cargo xtask monitor` decodes this board's log with.
    let elf = crate::monitor::flashed_elf(board);
    if let Some(dir) = elf.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(&image.elf, &elf)?;
    eprintln!(
        "{} is ready to boot: {}",
        to.display(),
        board_hint(kind, board)
    );
    Ok(Flashed {
        image,
        to: to.to_path_buf(),
    })
}

fn board_hint(kind: FlashFile, board: &str) -> String {
    match kind {
        FlashFile::RaspberryPiSd => format!(
            "put the card in a Raspberry Pi 4 (2 GB of RAM or more); wire a 3.3 V USB serial \
             adapter's RX to GPIO 14 (TX, header pin 8), its TX to GPIO 15 (RX, pin 10) and its \
             ground to pin 6; the line is 115200 baud, 8N1. Then power the Pi and watch it with \
             `cargo xtask monitor --board {board} --port /dev/ttyUSB0`"
        ),
        FlashFile::GrubHybrid => "boot it on a PC from BIOS or UEFI (Secure Boot off), as a USB \
                                  stick or CD; its console is COM1 at 115200 baud"
            .into(),
    }
}

/// The boards with a `flash` image, from `boards/*/board.toml`.
fn flashable() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate::root().join("boards"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let board = crate::config::load_board(&name).ok()?;
            board.flash.map(|_| name)
        })
        .collect();
    names.sort();
    names
}

/// Asks before overwriting what is not an image file, unless `yes`.
fn consent(to: &Path, target: &Target, yes: bool) -> Result<()> {
    let what = match target {
        Target::ImageFile => return Ok(()),
        Target::OtherFile { size } => format!(
            "{} is a file of {size} bytes that does not look like a disk or CD image",
            to.display()
        ),
        Target::Disk(disk) => format!(
            "{} is the disk {}{} of {:.1} GB{}: everything on it will be lost",
            to.display(),
            disk.name,
            if disk.model.is_empty() {
                String::new()
            } else {
                format!(" ({})", disk.model)
            },
            disk.bytes as f64 / 1e9,
            if disk.removable { ", removable" } else { "" }
        ),
    };
    if yes {
        eprintln!("{what}; overwriting it (--yes)");
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("{what}; not overwriting it without --yes (no terminal to ask on)");
    }
    eprint!("{what}. Overwrite it? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not overwriting {}", to.display());
    }
    Ok(())
}
