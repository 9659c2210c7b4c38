//! Prints the figures the simulator measures: log volume for an idle 100 Hz guest and an
//! I/O-heavy one, the log's cost per tick of an idle kernel, and failover time as a function of
//! the heartbeat period.
//!
//! `cargo run -p tandem-ft --example figures --release`

use tandem_ft::sim::idle::{IdleKernel, run_idle};
use tandem_ft::sim::run;
use tandem_ft::sim::scenario::{Crash, CrashPoint, LinkKind, Scenario, Who, Workload};

const US: u64 = 1_000;
const MS: u64 = 1_000_000;

fn log_volume(name: &str, workload: Workload, seconds: u64) {
    let duration = seconds * 1_000 * MS;
    for link in [LinkKind::Ring, LinkKind::Datagram] {
        let scenario = Scenario {
            keep_history: true,
            ..Scenario::quiet(1, duration, workload, link, 10 * MS)
        };
        let o = run(&scenario).unwrap_or_else(|v| panic!("{name}: invariant broken: {v:?}"));
        let secs = o.sim_time as f64 / 1e9;
        println!(
            "{name:<9} {:<9} {:>6} records ({:>6} inputs, {:>5} heartbeats, {:>6} outputs seen)  {:>5.1} B/record  {:>9.0} B/s  {:>6.3} Mbit/s",
            format!("{link:?}"),
            o.records,
            o.input_records,
            o.heartbeats,
            o.outputs_seen,
            o.log_bytes as f64 / o.records.max(1) as f64,
            o.log_bytes as f64 / secs,
            o.log_bytes as f64 * 8.0 / secs / 1e6,
        );
    }
}

/// An idle kernel's tick: interrupt, clock reads, and a share of the frames and heartbeats.
fn idle_tick(hz: u64, second_read_every: u64, heartbeat_ticks: u64) {
    let k = IdleKernel {
        tick_ns: 1_000_000_000 / hz,
        second_read_every,
        heartbeat_ticks,
        ticks: 10_000,
        seed: 7,
    };
    let log = run_idle(&k).unwrap_or_else(|e| panic!("idle kernel: {e:?}"));
    let reads = match second_read_every {
        0 => "1".into(),
        1 => "2".into(),
        n => format!("1, 2 every {n}th"),
    };
    println!(
        "{hz:>5} {reads:>16} {heartbeat_ticks:>10} {:>8} {:>7} {:>11.2} {:>9.3}",
        log.records,
        log.frames,
        log.bytes_per_tick(),
        log.bytes as f64 * 8.0 / (k.ticks * k.tick_ns) as f64 * 1e3,
    );
}

fn failover(heartbeat: u64, link: LinkKind) {
    const RUNS: u64 = 5;
    let (mut detect, mut arbitrate, mut catch_up, mut total) = (0, 0, 0, 0);
    for seed in 0..RUNS {
        let suspect_after = 3 * heartbeat;
        let crash_at = 2 * suspect_after + MS + seed * 137 * US;
        let scenario = Scenario {
            crash: Some(Crash {
                who: Who::Primary,
                point: CrashPoint::At(crash_at),
            }),
            ..Scenario::quiet(
                seed,
                crash_at + 2 * suspect_after + 5 * MS,
                Workload {
                    tick: 10 * MS,
                    request_every: 50 * US,
                    request_bytes: 128,
                },
                link,
                heartbeat,
            )
        };
        let o = run(&scenario).unwrap_or_else(|v| panic!("failover: invariant broken: {v:?}"));
        let f = o.failover;
        let (Some(crashed), Some(suspected), Some(won), Some(live)) =
            (f.crashed_at, f.suspected_at, f.won_at, f.live_at)
        else {
            panic!("heartbeat {heartbeat} ns, seed {seed}: no failover: {f:?}");
        };
        detect += suspected - crashed;
        arbitrate += won - suspected;
        catch_up += live - won;
        total += live - crashed;
    }
    let ms = |ns: u64| ns as f64 / RUNS as f64 / 1e6;
    println!(
        "{:>10.2} {:>9} {:>12.3} {:>11.3} {:>15.3} {:>12.3}",
        heartbeat as f64 / 1e6,
        format!("{link:?}"),
        ms(detect),
        ms(arbitrate),
        ms(catch_up),
        ms(total),
    );
}

fn main() {
    println!("Log volume (heartbeat 10 ms; guest exits every 1 us when busy)");
    log_volume(
        "idle",
        Workload {
            tick: 10 * MS,
            request_every: 0,
            request_bytes: 0,
        },
        10,
    );
    log_volume(
        "io-heavy",
        Workload {
            tick: 10 * MS,
            request_every: 50 * US,
            request_bytes: 128,
        },
        1,
    );
    println!();
    println!("Log of an idle kernel (kernel PCs, 64-bit register hashes; 10 000 ticks; a backup");
    println!("replays it; VMware FT: 1.43 Mbit/s at 1000 Hz, about 179 bytes a tick)");
    println!(
        "{:>5} {:>16} {:>10} {:>8} {:>7} {:>11} {:>9}",
        "HZ", "clock reads", "hb (ticks)", "records", "frames", "B per tick", "Mbit/s"
    );
    for (hz, second, heartbeat) in [
        (1000, 0, 10),
        (1000, 4, 10),
        (1000, 4, 20),
        (1000, 1, 20),
        (250, 4, 20),
        (1000, 4, 1),
    ] {
        idle_tick(hz, second, heartbeat);
    }
    println!();
    println!("Failover time vs heartbeat period (suspicion after 3 heartbeats; I/O-heavy guest;");
    println!("mean of 5 crashes at different instants; simulated time)");
    println!(
        "{:>10} {:>9} {:>12} {:>11} {:>15} {:>12}",
        "hb (ms)", "link", "detect (ms)", "arbit (ms)", "catch-up (ms)", "total (ms)"
    );
    for heartbeat in [100 * US, 500 * US, MS, 5 * MS, 10 * MS, 20 * MS] {
        for link in [LinkKind::Ring, LinkKind::Datagram] {
            failover(heartbeat, link);
        }
    }
}
