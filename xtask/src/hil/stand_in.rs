//! A board of the stand-in rig: QEMU `virt` at EL2 standing in for hardware. Its serial port is
//! QEMU's pseudo-terminal, opened like a real one; power on starts QEMU, power off kills it; the
//! reset line is QMP's `system_reset`; the fault line `stall` freezes the emulator (SIGSTOP) while
//! asserted. The board keeps its clock on the host's, as hardware runs in real time.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::Value;

use super::rig::Board;
use super::transcript::Transcript;
use crate::build::Image;
use crate::cluster::hub::PortAddr;
use crate::emulator;
use tandem_core::config::{Arch, Mac};

/// How long QEMU may take to open its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(10);

/// The stand-in's one fault line.
pub const STALL: &str = "stall";

pub struct EmulatedBoard {
    name: String,
    image: Image,
    dir: PathBuf,
    console: Transcript,
    running: Option<Running>,
    /// Its NIC's address and port on the rig's network, if it is on one.
    station: Option<(Mac, PortAddr)>,
    /// The hypervisor's boot options.
    boot: Option<String>,
}

/// A powered board: its emulator, its QMP connection, and the thread following its console.
struct Running {
    qemu: Child,
    qmp: Qmp,
    stop: Arc<AtomicBool>,
    reader: thread::JoinHandle<()>,
}

impl EmulatedBoard {
    /// Board `name` booting `image` with the options `boot`, run in `dir`, on the rig's network
    /// at `station`; powered off.
    pub fn new(
        name: &str,
        image: Image,
        boot: Option<String>,
        dir: &Path,
        station: Option<(Mac, PortAddr)>,
    ) -> Result<Self> {
        if image.config.system.board.arch != Arch::Aarch64 {
            bail!(
                "board `{name}`: a stand-in board is QEMU `virt` at EL2 (aarch64): the reset line \
                 is QMP's, and VT-x under QEMU needs KVM, which CI machines lack"
            );
        }
        fs::create_dir_all(dir)?;
        Ok(Self {
            name: name.to_string(),
            image,
            dir: dir.to_path_buf(),
            console: Transcript::default(),
            running: None,
            station,
            boot,
        })
    }

    fn start(&mut self) -> Result<Running> {
        let qmp_path = self.dir.join("qmp.sock");
        let _ = fs::remove_file(&qmp_path);
        let mut cmd = emulator::qemu_aarch64_machine(&self.image)?;
        // Started halted (-S): the runner opens the pseudo-terminal first, since QEMU drops
        // what the console prints while nobody has it open.
        cmd.args(["-S", "-accel", "tcg,thread=multi"])
            .arg("-append")
            .arg(self.boot.as_deref().unwrap_or_default())
            .args(["-chardev", "pty,id=console", "-serial", "chardev:console"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .process_group(0)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.join("emulator.out"))?)
            .stderr(File::create(self.dir.join("emulator.err"))?);
        if let Some((mac, port)) = self.station {
            emulator::qemu_aarch64_nic(&mut cmd, &mac.text(), port);
        }
        let mut qemu = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let started = Qmp::connect(&qmp_path, &mut qemu).and_then(|mut qmp| {
            let pty = qmp.console_pty()?;
            let port = crate::monitor::open(&pty, 115_200)?;
            let stop = Arc::new(AtomicBool::new(false));
            let reader = self.console.follow(port, stop.clone());
            qmp.execute("cont")?;
            Ok((qmp, stop, reader))
        });
        match started {
            Ok((qmp, stop, reader)) => Ok(Running {
                qemu,
                qmp,
                stop,
                reader,
            }),
            Err(e) => {
                kill(&mut qemu);
                Err(e.context(format!(
                    "board `{}`: starting its emulator (see {})",
                    self.name,
                    self.dir.join("emulator.err").display()
                )))
            }
        }
    }

