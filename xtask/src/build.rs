//! Building a hypervisor image for a configuration: bundle, binary, bootable ISO.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use tandem_core::beside::IMAGES_MODULE;
use tandem_core::bundle;
use tandem_core::config::ImageSource;

use crate::config::{self, ArchName, EmulatorName, Loaded};
use crate::guests::{self, Guests};
use crate::tools;
use crate::{Arch, root};

/// The file of guest images carried beside the hypervisor, in a built image's folder.
pub const IMAGES_FILE: &str = "images.bin";

/// A built image and what went into it.
#[derive(Clone)]
pub struct Image {
    pub dir: PathBuf,
    pub elf: PathBuf,
    pub config: Loaded,
}

/// Builds the image for the board's own partitions file, or `config` instead.
pub fn build_board(board: &str, config: Option<&Path>) -> Result<Image> {
    let file = config.map_or_else(
        || config::board_dir(board).join("partitions.toml"),
        Path::to_path_buf,
    );
    let arch = config::load_board(board)?.arch.into();
    let guests = guests::build(arch)?;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    build(&file, &guests, &format!("{board}-{name}"))
}

/// Validates `file` and builds its image under `build/<name>`.
pub fn build(file: &Path, guests: &Guests, name: &str) -> Result<Image> {
    build_on(file, None, guests, name)
}

/// [`build`], on `board` instead of the one `file` names, if given (the GICv2 twin a scenario
/// also runs on).
pub fn build_on(file: &Path, board: Option<&str>, guests: &Guests, name: &str) -> Result<Image> {
    let loaded = config::load_on(file, board, |g| guests.size(g))?;
    let dir = root().join("build").join(name);
    fs::create_dir_all(&dir)?;
    let encoded = postcard::to_stdvec(&loaded.system).context("encoding the configuration")?;
    let images: Vec<&[u8]> = loaded
        .images
        .iter()
        .map(|image| match image {
            config::Bundled::Guest(name) => guests.image(name),
            config::Bundled::File(bytes) => bytes.as_slice(),
        })
        .collect();
    let mut blob = Vec::new();
    bundle::encode(&encoded, &images, |b| blob.extend_from_slice(b));
    // Images too big to travel inside the hypervisor go beside it, for the boot path to load.
    let beside = dir.join(IMAGES_FILE);
    if loaded.beside.is_empty() {
        let _ = fs::remove_file(&beside);
    } else if fs::read(&beside).ok().as_deref() != Some(&loaded.beside[..]) {
        fs::write(&beside, &loaded.beside)?;
    }
    let bundle_path = dir.join("bundle.bin");
    if fs::read(&bundle_path).ok().as_deref() != Some(&blob[..]) {
        fs::write(&bundle_path, &blob)?;
    }
    // aarch64 hypervisor code is soft-float: it never touches the guests' FP/SIMD registers.
    let (package, target) = match Arch::from(loaded.board.arch) {
        Arch::X86_64 => ("tandem-x86_64-pc", "x86_64-unknown-none"),
        Arch::Aarch64 => ("tandem-aarch64-virt", "aarch64-unknown-none-softfloat"),
    };
    let out_dir = tools::cargo_build(
        package,
        target,
        &[],
        &[
            ("TANDEM_BUNDLE", bundle_path.as_os_str()),
            ("DEFMT_LOG", "info".as_ref()),
        ],
    )?;
    let elf = dir.join("tandem.elf");
    fs::copy(out_dir.join(package), &elf)?;
    let span = config::image_span(&fs::read(&elf)?).context("the image has no loadable segment")?;
    config::check_placement(&loaded.board, span)?;
    Ok(Image {
        dir,
        elf,
        config: loaded,
    })
}

/// What a GRUB ISO carries of the images file: the file as built, or, for the tests of the
/// hypervisor's checks, a copy with one byte flipped, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Module {
    #[default]
    AsBuilt,
    Damaged,
    Withheld,
}

