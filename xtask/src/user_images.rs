//! Programs that stand for a user's own guest: single files under `tests/images`, built by
//! `rustc` alone, outside the workspace and Tandem's guest runtime, into `target/images/ARCH`
//! for the scenarios that load them with `image = { path, format }`:
//! - `uart.elf` and, flattened by objcopy, `uart.bin`; also `uart-big.bin`, the flat binary
//!   with a 24 MiB padding block 64 KiB in, which the program checks byte by byte;
//! - on aarch64, `linux.bin`, an arm64 kernel `Image` stand-in that checks the boot protocol,
//!   and `initrd.bin`, a 3 MiB initial RAM disk it checks byte by byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::tools::{self, llvm, run};
use crate::{Arch, root};

/// Where the padding block starts in the program's flat image, and how many bytes follow its
/// header (as `tests/images/uart-ARCH.rs` expect them).
const PADDING_AT: usize = 0x1_0000;
const PADDING_LEN: usize = 24 << 20;
/// The initial RAM disk's pattern bytes (as `tests/images/linux-aarch64.rs` expects them).
const INITRD_LEN: usize = 3 << 20;

/// `magic`, the length of the bytes that follow (u64), then `len` bytes that follow from their
/// offset.
fn pattern_block(magic: &[u8; 8], len: usize) -> Vec<u8> {
    let mut block = magic.to_vec();
    block.extend_from_slice(&(len as u64).to_le_bytes());
    block.extend((0..len).map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8));
    block
}

/// Builds `tests/images/NAME.rs` with linker script `SCRIPT.ld` into `dir/OUT.elf` and, flat,
/// `dir/OUT.bin`; returns the flat file.
fn build_one(target: &str, name: &str, script: &str, dir: &Path, out: &str) -> Result<PathBuf> {
    let images = root().join("tests/images");
    let elf = dir.join(format!("{out}.elf"));
    // A fixed-address executable (ET_EXEC) laid out by the script, as a bare-metal toolchain
    // would make it.
    run(Command::new("rustc")
        .current_dir(root())
        .args(["--edition", "2024", "--target", target])
        .args(["-C", "panic=abort", "-C", "opt-level=s"])
        .args(["-C", "relocation-model=static"])
        .arg("-C")
        .arg(format!(
            "link-arg=-T{}",
            images.join(format!("{script}.ld")).display()
        ))
        .arg("-o")
        .arg(&elf)
        .arg(images.join(format!("{name}.rs"))))?;
    let flat = dir.join(format!("{out}.bin"));
    run(Command::new(llvm("llvm-objcopy")?)
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&flat))?;
    Ok(flat)
}

pub fn build(arch: Arch) -> Result<()> {
    let target = match arch {
        Arch::X86_64 => "x86_64-unknown-none",
        Arch::Aarch64 => "aarch64-unknown-none",
    };
    tools::require_target(target)?;
    let dir: PathBuf = root().join("target/images").join(arch.name());
    std::fs::create_dir_all(&dir)?;
    let name = format!("uart-{}", arch.name());
    let flat = build_one(
        target,
        &name,
        &format!("link-{}", arch.name()),
        &dir,
        "uart",
    )?;
    let mut big = std::fs::read(&flat)?;
    if big.len() > PADDING_AT {
        bail!(
            "{} outgrew the {PADDING_AT} bytes before its padding",
            flat.display()
        );
    }
    big.resize(PADDING_AT, 0);
    big.extend(pattern_block(b"PADDING!", PADDING_LEN));
    std::fs::write(dir.join("uart-big.bin"), big)?;
    if arch == Arch::Aarch64 {
        build_one(target, "linux-aarch64", "link-linux-aarch64", &dir, "linux")?;
        std::fs::write(
            dir.join("initrd.bin"),
            pattern_block(b"INITRD!!", INITRD_LEN),
        )?;
    }
    Ok(())
}
