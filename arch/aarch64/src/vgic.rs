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
use tock_registers::LocalRegisterCopy;

use crate::lr::{self, ListRegister};

/// The list register holding `intid`, if one does.
fn find(lrs: usize, intid: u32) -> Option<(usize, ListRegister)> {
    (0..lrs)
        .map(|n| (n, lr::read(n)))
        .find(|(_, v)| lr::in_use(*v) && v.read(ICH_LR0_EL2::vINTID) == u64::from(intid))
}

/// Whether a list register holds `intid`, pending or active.
pub fn in_list_registers(lrs: usize, intid: u32) -> bool {
    find(lrs, intid).is_some()
}

/// The SGIs and PPIs the guest has acknowledged and not deactivated (bit n = INTID n), as the
/// list registers hold them.
pub fn active_private(lrs: usize) -> u32 {
    (0..lrs).map(lr::read).fold(0, |bits, v| {
        let intid = v.read(ICH_LR0_EL2::vINTID);
        let active = matches!(
            v.read_as_enum(ICH_LR0_EL2::State),
            Some(ICH_LR0_EL2::State::Value::Active | ICH_LR0_EL2::State::Value::PendingAndActive)
        );
        if active && intid < 32 {
            bits | 1 << intid
        } else {
            bits
        }
    })
}

/// Makes the guest's writes of GICR_ISACTIVER0 and GICR_ICACTIVER0 in the list registers. A
/// deactivated interrupt linked to a physical one passes that one to `hardware` (the hypervisor
/// deactivates it, as the guest's own deactivation would have, IHI 0069, 4.4). An activation
/// needs a free list register when the interrupt is in none; without one it is dropped.
fn apply_active_changes(gic: &mut VirtualGic, lrs: usize, hardware: &mut impl FnMut(u32)) {
    let (activate, deactivate) = gic.take_active_changes();
    for intid in (0..32).filter(|i| deactivate & (1 << i) != 0) {
        let Some((n, mut v)) = find(lrs, intid) else {
            continue;
        };
        match v.read_as_enum(ICH_LR0_EL2::State) {
            Some(ICH_LR0_EL2::State::Value::PendingAndActive) => {
                v.modify(ICH_LR0_EL2::State::Pending);
                lr::write(n, v);
            }
            Some(ICH_LR0_EL2::State::Value::Active) => {
                if v.is_set(ICH_LR0_EL2::HW) {
                    hardware(v.read(ICH_LR0_EL2::pINTID) as u32);
                }
                lr::write(n, ListRegister::new(0));
            }
            _ => {}
        }
    }
    for intid in (0..32).filter(|i| activate & (1 << i) != 0) {
        match find(lrs, intid) {
            Some((n, mut v)) => {
                if v.matches_all(ICH_LR0_EL2::State::Pending) {
                    v.modify(ICH_LR0_EL2::State::PendingAndActive);
                    lr::write(n, v);
                }
            }
            None => {
                if let Some(n) = (0..lrs).find(|&n| !lr::in_use(lr::read(n))) {
                    let mut v = ListRegister::new(0);
                    v.write(
                        ICH_LR0_EL2::State::Active
                            + ICH_LR0_EL2::Group::SET
                            + ICH_LR0_EL2::Priority.val(gic.interrupts.priority(intid).into())
                            + ICH_LR0_EL2::vINTID.val(intid.into()),
                    );
                    lr::write(n, v);
                }
            }
        }
    }
}

/// Withdraws level interrupt `intid`, linked to the physical interrupt of the same ID, whose
/// line has dropped: a copy only pending (in the model, or in a list register the guest has not
/// acknowledged) goes, and the physical interrupt, active since EL2 took it, is passed to
/// `hardware` to be deactivated so it can fire again. Returns whether the guest still holds
/// the interrupt active.
pub fn withdraw(
    gic: &mut VirtualGic,
    lrs: usize,
    intid: u32,
    mut hardware: impl FnMut(u32),
) -> bool {
    if intid < 32 && gic.interrupts.pending_word(0) & (1 << intid) != 0 {
        gic.interrupts.clear_pending(intid);
        hardware(intid);
    }
    match find(lrs, intid) {
        Some((n, v)) if v.matches_all(ICH_LR0_EL2::State::Pending) => {
            lr::write(n, ListRegister::new(0));
            hardware(intid);
            false
        }
        Some(_) => true,
        None => false,
    }
}

/// Moves pending interrupts of `gic` into free list registers (of `lrs`), highest priority first,
/// and asks for an underflow maintenance interrupt if some must wait; first makes the guest's
/// activations and deactivations, passing physical interrupts to deactivate to `hardware`.
pub fn flush(gic: &mut VirtualGic, lrs: usize, mut hardware: impl FnMut(u32)) {
    apply_active_changes(gic, lrs, &mut hardware);
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
    lr::set_controls(LocalRegisterCopy::new(
        (ICH_HCR_EL2::En::SET + underflow).value,
    ));
}

/// Turns the underflow maintenance interrupt off until the next [`flush`]. It is
/// level-sensitive and stays asserted while UIE is set and at most one list register is valid
/// (GICv3 architecture specification, ICH_HCR_EL2.UIE), so EL2 must clear UIE when it takes it,
/// or it is taken again at once, forever. The next flush sets UIE again if interrupts still wait
/// for a free list register.
pub fn quiesce_underflow() {
    lr::set_controls(LocalRegisterCopy::new(ICH_HCR_EL2::En::SET.value));
}

/// Whether a virtual interrupt waits for the guest, in a list register or in the model.
pub fn pending(gic: &VirtualGic, lrs: usize) -> bool {
    gic.interrupts.deliverable()
        || (0..lrs).any(|n| lr::read(n).matches_all(ICH_LR0_EL2::State::Pending))
}

/// Whether a list register holds `intid` pending: raising it again changes nothing (pending is
/// one bit per interrupt, IHI 0069 4.1), and a second pending copy in the model would keep the
/// underflow maintenance interrupt firing ahead of the guest's own at every entry.
pub fn pending_in_lr(lrs: usize, intid: u32) -> bool {
    (0..lrs).any(|n| {
        let v = lr::read(n);
        v.matches_all(ICH_LR0_EL2::State::Pending)
            && v.read(ICH_LR0_EL2::vINTID) == u64::from(intid)
    })
}

/// Whether the guest has enabled the group its virtual interrupts are.
pub fn guest_enabled() -> bool {
    lr::guest_enabled()
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
