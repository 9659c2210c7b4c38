//! The invariants every run must keep, checked against what the simulator observed (the client's
//! view, the wiretapped log, the two guests' histories), not against the engine's own bookkeeping.

use crate::check::Check;
use crate::record::{EventClass, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::string::String;
use std::vec::Vec;

/// An output as the external client received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The guest's output number.
    pub out_seq: u64,
    /// Its content.
    pub value: u64,
    /// Which copy of the partition, counting from 0 for the first primary; each copy that goes
    /// live is the next number.
    pub copy: u32,
    /// Performed by a backup at go-live (re-performing outputs without `OutputDone`).
    pub at_go_live: bool,
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The client saw an output the surviving copy never produced, or produced differently.
    LostOutput { out_seq: u64, value: u64 },
    /// The client's stream skipped output `missing`: nobody performed it although a later one
    /// was seen.
    OutputGap { missing: u64 },
    /// The client saw output `out_seq` where `expected` was the only one allowed (out of order).
    OutputOutOfOrder { out_seq: u64, expected: u64 },
    /// A copy performed output `out_seq` after a later copy had gone live and performed outputs.
    OutputAfterTakeover {
        out_seq: u64,
        copy: u32,
        live_copy: u32,
    },
    /// The client saw an output twice although it was not in flight at the cut.
    DuplicateOutsideCut { out_seq: u64, times: usize },
    /// Two copies were live at once.
    TwoLivePrimaries { at: u64 },
    /// The backup replayed past a divergence (first differing exit) without reporting it,
    /// across a record with a full point or several with a tag.
    UndetectedDivergence { exit: u64, checked_up_to: u64 },
    /// The backup reported a divergence although its replay was never perturbed.
    FalseDivergence { what: String },
    /// The survivor produced output `out_seq` (and maybe more) that never reached the client,
    /// although the run was drained.
    OutputNeverPerformed { out_seq: u64 },
    /// After a crash the surviving copy did not take over by `deadline` (`at`: when it did).
    SlowTakeover { deadline: u64, at: Option<u64> },
    /// The engine returned an error a correct caller never sees.
    EngineError { at: u64, what: String },
}

/// When the copy that survived a crash had to take over, and when it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Takeover {
    /// Crash time plus the detection bound: frames in flight, suspicion timeout, arbitration
    /// (and any cut from the arbiter or stall meanwhile), and catching up on the log held.
    pub deadline: u64,
    /// When the survivor went live (backup) or ran alone (primary), if it did.
    pub at: Option<u64>,
}

/// A takeover: the copy numbered `copy` went live holding `OutputDone` for the outputs `done`
/// (by output number), so it re-performed only the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// The copy that went live.
    pub copy: u32,
    /// Outputs whose `OutputDone` it held, as the wiretapped log shows.
    pub done: BTreeSet<u64>,
}

/// What one protected pair (one epoch) left behind, for the divergence invariants.
pub struct Generation<'a> {
    /// The log as the primary sent it.
    pub log: &'a [Record],
    /// Records the backup replayed.
    pub backup_consumed: u64,
    /// Guest state at each exit, on the primary and on the backup (up to where it replayed).
    pub primary_exits: &'a [u64],
    /// See `primary_exits`.
    pub backup_exits: &'a [u64],
    /// The divergence the backup reported, if it did.
    pub divergence_reported: Option<&'a str>,
    /// Whether the simulator perturbed the backup's replay.
    pub divergence_injected: bool,
}

/// What the final check looks at.
pub struct Evidence<'a> {
    /// Everything the client received, in order.
    pub seen: &'a [Seen],
    /// The surviving copy's outputs (index = output number), if a copy survived.
    pub survivor_outputs: Option<&'a [u64]>,
    /// Every takeover of the run.
    pub cuts: &'a [Cut],
    /// The drain ended with nothing in flight.
    pub settled: bool,
    /// One per crash that an unperturbed copy had to take over from.
    pub takeovers: &'a [Takeover],
    /// The pair protecting the partition at the end (earlier ones are checked as they end).
    pub generation: Generation<'a>,
}

