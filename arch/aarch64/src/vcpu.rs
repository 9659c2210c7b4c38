//! One vCPU at EL2: the controls that confine the guest, its entry state, how exceptions from
//! the guest become portable exits, and how they are completed.

use aarch64_cpu::registers::*;
use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::{Gic, GicCpu};
use tandem_core::devices::ptimer::PhysicalTimer;
use tandem_core::devices::sgi::SgiRequest;
use tandem_core::devices::vgic::{GicWindows, VirtualGic};
use tandem_core::exit::{Access, Exit};
use tandem_core::vcpu::{Completion, EntryError, GuestFault, NoSuchRegister, Vcpu};
use tandem_hw::dirty::DirtyPages;
use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::dirty;
use crate::entry::{self, GuestRegs};
use crate::gic::{self, GicError, SPURIOUS};
use crate::idregs::Offered;
use crate::physical_timer::{self, TimerAccess};
use crate::stage2::Stage2;
use crate::sysreg::{isb, write_sysreg};
use crate::vcpu_state::VcpuState;
use crate::{counter, debugregs, idregs, lr, pmu, psci, sgi, stage2, time, vgic, virtual_time};

/// HCR_EL2 (Arm ARM D19.2.49): VM (stage 2), SWIO, FMO/IMO/AMO (physical FIQ, IRQ and SError to
/// EL2, virtual ones to the guest), TWI (trap WFI), TSC (trap SMC), TIDCP and TACR (trap
/// implementation-defined and auxiliary control registers), RW (EL1 is AArch64), APK and API
/// (pointer authentication does not trap). The guest must not own what is shared: TSW traps
/// data-cache maintenance by set/way (it cleans and invalidates caches other partitions use),
/// TERR traps the RAS error records and TEA routes synchronous external aborts to EL2 (the
/// hypervisor, not the guest, deals with broken hardware), TID3 traps the ID registers so the
/// guest sees only the features it may use (`idregs`).
const HCR: u64 = HCR_EL2::VM::Enable.value
    | HCR_EL2::SWIO::SET.value
    | HCR_EL2::FMO::EnableVirtualFIQ.value
    | HCR_EL2::IMO::EnableVirtualIRQ.value
    | HCR_EL2::AMO::SET.value
    | HCR_EL2::TWI::SET.value
    | HCR_EL2::TSC::EnableTrapEl1SmcToEl2.value
    | HCR_EL2::TIDCP::SET.value
    | HCR_EL2::TACR::SET.value
    | HCR_EL2::TSW::SET.value
    | HCR_EL2::TERR::SET.value
    | HCR_EL2::TEA::SET.value
    | HCR_EL2::TID3::SET.value
    | HCR_EL2::RW::EL1IsAarch64.value
    | HCR_EL2::APK::DisableTrapPointerAuthKeyRegsToEl2.value
    | HCR_EL2::API::DisableTrapPointerAuthInstToEl2.value;

/// MDCR_EL2 (Arm ARM D19.3) for every vCPU: the debug, OS lock and debug ROM registers, trace
/// and statistical profiling stay the hypervisor's (a guest breakpoint or OS lock would act on
/// the whole CPU): TDA, TDOSA and TDRA trap the debug, OS lock and ROM registers, TTRF the trace
/// filter, TPMS and E2PB = 0 the profiling buffer. TDE stays 0: the guest's own debug exceptions
/// stay the guest's.
const MDCR_DEBUG: u64 = MDCR_EL2::TDA::SET.value
    | MDCR_EL2::TDOSA::SET.value
    | MDCR_EL2::TDRA::SET.value
    | MDCR_EL2::TTRF::SET.value
    | MDCR_EL2::TPMS::SET.value;
/// MDCR_EL2 for a vCPU without the PMU, the default: the PMU stays the hypervisor's too (FT would
/// count instructions with it): TPM and TPMCR trap every PMU register, HPMN = 0 gives the guest no
/// event counter. A partition with `pmu = true` gets [`pmu::mdcr_controls`] instead.
const MDCR: u64 = MDCR_DEBUG
    | MDCR_EL2::TPM::SET.value
    | MDCR_EL2::TPMCR::SET.value
    | MDCR_EL2::HPMN.val(0).value;

register_bitfields! {u64,
    /// CPTR_EL2 with E2H = 0 (Arm ARM D19.2.29); aarch64-cpu names only TAM.
    CPTR [
        /// Traps the trace registers.
        TTA OFFSET(20) NUMBITS(1) [],
        /// Traps SME (with FEAT_SME; RES1 otherwise).
        TSM OFFSET(12) NUMBITS(1) [],
        /// Traps SVE (with FEAT_SVE; RES1 otherwise).
        TZ OFFSET(8) NUMBITS(1) []
    ],
    /// The ISS of a data abort (Arm ARM D19.2.43, "ISS encoding for an exception from a Data
    /// Abort"); aarch64-cpu gives the ISS only as a whole.
    DABT_ISS [
        /// Instruction syndrome valid: SAS, SSE, SRT and SF describe the access.
        ISV OFFSET(24) NUMBITS(1) [],
        /// Access size: 1 << SAS bytes.
        SAS OFFSET(22) NUMBITS(2) [],
        /// Sign-extended load.
        SSE OFFSET(21) NUMBITS(1) [],
        /// The transfer register.
        SRT OFFSET(16) NUMBITS(5) [],
        /// 64-bit register (else W).
        SF OFFSET(15) NUMBITS(1) [],
        /// Write, not read.
        WNR OFFSET(6) NUMBITS(1) [],
        /// The fault happened on a stage-1 table walk.
        S1PTW OFFSET(7) NUMBITS(1) [],
        /// Fault status; translation faults of levels 0-3 are 0b0001xx, permission faults
        /// 0b0011xx.
        DFSC OFFSET(0) NUMBITS(6) []
    ]
}

