//! Sleeps on the virtual timer and checks it was woken no earlier than asked, each time.
#![no_std]
#![no_main]

use tandem_guest::{Guest, sleep_ns};

tandem_guest::entry!(main);

fn main() -> u64 {
    tandem_guest::common::checks::timer_guest::<Guest>("", sleep_ns)
}
