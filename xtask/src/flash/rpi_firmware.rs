//! The Raspberry Pi 4's boot firmware for its SD card: the user's copy (`--firmware DIR`), or
//! Debian's.
//!
//! Debian's comes from two packages, fetched with apt and unpacked under `target/rpi-firmware`,
//! never installed: `raspi-firmware` (in the non-free-firmware component), whose
//! `/usr/lib/raspi-firmware` holds `start4.elf` and `fixup4.dat` but no device tree and no
//! overlays, and the arm64 kernel package `linux-image-arm64` names, whose
//! `/usr/lib/linux-image-*/broadcom/` holds the mainline `bcm2711-rpi-4-b.dtb` (Debian's own
//! Raspberry Pi images pair the two the same way). Installing `raspi-firmware` on the host would
//! be wrong: its postinst fails on a machine without `/boot/firmware` mounted, and its kernel
//! hooks then copy files into `/boot/firmware` at every kernel upgrade. apt runs with its own
//! lists, cache and package sources (the host's Debian mirror and suite, with `main` and
//! `non-free-firmware`), so nothing of the host's apt configuration changes and no root is needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::root;

/// The files the Pi 4 cannot boot without: the VideoCore firmware, its matching memory fixup,
/// and the board's device tree, which the firmware completes and hands to the kernel.
pub const REQUIRED: [&str; 3] = ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"];
/// The overlay that gives UART0 (the PL011) to GPIO 14 and 15, taking it from Bluetooth.
pub const DISABLE_BT: &str = "overlays/disable-bt.dtbo";

/// Where the firmware files are, and whether the overlay is among them.
pub struct Firmware {
    pub dir: PathBuf,
    pub disable_bt: bool,
}

impl Firmware {
    /// The files to copy to the card, as paths relative to [`Firmware::dir`] (and the card's root).
    pub fn files(&self) -> Vec<&'static str> {
        let mut files = REQUIRED.to_vec();
        if self.disable_bt {
            files.push(DISABLE_BT);
        }
        files
    }
}

/// The user's firmware folder (the Raspberry Pi firmware's `boot` folder, or a Pi's boot
/// partition), which must hold every [`REQUIRED`] file.
pub fn user(dir: &Path) -> Result<Firmware> {
    if !dir.is_dir() {
        bail!("--firmware {}: not a folder", dir.display());
    }
    if let Some(missing) = REQUIRED.iter().find(|f| !dir.join(f).is_file()) {
        bail!(
            "--firmware {}: {missing} is missing (a Raspberry Pi 4 needs {})",
            dir.display(),
            REQUIRED.join(", ")
        );
    }
    Ok(Firmware {
        dir: dir.to_path_buf(),
        disable_bt: dir.join(DISABLE_BT).is_file(),
    })
}

fn base() -> PathBuf {
    root().join("target/rpi-firmware")
}

/// Debian's firmware, fetched on first use.
pub fn debian() -> Result<Firmware> {
    let dir = base().join("files");
    if !REQUIRED.iter().all(|f| dir.join(f).is_file()) {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let versions = fetch(&dir).context(
            "fetching Debian's Raspberry Pi firmware (raspi-firmware and linux-image-arm64); \
             `--firmware DIR` takes the firmware from a folder instead",
        )?;
        fs::write(dir.join("VERSION"), versions)?;
    }
    Ok(Firmware {
        dir,
        disable_bt: false,
    })
}

/// The host's Debian release name (`VERSION_CODENAME` in `/etc/os-release`).
fn debian_suite() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    };
    if field("ID").as_deref() != Some("debian") {
        bail!("this host is not Debian (/etc/os-release), so it has no Debian package sources");
    }
    field("VERSION_CODENAME").context("/etc/os-release names no VERSION_CODENAME")
}

/// The Debian mirror the host's apt sources use for `suite`, or Debian's own.
fn debian_mirror(suite: &str) -> String {
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(
            paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
                .filter_map(|p| fs::read_to_string(p).ok()),
        );
    }
    texts
        .iter()
        .find_map(|t| mirror_in(t, suite))
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// The URI of the first source in `text` (one-line `deb` entries or deb822 stanzas) that
/// serves `suite` itself (not its updates or security suites).
fn mirror_in(text: &str, suite: &str) -> Option<String> {
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let words: Vec<&str> = words.collect();
        // Options in brackets come first: `deb [signed-by=...] URI SUITE COMPONENTS`.
        let rest = match words.iter().position(|w| w.ends_with(']')) {
            Some(i) if words[0].starts_with('[') => &words[i + 1..],
            _ => &words[..],
        };
        if rest.get(1) == Some(&suite) {
            return rest.first().map(|u| (*u).to_string());
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let debs = field("Types").is_some_and(|t| t.split_whitespace().any(|w| w == "deb"));
        let serves = field("Suites").is_some_and(|s| s.split_whitespace().any(|w| w == suite));
        if debs && serves {
            return field("URIs")?.split_whitespace().next().map(String::from);
        }
    }
    None
}

