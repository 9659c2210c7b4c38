//! Running images: Bochs for VT-x without hardware support, QEMU with KVM where the host exposes
//! nested VT-x. Each run ends by itself; a deadline catches hangs.

use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tandem_core::config::{GicCpu, ImageCarrier};
use wait_timeout::ChildExt;

use crate::build::{IMAGES_FILE, Image};
use crate::cluster::hub::PortAddr;
use crate::config::{ArchName, EmulatorName};
use crate::{logs, terminal, tools};

/// What a run produced.
pub struct Run {
    /// The emulator exited the way the hypervisor signals a finished run.
    pub success: bool,
    /// The emulator exited the way the hypervisor signals its own failure.
    pub failed_cleanly: bool,
    pub status: Option<i32>,
    pub timed_out: bool,
    pub console: Vec<String>,
    pub log: Vec<String>,
    pub malformed_frames: usize,
    pub emulator_log: String,
    pub elapsed: Duration,
    /// The user ended the run from the terminal ([`Feed::Terminal`]).
    pub ended_by_user: bool,
}

impl Run {
    /// Lines for a human: the console, then the hypervisor's log.
    pub fn print(&self, indent: &str) {
        for line in &self.console {
            println!("{indent}{line}");
        }
        for line in &self.log {
            println!("{indent}[tandem] {line}");
        }
    }
}

/// What arrives on the machine's console line.
pub enum Feed {
    /// The run's `console.in`, if its folder has one, all at once.
    File,
    /// Bytes sent in steps, each once the console shows a line its text is part of.
    Script(Vec<Step>),
    /// The user's terminal, key by key, until Ctrl-T q ([`terminal::forward`]).
    Terminal,
}

/// One step of a [`Feed::Script`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Sent once some console line contains this text (at once if `None`).
    pub after: Option<String>,
    pub bytes: Vec<u8>,
}

/// How long a step waits between looks at the console.
const STEP_POLL: Duration = Duration::from_millis(20);

/// Whether some line of the console file `console`, its unfinished last one too, contains `text`.
fn console_shows(console: &Path, text: &str) -> bool {
    // The last line too while it is unfinished: the hypervisor shows a waiting shell's prompt
    // before its line ends.
    String::from_utf8_lossy(&fs::read(console).unwrap_or_default())
        .lines()
        .any(|line| line.contains(text))
}

/// The flags a fed console line shares with the run: the emulator has ended (`done`), the user
/// asked to end it (`quit`).
#[derive(Clone, Default)]
struct Flags {
    done: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    /// The emulator's process (or its wrapper's), once started.
    pid: Arc<AtomicU32>,
}

/// A handle on a running emulator from outside its run: what a test does to a board (pull its
/// plug, freeze it). Killing ends the run as if its user had (`Run::ended_by_user`).
#[derive(Clone, Default)]
pub struct Control {
    flags: Flags,
}

impl Control {
    /// Kills the emulator (a board losing power): nothing more leaves it.
    pub fn kill(&self) {
        self.flags.quit.store(true, Ordering::Release);
    }

