//! The engine's rules, one scenario each, over the shared-memory ring.

use core::cell::Cell;
use core::sync::atomic::AtomicU64;
use tandem_core::point::{ExecPoint, Position};
use tandem_ft::arbiter::{Arbiter, ArbiterError, SharedWordArbiter, Side};
use tandem_ft::backup::{
    Backup, BackupConfig, BackupError, BackupState, DivergenceKind, Due, SyncRead,
};
use tandem_ft::check::{Check, check_tag};
use tandem_ft::link::ring::Ring;
use tandem_ft::primary::{Primary, PrimaryConfig, PrimaryState};
use tandem_ft::record::Event;

const PCFG: PrimaryConfig = PrimaryConfig {
    epoch: 1,
    heartbeat_period: 100,
    suspect_after: 1_000,
    max_lag_records: 100,
    max_lag_time: 10_000,
};
const BCFG: BackupConfig = BackupConfig {
    epoch: 1,
    suspect_after: 1_000,
    ack_period: 100,
};

fn at(det_exits: u64) -> ExecPoint {
    ExecPoint {
        det_exits,
        pc: 0x1000 + det_exits,
        reg_hash: det_exits * 31,
        precise: None,
    }
}

/// An arbiter the test can cut off.
struct Switch<'a> {
    word: &'a AtomicU64,
    reachable: Cell<bool>,
}

impl Arbiter for &Switch<'_> {
    fn test_and_set(&mut self, epoch: u32, me: Side) -> Result<Side, ArbiterError> {
        if self.reachable.get() {
            SharedWordArbiter::new(self.word).test_and_set(epoch, me)
        } else {
            Err(ArbiterError::Unreachable)
        }
    }

    fn holder(&mut self, epoch: u32) -> Result<Option<Side>, ArbiterError> {
        if self.reachable.get() {
            SharedWordArbiter::new(self.word).holder(epoch)
        } else {
            Err(ArbiterError::Unreachable)
        }
    }
}

#[test]
fn output_waits_for_the_ack_while_the_guest_runs_on() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    let seq = p.on_output(at(1), 77).unwrap();
    assert_eq!(p.next_release(), None, "released before the backup acked");
    // The guest keeps running and recording while the output is held.
    p.on_nondeterministic_input(at(2), Event::TimeRead { value: 5 })
        .unwrap();
    assert_eq!(p.next_release(), None);
    b.poll(1).unwrap();
    p.poll(2, at(2)).unwrap();
    assert_eq!(p.next_release(), Some(seq));
    p.output_performed(seq).unwrap();
    assert_eq!(
        p.log_len(),
        3,
        "OutputDone logged after the output was performed"
    );
}

#[test]
fn events_arrive_exactly_at_their_point_and_replay_never_runs_ahead() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    assert_eq!(b.next_event_due(at(0)), Ok(Due::Wait), "nothing held: wait");
    p.on_nondeterministic_input(at(3), Event::Interrupt { vector: 32 })
        .unwrap();
    p.on_nondeterministic_input(at(4), Event::TimeRead { value: 9 })
        .unwrap();
    b.poll(1).unwrap();
    assert_eq!(
        b.next_event_due(at(0)),
        Ok(Due::Wait),
        "inputs wait in the primary's open frame"
    );
    // A heartbeat period without a frame sent: the records go out (and stand for a heartbeat).
    p.poll(PCFG.heartbeat_period, at(4)).unwrap();
    assert_eq!(p.stats().heartbeats, 0);
    b.poll(2).unwrap();
    for n in 0..3 {
        assert!(matches!(b.next_event_due(at(n)), Ok(Due::Run { .. })));
    }
    assert_eq!(
        b.next_event_due(at(3)),
        Ok(Due::Deliver(Event::Interrupt { vector: 32 }))
    );
    assert!(matches!(b.next_event_due(at(3)), Ok(Due::Run { .. })));
    assert_eq!(b.on_sync_read(at(4), SyncRead::Time), Ok(9));
    assert_eq!(
        b.next_event_due(at(4)),
        Ok(Due::Wait),
        "ran past the last event held"
    );
}

#[test]
fn divergence_is_reported_with_the_record_index() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    p.on_nondeterministic_input(at(1), Event::TimeRead { value: 1 })
        .unwrap();
    p.on_output(at(2), 0xAAAA).unwrap();
    b.poll(1).unwrap();
    assert_eq!(b.on_sync_read(at(1), SyncRead::Time), Ok(1));
    match b.on_output(at(2), 0xBBBB) {
        Err(BackupError::Diverged(d)) => assert_eq!(d.index, 1),
        other => panic!("divergence not reported: {other:?}"),
    }
    assert_eq!(b.state(), BackupState::Diverged);
}

