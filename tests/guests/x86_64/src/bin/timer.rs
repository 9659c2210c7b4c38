//! Sleeps on the virtual timer and checks it was woken no earlier than asked, each time; with
//! `spin=1` it spins (PAUSE, interrupts enabled) until the timer's interrupt instead of halting.
#![no_std]
#![no_main]

use tandem_guest::{Guest, Runtime, sleep_ns, spin_ns};

tandem_guest::entry!(main);

fn main() -> u64 {
    if Guest::partition_info().number::<u32>("spin") == Some(1) {
        tandem_guest::common::checks::timer_guest::<Guest>(", spinning", spin_ns)
    } else {
        tandem_guest::common::checks::timer_guest::<Guest>("", sleep_ns)
    }
}
