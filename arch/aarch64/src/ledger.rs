//! What the aarch64 backend keeps in the ledger for each CPU (see `tandem_hw::ledger`).

use tandem_core::partition::VcpuRecord;

use crate::entry::GuestRegs;
use crate::vgic::VgicState;

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct VcpuSlot {
    pub regs: GuestRegs,
    pub vgic: VgicState,
    pub record: VcpuRecord,
}
