//! Prints the figures the simulator measures: log volume for an idle 100 Hz guest and an
//! I/O-heavy one, the log's cost per tick of an idle kernel, failover time as a function of
//! the heartbeat period, and the datagram link's throughput and output-rule hold under network
//! faults.
//!
//! `cargo run -p tandem-ft --example figures --release`

use tandem_ft::sim::idle::{IdleKernel, run_idle};
use tandem_ft::sim::load::saturate;
use tandem_ft::sim::net::WireFaults;
use tandem_ft::sim::run;
use tandem_ft::sim::scenario::{Crash, CrashPoint, LinkKind, Partition, Scenario, Who, Workload};

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

/// One-way delay of the network in the link figures (ns).
const LINK_DELAY: u64 = 10 * US;
/// Length of a link figure's run (ns); rates are per second of it (the drain after it delivers
/// what was still in flight, but runs for however long that takes).
const LINK_RUN: u64 = 200 * MS;

/// What the link carried with the I/O-heavy guest: rates per second, wire bytes both ways, and
/// how long the output rule held outputs.
struct RunFigures {
    frames_per_s: f64,
    records_per_s: f64,
    outputs: usize,
    wire_kb: f64,
    retransmits: u64,
    fast: u64,
    release_p50_us: f64,
    release_p99_us: f64,
}

/// What the link alone carried under a saturating load, wire bytes both ways.
struct LoadFigures {
    frames_per_ms: f64,
    wire_kb: f64,
    retransmits: u64,
    fast: u64,
}

/// A network fault of the link figures.
struct LinkCase {
    name: &'static str,
    faults: WireFaults,
    partition: Option<Partition>,
}

/// The fault-free wire and one fault at a time.
fn link_cases() -> [LinkCase; 8] {
    let wire = WireFaults {
        delay_min: LINK_DELAY,
        delay_max: LINK_DELAY,
        ..WireFaults::default()
    };
    let jitter = |us: u64| WireFaults {
        delay_max: LINK_DELAY + us * US,
        ..wire
    };
    let cut = Partition {
        mask: 1,
        from: 50 * MS,
        until: 70 * MS,
    };
    let case = |name, faults, partition| LinkCase {
        name,
        faults,
        partition,
    };
    [
        case("none", wire, None),
        case("loss 1 %", WireFaults { loss: 0.01, ..wire }, None),
        case("loss 5 %", WireFaults { loss: 0.05, ..wire }, None),
        case(
            "duplicate 10 %",
            WireFaults {
                duplicate: 0.1,
                ..wire
            },
            None,
        ),
        case(
            "reorder 10 %",
            WireFaults {
                reorder: 0.1,
                ..wire
            },
            None,
        ),
        case("jitter 1 us", jitter(1), None),
        case("jitter 50 us", jitter(50), None),
        case("partition 20 ms", wire, Some(cut)),
    ]
}

/// The I/O-heavy guest for [`LINK_RUN`] over the datagram link under `case`'s faults; the
/// retransmission timeout covers the round trip at the longest delay.
fn link_run(case: &LinkCase) -> RunFigures {
    let scenario = Scenario {
        faults: case.faults,
        partition: case.partition,
        retransmit_after: 2 * case.faults.delay_max + 40 * US,
        ..Scenario::quiet(
            1,
            LINK_RUN,
            Workload {
                tick: 10 * MS,
                request_every: 50 * US,
                request_bytes: 128,
            },
            LinkKind::Datagram,
            10 * MS,
        )
    };
    let o = run(&scenario).unwrap_or_else(|v| panic!("{}: invariant broken: {v:?}", case.name));
    let secs = LINK_RUN as f64 / 1e9;
    RunFigures {
        frames_per_s: o.backup_link.frames_delivered as f64 / secs,
        records_per_s: o.records_delivered as f64 / secs,
        outputs: o.outputs_seen,
        wire_kb: (o.link.wire_bytes + o.backup_link.wire_bytes) as f64 / 1e3,
        retransmits: o.link.retransmits,
        fast: o.link.fast_retransmits,
        release_p50_us: o.release.p50 as f64 / 1e3,
        release_p99_us: o.release.p99 as f64 / 1e3,
    }
}

/// The link alone under a saturating load for the same time and faults ([`saturate`]).
fn link_load(case: &LinkCase) -> LoadFigures {
    let partition = case.partition.map(|p| p.from..p.until);
    let load = saturate(case.faults, partition, LINK_RUN, 1);
    assert_eq!(load.misdelivered, 0, "{}: frames misdelivered", case.name);
    LoadFigures {
        frames_per_ms: load.frames as f64 / (LINK_RUN / MS) as f64,
        wire_kb: (load.sender.wire_bytes + load.receiver.wire_bytes) as f64 / 1e3,
        retransmits: load.sender.retransmits,
        fast: load.sender.fast_retransmits,
    }
}

fn print_run(fault: &str, link: &str, f: &RunFigures) {
    println!(
        "{fault:<16} {link:<10} {:>9.0} {:>10.0} {:>8} {:>10.1} {:>8} {:>6} {:>9.1} {:>9.1}",
        f.frames_per_s,
        f.records_per_s,
        f.outputs,
        f.wire_kb,
        f.retransmits,
        f.fast,
        f.release_p50_us,
        f.release_p99_us,
    );
}

fn print_load(fault: &str, link: &str, f: &LoadFigures) {
    println!(
        "{fault:<16} {link:<10} {:>9.1} {:>10.1} {:>8} {:>6}",
        f.frames_per_ms, f.wire_kb, f.retransmits, f.fast,
    );
}

fn link_figures() {
    println!(
        "Datagram log link under network faults (I/O-heavy guest, 200 ms, 10 us one-way delay,"
    );
    println!(
        "heartbeat 10 ms; rates per second of the run; wire bytes both ways; release = how long"
    );
    println!("the output rule held an output)");
    println!(
        "{:<16} {:<10} {:>9} {:>10} {:>8} {:>10} {:>8} {:>6} {:>9} {:>9}",
        "fault",
        "link",
        "frames/s",
        "records/s",
        "outputs",
        "wire (KB)",
        "retrans",
        "fast",
        "p50 (us)",
        "p99 (us)"
    );
    let cases = link_cases();
    for case in &cases {
        print_run(case.name, "selective", &link_run(case));
    }
    println!();
    println!(
        "The link alone, saturated (64-byte frames, window 32, 200 ms; frames per ms; selective"
    );
    println!("repeat is paced to one datagram a microsecond after a burst of 4)");
    println!(
        "{:<16} {:<10} {:>9} {:>10} {:>8} {:>6}",
        "fault", "link", "frames/ms", "wire (KB)", "retrans", "fast"
    );
    for case in &cases {
        print_load(case.name, "selective", &link_load(case));
    }
}

fn main() {
    link_figures();
    println!();
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
