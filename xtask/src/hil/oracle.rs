//! What a board's console must show: a partition's numbered lines, none lost or repeated.

use anyhow::{Result, bail};

/// Checks `partition`'s lines in `console`: each boot of the partition (a `hello from partition`
/// line) prints `count 1`, `count 2`, ... with no number missing, repeated or out of order; there
/// are `boots` boots (a power cut or a reset starts one more); the last counts to `count`; and
/// no line reports an error.
pub fn numbered(console: &[String], partition: &str, count: u32, boots: usize) -> Result<()> {
    let prefix = format!("[{partition}] ");
    let mut runs: Vec<Vec<u32>> = Vec::new();
    for line in console.iter().filter_map(|l| l.strip_prefix(&prefix)) {
        if line.contains("ERROR") {
            bail!("the partition reported `{line}`");
        }
        if line.starts_with("hello from partition") {
            runs.push(Vec::new());
        } else if let Some(n) = line
            .strip_prefix("count ")
            .and_then(|rest| rest.split(' ').next()?.parse().ok())
        {
            match runs.last_mut() {
                Some(run) => run.push(n),
                None => bail!("`{line}` before the partition's first boot"),
            }
        }
    }
    if runs.len() != boots {
        bail!(
            "the partition booted {} times, expected {boots}",
            runs.len()
        );
    }
    for (boot, run) in runs.iter().enumerate() {
        if let Some((i, n)) = run
            .iter()
            .enumerate()
            .find(|&(i, &n)| u64::from(n) != i as u64 + 1)
        {
            bail!(
                "boot {}: line {} is `count {n}`, expected `count {}`",
                boot + 1,
                i + 1,
                i + 1
            );
        }
    }
    let last = runs.last().map_or(0, |r| r.len());
    if last != count as usize {
        bail!("its last boot counted to {last}, expected {count}");
    }
    Ok(())
}

/// Checks a fault-tolerant partition's stream, gathered from `consoles` (each board's, in the
/// order the copies were live): its `count N` lines run from 1 to `count` with none lost; a line
/// may be printed again only where one board took over from another (a copy that goes live
/// prints what its predecessor had not reported performed), and then exactly as it was.
pub fn across(consoles: &[Vec<String>], partition: &str, count: u32) -> Result<()> {
    let prefix = format!("[{partition}] count ");
    let mut printed: Vec<&str> = Vec::new();
    for (board, console) in consoles.iter().enumerate() {
        // The number due next on this board: any already printed, or the next, for its first.
        let mut due: Option<usize> = None;
        for line in console.iter().filter_map(|l| l.strip_prefix(&prefix)) {
            let Some(n) = line.split(' ').next().and_then(|n| n.parse::<usize>().ok()) else {
                bail!("board {}: `{line}` is not a numbered line", board + 1);
            };
            let next = printed.len() + 1;
            let expected = due.unwrap_or(next);
            if n != expected && (due.is_some() || !(1..next).contains(&n)) {
                bail!(
                    "board {}: `count {n}` where `count {expected}` was due",
                    board + 1
                );
            }
            match printed.get(n - 1) {
                Some(&before) if before != line => bail!(
                    "board {}: `count {line}` differs from the line printed before it, `count {before}`",
                    board + 1
                ),
                Some(_) => {}
                None => printed.push(line),
            }
            due = Some(n + 1);
        }
    }
    if printed.len() != count as usize {
        bail!(
            "the stream ends at `count {}`, expected {count}",
            printed.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_cut_boot_then_a_whole_one_passes_and_every_flaw_is_named() {
        let good = console(
            "[c] hello from partition 0\n[c] count 1\n[c] count 2\n[c] hello from partition 0\n\
             [other] count 9\n[c] count 1 h=abc\n[c] count 2 h=def\n[c] count 3 h=012",
        );
        numbered(&good, "c", 3, 2).unwrap();
        let e = numbered(&good, "c", 3, 1).unwrap_err().to_string();
        assert!(e.contains("booted 2 times"), "{e}");
        let e = numbered(&good, "c", 4, 2).unwrap_err().to_string();
        assert!(e.contains("counted to 3"), "{e}");
        let lost = console("[c] hello from partition 0\n[c] count 1\n[c] count 3");
        let e = numbered(&lost, "c", 3, 1).unwrap_err().to_string();
        assert!(e.contains("line 2 is `count 3`"), "{e}");
        let repeated = console("[c] hello from partition 0\n[c] count 1\n[c] count 1");
        assert!(numbered(&repeated, "c", 2, 1).is_err());
        let error = console("[c] hello from partition 0\n[c] ERROR: time went back");
        assert!(numbered(&error, "c", 0, 1).is_err());
    }

    #[test]
    fn a_takeover_may_repeat_its_first_lines_exactly_and_nothing_else() {
        let primary = console("[p] hello\n[p] count 1 h=a\n[p] count 2 h=b\n[p] count 3 h=c");
        let backup = console("[tandem] live\n[p] count 3 h=c\n[p] count 4 h=d");
        across(&[primary.clone(), backup.clone()], "p", 4).unwrap();
        let gap = console("[p] count 5 h=e");
        let e = across(&[primary.clone(), gap], "p", 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`count 5` where `count 4` was due"), "{e}");
        let changed = console("[p] count 3 h=X\n[p] count 4 h=d");
        let e = across(&[primary.clone(), changed], "p", 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("differs"), "{e}");
        let repeat_inside = console("[p] count 4 h=d\n[p] count 4 h=d");
        assert!(across(&[primary.clone(), repeat_inside], "p", 4).is_err());
        let changed_after_repeat = console("[p] count 2 h=b\n[p] count 3 h=X\n[p] count 4 h=d");
        assert!(across(&[primary.clone(), changed_after_repeat], "p", 4).is_err());
        let e = across(&[primary, backup], "p", 5).unwrap_err().to_string();
        assert!(e.contains("ends at `count 4`"), "{e}");
    }
}