/// Check the end-of-run invariants.
pub fn check(e: &Evidence<'_>) -> Result<(), Violation> {
    takeovers_in_time(e)?;
    outputs_survive(e)?;
    outputs_in_order(e)?;
    outputs_all_performed(e)?;
    duplicates_only_at_cut(e)?;
    check_generation(&e.generation)
}

/// Check the invariants of one protected pair, when it ends (a re-protection replaces it) or
/// with the run.
pub fn check_generation(g: &Generation<'_>) -> Result<(), Violation> {
    divergence_detected(g)?;
    divergence_injected(g)
}

fn outputs_survive(e: &Evidence<'_>) -> Result<(), Violation> {
    let Some(outputs) = e.survivor_outputs else {
        return Ok(());
    };
    for s in e.seen {
        if outputs.get(s.out_seq as usize) != Some(&s.value) {
            return Err(Violation::LostOutput {
                out_seq: s.out_seq,
                value: s.value,
            });
        }
    }
    Ok(())
}

/// The client's stream is each copy's outputs in order with no gap: a copy performs consecutive
/// numbers, a copy taking over starts no later than right after the last number seen (it may
/// repeat the outputs in flight at the cut), and an older copy performs nothing after that.
fn outputs_in_order(e: &Evidence<'_>) -> Result<(), Violation> {
    let mut last: Option<&Seen> = None;
    let mut next_new = 0;
    for s in e.seen {
        if let Some(prev) = last {
            if s.copy < prev.copy {
                return Err(Violation::OutputAfterTakeover {
                    out_seq: s.out_seq,
                    copy: s.copy,
                    live_copy: prev.copy,
                });
            }
            let expected = if s.copy == prev.copy {
                prev.out_seq + 1
            } else {
                next_new.min(s.out_seq)
            };
            if s.out_seq > next_new {
                return Err(Violation::OutputGap { missing: next_new });
            }
            if s.out_seq != expected {
                return Err(Violation::OutputOutOfOrder {
                    out_seq: s.out_seq,
                    expected,
                });
            }
        } else if s.out_seq != 0 {
            return Err(Violation::OutputGap { missing: 0 });
        }
        next_new = next_new.max(s.out_seq + 1);
        last = Some(s);
    }
    Ok(())
}

/// A surviving copy takes over within the detection bound, after every crash.
fn takeovers_in_time(e: &Evidence<'_>) -> Result<(), Violation> {
    match e
        .takeovers
        .iter()
        .find(|t| t.at.is_none_or(|at| at > t.deadline))
    {
        Some(&Takeover { deadline, at }) => Err(Violation::SlowTakeover { deadline, at }),
        None => Ok(()),
    }
}

/// Once the drain has settled, the stream reaches the survivor's last output (gaps before it are
/// `outputs_in_order`'s business). A run whose link is still catching up is not judged on this.
fn outputs_all_performed(e: &Evidence<'_>) -> Result<(), Violation> {
    let Some(outputs) = e.survivor_outputs.filter(|_| e.settled) else {
        return Ok(());
    };
    let seen = e.seen.iter().map(|s| s.out_seq + 1).max().unwrap_or(0);
    if (outputs.len() as u64) > seen {
        return Err(Violation::OutputNeverPerformed { out_seq: seen });
    }
    Ok(())
}

