//! The hardware half of a partition's GICv3: the virtual CPU interface. Before each entry the
//! pending interrupts of the vCPU's model (the core's [`VirtualGic`], whose distributor and
//! redistributor registers the core emulates) move into the list registers in priority order
//! (Arm IHI 0069, 12.4).
//!
//! When more interrupts are pending than list registers are free, the rest wait in the model and
//! the underflow maintenance interrupt (ICH_HCR_EL2.UIE) brings the CPU back to EL2 as soon as
//! the guest has consumed all but one, to refill them.

use aarch64_cpu::registers::*;
use tandem_core::devices::vgic::VirtualGic;
use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::lr::{self, ListRegister};

register_bitfields! {u64,
    /// ICH_VMCR_EL2 (IHI 0069, 12.4.10), whose fields aarch64-cpu does not name.
    ICH_VMCR [
        /// The guest's ICC_IGRPEN1_EL1: virtual Group 1 interrupts enabled.
        VENG1 OFFSET(1) NUMBITS(1) []
    ]
}

/// Moves pending interrupts of `gic` into free list registers (of `lrs`), highest priority first,
/// and asks for an underflow maintenance interrupt if some must wait.
pub fn flush(gic: &mut VirtualGic, lrs: usize) {
    let in_lr = |intid: u32| {
        (0..lrs).any(|n| {
            let v = lr::read(n);
            lr::in_use(v) && v.read(ICH_LR0_EL2::vINTID) == u64::from(intid)
        })
    };
    for n in 0..lrs {
        if lr::in_use(lr::read(n)) {
            continue;
        }
        let Some(d) = gic.interrupts.take_next(in_lr) else {
            break;
        };
        let intid = u64::from(d.intid);
        let mut v = ListRegister::new(0);
        v.write(
            ICH_LR0_EL2::State::Pending
                + ICH_LR0_EL2::Group::SET
                + ICH_LR0_EL2::Priority.val(d.priority.into())
                + ICH_LR0_EL2::vINTID.val(intid),
        );
        if d.hardware {
            v.modify(ICH_LR0_EL2::HW::SET + ICH_LR0_EL2::pINTID.val(intid));
        }
        lr::write(n, v);
    }
    let underflow = if gic.interrupts.deliverable() {
        ICH_HCR_EL2::UIE::SET
    } else {
        ICH_HCR_EL2::UIE::CLEAR
    };
    // The virtual interface's controls for the vCPU this CPU runs.
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET + underflow);
}

/// Turns the underflow maintenance interrupt off until the next [`flush`]. It is
/// level-sensitive and stays asserted while UIE is set and at most one list register is valid
/// (GICv3 architecture specification, ICH_HCR_EL2.UIE), so EL2 must clear UIE when it takes it,
/// or it is taken again at once, forever. The next flush sets UIE again if interrupts still wait
/// for a free list register.
pub fn quiesce_underflow() {
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
}

/// Whether a virtual interrupt waits for the guest, in a list register or in the model.
pub fn pending(gic: &VirtualGic, lrs: usize) -> bool {
    gic.interrupts.deliverable()
        || (0..lrs).any(|n| lr::read(n).matches_all(ICH_LR0_EL2::State::Pending))
}

/// Whether the guest has enabled Group 1 virtual interrupts (ICH_VMCR_EL2.VENG1).
pub fn group1_enabled() -> bool {
    LocalRegisterCopy::<u64, ICH_VMCR::Register>::new(ICH_VMCR_EL2.get()).is_set(ICH_VMCR::VENG1)
}

/// Empties the list registers, passing the physical INTIDs they were forwarding to `hardware`.
pub fn clear_list_registers(lrs: usize, mut hardware: impl FnMut(u32)) {
    for n in 0..lrs {
        let v = lr::read(n);
        if lr::in_use(v) && v.is_set(ICH_LR0_EL2::HW) {
            hardware(v.read(ICH_LR0_EL2::pINTID) as u32);
        }
        lr::write(n, ListRegister::new(0));
    }
}