    /// Freezes (`true`) or thaws the emulator (a board that stalls and comes back). Only the
    /// processes under a wrapper are stopped: `script` around Bochs stops itself when its child
    /// stops, as job control does, and once continued it continues its child; continuing the
    /// child first would leave `script` stopped, its child's exit never reaped. So a thaw
    /// continues the wrapper, then, in case it did not, the rest.
    pub fn freeze(&self, frozen: bool) {
        let root = self.flags.pid.load(Ordering::Acquire);
        if root == 0 {
            return;
        }
        let signal = |pid: u32, signal: Signal| {
            if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, signal);
            }
        };
        let under = descendants(root);
        if frozen {
            let targets = if under.is_empty() { vec![root] } else { under };
            targets
                .into_iter()
                .for_each(|pid| signal(pid, Signal::STOP));
        } else {
            signal(root, Signal::CONT);
            thread::sleep(Duration::from_millis(50));
            under.into_iter().for_each(|pid| signal(pid, Signal::CONT));
        }
    }

    /// Whether the emulator has ended.
    pub fn ended(&self) -> bool {
        self.flags.done.load(Ordering::Acquire)
    }

    /// Whether the emulator has started (its run's old files are gone by then).
    fn started(&self) -> bool {
        self.flags.pid.load(Ordering::Acquire) != 0
    }

    /// Kills the emulator once its console (`dir/console.out`) shows each of `texts`: a board
    /// that halts when it is done, as real hardware does, never ends its emulator itself. The
    /// returned thread ends then, or when the run ends (or is killed) without them.
    pub fn kill_when_shown(&self, dir: &Path, texts: Vec<String>) -> thread::JoinHandle<()> {
        let (control, console) = (self.clone(), dir.join("console.out"));
        thread::spawn(move || {
            while !control.ended() && !control.flags.quit.load(Ordering::Acquire) {
                if control.started() && texts.iter().all(|t| console_shows(&console, t)) {
                    // What the board logs after its last awaited line reaches the log file.
                    thread::sleep(SETTLE);
                    control.kill();
                    return;
                }
                thread::sleep(STEP_POLL);
            }
        })
    }
}

/// How long a board that showed what a test waited for runs on before it is stopped.
const SETTLE: Duration = Duration::from_secs(2);

/// A board on an emulated network: its NIC's MAC and its port on the hub
/// ([`crate::cluster::hub`]), and the handle a test drives it with.
#[derive(Clone)]
pub struct Networked {
    pub mac: String,
    pub port: PortAddr,
    pub control: Control,
}

