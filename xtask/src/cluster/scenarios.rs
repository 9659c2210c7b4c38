//! The pair-across-boards scenarios `cargo xtask test` runs on each architecture: normal
//! operation, the primary's board killed, every combination of cut links between the boards and
//! to the witness, a board that stalls and comes back, and the witness restarting. Each is a
//! [`Plan`] and a judgement of what the boards printed and logged.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::hub::Impairment;
use super::oracle::{self, Share};
use super::run::{self, Action, Link, Outcome, Plan, Step, Trigger};
use crate::build::{self, Image, Module};
use crate::{Arch, guests, root};

/// The protected partition's name and how many numbered lines it prints.
pub const PAIR: &str = "pair";
pub const COUNT: u64 = 60;
/// The line by which the copy that went live has re-protected the partition onto the spare
/// board, in the re-protection scenarios.
pub const REPROTECTED_BY: u64 = 40;
/// The line at which the spare board dies: while it is re-protected onto under Bochs, just after
/// under QEMU, where re-protection takes some 50 ms (either way the live copy goes on alone).
const SPARE_DIES_AT: u64 = 12;
/// Lines that may repeat at a cut: the outputs in flight when the copy that printed them failed.
const WINDOW: u64 = 3;

/// The partitions file of the pair across boards on `arch`.
pub fn config(arch: Arch) -> PathBuf {
    root().join(format!("tests/ft-boards/pair-{}.toml", arch.name()))
}

/// The image every board of `arch` boots, and the ISO x86 boards boot it from.
pub fn image(arch: Arch, name: &str) -> Result<(Image, Option<PathBuf>)> {
    image_on(arch, None, name)
}

/// [`image`], on `board` instead of the one the partitions file names, if given (its GICv2
/// twin).
pub fn image_on(arch: Arch, board: Option<&str>, name: &str) -> Result<(Image, Option<PathBuf>)> {
    let guests = guests::build(arch)?;
    let image = build::build_on(&config(arch), board, &guests, name)?;
    let iso = build::boot_iso(&image, "", Module::AsBuilt)?;
    Ok((image, iso))
}

/// What a scenario expects of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The primary runs the partition to its end; the backup never goes live.
    Protected,
    /// The backup's board goes live and finishes the partition.
    Failover,
    /// Exactly one copy finishes the partition, whichever.
    OneLive,
    /// The primary runs the partition to its end alone (its backup failed).
    PrimaryGoesOn,
    /// The backup's board goes live, re-protects onto the spare board, fails in turn, and the
    /// spare finishes the partition.
    SecondFailover,
}

/// A named scenario.
pub struct Scenario {
    pub name: String,
    pub plan: Plan,
    pub expect: Expect,
}

/// When the plan acts: the primary has printed line `n`.
pub fn at_line(n: u64) -> Trigger {
    Trigger::Shows {
        board: 0,
        text: format!("[{PAIR}] count {n} "),
    }
}

pub fn plan(steps: Vec<Step>) -> Plan {
    Plan {
        start: vec![0, 1],
        steps,
        timeout: Duration::from_secs(120),
        echo: false,
    }
}

/// How long the spare board runs before the pair's boards start: a spare board stands by
/// before the pair it protects needs it (a Bochs board takes some 3 s to boot; three emulators
/// booting at once on two cores made the spare late for the first failover).
const SPARE_HEAD_START: Duration = Duration::from_secs(5);

/// A plan with the spare board (2) running, then the pair's boards, then `steps`.
pub fn spare_first(steps: Vec<Step>) -> Plan {
    let pair = [
        step(Trigger::After(SPARE_HEAD_START), Action::Start(0)),
        step(Trigger::After(Duration::ZERO), Action::Start(1)),
    ];
    Plan {
        start: vec![2],
        ..plan(pair.into_iter().chain(steps).collect())
    }
}

pub fn step(when: Trigger, then: Action) -> Step {
    Step {
        when,
        then,
        optional: false,
    }
}

/// The links cut in combination `mask`: bit 0 the boards' own, bit 1 primary to witness, bit 2
/// backup to witness.
pub fn cuts(mask: u8) -> Vec<Link> {
    [
        (1, Link::Boards(0, 1)),
        (2, Link::Witness(0)),
        (4, Link::Witness(1)),
    ]
    .into_iter()
    .filter(|(bit, _)| mask & bit != 0)
    .map(|(_, link)| link)
    .collect()
}

