//! Sleeps on a timer and checks it was woken no earlier than asked, each time: by default the
//! EL1 virtual timer, woken by its interrupt (PPI 27) through the virtual GIC; with
//! `source=hypercall`, the `TIMER_SET` hypercall, woken by the interrupt the hypervisor raises
//! (SPI 48); with `source=physical`, the EL1 physical timer the hypervisor emulates (PPI 30).
#![no_std]
#![no_main]

use tandem_guest::common::checks::timer_guest;
use tandem_guest::{Guest, Runtime, arg, gic, sleep_hypercall_ns, sleep_ns, sleep_physical_ns};

tandem_guest::entry!(main);

fn main() -> u64 {
    let info = Guest::partition_info();
    let source = arg(info.args(), "source");
    if source == Some("hypercall") {
        gic::enable_spi(gic::HYPERCALL_TIMER, 0x80);
        timer_guest::<Guest>(" through TIMER_SET", sleep_hypercall_ns)
    } else if source == Some("physical") {
        gic::enable_ppi(gic::PTIMER);
        timer_guest::<Guest>(" on the physical timer", sleep_physical_ns)
    } else {
        gic::enable_ppi(gic::VTIMER);
        timer_guest::<Guest>(" on the virtual timer", sleep_ns)
    }
}
