//! What the aarch64 backend keeps in each CPU's ledger slot besides the portable record (see
//! `tandem_hw::bringup::VcpuSlot`).

use tandem_core::devices::ptimer::PhysicalTimer;
use tandem_core::devices::vgic::VirtualGic;

use crate::entry::GuestRegs;
use crate::snapshot::El1State;

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct VcpuState {
    pub regs: GuestRegs,
    pub vgic: VirtualGic,
    /// The guest's EL1 physical timer, emulated (`physical_timer`).
    pub ptimer: PhysicalTimer,
    /// PSTATE as the guest left it at its latest exit, before a handler made it take an
    /// exception: what a recovery rolling that exit back gives it again.
    pub exit_pstate: u64,
    /// What the CPU held: taken for a re-protection snapshot (`tandem_hw::reprotect`), and by a
    /// recovery from the stopped CPU.
    pub el1: El1State,
}
