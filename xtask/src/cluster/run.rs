//! One run of a pair across boards: the same image booted on every board (its NIC's address
//! picks each copy's role), the boards and the witness joined by the hub, and a plan of what
//! happens to them while the partition runs: boards killed, frozen, started late, links cut and
//! healed, the witness restarted. Each board runs in its own folder (`board0`, `board1`, ...).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tandem_core::config::Mac;

use super::hub::{Hub, Impairment, Traffic};
use crate::build::{IMAGES_FILE, Image};
use crate::config::ArchName;
use crate::emulator::{self, Control, Networked, Run};
use crate::witness::{Witness, WitnessOptions};

/// What makes the next step of a plan happen.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// Board `board`'s console shows `text` (in any line).
    Shows { board: usize, text: String },
    /// This long after the step before (or the start).
    After(Duration),
}

/// What a step does.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// Pulls board's plug: its emulator is killed.
    Kill(usize),
    /// Starts a board that was not started with the others.
    Start(usize),
    /// Freezes a board's emulator (a board that stalls), or thaws it.
    Freeze(usize),
    Thaw(usize),
    /// Takes a link down: between two boards, or between a board and the witness.
    Cut(Link),
    /// Brings every link back up.
    Heal,
    /// Stops the witness and starts it again from its state file.
    RestartWitness,
    /// Makes every link of the network lose, duplicate or corrupt frames.
    Impair(Impairment),
}

/// A link of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Boards(usize, usize),
    Witness(usize),
}

/// One step of a plan.
#[derive(Clone, Debug)]
pub struct Step {
    pub when: Trigger,
    pub then: Action,
    /// The run may end before this step (a heal once every board has finished anyway).
    pub optional: bool,
}

/// A run: which boards start at once, then the steps in order.
#[derive(Clone, Debug)]
pub struct Plan {
    pub start: Vec<usize>,
    pub steps: Vec<Step>,
    /// The whole run's wall-time limit.
    pub timeout: Duration,
    /// Show each board's console lines as they come, and each step as it happens (the demo).
    pub echo: bool,
}

/// What a run produced.
pub struct Outcome {
    /// Each board's run, `None` for a board never started.
    pub boards: Vec<Option<Run>>,
    /// Steps that happened (a step whose trigger never came stops the plan there).
    pub steps_done: usize,
    /// Steps that had to happen and did not.
    pub steps_missed: usize,
    /// `traffic[from][to]` over the hub; the witness is the port after the boards.
    pub traffic: Vec<Vec<Traffic>>,
    /// The witness's decisions and answers.
    pub witness_log: Vec<String>,
    /// The decisions in the witness's state file, one line each.
    pub decisions: Vec<String>,
    /// Boards the plan killed.
    pub killed: Vec<usize>,
    pub elapsed: Duration,
}

/// The witness's address on every test network.
pub const WITNESS_MAC: Mac = Mac([0xb0, 0xc4, 0x20, 0x00, 0x00, 0x0f]);

/// How often the plan looks at the boards.
const TICK: Duration = Duration::from_millis(20);

struct Board {
    image: Image,
    net: Networked,
    thread: Option<thread::JoinHandle<Result<Run>>>,
}

/// Board `index`'s copy of `image`, in a folder of its own under `dir`.
fn board_image(image: &Image, dir: &Path, index: usize) -> Result<Image> {
    let dir = dir.join(format!("board{index}"));
    // A console left by an earlier run would fire this run's triggers before it starts.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let beside = image.dir.join(IMAGES_FILE);
    if beside.exists() {
        fs::copy(&beside, dir.join(IMAGES_FILE))?;
    }
    Ok(Image {
        dir,
        elf: image.elf.clone(),
        config: image.config.clone(),
    })
}