#[test]
fn a_side_that_cannot_reach_the_arbiter_waits_and_the_loser_stops() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let ps = Switch {
        word: &word,
        reachable: Cell::new(true),
    };
    let bs = Switch {
        word: &word,
        reachable: Cell::new(false),
    };
    let mut p = Primary::new(tx, &ps, PCFG, 0);
    let mut b = Backup::new(rx, &bs, BCFG, 0);
    // Both fall silent to each other; the primary reaches the arbiter, the backup cannot.
    assert_eq!(p.poll(5_000, at(0)).unwrap().state, PrimaryState::Alone);
    assert_eq!(b.poll(5_000), Ok(BackupState::Arbitrating));
    assert_eq!(b.poll(6_000), Ok(BackupState::Arbitrating), "must wait");
    bs.reachable.set(true);
    assert_eq!(
        b.poll(7_000),
        Ok(BackupState::Stopped),
        "the loser must stop"
    );
}

#[test]
fn go_live_performs_exactly_the_outputs_without_output_done() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    let first = p.on_output(at(1), 10).unwrap();
    let second = p.on_output(at(2), 20).unwrap();
    b.poll(1).unwrap();
    p.poll(2, at(2)).unwrap();
    assert_eq!(p.next_release(), Some(first));
    assert_eq!(p.next_release(), Some(second));
    p.output_performed(first).unwrap();
    // The primary dies here: `second` left but its OutputDone was never logged.
    b.poll(3).unwrap();
    assert_eq!(b.poll(5_000), Ok(BackupState::CatchingUp));
    assert!(matches!(b.next_event_due(at(0)), Ok(Due::Run { .. })));
    assert_eq!(b.on_output(at(1), 10), Ok(0));
    assert_eq!(b.on_output(at(2), 20), Ok(1));
    assert_eq!(
        b.next_event_due(at(2)),
        Ok(Due::GoLive {
            perform_from: 1,
            perform_to: 2
        })
    );
    assert_eq!(b.state(), BackupState::Live);
}

#[test]
fn heartbeats_sit_at_the_last_completed_boundary_whatever_poll_is_given() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    p.on_nondeterministic_input(at(3), Event::TimeRead { value: 7 })
        .unwrap();
    p.poll(PCFG.heartbeat_period, at(3)).unwrap();
    // Acknowledged: the log is idle, so a heartbeat is due after one more period.
    b.poll(1).unwrap();
    // The caller polls with the point of exit 4, which has not completed (it will be retried).
    p.poll(2 * PCFG.heartbeat_period, at(4)).unwrap();
    assert_eq!(p.stats().heartbeats, 1);
    // An interrupt becomes due first, at the boundary the guest really stands at.
    p.on_nondeterministic_input(at(3), Event::Interrupt { vector: 32 })
        .expect("an input at the last completed boundary is not a point going backwards");
    b.poll(2).unwrap();
    p.poll(3 * PCFG.heartbeat_period, at(3)).unwrap();
    b.poll(3).unwrap();
    for n in 0..3 {
        assert!(matches!(b.next_event_due(at(n)), Ok(Due::Run { .. })));
    }
    assert_eq!(b.on_sync_read(at(3), SyncRead::Time), Ok(7));
    assert_eq!(
        b.next_event_due(at(3)),
        Ok(Due::Deliver(Event::Interrupt { vector: 32 }))
    );
    assert_eq!(
        b.next_event_due(at(3)),
        Ok(Due::Wait),
        "the heartbeat must not let the backup run to exit 4"
    );
}

#[test]
fn a_reported_boundary_lets_heartbeats_advance_the_backup() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    p.boundary_reached(at(2)).unwrap();
    p.poll(PCFG.heartbeat_period, at(9)).unwrap();
    b.poll(1).unwrap();
    for n in 0..2 {
        assert!(matches!(b.next_event_due(at(n)), Ok(Due::Run { .. })));
    }
    assert_eq!(b.next_event_due(at(2)), Ok(Due::Wait));
    assert!(
        p.boundary_reached(at(1)).is_err(),
        "boundaries only move forward"
    );
}

/// Where a `Due::Run` says to stop.
fn stop_at(due: Result<Due, BackupError>) -> Option<Position> {
    match due {
        Ok(Due::Run { stop_at }) => stop_at.map(|p| p.position()),
        other => panic!("not a run: {other:?}"),
    }
}

fn precise(det_exits: u64, branches: u64) -> ExecPoint {
    ExecPoint {
        precise: Some(branches),
        ..at(det_exits)
    }
}

