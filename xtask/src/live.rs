//! `cargo xtask qemu`: running a partitions file the way a user tries one, each partition's
//! lines shown as the hypervisor prints them (read from the run's `console.out` while the
//! emulator runs), then the hypervisor's log and how the run ended. With a terminal on standard
//! input, what the user types goes to the machine's console line ([`crate::terminal`]).

use std::fs;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::build::{self, Image};
use crate::config::{self, ArchName, EmulatorName};
use crate::emulator::{self, Accel, Feed, Run};
use crate::{Arch, EmulatorChoice, guests, terminal, tools};

/// The deadline of an interactive run unless `--timeout` gives one: the user ends it.
const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// How often the console file is read while the emulator runs.
const POLL: Duration = Duration::from_millis(50);

/// Prints what `path` gains as it comes, a line's part too (a shell's prompt, the echo of what
/// is typed: the hypervisor shows those before the line ends), until `stop` is set; then ends an
/// unfinished last line.
fn follow(path: PathBuf, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (mut offset, mut open) = (0u64, false);
        loop {
            let done = stop.load(Ordering::Acquire);
            if let Ok(mut file) = fs::File::open(&path) {
                let len = file.metadata().map_or(0, |m| m.len());
                if len < offset {
                    // The emulator started it anew.
                    offset = 0;
                }
                if file.seek(SeekFrom::Start(offset)).is_ok() {
                    let mut fresh = Vec::new();
                    if let Ok(n) = file.read_to_end(&mut fresh)
                        && n > 0
                    {
                        offset += n as u64;
                        open = fresh.last() != Some(&b'\n');
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&fresh);
                        let _ = out.flush();
                    }
                }
            }
            if done {
                if open {
                    println!();
                }
                return;
            }
            thread::sleep(POLL);
        }
    })
}

/// `cargo xtask qemu` without `--config`: the demo's partitions on whichever emulator can run
/// them here.
pub fn demo(
    arch: Arch,
    choice: Option<EmulatorChoice>,
    timeout: Option<Duration>,
    boot: &str,
) -> Result<bool> {
    let board = match arch {
        Arch::Aarch64 => {
            println!(
                "Running the aarch64 demo in QEMU virt (EL2, GICv3, TCG with -icount shift=0)."
            );
            "qemu-virt-aarch64"
        }
        Arch::X86_64 => {
            let kvm = emulator::kvm_has_vmx();
            let (board, why) = match choice {
                Some(EmulatorChoice::Qemu) => ("qemu-x86_64", "as asked"),
                Some(EmulatorChoice::Bochs) => ("bochs-x86_64", "as asked"),
                None if kvm => ("qemu-x86_64", "KVM exposes nested VT-x"),
                None => ("bochs-x86_64", "this host's KVM has no nested VT-x"),
            };
            let emulator = if kvm && board.starts_with("qemu") {
                "QEMU with KVM"
            } else if board.starts_with("qemu") {
                "QEMU without KVM"
            } else {
                "Bochs (emulated VT-x)"
            };
            println!("Running the x86_64 demo in {emulator}: {why}.");
            board
        }
    };
    let file = config::board_dir(board).join("partitions.toml");
    run_config(&file, Some(arch), choice, timeout, boot)
}

