//! What the aarch64 backend keeps in each CPU's ledger slot besides the portable record (see
//! `tandem_hw::bringup::VcpuSlot`).

use tandem_core::devices::vgic::VirtualGic;

use crate::entry::GuestRegs;
use crate::snapshot::El1State;

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct VcpuState {
    pub regs: GuestRegs,
    pub vgic: VirtualGic,
    /// Only in a re-protection snapshot (`tandem_hw::reprotect`): what the CPU held.
    pub el1: El1State,
}