#[test]
fn with_a_precise_counter_replay_stops_at_the_horizon_before_the_next_exit() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    // The primary's guest was stopped between exits 2 and 3, at branch 300: a heartbeat there.
    p.boundary_reached(precise(2, 300)).unwrap();
    p.poll(PCFG.heartbeat_period, precise(2, 300)).unwrap();
    b.poll(1).unwrap();
    assert_eq!(
        stop_at(b.next_event_due(precise(2, 120))),
        Some(precise(2, 300).position()),
        "running to exit 3 would pass an interrupt the primary may still log before it"
    );
    assert_eq!(b.next_event_due(precise(2, 300)), Ok(Due::Wait));
    // It does: at branch 350, still before exit 3.
    p.on_nondeterministic_input(precise(2, 350), Event::Interrupt { vector: 32 })
        .unwrap();
    p.poll(2 * PCFG.heartbeat_period, precise(2, 350)).unwrap();
    b.poll(2).unwrap();
    assert_eq!(
        stop_at(b.next_event_due(precise(2, 300))),
        Some(precise(2, 350).position())
    );
    assert_eq!(
        b.next_event_due(precise(2, 350)),
        Ok(Due::Deliver(Event::Interrupt { vector: 32 }))
    );
}

#[test]
fn a_diverged_guest_taking_a_logged_exit_at_another_branch_is_a_divergence() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    // The primary's guest took its third exit, a plain one, at branch 300: a heartbeat there.
    p.boundary_reached(precise(3, 300)).unwrap();
    p.poll(PCFG.heartbeat_period, precise(3, 300)).unwrap();
    b.poll(1).unwrap();
    // The backup's guest, gone wrong, takes its third exit later, and reads the time there.
    match b.on_sync_read(precise(3, 340), SyncRead::Time) {
        Err(BackupError::Diverged(d)) => {
            assert!(matches!(d.kind, DivergenceKind::Unlogged { .. }), "{d:?}")
        }
        other => panic!("not a divergence: {other:?}"),
    }
}

#[test]
fn a_stalled_primary_asks_the_arbiter_and_stops_before_printing_anything_more() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    let seq = p.on_output(at(1), 5).unwrap();
    // The backup acks, then hears nothing for a suspicion timeout: the primary's core stalled.
    b.poll(1).unwrap();
    assert_eq!(b.poll(2_000), Ok(BackupState::CatchingUp));
    assert!(matches!(b.next_event_due(at(0)), Ok(Due::Run { .. })));
    assert_eq!(b.on_output(at(1), 5), Ok(0));
    assert!(matches!(b.next_event_due(at(1)), Ok(Due::GoLive { .. })));
    // The primary resumes: the ack it finds is old news, the backup is the partition now.
    let status = p.poll(2_100, at(1)).unwrap();
    assert_eq!(
        p.next_release(),
        None,
        "output {seq} printed after the takeover"
    );
    assert_eq!(status.state, PrimaryState::Stopped);
}

#[test]
fn records_wait_in_one_frame_until_an_output_needs_them() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    for n in 1..=3 {
        p.on_nondeterministic_input(at(n), Event::TimeRead { value: n })
            .unwrap();
    }
    p.poll(PCFG.heartbeat_period / 2, at(3)).unwrap();
    assert_eq!(
        p.link_stats().frames_sent,
        0,
        "nothing needs them on the link yet"
    );
    let seq = p.on_output(at(4), 9).unwrap();
    assert_eq!(
        p.link_stats().frames_sent,
        1,
        "one frame for all four records"
    );
    assert_eq!(p.stats().frames, 1);
    assert_eq!(p.stats().log_bytes, p.link_stats().bytes_sent);
    b.poll(1).unwrap();
    assert_eq!(b.received(), 4);
    p.poll(PCFG.heartbeat_period / 2 + 1, at(4)).unwrap();
    assert_eq!(
        p.next_release(),
        Some(seq),
        "the ack covers the output's record"
    );
    p.output_performed(seq).unwrap();
    assert_eq!(
        p.link_stats().frames_sent,
        2,
        "OutputDone leaves at once: a backup going live must not repeat the output"
    );
}

#[test]
fn the_link_is_never_silent_longer_than_a_heartbeat_period() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    p.on_nondeterministic_input(at(1), Event::TimeRead { value: 1 })
        .unwrap();
    p.poll(PCFG.heartbeat_period - 1, at(1)).unwrap();
    assert_eq!(p.link_stats().frames_sent, 0);
    // A period without a frame: the waiting record goes, and shows the primary alive.
    p.poll(PCFG.heartbeat_period, at(1)).unwrap();
    assert_eq!(p.link_stats().frames_sent, 1);
    assert_eq!(p.stats().heartbeats, 0);
    b.poll(1).unwrap();
    // Another period, nothing to send: a heartbeat, with the full point.
    p.poll(2 * PCFG.heartbeat_period, at(1)).unwrap();
    assert_eq!((p.link_stats().frames_sent, p.stats().heartbeats), (2, 1));
}

