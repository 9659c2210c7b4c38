//! Integration-test expectations: `tests/scenarios/<arch>/<name>.toml` is a partitions file and
//! `<name>.expect` says what the run must show, one rule per line:
//!
//! - `console: TEXT`: some console line contains TEXT;
//! - `log: TEXT`: some line of the hypervisor's decoded log contains TEXT;
//! - `absent: TEXT`: no console or log line contains TEXT;
//! - `once: TEXT`: exactly one console line contains TEXT (an output neither lost nor repeated);
//! - `numbered: NAME PREFIX`: partition NAME's console lines that start with PREFIX and a number
//!   (then anything) count up from 1 without a gap, stepping back at most once (the outputs a
//!   failover re-performed at the cut); `numbered: NAME PREFIX cuts=N` allows N step-backs (N
//!   failovers, after re-protection);
//! - `interleaved: A B`: partition B printed between partition A's first and last lines, which
//!   only happens when both run at once;
//! - `boot: ARGS`: boot the hypervisor with this command line (e.g. `inject=ud`);
//! - `input: TEXT`: TEXT and a newline arrive on the machine's console line (the rules' lines in
//!   order); `\xNN` in TEXT is the byte NN (`\x14` is Ctrl-T, the console switch's escape) and
//!   `\\` a backslash;
//! - `wait: TEXT`: the `input:` lines after it are sent only once some console line contains
//!   TEXT (e.g. a partition's echo, or the hypervisor's `[tandem]` line about the switch), an
//!   unfinished one too (a shell's prompt, which the hypervisor shows while the shell waits);
//! - `ends: failure`: the hypervisor must stop the machine with its failure signal;
//! - `qemu: tcg`: for a board run by QEMU, use software emulation (no VT-x) instead of KVM;
//! - `timeout: SECONDS`: the run's wall-time limit, for guests that take long to emulate (a
//!   Linux kernel), instead of the emulator's default.
//! - `images: damaged` or `images: withheld`: the GRUB ISO of an x86_64 board carries the
//!   images file with one byte flipped, or not at all (to see the hypervisor refuse it).
//!
//! Unless `ends: failure` is given, every run must end normally (every partition stopped, the
//! emulator's success status) with no hypervisor failure report.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::build::Module;
use crate::emulator::{Run, Step};

#[derive(Debug, PartialEq, Eq)]
pub enum Rule {
    Console(String),
    Log(String),
    Absent(String),
    Once(String),
    Numbered(String, String, usize),
    Interleaved(String, String),
    Boot(String),
    Input(Vec<u8>),
    Wait(String),
    EndsInFailure,
    /// `ends: halted`: the board has no exit device (real hardware halts when it is done), so
    /// the test stops the emulator once the console shows every `console:` line.
    Halts,
    QemuTcg,
    Timeout(Duration),
    Images(Module),
}