/// Sends `feed` (a script or the terminal) into `to`, the emulator's side of the console line,
/// whose output goes to `console`; returns when it is all sent, the terminal closes or the user
/// ends the run, or the emulator has ended.
fn feed_line(feed: Feed, mut to: impl Write, console: &Path, flags: &Flags) {
    match feed {
        Feed::File => {}
        Feed::Script(steps) => {
            for step in steps {
                if let Some(text) = &step.after {
                    while !console_shows(console, text) {
                        if flags.done.load(Ordering::Acquire) {
                            return;
                        }
                        thread::sleep(STEP_POLL);
                    }
                }
                if to.write_all(&step.bytes).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
        }
        Feed::Terminal => terminal::forward(to, &flags.done, &flags.quit),
    }
}

/// Statuses QEMU's isa-debug-exit gives for the hypervisor's codes 0x10 (success) and 0x11.
const QEMU_SUCCESS: i32 = 33;
const QEMU_FAILURE: i32 = 35;

/// `com1` is the console line: a file, or, when the run has input for it, a TCP connection to
/// `console_port` (Bochs's file mode has no input side), which [`ConsoleLine`] serves.
/// The NIC lines of a networked Bochs board: an e1000 on the i440FX's first slot whose frames go
/// through the hub (Bochs binds `ethdev` and sends to `ethdev + 1`, emulators.md 3.7).
fn bochs_nic(net: &Networked) -> String {
    format!(
        "pci: enabled=1, chipset=i440fx, slot1=e1000\ne1000: enabled=1, mac={}, ethmod=socket, ethdev={}\n",
        net.mac, net.port.endpoint
    )
}

fn bochsrc(
    image: &Image,
    iso: &Path,
    console_port: Option<u16>,
    net: Option<&Networked>,
) -> String {
    let board = &image.config.system.board;
    let com1 = match console_port {
        Some(port) => format!("mode=socket-client, dev=127.0.0.1:{port}"),
        None => "mode=file, dev=console.out".into(),
    };
    let ips = board.timer_hz.unwrap_or(4_000_000);
    format!(
        "megs: {megs}
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
cpu: model=corei7_skylake_x, count={cpus}, ips={ips}, reset_on_triple_fault=0
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
display_library: term
com1: enabled=1, {com1}
com2: enabled=1, mode=file, dev=log.bin
log: bochs.log
panic: action=fatal
clock: sync={sync}, time0=946684800
magic_break: enabled=1
{nic}",
        com1 = com1,
        // Boards on a network are paced to wall time so their virtual clocks stay comparable
        // (each one's timeouts judge the other's silence); alone, a run is deterministic.
        sync = if net.is_some() { "slowdown" } else { "none" },
        nic = net.map(bochs_nic).unwrap_or_default(),
        megs = board.ram.size >> 20,
        cpus = board.cpus,
        iso = iso.display(),
    )
}

/// What the emulator's standard input and output carry.
enum Streams {
    /// Its own messages (to `emulator.out`); no input.
    Messages,
    /// The machine's console line: output to `console.out`, input from `feed` (a
    /// [`Feed::File`] is `console.in`, if the run's folder has one).
    Console(Feed),
}

/// How a run ended: status, timed out, ended by the user, how long it took.
struct Ended {
    status: Option<i32>,
    timed_out: bool,
    by_user: bool,
    elapsed: Duration,
}

/// How often the run is checked for its end while it runs.
const WAIT_SLICE: Duration = Duration::from_millis(100);

fn spawn(
    mut cmd: Command,
    dir: &Path,
    timeout: Duration,
    streams: Streams,
    flags: &Flags,
) -> Result<Ended> {
    let start = Instant::now();
    let console = dir.join("console.out");
    let (stdin, stdout, feed) = match streams {
        Streams::Messages => (Stdio::null(), File::create(dir.join("emulator.out"))?, None),
        Streams::Console(Feed::File) => (
            File::open(dir.join("console.in")).map_or_else(|_| Stdio::null(), Stdio::from),
            File::create(&console)?,
            None,
        ),
        Streams::Console(feed) => (Stdio::piped(), File::create(&console)?, Some(feed)),
    };
    let mut child = cmd
        // Its own process group, so a deadline stops the emulator and any wrapper around it.
        .process_group(0)
        .current_dir(dir)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(File::create(dir.join("emulator.err"))?)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    flags.pid.store(child.id(), Ordering::Release);
    let feeder = match (feed, child.stdin.take()) {
        (Some(feed), Some(to)) => {
            let flags = flags.clone();
            Some(thread::spawn(move || feed_line(feed, to, &console, &flags)))
        }
        _ => None,
    };
    let status = loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() || flags.quit.load(Ordering::Acquire) {
            break None;
        }
        if let Some(status) = child.wait_timeout(left.min(WAIT_SLICE))? {
            break Some(status);
        }
    };
    let by_user = status.is_none() && flags.quit.load(Ordering::Acquire);
    let timed_out = status.is_none() && !by_user;
    if status.is_none() {
        // `script` starts Bochs in a session of its own (its pseudo-terminal's), outside the
        // group: the descendants are found first, then the group and they are stopped.
        let descendants = descendants(child.id());
        // The child leads its process group (above), so the group's id is the child's.
        if let Some(group) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        for pid in descendants {
            if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        let _ = child.wait();
    }
    flags.done.store(true, Ordering::Release);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    Ok(Ended {
        status: status.and_then(|s| s.code()),
        timed_out,
        by_user,
        elapsed: start.elapsed(),
    })
}

/// Every process descended from `root`, from `/proc` (empty if it cannot be read).
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces, so read after its last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(c, _)| c),
        );
        next += 1;
    }
    found.split_off(1)
}

