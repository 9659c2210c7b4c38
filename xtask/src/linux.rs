//! `cargo xtask fetch-linux`: an unmodified Debian arm64 kernel and an initial RAM disk around
//! Debian's `busybox-static`, for partitions that run Linux (`examples/linux-aarch64.toml`, the
//! `linux-debian-*` scenarios). Both come from Debian's own packages through apt, with a private
//! state and cache under `target/linux/apt` and the host's package sources: nothing of the
//! host's apt configuration or installed packages changes, and no root is needed. Files:
//! - `target/linux/aarch64/Image`: the kernel package's `/boot/vmlinuz-*` (an arm64 `Image`);
//! - `target/linux/aarch64/initramfs.cpio`: busybox and `examples/linux-init.sh` as `/init`;
//! - `target/linux/aarch64/VERSION`: which packages they came from.
//!
//! The packages are fetched once; the RAM disk is rebuilt every time, so a changed `/init` is
//! picked up.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::root;

/// Debian's metapackage that names the current arm64 kernel.
const KERNEL_META: &str = "linux-image-arm64";
const BUSYBOX: &str = "busybox-static";

/// What the partitions boot.
pub struct Files {
    pub image: PathBuf,
    pub initramfs: PathBuf,
}

fn linux_dir() -> PathBuf {
    root().join("target/linux")
}

/// Runs an apt tool for arm64 with the private state under `apt` and returns its output.
fn apt(tool: &str, apt: &Path, args: &[&str], cwd: &Path) -> Result<String> {
    let status_file = apt.join("status");
    let out = Command::new(tool)
        .current_dir(cwd)
        .args(["-o", "APT::Architecture=arm64"])
        .args(["-o", "APT::Architectures::=arm64"])
        .arg("-o")
        .arg(format!("Dir::State={}", apt.join("state").display()))
        .arg("-o")
        .arg(format!("Dir::State::status={}", status_file.display()))
        .arg("-o")
        .arg(format!("Dir::Cache={}", apt.join("cache").display()))
        // The host's apt lock guards the host's state, which this never writes.
        .args(["-o", "Debug::NoLocking=1"])
        .args(args)
        .output()
        .with_context(|| format!("running {tool} (Linux partitions need Debian's apt)"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{tool} {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

/// The kernel package the metapackage depends on (e.g. `linux-image-6.1.0-57-arm64`).
fn kernel_package(depends: &str) -> Option<&str> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-arm64"))
}

/// The one `.deb` in `dir` whose name starts with `package_`.
fn deb(dir: &Path, package: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package} package in {}",
                dir.display()
            )
        })
}

fn unpack(deb: &Path, into: &Path) -> Result<()> {
    fs::create_dir_all(into)?;
    crate::tools::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(into))
}

/// Downloads the two packages and unpacks the kernel and busybox into `out`.
fn download(out: &Path) -> Result<String> {
    let base = linux_dir();
    let apt_dir = base.join("apt");
    for d in ["state/lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(apt_dir.join(d))?;
    }
    fs::write(apt_dir.join("status"), "")?;
    println!(
        "fetch-linux: reading Debian's arm64 package lists (apt, private state in {})",
        apt_dir.display()
    );
    apt("apt-get", &apt_dir, &["update"], &base)?;
    let depends = apt("apt-cache", &apt_dir, &["depends", KERNEL_META], &base)?;
    let kernel = kernel_package(&depends)
        .with_context(|| format!("{KERNEL_META} names no kernel package:\n{depends}"))?
        .to_string();
    let debs = base.join("debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs)?;
    println!("fetch-linux: downloading {kernel} and {BUSYBOX}");
    apt("apt-get", &apt_dir, &["download", &kernel, BUSYBOX], &debs)?;
    let tree = base.join("tree");
    let _ = fs::remove_dir_all(&tree);
    unpack(&deb(&debs, &kernel)?, &tree)?;
    unpack(&deb(&debs, BUSYBOX)?, &tree)?;
    let vmlinuz = fs::read_dir(tree.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{kernel} has no /boot/vmlinuz-*"))?;
    fs::copy(&vmlinuz, out.join("Image"))?;
    fs::copy(tree.join("bin/busybox"), out.join("busybox"))?;
    let _ = fs::remove_dir_all(&tree);
    let versions: Vec<String> = fs::read_dir(&debs)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    Ok(versions.join("\n") + "\n")
}

/// An initial RAM disk (newc cpio, Documentation/driver-api/early-userspace) holding busybox as
/// `/bin/busybox`, `init` as `/init`, the mount points it uses and `/dev/console`, which the
/// kernel opens for `/init` before devtmpfs is mounted.
fn initramfs(busybox: &[u8], init: &[u8]) -> Result<Vec<u8>> {
    use cpio::NewcBuilder as Entry;
    const DIR: u32 = 0o040_755;
    const EXEC: u32 = 0o100_755;
    const CHAR: u32 = 0o020_600;
    let dir = |name| (Entry::new(name).mode(DIR), Cursor::new(&[][..]));
    let entries = vec![
        dir("bin"),
        dir("dev"),
        dir("proc"),
        dir("sys"),
        (
            Entry::new("dev/console")
                .mode(CHAR)
                .rdev_major(5)
                .rdev_minor(1),
            Cursor::new(&[][..]),
        ),
        (Entry::new("bin/busybox").mode(EXEC), Cursor::new(busybox)),
        (Entry::new("init").mode(EXEC), Cursor::new(init)),
    ];
    Ok(cpio::write_cpio(entries.into_iter(), Vec::new())?)
}

/// Fetches the kernel and busybox if they are not there yet, and builds the RAM disk.
pub fn fetch() -> Result<Files> {
    let out = linux_dir().join("aarch64");
    fs::create_dir_all(&out)?;
    let image = out.join("Image");
    let busybox = out.join("busybox");
    if !(image.exists() && busybox.exists()) {
        let versions = download(&out).context(
            "fetching Linux for aarch64 partitions (Debian's linux-image-arm64 and busybox-static)",
        )?;
        fs::write(out.join("VERSION"), versions)?;
    }
    let init_script = root().join("examples/linux-init.sh");
    let init =
        fs::read(&init_script).with_context(|| format!("reading {}", init_script.display()))?;
    let initramfs = out.join("initramfs.cpio");
    fs::write(&initramfs, self::initramfs(&fs::read(&busybox)?, &init)?)?;
    Ok(Files { image, initramfs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_package_is_the_metapackages_dependency() {
        let depends = "linux-image-arm64\n  Depends: linux-image-6.1.0-57-arm64\n";
        assert_eq!(kernel_package(depends), Some("linux-image-6.1.0-57-arm64"));
        assert_eq!(kernel_package("linux-image-arm64\n  Depends: kmod\n"), None);
    }

    #[test]
    fn the_ram_disk_holds_init_busybox_and_the_console() {
        let archive = initramfs(b"BUSYBOX", b"#!/bin/busybox sh\n").unwrap();
        let mut names = Vec::new();
        let mut rest = &archive[..];
        loop {
            let entry = cpio::NewcReader::new(rest).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            let e = entry.entry();
            names.push((
                e.name().to_string(),
                e.mode(),
                e.rdev_major(),
                e.file_size(),
            ));
            rest = entry.finish().unwrap();
        }
        assert!(names.contains(&("init".into(), 0o100_755, 0, 18)));
        assert!(names.contains(&("bin/busybox".into(), 0o100_755, 0, 7)));
        assert!(names.contains(&("dev/console".into(), 0o020_600, 5, 0)));
    }
}