/// Runs apt `tool` for arm64 with the private state under `apt` and returns its output.
fn apt(tool: &str, apt: &Path, args: &[&str], cwd: &Path) -> Result<String> {
    let out = Command::new(tool)
        .current_dir(cwd)
        .args([
            "-o",
            "APT::Architecture=arm64",
            "-o",
            "APT::Architectures::=arm64",
        ])
        .arg("-o")
        .arg(format!("Dir::State={}", apt.join("state").display()))
        .arg("-o")
        .arg(format!(
            "Dir::State::status={}",
            apt.join("status").display()
        ))
        .arg("-o")
        .arg(format!("Dir::Cache={}", apt.join("cache").display()))
        // Only the sources written under `apt`, none of the host's.
        .args(["-o", "Dir::Etc::SourceList=/dev/null"])
        .arg("-o")
        .arg(format!(
            "Dir::Etc::SourceParts={}",
            apt.join("sources").display()
        ))
        // The host's apt lock guards the host's state, which this never writes.
        .args(["-o", "Debug::NoLocking=1"])
        .args(args)
        .output()
        .with_context(|| format!("running {tool}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{tool} {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

/// The one `.deb` in `dir` whose name starts with `package_`.
fn deb(dir: &Path, package: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .with_context(|| format!("apt-get download left no {package} package"))
}

/// Unpacks the files of `deb` whose paths match `pattern` into `into` (the rest of a kernel
/// package, its modules, is hundreds of megabytes not worth writing).
fn unpack(deb: &Path, pattern: &str, into: &Path) -> Result<()> {
    fs::create_dir_all(into)?;
    let mut archive = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let stdout = archive.stdout.take().context("dpkg-deb's output")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .args(["--wildcards", pattern])
        .stdin(stdout)
        .status()
        .context("running tar");
    let dpkg = archive.wait()?;
    if !dpkg.success() || !tar?.success() {
        bail!("unpacking {pattern} from {} failed", deb.display());
    }
    Ok(())
}

/// The single file under `tree` named `name`, wherever the package put it.
fn find(tree: &Path, name: &str) -> Result<PathBuf> {
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                return Ok(path);
            }
        }
    }
    bail!("the packages hold no {name}")
}

/// Fetches the two packages and puts the [`REQUIRED`] files in `out`; returns the packages'
/// file names, for `VERSION`.
fn fetch(out: &Path) -> Result<String> {
    let suite = debian_suite()?;
    let mirror = debian_mirror(&suite);
    let base = base();
    let apt_dir = base.join("apt");
    for d in ["state/lists/partial", "cache/archives/partial", "sources"] {
        fs::create_dir_all(apt_dir.join(d))?;
    }
    fs::write(apt_dir.join("status"), "")?;
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    let signed_by = if keyring.exists() {
        format!("Signed-By: {}\n", keyring.display())
    } else {
        String::new()
    };
    fs::write(
        apt_dir.join("sources/debian.sources"),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main non-free-firmware\n\
             {signed_by}"
        ),
    )?;
    eprintln!(
        "flash: enabling Debian's non-free-firmware component ({mirror} {suite}) for this one \
         download of raspi-firmware, in apt's private state under {} (the host's apt sources \
         are not changed, nothing is installed)",
        apt_dir.display()
    );
    apt("apt-get", &apt_dir, &["update"], &base)?;
    let depends = apt(
        "apt-cache",
        &apt_dir,
        &["depends", "linux-image-arm64"],
        &base,
    )?;
    let kernel = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-arm64"))
        .with_context(|| format!("linux-image-arm64 names no kernel package:\n{depends}"))?
        .to_string();
    let debs = base.join("debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs)?;
    eprintln!("flash: downloading raspi-firmware and {kernel} (for its device trees)");
    apt(
        "apt-get",
        &apt_dir,
        &["download", "raspi-firmware", &kernel],
        &debs,
    )?;
    let tree = base.join("tree");
    let _ = fs::remove_dir_all(&tree);
    unpack(
        &deb(&debs, "raspi-firmware")?,
        "./usr/lib/raspi-firmware/*",
        &tree,
    )?;
    unpack(
        &deb(&debs, &kernel)?,
        "*/broadcom/bcm2711-rpi-4-b.dtb",
        &tree,
    )?;
    for name in REQUIRED {
        fs::copy(find(&tree, name)?, out.join(name))?;
    }
    let versions: Vec<String> = fs::read_dir(&debs)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let _ = fs::remove_dir_all(&tree);
    let _ = fs::remove_dir_all(&debs);
    Ok(versions.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_the_one_serving_the_suite_itself() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_in(deb822, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        let one_line = "# deb http://old.example/debian bookworm main\n\
                        deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(one_line, "bookworm").as_deref(),
            Some("http://one.example/debian")
        );
        assert_eq!(mirror_in(one_line, "trixie"), None);
    }

    #[test]
    fn a_folder_without_a_required_file_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("tandem-fw-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("start4.elf"), b"").unwrap();
        fs::write(dir.join("bcm2711-rpi-4-b.dtb"), b"").unwrap();
        let error = user(&dir).err().unwrap().to_string();
        assert!(error.contains("fixup4.dat is missing"), "{error}");
        fs::write(dir.join("fixup4.dat"), b"").unwrap();
        let firmware = user(&dir).unwrap();
        assert_eq!(firmware.files(), REQUIRED.to_vec());
        fs::remove_dir_all(&dir).unwrap();
    }
}
