//! The flashed file booted as a user's machine would boot it: in Bochs from the CD drive, in
//! QEMU from the first hard disk (a USB stick's path through the BIOS, and through UEFI). A board that halts
//! when it is done never ends its emulator, so the run is stopped once the console shows every
//! line the test's rules await (`ends: halted`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::Flashed;
use crate::emulator::{self, Accel, Control, Run};
use crate::scenario::{self, Rule};
use crate::tools;

/// How a test boots the flashed file.
#[derive(Debug, Clone, Copy)]
pub enum Boot {
    /// Bochs (VT-x with EPT), the file in its CD drive.
    BochsCd,
    /// QEMU's software-emulated PC, the file as its hard disk: no VT-x, so the hypervisor
    /// must say so and stop.
    QemuDisk,
    /// The same from UEFI firmware (OVMF) instead of the BIOS.
    QemuUefiDisk,
}

/// One boot of the flashed file: its test name and the rules it is judged by.
pub struct BootTest {
    pub name: &'static str,
    pub boot: Boot,
}

/// Every boot test of the `pc-x86_64` image.
pub const TESTS: [BootTest; 3] = [
    BootTest {
        name: "x86_64/flash-pc-bochs",
        boot: Boot::BochsCd,
    },
    BootTest {
        name: "x86_64/flash-pc-qemu",
        boot: Boot::QemuDisk,
    },
    BootTest {
        name: "x86_64/flash-pc-uefi",
        boot: Boot::QemuUefiDisk,
    },
];

impl BootTest {
    /// `tests/flash/NAME.expect`, NAME without the architecture.
    pub fn rules_file(&self) -> PathBuf {
        let short = self.name.rsplit('/').next().unwrap_or(self.name);
        crate::root()
            .join("tests/flash")
            .join(format!("{short}.expect"))
    }

    /// Boots the flashed file and judges nothing yet: the run, for [`scenario::check`].
    pub fn run(&self, flashed: &Flashed, rules: &[Rule]) -> Result<Run> {
        let control = Control::default();
        let awaited = scenario::awaited(rules);
        let watcher = control.kill_when_shown(&flashed.image.dir, awaited);
        let run = match self.boot {
            Boot::BochsCd => tools::require(tools::BOCHS).and_then(|()| {
                emulator::bochs_controlled(
                    &flashed.image,
                    &flashed.to,
                    scenario::timeout(rules, emulator::BOCHS_TIMEOUT),
                    &control,
                )
            }),
            Boot::QemuDisk | Boot::QemuUefiDisk => emulator::qemu_disk(
                &flashed.image,
                &flashed.to,
                Accel::Tcg,
                matches!(self.boot, Boot::QemuUefiDisk),
                scenario::timeout(rules, QEMU_DISK_TIMEOUT),
                &control,
            ),
        };
        // A run that could not start leaves the watcher waiting: this ends it.
        control.kill();
        let _ = watcher.join();
        run
    }
}

/// QEMU's SeaBIOS and GRUB from a disk take longer under software emulation than `-kernel`.
const QEMU_DISK_TIMEOUT: Duration = Duration::from_secs(60);
