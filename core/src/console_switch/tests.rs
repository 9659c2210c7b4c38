use proptest::prelude::*;

use super::*;
use crate::fake;
use crate::fake::ft;

/// `a`, `b` and `c`, input starting with `a`.
fn three() -> System {
    let mut sys = fake::system();
    let mut c = sys.partitions[1].clone();
    c.name = "c".try_into().unwrap();
    sys.partitions.push(c).unwrap();
    sys.partitions[0].console_input = true;
    sys
}

/// Feeds `bytes`, returns what was said.
fn type_in(s: &mut Switch, sys: &System, bytes: &[u8]) -> Vec<String> {
    let mut said = Vec::new();
    for &b in bytes {
        s.receive(b, sys, &mut |line| said.push(line.to_string()));
    }
    said
}

fn queued(s: &mut Switch, slot: u8) -> Vec<u8> {
    let mut buf = [0; QUEUE + 1];
    let n = s.take(slot, &mut buf);
    buf[..n].to_vec()
}

#[test]
fn input_goes_to_the_target_until_a_sequence_moves_it() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    assert_eq!(s.target(), Some(0));
    assert!(type_in(&mut s, &sys, b"to a\n").is_empty());
    assert_eq!(
        type_in(&mut s, &sys, b"\x142"),
        ["console input -> partition 2 (b)"]
    );
    type_in(&mut s, &sys, b"to b");
    assert_eq!(queued(&mut s, 0), b"to a\n");
    assert_eq!(queued(&mut s, 1), b"to b");
    assert_eq!(queued(&mut s, 2), b"");
}

#[test]
fn a_doubled_escape_and_an_unknown_sequence_reach_the_target_as_typed() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    assert!(type_in(&mut s, &sys, b"\x14\x14x\x14z\x14").is_empty());
    assert_eq!(queued(&mut s, 0), b"\x14x\x14z", "the last Ctrl-T is held");
    type_in(&mut s, &sys, b"\x14");
    assert_eq!(queued(&mut s, 0), b"\x14");
}

#[test]
fn a_sequence_split_across_reads_is_one_sequence() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    type_in(&mut s, &sys, b"x\x14");
    assert_eq!(queued(&mut s, 0), b"x");
    assert_eq!(
        type_in(&mut s, &sys, b"3y"),
        ["console input -> partition 3 (c)"]
    );
    assert_eq!(queued(&mut s, 2), b"y");
}

#[test]
fn a_partition_that_does_not_exist_or_stopped_is_refused() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    assert_eq!(
        type_in(&mut s, &sys, b"\x149\x140"),
        [
            "there is no partition 9 (1-3): console input stays with partition 1 (a)",
            "there is no partition 0 (1-3): console input stays with partition 1 (a)"
        ]
    );
    let mut said = Vec::new();
    s.stopped(2, &sys, &mut |l| said.push(l.to_string()));
    assert!(said.is_empty(), "c was not the target");
    assert_eq!(
        type_in(&mut s, &sys, b"\x143k"),
        ["partition 3 (c) has stopped: console input stays with partition 1 (a)"]
    );
    assert_eq!(queued(&mut s, 0), b"k");
}

#[test]
fn when_the_target_stops_input_goes_nowhere_until_another_is_chosen() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    type_in(&mut s, &sys, b"lost with a");
    let mut said = Vec::new();
    s.stopped(0, &sys, &mut |l| said.push(l.to_string()));
    assert_eq!(
        said,
        [
            "partition 1 (a) stopped: console input goes nowhere until you choose a partition (Ctrl-T ? lists them)"
        ]
    );
    assert_eq!(
        queued(&mut s, 0),
        b"",
        "a stopped partition's queue is dropped"
    );
    assert!(type_in(&mut s, &sys, b"xy").is_empty(), "said once already");
    assert_eq!(s.dropped, 2);
    assert_eq!(
        type_in(&mut s, &sys, b"\x141"),
        ["partition 1 (a) has stopped: console input still goes nowhere"]
    );
    assert_eq!(
        type_in(&mut s, &sys, b"\x14n"),
        ["console input -> partition 2 (b)"]
    );
}

#[test]
fn without_a_configured_target_input_goes_nowhere_and_says_how_to_choose() {
    let mut sys = three();
    sys.partitions[0].console_input = false;
    let mut s = Switch::setup(&sys);
    assert_eq!(s.target(), None);
    assert_eq!(s.readers(), 0);
    assert_eq!(
        s.watcher(),
        Some(0),
        "the first running partition reads the keys"
    );
    assert_eq!(
        type_in(&mut s, &sys, b"ab"),
        ["console input goes nowhere: Ctrl-T 1-3 chooses a partition, Ctrl-T ? lists them"]
    );
    assert_eq!(s.dropped, 2);
    assert_eq!(
        type_in(&mut s, &sys, b"\x14n"),
        ["console input -> partition 1 (a)"]
    );
}

