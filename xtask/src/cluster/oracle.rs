//! The output oracle across boards: the protected partition's numbered lines, gathered from
//! every board's console, must be the guest's stream (`count N h=H`, H the running hash the
//! guest computes, `tandem_guest::common::checks::count_lines`), none lost, none changed, and
//! repeated only at a cut, where a copy that went live re-performs outputs the failed one
//! printed without reporting them done. Every board's own lines count up without a gap.
//! More than one board printing on past the same cut is split brain.

/// One board's share of the stream: the line numbers it printed, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Share {
    pub numbers: Vec<u64>,
}

/// What the oracle found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Lines of `1..=count` no board printed.
    pub lost: u64,
    /// Lines printed more than once, at cuts.
    pub duplicates: u64,
    /// Lines printed more than once away from a cut (or more than `window` at one).
    pub duplicates_outside_cut: u64,
    /// Two boards printed the same stretch of the stream as if each were live.
    pub split_brain: bool,
    /// Lines whose text is not the guest's (a changed output), or out of order on a board.
    pub changed: u64,
    pub problems: Vec<String>,
}

/// One FNV-1a step over a 32-bit word, as the guest's stream hash takes it.
fn fold(hash: u32, word: u32) -> u32 {
    word.to_le_bytes()
        .iter()
        .fold(hash, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The guest's line `i` of a `hashed=1` stream.
pub fn expected_line(i: u32) -> String {
    let hash = (1..=i).fold(0x811c_9dc5, fold);
    format!("count {i} h={hash:08x}")
}

/// Board `console`'s numbered lines of partition `name`; lines that are not the guest's count
/// as changed. On a board that lost power (`cut_short`) the last line may have been cut off
/// while its UART sent it: a beginning of the guest's line there is an output the other copy
/// performs again, not a changed one.
pub fn share(console: &[String], name: &str, changed: &mut u64, cut_short: bool) -> Share {
    let prefix = format!("[{name}] count ");
    let mut numbers = Vec::new();
    let last = console.iter().rposition(|l| l.starts_with(&prefix));
    for (i, line) in console.iter().enumerate() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let number = rest
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok());
        let whole = |n: u32| expected_line(n);
        match number {
            Some(n) if line.ends_with(&whole(n)) => numbers.push(u64::from(n)),
            Some(n)
                if cut_short
                    && Some(i) == last
                    && whole(n).starts_with(&line[name.len() + 3..]) => {}
            _ => *changed += 1,
        }
    }
    Share { numbers }
}

/// Judges the boards' shares of a stream of `count` lines. At most `window` lines may repeat
/// at each cut (the outputs in flight when a copy failed).
pub fn judge(shares: &[Share], count: u64, window: u64) -> Verdict {
    let mut v = Verdict::default();
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (board, s) in shares.iter().enumerate() {
        let Some((&first, _)) = s.numbers.split_first() else {
            continue;
        };
        if s.numbers.windows(2).any(|w| w[1] != w[0] + 1) {
            v.changed += 1;
            v.problems
                .push(format!("board {board}'s lines have a gap or step back"));
        }
        spans.push((first, *s.numbers.last().unwrap_or(&first)));
    }
    spans.sort_unstable();
    let mut covered = 0u64;
    for &(first, last) in &spans {
        if first > covered + 1 {
            v.lost += first - covered - 1;
        }
        let repeated = covered.min(last) + 1 - first.min(covered + 1);
        if repeated > 0 {
            v.duplicates += repeated;
            // A copy that took over repeats what its predecessor printed last; printing on
            // beyond that, or re-printing a whole stretch, means two copies were live.
            if repeated > window || last <= covered {
                v.duplicates_outside_cut += repeated;
                v.split_brain = true;
            }
        }
        covered = covered.max(last);
    }
    if covered < count {
        v.lost += count - covered;
    }
    if v.lost > 0 {
        v.problems.push(format!("{} of {count} lines lost", v.lost));
    }
    if v.split_brain {
        v.problems
            .push("two boards printed the same stretch of the stream".into());
    }
    if v.changed > 0 {
        v.problems.push(format!("{} lines changed", v.changed));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(spans: &[(u64, u64)]) -> Vec<Share> {
        spans
            .iter()
            .map(|&(a, b)| Share {
                numbers: (a..=b).collect(),
            })
            .collect()
    }

    #[test]
    fn a_failover_repeating_at_the_cut_passes() {
        let v = judge(&shares(&[(1, 12), (11, 40)]), 40, 2);
        assert!(v.problems.is_empty(), "{v:?}");
        assert_eq!(v.duplicates, 2);
    }

    #[test]
    fn a_gap_a_late_repeat_and_two_live_copies_fail() {
        assert_eq!(judge(&shares(&[(1, 12), (14, 40)]), 40, 2).lost, 1);
        assert_eq!(judge(&shares(&[(1, 30)]), 40, 2).lost, 10);
        assert!(judge(&shares(&[(1, 40), (20, 40)]), 40, 2).split_brain);
        assert!(judge(&shares(&[(1, 30), (10, 40)]), 40, 2).split_brain);
    }

    #[test]
    fn only_the_guests_own_lines_count() {
        let console = vec![
            format!("[pair] {}", expected_line(1)),
            "[pair] count 2 h=00000000".to_string(),
            format!("[other] {}", expected_line(2)),
        ];
        let mut changed = 0;
        let s = share(&console, "pair", &mut changed, false);
        assert_eq!((s.numbers, changed), (vec![1], 1));
    }

    #[test]
    fn a_line_cut_off_by_a_power_loss_is_neither_printed_nor_changed() {
        let whole = format!("[pair] {}", expected_line(2));
        let console = vec![
            format!("[pair] {}", expected_line(1)),
            whole[..whole.len() - 3].to_string(),
        ];
        let mut changed = 0;
        let s = share(&console, "pair", &mut changed, true);
        assert_eq!((s.numbers, changed), (vec![1], 0));
        let s = share(&console, "pair", &mut changed, false);
        assert_eq!((s.numbers, changed), (vec![1], 1));
    }
}
