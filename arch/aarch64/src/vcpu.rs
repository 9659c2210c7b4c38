//! One vCPU at EL2: the controls that confine the guest, its entry state, how exceptions from
//! the guest become portable exits, and how they are completed.

use tandem_core::addr::GuestPhysAddr;
use tandem_core::exit::{Access, Exit};
use tandem_core::vcpu::{Completion, EntryError, GuestFault, NoSuchRegister, Vcpu};

use crate::entry::{self, GuestRegs};
use crate::gic::{self, INTID_HYP_TIMER, INTID_MAINTENANCE, INTID_VTIMER, SPURIOUS};
use crate::sysreg::{isb, read_sysreg, write_sysreg};
use crate::vgic::{self, VgicState};
use crate::{lr, psci, stage2, time};

/// HCR_EL2 (Arm ARM D19.2.49): VM (stage 2), SWIO, FMO/IMO/AMO (physical FIQ, IRQ and SError to
/// EL2, virtual ones to the guest), TWI (trap WFI), TSC (trap SMC), TIDCP and TACR (trap
/// implementation-defined and auxiliary control registers), RW (EL1 is AArch64), APK and API
/// (pointer authentication does not trap).
const HCR: u64 = 1
    | 1 << 1
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 13
    | 1 << 19
    | 1 << 20
    | 1 << 21
    | 1 << 31
    | 1 << 40
    | 1 << 41;
/// CPTR_EL2 (E2H = 0): RES1 bits only, so FP/SIMD and SVE do not trap (emulators.md 5.3).
const CPTR: u64 = 0x33ff;
/// CNTHCTL_EL2 (E2H = 0): EL1PCTEN = 1 (the physical counter is readable), EL1PCEN = 0 (the EL1
/// physical timer traps; guests use the virtual timer) (Arm ARM D19.2.21).
const CNTHCTL: u64 = 1;
/// SCTLR_EL1 at reset: RES1 bits, MMU and caches off (Arm ARM D19.2.118).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// The longest a guest runs without an exit; see [`El2Vcpu::arm_hyp_timer`].
const SLICE_NS: u64 = 100_000;
/// PSTATE for a guest's first instruction: EL1h, D, A, I, F masked.
const PSTATE_EL1H: u64 = 0x3c5;

const EC_WFX: u64 = 0x01;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_SYSREG: u64 = 0x18;
const EC_IABT_LOWER: u64 = 0x20;
const EC_DABT_LOWER: u64 = 0x24;
/// ISS of a data abort (Arm ARM D19.2.43, ISS encoding for a Data Abort).
const ISS_ISV: u64 = 1 << 24;
const ISS_SSE: u64 = 1 << 21;
const ISS_SF: u64 = 1 << 15;
const ISS_WNR: u64 = 1 << 6;
/// DFSC translation fault, levels 0-3.
const DFSC_TRANSLATION: u64 = 0b00_0100;

/// What the last exit needs from its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The trapped instruction is done: step over it.
    Step,
    /// HVC: ELR_EL2 already points past it.
    Hvc,
    /// A load: write the value to X`reg` (31 = XZR), extended as the syndrome says, and step.
    Load {
        reg: usize,
        size: u8,
        signed: bool,
        wide: bool,
    },
    /// A PSCI call over SMC: X0 = value, then step.
    Smc,
}

pub struct El2Vcpu {
    regs: &'static mut GuestRegs,
    vgic: &'static mut VgicState,
    index: u64,
    vcpus: u64,
    lrs: usize,
    pending: Pending,
    deadline_ns: Option<u64>,
}

fn sign_extend(v: u64, size: u8) -> u64 {
    let shift = 64 - 8 * u32::from(size);
    (((v << shift) as i64) >> shift) as u64
}

