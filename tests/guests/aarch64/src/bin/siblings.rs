//! Runs on two vCPUs: vCPU 0 starts vCPU 1, waits until it is busy, then stops the partition
//! while vCPU 1 is still at it: the whole partition must stop. `sibling=spin` (default) keeps
//! vCPU 1 computing without exits; `sibling=wfi` parks it in WFI with its virtual timer armed
//! 1000 s ahead; `sibling=sleep` in WFI with no timer, which only vCPU 0 could end. `stop=off`
//! (default) is PSCI SYSTEM_OFF, `stop=reset` SYSTEM_RESET, `stop=fault` a read of memory the
//! partition does not have, `stop=sleep` WFI with no timer on vCPU 0 too: neither vCPU can wake
//! the other.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use tandem_guest::cpu::{counter_frequency, read_u64, virtual_count};
use tandem_guest::hypercall::{PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, psci};
use tandem_guest::{Guest, Runtime, arg, gic, println, start_cpu};

tandem_guest::entry!(main);

/// vCPU 1 is spinning or waiting.
static BUSY: AtomicBool = AtomicBool::new(false);
/// `sibling=wfi`.
static WFI: AtomicBool = AtomicBool::new(false);
/// `sibling=sleep`.
static SLEEP: AtomicBool = AtomicBool::new(false);
/// An address outside the partition's memory and every device it is given.
const NOTHING: u64 = 0x1000_0000;

/// WFI forever, interrupts enabled at the GIC (SGI 3) but masked at the CPU: only a sibling's
/// SGI could end each wait, and none is taken.
fn sleep_forever(vcpu: u64) -> ! {
    gic::enable_private(3, 0x80);
    println!("vCPU {vcpu} sleeps in WFI with no timer");
    BUSY.store(true, Ordering::SeqCst);
    loop {
        // SAFETY: IRQs masked, so WFI only waits; nothing is taken.
        unsafe { core::arch::asm!("msr daifset, #2", "wfi", options(nomem, nostack)) };
    }
}

fn second(_: u64) {
    if SLEEP.load(Ordering::SeqCst) {
        sleep_forever(1);
    }
    if WFI.load(Ordering::SeqCst) {
        gic::enable_ppi(gic::VTIMER);
        let later = virtual_count() + 1000 * counter_frequency();
        // SAFETY: the guest's own virtual timer: compare value, then enabled and unmasked, so
        // the hypervisor sees a wake-up source for the WFI.
        unsafe {
            core::arch::asm!("msr cntv_cval_el0, {}", in(reg) later, options(nomem, nostack));
            core::arch::asm!("msr cntv_ctl_el0, {}", in(reg) 1u64, options(nomem, nostack));
            core::arch::asm!("isb", options(nomem, nostack));
        }
        println!("vCPU 1 waiting in WFI");
        BUSY.store(true, Ordering::SeqCst);
        loop {
            // SAFETY: IRQs masked, so WFI only waits; nothing is taken.
            unsafe { core::arch::asm!("msr daifset, #2", "wfi", options(nomem, nostack)) };
        }
    }
    println!("vCPU 1 spinning");
    BUSY.store(true, Ordering::SeqCst);
    loop {
        core::hint::spin_loop();
    }
}

fn main() -> u64 {
    let info = Guest::partition_info();
    let args = info.args();
    WFI.store(arg(args, "sibling") == Some("wfi"), Ordering::SeqCst);
    SLEEP.store(arg(args, "sibling") == Some("sleep"), Ordering::SeqCst);
    let on = start_cpu(1, second, 0);
    if on != 0 {
        println!("ERROR: CPU_ON of vCPU 1: {on}");
        return 1;
    }
    while !BUSY.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
    match arg(args, "stop").unwrap_or("off") {
        "reset" => {
            println!("vCPU 0 resets the partition");
            psci(PSCI_SYSTEM_RESET, [0; 3]);
        }
        "sleep" => sleep_forever(0),
        "fault" => {
            println!("vCPU 0 reads memory the partition does not have");
            let v = read_u64(NOTHING);
            println!("ERROR: the read returned {v:#x}");
        }
        _ => {
            println!("vCPU 0 powers the partition off");
            psci(PSCI_SYSTEM_OFF, [0; 3]);
        }
    }
    println!("ERROR: vCPU 0 still runs");
    1
}