/// A GRUB rescue ISO that boots the image through multiboot2 with `cmdline`; the images file,
/// if the configuration has one, goes with it as a Multiboot2 module named
/// [`IMAGES_MODULE`], which the hypervisor moves into the board's image area.
pub fn iso(image: &Image, cmdline: &str) -> Result<PathBuf> {
    iso_for(image, cmdline, Module::AsBuilt, Firmware::Bios)
}

/// GRUB's BIOS platform modules (Debian's `grub-pc-bin`).
const GRUB_BIOS: &str = "/usr/lib/grub/i386-pc";

/// Which firmware an ISO boots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// A PC BIOS (and the emulators' BIOSes): GRUB's `i386-pc` platform only.
    Bios,
    /// A PC BIOS or UEFI (without Secure Boot: Debian's unsigned GRUB): `i386-pc` and
    /// `x86_64-efi`, in one hybrid image.
    BiosAndUefi,
}

/// The image `cargo xtask flash` writes for a PC: [`iso`] that boots from BIOS and UEFI alike.
pub fn pc_image(image: &Image) -> Result<PathBuf> {
    iso_for(image, "", Module::AsBuilt, Firmware::BiosAndUefi)
}

/// The ISO an x86_64 board boots from, if it boots from one: always in Bochs; in QEMU only when
/// images travel beside the hypervisor, since QEMU 7.2's `-kernel` (PVH) passes no modules.
pub fn boot_iso(image: &Image, cmdline: &str, module: Module) -> Result<Option<PathBuf>> {
    let board = &image.config.board;
    let wanted = match (board.arch, board.emulator) {
        (ArchName::Aarch64, _) => false,
        (ArchName::X86_64, EmulatorName::Bochs) => true,
        (ArchName::X86_64, _) => !image.config.beside.is_empty(),
    };
    wanted.then(|| iso_with(image, cmdline, module)).transpose()
}

/// [`iso`], carrying the images file as `module` says.
pub fn iso_with(image: &Image, cmdline: &str, module: Module) -> Result<PathBuf> {
    iso_for(image, cmdline, module, Firmware::Bios)
}

fn iso_for(image: &Image, cmdline: &str, module: Module, firmware: Firmware) -> Result<PathBuf> {
    tools::require(tools::GRUB)?;
    if firmware == Firmware::BiosAndUefi {
        tools::require(tools::GRUB_EFI)?;
    }
    let tree = image.dir.join("iso");
    fs::create_dir_all(tree.join("boot/grub"))?;
    fs::copy(&image.elf, tree.join("boot/tandem.elf"))?;
    let carried = tree.join("boot").join(IMAGES_FILE);
    let _ = fs::remove_file(&carried);
    let mut entry = format!("  multiboot2 /boot/tandem.elf {cmdline}\n");
    let mut bytes = image.config.beside.clone();
    if !bytes.is_empty() && module != Module::Withheld {
        if module == Module::Damaged {
            // Halfway into the image that starts the file.
            let first = image
                .config
                .system
                .partitions
                .iter()
                .find_map(|p| match p.image.source {
                    ImageSource::Beside { offset: 0, .. } => Some(p.image.size as usize),
                    _ => None,
                });
            let middle = first.unwrap_or(bytes.len()).min(bytes.len()) / 2;
            bytes[middle] ^= 0x80;
        }
        fs::write(&carried, &bytes)?;
        entry += &format!("  module2 /boot/{IMAGES_FILE} {IMAGES_MODULE}\n");
    }
    fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!("set timeout=0\nset default=0\nmenuentry \"Tandem\" {{\n{entry}  boot\n}}\n"),
    )?;
    let iso = image.dir.join("tandem.iso");
    let mut mkrescue = Command::new("grub-mkrescue");
    match firmware {
        // One platform's modules only, whatever else the host has installed.
        Firmware::Bios => mkrescue.arg(format!("--directory={GRUB_BIOS}")),
        // Every platform installed: both, which `tools::GRUB_EFI` made sure of.
        Firmware::BiosAndUefi => &mut mkrescue,
    };
    let out = mkrescue
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .output()
        .context("running grub-mkrescue")?;
    if !out.status.success() {
        anyhow::bail!(
            "grub-mkrescue failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(iso)
}
