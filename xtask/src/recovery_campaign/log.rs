//! The hypervisor's log lines a recovery campaign reads (the decoded defmt log, `LEVEL message`
//! per line), parsed into the events the judge needs. Times are virtual nanoseconds.

use std::collections::BTreeMap;

/// `injected: <what> on CPU <c> at <RIP|PC> 0x... (T ns)`: the fault took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// Everything between `injected: ` and the time.
    pub text: String,
    pub cpu: Option<u32>,
    pub ns: u64,
}

/// `recovery: detected <cause> on CPU <c> (T ns)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub cause: String,
    pub cpu: Option<u32>,
    pub ns: u64,
}

/// `recovery: resumed by <mode> in T ns: <step> A ns, ... (boots = 2, recoveries = 1)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub by: String,
    pub ns: u64,
    /// Each `name A ns` after the colon, whatever steps the hypervisor names.
    pub steps: BTreeMap<String, u64>,
}

/// What one run's log says about its fault, its recovery and its partitions.
#[derive(Debug, Default)]
pub struct Events {
    /// `fault injection armed: ...`: the hypervisor understood the inject option.
    pub armed: bool,
    pub injected: Option<Injected>,
    pub detected: Vec<Detected>,
    pub resumed: Vec<Resumed>,
    /// Why the hypervisor gave up recovering (`recovery: escalating to a full reset: <why>`).
    pub escalated: Option<String>,
    /// Partitions the audit after a recovery found without progress: they are lost.
    pub no_progress: Vec<String>,
    /// Each partition's last `partition NAME stopped: <reason>`.
    pub stopped: BTreeMap<String, String>,
    /// The sum of `partition NAME stopped after A deterministic and B asynchronous exits`.
    pub exits: u64,
}

/// The reason a partition stops when it finishes cleanly.
pub const CLEAN_STOP: &str = "shutdown with code 0";

/// The message of a decoded line, after its level.
fn message(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, m)| m.trim_start())
}

/// `T` of a trailing `(T ns)`, and the text before it.
fn trailing_ns(text: &str) -> Option<(&str, u64)> {
    let (before, time) = text.trim_end().strip_suffix(" ns)")?.rsplit_once(" (")?;
    Some((before, time.trim().parse().ok()?))
}

/// The number after ` on CPU ` in `text`.
fn cpu(text: &str) -> Option<u32> {
    let (_, rest) = text.rsplit_once(" on CPU ")?;
    rest.split_whitespace().next()?.parse().ok()
}

fn injected(text: &str) -> Option<Injected> {
    let (text, ns) = trailing_ns(text)?;
    Some(Injected {
        text: text.to_string(),
        cpu: cpu(text),
        ns,
    })
}

fn detected(text: &str) -> Option<Detected> {
    let (text, ns) = trailing_ns(text)?;
    let cause = text
        .rsplit_once(" on CPU ")
        .map_or(text, |(cause, _)| cause);
    Some(Detected {
        cause: cause.to_string(),
        cpu: cpu(text),
        ns,
    })
}

/// `A ns` → A.
fn ns(text: &str) -> Option<u64> {
    text.trim().strip_suffix(" ns")?.trim().parse().ok()
}

fn resumed(text: &str) -> Option<Resumed> {
    let (head, tail) = text.split_once(':')?;
    let (by, total) = head.split_once(" in ")?;
    // The counters in the trailing parentheses are not steps.
    let steps = tail.rsplit_once(" (").map_or(tail, |(steps, _)| steps);
    Some(Resumed {
        by: by.trim().to_string(),
        ns: ns(total)?,
        steps: steps
            .split(',')
            .filter_map(|step| {
                let (name, value) = step.trim().strip_suffix(" ns")?.rsplit_once(' ')?;
                Some((name.trim().to_string(), value.parse().ok()?))
            })
            .collect(),
    })
}

/// `NAME stopped after A deterministic and B asynchronous exits` → A + B.
fn exits(text: &str) -> Option<u64> {
    let (_, counts) = text.split_once(" stopped after ")?;
    let words: Vec<&str> = counts.split_whitespace().collect();
    match words[..] {
        [a, "deterministic", "and", b, "asynchronous", ..] => {
            Some(a.parse::<u64>().ok()? + b.parse::<u64>().ok()?)
        }
        _ => None,
    }
}