fn duplicates_only_at_cut(e: &Evidence<'_>) -> Result<(), Violation> {
    let mut by_seq: BTreeMap<u64, Vec<&Seen>> = BTreeMap::new();
    for s in e.seen {
        by_seq.entry(s.out_seq).or_default().push(s);
    }
    for (out_seq, group) in by_seq {
        let [first, second] = group[..] else {
            if group.len() == 1 {
                continue;
            }
            return Err(Violation::DuplicateOutsideCut {
                out_seq,
                times: group.len(),
            });
        };
        // Once by a primary (before its backup went live: `outputs_in_order` refuses any later)
        // and once by that backup at go-live because it did not hold the `OutputDone`.
        let in_flight_at_cut = second.at_go_live
            && second.copy == first.copy + 1
            && e.cuts
                .iter()
                .any(|c| c.copy == second.copy && !c.done.contains(&out_seq));
        if !in_flight_at_cut {
            return Err(Violation::DuplicateOutsideCut { out_seq, times: 2 });
        }
    }
    Ok(())
}

fn divergence_detected(e: &Generation<'_>) -> Result<(), Violation> {
    if e.divergence_reported.is_some() {
        return Ok(());
    }
    let first_difference = e
        .primary_exits
        .iter()
        .zip(e.backup_exits)
        .position(|(p, b)| p != b);
    let Some(index) = first_difference else {
        return Ok(());
    };
    let exit = index as u64 + 1;
    // The replayed records whose point the backup compared with its diverged guest's.
    let past: Vec<&Record> = e.log[..(e.backup_consumed as usize).min(e.log.len())]
        .iter()
        .filter(|r| r.event.class() != EventClass::Bookkeeping && r.point.det_exits >= exit)
        .collect();
    // A full point always shows the difference; a tag misses it 1 time in 256, each record
    // independently, so a few in a row missing it is no chance to allow.
    let caught_surely = past.len() >= TAGS_IN_A_ROW
        || past
            .iter()
            .any(|r| matches!(r.point.check, Check::Full { .. }));
    if caught_surely {
        return Err(Violation::UndetectedDivergence {
            exit,
            checked_up_to: past.iter().map(|r| r.point.det_exits).max().unwrap_or(exit),
        });
    }
    Ok(())
}

/// Tagged records past a divergence that cannot all miss it: 256^-4 = 2^-32.
const TAGS_IN_A_ROW: usize = 4;

/// Divergence reported implies divergence injected: a correct replay never cries wolf.
fn divergence_injected(e: &Generation<'_>) -> Result<(), Violation> {
    match e.divergence_reported {
        Some(what) if !e.divergence_injected => {
            Err(Violation::FalseDivergence { what: what.into() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::LoggedPoint;
    use crate::record::Event;
    use tandem_core::point::ExecPoint;

    /// A log of time reads at exits 1..=n, tagged, except those at `full`.
    fn log(n: u64, full: &[u64]) -> Vec<Record> {
        (1..=n)
            .map(|det_exits| {
                let at = ExecPoint {
                    det_exits,
                    ..ExecPoint::default()
                };
                let point = if full.contains(&det_exits) {
                    LoggedPoint::full(&at)
                } else {
                    LoggedPoint::tagged(&at)
                };
                Record {
                    point,
                    event: Event::TimeRead { value: det_exits },
                }
            })
            .collect()
    }

    /// The backup diverged at exit 3, replayed all of `log`, and said nothing.
    fn silent(log: &[Record]) -> Result<(), Violation> {
        let primary: Vec<u64> = (1..=8).collect();
        let backup: Vec<u64> = (1..=8).map(|e| if e >= 3 { e + 100 } else { e }).collect();
        divergence_detected(&Generation {
            log,
            backup_consumed: log.len() as u64,
            primary_exits: &primary,
            backup_exits: &backup,
            divergence_reported: None,
            divergence_injected: true,
        })
    }

    #[test]
    fn a_tag_may_miss_a_divergence_but_not_a_full_point_or_four_tags() {
        assert_eq!(silent(&log(2, &[])), Ok(()), "nothing replayed past it");
        assert_eq!(silent(&log(5, &[])), Ok(()), "three tags: 1 in 2^24");
        assert!(silent(&log(6, &[])).is_err(), "four tags");
        assert!(silent(&log(3, &[3])).is_err(), "a full point");
        assert_eq!(silent(&log(4, &[1])), Ok(()), "a full point before it");
    }
}