/// The boot command line the rules ask for.
pub fn cmdline(rules: &[Rule]) -> String {
    rules
        .iter()
        .filter_map(|r| match r {
            Rule::Boot(args) => Some(args.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The run's wall-time limit: the rules' own, or `default`.
pub fn timeout(rules: &[Rule], default: Duration) -> Duration {
    rules
        .iter()
        .find_map(|r| match r {
            Rule::Timeout(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(default)
}

/// What the boot ISO carries of the images file, as the rules ask.
pub fn module(rules: &[Rule]) -> Module {
    rules
        .iter()
        .find_map(|r| match r {
            Rule::Images(module) => Some(*module),
            _ => None,
        })
        .unwrap_or_default()
}

/// The console lines the rules expect (`console:`), which a halting board's run waits for.
pub fn awaited(rules: &[Rule]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|r| match r {
            Rule::Console(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// What the rules send on the machine's console line, in steps that each wait for their
/// `wait:` text.
pub fn input(rules: &[Rule]) -> Vec<Step> {
    let mut steps = vec![Step {
        after: None,
        bytes: Vec::new(),
    }];
    for rule in rules {
        match rule {
            Rule::Input(bytes) => {
                if let Some(step) = steps.last_mut() {
                    step.bytes.extend_from_slice(bytes);
                    step.bytes.push(b'\n');
                }
            }
            Rule::Wait(text) => steps.push(Step {
                after: Some(text.clone()),
                bytes: Vec::new(),
            }),
            _ => {}
        }
    }
    steps.retain(|s| !s.bytes.is_empty());
    steps
}

/// The bytes `text` stands for: `\xNN` is byte NN, `\\` a backslash, the rest as written.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                bytes.push(b'\\');
                rest = tail;
            }
            [b'x', hi, lo, tail @ ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                let digit = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
                bytes.push(digit(*hi) << 4 | digit(*lo));
                rest = tail;
            }
            _ => {
                return Err(format!(
                    "a backslash starts `\\xNN` (two hex digits) or `\\\\` in `{text}`"
                ));
            }
        }
    }
    Ok(bytes)
}

pub fn parse(file: &Path) -> Result<Vec<Rule>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((kind, arg)) = line.split_once(':') else {
            bail!("{}:{}: expected `kind: text`", file.display(), n + 1);
        };
        let arg = arg.trim().to_string();
        rules.push(match kind {
            "console" => Rule::Console(arg),
            "log" => Rule::Log(arg),
            "absent" => Rule::Absent(arg),
            "once" => Rule::Once(arg),
            "numbered" => match arg.split_once(' ') {
                Some((name, prefix)) => {
                    let (prefix, cuts) = match prefix.trim().rsplit_once(" cuts=") {
                        Some((prefix, cuts)) => (
                            prefix,
                            cuts.parse().with_context(|| {
                                format!("{}:{}: cuts=N needs a number", file.display(), n + 1)
                            })?,
                        ),
                        None => (prefix.trim(), 1),
                    };
                    Rule::Numbered(name.to_string(), prefix.to_string(), cuts)
                }
                None => bail!(
                    "{}:{}: numbered needs a partition name and a prefix",
                    file.display(),
                    n + 1
                ),
            },
            "boot" => Rule::Boot(arg),
            "input" => Rule::Input(
                unescape(&arg).map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), n + 1))?,
            ),
            "wait" => Rule::Wait(arg),
            "ends" if arg == "failure" => Rule::EndsInFailure,
            "ends" if arg == "halted" => Rule::Halts,
            "qemu" if arg == "tcg" => Rule::QemuTcg,
            "timeout" => Rule::Timeout(Duration::from_secs(arg.parse().with_context(|| {
                format!("{}:{}: timeout needs whole seconds", file.display(), n + 1)
            })?)),
            "images" if arg == "damaged" => Rule::Images(Module::Damaged),
            "images" if arg == "withheld" => Rule::Images(Module::Withheld),
            "interleaved" => match arg.split_once(' ') {
                Some((a, b)) => Rule::Interleaved(a.to_string(), b.trim().to_string()),
                None => bail!(
                    "{}:{}: interleaved needs two partition names",
                    file.display(),
                    n + 1
                ),
            },
            other => bail!("{}:{}: unknown rule `{other}`", file.display(), n + 1),
        });
    }
    Ok(rules)
}

/// Whether partition `name`'s numbered lines (`PREFIX N ...`) count 1, 2, 3... without a gap,
/// stepping back at most `cuts` times (each a failover re-performing the outputs in flight at
/// its cut).
pub fn numbered(console: &[String], name: &str, prefix: &str, cuts: usize) -> bool {
    let start = format!("[{name}] {prefix} ");
    let numbers = console.iter().filter_map(|l| {
        l.strip_prefix(start.as_str())?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    });
    let (mut last, mut high, mut steps) = (0, 0, 0);
    for n in numbers {
        if n != last + 1 {
            if steps == cuts || n == 0 || n > last {
                return false;
            }
            steps += 1;
        }
        last = n;
        high = high.max(n);
    }
    last > 0 && last == high
}

fn interleaved(console: &[String], a: &str, b: &str) -> bool {
    let (pa, pb) = (format!("[{a}] "), format!("[{b}] "));
    let first = console.iter().position(|l| l.starts_with(&pa));
    let last = console.iter().rposition(|l| l.starts_with(&pa));
    match (first, last) {
        (Some(f), Some(l)) => console[f..l].iter().any(|x| x.starts_with(&pb)),
        _ => false,
    }
}

/// The rules `run` breaks, as messages; empty when it passes.
pub fn check(rules: &[Rule], run: &Run) -> Vec<String> {
    let mut failures = Vec::new();
    let expect_failure = rules.contains(&Rule::EndsInFailure);
    let halts = rules.contains(&Rule::Halts);
    let ended_as_expected = if halts {
        run.ended_by_user && !run.timed_out
    } else if expect_failure {
        run.failed_cleanly
    } else {
        run.success
    };
    if !ended_as_expected {
        failures.push(format!(
            "the run did not end {}: status {:?}{}",
            if halts {
                "showing every awaited line"
            } else if expect_failure {
                "with the hypervisor's failure signal"
            } else {
                "normally"
            },
            run.status,
            if run.timed_out { " (timed out)" } else { "" }
        ));
    }
    let fatal = "[tandem] FATAL";
    let fatal_expected = rules
        .iter()
        .any(|r| matches!(r, Rule::Console(t) if t.contains(fatal)));
    if !expect_failure && !fatal_expected && run.console.iter().any(|l| l.contains(fatal)) {
        failures.push("the hypervisor reported a failure".into());
    }
    if run.malformed_frames > 0 {
        failures.push(format!("{} malformed log frames", run.malformed_frames));
    }
    let any = |lines: &[String], text: &str| lines.iter().any(|l| l.contains(text));
    for rule in rules {
        let ok = match rule {
            Rule::Console(t) => any(&run.console, t),
            Rule::Log(t) => any(&run.log, t),
            Rule::Absent(t) => !any(&run.console, t) && !any(&run.log, t),
            Rule::Once(t) => {
                run.console
                    .iter()
                    .filter(|l| l.contains(t.as_str()))
                    .count()
                    == 1
            }
            Rule::Numbered(name, prefix, cuts) => numbered(&run.console, name, prefix, *cuts),
            Rule::Interleaved(a, b) => interleaved(&run.console, a, b),
            Rule::Boot(_)
            | Rule::Input(_)
            | Rule::Wait(_)
            | Rule::EndsInFailure
            | Rule::Halts
            | Rule::QemuTcg
            | Rule::Timeout(_)
            | Rule::Images(_) => true,
        };
        if !ok {
            failures.push(format!("expected {rule:?}"));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_count_up_and_step_back_only_at_one_cut() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = |v: &[&str]| numbered(&lines(v), "p", "n", 1);
        assert!(ok(&["[p] n 1", "[q] n 5", "[p] n 2", "[p] n 3"]));
        assert!(ok(&["[p] n 1", "[p] n 2", "[p] n 2", "[p] n 3"]));
        assert!(ok(&["[p] n 1", "[p] n 2", "[p] n 3", "[p] n 2", "[p] n 3"]));
        assert!(!ok(&["[p] n 1", "[p] n 3"]), "a gap");
        assert!(
            !ok(&["[p] n 1", "[p] n 2", "[p] n 1", "[p] n 2", "[p] n 1"]),
            "two cuts"
        );
        assert!(
            !ok(&["[p] n 1", "[p] n 2", "[p] n 1"]),
            "a step back not followed up"
        );
        assert!(!ok(&["[p] n 2", "[p] n 3"]), "a missing start");
        assert!(!ok(&["[q] n 1"]), "no line at all");
        let two = |v: &[&str]| numbered(&lines(v), "p", "n", 2);
        assert!(two(&[
            "[p] n 1", "[p] n 2", "[p] n 1", "[p] n 2", "[p] n 1", "[p] n 2"
        ]));
        assert!(two(&["[p] n 1", "[p] n 2", "[p] n 3", "[p] n 4"]));
        assert!(
            !two(&[
                "[p] n 1", "[p] n 2", "[p] n 1", "[p] n 2", "[p] n 1", "[p] n 2", "[p] n 1",
                "[p] n 2"
            ]),
            "three cuts"
        );
        assert!(!two(&["[p] n 1", "[p] n 3"]), "a gap");
    }

    #[test]
    fn numbered_rule_takes_a_cut_count() {
        let dir = std::env::temp_dir().join(format!("tandem-numbered-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.expect");
        std::fs::write(&file, "numbered: pair count cuts=2\nnumbered: pair count\n").unwrap();
        assert_eq!(
            parse(&file).unwrap(),
            vec![
                Rule::Numbered("pair".into(), "count".into(), 2),
                Rule::Numbered("pair".into(), "count".into(), 1)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn input_lines_unescape_and_split_at_waits() {
        assert_eq!(unescape(r"a\x14\\b\x0A").unwrap(), b"a\x14\\b\n");
        assert!(unescape(r"\x1").is_err());
        assert!(unescape(r"\q").is_err());
        let rules = [
            Rule::Input(b"one".to_vec()),
            Rule::Input(b"\x142".to_vec()),
            Rule::Wait("[b] echo".into()),
            Rule::Console("x".into()),
            Rule::Input(b"two".to_vec()),
        ];
        assert_eq!(
            input(&rules),
            [
                Step {
                    after: None,
                    bytes: b"one\n\x142\n".to_vec()
                },
                Step {
                    after: Some("[b] echo".into()),
                    bytes: b"two\n".to_vec()
                }
            ]
        );
    }

    #[test]
    fn interleaving_needs_the_other_partition_between_first_and_last_line() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(interleaved(&lines(&["[a] 1", "[b] 1", "[a] 2"]), "a", "b"));
        assert!(!interleaved(&lines(&["[a] 1", "[a] 2", "[b] 1"]), "a", "b"));
        assert!(!interleaved(&lines(&["[b] 1"]), "a", "b"));
    }
}