/// CPTR_EL2's RES1 bits (7:0, 9, 13). FP/SIMD does not trap (TFP = 0): guests use it and the
/// hypervisor does not (softfloat). SVE is offered the same way, where the CPU has it, to every
/// partition but a fault-tolerant one ([`sve_offered`]): each CPU runs one vCPU and the hypervisor
/// never touches the Z, P and FFR registers, so they are the guest's alone, as the FP/SIMD
/// registers are. TSM traps SME, offered to none (its ZA state and streaming mode would need
/// the same care, and no guest has asked). The ID registers say what is offered (`idregs`); an
/// SVE or SME instruction all the same is an undefined-instruction fault in the guest, reported
/// by name. TTA traps trace, TAM the activity monitors.
const CPTR_SVE: u64 =
    0x22ff | CPTR::TSM::SET.value | CPTR::TTA::SET.value | CPTR_EL2::TAM::SET.value;
/// CPTR_EL2 where SVE is not offered: TZ traps it too (and is RES1 without FEAT_SVE).
const CPTR_NO_SVE: u64 = CPTR_SVE | CPTR::TZ::SET.value;
/// ZCR_EL2.LEN = 15: EL1 and EL0 may use up to 2048-bit vectors, so the guest sees the machine's
/// own maximum vector length (the CPU caps LEN to it; Arm ARM, ZCR_EL2). The guest picks its own
/// with ZCR_EL1.
const ZCR_LEN_MAX: u64 = 0xf;
/// CNTHCTL_EL2 (E2H = 0): EL1PCTEN = 1 (the physical counter is readable), EL1PCEN = 0 (the EL1
/// physical timer traps; guests use the virtual timer) (Arm ARM D19.2.21).
const CNTHCTL: u64 = CNTHCTL_EL2::EL1PCTEN::SET.value;
/// CNTHCTL_EL2 for a fault-tolerant partition: the physical counter traps too (`counter`).
const CNTHCTL_REPLICATED: u64 = 0;
/// SCTLR_EL1 at reset: RES1 bits only, so the MMU and caches are off (Arm ARM D19.2.118).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// The longest a guest runs without an exit; see [`El2Vcpu::arm_hyp_timer`].
const SLICE_NS: u64 = 100_000;
/// PSTATE for a guest's first instruction: EL1h, D, A, I, F masked.
const PSTATE_EL1H: u64 = SPSR_EL2::D::Masked.value
    | SPSR_EL2::A::Masked.value
    | SPSR_EL2::I::Masked.value
    | SPSR_EL2::F::Masked.value
    | SPSR_EL2::M::EL1h.value;

/// SPSR_EL2.M[3:2]: the exception level the guest was at.
const PSTATE_EL_MASK: u64 = 0b1100;

/// What the last exit needs from its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The trapped instruction is done: step over it.
    Step,
    /// An HVC or a PSCI call over SMC: X0 = value, then step (the PC of an HVC was moved back
    /// to it when it trapped).
    Call,
    /// A trapped read of the physical counter into X`reg` (31 = XZR), then step.
    Counter { reg: usize },
    /// A load: write the value to X`reg` (31 = XZR), extended as the syndrome says, and step.
    Load {
        reg: usize,
        size: u8,
        signed: bool,
        wide: bool,
    },
}

pub struct El2Vcpu {
    /// The vCPU's ledger slot: the world switch keeps the guest's registers there, and the
    /// virtual GIC and physical-timer models live there, so a recovery finds them.
    slot: &'static mut VcpuState,
    /// The board's GIC: its PPIs, and the windows the partition sees it at.
    gic: &'static Gic,
    /// The partition's index in the configuration, and this vCPU's in the partition.
    partition: usize,
    index: u64,
    vcpus: u64,
    lrs: usize,
    pending: Pending,
    deadline_ns: Option<u64>,
    /// Whether the vCPU is a copy of a fault-tolerant partition: its time comes from the log,
    /// so its physical counter traps and its virtual timer never interrupts it (the timer's
    /// interrupt would come at a different point in each copy).
    replicated: bool,
    /// Whether the virtual timer's interrupt may be pending or active for the guest (forwarded,
    /// and not yet seen withdrawn or finished).
    vtimer_forwarded: bool,
    /// Whether the vCPU has SVE ([`sve_offered`]).
    sve: bool,
    /// The PMU's overflow interrupt when the vCPU uses the PMU itself ([`pmu::granted`]); `None`
    /// when the PMU is trapped and hidden.
    pmu: Option<u32>,
    /// Whether the PMU's overflow interrupt may be pending or active for the guest (forwarded,
    /// and not yet seen withdrawn or finished), as [`El2Vcpu::vtimer_forwarded`] for the timer.
    pmu_forwarded: bool,
    /// Whether the log already says SVE and SME are not offered to this vCPU (said once: the
    /// core's notice of each trapped instruction is rate-limited, this one names the feature).
    sve_reported: bool,
    /// The partition's written pages, while re-protection tracks them.
    dirty: DirtyPages<Stage2>,
    /// The stage-2 abort the last exit reported, for the external abort the core may answer it
    /// with.
    abort: Abort,
}