/// A switch joining the stations `boards` and a witness at `witness_mac` (the port after
/// theirs), which starts with no decisions, its state file and the capture in `dir`; the
/// witness's options restart it.
pub fn network(
    boards: &[Mac],
    witness_mac: Mac,
    dir: &Path,
) -> Result<(Hub, Witness, WitnessOptions)> {
    let stations: Vec<Mac> = boards.iter().copied().chain([witness_mac]).collect();
    let hub = Hub::start(&stations, &dir.join("network.pcap"))?;
    let port = hub.port(boards.len());
    let options = WitnessOptions {
        state: dir.join("witness.state"),
        mac: witness_mac,
        endpoint: port.endpoint,
        hub: port.hub,
    };
    let _ = fs::remove_file(&options.state);
    let witness = Witness::start(&options).context("starting the witness")?;
    Ok((hub, witness, options))
}

/// Boots `image` on each of its pair's boards (`image.config.ft_boards`) as `plan` says, with a
/// witness whose state lives in `dir`; `iso` is the GRUB ISO x86 boards boot from.
pub fn run(image: &Image, iso: Option<&Path>, dir: &Path, plan: &Plan) -> Result<Outcome> {
    let macs = &image.config.ft_boards;
    if macs.is_empty() {
        return Err(anyhow!("the configuration has no pair across boards"));
    }
    fs::create_dir_all(dir)?;
    let (hub, witness, options) = network(macs, WITNESS_MAC, dir)?;
    let witness_port = hub.port(macs.len());
    let mut witness = Some(witness);
    let mut witness_log = Vec::new();
    let mut boards = macs
        .iter()
        .enumerate()
        .map(|(i, &mac)| {
            Ok(Board {
                image: board_image(image, dir, i)?,
                net: Networked {
                    mac: mac.text().to_string(),
                    port: hub.port(i),
                    control: Control::default(),
                },
                thread: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut topology = String::new();
    for (i, b) in boards.iter().enumerate() {
        let p = b.net.port;
        topology += &format!(
            "board {i}: {} on UDP {} (hub {})\n",
            b.net.mac, p.endpoint, p.hub
        );
    }
    topology += &format!(
        "witness: {} on UDP {} (hub {})\n",
        WITNESS_MAC.text(),
        witness_port.endpoint,
        witness_port.hub
    );
    fs::write(dir.join("network.txt"), topology)?;
    let iso = iso.map(Path::to_path_buf);
    for &i in &plan.start {
        start(&mut boards, i, iso.clone(), plan.timeout)?;
    }
    let begin = Instant::now();
    let mut last_step = begin;
    let mut steps_done = 0;
    let mut shown = vec![0usize; boards.len()];
    loop {
        if plan.echo {
            echo(&boards, &mut shown);
        }
        let running = boards
            .iter()
            .any(|b| b.thread.is_some() && !b.net.control.ended());
        if !running || begin.elapsed() > plan.timeout {
            break;
        }
        if let Some(step) = plan.steps.get(steps_done)
            && due(&step.when, &boards, last_step)
        {
            if plan.echo {
                println!("== {}", describe(step.then));
            }
            act(
                step.then,
                &mut boards,
                &hub,
                &mut witness,
                &options,
                &mut witness_log,
                iso.clone(),
                plan.timeout,
            )?;
            steps_done += 1;
            last_step = Instant::now();
            continue;
        }
        thread::sleep(TICK);
    }
    for b in &boards {
        b.net.control.freeze(false);
        b.net.control.kill();
    }
    if plan.echo {
        thread::sleep(TICK);
        echo(&boards, &mut shown);
    }
    let runs = boards
        .iter_mut()
        .map(|b| match b.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("a board's thread panicked"))?
                .map(Some),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(w) = witness.take() {
        witness_log.extend(w.stop()?);
    }
    let decisions = fs::read_to_string(&options.state)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let killed = plan.steps[..steps_done]
        .iter()
        .filter_map(|s| match s.then {
            Action::Kill(board) => Some(board),
            _ => None,
        })
        .collect();
    let steps_missed = plan.steps[steps_done..]
        .iter()
        .filter(|s| !s.optional)
        .count();
    Ok(Outcome {
        boards: runs,
        steps_done,
        steps_missed,
        traffic: hub.traffic(),
        witness_log,
        decisions,
        killed,
        elapsed: begin.elapsed(),
    })
}

fn start(boards: &mut [Board], i: usize, iso: Option<PathBuf>, timeout: Duration) -> Result<()> {
    let board = boards
        .get_mut(i)
        .with_context(|| format!("the plan starts board {i}, which the pair does not have"))?;
    let image = board.image.clone();
    let net = board.net.clone();
    board.thread = Some(thread::spawn(move || match image.config.board.arch {
        ArchName::X86_64 => {
            let iso = iso.context("an x86_64 board boots from an ISO")?;
            emulator::bochs_networked(&image, &iso, timeout, &net)
        }
        ArchName::Aarch64 => emulator::qemu_aarch64_networked(&image, "", timeout, &net),
    }));
    Ok(())
}

/// Prints the console lines each board added since `shown` (complete lines only).
fn echo(boards: &[Board], shown: &mut [usize]) {
    for (i, (b, shown)) in boards.iter().zip(shown.iter_mut()).enumerate() {
        let Ok(text) = fs::read_to_string(b.image.dir.join("console.out")) else {
            continue;
        };
        let done = text.rfind('\n').map_or(0, |end| end + 1);
        if done > *shown {
            for line in text[*shown..done].lines() {
                println!("board {i} | {line}");
            }
            *shown = done;
        }
    }
}

/// What a step does, for a person watching.
fn describe(action: Action) -> String {
    match action {
        Action::Kill(i) => format!("board {i} loses power (its emulator is killed)"),
        Action::Start(i) => format!("board {i} starts"),
        Action::Freeze(i) => format!("board {i} freezes"),
        Action::Thaw(i) => format!("board {i} comes back"),
        Action::Cut(Link::Boards(a, b)) => format!("the link between boards {a} and {b} is cut"),
        Action::Cut(Link::Witness(a)) => format!("board {a} is cut from the witness"),
        Action::Heal => "every link is back".into(),
        Action::RestartWitness => "the witness restarts".into(),
        Action::Impair(i) => format!(
            "every link loses {}, duplicates {} and corrupts {} frames per mille",
            i.loss, i.duplicate, i.corrupt
        ),
    }
}

fn due(when: &Trigger, boards: &[Board], last_step: Instant) -> bool {
    match when {
        Trigger::After(d) => last_step.elapsed() >= *d,
        Trigger::Shows { board, text } => boards.get(*board).is_some_and(|b| {
            fs::read_to_string(b.image.dir.join("console.out"))
                .is_ok_and(|console| console.contains(text.as_str()))
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn act(
    action: Action,
    boards: &mut [Board],
    hub: &Hub,
    witness: &mut Option<Witness>,
    options: &WitnessOptions,
    witness_log: &mut Vec<String>,
    iso: Option<PathBuf>,
    timeout: Duration,
) -> Result<()> {
    let control = |i: usize| boards.get(i).map(|b| b.net.control.clone());
    match action {
        Action::Kill(i) => control(i).context("no such board")?.kill(),
        Action::Freeze(i) => control(i).context("no such board")?.freeze(true),
        Action::Thaw(i) => control(i).context("no such board")?.freeze(false),
        Action::Start(i) => start(boards, i, iso, timeout)?,
        Action::Cut(Link::Boards(a, b)) => hub.cut(a, b),
        Action::Cut(Link::Witness(a)) => hub.cut(a, boards.len()),
        Action::Heal => hub.heal(),
        Action::Impair(impairment) => hub.impair(impairment),
        Action::RestartWitness => {
            if let Some(w) = witness.take() {
                witness_log.extend(w.stop()?);
            }
            *witness = Some(Witness::start(options)?);
        }
    }
    Ok(())
}