/// Builds `file` (a partitions file) and runs it on its board's emulator for at most `timeout`,
/// showing each partition's lines as they come; true if every partition stopped in time.
pub fn run_config(
    file: &Path,
    arch: Option<Arch>,
    choice: Option<EmulatorChoice>,
    timeout: Option<Duration>,
    boot: &str,
) -> Result<bool> {
    let board = config::board_of(file)?;
    let board_arch: Arch = board.arch.into();
    if let Some(asked) = arch.filter(|&a| a != board_arch) {
        bail!(
            "{} runs on board `{}`, an {} board, not on {}",
            file.display(),
            board.name,
            board_arch.name(),
            asked.name()
        );
    }
    let emulator = match (board.arch, board.emulator, choice) {
        (_, EmulatorName::None, _) => bail!(
            "board `{}` is real hardware that no emulator here models: write its image with \
             `cargo xtask flash --board {} --to PATH`",
            board.name,
            board.name
        ),
        (ArchName::Aarch64, _, _) => EmulatorName::Qemu,
        (_, _, Some(EmulatorChoice::Qemu)) => EmulatorName::Qemu,
        (_, _, Some(EmulatorChoice::Bochs)) => EmulatorName::Bochs,
        (_, name, None) => name,
    };
    if emulator == EmulatorName::Bochs {
        tools::require(tools::BOCHS)?;
    }
    let guests = guests::build(board_arch)?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("config");
    let image = build::build(file, &guests, &format!("run-{name}"))?;
    // The user's keys reach the console line where the emulator gives it an input side: QEMU
    // `virt` (standard input) and Bochs (a socket); QEMU for x86 writes the line to a file.
    let takes_input = board_arch == Arch::Aarch64 || emulator == EmulatorName::Bochs;
    let interactive = takes_input && std::io::stdin().is_terminal();
    let timeout = timeout.unwrap_or(match emulator {
        _ if interactive => INTERACTIVE_TIMEOUT,
        EmulatorName::Bochs => emulator::BOCHS_TIMEOUT,
        EmulatorName::Qemu | EmulatorName::None => emulator::QEMU_TIMEOUT,
    });
    println!(
        "Running {} on board {} in {} ({}); each partition's lines follow as they come.",
        file.display(),
        board.name,
        if emulator == EmulatorName::Bochs {
            "Bochs"
        } else {
            "QEMU"
        },
        if interactive && timeout == INTERACTIVE_TIMEOUT {
            "until every partition stops or you end it".to_string()
        } else {
            format!("at most {} s", timeout.as_secs())
        }
    );
    if interactive {
        println!(
            "What you type goes to the machine's console line, Ctrl-C included: Ctrl-T ? lists the partitions, Ctrl-T 1-9 sends input to one, Ctrl-T q ends the run."
        );
    } else if std::io::stdin().is_terminal() {
        println!(
            "QEMU for x86 gives the machine's console line no input side: keys typed here go nowhere (Bochs, --emulator bochs, takes them)."
        );
    }
    let run = run_following(&image, emulator, timeout, interactive, boot)?;
    for line in &run.log {
        println!("[tandem] {line}");
    }
    Ok(report(&run, timeout))
}

fn run_following(
    image: &Image,
    emulator: EmulatorName,
    timeout: Duration,
    interactive: bool,
    boot: &str,
) -> Result<Run> {
    let console = image.dir.join("console.out");
    let _ = fs::remove_file(&console);
    // Raw until the run ends (the guard puts the terminal back, also on an error).
    let raw = if interactive {
        terminal::Raw::enter()?
    } else {
        None
    };
    let feed = || {
        if raw.is_some() {
            Feed::Terminal
        } else {
            Feed::File
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let shown = follow(console, stop.clone());
    let run = match (image.config.board.arch, emulator) {
        (ArchName::Aarch64, _) => emulator::qemu_aarch64_fed(image, boot, timeout, feed()),
        (_, EmulatorName::Bochs) => {
            let iso = build::iso(image, boot)?;
            emulator::bochs_fed(image, &iso, timeout, feed())
        }
        _ => {
            // A GRUB ISO when images travel beside the hypervisor (as a Multiboot2 module).
            let iso = build::boot_iso(image, boot, build::Module::AsBuilt)?;
            let accel = if emulator::kvm_has_vmx() {
                Accel::Kvm
            } else {
                println!(
                    "No KVM with nested VT-x here: QEMU emulates a CPU without VMX, so Tandem will refuse to start."
                );
                Accel::Tcg
            };
            emulator::qemu(image, iso.as_deref(), boot, accel, timeout)
        }
    };
    stop.store(true, Ordering::Release);
    let _ = shown.join();
    drop(raw);
    run
}

/// Says how the run ended; true if every partition stopped and the hypervisor ended the run.
fn report(run: &Run, timeout: Duration) -> bool {
    if run.ended_by_user {
        println!(
            "You ended the run (Ctrl-T q) after {:.1} s.",
            run.elapsed.as_secs_f64()
        );
        return true;
    }
    if run.success {
        println!(
            "Every partition stopped; the run ended normally after {:.1} s.",
            run.elapsed.as_secs_f64()
        );
    } else if run.timed_out {
        println!(
            "Stopped at the timeout: not every partition had stopped after {} s (--timeout S gives more).",
            timeout.as_secs()
        );
    } else {
        println!(
            "The run did not end normally (status {:?}). Emulator log tail:\n{}",
            run.status, run.emulator_log
        );
    }
    run.success
}
