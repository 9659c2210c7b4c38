//! The log's cost per idle timer tick, measured on an idle kernel's trace (kernel-space PCs, a
//! fresh 64-bit register hash at every point) with the real primary deciding frames and
//! heartbeats and a backup replaying every record: at most 8 bytes per tick, all inclusive.

use tandem_ft::sim::idle::{IdleKernel, run_idle};

/// `HZ=1000`; the tick handler reads the clock once, twice every fourth tick.
fn idle_kernel(heartbeat_ticks: u64) -> IdleKernel {
    IdleKernel {
        tick_ns: 1_000_000,
        second_read_every: 4,
        heartbeat_ticks,
        ticks: 10_000,
        seed: 7,
    }
}

#[test]
fn an_idle_tick_costs_at_most_8_bytes_with_a_heartbeat_every_20_ticks() {
    let log = run_idle(&idle_kernel(20)).expect("replayed without divergence");
    println!("{log:?}: {:.2} bytes per tick", log.bytes_per_tick());
    assert!(log.bytes_per_tick() <= 8.0, "{log:?}");
    // Two and a quarter records a tick (interrupt, clock reads) and one frame a heartbeat.
    assert_eq!(log.records, 10_000 * 9 / 4 + log.heartbeats);
    assert!(log.frames <= 10_000 / 20 + 1, "{log:?}");
}

#[test]
fn heartbeats_as_often_as_ticks_cost_a_frame_a_tick() {
    // What the heartbeat period buys: liveness every tick costs a header and CRC every tick.
    let often = run_idle(&idle_kernel(1)).expect("replayed without divergence");
    let seldom = run_idle(&idle_kernel(20)).expect("replayed without divergence");
    assert!(often.frames >= 9_000, "{often:?}");
    assert!(often.bytes_per_tick() > seldom.bytes_per_tick() + 8.0);
}