    fn running(&mut self) -> Result<&mut Running> {
        let name = &self.name;
        self.running
            .as_mut()
            .ok_or_else(|| anyhow!("board `{name}` is powered off"))
    }
}

impl Board for EmulatedBoard {
    fn console(&self) -> &Transcript {
        &self.console
    }

    fn power(&mut self, on: bool) -> Result<()> {
        match (on, self.running.take()) {
            (true, None) => self.running = Some(self.start()?),
            (true, running) => self.running = running,
            (false, None) => {}
            (false, Some(mut running)) => {
                kill(&mut running.qemu);
                running.stop.store(true, Ordering::Release);
                let _ = running.reader.join();
            }
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        self.running()?.qmp.execute("system_reset")
    }

    fn fault(&mut self, line: &str, asserted: bool) -> Result<()> {
        if line != STALL {
            bail!("a stand-in board has one fault line, `{STALL}`");
        }
        let group = self.running()?.qemu.id();
        let signal = if asserted { Signal::STOP } else { Signal::CONT };
        let pid = i32::try_from(group)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| anyhow!("no process {group}"))?;
        kill_process_group(pid, signal).context("signalling the emulator")
    }

    /// The log QEMU's semihosting writes to `log.bin` (started afresh at each boot).
    fn log(&self) -> Result<Vec<String>> {
        let bytes = fs::read(self.dir.join("log.bin")).unwrap_or_default();
        let (lines, _) = crate::logs::decode(&fs::read(&self.image.elf)?, &bytes)?;
        Ok(lines)
    }
}

impl Drop for EmulatedBoard {
    fn drop(&mut self) {
        let _ = self.power(false);
    }
}

/// Kills QEMU's process group (a board losing power: nothing more leaves it) and reaps it.
fn kill(qemu: &mut Child) {
    if let Some(group) = i32::try_from(qemu.id()).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(group, Signal::CONT);
        let _ = kill_process_group(group, Signal::KILL);
    }
    let _ = qemu.wait();
}

/// A QMP connection (QEMU's JSON machine protocol, one object a line).
struct Qmp {
    from: BufReader<UnixStream>,
    to: UnixStream,
}

impl Qmp {
    /// Connects once QEMU listens, and leaves capabilities negotiation.
    fn connect(path: &Path, qemu: &mut Child) -> Result<Self> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if start.elapsed() < QMP_WAIT && qemu.try_wait()?.is_none() => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e).context("connecting to QEMU's QMP socket"),
            }
        };
        stream.set_read_timeout(Some(QMP_WAIT))?;
        let mut qmp = Self {
            from: BufReader::new(stream.try_clone()?),
            to: stream,
        };
        qmp.next().context("QMP greeting")?;
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    fn next(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.from.read_line(&mut line)? == 0 {
            bail!("QEMU closed its QMP socket");
        }
        serde_json::from_str(&line).with_context(|| format!("QMP sent `{}`", line.trim()))
    }

    /// Runs `command` and returns its result (events that arrive first are skipped).
    fn execute(&mut self, command: &str) -> Result<()> {
        self.call(command).map(|_| ())
    }

    fn call(&mut self, command: &str) -> Result<Value> {
        writeln!(self.to, "{}", serde_json::json!({ "execute": command }))?;
        loop {
            let reply = self.next()?;
            if let Some(result) = reply.get("return") {
                return Ok(result.clone());
            }
            if let Some(error) = reply.get("error") {
                bail!("QMP `{command}`: {error}");
            }
        }
    }

    /// The pseudo-terminal QEMU made for the console (`pty:/dev/pts/N`).
    fn console_pty(&mut self) -> Result<PathBuf> {
        let devices = self.call("query-chardev")?;
        devices
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d.get("label").and_then(Value::as_str) == Some("console"))
            .find_map(|d| d.get("filename")?.as_str()?.strip_prefix("pty:"))
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("QMP query-chardev shows no pseudo-terminal for the console"))
    }
}
