//! `cargo xtask monitor --board B --port /dev/ttyX [--log-port /dev/ttyY] [--elf FILE]`: a
//! board's console lines and its hypervisor's defmt log, decoded live with the ELF that was
//! flashed, which the log's build id must match.

mod gate;
pub mod replay;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use defmt_decoder::{DecodeError, Table};
use object::Object;

use crate::config;
use gate::{Gate, Show};

/// What `monitor` is asked to watch.
pub struct Args {
    pub board: String,
    pub port: PathBuf,
    pub log_port: Option<PathBuf>,
    pub elf: Option<PathBuf>,
    pub baud: u32,
}

/// How long a read waits before the loop looks again (a quiet line is not an error).
const READ_SLICE: Duration = Duration::from_millis(200);

/// Where `cargo xtask flash` keeps the ELF of the image it last wrote for `board`.
pub fn flashed_elf(board: &str) -> PathBuf {
    crate::root()
        .join("build/flashed")
        .join(format!("{board}.elf"))
}

/// Opens `path` (a serial port, or a pseudo-terminal standing in for one) at `baud`, 8N1.
pub fn open(path: &Path, baud: u32) -> Result<Box<dyn serialport::SerialPort>> {
    let name = path
        .to_str()
        .ok_or_else(|| anyhow!("{}: not UTF-8", path.display()))?;
    serialport::new(name, baud)
        .timeout(READ_SLICE)
        .open()
        .with_context(|| format!("opening the serial port {name}"))
}

/// The ELF's build id (the linker's GNU note).
pub fn build_id(elf: &[u8]) -> Result<Vec<u8>> {
    let file = object::File::parse(elf).context("reading the ELF")?;
    match file.build_id().context("reading the ELF's notes")? {
        Some(id) => Ok(id.to_vec()),
        None => bail!("the ELF has no build id: not a Tandem hypervisor image of this version"),
    }
}

pub fn run(args: Args) -> Result<bool> {
    let board = config::load_board(&args.board)?;
    let elf_path = args.elf.clone().unwrap_or_else(|| flashed_elf(&args.board));
    let elf = fs::read(&elf_path).with_context(|| {
        format!(
            "reading {}: flash the board with `cargo xtask flash --board {}` first, or name \
             the ELF with --elf",
            elf_path.display(),
            args.board
        )
    })?;
    let console = open(&args.port, args.baud)?;
    let log = match (&args.log_port, board.log_is_uart()) {
        (Some(port), true) => Some(open(port, args.baud)?),
        (Some(_), false) => bail!(
            "board `{}` logs through semihosting, which only an emulator has: no --log-port",
            args.board
        ),
        (None, true) => {
            eprintln!("(no --log-port: the console only; the hypervisor's log is on its own UART)");
            None
        }
        (None, false) => None,
    };
    eprintln!(
        "monitoring {} ({} baud){}; Ctrl-C ends",
        args.port.display(),
        args.baud,
        args.log_port
            .as_ref()
            .map(|p| format!(" and its log on {}", p.display()))
            .unwrap_or_default()
    );
    let console = thread::spawn(move || copy_console(console));
    if let Some(log) = log {
        watch_log(log, &elf, |line| {
            println!("[log] {line}");
            true
        })?;
    }
    console
        .join()
        .map_err(|_| anyhow!("the console's thread panicked"))?;
    Ok(true)
}

/// Shows the console's bytes as they come.
fn copy_console(mut port: impl Read) {
    let mut buf = [0u8; 256];
    let mut out = std::io::stdout();
    loop {
        match port.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
            }
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return,
        }
    }
}

/// Decodes the log arriving on `port` with `elf`, giving each line to `show` (which returns
/// whether to go on) once the log's build id matched the ELF's. Ends when the port does (or
/// `show` says so); an ELF that is not the running image's is an error.
pub fn watch_log(
    mut port: impl Read,
    elf: &[u8],
    mut show: impl FnMut(&str) -> bool,
) -> Result<()> {
    let mut gate = Gate::new(&build_id(elf)?);
    let table = Table::parse(elf)
        .map_err(|e| anyhow!("reading defmt data from the ELF: {e}"))?
        .ok_or_else(|| anyhow!("the ELF carries no defmt data"))?;
    let mut decoder = table.new_stream_decoder();
    let mut buf = [0u8; 1024];
    loop {
        let n = match port.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
            // A pseudo-terminal whose other end closed reads as an I/O error: the line ended.
            Err(_) => return Ok(()),
        };
        decoder.received(&buf[..n]);
        loop {
            let frame = match decoder.decode() {
                Ok(frame) => frame,
                Err(DecodeError::UnexpectedEof) => break,
                Err(DecodeError::Malformed) => {
                    gate.malformed()?;
                    continue;
                }
            };
            let message = frame.display_message().to_string();
            let level = frame
                .level()
                .map(|l| l.as_str().to_uppercase())
                .unwrap_or_else(|| "PRINT".into());
            let shown = match gate.frame(&message, format!("{level:<5} {message}"))? {
                Show::Lines(lines) => lines,
                Show::Unchecked(lines) => {
                    eprintln!(
                        "(no build id in the log yet: the board booted before the monitor \
                         started, so the ELF cannot be checked; lines follow unchecked)"
                    );
                    lines
                }
            };
            for line in shown {
                let line = if gate.unchecked() {
                    format!("{line} (unchecked)")
                } else {
                    line
                };
                if !show(&line) {
                    return Ok(());
                }
            }
        }
    }
}