/// A guest access that took a stage-2 abort: an instruction fetch or a data access (a write or
/// not), at virtual address `far` (FAR_EL2).
#[derive(Debug, Clone, Copy, Default)]
struct Abort {
    fetch: bool,
    write: bool,
    far: u64,
}

/// ESR_ELx.ISS fault status of a synchronous external abort, not on a translation table walk
/// (Arm ARM D19.2.42, DFSC and IFSC = 0b010000).
const FSC_EXTERNAL_ABORT: u64 = 0b01_0000;
/// ESR_ELx.ISS.WnR of a data abort: the access was a write.
const ISS_WNR: u64 = 1 << 6;

fn sign_extend(v: u64, size: u8) -> u64 {
    let shift = 64 - 8 * u32::from(size);
    (((v << shift) as i64) >> shift) as u64
}

fn zero_extend(v: u64, size: u8) -> u64 {
    v & (u64::MAX >> (64 - 8 * u32::from(size)))
}

/// Whether a vCPU is given SVE: where the CPU has it (ID_AA64PFR0_EL1.SVE), and not to a copy of
/// a fault-tolerant partition, whose re-protection snapshot carries FP/SIMD but no SVE state.
pub fn sve_offered(replicated: bool) -> bool {
    !replicated && ID_AA64PFR0_EL1.read(ID_AA64PFR0_EL1::SVE) != 0
}