#[test]
fn next_skips_stopped_partitions_and_wraps() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    s.stopped(1, &sys, &mut |_| {});
    assert_eq!(
        type_in(&mut s, &sys, b"\x14n\x14n"),
        [
            "console input -> partition 3 (c)",
            "console input -> partition 1 (a)"
        ]
    );
    s.stopped(2, &sys, &mut |_| {});
    s.stopped(0, &sys, &mut |_| {});
    assert_eq!(
        type_in(&mut s, &sys, b"\x14n"),
        ["no partition is running: console input goes nowhere"]
    );
}

#[test]
fn the_list_marks_the_target_and_stopped_partitions() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    s.stopped(2, &sys, &mut |_| {});
    let said = type_in(&mut s, &sys, b"\x14?");
    assert_eq!(
        said[..3],
        [
            "  partition 1 (a) <- console input",
            "  partition 2 (b)",
            "  partition 3 (c) stopped"
        ]
    );
    assert!(said[3].starts_with("keys: Ctrl-T 1-9"));
    assert_eq!(said.len(), 4);
    assert_eq!(
        type_in(&mut s, &sys, b"\x14q"),
        ["Ctrl-T q ends a run of cargo xtask qemu; there is no run to end here"]
    );
}

#[test]
fn a_fault_tolerant_partitions_copies_are_one_partition() {
    let mut sys = three();
    // b (index 1) is a primary whose backup comes last (index 3), after c.
    sys.partitions[1].ft = Some(ft(FtRole::Primary, 3));
    let mut backup = sys.partitions[1].clone();
    backup.ft = Some(ft(FtRole::Backup, 1));
    sys.partitions.push(backup).unwrap();
    let s = Switch::setup(&sys);
    assert_eq!(
        [s.slot(0), s.slot(1), s.slot(2), s.slot(3), s.slot(4)],
        [Some(0), Some(1), Some(2), Some(1), None]
    );
    let mut s = s;
    assert_eq!(
        type_in(&mut s, &sys, b"\x144"),
        ["there is no partition 4 (1-3): console input stays with partition 1 (a)"]
    );
}

#[test]
fn a_target_that_leaves_its_full_queue_unread_stops_holding_the_line_back() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    let mut line = vec![b'x'; QUEUE + 2];
    line.extend(b"\x142z");
    let mut line = line.into_iter();
    let mut said = Vec::new();
    let mut pull =
        |s: &mut Switch, now| s.pull(now, || line.next(), &sys, &mut |l| said.push(l.to_string()));
    let mut fed = 0;
    while fed < QUEUE {
        let n = pull(&mut s, 10);
        assert!(n > 0);
        fed += n;
    }
    assert_eq!(fed, QUEUE);
    assert_eq!(
        pull(&mut s, 10),
        0,
        "the line waits while the target may still read"
    );
    assert_eq!(pull(&mut s, 10 + STALL_NS - 1), 0);
    assert_eq!(pull(&mut s, 10 + STALL_NS), 5);
    assert_eq!(
        said,
        [
            "partition 1 (a) is not reading its console: what is typed for it is dropped until it reads",
            "console input -> partition 2 (b)"
        ]
    );
    assert_eq!(s.dropped, 2);
    assert_eq!(queued(&mut s, 1), b"z");
    assert_eq!(queued(&mut s, 0), vec![b'x'; QUEUE]);
    assert_eq!(s.readers(), 0b010);
}

#[test]
fn readers_are_the_target_and_partitions_with_bytes_queued() {
    let sys = three();
    let mut s = Switch::setup(&sys);
    assert_eq!((s.readers(), s.watcher()), (0b001, None));
    type_in(&mut s, &sys, b"a\x143");
    assert_eq!(s.readers(), 0b101);
    queued(&mut s, 0);
    assert_eq!(s.readers(), 0b100);
    s.stopped(2, &sys, &mut |_| {});
    s.stopped(0, &sys, &mut |_| {});
    assert_eq!((s.readers(), s.watcher()), (0, Some(1)));
}

/// The bytes a key stood for on the line, for the round trip below.
fn typed(key: Key) -> Vec<u8> {
    match key {
        Key::Byte(ESCAPE) => vec![ESCAPE, ESCAPE],
        Key::Byte(b) => vec![b],
        Key::Held => vec![],
        Key::Unknown(b) => vec![ESCAPE, b],
        Key::Command(Command::Select(n)) => vec![ESCAPE, b'0' + n],
        Key::Command(Command::Next) => vec![ESCAPE, b'n'],
        Key::Command(Command::List) => vec![ESCAPE, b'?'],
        Key::Command(Command::Quit) => vec![ESCAPE, b'q'],
    }
}

/// What the tests below do to a switch.
#[derive(Debug, Clone)]
enum Op {
    /// Bytes arrive on the line (taken whatever the switch wants).
    Line(Vec<u8>),
    /// The partition in this slot takes up to this many bytes.
    Take(u8, usize),
    Stop(u8),
    /// Time passes.
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    // Escapes, digits and `n` often, so sequences are common.
    let byte = prop_oneof![
        3 => Just(ESCAPE),
        2 => b'0'..=b'9',
        1 => Just(b'n'),
        1 => Just(b'?'),
        6 => any::<u8>(),
    ];
    prop_oneof![
        4 => proptest::collection::vec(byte, 0..40).prop_map(Op::Line),
        3 => (0u8..9, 0usize..80).prop_map(|(s, n)| Op::Take(s, n)),
        1 => (0u8..9).prop_map(Op::Stop),
        1 => (0u64..2 * STALL_NS).prop_map(Op::Wait),
    ]
}

