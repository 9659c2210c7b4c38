//! What the aarch64 backend keeps in each CPU's ledger slot besides the portable record (see
//! `tandem_hw::bringup::VcpuSlot`).

use tandem_core::devices::vgic::VirtualGic;

use crate::entry::GuestRegs;

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct VcpuState {
    pub regs: GuestRegs,
    pub vgic: VirtualGic,
}
