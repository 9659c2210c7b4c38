//! `cargo xtask qemu --arch ARCH --ft-boards`: the pair across boards, shown live. Two emulated
//! boards and the witness; the primary's board loses power halfway through, and the partition's
//! numbered lines go on from the backup's board.

use anyhow::Result;

use super::oracle;
use super::run::{self, Action};
use super::scenarios::{self, COUNT, at_line, plan, step};
use crate::{Arch, root};

/// Runs the demo on `arch`; true when the stream came through whole.
pub fn run(arch: Arch) -> Result<bool> {
    println!(
        "Fault tolerance across boards on {}: board 0 (primary) and board 1 (backup) joined by an emulated network, with a witness; board 0 loses power after line 30.",
        arch.name()
    );
    let (image, iso) = scenarios::image(arch, &format!("demo-{}-ft-boards", arch.name()))?;
    let plan = run::Plan {
        echo: true,
        ..plan(vec![step(at_line(30), Action::Kill(0))])
    };
    let dir = root().join(format!("build/demo-{}-ft-boards/run", arch.name()));
    let outcome = run::run(&image, iso.as_deref(), &dir, &plan)?;
    let (shares, _) = scenarios::shares(&outcome);
    for (i, s) in shares.iter().enumerate() {
        if let (Some(first), Some(last)) = (s.numbers.first(), s.numbers.last()) {
            println!("board {i} printed lines {first} to {last}");
        }
    }
    let verdict = oracle::judge(&shares, COUNT, 3);
    for log in outcome.boards.iter().flatten() {
        for line in log.log.iter().filter(|l| l.contains("goes live")) {
            println!("[tandem] {line}");
        }
    }
    if verdict.problems.is_empty() {
        println!(
            "The partition's {COUNT} lines came through whole: none lost, {} repeated at the cut. Files: {}",
            verdict.duplicates,
            dir.display()
        );
    } else {
        println!("The stream is not whole: {}", verdict.problems.join("; "));
    }
    Ok(verdict.problems.is_empty())
}
