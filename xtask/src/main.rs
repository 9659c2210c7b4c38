//! `cargo xtask`: Tandem's host tool.

mod bench;
mod bench_linux;
mod build;
mod cluster;
mod config;
mod emulator;
mod flash;
mod guests;
mod hil;
mod image_file;
mod inject;
mod lint;
mod linux;
mod live;
mod logs;
#[cfg(test)]
mod modgraph;
mod monitor;
mod recovery_campaign;
mod scenario;
mod terminal;
mod test;
mod tools;
mod user_images;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "Build, run and test the Tandem hypervisor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "aarch64")]
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The folder name used under `tests/` and in test names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// How the hypervisor recovers from its own failures (`recovery=` on its command line).
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum RecoveryMode {
    /// Repair the hypervisor's state in place and resume (NiLiHype-style).
    Microreset,
    /// Boot a fresh hypervisor from its pristine image, keeping the partitions (ReHype-style).
    Microreboot,
}

impl RecoveryMode {
    /// The word on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            RecoveryMode::Microreset => "microreset",
            RecoveryMode::Microreboot => "microreboot",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum EmulatorChoice {
    Bochs,
    Qemu,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a board's configuration and build its hypervisor image.
    Build {
        #[arg(long, default_value = "bochs-x86_64")]
        board: String,
        /// A partitions file to use instead of the board's own `partitions.toml`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Build a board's bootable image and write it to a file or a whole disk (a USB stick, an
    /// SD card): refuses a disk in use, and asks before overwriting anything that is not an
    /// image file.
    Flash {
        #[arg(long)]
        board: String,
        /// A partitions file to use instead of the board's own `partitions.toml`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The file or block device (e.g. /dev/sdb) to write.
        #[arg(long)]
        to: PathBuf,
        /// A Raspberry Pi's firmware folder (start4.elf, fixup4.dat, bcm2711-rpi-4-b.dtb, and
        /// overlays/disable-bt.dtbo if there) instead of Debian's.
        #[arg(long, value_name = "DIR")]
        firmware: Option<PathBuf>,
        /// Overwrite a disk or a non-image file without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Show a board's console and decode its hypervisor's defmt log live, from serial ports,
    /// with the ELF last flashed for the board (or `--elf`), refused if the log's build id
    /// differs.
    Monitor {
        #[arg(long)]
        board: String,
        /// The console's serial port.
        #[arg(long)]
        port: PathBuf,
        /// The serial port of the hypervisor's log, on a board that logs on a UART of its own.
        #[arg(long)]
        log_port: Option<PathBuf>,
        /// The ELF to decode the log with (default: the one `flash` last wrote for the board).
        #[arg(long)]
        elf: Option<PathBuf>,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
    },
    /// Run a hardware-in-the-loop rig's scenarios against its boards (real ones through serial
    /// ports and GPIO lines, or emulators standing in for them) and write a JUnit XML report.
    Hil {
        /// The rig file: its boards' serial ports, power, reset and fault lines, and images.
        #[arg(long)]
        rig: PathBuf,
        /// Run only this scenario (`NAME` or `hil/NAME`).
        #[arg(long)]
        scenario: Option<String>,
        /// Where to write the JUnit XML report (default: build/hil/RIG/junit.xml).
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Run the demo (two partitions side by side), or with `--config` any partitions file,
    /// showing each partition's lines as they come. x86_64: QEMU with KVM where the host has
    /// nested VT-x, otherwise Bochs. aarch64: QEMU `virt` at EL2.
    Qemu {
        /// The demo's architecture (x86_64 if not given); with `--config`, the board decides and
        /// this must agree with it.
        #[arg(long, value_enum)]
        arch: Option<Arch>,
        #[arg(long, value_enum)]
        emulator: Option<EmulatorChoice>,
        /// A partitions file to build and run instead of the demo.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop the run after this many seconds of wall time (then exit non-zero).
        #[arg(long)]
        timeout: Option<u64>,
        /// The hypervisor's boot options (the multiboot command line on x86, `/chosen/bootargs`
        /// on aarch64), e.g. "recovery=microreboot".
        #[arg(long, default_value = "")]
        boot: String,
        /// Instead: a fault-tolerant partition across two emulated boards and a witness, the
        /// primary's board losing power halfway (`tests/ft-boards/pair-ARCH.toml`).
        #[arg(long, conflicts_with_all = ["config", "emulator", "boot", "timeout"])]
        ft_boards: bool,
    },
    /// Run every host unit test and every integration test; ends with `N passed, N failed`.
    Test {
        /// Only run integration tests whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Measure exit costs and boot time in emulated instructions, and Linux's boot to /init.
    Bench {
        /// Only this section.
        #[arg(long, value_enum)]
        only: Option<bench::Section>,
    },
    /// Fetch Debian's arm64 kernel and busybox with apt (packages only, cached under
    /// `target/linux`) and build the initial RAM disk `examples/linux-aarch64.toml` boots.
    FetchLinux,
    /// Run clippy, warnings as errors, on every crate for each target it is built for.
    Lint,
    /// Run a fault-injection campaign: `ft-kill` kills a fault-tolerant partition's primary at a
    /// seeded point in each run and checks the output stream against a fault-free run;
    /// `ft-boards` runs a pair across two emulated boards under a seeded board, link, stall or
    /// witness fault and judges the stream gathered from both;
    /// `failstop`, `register`, `code`, `memory` and `hang` inject that fault into the hypervisor
    /// itself and judge its recovery (`--mode`) by both partitions' streams.
    Inject {
        #[arg(long)]
        campaign: String,
        #[arg(long, value_enum, default_value = "x86_64")]
        arch: Arch,
        #[arg(long, default_value_t = 100)]
        runs: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where runs.jsonl, report.json and report.html go (default
        /// build/campaign-<name>-<arch>/report).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rerun only the run with this seed (as a report names it).
        #[arg(long)]
        replay: Option<u64>,
        /// How the hypervisor recovers (the recovery campaigns; ft-kill ignores it).
        #[arg(long, value_enum, default_value = "microreboot")]
        mode: RecoveryMode,
    },
    /// Run the witness that decides which side of a pair across boards goes live: it answers
    /// claims in Ethernet frames (channel 1) sent to `--mac`, and appends each decision to
    /// `--state` before answering, so a restarted witness names the same winners.
    Witness {
        /// The decisions file (created if missing; a corrupt one refuses the start).
        #[arg(long)]
        state: PathBuf,
        /// The witness's MAC address (xx:xx:xx:xx:xx:xx).
        #[arg(long, value_parser = witness::parse_mac)]
        mac: tandem_ft::link::ether::Mac,
        /// `udp:LOCAL_PORT:REMOTE_PORT` (127.0.0.1) or
        /// `udp:BIND_ADDR:LOCAL_PORT:REMOTE_ADDR:REMOTE_PORT`: binds the local address and
        /// exchanges raw Ethernet frames, one per datagram, with the remote (a hub's port).
        #[arg(long, value_parser = witness::parse_attach)]
        attach: witness::Attach,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build { board, config } => {
            build::build_board(&board, config.as_deref()).map(|img| {
                println!("built {}", img.elf.display());
                true
            })
        }
        Command::Flash {
            board,
            config,
            to,
            firmware,
            yes,
        } => flash::run(&board, config.as_deref(), &to, firmware.as_deref(), yes).map(|_| true),
        Command::Monitor {
            board,
            port,
            log_port,
            elf,
            baud,
        } => monitor::run(monitor::Args {
            board,
            port,
            log_port,
            elf,
            baud,
        }),
        Command::Hil {
            rig,
            scenario,
            junit,
        } => hil::run(&rig, scenario.as_deref(), junit.as_deref()),
        Command::Qemu {
            arch,
            ft_boards: true,
            ..
        } => cluster::demo::run(arch.unwrap_or(Arch::X86_64)),
        Command::Qemu {
            arch,
            emulator,
            config: Some(file),
            timeout,
            boot,
            ..
        } => live::run_config(
            &file,
            arch,
            emulator,
            timeout.map(Duration::from_secs),
            &boot,
        ),
        Command::Qemu {
            arch,
            emulator,
            config: None,
            timeout,
            boot,
            ..
        } => live::demo(
            arch.unwrap_or(Arch::X86_64),
            emulator,
            timeout.map(Duration::from_secs),
            &boot,
        ),
        Command::Test { filter } => test::run(filter.as_deref()),
        Command::Bench { only } => bench::run(only).map(|()| true),
        Command::FetchLinux => linux::fetch().map(|files| {
            println!(
                "kernel {}\ninitial RAM disk {}",
                files.image.display(),
                files.initramfs.display()
            );
            true
        }),
        Command::Lint => lint::run_all().map(|()| true),
        Command::Inject {
            campaign,
            arch,
            runs,
            seed,
            out,
            replay,
            mode,
        } => {
            let c = inject::Campaign {
                name: campaign,
                arch,
                runs,
                seed,
                out,
                replay,
                mode,
            };
            if c.name == inject::FT_KILL {
                inject::run(&c)
            } else if c.name == cluster::campaign::FT_BOARDS {
                cluster::campaign::run(&c)
            } else {
                recovery_campaign::run(&c)
            }
        }
        Command::Witness { state, mac, attach } => witness::run(state, mac, attach).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's parent directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
