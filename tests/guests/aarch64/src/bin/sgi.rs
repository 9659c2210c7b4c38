//! Runs on two vCPUs: vCPU 1 enables SGIs 3, 5, 6 and 7 and sleeps in WFI with no timer armed,
//! so only an SGI from vCPU 0 can wake it. vCPU 0 sends SGI 3 to vCPU 1 by its target list, SGI 5
//! to every other vCPU (IRM = 1), SGI 6 to vCPUs the partition does not have (target list bits
//! 2-15, Aff1 = 1, range selector 1), which must be dropped, then SGI 7 to vCPU 1; vCPU 1 prints
//! the SGIs it took, in order, and powers itself off. With `role=listen` the guest instead
//! enables every SGI on its only vCPU, sends itself SGI 2, sleeps 10 ms on its virtual timer and
//! prints the SGIs it took: its own, and none from another partition.
#![no_std]
#![no_main]

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tandem_guest::cpu::{counter_frequency, virtual_count};
use tandem_guest::hypercall::{PSCI_AFFINITY_INFO, psci};
use tandem_guest::{Guest, Runtime, arg, gic, println, sleep_ns, start_cpu, taken};

tandem_guest::entry!(main);

/// vCPU 1 enabled its SGIs.
static READY: AtomicBool = AtomicBool::new(false);
/// SGIs vCPU 1 took so far.
static SEEN: AtomicUsize = AtomicUsize::new(0);

const IRM: u64 = 1 << 40;
const LAST: u32 = 7;

fn sgi(intid: u64) -> u64 {
    intid << 24
}

/// The SGIs this guest took, in order, as text.
fn taken_list() -> heapless_line::Line {
    let mut line = heapless_line::Line::new();
    for intid in taken() {
        let _ = write!(line, " {intid}");
    }
    if line.is_empty() {
        let _ = write!(line, " none");
    }
    line
}

/// A fixed-size line buffer, enough for 32 INTIDs.
mod heapless_line {
    pub struct Line {
        buf: [u8; 160],
        len: usize,
    }

    impl Line {
        pub fn new() -> Self {
            Self {
                buf: [0; 160],
                len: 0,
            }
        }

        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        pub fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
        }
    }

    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.len + s.len();
            let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
}

fn second(_: u64) {
    for intid in [3, 5, 6, LAST] {
        gic::enable_private(intid, 0x80);
    }
    println!("vCPU 1 sleeps in WFI with no timer armed");
    READY.store(true, Ordering::SeqCst);
    loop {
        // SAFETY: WFI with IRQs masked (it still wakes on a pending interrupt), then unmasked
        // so the handler takes it.
        unsafe {
            core::arch::asm!(
                "msr daifset, #2",
                "wfi",
                "msr daifclr, #2",
                "isb",
                options(nomem, nostack)
            )
        };
        let n = taken().count();
        SEEN.store(n, Ordering::SeqCst);
        if taken().last() == Some(LAST) {
            break;
        }
    }
    println!("vCPU 1 took SGIs:{}", taken_list().as_str());
}

fn wait_seen(n: usize) {
    while SEEN.load(Ordering::SeqCst) < n {
        core::hint::spin_loop();
    }
}

fn listen() -> u64 {
    for intid in 0..16 {
        gic::enable_private(intid, 0x80);
    }
    gic::enable_ppi(gic::VTIMER);
    gic::send_sgi(sgi(2) | 1);
    for _ in 0..20 {
        sleep_ns(500_000);
    }
    println!("listener took SGIs:{}", taken_list().as_str());
    0
}

fn main() -> u64 {
    if arg(Guest::partition_info().args(), "role") == Some("listen") {
        return listen();
    }
    let on = start_cpu(1, second, 0);
    if on != 0 {
        println!("ERROR: CPU_ON of vCPU 1: {on}");
        return 1;
    }
    while !READY.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
    // Give vCPU 1 time to reach its WFI: 1 ms.
    let later = virtual_count() + counter_frequency() / 1000;
    while virtual_count() < later {
        core::hint::spin_loop();
    }
    println!("vCPU 0 sends SGI 3 to vCPU 1");
    gic::send_sgi(sgi(3) | 1 << 1);
    wait_seen(1);
    println!("vCPU 0 sends SGI 5 to every other vCPU");
    gic::send_sgi(sgi(5) | IRM);
    wait_seen(2);
    println!("vCPU 0 sends SGI 6 to vCPUs the partition does not have");
    gic::send_sgi(sgi(6) | 0xfffc);
    gic::send_sgi(sgi(6) | 1 << 16 | 0b10);
    gic::send_sgi(sgi(6) | 1 << 44 | 0b11);
    println!("vCPU 0 sends SGI {LAST} to vCPU 1");
    gic::send_sgi(sgi(LAST.into()) | 1 << 1);
    while psci(PSCI_AFFINITY_INFO, [1, 0, 0]) != 1 {
        core::hint::spin_loop();
    }
    println!("vCPU 1 is off");
    0
}