/// Configures EL2 on this CPU to run a vCPU of the partition whose stage-2 root is `root`;
/// `replicated` for a copy of a fault-tolerant partition (see [`El2Vcpu::new`]), `pmu` if the
/// vCPU uses the PMU itself ([`pmu::granted`]).
///
/// # Safety
/// `root` is a stage-2 table built by [`stage2::build`] for the partition this CPU runs, and no
/// guest runs on this CPU yet.
pub unsafe fn configure(root: u64, vmid: u16, index: u64, replicated: bool, pmu: bool) {
    VTCR_EL2.set(stage2::VTCR);
    VTTBR_EL2.write(VTTBR_EL2::BADDR.val(root >> 1) + VTTBR_EL2::VMID.val(vmid.into()));
    HCR_EL2.set(HCR);
    if sve_offered(replicated) {
        CPTR_EL2.set(CPTR_SVE);
        // ZCR_EL2 is reachable once CPTR_EL2.TZ is clear.
        isb();
        // SAFETY: ZCR_EL2 (s3_4_c1_c2_0; named by encoding, the assembler knows it only with
        // SVE enabled) only bounds the vector length of this CPU's guest.
        unsafe { write_sysreg!("s3_4_c1_c2_0", ZCR_LEN_MAX) };
    } else {
        CPTR_EL2.set(CPTR_NO_SVE);
    }
    MDCR_EL2.set(if pmu {
        MDCR_DEBUG | pmu::mdcr_controls()
    } else {
        MDCR
    });
    CNTHCTL_EL2.set(if replicated {
        CNTHCTL_REPLICATED
    } else {
        CNTHCTL
    });
    CNTHP_CTL_EL2.set(0);
    VMPIDR_EL2.write(VMPIDR_EL2::RES1::SET + VMPIDR_EL2::Aff0.val(index));
    // SAFETY: the guest reads the real CPU's MIDR_EL1 through VPIDR_EL2, which aarch64-cpu
    // lacks; it only governs this CPU's guest.
    unsafe { write_sysreg!("vpidr_el2", MIDR_EL1.get()) };
    isb();
    // SAFETY: drops stale stage-1 and stage-2 entries of this VMID, now current in VTTBR_EL2.
    unsafe { core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

impl El2Vcpu {
    /// vCPU `index` of `vcpus`, with its state in its ledger slot `slot` (as a cold boot zeroed
    /// it, or as a recovery captured it: nothing here resets it);
    /// `replicated` for a copy of a fault-tolerant partition, whose virtual timer's interrupt is
    /// then kept from this CPU; `pmu`, the PMU's overflow interrupt if the vCPU uses the PMU,
    /// which then reaches this CPU (and only then).
    /// `dirty` tracks the partition's writes when asked to (re-protection).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        slot: &'static mut VcpuState,
        partition: usize,
        index: u64,
        vcpus: u64,
        replicated: bool,
        pmu: Option<u32>,
        dirty: DirtyPages<Stage2>,
    ) -> Result<Self, GicError> {
        let gic = gic::facts();
        if replicated {
            gic::disable_ppi(gic.virtual_timer_intid)?;
        }
        match (pmu, gic.pmu_intid) {
            (Some(intid), _) => gic::enable_ppi(intid)?,
            (None, Some(intid)) => gic::disable_ppi(intid)?,
            (None, None) => {}
        }
        Ok(Self {
            slot,
            gic,
            partition,
            index,
            vcpus,
            lrs: lr::count(),
            pending: Pending::Step,
            deadline_ns: None,
            replicated,
            vtimer_forwarded: false,
            sve: sve_offered(replicated),
            pmu,
            pmu_forwarded: false,
            sve_reported: false,
            dirty,
            abort: Abort::default(),
        })
    }

    /// Puts the vCPU in its power-on state: PC = `entry`, X0 = `x0`, EL1 with the MMU off, no
    /// pending interrupts, a clean PMU if it uses the PMU, and the partition's virtual time
    /// (starting now for its first vCPU).
    pub fn reset(&mut self, entry: u64, x0: u64) {
        self.slot.regs = GuestRegs::zeroed();
        self.slot.regs.x[0] = x0;
        self.slot.regs.pc = entry;
        self.slot.regs.pstate = PSTATE_EL1H;
        self.slot.exit_pstate = PSTATE_EL1H;
        self.slot.ptimer = PhysicalTimer::new();
        if self.pmu.is_some() {
            // First, so the overflow interrupt's line is down before its forwarded copy is
            // deactivated below: it cannot fire again from what counted before.
            pmu::reset();
        }
        vgic::clear_list_registers(self.lrs, gic::deactivate);
        for intid in self.slot.vgic.interrupts.take_hardware_pending() {
            gic::deactivate(intid);
        }
        let distributor = self.gic.distributor.raw();
        let windows = match self.gic.cpu {
            GicCpu::V3 {
                redistributors,
                redistributor_stride,
            } => GicWindows::v3(distributor, redistributors.raw(), redistributor_stride),
            GicCpu::V2 { .. } => GicWindows::v2(distributor),
        };
        self.slot.vgic = VirtualGic::new(windows, self.index, self.vcpus);
        self.deadline_ns = None;
        self.vtimer_forwarded = false;
        self.pmu_forwarded = false;
        // EL1 state of the guest this CPU runs; it restarts with none of it.
        SCTLR_EL1.set(SCTLR_EL1_RESET);
        CNTV_CTL_EL0.set(0);
        CNTVOFF_EL2.set(if self.index == 0 {
            virtual_time::start(self.partition)
        } else {
            virtual_time::offset(self.partition)
        });
        lr::set_vmcr(0);
        // SAFETY: drops the guest's old translations and instructions before it restarts.
        unsafe {
            core::arch::asm!(
                "tlbi vmalls12e1",
                "ic iallu",
                "dsb nsh",
                "isb",
                options(nostack)
            );
        }
    }

    /// Copies the paused vCPU's state into `into`: registers, interrupt model, and what the CPU
    /// holds ([`El1State`]).
    pub fn snapshot(&self, into: &mut VcpuState) {
        into.regs = self.slot.regs;
        into.vgic = self.slot.vgic;
        into.el1.capture();
    }

    /// Gives the vCPU, which has not run yet, the state [`El2Vcpu::snapshot`] took on another CPU.
    pub fn restore(&mut self, from: &VcpuState) {
        self.slot.regs = from.regs;
        self.slot.vgic = from.vgic;
        self.deadline_ns = None;
        // The snapshot's list registers may hold it, unless it is never forwarded.
        self.vtimer_forwarded = !self.replicated;
        // Only fault-tolerant copies are restored, and they never have the PMU.
        self.pmu_forwarded = false;
        self.pending = Pending::Step;
        from.el1.restore();
    }

    /// Goes on from the state a recovery captured into this vCPU's own ledger slot
    /// (`recovery::capture_vcpu`), on the same CPU: the registers, the virtual GIC's and physical
    /// timer's models are in the slot already; the EL1 system registers, the virtual timer and
    /// the virtual CPU interface are written back (FP/SIMD and SVE never left the CPU). The
    /// forwarded interrupts are then reconciled with the physical GIC (recovery.md 6.5): one
    /// active there that no list register and no pending copy in the model holds was taken
    /// when the CPU stopped and would never be deactivated by the guest, so it is deactivated
    /// here (a level still asserted fires again); one the guest still holds stays active for its
    /// virtual EOI.
    pub fn resume(&mut self) {
        self.slot.el1.restore_system();
        self.deadline_ns = None;
        self.pending = Pending::Step;
        // Either may be forwarded: the next entry withdraws what is no longer asserted.
        self.vtimer_forwarded = !self.replicated;
        self.pmu_forwarded = self.pmu.is_some();
        let forwarded = [
            (!self.replicated).then_some(self.gic.virtual_timer_intid),
            self.pmu,
        ];
        for intid in forwarded.into_iter().flatten() {
            let held = vgic::in_list_registers(self.lrs, intid)
                || self.slot.vgic.interrupts.pending_word(0) & (1 << intid) != 0;
            if !held && gic::private_active(intid) {
                gic::deactivate_private(intid);
            }
        }
    }

    /// The partition's dirty-page tracking (re-protection).
    pub fn dirty(&mut self) -> &mut DirtyPages<Stage2> {
        &mut self.dirty
    }

    /// Pages the guest wrote since they were last taken.
    pub fn dirty_count(&self) -> u64 {
        self.dirty.count()
    }

    /// Arms the EL2 physical timer for the core's deadline, and at most [`SLICE_NS`] ahead.
    ///
    /// The bound exists for emulators: QEMU with `-icount` runs all CPUs in one thread and
    /// switches between them at timer deadlines, so a CPU running a guest that never exits would
    /// otherwise starve the others (a partition whose timer fired would wait up to 100 ms of
    /// virtual time). On hardware it costs one asynchronous exit per slice.
    fn arm_hyp_timer(&self) {
        let slice_end = time::now_ns() + SLICE_NS;
        // The guest's physical timer interrupts it when it fires, as the hardware's would.
        let deadline = [self.deadline_ns, self.ptimer_deadline()]
            .into_iter()
            .flatten()
            .fold(slice_end, u64::min);
        // SAFETY: the EL2 physical timer belongs to the hypervisor; it only raises its own PPI.
        unsafe { write_sysreg!("cnthp_cval_el2", time::counter_at(deadline)) };
        CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET);
    }

    /// Takes every pending physical interrupt; the virtual timer's, and the PMU's for a vCPU that
    /// uses the PMU, are forwarded to the guest.
    fn interrupts(&mut self) -> Exit {
        let mut exit = Exit::ExternalInterrupt { vector: SPURIOUS };
        loop {
            let intid = gic::acknowledge();
            if intid >= SPURIOUS {
                return exit;
            }
            gic::end_of_interrupt(intid);
            if intid == self.gic.virtual_timer_intid {
                // Stays active until the guest deactivates its virtual copy (hardware LR), or
                // the timer's line drops first ([`El2Vcpu::withdraw_idle_vtimer`]).
                self.slot.vgic.interrupts.raise(intid, true);
                self.vtimer_forwarded = true;
            } else if Some(intid) == self.pmu {
                // The same for the PMU's overflow interrupt, a level too
                // ([`El2Vcpu::withdraw_idle_pmu`]).
                self.slot.vgic.interrupts.raise(intid, true);
                self.pmu_forwarded = true;
            } else if intid == self.gic.hyp_timer_intid {
                // Re-armed before the next entry.
                CNTHP_CTL_EL2.set(0);
                gic::deactivate(intid);
                exit = Exit::TimerExpired;
                continue;
            } else if intid == self.gic.maintenance_intid {
                // Underflow: the next flush refills the list registers.
                vgic::quiesce_underflow();
                gic::deactivate(intid);
            } else {
                gic::deactivate(intid);
            }
            if exit != Exit::TimerExpired {
                exit = Exit::ExternalInterrupt { vector: intid };
            }
        }
    }

    fn fault_address() -> u64 {
        HPFAR_EL2.read(HPFAR_EL2::FIPA) << 12 | (FAR_EL2.get() & 0xfff)
    }

    /// Decodes a synchronous exception from the guest; `None` if it was handled here (an ID
    /// register read) and the guest can go on.
    fn synchronous(&mut self) -> Option<Exit> {
        let esr = ESR_EL2.extract();
        // The call arguments (X0-X4), copied before the handlers below write registers.
        let x: [u64; 5] = core::array::from_fn(|i| self.slot.regs.x[i]);
        self.pending = Pending::Step;
        Some(match esr.read_as_enum(ESR_EL2::EC) {
            // HVC and SMC are UNDEFINED at EL0 and never trap from there (Arm ARM C6.2, HVC and
            // SMC; HCR_EL2.TSC traps EL1's SMC only); should one arrive, the guest kernel did
            // not make it, so it is refused as the architecture would.
            Some(ESR_EL2::EC::Value::HVC64 | ESR_EL2::EC::Value::SMC64)
                if self.slot.regs.pstate & PSTATE_EL_MASK == 0 =>
            {
                Self::refuse_from_el0(esr.get())
            }
            Some(ESR_EL2::EC::Value::HVC64) => {
                self.pending = Pending::Call;
                if psci::is_psci(x[0]) {
                    Exit::Power(psci::decode(x[0] as u32, [x[1], x[2], x[3]]))
                } else {
                    Exit::Hypercall {
                        nr: x[0],
                        args: [x[1], x[2], x[3], x[4]],
                    }
                }
            }
            Some(ESR_EL2::EC::Value::SMC64) => {
                self.pending = Pending::Call;
                Exit::Power(psci::decode(
                    if psci::is_psci(x[0]) {
                        x[0] as u32
                    } else {
                        u32::MAX
                    },
                    [x[1], x[2], x[3]],
                ))
            }
            Some(ESR_EL2::EC::Value::TrappedWFIorWFE) => Exit::Halt,
            Some(ESR_EL2::EC::Value::TrappedMsrMrs) => {
                if let Some(reg) = counter::decode(esr.read(ESR_EL2::ISS)) {
                    self.pending = Pending::Counter { reg };
                    return Some(Exit::CounterRead);
                }
                if let Some(rt) = sgi::decode(esr.read(ESR_EL2::ISS)) {
                    let value = if rt == 31 { 0 } else { self.slot.regs.x[rt] };
                    return Some(Exit::SendSgi(SgiRequest::from_sgi1r(
                        value, self.index, self.vcpus,
                    )));
                }
                if let Some(access) = debugregs::decode(esr.read(ESR_EL2::ISS)) {
                    if let Some(rt) = access.into {
                        self.slot.regs.x[rt] = access.value;
                    }
                    self.step();
                    return None;
                }
                if let Some(access) = physical_timer::decode(esr.read(ESR_EL2::ISS))
                    && !self.replicated
                {
                    self.physical_timer(access);
                    return None;
                }
                if let Some(read) = idregs::decode(esr.read(ESR_EL2::ISS)) {
                    if read.rt != 31 {
                        let offered = Offered {
                            sve: self.sve,
                            pmu: self.pmu.is_some(),
                        };
                        self.slot.regs.x[read.rt] = idregs::guest_value(read, offered);
                    }
                    self.step();
                    return None;
                }
                Exit::Forbidden {
                    code: esr.read(ESR_EL2::EC) as u32,
                }
            }
            Some(ESR_EL2::EC::Value::TrappedSve | ESR_EL2::EC::Value::TrappedSME) => {
                self.refuse_sve(esr.read(ESR_EL2::EC) as u32)
            }
            Some(ESR_EL2::EC::Value::InstrAbortLowerEL) => {
                self.abort = Abort {
                    fetch: true,
                    write: false,
                    far: FAR_EL2.get(),
                };
                Exit::PageFault {
                    gpa: GuestPhysAddr::new(Self::fault_address()),
                    access: Access::Execute,
                }
            }
            Some(ESR_EL2::EC::Value::DataAbortLowerEL) => {
                let iss = LocalRegisterCopy::<u64, DABT_ISS::Register>::new(esr.read(ESR_EL2::ISS));
                match iss.read(DABT_ISS::DFSC) >> 2 {
                    0b0001 => self.data_abort(iss),
                    // Only dirty tracking takes write permission away from guest memory.
                    0b0011 if self.dirty.active() => {
                        match dirty::fault_ipa(iss.is_set(DABT_ISS::S1PTW)) {
                            Some(ipa) if self.dirty.record_write(ipa) => return None,
                            Some(_) => Self::unhandled(esr.get()),
                            None => return None,
                        }
                    }
                    _ => Self::unhandled(esr.get()),
                }
            }
            _ => Self::unhandled(esr.get()),
        })
    }

    /// An HVC or SMC from EL0: an undefined-instruction fault at the instruction itself (the
    /// world switch moved an HVC's PC back to it, `entry`), with the core's notice.
    fn refuse_from_el0(esr: u64) -> Exit {
        Exit::Forbidden {
            code: ESR_EL2::EC.read(esr) as u32,
        }
    }

    /// An SVE or SME instruction where it is not offered (CPTR_EL2.TZ, TSM): an
    /// undefined-instruction fault; the first one on this vCPU is reported by name.
    fn refuse_sve(&mut self, code: u32) -> Exit {
        if !self.sve_reported {
            self.sve_reported = true;
            defmt::warn!(
                "vCPU {=u64}: SVE/SME instruction at PC {=u64:#x} (ESR_EL2.EC {=u32:#x}): SME is not offered to partitions, nor SVE to fault-tolerant ones (CPTR_EL2.TSM, TZ); the guest takes an undefined-instruction fault",
                self.index,
                self.slot.regs.pc,
                code
            );
        }
        Exit::Forbidden { code }
    }

    fn unhandled(esr: u64) -> Exit {
        Exit::Unhandled {
            code: ESR_EL2::EC.read(esr) as u32,
            qualification: esr,
        }
    }

    /// A stage-2 translation fault: an access outside the partition's memory, which the core
    /// offers to its devices (the PL011, the emulated GIC).
    fn data_abort(&mut self, iss: LocalRegisterCopy<u64, DABT_ISS::Register>) -> Exit {
        let gpa = GuestPhysAddr::new(Self::fault_address());
        self.abort = Abort {
            fetch: false,
            write: iss.is_set(DABT_ISS::WNR),
            far: FAR_EL2.get(),
        };
        if self.slot.vgic.decode(gpa.raw()).is_some() {
            // The core emulates GICR_ISACTIVER0 from what the list registers hold.
            self.slot.vgic.set_active(vgic::active_private(self.lrs));
        }
        if !iss.is_set(DABT_ISS::ISV) {
            return Exit::UndecodedAccess { gpa };
        }
        let size = 1u8 << iss.read(DABT_ISS::SAS);
        let reg = iss.read(DABT_ISS::SRT) as usize;
        if iss.is_set(DABT_ISS::WNR) {
            let value = if reg == 31 { 0 } else { self.slot.regs.x[reg] };
            Exit::MmioWrite {
                gpa,
                size,
                value: zero_extend(value, size),
            }
        } else {
            self.pending = Pending::Load {
                reg,
                size,
                signed: iss.is_set(DABT_ISS::SSE),
                wide: iss.is_set(DABT_ISS::SF),
            };
            Exit::MmioRead { gpa, size }
        }
    }

    fn step(&mut self) {
        self.slot.regs.pc += 4;
    }

    /// Delivers an undefined-instruction exception to the guest's EL1 (Arm ARM D1.10.2): ESR_EL1
    /// = EC 0 with IL, the vector by the EL the guest was at.
    fn inject_undefined(&mut self) {
        self.take_exception(ESR_EL1::EC::Unknown.value);
    }

    /// A synchronous external abort on the access the last exit reported (a data or an
    /// instruction abort, from EL0 or EL1), with FAR_EL1 the faulting virtual address (FnV 0).
    /// The core asks for it when nothing backs the address, as a bus answering with an error
    /// would.
    fn inject_external_abort(&mut self) {
        let Abort { fetch, write, far } = self.abort;
        let from_el0 = self.guest_el0();
        let ec = match (fetch, from_el0) {
            (true, true) => ESR_EL1::EC::InstrAbortLowerEL,
            (true, false) => ESR_EL1::EC::InstrAbortCurrentEL,
            (false, true) => ESR_EL1::EC::DataAbortLowerEL,
            (false, false) => ESR_EL1::EC::DataAbortCurrentEL,
        };
        let wnr = if write { ISS_WNR } else { 0 };
        FAR_EL1.set(far);
        self.take_exception(ec.value | FSC_EXTERNAL_ABORT | wnr);
    }

    /// Whether the guest was at EL0 (SPSR_EL2.M says where the exit came from).
    fn guest_el0(&self) -> bool {
        let from = LocalRegisterCopy::<u64, SPSR_EL2::Register>::new(self.slot.regs.pstate);
        !matches!(
            from.read_as_enum(SPSR_EL2::M),
            Some(SPSR_EL2::M::Value::EL1h | SPSR_EL2::M::Value::EL1t)
        )
    }

    /// Makes the guest take a synchronous exception with syndrome `esr` (EC and ISS; IL is set:
    /// every trapped instruction is 32-bit) at its EL1: its own exception registers set as the
    /// architecture would (Arm ARM D1.10.2), resuming at the vector for where it came from.
    fn take_exception(&mut self, esr: u64) {
        let from = LocalRegisterCopy::<u64, SPSR_EL2::Register>::new(self.slot.regs.pstate);
        let offset = match from.read_as_enum(SPSR_EL2::M) {
            Some(SPSR_EL2::M::Value::EL1h) => 0x200,
            Some(SPSR_EL2::M::Value::EL1t) => 0x000,
            _ => 0x400,
        };
        ESR_EL1.set(esr | ESR_EL1::IL::SET.value);
        ELR_EL1.set(self.slot.regs.pc);
        SPSR_EL1.set(self.slot.regs.pstate);
        self.slot.regs.pc = VBAR_EL1.get() + offset;
        self.slot.regs.pstate = PSTATE_EL1H;
    }

    /// The virtual timer's interrupt is a level that follows the timer condition (Arm ARM
    /// D11.2.4): once the guest disabled or masked its timer, or moved the compare value ahead,
    /// a forwarded copy it has not acknowledged goes away, as it would on a GIC whose line
    /// dropped. Checked before each entry, so it takes effect at the guest's next exit.
    fn withdraw_idle_vtimer(&mut self) {
        if !self.vtimer_forwarded || Self::vtimer_firing() {
            return;
        }
        let intid = self.gic.virtual_timer_intid;
        self.vtimer_forwarded =
            vgic::withdraw(&mut self.slot.vgic, self.lrs, intid, gic::deactivate);
    }

    /// Emulates a trapped access to the guest's physical timer and steps over it.
    fn physical_timer(&mut self, access: TimerAccess) {
        let now = time::counter();
        if access.read {
            if access.rt != 31 {
                self.slot.regs.x[access.rt] = self.slot.ptimer.read(access.register, now);
            }
        } else {
            let value = if access.rt == 31 {
                0
            } else {
                self.slot.regs.x[access.rt]
            };
            self.slot.ptimer.write(access.register, value, now);
        }
        self.step();
    }

    /// The physical timer's interrupt follows its level (Arm ARM D11.2.4): pending in the vGIC
    /// while the timer condition holds unmasked, withdrawn from it once it does not.
    fn follow_ptimer(&mut self) {
        let intid = self.gic.physical_timer_intid;
        if self.slot.ptimer.asserted(time::counter()) {
            self.raise_level(intid);
        } else {
            self.slot.vgic.interrupts.clear_pending(intid);
        }
    }

    /// Makes `intid` pending unless a list register already holds it pending.
    fn raise_level(&mut self, intid: u32) {
        if !vgic::pending_in_lr(self.lrs, intid) {
            self.slot.vgic.interrupts.raise(intid, false);
        }
    }

    /// When the physical timer's interrupt will assert (ns after boot), if it is armed and has
    /// not yet: one that already has is pending in the vGIC, and a deadline in the past would
    /// end every entry at once.
    fn ptimer_deadline(&self) -> Option<u64> {
        self.slot
            .ptimer
            .deadline()
            .filter(|&cval| cval > time::counter())
            .map(time::ns_at)
    }

    /// The PMU's overflow interrupt is a level too ([`pmu::overflow_asserted`]): once the guest
    /// has cleared the overflow flags or their interrupt enables, a forwarded copy it has not
    /// acknowledged goes away, as the timer's does.
    fn withdraw_idle_pmu(&mut self) {
        let Some(intid) = self.pmu else { return };
        if !self.pmu_forwarded || pmu::overflow_asserted() {
            return;
        }
        self.pmu_forwarded = vgic::withdraw(&mut self.slot.vgic, self.lrs, intid, gic::deactivate);
    }

    fn vtimer_firing() -> bool {
        CNTV_CTL_EL0.matches_all(
            CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR + CNTV_CTL_EL0::ISTATUS::SET,
        )
    }
}