/// Reads every line of a run's log; lines it does not know are skipped.
pub fn events(log: &[String]) -> Events {
    let mut ev = Events::default();
    for line in log {
        let m = message(line);
        if m.starts_with("fault injection armed: ") {
            ev.armed = true;
        } else if let Some(rest) = m.strip_prefix("injected: ") {
            // The first injection is the run's; a later line would be the same fault again.
            if ev.injected.is_none() {
                ev.injected = injected(rest);
            }
        } else if let Some(rest) = m.strip_prefix("recovery: detected ") {
            ev.detected.extend(detected(rest));
        } else if let Some(rest) = m.strip_prefix("recovery: resumed by ") {
            ev.resumed.extend(resumed(rest));
        } else if let Some(why) = m.strip_prefix("recovery: escalating to a full reset: ") {
            ev.escalated = Some(why.to_string());
        } else if let Some(rest) = m.strip_prefix("recovery audit: partition ") {
            if let Some((name, _)) = rest.split_once(" made no progress") {
                ev.no_progress.push(name.to_string());
            }
        } else if let Some(rest) = m.strip_prefix("partition ") {
            if let Some((name, reason)) = rest.split_once(" stopped: ") {
                ev.stopped.insert(name.to_string(), reason.to_string());
            } else if let Some(n) = exits(rest) {
                ev.exits += n;
            }
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn injection_detection_and_resume_are_read_with_their_times() {
        let ev = events(&log(&[
            "INFO  fault injection armed: model register seed 7 after 900 exits then 123 instructions",
            "WARN  injected: bit 5 of RAX flipped on CPU 1 at RIP 0xffff800000012345 (1500 ns)",
            "ERROR recovery: detected exception on CPU 1 (2500 ns)",
            "WARN  recovery: resumed by microreboot in 4000 ns: quiesce 100 ns, capture 200 ns, image 300 ns, rebuild 400 ns, ledger 500 ns, resume 600 ns (boots = 2, recoveries = 1)",
        ]));
        assert!(ev.armed);
        assert_eq!(
            ev.injected,
            Some(Injected {
                text: "bit 5 of RAX flipped on CPU 1 at RIP 0xffff800000012345".into(),
                cpu: Some(1),
                ns: 1500
            })
        );
        assert_eq!(
            ev.detected,
            [Detected {
                cause: "exception".into(),
                cpu: Some(1),
                ns: 2500
            }]
        );
        let r = &ev.resumed[0];
        assert_eq!((r.by.as_str(), r.ns), ("microreboot", 4000));
        let steps: Vec<(&str, u64)> = r.steps.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            steps,
            [
                ("capture", 200),
                ("image", 300),
                ("ledger", 500),
                ("quiesce", 100),
                ("rebuild", 400),
                ("resume", 600)
            ]
        );
    }

    #[test]
    fn partitions_escalation_and_audit_are_read() {
        let ev = events(&log(&[
            "INFO  partition calls stopped after 388 deterministic and 2 asynchronous exits",
            "INFO  partition calls stopped: shutdown with code 0",
            "INFO  partition uart stopped after 2648 deterministic and 0 asynchronous exits",
            "ERROR partition uart stopped: triple fault",
            "ERROR recovery: escalating to a full reset: the ledger's CRC does not match",
            "WARN  recovery audit: partition uart made no progress in 10 ms",
            "INFO  recovery audit: partition calls made progress",
        ]));
        assert_eq!(ev.exits, 388 + 2 + 2648);
        assert_eq!(ev.stopped["calls"], CLEAN_STOP);
        assert_eq!(ev.stopped["uart"], "triple fault");
        assert_eq!(
            ev.escalated.as_deref(),
            Some("the ledger's CRC does not match")
        );
        assert_eq!(ev.no_progress, ["uart"]);
        assert!(!ev.armed && ev.injected.is_none() && ev.detected.is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let ev = events(&log(&[
            "WARN  injected: no time here",
            "ERROR recovery: detected panic (x ns)",
            "WARN  recovery: resumed by microreset soon",
            "INFO  partition uart stopped after many exits",
            "",
        ]));
        assert!(ev.injected.is_none() && ev.detected.is_empty() && ev.resumed.is_empty());
        assert_eq!(ev.exits, 0);
    }
}