/// Configures EL2 on this CPU to run a vCPU of the partition whose stage-2 root is `root`.
///
/// # Safety
/// `root` is a stage-2 table built by [`stage2::build`] for the partition this CPU runs, and no
/// guest runs on this CPU yet.
pub unsafe fn configure(root: u64, vmid: u16, index: u64) {
    let midr = read_sysreg!("midr_el1");
    // SAFETY: the caller's contract; these registers only govern this CPU's guest.
    unsafe {
        write_sysreg!("vtcr_el2", stage2::VTCR);
        write_sysreg!("vttbr_el2", root | u64::from(vmid) << 48);
        write_sysreg!("hcr_el2", HCR);
        write_sysreg!("cptr_el2", CPTR);
        write_sysreg!("cnthctl_el2", CNTHCTL);
        write_sysreg!("cnthp_ctl_el2", 0);
        write_sysreg!("vmpidr_el2", 1u64 << 31 | index);
        write_sysreg!("vpidr_el2", midr);
    }
    isb();
    // SAFETY: drops stale stage-1 and stage-2 entries of this VMID, now current in VTTBR_EL2.
    unsafe { core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

impl El2Vcpu {
    pub fn new(
        regs: &'static mut GuestRegs,
        vgic: &'static mut VgicState,
        index: u64,
        vcpus: u64,
    ) -> Self {
        Self {
            regs,
            vgic,
            index,
            vcpus,
            lrs: lr::count(),
            pending: Pending::Step,
            deadline_ns: None,
        }
    }

    /// Puts the vCPU in its power-on state: PC = `entry`, X0 = `x0`, EL1 with the MMU off, no
    /// pending interrupts, and virtual time starting now.
    pub fn reset(&mut self, entry: u64, x0: u64) {
        *self.regs = GuestRegs::zeroed();
        self.regs.x[0] = x0;
        self.regs.pc = entry;
        self.regs.pstate = PSTATE_EL1H;
        vgic::clear_list_registers(self.lrs, gic::deactivate);
        for intid in self.vgic.interrupts.take_hardware_pending() {
            gic::deactivate(intid);
        }
        *self.vgic = VgicState::new();
        self.deadline_ns = None;
        // SAFETY: EL1 state of the guest this CPU runs; it restarts with none of it.
        unsafe {
            write_sysreg!("sctlr_el1", SCTLR_EL1_RESET);
            write_sysreg!("cntv_ctl_el0", 0);
            write_sysreg!("cntvoff_el2", time::counter());
            write_sysreg!("ich_vmcr_el2", 0);
            core::arch::asm!(
                "tlbi vmalls12e1",
                "ic iallu",
                "dsb nsh",
                "isb",
                options(nostack)
            );
        }
    }

    /// Arms the EL2 physical timer for the core's deadline, and at most [`SLICE_NS`] ahead.
    ///
    /// The bound exists for emulators: QEMU with `-icount` runs all CPUs in one thread and
    /// switches between them at timer deadlines, so a CPU running a guest that never exits would
    /// otherwise starve the others (a partition whose timer fired would wait up to 100 ms of
    /// virtual time). On hardware it costs one asynchronous exit per slice.
    fn arm_hyp_timer(&self) {
        let slice_end = time::now_ns() + SLICE_NS;
        let deadline = self.deadline_ns.map_or(slice_end, |d| d.min(slice_end));
        // SAFETY: the EL2 physical timer belongs to the hypervisor; it only raises INTID 26.
        unsafe {
            write_sysreg!("cnthp_cval_el2", time::counter_at(deadline));
            write_sysreg!("cnthp_ctl_el2", 1);
        }
    }

    /// Takes every pending physical interrupt; the virtual timer's is forwarded to the guest.
    fn interrupts(&mut self) -> Exit {
        let mut exit = Exit::ExternalInterrupt { vector: SPURIOUS };
        loop {
            let intid = gic::acknowledge();
            if intid >= SPURIOUS {
                return exit;
            }
            gic::end_of_interrupt(intid);
            match intid {
                // Stays active until the guest deactivates its virtual copy (hardware LR).
                INTID_VTIMER => self.vgic.interrupts.raise(INTID_VTIMER, true),
                INTID_HYP_TIMER => {
                    // SAFETY: as in `arm_hyp_timer`; re-armed before the next entry.
                    unsafe { write_sysreg!("cnthp_ctl_el2", 0) };
                    gic::deactivate(intid);
                    exit = Exit::TimerExpired;
                    continue;
                }
                // Underflow: the next flush refills the list registers.
                INTID_MAINTENANCE => {
                    VgicState::quiesce_underflow();
                    gic::deactivate(intid);
                }
                other => gic::deactivate(other),
            }
            if exit != Exit::TimerExpired {
                exit = Exit::ExternalInterrupt { vector: intid };
            }
        }
    }

    fn fault_address() -> u64 {
        (read_sysreg!("hpfar_el2") >> 4) << 12 | (read_sysreg!("far_el2") & 0xfff)
    }

    /// Decodes a synchronous exception; `None` when it was handled here (the emulated GIC).
    fn synchronous(&mut self) -> Option<Exit> {
        let esr = read_sysreg!("esr_el2");
        let ec = esr >> 26;
        let iss = esr & 0x1ff_ffff;
        let x = &self.regs.x;
        self.pending = Pending::Step;
        Some(match ec {
            EC_HVC64 => {
                self.pending = Pending::Hvc;
                if psci::is_psci(x[0]) {
                    Exit::Power(psci::decode(x[0] as u32, [x[1], x[2], x[3]]))
                } else {
                    Exit::Hypercall {
                        nr: x[0],
                        args: [x[1], x[2], x[3], x[4]],
                    }
                }
            }
            EC_SMC64 => {
                self.pending = Pending::Smc;
                Exit::Power(psci::decode(
                    if psci::is_psci(x[0]) {
                        x[0] as u32
                    } else {
                        u32::MAX
                    },
                    [x[1], x[2], x[3]],
                ))
            }
            EC_WFX => Exit::Halt,
            EC_SYSREG => Exit::Forbidden { code: ec as u32 },
            EC_IABT_LOWER => Exit::PageFault {
                gpa: GuestPhysAddr::new(Self::fault_address()),
                access: Access::Execute,
            },
            EC_DABT_LOWER if iss & 0b11_1100 == DFSC_TRANSLATION => return self.data_abort(iss),
            _ => Exit::Unhandled {
                code: ec as u32,
                qualification: esr,
            },
        })
    }

    fn data_abort(&mut self, iss: u64) -> Option<Exit> {
        let gpa = Self::fault_address();
        if iss & ISS_ISV == 0 {
            return Some(Exit::UndecodedAccess {
                gpa: GuestPhysAddr::new(gpa),
            });
        }
        let size = 1u8 << ((iss >> 22) & 0b11);
        let reg = ((iss >> 16) & 0x1f) as usize;
        let write = iss & ISS_WNR != 0;
        let value = if reg == 31 { 0 } else { self.regs.x[reg] };
        let value = if size == 8 {
            value
        } else {
            value & ((1 << (8 * u32::from(size))) - 1)
        };
        if let Some(frame) = vgic::frame(gpa, self.vcpus) {
            let aligned = frame_word(&frame);
            let shift = 8 * (gpa - aligned.1) as u32;
            if write {
                let merged = if size >= 4 {
                    value
                } else {
                    let old = self.vgic.read(&aligned.0, self.index, self.vcpus);
                    let mask = ((1u64 << (8 * u32::from(size))) - 1) << shift;
                    (old & !mask) | (value << shift)
                };
                self.vgic.write(&aligned.0, self.index, merged);
                self.step();
            } else {
                let word = self.vgic.read(&aligned.0, self.index, self.vcpus);
                self.pending = Pending::Load {
                    reg,
                    size,
                    signed: iss & ISS_SSE != 0,
                    wide: iss & ISS_SF != 0,
                };
                self.complete(Completion::Value(word >> shift));
            }
            return None;
        }
        let gpa = GuestPhysAddr::new(gpa);
        Some(if write {
            Exit::MmioWrite { gpa, size, value }
        } else {
            self.pending = Pending::Load {
                reg,
                size,
                signed: iss & ISS_SSE != 0,
                wide: iss & ISS_SF != 0,
            };
            Exit::MmioRead { gpa, size }
        })
    }

    fn step(&mut self) {
        self.regs.pc += 4;
    }

    /// Delivers an undefined-instruction exception to the guest's EL1 (Arm ARM D1.10.2): ESR_EL1
    /// = EC 0 with IL, the vector by the EL the guest was at.
    fn inject_undefined(&mut self) {
        let from = self.regs.pstate & 0xf;
        let offset = match from {
            0b0101 => 0x200,
            0b0100 => 0x000,
            _ => 0x400,
        };
        // SAFETY: the guest's own EL1 exception registers, set as the architecture would when
        // taking the exception; the guest resumes at its vector.
        unsafe {
            write_sysreg!("esr_el1", 1u64 << 25);
            write_sysreg!("elr_el1", self.regs.pc);
            write_sysreg!("spsr_el1", self.regs.pstate);
        }
        self.regs.pc = read_sysreg!("vbar_el1") + offset;
        self.regs.pstate = PSTATE_EL1H;
    }

    fn vtimer_firing() -> bool {
        // ENABLE set, IMASK clear, ISTATUS set.
        read_sysreg!("cntv_ctl_el0") & 0b111 == 0b101
    }
}

/// The 32-bit register (or 64-bit GICR_TYPER) holding the accessed bytes, and its address.
fn frame_word(frame: &vgic::Frame) -> (vgic::Frame, u64) {
    match *frame {
        vgic::Frame::Distributor(off) => (
            vgic::Frame::Distributor(off & !3),
            vgic::GUEST_GICD + (off & !3),
        ),
        vgic::Frame::Redistributor { vcpu, offset } => {
            let word = if offset & !7 == 0x8 {
                offset & !7
            } else {
                offset & !3
            };
            (
                vgic::Frame::Redistributor { vcpu, offset: word },
                vgic::GUEST_GICR + vcpu * gic::GICR_STRIDE + word,
            )
        }
    }
}

impl Vcpu for El2Vcpu {
    const GPRS: usize = 31;

    fn run(&mut self) -> Result<Exit, EntryError> {
        loop {
            self.vgic.flush(self.lrs);
            self.arm_hyp_timer();
            // SAFETY: EL2 was configured for this vCPU (`configure`), and `regs` lives in the
            // ledger for the whole run; its PSTATE names EL1h or a state the guest reached itself.
            let kind = unsafe { entry::guest_enter(self.regs) };
            match kind {
                entry::KIND_IRQ => return Ok(self.interrupts()),
                entry::KIND_SYNC => {
                    if let Some(exit) = self.synchronous() {
                        return Ok(exit);
                    }
                }
                _ => {
                    return Ok(Exit::Unhandled {
                        code: 0x100 | kind as u32,
                        qualification: read_sysreg!("esr_el2"),
                    });
                }
            }
        }
    }

    fn complete(&mut self, completion: Completion) {
        match completion {
            Completion::Done | Completion::Cpuid(_) => {}
            Completion::Value(v) => match self.pending {
                Pending::Load {
                    reg,
                    size,
                    signed,
                    wide,
                } => {
                    let v = if signed { sign_extend(v, size) } else { v };
                    let v = if wide { v } else { v & 0xffff_ffff };
                    if reg != 31 {
                        self.regs.x[reg] = v;
                    }
                }
                Pending::Hvc | Pending::Smc => self.regs.x[0] = v,
                Pending::Step => {}
            },
            Completion::Hypercall { status, value } => {
                self.regs.x[0] = status as u64;
                self.regs.x[1] = value;
            }
            Completion::Fault(GuestFault::GeneralProtection | GuestFault::InvalidOpcode) => {
                self.inject_undefined();
                return;
            }
        }
        if self.pending != Pending::Hvc {
            self.step();
        }
    }

    fn raise_interrupt(&mut self, vector: u8) {
        self.vgic.interrupts.raise(vector.into(), false);
    }

    fn interrupt_pending(&self) -> bool {
        self.vgic.pending(self.lrs) || Self::vtimer_firing()
    }

    fn accepts_interrupts(&self) -> bool {
        vgic::group1_enabled()
    }

    fn set_timer_deadline(&mut self, deadline_ns: Option<u64>) {
        self.deadline_ns = deadline_ns;
    }

    fn pc(&self) -> u64 {
        self.regs.pc
    }

    fn set_pc(&mut self, pc: u64) {
        self.regs.pc = pc;
    }

    fn gpr(&self, index: usize) -> Option<u64> {
        self.regs.x.get(index).copied()
    }

    fn set_gpr(&mut self, index: usize, value: u64) -> Result<(), NoSuchRegister> {
        let reg = self.regs.x.get_mut(index).ok_or(NoSuchRegister { index })?;
        *reg = value;
        Ok(())
    }

    fn wake_deadline(&self) -> Option<u64> {
        let ctl = read_sysreg!("cntv_ctl_el0");
        (ctl & 0b11 == 0b01).then(|| {
            time::ns_at(read_sysreg!("cntv_cval_el0").saturating_add(read_sysreg!("cntvoff_el2")))
        })
    }
}
