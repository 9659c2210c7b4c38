//! Test guests: built once per run for an architecture, flattened to the bytes a partition loads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use object::Object;

use crate::Arch;
use crate::config::default_load;
use crate::tools::{cargo_build, llvm, run};

pub struct Guests {
    images: BTreeMap<String, Vec<u8>>,
}

impl Guests {
    pub fn size(&self, name: &str) -> Option<u64> {
        self.images.get(name).map(|i| i.len() as u64)
    }

    pub fn image(&self, name: &str) -> &[u8] {
        &self.images[name]
    }
}

fn spec(arch: Arch) -> (&'static str, &'static str, &'static [&'static str]) {
    match arch {
        Arch::X86_64 => (
            "tandem-test-guests-x86_64",
            "x86_64-unknown-none",
            &[
                "hello",
                "timer",
                "hostile",
                "ports",
                "bench",
                "console",
                "attack-decoder",
                "attack-cpu",
                "echo",
            ],
        ),
        // Guests may use FP/SIMD: the hypervisor never touches those registers.
        Arch::Aarch64 => (
            "tandem-test-guests-aarch64",
            "aarch64-unknown-none",
            &[
                "hello",
                "timer",
                "hostile",
                "burst",
                "smp",
                "bench",
                "console",
                "attack-el2",
                "echo",
                "siblings",
                "sgi",
                "level",
                "sve",
                "pmu",
            ],
        ),
    }
}

/// The entry point recorded in an ELF header.
fn elf_entry(elf: &[u8]) -> Option<u64> {
    object::File::parse(elf).ok().map(|file| file.entry())
}

pub fn build(arch: Arch) -> Result<Guests> {
    let (package, target, bins) = spec(arch);
    let out_dir = cargo_build(package, target, &["--bins"], &[])?;
    let objcopy = llvm("llvm-objcopy")?;
    let mut images = BTreeMap::new();
    for bin in bins {
        let elf_path = out_dir.join(bin);
        let elf =
            std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
        let load = default_load(arch);
        if elf_entry(&elf) != Some(load) {
            bail!("guest {bin} does not start at {load:#x}; check its linker script");
        }
        let flat: PathBuf = out_dir.join(format!("{bin}.bin"));
        run(Command::new(&objcopy)
            .args(["-O", "binary"])
            .arg(&elf_path)
            .arg(&flat))?;
        images.insert(bin.to_string(), std::fs::read(&flat)?);
    }
    Ok(Guests { images })
}