fn collect(image: &Image, emulator: EmulatorName, ended: Ended, emulator_log: &str) -> Result<Run> {
    let Ended {
        status,
        timed_out,
        by_user,
        elapsed,
    } = ended;
    let dir = &image.dir;
    let console_bytes = fs::read(dir.join("console.out")).unwrap_or_default();
    let console = String::from_utf8_lossy(&console_bytes)
        .lines()
        .map(str::to_owned)
        .collect();
    let log_bytes = fs::read(dir.join("log.bin")).unwrap_or_default();
    let (log, malformed_frames) = logs::decode(&fs::read(&image.elf)?, &log_bytes)?;
    // Kept decoded beside the run's other files, for whoever looks into a run afterwards.
    fs::write(dir.join("log.txt"), log.join("\n") + "\n")?;
    // Bochs exits 0 at the magic breakpoint and 1 at its shutdown port; QEMU aarch64 with the
    // semihosting SYS_EXIT status, 0 or 1.
    let (success, failure) = match (image.config.board.arch, emulator) {
        (ArchName::Aarch64, _) | (_, EmulatorName::Bochs) => (0, 1),
        (ArchName::X86_64, _) => (QEMU_SUCCESS, QEMU_FAILURE),
    };
    let text = fs::read_to_string(dir.join(emulator_log)).unwrap_or_default();
    let status = match emulator {
        EmulatorName::Bochs => bochs_status(status, &text),
        _ => status,
    };
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    Ok(Run {
        success: !timed_out && status == Some(success),
        failed_cleanly: !timed_out && status == Some(failure),
        status,
        timed_out,
        console,
        log,
        malformed_frames,
        emulator_log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        elapsed,
        ended_by_user: by_user,
    })
}

/// Bochs's exit status. Debian's Bochs 2.7 occasionally crashes in its own teardown after it has
/// logged the status it chose (seen: SIGSEGV, so `script` reports 139, right after "quit_sim
/// called with exit code 1" at the shutdown port); the logged status is then the run's.
fn bochs_status(status: Option<i32>, log: &str) -> Option<i32> {
    const KILLED_BY_SIGNAL: i32 = 128;
    let logged = log.lines().rev().find_map(|line| {
        let (_, code) = line.split_once("quit_sim called with exit code ")?;
        code.trim().parse().ok()
    });
    match status {
        Some(code) if code > KILLED_BY_SIGNAL => logged.or(status),
        _ => status,
    }
}

fn clean(dir: &Path) {
    for f in [
        "console.out",
        "log.bin",
        "bochs.log",
        "emulator.out",
        "emulator.err",
    ] {
        let _ = fs::remove_file(dir.join(f));
    }
}

/// The console line of a Bochs run with input: a listening socket Bochs connects its COM1 to,
/// a thread that writes what comes back to `console.out`, and one that sends the input.
struct ConsoleLine {
    port: u16,
    serve: thread::JoinHandle<Result<()>>,
}

