//! The rig file: each board's serial port, its power, reset and fault lines, and what it runs;
//! and the seam between the runner and a rig's hardware ([`Board`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::transcript::Transcript;

/// A board on a rig, as the scenarios drive it.
pub trait Board {
    /// What the board's console has shown since the runner started watching it.
    fn console(&self) -> &Transcript;
    /// Switches the board's power on or off.
    fn power(&mut self, on: bool) -> Result<()>;
    /// Pulses the board's reset line.
    fn reset(&mut self) -> Result<()>;
    /// Asserts or releases the board's fault line `line`.
    fn fault(&mut self, line: &str, asserted: bool) -> Result<()>;
    /// The hypervisor's log since the board last booted, decoded.
    fn log(&self) -> Result<Vec<String>>;
}

/// A rig file (`cargo xtask hil --rig RIG.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigFile {
    pub name: String,
    /// The folder of scenario files, relative to the rig file: `NAME.toml` is `hil/NAME`.
    pub scenarios: PathBuf,
    /// For emulated boards on a network: the runner joins them with a switch and runs the
    /// witness at this MAC address (a real rig has its own switch, and runs `cargo xtask
    /// witness` on a host of its network).
    pub network: Option<NetworkEntry>,
    #[serde(rename = "board")]
    pub boards: Vec<BoardEntry>,
}

/// One board of a rig.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardEntry {
    pub name: String,
    /// What the board runs: a board file's name and a partitions file (relative to the rig
    /// file). A stand-in board is built and booted from it; a real one must have been flashed
    /// with it (`cargo xtask flash`).
    pub image: ImageEntry,
    /// The board is an emulator standing in for hardware: its serial port is the emulator's
    /// pseudo-terminal, its power line starts and kills it, its reset line is QEMU's
    /// `system_reset`, and its fault line `stall` freezes it.
    #[serde(default)]
    pub emulated: bool,
    /// An emulated board's NIC address, on the rig's `network`.
    pub mac: Option<String>,
    pub serial: Option<SerialEntry>,
    pub power: Option<GpioEntry>,
    pub reset: Option<GpioEntry>,
    #[serde(default)]
    pub faults: BTreeMap<String, GpioEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    pub witness: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    pub board: String,
    pub config: Option<PathBuf>,
    /// An emulated board's boot options (its kernel command line, e.g. `recovery=microreboot`);
    /// a real board boots with those of the image flashed on it.
    pub boot: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialEntry {
    pub port: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_baud() -> u32 {
    115_200
}

/// A GPIO line through the Linux GPIO character device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioEntry {
    /// The chip's device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// The line's offset on the chip.
    pub line: u32,
    /// The line is active (powered, in reset, faulted) when low.
    #[serde(default)]
    pub active_low: bool,
}

/// A loaded rig file, with where its relative paths start.
pub struct Rig {
    pub file: RigFile,
    pub dir: PathBuf,
}

impl Rig {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: RigFile = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        check(&file).with_context(|| format!("{}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Self { file, dir })
    }

    /// The folder of the rig's scenarios.
    pub fn scenarios(&self) -> PathBuf {
        self.dir.join(&self.file.scenarios)
    }

    /// A path the rig file gives, relative to it.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.dir.join(relative)
    }
}

/// A board is either emulated or has its serial port and power line; names are unique.
fn check(file: &RigFile) -> Result<()> {
    if file.boards.is_empty() {
        bail!("`board`: a rig has at least one board");
    }
    if let Some(network) = &file.network {
        crate::witness::parse_mac(&network.witness).context("`network.witness`")?;
    }
    for (i, board) in file.boards.iter().enumerate() {
        let field = |f: &str| format!("board `{}`: `{f}`", board.name);
        if file.boards[..i].iter().any(|b| b.name == board.name) {
            bail!("{}: another board has the same name", field("name"));
        }
        if let Some(mac) = &board.mac {
            crate::witness::parse_mac(mac).with_context(|| field("mac"))?;
            if !board.emulated || file.network.is_none() {
                bail!(
                    "{}: only an emulated board on the rig's `network` is given its address",
                    field("mac")
                );
            }
        }
        if board.image.boot.is_some() && !board.emulated {
            bail!(
                "{}: a real board boots with the options of the image flashed on it",
                field("image.boot")
            );
        }
        if board.emulated {
            for (given, name) in [
                (board.serial.is_some(), "serial"),
                (board.power.is_some(), "power"),
                (board.reset.is_some(), "reset"),
                (!board.faults.is_empty(), "faults"),
            ] {
                if given {
                    bail!(
                        "{}: an emulated board's lines are its emulator's",
                        field(name)
                    );
                }
            }
        } else {
            if board.serial.is_none() {
                bail!("{}: missing (the board's console)", field("serial"));
            }
            if board.power.is_none() {
                bail!(
                    "{}: missing (a rig switches its boards' power)",
                    field("power")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rig_in_the_repository_loads() {
        let dir = crate::root().join("rigs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let rig = entry.path().join("rig.toml");
            if rig.exists() {
                let loaded = Rig::load(&rig).unwrap();
                assert!(loaded.scenarios().is_dir(), "{}", rig.display());
                seen += 1;
            }
        }
        assert!(seen >= 2, "the stand-in rig and the example rig");
    }

    #[test]
    fn a_real_board_without_power_or_an_emulated_one_with_lines_is_refused() {
        let no_power = r#"
            name = "r"
            scenarios = "s"
            [[board]]
            name = "a"
            image = { board = "pc-x86_64" }
            serial = { port = "/dev/ttyUSB0" }
        "#;
        let file: RigFile = toml::from_str(no_power).unwrap();
        let e = check(&file).unwrap_err().to_string();
        assert!(e.contains("board `a`: `power`: missing"), "{e}");

        let emulated_serial = r#"
            name = "r"
            scenarios = "s"
            [[board]]
            name = "a"
            image = { board = "qemu-virt-aarch64" }
            emulated = true
            serial = { port = "/dev/ttyUSB0" }
        "#;
        let file: RigFile = toml::from_str(emulated_serial).unwrap();
        let e = check(&file).unwrap_err().to_string();
        assert!(e.contains("board `a`: `serial`"), "{e}");
    }
}
