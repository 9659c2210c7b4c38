//! What the x86_64 backend keeps in the ledger for each CPU (see `tandem_hw::ledger`).

use tandem_core::partition::VcpuRecord;

use crate::vmx::GuestRegs;

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct VcpuSlot {
    pub regs: GuestRegs,
    pub record: VcpuRecord,
}