impl ConsoleLine {
    /// Serves `feed` (a [`Feed::File`] is `dir`'s `console.in`, if it has any); `None` when
    /// there is no input.
    fn start(dir: &Path, timeout: Duration, feed: Feed, flags: &Flags) -> Result<Option<Self>> {
        let feed = match feed {
            Feed::File => {
                let input = fs::read(dir.join("console.in")).unwrap_or_default();
                if input.is_empty() {
                    return Ok(None);
                }
                Feed::Script(vec![Step {
                    after: None,
                    bytes: input,
                }])
            }
            feed => feed,
        };
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let out = dir.join("console.out");
        let flags = flags.clone();
        let serve = thread::spawn(move || -> Result<()> {
            // Bochs connects as it starts; a run that never starts must not block this thread.
            listener.set_nonblocking(true)?;
            let deadline = Instant::now() + timeout;
            let line = loop {
                match listener.accept() {
                    Ok((line, _)) => break line,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline || flags.done.load(Ordering::Acquire) {
                            bail!("Bochs never connected its console line");
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            line.set_nonblocking(false)?;
            let mut from = line.try_clone()?;
            let mut file = File::create(&out)?;
            // Until Bochs exits and closes its end.
            let copy = thread::spawn(move || std::io::copy(&mut from, &mut file));
            feed_line(feed, &line, &out, &flags);
            copy.join()
                .map_err(|_| anyhow::anyhow!("the console line's copy thread panicked"))??;
            Ok(())
        });
        Ok(Some(Self { port, serve }))
    }
}

/// Boots `image` in Bochs from its GRUB ISO; `console.in`, if the run's folder has one, arrives
/// on the console line.
pub fn bochs(image: &Image, iso: &Path, timeout: Duration) -> Result<Run> {
    bochs_fed(image, iso, timeout, Feed::File)
}

/// [`bochs`] with `feed` arriving on the console line.
pub fn bochs_fed(image: &Image, iso: &Path, timeout: Duration, feed: Feed) -> Result<Run> {
    bochs_run(image, iso, timeout, feed, &Control::default(), None)
}

/// [`bochs`], ended early through `control` (a test stopping a board that halts when done).
pub fn bochs_controlled(
    image: &Image,
    iso: &Path,
    timeout: Duration,
    control: &Control,
) -> Result<Run> {
    bochs_run(image, iso, timeout, Feed::File, control, None)
}

/// [`bochs`] for a board on an emulated network.
pub fn bochs_networked(
    image: &Image,
    iso: &Path,
    timeout: Duration,
    net: &Networked,
) -> Result<Run> {
    bochs_run(image, iso, timeout, Feed::File, &net.control, Some(net))
}

fn bochs_run(
    image: &Image,
    iso: &Path,
    timeout: Duration,
    feed: Feed,
    control: &Control,
    net: Option<&Networked>,
) -> Result<Run> {
    let dir = &image.dir;
    clean(dir);
    let flags = control.flags.clone();
    let line = ConsoleLine::start(dir, timeout, feed, &flags)?;
    fs::write(
        dir.join("bochsrc"),
        bochsrc(image, iso, line.as_ref().map(|l| l.port), net),
    )?;
    // The debugger is compiled into Debian's Bochs: continue at once, and quit at the magic
    // breakpoint the hypervisor executes when every partition has stopped.
    fs::write(dir.join("bochs.rc"), "c\nquit\n")?;
    // The text display needs a terminal: `script` gives it a pseudo-terminal and passes Bochs's
    // exit status through. (The headless VNC display listens on TCP ports, and two instances
    // starting at once could both fail to get one.)
    let mut cmd = Command::new("script");
    cmd.env("TERM", "xterm")
        .args(["-qec", "bochs -q -f bochsrc -rc bochs.rc", "/dev/null"]);
    let ended = spawn(cmd, dir, timeout, Streams::Messages, &flags);
    // The line's threads end with the run (Bochs closes its end), or give up waiting for it.
    flags.done.store(true, Ordering::Release);
    let ended = ended?;
    if let Some(line) = line {
        line.serve
            .join()
            .map_err(|_| anyhow::anyhow!("the console line's thread panicked"))??;
    }
    collect(image, EmulatorName::Bochs, ended, "bochs.log")
}

/// How QEMU executes the guest machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM with the host CPU: VT-x when the host exposes nested VMX.
    Kvm,
    /// Software emulation: `-cpu max` offers no VMX, so the hypervisor must refuse to start.
    Tcg,
}

/// Boots `image` with QEMU: from `iso` (GRUB, multiboot2, with the images module), or with
/// `-kernel` (PVH), passing `cmdline`.
pub fn qemu(
    image: &Image,
    iso: Option<&Path>,
    cmdline: &str,
    accel: Accel,
    timeout: Duration,
) -> Result<Run> {
    let mut cmd = qemu_x86(image, accel)?;
    match iso {
        // The command line is in the ISO's grub.cfg.
        Some(iso) => cmd.arg("-cdrom").arg(iso).args(["-boot", "d"]),
        None => cmd
            .arg("-kernel")
            .arg(&image.elf)
            .args(["-append", cmdline]),
    };
    run_qemu(cmd, image, timeout, &Control::default())
}

/// Boots `image` with QEMU from `disk`, a disk image as written to a USB stick, its first
/// hard disk (unchanged: writes go to a temporary overlay), from its BIOS or, with `uefi`,
/// from OVMF; ended early through `control`.
pub fn qemu_disk(
    image: &Image,
    disk: &Path,
    accel: Accel,
    uefi: bool,
    timeout: Duration,
    control: &Control,
) -> Result<Run> {
    let mut cmd = qemu_x86(image, accel)?;
    if uefi {
        tools::require(tools::OVMF)?;
        cmd.args(["-bios", tools::OVMF[0].file]);
    }
    let mut drive = std::ffi::OsString::from("format=raw,if=ide,snapshot=on,file=");
    drive.push(disk);
    cmd.arg("-drive").arg(drive).args(["-boot", "c"]);
    run_qemu(cmd, image, timeout, control)
}

/// QEMU's q35 PC with `image`'s board's CPUs, RAM and serial lines, without a boot device yet.
fn qemu_x86(image: &Image, accel: Accel) -> Result<Command> {
    tools::require(tools::QEMU_X86)?;
    clean(&image.dir);
    let board = &image.config.system.board;
    let mut cmd = Command::new("qemu-system-x86_64");
    let (accel, cpu) = match accel {
        Accel::Kvm => ("kvm", "host"),
        Accel::Tcg => ("tcg", "max"),
    };
    cmd.args([
        "-machine", "q35", "-accel", accel, "-cpu", cpu, "-display", "none",
    ])
    .args(["-nodefaults", "-no-reboot"])
    .args([
        "-smp",
        &board.cpus.to_string(),
        "-m",
        &format!("{}M", board.ram.size >> 20),
    ])
    .args(["-serial", "file:console.out", "-serial", "file:log.bin"])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    Ok(cmd)
}

/// Runs a QEMU x86 command line for `image` under `timeout` and collects what it produced.
fn run_qemu(cmd: Command, image: &Image, timeout: Duration, control: &Control) -> Result<Run> {
    let ended = spawn(cmd, &image.dir, timeout, Streams::Messages, &control.flags)?;
    collect(image, EmulatorName::Qemu, ended, "emulator.err")
}

/// Boots `image` on QEMU `virt` at EL2 (emulators.md section 5): deterministic instruction
/// counting, the PL011 to `console.out`, semihosting for the log file `log.bin` (opened by the
/// hypervisor, relative to the run's directory) and the exit status; `console.in`, if the run's
/// folder has one, is the console line's input. `cmdline` reaches the
/// hypervisor as `/chosen/bootargs` of the device tree QEMU writes at the base of RAM.
pub fn qemu_aarch64(image: &Image, cmdline: &str, timeout: Duration) -> Result<Run> {
    qemu_aarch64_fed(image, cmdline, timeout, Feed::File)
}

/// [`qemu_aarch64`] with `feed` arriving on the console line (QEMU's standard input).
pub fn qemu_aarch64_fed(
    image: &Image,
    cmdline: &str,
    timeout: Duration,
    feed: Feed,
) -> Result<Run> {
    qemu_aarch64_run(image, cmdline, timeout, feed, None)
}

/// [`qemu_aarch64`] for a board on an emulated network.
pub fn qemu_aarch64_networked(
    image: &Image,
    cmdline: &str,
    timeout: Duration,
    net: &Networked,
) -> Result<Run> {
    qemu_aarch64_run(image, cmdline, timeout, Feed::File, Some(net))
}

fn qemu_aarch64_run(
    image: &Image,
    cmdline: &str,
    timeout: Duration,
    feed: Feed,
    net: Option<&Networked>,
) -> Result<Run> {
    clean(&image.dir);
    let mut cmd = qemu_aarch64_machine(image)?;
    // The PL011 on QEMU's standard input and output: `console.in`, a script or the user's keys
    // (through a pipe) arrive on the machine's console line (QEMU 7.2's file backend has no
    // input side). signal=off: a Ctrl-C on the line is the guest's.
    cmd.args(["-no-reboot", "-chardev", "stdio,id=console,signal=off"])
        .args(["-serial", "chardev:console"])
        .args(["-append", cmdline]);
    match net {
        // Alone, instructions count time exactly and runs repeat. On a network the board's
        // clock is the host's instead (no instruction counting), so the boards' clocks stay
        // comparable, and QEMU's I/O thread runs beside the CPUs: under instruction counting
        // it delivered frames and took transmitted ones only when the CPUs let it.
        None => cmd.args(["-icount", "shift=0,sleep=off"]),
        Some(net) => qemu_aarch64_nic(cmd.args(["-accel", "tcg,thread=multi"]), &net.mac, net.port),
    };
    let flags = net.map_or_else(Flags::default, |n| n.control.flags.clone());
    let ended = spawn(cmd, &image.dir, timeout, Streams::Console(feed), &flags)?;
    collect(image, EmulatorName::Qemu, ended, "emulator.err")
}

/// Gives a QEMU `virt` machine a virtio-net NIC at `mac`, on `port` of the hub.
pub fn qemu_aarch64_nic<'c>(cmd: &'c mut Command, mac: &str, port: PortAddr) -> &'c mut Command {
    // The modern (version 2) transport the driver speaks.
    cmd.args(["-global", "virtio-mmio.force-legacy=false"])
        .arg("-netdev")
        .arg(format!(
            "dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
            port.endpoint, port.hub
        ))
        .arg("-device")
        .arg(format!("virtio-net-device,netdev=net0,mac={mac}"))
}

