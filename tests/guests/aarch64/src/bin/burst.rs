//! Makes `count=` (8) shared peripheral interrupts pending at once with IRQs masked, more than
//! the virtual CPU interface has list registers (QEMU's has 4), each at its own priority, then
//! takes them: every one must arrive exactly once and highest priority first, which needs the
//! hypervisor to refill the list registers as the guest drains them.
#![no_std]
#![no_main]

use core::arch::asm;

use tandem_guest::{Guest, Runtime, gic, println, taken};

tandem_guest::entry!(main);

/// INTIDs FIRST..FIRST + count; the highest INTID gets the highest priority (lowest value).
const FIRST: u32 = 64;
const MAX: u32 = 12;

fn main() -> u64 {
    let count: u32 = Guest::partition_info()
        .number("count")
        .unwrap_or(8)
        .min(MAX);
    for i in 0..count {
        gic::enable_spi(FIRST + i, (0xc0 - 0x10 * i) as u8);
    }
    gic::set_pending(FIRST, (1 << count) - 1);
    println!("{count} interrupts pending at once");
    // SAFETY: IRQs on, to take them; masked again before looking at the result.
    unsafe { asm!("msr daifclr, #2", "isb", options(nomem, nostack)) };
    for _ in 0..1_000_000 {
        if taken().count() >= count as usize {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { asm!("msr daifset, #2", "isb", options(nomem, nostack)) };
    let n = taken().count();
    let mut order = [0u32; MAX as usize];
    order
        .iter_mut()
        .zip(taken())
        .for_each(|(slot, intid)| *slot = intid);
    println!("took {n} of {count}: {:?}", &order[..n.min(MAX as usize)]);
    let in_priority_order = taken().eq((0..count).rev().map(|i| FIRST + i));
    println!("all taken once, highest priority first: {in_priority_order}");
    u64::from(!in_priority_order)
}
