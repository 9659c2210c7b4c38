//! Programs that stand for a user's own guest: single files under `tests/images`, built by
//! `rustc` alone, outside the workspace and Tandem's guest runtime, into `target/images/ARCH`
//! as an ELF (`uart.elf`) and, flattened by objcopy, a flat binary (`uart.bin`) for the
//! scenarios that load them with `image = { path, format }`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

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
    run(Command::new(llvm("llvm-objcopy")?)
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(dir.join("uart.bin")))
}
