//! `cargo xtask hil --rig RIG.toml [--scenario NAME] [--junit FILE]`: runs a rig's scenarios
//! against its boards, real ones ([`hardware`]) or emulators standing in for them
//! ([`stand_in`]), through the same [`rig::Board`] seam, and writes a JUnit XML report.

mod hardware;
pub mod junit;
mod network;
mod oracle;
mod rig;
mod script;
mod stand_in;
mod transcript;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use crate::build::{self, Image};
use junit::Case;
use network::Network;
use rig::{Board, Rig};
use script::Scenario;

/// The rig `cargo xtask test` runs: QEMU boards standing in for hardware.
pub const STAND_IN: &str = "rigs/stand-in/rig.toml";

/// Runs the scenarios of the rig at `rig` that `selected` takes (by name, `hil/NAME`), telling
/// `done` of each as it ends; the report goes to `junit`, or `build/hil/RIG/junit.xml`.
pub fn run_rig(
    rig: &Path,
    selected: &dyn Fn(&str) -> bool,
    junit: Option<&Path>,
    mut done: impl FnMut(&Case),
) -> Result<Vec<Case>> {
    let rig = Rig::load(rig)?;
    let scenarios: Vec<(String, PathBuf)> = list(&rig)?
        .into_iter()
        .filter(|(name, _)| selected(name))
        .collect();
    if scenarios.is_empty() {
        return Ok(Vec::new());
    }
    let out = crate::root().join("build/hil").join(&rig.file.name);
    let images = stand_in_images(&rig)?;
    let mut cases = Vec::new();
    for (name, path) in scenarios {
        let dir = out.join(name.trim_start_matches("hil/"));
        let case = run_one(&rig, &images, &name, &path, &dir);
        done(&case);
        cases.push(case);
    }
    let report = junit.map_or_else(|| out.join("junit.xml"), Path::to_path_buf);
    if let Some(parent) = report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&report, junit::report(&rig.file.name, &cases))
        .with_context(|| format!("writing {}", report.display()))?;
    Ok(cases)
}

/// `cargo xtask hil`: every scenario, or the one named; whether all passed.
pub fn run(rig: &Path, scenario: Option<&str>, junit: Option<&Path>) -> Result<bool> {
    let wanted = scenario.map(|s| {
        if s.starts_with("hil/") {
            s.to_string()
        } else {
            format!("hil/{s}")
        }
    });
    let selected = |name: &str| wanted.as_deref().is_none_or(|w| w == name);
    let cases = run_rig(rig, &selected, junit, print)?;
    if cases.is_empty() {
        let names: Vec<String> = list(&Rig::load(rig)?)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        bail!(
            "{}: no scenario `{}`; it has {}",
            rig.display(),
            wanted.unwrap_or_default(),
            names.join(", ")
        );
    }
    let failed = cases.iter().filter(|c| c.failure.is_some()).count();
    println!("{} passed, {failed} failed", cases.len() - failed);
    Ok(failed == 0)
}

/// One line for a case (and why it failed), as `cargo xtask test` shows its tests.
pub fn print(case: &Case) {
    match &case.failure {
        None => println!(
            "test {} ... ok ({:.1}s)",
            case.name,
            case.elapsed.as_secs_f64()
        ),
        Some(why) => {
            println!("test {} ... FAILED", case.name);
            for line in why.lines() {
                println!("    {line}");
            }
        }
    }
}

/// The rig's scenarios, by name, in order.
fn list(rig: &Rig) -> Result<Vec<(String, PathBuf)>> {
    let dir = rig.scenarios();
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading the scenarios folder {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            Some((format!("hil/{stem}"), p))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Each emulated board's image, built once for all scenarios (and once for boards that run the
/// same one).
fn stand_in_images(rig: &Rig) -> Result<BTreeMap<String, Image>> {
    let mut built: BTreeMap<(String, Option<PathBuf>), Image> = BTreeMap::new();
    let mut images = BTreeMap::new();
    for b in rig.file.boards.iter().filter(|b| b.emulated) {
        let config = b.image.config.as_ref().map(|c| rig.path(c));
        let key = (b.image.board.clone(), config.clone());
        let image = match built.get(&key) {
            Some(image) => image.clone(),
            None => {
                let image = build::build_board(&b.image.board, config.as_deref())
                    .with_context(|| format!("board `{}`: building its image", b.name))?;
                built.insert(key, image.clone());
                image
            }
        };
        images.insert(b.name.clone(), image);
    }
    Ok(images)
}

fn run_one(
    rig: &Rig,
    images: &BTreeMap<String, Image>,
    name: &str,
    path: &Path,
    dir: &Path,
) -> Case {
    let start = Instant::now();
    let mut consoles = Vec::new();
    let result = Scenario::load(path).and_then(|scenario| {
        let names = scenario.boards();
        let network = Network::start(rig, &names, dir)?;
        let mut boards = open(rig, images, &names, dir, network.as_ref())?;
        let result = scenario.run(&mut boards);
        consoles = boards
            .iter()
            .map(|(name, b)| (name.clone(), b.console().lines()))
            .collect();
        // Boards off before the network goes: a board's emulator sends to the switch.
        drop(boards);
        if let Some(network) = network {
            let decisions = network.stop()?;
            std::fs::write(dir.join("witness.log"), decisions.join("\n"))?;
        }
        result
    });
    Case {
        name: name.to_string(),
        elapsed: start.elapsed(),
        failure: result.err().map(|e| format!("{e:#}")),
        consoles,
    }
}

/// The boards `names` of the rig, powered off; stand-ins run in `dir`.
fn open(
    rig: &Rig,
    images: &BTreeMap<String, Image>,
    names: &[&str],
    dir: &Path,
    network: Option<&Network>,
) -> Result<BTreeMap<String, Box<dyn Board>>> {
    names
        .iter()
        .map(|&name| {
            let entry = rig
                .file
                .boards
                .iter()
                .find(|b| b.name == name)
                .ok_or_else(|| anyhow!("the rig has no board `{name}`"))?;
            let board: Box<dyn Board> = match images.get(name) {
                Some(built) => {
                    let dir = dir.join(name);
                    copy_images_file(&built.dir, &dir)?;
                    let image = Image {
                        dir: dir.clone(),
                        elf: built.elf.clone(),
                        config: built.config.clone(),
                    };
                    let station = network.and_then(|n| n.station(name));
                    let boot = entry.image.boot.clone();
                    Box::new(stand_in::EmulatedBoard::new(
                        name, image, boot, &dir, station,
                    )?)
                }
                None => Box::new(hardware::HardwareBoard::open(entry)?),
            };
            Ok((name.to_string(), board))
        })
        .collect()
}

/// The images file QEMU's loader puts in RAM, beside the board's run folder.
fn copy_images_file(built: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = built.join(build::IMAGES_FILE);
    if file.exists() {
        std::fs::copy(&file, dir.join(build::IMAGES_FILE))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_of_every_rig_parses_and_names_only_its_rigs_boards() {
        for entry in std::fs::read_dir(crate::root().join("rigs"))
            .unwrap()
            .flatten()
        {
            let Ok(rig) = Rig::load(&entry.path().join("rig.toml")) else {
                continue;
            };
            let scenarios = list(&rig).unwrap();
            assert!(!scenarios.is_empty(), "{}", entry.path().display());
            for (name, path) in scenarios {
                let scenario = Scenario::load(&path).unwrap();
                for board in scenario.boards() {
                    assert!(
                        rig.file.boards.iter().any(|b| b.name == board),
                        "{name}: board `{board}`"
                    );
                }
            }
        }
    }
}
