//! The aarch64 half of a recovery (`tandem_hw::recover`), besides stopping CPUs (`stop`), the
//! pristine image (`pristine`) and the injections (`inject`): each CPU's vCPU captured into its
//! ledger slot, an exit rolled back, and a CPU's own EL2 state rebuilt before it goes on.

use core::sync::atomic::{AtomicBool, Ordering};

use tandem_core::config::MAX_CPUS;
use tandem_core::journal::MAX_GPRS;

use crate::sysreg::{isb, write_sysreg};
use crate::vcpu_state::VcpuState;
use crate::{entry, gic, stop};

/// CPUs whose vCPU was made: their EL1 and virtual-interface registers hold a guest's state.
static MADE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// CPU `cpu` made its vCPU.
pub fn vcpu_made(cpu: usize) {
    MADE[cpu].store(true, Ordering::Relaxed);
}

/// For a recovery, on the stopped CPU `cpu`: what of its vCPU lives only in the CPU into its
/// ledger slot `state` (recovery.md 6.3: the EL1 system registers, the virtual timer and
/// CNTVOFF_EL2, the virtual CPU interface's list registers, active priorities and VMCR, FP/SIMD).
/// The general registers, PC and PSTATE are there already (the world switch keeps them there),
/// and so are the virtual GIC's and the physical timer's models. EL2 stays as it is: nothing
/// needs leaving, and `El2Vcpu::resume` rewrites what the vCPU uses. False if the CPU had no vCPU.
pub fn capture_vcpu(cpu: usize, state: &mut VcpuState) -> bool {
    if !MADE[cpu].load(Ordering::Relaxed) {
        return false;
    }
    state.el1.capture();
    true
}

/// Rolls the captured vCPU in `state` back to the start of the exit at `pc`: X0-X30 as the
/// journal saved them, PSTATE as the guest left it (an exception the handler made the guest take
/// is undone with the rest). `pc` is the trapping instruction's, an HVC's included (the world
/// switch saves an HVC's PC at the HVC, `entry`), so the guest executes it again.
pub fn roll_back(state: &mut VcpuState, pc: u64, gprs: &[u64; MAX_GPRS]) {
    state.regs.x = *gprs;
    state.regs.pc = pc;
    state.regs.pstate = state.exit_pstate;
}

/// Rebuilds this CPU's own EL2 state after a recovery (recovery.md 6.9): the vector base
/// (VBAR_EL2, which the reloaded image has at the same address) and the GIC CPU interface
/// (recovery.md 6.5, `gic::reset_for_recovery`), then lets stop requests in again. The
/// translation regime (SCTLR_EL2, TCR_EL2, MAIR_EL2, TTBR0_EL2) is the boot map's, which no
/// recovery changes; the vCPU's controls (HCR_EL2, VTTBR_EL2, CPTR_EL2, MDCR_EL2, CNTHCTL_EL2...)
/// are written again when it is made (`vcpu::configure`). The stop requests ended when every
/// stopped CPU arrived (`stop::stops_over`), before any CPU is released to come here: a
/// watchdog tick let in now is a tick, not a stop. The watchdog's timer runs on through the
/// recovery; a tick left pending comes in with the FIQs.
pub fn rebuild_cpu() {
    // SAFETY: the hypervisor's own vector table; the ISB also makes this CPU fetch the code the
    // recovery may have reloaded.
    unsafe { write_sysreg!("vbar_el2", entry::vectors()) };
    isb();
    if gic::reset_for_recovery().is_err() {
        defmt::warn!("recovery: no GIC redistributor for this CPU to reset");
    }
    stop::allow();
}