/// QEMU `virt` at EL2 as `image`'s board is, with the hypervisor and its images file loaded,
/// and no console, clock or network yet (each caller adds its own).
pub fn qemu_aarch64_machine(image: &Image) -> Result<Command> {
    tools::require(tools::QEMU_AARCH64)?;
    let board = &image.config.system.board;
    let gic_version = match board.gic.map(|g| g.cpu) {
        Some(GicCpu::V2 { .. }) => 2,
        _ => 3,
    };
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.arg("-M")
        .arg(format!("virt,virtualization=on,gic-version={gic_version}"))
        .args(["-cpu", "max"])
        .args(["-display", "none", "-nodefaults"])
        .args(["-smp", &board.cpus.to_string()])
        .args(["-m", &format!("{}M", board.ram.size >> 20)])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-kernel")
        .arg(&image.elf);
    if let Some(area) = board.images.filter(|a| a.carrier == ImageCarrier::Loader) {
        let file = image.dir.join(IMAGES_FILE);
        if file.exists() {
            // The generic loader copies the file into RAM at reset, as a board's boot loader
            // would: the hypervisor finds it in the board's image area and checks each image.
            cmd.arg("-device").arg(format!(
                "loader,file={},addr={:#x},force-raw=on",
                file.display(),
                area.range.base.raw()
            ));
        }
    }
    Ok(cmd)
}

/// Whether this host can run VT-x guests under KVM (nested VMX exposed to us).
pub fn kvm_has_vmx() -> bool {
    Path::new("/dev/kvm").exists()
        && fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|c| c.split_whitespace().any(|f| f == "vmx"))
}

pub const BOCHS_TIMEOUT: Duration = Duration::from_secs(120);
pub const QEMU_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::bochs_status;

    #[test]
    fn a_crash_after_bochs_chose_its_status_keeps_that_status() {
        let log = "00089500244i[SIM   ] quit_sim called with exit code 1\n";
        assert_eq!(bochs_status(Some(139), log), Some(1));
        assert_eq!(bochs_status(Some(139), "no status logged"), Some(139));
        assert_eq!(bochs_status(Some(0), log), Some(0));
        assert_eq!(bochs_status(None, log), None);
    }
}