/// An independent account of where each typed byte must go: the target's queue, in order,
/// while it has room, or the drop count.
#[derive(Default)]
struct Model {
    target: Option<u8>,
    stopped: [bool; 3],
    escaped: bool,
    /// Bytes each slot must still be given, in order.
    owed: [std::collections::VecDeque<u8>; 3],
    dropped: u64,
}

impl Model {
    fn deliver(&mut self, b: u8) {
        match self.target {
            Some(t) if self.owed[usize::from(t)].len() < QUEUE => {
                self.owed[usize::from(t)].push_back(b)
            }
            _ => self.dropped += 1,
        }
    }

    fn byte(&mut self, b: u8) {
        if !std::mem::take(&mut self.escaped) {
            if b == ESCAPE {
                self.escaped = true;
            } else {
                self.deliver(b);
            }
            return;
        }
        match b {
            ESCAPE => self.deliver(ESCAPE),
            b'1'..=b'3' if !self.stopped[usize::from(b - b'1')] => self.target = Some(b - b'1'),
            b'0'..=b'9' | b'?' | b'q' => {}
            b'n' => {
                let from = self.target.unwrap_or(2);
                self.target = (1..=3)
                    .map(|k| (from + k) % 3)
                    .find(|&s| !self.stopped[usize::from(s)])
                    .or(self.target);
            }
            other => {
                self.deliver(ESCAPE);
                self.deliver(other);
            }
        }
    }

    fn stop(&mut self, slot: u8) {
        if let Some(stopped) = self.stopped.get_mut(usize::from(slot)) {
            *stopped = true;
            self.owed[usize::from(slot)].clear();
            if self.target == Some(slot) {
                self.target = None;
            }
        }
    }
}

proptest! {
    /// Any byte sequence, split anywhere: the keys it decodes to spell it again exactly, so no
    /// byte is lost, duplicated or reordered by the key-sequence state machine.
    #[test]
    fn keys_spell_the_line_again(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut keys = Keys::new();
        let mut spelled = Vec::new();
        for &b in &line {
            spelled.extend(typed(keys.feed(b)));
        }
        if keys.held() {
            spelled.push(ESCAPE);
        }
        prop_assert_eq!(spelled, line);
    }

    /// Random lines, reads, stops and waits: every byte for a partition reaches it once and in
    /// order, or is counted dropped; nothing panics and no queue outgrows its bound.
    #[test]
    fn every_typed_byte_is_delivered_once_or_counted_dropped(
        ops in proptest::collection::vec(op(), 0..60)
    ) {
        let sys = three();
        let mut s = Switch::setup(&sys);
        let mut m = Model { target: Some(0), ..Model::default() };
        for op in ops {
            match op {
                Op::Line(bytes) => {
                    for b in bytes {
                        s.receive(b, &sys, &mut |line| { let _ = line.to_string(); });
                        m.byte(b);
                    }
                }
                Op::Take(slot, n) => {
                    let mut buf = vec![0; n];
                    let got = s.take(slot, &mut buf);
                    let owed = m.owed.get_mut(usize::from(slot));
                    let want: Vec<u8> = owed.map_or(vec![], |o| {
                        let k = n.min(o.len());
                        o.drain(..k).collect()
                    });
                    prop_assert_eq!(&buf[..got], &want[..]);
                }
                Op::Stop(slot) => {
                    s.stopped(slot, &sys, &mut |_| {});
                    m.stop(slot);
                }
                Op::Wait(ns) => {
                    let _ = s.wants(ns);
                }
            }
            prop_assert_eq!(s.target(), m.target);
            prop_assert_eq!(s.dropped, m.dropped);
            for slot in 0..3 {
                prop_assert!(m.owed[slot].len() <= QUEUE);
            }
        }
    }

    /// Read at the pace the switch asks for, with the partitions reading in between and time
    /// standing still: a running target never has a byte dropped, however the line switches.
    #[test]
    fn read_at_its_pace_the_line_loses_nothing_for_a_running_target(
        line in proptest::collection::vec(prop_oneof![3 => Just(ESCAPE), 2 => b'1'..=b'3', 8 => any::<u8>()], 0..400),
        reads in proptest::collection::vec(0usize..20, 1..50),
    ) {
        let sys = three();
        let mut s = Switch::setup(&sys);
        let mut bytes = line.iter().copied();
        let (mut at, mut read) = (0, reads.iter().cycle());
        let mut rounds = 0;
        while at < line.len() && rounds < 10_000 {
            rounds += 1;
            at += s.pull(5, || bytes.next(), &sys, &mut |_| {});
            let mut buf = [0; 32];
            let want = *read.next().unwrap_or(&1);
            for slot in 0..3 {
                s.take(slot, &mut buf[..want.max(1)]);
            }
        }
        prop_assert_eq!(at, line.len(), "the line was read to its end");
        prop_assert_eq!(s.dropped, 0);
    }
}
