//! What the aarch64 backend keeps in the ledger for each CPU (see `tandem_hw::ledger`).

use tandem_core::devices::vgic::VirtualGic;
use tandem_core::partition::VcpuRecord;

use crate::entry::GuestRegs;

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct VcpuSlot {
    pub regs: GuestRegs,
    pub vgic: VirtualGic,
    pub record: VcpuRecord,
}