pub fn cut_name(mask: u8) -> String {
    if mask == 0 {
        return "none".into();
    }
    let names = ["boards", "primary-witness", "backup-witness"];
    (0..3)
        .filter(|b| mask & 1 << b != 0)
        .map(|b| names[b])
        .collect::<Vec<_>>()
        .join("+")
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Scenario> {
    let mut list = vec![
        Scenario {
            name: "normal".into(),
            plan: plan(vec![]),
            expect: Expect::Protected,
        },
        Scenario {
            name: "backup-boots-late".into(),
            plan: Plan {
                start: vec![0],
                steps: vec![step(
                    Trigger::After(Duration::from_secs(2)),
                    Action::Start(1),
                )],
                ..plan(vec![])
            },
            expect: Expect::Protected,
        },
        Scenario {
            name: "lossy-network".into(),
            plan: plan(vec![step(
                Trigger::After(Duration::ZERO),
                Action::Impair(Impairment {
                    loss: 20,
                    duplicate: 20,
                    corrupt: 20,
                }),
            )]),
            expect: Expect::Protected,
        },
        Scenario {
            name: "kill-primary".into(),
            plan: plan(vec![step(at_line(20), Action::Kill(0))]),
            expect: Expect::Failover,
        },
        Scenario {
            name: "kill-backup".into(),
            plan: plan(vec![step(at_line(20), Action::Kill(1))]),
            expect: Expect::PrimaryGoesOn,
        },
        Scenario {
            name: "stall-primary".into(),
            plan: plan(vec![
                step(at_line(20), Action::Freeze(0)),
                step(Trigger::After(Duration::from_secs(2)), Action::Thaw(0)),
            ]),
            expect: Expect::Failover,
        },
        Scenario {
            name: "witness-restart".into(),
            plan: plan(vec![
                step(at_line(10), Action::RestartWitness),
                step(at_line(20), Action::Kill(0)),
            ]),
            expect: Expect::Failover,
        },
        Scenario {
            name: "reprotect-then-kill".into(),
            plan: spare_first(vec![
                step(at_line(5), Action::Kill(0)),
                step(
                    Trigger::Shows {
                        board: 1,
                        text: format!("[{PAIR}] count {REPROTECTED_BY} "),
                    },
                    Action::Kill(1),
                ),
            ]),
            expect: Expect::SecondFailover,
        },
        Scenario {
            name: "reprotect-spare-dies".into(),
            plan: spare_first(vec![
                step(at_line(5), Action::Kill(0)),
                step(
                    Trigger::Shows {
                        board: 1,
                        text: format!("[{PAIR}] count {SPARE_DIES_AT} "),
                    },
                    Action::Kill(2),
                ),
            ]),
            expect: Expect::Failover,
        },
    ];
    // Every combination of the three links, cut while the partition prints and healed later:
    // a copy that cannot reach the witness waits (prints nothing) until it can.
    for mask in 0..8u8 {
        let mut steps: Vec<Step> = cuts(mask)
            .into_iter()
            .map(|link| step(at_line(15), Action::Cut(link)))
            .collect();
        steps.push(Step {
            optional: true,
            ..step(Trigger::After(Duration::from_secs(3)), Action::Heal)
        });
        list.push(Scenario {
            name: format!("cut-{}", cut_name(mask)),
            plan: plan(steps),
            expect: if mask & 1 == 0 {
                Expect::Protected
            } else {
                Expect::OneLive
            },
        });
    }
    list
}

/// What a run's boards printed and logged, judged.
pub struct Judged {
    /// What went wrong; empty if nothing did.
    pub problems: Vec<String>,
    /// The output oracle's counts.
    pub verdict: oracle::Verdict,
    pub divergences: u64,
    /// Boards that ran the partition to its end.
    pub finishers: Vec<usize>,
}

/// Each board's share of the partition's stream, and how many lines were not the guest's.
pub fn shares(outcome: &Outcome) -> (Vec<Share>, u64) {
    let mut changed = 0;
    let shares = outcome
        .boards
        .iter()
        .enumerate()
        .map(|(board, r)| {
            let cut_short = outcome.killed.contains(&board);
            r.as_ref()
                .map(|r| oracle::share(&r.console, PAIR, &mut changed, cut_short))
                .unwrap_or_default()
        })
        .collect();
    (shares, changed)
}

/// Judges `outcome` for a run expecting `expect`.
pub fn judge(outcome: &Outcome, expect: Expect) -> Judged {
    let mut problems = Vec::new();
    if outcome.steps_missed > 0 {
        problems.push(format!(
            "{} planned steps never happened (the first at step {})",
            outcome.steps_missed,
            outcome.steps_done + 1
        ));
    }
    let (shares, changed) = shares(outcome);
    let verdict = oracle::judge(&shares, COUNT, WINDOW);
    problems.extend(verdict.problems.iter().cloned());
    if changed > 0 && verdict.changed == 0 {
        problems.push(format!("{changed} lines are not the guest's"));
    }
    let runs = || {
        outcome
            .boards
            .iter()
            .enumerate()
            .filter_map(|(b, r)| Some((b, r.as_ref()?)))
    };
    let mut divergences = 0;
    for (board, run) in runs() {
        let has = |text: &str| run.log.iter().any(|l| l.contains(text));
        let diverged = run
            .log
            .iter()
            .filter(|l| l.contains("FT divergence"))
            .count() as u64;
        if diverged > 0 {
            problems.push(format!("board {board} logged {diverged} divergences"));
        }
        divergences += diverged;
        if has("ERROR") && has("panicked") {
            problems.push(format!("board {board}'s hypervisor panicked"));
        }
        if !outcome.killed.contains(&board) && !run.success {
            problems.push(format!(
                "board {board} did not end normally (status {:?}{})",
                run.status,
                if run.timed_out { ", timed out" } else { "" }
            ));
        }
    }
    let corrupted: u64 = outcome.traffic.iter().flatten().map(|t| t.corrupted).sum();
    let caught: u64 = runs()
        .flat_map(|(_, r)| r.log.iter().rev().find(|l| l.contains("FT link:")))
        .filter_map(|l| number_before(l, " corrupt"))
        .sum();
    if corrupted >= 10 && caught == 0 {
        problems.push(format!(
            "the network corrupted {corrupted} frames and no board counted a corrupt datagram"
        ));
    }
    if expect == Expect::Protected && !outcome.decisions.is_empty() {
        problems.push(format!(
            "the witness was asked to decide: {}",
            outcome.decisions.join("; ")
        ));
    }
    let done = format!("[{PAIR}] done");
    let finishers: Vec<usize> = runs()
        .filter(|(_, r)| r.console.iter().any(|l| l.starts_with(&done)))
        .map(|(b, _)| b)
        .collect();
    let live = runs().any(|(_, r)| r.log.iter().any(|l| l.contains("FT backup goes live")));
    if expect == Expect::SecondFailover {
        let logged = |board: usize, text: &str| {
            outcome.boards[board]
                .as_ref()
                .is_some_and(|r| r.log.iter().any(|l| l.contains(text)))
        };
        if !logged(1, "FT epoch 2 of") || !logged(2, "replays as the backup of epoch 2") {
            problems.push(
                "board 1 did not re-protect the partition onto board 2 before it was killed".into(),
            );
        }
    }
    match (expect, finishers.as_slice(), live) {
        (Expect::Protected, [0], false) | (Expect::Failover, [1], true) => {}
        (Expect::SecondFailover, [2], true) => {}
        (Expect::PrimaryGoesOn, [0], false) | (Expect::OneLive, [_], _) => {}
        (_, finishers, live) => problems.push(format!(
            "expected {expect:?}; boards that finished the partition: {finishers:?}, the backup went live: {live}"
        )),
    }
    Judged {
        problems,
        verdict,
        divergences,
        finishers,
    }
}

/// The number in `line` right before `marker`.
pub fn number_before(line: &str, marker: &str) -> Option<u64> {
    let (before, _) = line.split_once(marker)?;
    before.rsplit([' ', '(']).next()?.parse().ok()
}

/// Runs scenario `s` from `image` (in `build/IMAGE`) in `build/IMAGE-NAME`.
pub fn run_one(
    image: &Image,
    iso: Option<&std::path::Path>,
    s: &Scenario,
) -> Result<(Outcome, Vec<String>)> {
    let built = image.dir.file_name().unwrap_or_default().to_string_lossy();
    let dir = image.dir.with_file_name(format!("{built}-{}", s.name));
    let outcome = run::run(image, iso, &dir, &s.plan)?;
    let judged = judge(&outcome, s.expect);
    Ok((outcome, judged.problems))
}
