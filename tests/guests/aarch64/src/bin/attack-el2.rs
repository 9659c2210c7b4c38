//! Reaches for what the hypervisor keeps at EL2, chosen by `attack=` in its arguments:
//! - `el0`: drops to EL0 and runs HVC and SMC there; both must be undefined instructions taken
//!   by the guest's own EL1, never calls.
//! - `sysregs`: touches the PMU, debug and OS lock registers, set/way cache maintenance and the
//!   RAS error records; each must fault in the guest, and the ID registers must not offer what
//!   faults (SVE, offered to partitions that are not fault-tolerant, is the `sve` guest's).
//! - `cval`: arms the virtual timer near the top of the counter and halts; only the TIMER_SET
//!   hypercall's interrupt may wake it, once.
//! - `cpu-on`: starts its second vCPU at addresses outside its memory; PSCI must answer
//!   INVALID_ADDRESS and start nothing.
//!
//! Each attack prints what it saw and a verdict; the guest shuts down with code 0 only if every
//! attack was contained.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

use tandem_guest::hypercall::{PSCI_AFFINITY_INFO, PSCI_CPU_ON, psci};
use tandem_guest::{Guest, Runtime, arg, console, expect_fault, faults_taken, gic, println, ticks};

tandem_guest::entry!(main);

fn main() -> u64 {
    let info = Guest::partition_info();
    let failures = match arg(info.args(), "attack").unwrap_or_default() {
        "el0" => el0(),
        "sysregs" => sysregs(),
        "cval" => cval(),
        "cpu-on" => cpu_on(),
        other => {
            println!("ERROR: unknown attack {other:?}");
            1
        }
    };
    if failures == 0 {
        println!("contained");
    }
    failures
}

/// ESR_EL1.EC of an undefined instruction (Arm ARM D19.2.40: EC 0, "Unknown reason").
const EC_UNKNOWN: u64 = 0;

fn ec(esr: u64) -> u64 {
    esr >> 26 & 0x3f
}

// ---- el0 ---------------------------------------------------------------------------------

/// Where EL0 sees the guest's RAM: the 1 GiB at VA 0x8000_0000 (level-1 entry 2) aliases PA
/// 0x4000_0000, readable, writable and executable at EL0, never executable at EL1 (PXN).
const EL0_ALIAS: u64 = 0x4000_0000;
const EL0_BLOCK: u64 = 0x4000_0000
    | 0b01
    | 1 << 2 // AttrIndx 1: Normal write-back (the runtime's MAIR)
    | 1 << 6 // AP[1]: EL0 access
    | 3 << 8 // inner shareable
    | 1 << 10 // AF
    | 1 << 53; // PXN