impl Vcpu for El2Vcpu {
    const GPRS: usize = 31;

    fn run(&mut self) -> Result<Exit, EntryError> {
        self.withdraw_idle_vtimer();
        self.follow_ptimer();
        self.withdraw_idle_pmu();
        vgic::flush(&mut self.slot.vgic, self.lrs, gic::deactivate);
        self.arm_hyp_timer();
        loop {
            crate::step::pause();
            // SAFETY: EL2 was configured for this vCPU (`configure`), and `regs` lives in the
            // ledger for the whole run; its PSTATE names EL1h or a state the guest reached itself.
            let kind = unsafe { entry::guest_enter(&mut self.slot.regs) };
            self.slot.exit_pstate = self.slot.regs.pstate;
            return Ok(match kind {
                entry::KIND_IRQ => self.interrupts(),
                // A watchdog tick or a stale stop request, handled as the world switch let
                // FIQs in again.
                entry::KIND_FIQ => continue,
                entry::KIND_SYNC => match self.synchronous() {
                    Some(exit) => exit,
                    None => continue,
                },
                _ => Exit::Unhandled {
                    code: 0x100 | kind as u32,
                    qualification: ESR_EL2.get(),
                },
            });
        }
    }

    // Inlined into each exit loop for the reason given at `run`.
    #[inline(always)]
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
                    // A load of `size` bytes, sign- or zero-extended to the register (W or X).
                    let v = if signed {
                        sign_extend(v, size)
                    } else {
                        zero_extend(v, size)
                    };
                    let v = if wide { v } else { v & 0xffff_ffff };
                    if reg != 31 {
                        self.slot.regs.x[reg] = v;
                    }
                }
                Pending::Call => self.slot.regs.x[0] = v,
                Pending::Step | Pending::Counter { .. } => {}
            },
            Completion::Counter { ns } => {
                if let Pending::Counter { reg } = self.pending
                    && reg != 31
                {
                    self.slot.regs.x[reg] = time::ticks_in(ns);
                }
            }
            Completion::Hypercall { status, value } => {
                self.slot.regs.x[0] = status as u64;
                self.slot.regs.x[1] = value;
            }
            Completion::Fault(GuestFault::GeneralProtection | GuestFault::InvalidOpcode) => {
                self.inject_undefined();
                return;
            }
            Completion::Fault(GuestFault::ExternalAbort) => {
                self.inject_external_abort();
                return;
            }
        }
        self.step();
    }

    fn raise_interrupt(&mut self, vector: u8) {
        self.raise_level(vector.into());
    }

    fn lower_interrupt(&mut self, vector: u8) {
        self.slot.vgic.interrupts.clear_pending(vector.into());
    }

    fn interrupt_pending(&self) -> bool {
        // An overflow the hypervisor has not taken yet: its physical interrupt is pending here.
        let overflow = self.pmu.is_some() && !self.pmu_forwarded && pmu::overflow_asserted();
        vgic::pending(&self.slot.vgic, self.lrs)
            || (!self.replicated
                && (Self::vtimer_firing() || self.slot.ptimer.asserted(time::counter())))
            || overflow
    }

    fn accepts_interrupts(&self) -> bool {
        vgic::guest_enabled()
    }

    fn set_timer_deadline(&mut self, deadline_ns: Option<u64>) {
        self.deadline_ns = deadline_ns;
    }

    fn pc(&self) -> u64 {
        self.slot.regs.pc
    }

    fn set_pc(&mut self, pc: u64) {
        self.slot.regs.pc = pc;
    }

    fn gpr(&self, index: usize) -> Option<u64> {
        self.slot.regs.x.get(index).copied()
    }

    fn set_gpr(&mut self, index: usize, value: u64) -> Result<(), NoSuchRegister> {
        let reg = self
            .slot
            .regs
            .x
            .get_mut(index)
            .ok_or(NoSuchRegister { index })?;
        *reg = value;
        Ok(())
    }

    fn wake_deadline(&self) -> Option<u64> {
        if self.replicated {
            return None;
        }
        let ctl = CNTV_CTL_EL0.extract();
        let virtual_timer = ctl
            .matches_all(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR)
            .then(|| time::ns_at(CNTV_CVAL_EL0.get().saturating_add(CNTVOFF_EL2.get())));
        [virtual_timer, self.ptimer_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn virtual_gic(&mut self) -> Option<&mut VirtualGic> {
        Some(&mut self.slot.vgic)
    }
}
