//! Host tools the commands need: found, installed on Debian when running as root, or named with
//! the exact command to install them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A file that proves a Debian package is installed.
pub struct Need {
    pub file: &'static str,
    pub package: &'static str,
}

/// What `grub-mkrescue` needs to make a bootable ISO (Bochs boots one always, QEMU x86 when
/// images travel beside the hypervisor as a Multiboot2 module).
pub const GRUB: &[Need] = &[
    Need {
        file: "/usr/bin/grub-mkrescue",
        package: "grub-common",
    },
    Need {
        file: "/usr/lib/grub/i386-pc/multiboot2.mod",
        package: "grub-pc-bin",
    },
    Need {
        file: "/usr/bin/xorriso",
        package: "xorriso",
    },
    Need {
        file: "/usr/bin/mformat",
        package: "mtools",
    },
];

/// GRUB's UEFI platform, for the image `cargo xtask flash` writes for a PC.
pub const GRUB_EFI: &[Need] = &[Need {
    file: "/usr/lib/grub/x86_64-efi/multiboot2.mod",
    package: "grub-efi-amd64-bin",
}];

/// mtools, which makes and fills the FAT of a Raspberry Pi's SD card image inside the image file
/// (no root or loop device needed), and reads it back for the tests.
pub const MTOOLS: &[Need] = &[
    Need {
        file: "/usr/bin/mformat",
        package: "mtools",
    },
    Need {
        file: "/usr/bin/mcopy",
        package: "mtools",
    },
    Need {
        file: "/usr/bin/mdir",
        package: "mtools",
    },
];

/// UEFI firmware for QEMU's PC (OVMF), which boots the flashed PC image as a UEFI PC would.
pub const OVMF: &[Need] = &[Need {
    file: "/usr/share/ovmf/OVMF.fd",
    package: "ovmf",
}];

/// Bochs and its BIOSes; the GRUB ISO it boots needs [`GRUB`], which building one requires.
pub const BOCHS: &[Need] = &[
    Need {
        file: "/usr/bin/bochs",
        package: "bochs",
    },
    // Runs use Bochs's text display (under `script`, from the essential bsdutils); naming its
    // package also keeps apt from choosing the wxWidgets one to satisfy Bochs's display need.
    Need {
        file: "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so",
        package: "bochs-term",
    },
    Need {
        file: "/usr/share/bochs/BIOS-bochs-latest",
        package: "bochsbios",
    },
    Need {
        file: "/usr/share/vgabios/vgabios.bin",
        package: "vgabios",
    },
];

pub const QEMU_X86: &[Need] = &[Need {
    file: "/usr/bin/qemu-system-x86_64",
    package: "qemu-system-x86",
}];

/// QEMU `virt` with EL2 for the aarch64 backend; its package conflicts with backported
/// `qemu-utils` like QEMU x86's does (see [`CONFLICTING`]).
pub const QEMU_AARCH64: &[Need] = &[Need {
    file: "/usr/bin/qemu-system-aarch64",
    package: "qemu-system-arm",
}];

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Backported packages that Debian 12's QEMU declares it breaks (`qemu-utils` 10 from
/// bookworm-backports): apt refuses to install QEMU beside them. Tandem uses none of them.
const CONFLICTING: &[&str] = &["qemu-utils"];

fn apt(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .context("running apt-get")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

/// Makes sure every file in `needs` exists, installing the missing packages with apt-get when
/// that is possible, and otherwise failing with the command to run.
pub fn require(needs: &[Need]) -> Result<()> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|n| !Path::new(n.file).exists())
        .map(|n| n.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !(is_root() && Path::new("/usr/bin/apt-get").exists()) {
        bail!(
            "missing host packages: {}. Install them with:\n    sudo sh -c '{command}'",
            missing.join(", ")
        );
    }
    eprintln!("installing {} ...", missing.join(" "));
    let (updated, log) = apt(&["update"])?;
    if !updated {
        bail!("apt-get update failed:\n{log}");
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    let (mut ok, mut log) = apt(&args)?;
    // apt reports them as " qemu-utils : Breaks: qemu-system-common (< 1:8.0...)".
    let blockers: Vec<&str> = CONFLICTING
        .iter()
        .copied()
        .filter(|p| log.contains(&format!("{p} : Breaks")))
        .collect();
    let removals: Vec<String> = blockers.iter().map(|p| format!("{p}-")).collect();
    if !ok && !blockers.is_empty() {
        eprintln!(
            "note: removing {} (a backported version that Debian 12's QEMU conflicts with)",
            blockers.join(", ")
        );
        args.extend(removals.iter().map(String::as_str));
        (ok, log) = apt(&args)?;
    }
    if !ok {
        bail!("`apt-get {}` failed:\n{log}", args.join(" "));
    }
    if let Some(n) = needs.iter().find(|n| !Path::new(n.file).exists()) {
        bail!("{} is still missing after installing {}", n.file, n.package);
    }
    Ok(())
}

/// The pinned toolchain's sysroot.
fn sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(crate::root())
        .output()
        .context("running rustc --print sysroot")?;
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Makes sure the pinned toolchain has the standard library for `target`. `rust-toolchain.toml`
/// lists the targets, but rustup installs them on its own only where automatic installs are on.
pub fn require_target(target: &str) -> Result<()> {
    if sysroot()?
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .exists()
    {
        return Ok(());
    }
    eprintln!("installing the Rust target {target} ...");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(crate::root())
        .status()
        .with_context(|| {
            format!("running rustup; install the target with `rustup target add {target}`")
        })?;
    if !status.success() {
        bail!("`rustup target add {target}` failed ({status})");
    }
    Ok(())
}

/// An LLVM tool from the pinned toolchain's `llvm-tools` component.
pub fn llvm(tool: &str) -> Result<PathBuf> {
    let sysroot = sysroot()?;
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let path = sysroot
        .join("lib/rustlib")
        .join(host)
        .join("bin")
        .join(tool);
    if !path.exists() {
        bail!(
            "{} is missing; run `rustup component add llvm-tools`",
            path.display()
        );
    }
    Ok(path)
}

/// `cargo build --release` of a bare-metal `package` for `target`, with extra arguments and
/// environment; returns the directory its artifacts land in.
pub fn cargo_build(
    package: &str,
    target: &str,
    extra: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<PathBuf> {
    require_target(target)?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(crate::root())
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            package,
            "--target",
            target,
        ])
        .args(extra);
    for (key, value) in env {
        cmd.env(key, value);
    }
    run(&mut cmd)?;
    Ok(crate::root().join("target").join(target).join("release"))
}

/// Runs `cmd`, failing with its name if it does not succeed.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