#[test]
fn a_full_frame_leaves_first_and_only_a_full_frame_behind_a_full_link_pushes_back() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<1>::default();
    let (tx, _rx) = ring.split();
    let cfg = PrimaryConfig {
        max_lag_records: 1_000,
        ..PCFG
    };
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), cfg, 0);
    let read = |p: &mut Primary<_, _>, n: u64| {
        p.on_nondeterministic_input(at(n), Event::TimeRead { value: n })
    };
    let per_frame = tandem_ft::frame::MAX_RECORDS as u64;
    for n in 0..per_frame {
        read(&mut p, n).unwrap();
    }
    assert_eq!(p.link_stats().frames_sent, 0);
    read(&mut p, per_frame).unwrap();
    assert_eq!(p.link_stats().frames_sent, 1, "the full frame went first");
    for n in per_frame + 1..2 * per_frame {
        read(&mut p, n).unwrap();
    }
    // The next frame is full and the one-slot ring still holds the first.
    assert_eq!(
        read(&mut p, 2 * per_frame),
        Err(tandem_ft::primary::PrimaryError::Backpressure)
    );
    assert_eq!(
        p.log_len(),
        2 * per_frame,
        "the refused input is not logged"
    );
}

#[test]
fn a_point_that_differs_from_a_tag_is_a_divergence_that_names_the_record() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    // The first checked record carries its point in full, the next ones a tag.
    p.on_nondeterministic_input(at(1), Event::TimeRead { value: 1 })
        .unwrap();
    p.on_nondeterministic_input(at(2), Event::TimeRead { value: 2 })
        .unwrap();
    p.poll(PCFG.heartbeat_period, at(2)).unwrap();
    b.poll(1).unwrap();
    assert_eq!(b.on_sync_read(at(1), SyncRead::Time), Ok(1));
    let elsewhere = ExecPoint {
        pc: at(2).pc + 4,
        ..at(2)
    };
    match b.on_sync_read(elsewhere, SyncRead::Time) {
        Err(BackupError::Diverged(d)) => {
            assert_eq!(d.index, 1);
            let DivergenceKind::PointMismatch { expected, actual } = d.kind else {
                panic!("{d:?}");
            };
            assert_eq!(
                expected.check,
                Check::Tag(check_tag(at(2).pc, at(2).reg_hash))
            );
            assert_eq!(actual, elsewhere);
        }
        other => panic!("divergence not reported: {other:?}"),
    }
}

#[test]
fn a_heartbeat_full_point_shows_a_divergence_no_record_would() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    // The guest computes without inputs: only heartbeats follow it.
    p.boundary_reached(at(2)).unwrap();
    p.poll(PCFG.heartbeat_period, at(2)).unwrap();
    b.poll(1).unwrap();
    for n in 0..2 {
        assert!(matches!(b.next_event_due(at(n)), Ok(Due::Run { .. })));
    }
    let elsewhere = ExecPoint {
        reg_hash: at(2).reg_hash ^ 1,
        ..at(2)
    };
    match b.next_event_due(elsewhere) {
        Err(BackupError::Diverged(d)) => {
            assert_eq!(d.index, 0, "the heartbeat is the log's first record");
            assert!(matches!(
                d.kind,
                DivergenceKind::PointMismatch { expected, .. } if expected.check == Check::Full { pc: at(2).pc, reg_hash: at(2).reg_hash }
            ));
        }
        other => panic!("divergence not reported: {other:?}"),
    }
}

#[test]
fn a_heartbeat_before_any_reported_point_is_not_checked() {
    let word = AtomicU64::new(0);
    let mut ring = Ring::<16>::default();
    let (tx, rx) = ring.split();
    let mut p = Primary::new(tx, SharedWordArbiter::new(&word), PCFG, 0);
    let mut b = Backup::new(rx, SharedWordArbiter::new(&word), BCFG, 0);
    // The start's PC and registers were never given to the engine: nothing to compare.
    p.poll(PCFG.heartbeat_period, at(0)).unwrap();
    assert_eq!(p.stats().heartbeats, 1);
    b.poll(1).unwrap();
    assert_eq!(b.next_event_due(at(0)), Ok(Due::Wait));
}
