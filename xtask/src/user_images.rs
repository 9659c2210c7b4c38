//! Programs that stand for a user's own guest: single files under `tests/images`, built by
//! `rustc` alone, outside the workspace and Tandem's guest runtime, into `target/images/ARCH`
//! as an ELF (`uart.elf`) and, flattened by objcopy, a flat binary (`uart.bin`) for the
//! scenarios that load them with `image = { path, format }`. On aarch64 also `uart-big.bin`:
//! the flat binary with a 24 MiB padding block 64 KiB in, which the program checks byte by byte.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::tools::{self, llvm, run};
use crate::{Arch, root};

pub fn build(arch: Arch) -> Result<()> {
    let target = match arch {
        Arch::X86_64 => "x86_64-unknown-none",
        Arch::Aarch64 => "aarch64-unknown-none",
    };
    tools::require_target(target)?;
    let dir: PathBuf = root().join("target/images").join(arch.name());
    std::fs::create_dir_all(&dir)?;
    let elf = dir.join("uart.elf");
    let images = root().join("tests/images");
    let source = images.join(format!("uart-{}.rs", arch.name()));
    let script = images.join(format!("link-{}.ld", arch.name()));
    // A fixed-address executable (ET_EXEC) with `_start` at the script's base, as a bare-metal
    // toolchain would make it.
    run(Command::new("rustc")
        .current_dir(root())
        .args(["--edition", "2024", "--target", target])
        .args(["-C", "panic=abort", "-C", "opt-level=s"])
        .args(["-C", "relocation-model=static"])
        .arg("-C")
        .arg(format!("link-arg=-T{}", script.display()))
        .arg("-o")
        .arg(&elf)
        .arg(&source))?;
    let flat = dir.join("uart.bin");
    run(Command::new(llvm("llvm-objcopy")?)
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&flat))?;
    if arch == Arch::Aarch64 {
        let mut big = std::fs::read(&flat)?;
        if big.len() > PADDING_AT {
            bail!(
                "{} outgrew the {PADDING_AT} bytes before its padding",
                flat.display()
            );
        }
        big.resize(PADDING_AT, 0);
        big.extend_from_slice(b"PADDING!");
        big.extend_from_slice(&(PADDING_LEN as u64).to_le_bytes());
        big.extend((0..PADDING_LEN).map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8));
        std::fs::write(dir.join("uart-big.bin"), big)?;
    }
    Ok(())
}

/// Where the padding block starts in the program's flat image, and how many bytes follow its
/// header (as `tests/images/uart-aarch64.rs` expects them).
const PADDING_AT: usize = 0x1_0000;
const PADDING_LEN: usize = 24 << 20;
