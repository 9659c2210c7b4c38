//! Sleeps on the EL1 virtual timer, woken by its interrupt (PPI 27) through the virtual GIC, and
//! checks it was woken no earlier than asked, each time.
#![no_std]
#![no_main]

use tandem_guest::hypercall::{arg, partition_info, time_now};
use tandem_guest::{gic, println, sleep_ns, ticks};

tandem_guest::entry!(main);

fn main() -> u64 {
    let info = partition_info();
    let sleeps: u64 = arg(info.args(), "sleeps")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let period_us: u64 = arg(info.args(), "period_us")
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    gic::enable_ppi(gic::VTIMER);
    println!("sleeping {sleeps} times for {period_us} us on the virtual timer");
    let mut early = 0;
    for i in 1..=sleeps {
        let before = time_now();
        sleep_ns(period_us * 1000);
        let slept = time_now() - before;
        if slept < period_us * 1000 {
            early += 1;
        }
        if i % 5 == 0 || i == sleeps {
            println!("woke {i} times (last sleep {} us)", slept / 1000);
        }
    }
    println!(
        "timer ticks {} of {} sleeps, {} woke early",
        ticks(),
        sleeps,
        early
    );
    if ticks() == sleeps && early == 0 {
        0
    } else {
        1
    }
}
