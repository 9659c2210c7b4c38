//! `cargo xtask lint`: clippy with warnings as errors on every crate, each for the targets it is
//! built for. Plain `cargo clippy` sees only the host crates (the workspace's default members).

use std::fs;
use std::process::Command;

use anyhow::Result;

use crate::root;
use crate::tools::{self, run};

/// Bare-metal packages and the target each is built for.
const BARE_METAL: &[(&str, &[&str])] = &[
    (
        "x86_64-unknown-none",
        &[
            "tandem-hw",
            "tandem-arch-x86_64",
            "tandem-x86_64-pc",
            "tandem-test-guests-x86_64",
        ],
    ),
    (
        "aarch64-unknown-none-softfloat",
        &["tandem-hw", "tandem-arch-aarch64", "tandem-aarch64-virt"],
    ),
    ("aarch64-unknown-none", &["tandem-test-guests-aarch64"]),
];

/// Denied on top of `warnings`: every `unsafe` block says why it is sound, and every `unsafe fn`
/// says what its caller must guarantee.
const DENY: &[&str] = &[
    "-D",
    "warnings",
    "-D",
    "clippy::undocumented_unsafe_blocks",
    "-D",
    "clippy::missing_safety_doc",
];

fn clippy() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root()).args(["clippy", "-q"]);
    cmd
}

pub fn run_all() -> Result<()> {
    println!("== clippy: host crates");
    run(clippy().args(["--all-targets", "--"]).args(DENY))?;
    // The board binaries embed a bundle `cargo xtask build` makes; any file does for linting.
    let bundle = root().join("target/lint-bundle.bin");
    fs::create_dir_all(root().join("target"))?;
    fs::write(&bundle, [])?;
    for (target, packages) in BARE_METAL {
        println!("== clippy: {target}");
        tools::require_target(target)?;
        let mut cmd = clippy();
        cmd.env("TANDEM_BUNDLE", &bundle).args(["--target", target]);
        for package in *packages {
            cmd.args(["-p", package]);
        }
        run(cmd.arg("--").args(DENY))?;
    }
    println!("clippy: no warnings");
    Ok(())
}