global_asm!(
    r#"
    .section .text.attack_el0, "ax"
    /* x0: the EL0 address to run, x1: its X0. Returns ESR_EL1 of the exception EL0 takes. */
    .global attack_run_el0
attack_run_el0:
    stp x29, x30, [sp, #-32]!
    stp x19, x20, [sp, #16]
    mrs x19, vbar_el1
    adrp x9, attack_vectors
    add x9, x9, :lo12:attack_vectors
    msr vbar_el1, x9
    msr elr_el1, x0
    mov x9, #0x3c0          /* EL0t, D, A, I, F masked */
    msr spsr_el1, x9
    mov x0, x1
    isb
    eret

    /* Back at EL1 on SP_EL1, which is the stack attack_run_el0 left. */
attack_back:
    msr vbar_el1, x19
    isb
    ldp x19, x20, [sp, #16]
    ldp x29, x30, [sp], #32
    ret

    .balign 2048
attack_vectors:
    .rept 8
    .balign 128
    mov x0, #-1             /* an exception at EL1 meanwhile: not what is tested */
    b attack_back
    .endr
    .balign 128             /* lower EL, AArch64, synchronous */
    mrs x0, esr_el1
    b attack_back
    .rept 7
    .balign 128
    mov x0, #-1
    b attack_back
    .endr

    /* EL0 code: each tries one call; if it were one, the SVC after it returns EC 0x15. */
    .balign 8
    .global attack_el0_hvc
attack_el0_hvc:
    hvc #0
    svc #0
    .global attack_el0_smc
attack_el0_smc:
    smc #0
    svc #0
"#
);

unsafe extern "C" {
    fn attack_run_el0(pc: u64, x0: u64) -> u64;
    fn attack_el0_hvc();
    fn attack_el0_smc();
}

/// Maps the EL0 alias of RAM into this vCPU's own level-1 table.
fn map_el0_alias() {
    let ttbr0: u64;
    // SAFETY: reads the translation table base the runtime set.
    unsafe { asm!("mrs {}, ttbr0_el1", out(reg) ttbr0, options(nomem, nostack)) };
    let entry = ((ttbr0 & 0x0000_ffff_ffff_fffe) + 2 * 8) as *mut u64;
    // SAFETY: the runtime's level-1 table is identity-mapped RAM and entry 2 is unused.
    unsafe {
        entry.write_volatile(EL0_BLOCK);
        asm!(
            "dsb ishst",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            options(nostack)
        );
    }
}

fn el0() -> u64 {
    map_el0_alias();
    let mut failures = 0;
    for (name, code) in [
        ("HVC", attack_el0_hvc as *const () as u64),
        ("SMC", attack_el0_smc as *const () as u64),
    ] {
        // SYSTEM_OFF in X0: were it a call, the partition would stop here.
        // SAFETY: runs two instructions at EL0 that end in an exception back to EL1.
        let esr = unsafe { attack_run_el0(code + EL0_ALIAS, 0x8400_0008) };
        println!("{name} at EL0: ESR_EL1 {esr:#x}, EC {:#x}", ec(esr));
        if esr == u64::MAX || ec(esr) != EC_UNKNOWN {
            println!("ERROR: {name} at EL0 was not an undefined instruction");
            failures += 1;
        }
    }
    failures
}

// ---- sysregs -------------------------------------------------------------------------------

/// Runs `touch` expecting an undefined-instruction fault; true if it took one.
fn faults(name: &str, touch: impl FnOnce()) -> bool {
    let before = faults_taken();
    expect_fault();
    touch();
    let faulted = faults_taken() > before;
    if !faulted {
        println!("{name}: no fault");
    }
    faulted
}

fn sysregs() -> u64 {
    let (pfr0, dfr0, isar0): (u64, u64, u64);
    // SAFETY: ID register reads.
    unsafe {
        asm!("mrs {}, id_aa64pfr0_el1", "mrs {}, id_aa64dfr0_el1", "mrs {}, id_aa64isar0_el1",
             out(reg) pfr0, out(reg) dfr0, out(reg) isar0, options(nomem, nostack));
    }
    let field = |reg: u64, shift: u32| reg >> shift & 0xf;
    let (ras, pmu) = (field(pfr0, 28), field(dfr0, 8));
    let (trace, rndr) = (field(dfr0, 4), field(isar0, 60));
    println!("ID registers offer RAS {ras}, PMUVer {pmu}, TraceVer {trace}, RNDR {rndr}");
    let mut failures = u64::from(ras | pmu | trace | rndr != 0);

    // SAFETY (every block below): the access may fault; `faults` has armed `expect_fault`,
    // and the guest's vectors resume after it.
    let attempts: [(&str, fn()); 5] = [
        ("PMCR_EL0 read", || {
            // SAFETY: see above.
            unsafe { asm!("mrs {}, pmcr_el0", out(reg) _, options(nomem, nostack)) }
        }),
        ("PMCCNTR_EL0 read", || {
            // SAFETY: see above.
            unsafe { asm!("mrs {}, pmccntr_el0", out(reg) _, options(nomem, nostack)) }
        }),
        ("DC CISW", || {
            // SAFETY: see above.
            unsafe { asm!("dc cisw, {}", in(reg) 0u64, options(nostack)) }
        }),
        ("ERRIDR_EL1 read", || {
            // ERRIDR_EL1 is S3_0_C5_C3_0, ERRSELR_EL1 S3_0_C5_C3_1 (the assembler knows them
            // only with RAS enabled).
            // SAFETY: see above.
            unsafe { asm!("mrs {}, s3_0_c5_c3_0", out(reg) _, options(nomem, nostack)) }
        }),
        ("ERRSELR_EL1 write", || {
            // SAFETY: see above.
            unsafe { asm!("msr s3_0_c5_c3_1, {}", in(reg) 0u64, options(nomem, nostack)) }
        }),
    ];
    let mut faulted = 0;
    for (name, touch) in attempts {
        if faults(name, touch) {
            faulted += 1;
        }
    }
    println!("{faulted} of {} accesses faulted", attempts.len());
    if faulted != attempts.len() {
        failures += 1;
    }
    failures + debug_registers()
}

/// The self-hosted debug registers are not the guest's: writes are ignored and reads give zero
/// (a write that reached the CPU's MDSCR_EL1 would read back), except OSLSR_EL1, which says the
/// OS lock is implemented and unlocked, whatever OSLAR_EL1 was told. None of it faults, as a
/// kernel resetting its debug state at boot expects.
fn debug_registers() -> u64 {
    let before = faults_taken();
    expect_fault();
    let (mdscr, bcr0, oslsr): (u64, u64, u64);
    // SAFETY: MDSCR_EL1.KDE and MDE, breakpoint 0 and the OS lock: trapped to the hypervisor
    // (MDCR_EL2.TDA, TDOSA), which must keep them from the CPU.
    unsafe {
        asm!("msr mdscr_el1, {bits}", "msr dbgbcr0_el1, {bits}", "msr oslar_el1, {one}",
             "isb", "mrs {mdscr}, mdscr_el1", "mrs {bcr0}, dbgbcr0_el1", "mrs {oslsr}, oslsr_el1",
             bits = in(reg) (1u64 << 13 | 1 << 15 | 1), one = in(reg) 1u64,
             mdscr = out(reg) mdscr, bcr0 = out(reg) bcr0, oslsr = out(reg) oslsr,
             options(nomem, nostack));
    }
    let faulted = faults_taken() - before;
    println!(
        "debug registers: MDSCR_EL1 {mdscr:#x}, DBGBCR0_EL1 {bcr0:#x}, OSLSR_EL1 {oslsr:#x}, {faulted} faults"
    );
    u64::from(mdscr != 0 || bcr0 != 0 || oslsr != 1 << 3 || faulted != 0)
}

// ---- cval ----------------------------------------------------------------------------------

/// Arms the virtual timer at `cval`, asks TIMER_SET for an interrupt 2 ms later and waits for
/// interrupts once; returns how often WFI came back before that interrupt was taken.
fn halt_with_cval(cval: u64) -> u64 {
    let start = ticks();
    // SAFETY: the guest's own virtual timer, enabled and unmasked at a far compare value.
    unsafe {
        asm!("msr cntv_cval_el0, {}", "msr cntv_ctl_el0, {}", "isb", in(reg) cval, in(reg) 1u64,
             options(nomem, nostack));
    }
    let (status, _) = Guest::timer_set(2_000_000, gic::HYPERCALL_TIMER.into());
    if status != 0 {
        println!("ERROR: TIMER_SET refused: {status}");
        return u64::MAX;
    }
    let mut wakes = 0;
    while ticks() == start {
        wakes += 1;
        // SAFETY: waits with IRQs masked (WFI still ends on a pending one), then takes it.
        unsafe {
            asm!(
                "msr daifset, #2",
                "wfi",
                "msr daifclr, #2",
                "isb",
                options(nomem, nostack)
            )
        };
    }
    // SAFETY: disarms the guest's own virtual timer.
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
    wakes
}

fn cval() -> u64 {
    gic::enable_ppi(gic::VTIMER);
    gic::enable_spi(gic::HYPERCALL_TIMER, 0x80);
    let mut failures = 0;
    // The top of the counter, and 2^60: the first compare value whose nanoseconds (at 62.5 MHz)
    // pass u64::MAX. Not u64::MAX itself: QEMU 7.2 adds CNTVOFF_EL2 to the compare value without
    // checking for overflow (gt_recalc_timer), so its own timer fires at once, again and again,
    // and the emulated machine stops advancing; 2^32 below it leaves room for 68 s of offset.
    for cval in [u64::MAX - (1 << 32), 1 << 60] {
        let wakes = halt_with_cval(cval);
        println!("CVAL {cval:#x}: WFI returned {wakes} times before the 2 ms TIMER_SET interrupt");
        // Hardware may end a WFI spuriously now and then; a wrapped deadline ends every one.
        if wakes > 3 {
            println!("ERROR: woken early");
            failures += 1;
        }
    }
    failures
}

// ---- cpu-on --------------------------------------------------------------------------------

const PSCI_INVALID_ADDRESS: i64 = -9;
const AFFINITY_OFF: i64 = 1;

fn cpu_on() -> u64 {
    let mut failures = 0;
    // Outside RAM (a device window, the top of the address space) and just past its end.
    let end = 0x4000_0000 + Guest::partition_info().memory;
    for entry in [console::base(), u64::MAX - 3, end, end - 2] {
        let status = psci(PSCI_CPU_ON, [1, entry, 0]);
        let affinity = psci(PSCI_AFFINITY_INFO, [1, 0, 0]);
        println!("CPU_ON of vCPU 1 at {entry:#x}: {status}, vCPU 1 affinity {affinity}");
        if status != PSCI_INVALID_ADDRESS || affinity != AFFINITY_OFF {
            println!("ERROR: CPU_ON at {entry:#x} was not refused");
            failures += 1;
        }
    }
    failures
}
