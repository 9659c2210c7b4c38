//! Building a hypervisor image for a configuration: bundle, binary, bootable ISO.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use tandem_core::bundle;

use crate::config::{self, Loaded};
use crate::guests::{self, Guests};
use crate::tools;
use crate::{Arch, root};

/// The file of guest images carried beside the hypervisor, in a built image's folder.
pub const IMAGES_FILE: &str = "images.bin";

/// A built image and what went into it.
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
    let loaded = config::load(file, |g| guests.size(g))?;
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

/// A GRUB rescue ISO that boots the image through multiboot2 with `cmdline`.
pub fn iso(image: &Image, cmdline: &str) -> Result<PathBuf> {
    tools::require(tools::BOCHS)?;
    let tree = image.dir.join("iso");
    fs::create_dir_all(tree.join("boot/grub"))?;
    fs::copy(&image.elf, tree.join("boot/tandem.elf"))?;
    fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!(
            "set timeout=0\nset default=0\nmenuentry \"Tandem\" {{\n  multiboot2 /boot/tandem.elf {cmdline}\n  boot\n}}\n"
        ),
    )?;
    let iso = image.dir.join("tandem.iso");
    let out = Command::new("grub-mkrescue")
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
