//! One vCPU on VT-x: its VMCS, the guest entry state, interrupt and fault injection, and how
//! exits are completed.

use heapless::Vec;
use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::{MAX_REGIONS, MemoryRegion, Partition};
use tandem_core::exit::{Access, Exit, ShutdownCause};
use tandem_core::journal::MAX_GPRS;
use tandem_core::vcpu::{Completion, EntryError, GuestFault, NoSuchRegister, Vcpu};
use tandem_x86_insn::{self as insn, DecodeError, Operand, Reg};

use x86_64::registers::control::{Cr0, Cr0Flags, Cr3, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};
use x86_64::registers::rflags::RFlags;

use super::caps::{Caps, Execution};
use super::entry;
use super::ept::Ept;
use super::exits::{self, ExceptionExit};
use super::fields::{ProcControls, ProcControls2, VmcsField, ctrl, guest, host, ro};
use super::guest_paging::{CodeSegment, FetchStop, GuestMemory};
use super::reasons::{ExitReason, VmInstructionError};
use super::regs::GuestRegs;
use super::snapshot::{CpuState, Unfit};
use super::vmcs::{self, VmFail};
use crate::io::rdtsc;
use crate::{apic, cpu, time};
use tandem_hw::dirty::DirtyPages;
use tandem_hw::frames::OutOfFrames;

/// Interruptibility state: blocking by STI (bit 0) and by MOV SS (bit 1).
const BLOCKING_STI_MOVSS: u64 = 0b11;
/// Interruptibility state: blocking by NMI (bit 3; SDM Vol. 3C, 25.4.2, table 25-3).
const BLOCKING_NMI: u64 = 1 << 3;
const EVENT_VALID: u64 = 1 << 31;
const EVENT_HAS_ERROR: u64 = 1 << 11;
const TYPE_HARDWARE_EXCEPTION: u64 = 3 << 8;
/// IDT-vectoring information bit 12 ("NMI unblocking due to IRET") is not part of an injection.
const VECTORING_UNDEFINED_BITS: u64 = 1 << 12;
/// Exit-reason bit 31: the exit is a failed VM entry (SDM Vol. 3C, 28.2.1).
const ENTRY_FAILURE: u64 = 1 << 31;
/// Guest boot page tables (see `tandem_core::config::validate::X86_BOOT_TABLES`).
const GUEST_CR3: u64 = 0x1000;
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
const IA32_PAT: u32 = 0x277;
const IA32_TSC_AUX: u32 = 0xc000_0103;
/// RFLAGS bit 1 is reserved and always 1 (SDM Vol. 1, 3.4.3).
const RFLAGS_RESERVED_ONE: u64 = 1 << 1;
/// The virtual-APIC page's TPR register (SDM Vol. 3C, 30.1.1): what MOV CR8 reads and writes.
const VTPR_OFFSET: u64 = 0x80;
/// CR4 bits the guest may not set: VMXE (VMX is hidden) and OSXSAVE (XSAVE is hidden, so
/// XSETBV is refused). Owned by the hypervisor and read as 0 (SDM Vol. 3C, 26.6.6); setting
/// one exits and gets #GP as on a CPU without the feature.
const CR4_HIDDEN: u64 = Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS
    .union(Cr4Flags::OSXSAVE)
    .bits();
/// Control-register-access exit qualification (SDM Vol. 3C, Table 28-3): CR number, access type.
const CR_QUAL_NUMBER: u64 = 0xf;
const CR_QUAL_TYPE_SHIFT: u32 = 4;
const CR_QUAL_TYPE_MASK: u64 = 0b11;
const CR_ACCESS_MOV_TO: u64 = 0;
/// DR6 bits that read as 1 when no debug condition is reported, and B0-B3, which each debug
/// exception replaces (SDM Vol. 3A, 18.2.3).
const DR6_ACTIVE_LOW: u64 = 0xffff_0ff0;
const DR6_BREAKPOINTS: u64 = 0xf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum SetupError {
    OutOfFrames,
    Vmclear(VmFail),
    Vmptrld(VmFail),
    Vmwrite { field: VmcsField, fail: VmFail },
}

impl From<OutOfFrames> for SetupError {
    fn from(_: OutOfFrames) -> Self {
        SetupError::OutOfFrames
    }
}

/// Per-partition structures every vCPU of the partition points at.
#[derive(Debug, Clone, Copy)]
pub struct PartitionTables {
    pub eptp: u64,
    pub io_bitmap_a: u64,
    pub io_bitmap_b: u64,
    pub msr_bitmap: u64,
}

impl PartitionTables {
    pub fn build(partition: &Partition) -> Result<Self, OutOfFrames> {
        let (io_bitmap_a, io_bitmap_b) = super::bitmaps::io(&partition.ports)?;
        Ok(Self {
            eptp: super::ept::build(&partition.memory)?,
            io_bitmap_a,
            io_bitmap_b,
            msr_bitmap: super::bitmaps::msr(partition.ft.is_some())?,
        })
    }
}

/// What the last exit needs from its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    /// IN: AL/AX merge, EAX zero-extends into RAX.
    PortRead {
        size: u8,
    },
    /// RDMSR: EDX:EAX.
    MsrRead,
    /// A counter read (RDTSC, RDTSCP, RDMSR of IA32_TSC): the TSC value in EDX:EAX, and for
    /// RDTSCP (`aux`) IA32_TSC_AUX in ECX.
    Counter {
        aux: bool,
    },
    /// A decoded MMIO load: the value goes to `dst`, `dst_size` bytes wide.
    MmioLoad {
        dst: Reg,
        dst_size: u8,
    },
}

const RAX: Reg = Reg {
    index: 0,
    high_byte: false,
};
const RSP_INDEX: u8 = 4;

/// `value` truncated to `size` bytes.
fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

pub struct VmxVcpu {
    /// The vCPU's ledger slot: the world switch keeps the guest's registers there, and the
    /// pending events are written through at each entry and exit, so a recovery finds them.
    slot: &'static mut VcpuState,
    launched: bool,
    preemption_rate: u32,
    deadline_ns: Option<u64>,
    interrupt: Option<u8>,
    /// An event whose delivery an exit interrupted, to be re-injected (SDM Vol. 3C, 28.2.4).
    reinject: Option<(u64, u64, u64)>,
    /// An exception the last completion asked for, injected at the next entry.
    fault: Option<GuestFault>,
    /// The #DB or #AC the last entry handed back to the guest, if that was its only event.
    reflected: Option<u8>,
    /// Host address of this vCPU's virtual-APIC page (its TPR).
    virtual_apic: u64,
    proc2: ProcControls2,
    pending: Pending,
    exit_instruction_len: u64,
    window_exiting: bool,
    proc_controls: ProcControls,
    memory: Vec<MemoryRegion, MAX_REGIONS>,
    /// Which pages the guest writes, when asked (re-protection).
    dirty: DirtyPages<Ept>,
    /// A VMWRITE on the exit path failed: the next `run` reports it instead of entering.
    failed: Option<EntryError>,
}

/// A vCPU's ledger slot: its general registers, and what a re-protection snapshot adds.
/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct VcpuState {
    /// Where the world switch keeps the guest's general registers while it does not run.
    pub regs: GuestRegs,
    /// Only in a re-protection snapshot (`tandem_hw::reprotect`): the VMCS and what the CPU held.
    cpu: CpuState,
    /// The events the vCPU holds for its next entries, as [`Events`] encodes them.
    events: Events,
    /// The guest's task priority (CR8), from its virtual-APIC page.
    tpr: u64,
}

impl VcpuState {
    /// Captures the current VMCS's guest state and the TPR from its virtual-APIC page, for a
    /// recovery. The registers are in the slot already, and the events as of the last entry;
    /// an event whose delivery the last exit interrupted is still in the VMCS's IDT-vectoring
    /// fields (valid until the next entry, SDM Vol. 3C, 28.2.4), so it is taken from there
    /// rather than written through on every exit.
    pub(super) fn capture_for_recovery(&mut self) -> Result<(), VmFail> {
        self.cpu.capture()?;
        let info = vmcs::try_read(ro::IDT_VECTORING_INFO)?;
        if info & EVENT_VALID != 0 {
            self.events.reinject = [
                info & !VECTORING_UNDEFINED_BITS,
                vmcs::try_read(ro::IDT_VECTORING_ERROR)?,
                vmcs::try_read(ro::EXIT_INSTRUCTION_LEN)?,
            ];
        }
        let virtual_apic = vmcs::try_read(ctrl::VIRTUAL_APIC_PAGE)?;
        if virtual_apic != 0 {
            // SAFETY: the VMCS's virtual-APIC page is this vCPU's frame, identity-mapped.
            self.tpr =
                u64::from(unsafe { ((virtual_apic + VTPR_OFFSET) as *const u32).read_volatile() });
        }
        Ok(())
    }

    /// Rolls the general registers back to `gprs`, in [`Vcpu::gpr`]'s order (RSP, index 4,
    /// lives in the VMCS and no exit handler changes it).
    pub fn roll_back_gprs(&mut self, gprs: &[u64; MAX_GPRS]) {
        let r = &mut self.regs;
        [r.rax, r.rcx, r.rdx, r.rbx] = [gprs[0], gprs[1], gprs[2], gprs[3]];
        [r.rbp, r.rsi, r.rdi] = [gprs[5], gprs[6], gprs[7]];
        [r.r8, r.r9, r.r10, r.r11] = [gprs[8], gprs[9], gprs[10], gprs[11]];
        [r.r12, r.r13, r.r14, r.r15] = [gprs[12], gprs[13], gprs[14], gprs[15]];
    }

    /// Moves the captured guest RIP back to `rip` (an exit rolled back).
    pub fn set_captured_rip(&mut self, rip: u64) {
        self.cpu.set_rip(rip);
    }
}

/// A vCPU's pending events as plain data: each valid when its [`EVENT_VALID`] bit is set.
#[derive(Default)]
#[repr(C)]
struct Events {
    /// An interrupt waiting for the guest to take it: its vector.
    interrupt: u64,
    /// An interrupted event's delivery to retry: interruption information, error code,
    /// instruction length.
    reinject: [u64; 3],
    /// An exception a completion asked for: 13 (#GP) or 6 (#UD).
    fault: u64,
    /// The #DB or #AC the last entry handed back to the guest.
    reflected: u64,
}

fn encode(vector: Option<u8>) -> u64 {
    vector.map_or(0, |v| u64::from(v) | EVENT_VALID)
}

fn decode(word: u64) -> Option<u8> {
    (word & EVENT_VALID != 0).then_some(word as u8)
}

/// Why a snapshot could not be taken or given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum SnapshotError {
    /// A VMREAD or VMWRITE of the guest state failed.
    Vmcs(VmFail),
    /// The snapshot names an exception the vCPU cannot raise.
    Fault { vector: u64 },
    /// The snapshot holds a register value this CPU faults on loading.
    Unfit(Unfit),
}

/// VMWRITE while setting the VMCS up: a failure fails the setup.
fn w(field: VmcsField, value: u64) -> Result<(), SetupError> {
    vmcs::write(field, value).map_err(|fail| SetupError::Vmwrite { field, fail })
}

#[cold]
fn write_failed(field: VmcsField, fail: VmFail) -> EntryError {
    defmt::error!("VMWRITE to {} failed: {}", field, fail);
    EntryError::InstructionFailed {
        // VMfailInvalid (no current VMCS) has no error number; 0 is none of the SDM's.
        error: match fail {
            VmFail::Valid(error) => error.0,
            VmFail::Invalid => 0,
        },
    }
}

// Why an EPT violation was not emulated, logged out of line before the core's stop report.

#[cold]
fn log_page_walk(gpa: GuestPhysAddr, linear: u64) {
    defmt::warn!(
        "EPT violation in the guest's own page walk: a paging-structure entry for linear address {=u64:#x} is at GPA {=u64:#x}, outside the partition's memory",
        linear,
        gpa.raw()
    );
}

#[cold]
fn log_sixteen_bit(gpa: GuestPhysAddr, rip: u64) {
    defmt::warn!(
        "access to GPA {=u64:#x} from 16-bit code at IP {=u64:#x}: not decoded",
        gpa.raw(),
        rip
    );
}

#[cold]
fn log_fetch_failed(gpa: GuestPhysAddr, rip: u64, fetched: u8, stop: Option<FetchStop>) {
    // A short fetch always has a reason (fifteen bytes make TooLong, not Truncated).
    match stop {
        Some(stop) => defmt::warn!(
            "access to GPA {=u64:#x}: the instruction at RIP {=u64:#x} could not be fetched whole (only {=u8} bytes: {})",
            gpa.raw(),
            rip,
            fetched,
            stop
        ),
        None => defmt::warn!(
            "access to GPA {=u64:#x}: the instruction at RIP {=u64:#x} could not be fetched whole (only {=u8} bytes)",
            gpa.raw(),
            rip,
            fetched
        ),
    }
}

/// The VM-entry interruption information, error code and instruction length for `fault`.
fn fault_event(fault: GuestFault) -> (u64, u64, u64) {
    match fault {
        // ExternalAbort is never asked on x86 (the validator keeps its partitions' unbacked
        // accesses stopping them); a #GP is the nearest fault if it were.
        GuestFault::GeneralProtection | GuestFault::ExternalAbort => {
            let protected = Cr0Flags::from_bits_retain(vmcs::read(guest::CR0))
                .contains(Cr0Flags::PROTECTED_MODE_ENABLE);
            (gp_interruption_info(protected), 0, 0)
        }
        GuestFault::InvalidOpcode => (6 | TYPE_HARDWARE_EXCEPTION | EVENT_VALID, 0, 0),
    }
}

/// #GP(0) pushes an error code only in protected mode; in real mode (possible with "unrestricted
/// guest") it has none, and asking to deliver one fails the VM entry (SDM Vol. 3C, 27.2.1.3,
/// "Checks on VM-Entry Control Fields").
fn gp_interruption_info(protected: bool) -> u64 {
    let error = if protected { EVENT_HAS_ERROR } else { 0 };
    13 | TYPE_HARDWARE_EXCEPTION | error | EVENT_VALID
}

impl VmxVcpu {
    /// Creates the vCPU's VMCS on this CPU, makes it current and fills it so the guest starts in
    /// 64-bit mode at the partition's entry point.
    pub fn new(
        caps: &Caps,
        cpu: usize,
        partition: &'static Partition,
        tables: &PartitionTables,
        vpid: u16,
        slot: &'static mut VcpuState,
    ) -> Result<Self, SetupError> {
        let vmcs_frame = super::cpu_frame(cpu, super::CpuFrame::Vmcs)?;
        // SAFETY: a fresh frame, the revision identifier in its first word; it becomes this
        // CPU's current VMCS and is never loaded on another CPU.
        unsafe {
            (vmcs_frame as *mut u32).write(caps.revision);
            vmcs::vmclear(vmcs_frame).map_err(SetupError::Vmclear)?;
            vmcs::vmptrld(vmcs_frame).map_err(SetupError::Vmptrld)?;
        }
        let virtual_apic = super::cpu_frame(cpu, super::CpuFrame::VirtualApic)?;
        let execution = if partition.ft.is_some() {
            caps.replicated
        } else {
            Execution {
                proc: caps.proc,
                proc2: caps.proc2,
            }
        };
        let vcpu = Self {
            slot,
            launched: false,
            preemption_rate: caps.preemption_rate,
            deadline_ns: None,
            interrupt: None,
            reinject: None,
            fault: None,
            reflected: None,
            virtual_apic,
            proc2: execution.proc2,
            pending: Pending::Nothing,
            exit_instruction_len: 0,
            window_exiting: false,
            proc_controls: execution.proc,
            memory: partition.memory.clone(),
            dirty: DirtyPages::new(tables.eptp & super::ept::ROOT_MASK, &partition.memory),
            failed: None,
        };
        vcpu.set_tpr(0);
        write_controls(caps, execution, tables, vpid, virtual_apic)?;
        write_host_state(cpu)?;
        write_guest_state(partition.image.entry.raw())?;
        Ok(vcpu)
    }

    /// Back to the state of a vCPU that has not run: registers cleared, no event pending, 64-bit
    /// mode at `entry` (a partition restarting from its image).
    pub fn reset(&mut self, entry: u64) -> Result<(), SetupError> {
        self.slot.regs = GuestRegs::default();
        self.deadline_ns = None;
        self.interrupt = None;
        self.reinject = None;
        self.fault = None;
        self.reflected = None;
        self.set_tpr(0);
        self.pending = Pending::Nothing;
        self.set_window_exiting(false);
        self.sync_events();
        write_guest_state(entry)
    }

    /// The pending events as the ledger stores them.
    fn events(&self) -> Events {
        Events {
            interrupt: encode(self.interrupt),
            reinject: self
                .reinject
                .map_or([0; 3], |(info, error, len)| [info, error, len]),
            fault: match self.fault {
                None => 0,
                Some(GuestFault::GeneralProtection | GuestFault::ExternalAbort) => 13 | EVENT_VALID,
                Some(GuestFault::InvalidOpcode) => 6 | EVENT_VALID,
            },
            reflected: encode(self.reflected),
        }
    }

    /// Takes `events` as the vCPU's pending events.
    fn set_events(&mut self, events: &Events) -> Result<(), SnapshotError> {
        self.fault = match decode(events.fault) {
            None => None,
            Some(13) => Some(GuestFault::GeneralProtection),
            Some(6) => Some(GuestFault::InvalidOpcode),
            Some(v) => return Err(SnapshotError::Fault { vector: v.into() }),
        };
        self.interrupt = decode(events.interrupt);
        let [info, error, len] = events.reinject;
        self.reinject = (info & EVENT_VALID != 0).then_some((info, error, len));
        self.reflected = decode(events.reflected);
        self.pending = Pending::Nothing;
        Ok(())
    }

    /// Writes the pending events through to the ledger slot, where a recovery finds them: at
    /// each entry (what the guest will see) and on a raised interrupt.
    fn sync_events(&mut self) {
        self.slot.events = self.events();
    }

    /// Copies the vCPU's state, paused at an exit boundary, into `into`: its registers, its
    /// VMCS guest state and what the CPU holds for the guest, its TPR and pending events.
    pub fn snapshot(&self, into: &mut VcpuState) -> Result<(), SnapshotError> {
        into.regs = self.slot.regs;
        into.cpu.capture().map_err(SnapshotError::Vmcs)?;
        into.tpr = self.tpr().into();
        into.events = self.events();
        Ok(())
    }

    /// Goes on from the state a recovery captured into this vCPU's own ledger slot
    /// (`vmx::capture_current`): a fresh VMCS takes the guest state, the TPR and the events. The
    /// registers VT-x does not switch (CR2, debug registers, the guest's MSRs, x87/SSE) never
    /// left this CPU, which the recovery does not reset, so they stay as the guest left them.
    pub fn resume(&mut self) -> Result<(), SnapshotError> {
        self.slot.cpu.restore_vmcs().map_err(SnapshotError::Vmcs)?;
        let events = Events { ..self.slot.events };
        self.set_events(&events)?;
        self.set_tpr(self.slot.tpr as u32);
        Ok(())
    }

    /// Gives the vCPU, which has not run yet, the state [`VmxVcpu::snapshot`] took on another
    /// CPU.
    pub fn restore(&mut self, from: &VcpuState) -> Result<(), SnapshotError> {
        from.cpu.check().map_err(SnapshotError::Unfit)?;
        self.set_events(&from.events)?;
        from.cpu.restore().map_err(SnapshotError::Vmcs)?;
        self.slot.regs = from.regs;
        self.set_tpr(from.tpr as u32);
        Ok(())
    }

    /// The partition's dirty-page tracking (re-protection).
    pub fn dirty(&mut self) -> &mut DirtyPages<Ept> {
        &mut self.dirty
    }

    /// Pages dirty now.
    pub fn dirty_count(&self) -> u64 {
        self.dirty.count()
    }

    fn tpr(&self) -> u32 {
        // SAFETY: the vCPU's own virtual-APIC frame, identity-mapped; the guest is not running.
        unsafe { ((self.virtual_apic + VTPR_OFFSET) as *const u32).read_volatile() }
    }

    fn set_tpr(&self, tpr: u32) {
        // SAFETY: as in `tpr`.
        unsafe { ((self.virtual_apic + VTPR_OFFSET) as *mut u32).write_volatile(tpr) };
    }

    /// VMWRITE on the exit path. Fields and values are valid for the current VMCS, so a failure
    /// means the VMCS itself is broken: it is kept, and the next `run` stops the partition with
    /// it instead of entering. One check before entry keeps the exit path as short as before.
    #[inline]
    fn vmwrite(&mut self, field: VmcsField, value: u64) {
        if let Err(fail) = vmcs::write(field, value) {
            self.failed = Some(write_failed(field, fail));
        }
    }

    fn set_window_exiting(&mut self, on: bool) {
        if self.window_exiting != on {
            self.window_exiting = on;
            let controls = if on {
                self.proc_controls | ProcControls::INTERRUPT_WINDOW_EXITING
            } else {
                self.proc_controls
            };
            self.vmwrite(ctrl::PROC_BASED, controls.bits().into());
        }
    }

    fn interrupts_enabled() -> bool {
        RFlags::from_bits_retain(vmcs::read(guest::RFLAGS)).contains(RFlags::INTERRUPT_FLAG)
    }

    fn can_take_interrupt() -> bool {
        Self::interrupts_enabled() && vmcs::read(guest::INTERRUPTIBILITY) & BLOCKING_STI_MOVSS == 0
    }

    /// At most one event per entry: a re-injection first, then a fault, then an interrupt.
    // On every entry: inlined for the reason given at `run`.
    #[inline(always)]
    fn prepare_event(&mut self) {
        let event = self
            .reinject
            .take()
            .or_else(|| self.fault.take().map(fault_event));
        if let Some((info, error, len)) = event {
            self.vmwrite(ctrl::ENTRY_INTERRUPTION_INFO, info);
            self.vmwrite(ctrl::ENTRY_EXCEPTION_ERROR, error);
            self.vmwrite(ctrl::ENTRY_INSTRUCTION_LEN, len);
            self.set_window_exiting(self.interrupt.is_some());
            return;
        }
        if let Some(vector) = self.interrupt {
            if Self::can_take_interrupt() {
                // External interrupt, type 0 (SDM Vol. 3C, 26.8.3).
                self.vmwrite(
                    ctrl::ENTRY_INTERRUPTION_INFO,
                    u64::from(vector) | EVENT_VALID,
                );
                self.interrupt = None;
                self.set_window_exiting(false);
            } else {
                self.set_window_exiting(true);
            }
        }
    }

    fn arm_preemption_timer(&mut self) {
        // With recovery on, the watchdog needs every running vCPU back in the hypervisor
        // within its period, whatever the guest does.
        let deadline = match tandem_hw::recovery::watchdog_bound_ns() {
            Some(bound) => {
                let cap = time::now_ns().saturating_add(bound);
                Some(self.deadline_ns.map_or(cap, |d| d.min(cap)))
            }
            None => self.deadline_ns,
        };
        let value = match deadline {
            Some(deadline) => {
                let ticks = time::tsc_at(deadline).saturating_sub(rdtsc());
                (ticks >> self.preemption_rate).min(u64::from(u32::MAX))
            }
            None => u64::from(u32::MAX),
        };
        self.vmwrite(guest::PREEMPTION_TIMER, value);
    }

    fn save_interrupted_event(&mut self) {
        let info = vmcs::read(ro::IDT_VECTORING_INFO);
        if info & EVENT_VALID != 0 {
            self.reinject = Some((
                info & !VECTORING_UNDEFINED_BITS,
                vmcs::read(ro::IDT_VECTORING_ERROR),
                vmcs::read(ro::EXIT_INSTRUCTION_LEN),
            ));
        }
    }

    /// General register `index` in encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..).
    fn gpr(&self, index: u8) -> u64 {
        let r = &self.slot.regs;
        match index {
            0 => r.rax,
            1 => r.rcx,
            2 => r.rdx,
            3 => r.rbx,
            RSP_INDEX => vmcs::read(guest::RSP),
            5 => r.rbp,
            6 => r.rsi,
            7 => r.rdi,
            8 => r.r8,
            9 => r.r9,
            10 => r.r10,
            11 => r.r11,
            12 => r.r12,
            13 => r.r13,
            14 => r.r14,
            _ => r.r15,
        }
    }

    fn set_gpr(&mut self, index: u8, value: u64) {
        let r = &mut self.slot.regs;
        let slot = match index {
            0 => &mut r.rax,
            1 => &mut r.rcx,
            2 => &mut r.rdx,
            3 => &mut r.rbx,
            RSP_INDEX => {
                self.vmwrite(guest::RSP, value);
                return;
            }
            5 => &mut r.rbp,
            6 => &mut r.rsi,
            7 => &mut r.rdi,
            8 => &mut r.r8,
            9 => &mut r.r9,
            10 => &mut r.r10,
            11 => &mut r.r11,
            12 => &mut r.r12,
            13 => &mut r.r13,
            14 => &mut r.r14,
            _ => &mut r.r15,
        };
        *slot = value;
    }

    fn read_reg(&self, reg: Reg, size: u8) -> u64 {
        let value = self.gpr(reg.index);
        if reg.high_byte {
            (value >> 8) & 0xff
        } else {
            truncate(value, size)
        }
    }

    /// Writes `value` to `reg` as an instruction with a `size`-byte destination would: 8- and
    /// 16-bit writes merge, 32-bit writes zero-extend (SDM Vol. 1, 3.4.1.1).
    fn write_reg(&mut self, reg: Reg, size: u8, value: u64) {
        let old = self.gpr(reg.index);
        let new = match (size, reg.high_byte) {
            (1, true) => (old & !0xff00) | ((value & 0xff) << 8),
            (1, false) => (old & !0xff) | (value & 0xff),
            (2, _) => (old & !0xffff) | (value & 0xffff),
            _ => truncate(value, size),
        };
        self.set_gpr(reg.index, new);
    }

    /// An EPT violation while writes are tracked: a write to the partition's memory (an
    /// instruction's, or the guest's page walk setting an accessed or dirty flag) is recorded
    /// and allowed, and the guest retries it (`true`). Any other goes on as usual.
    fn record_write(&mut self) -> bool {
        let qualification = vmcs::read(ro::EXIT_QUALIFICATION);
        exits::ept_access(qualification) == Access::Write
            && self
                .dirty
                .record_write(vmcs::read(ro::GUEST_PHYSICAL_ADDRESS))
    }

    /// An EPT violation: on a data access, decoded into an MMIO exit when the instruction is one
    /// the device path emulates; otherwise a page fault the core reports. A violation in the
    /// guest's own page walk is never an instruction's access (SDM Vol. 3C, 28.2.1, Table 28-7).
    fn ept_violation(&mut self) -> Exit {
        let qualification = vmcs::read(ro::EXIT_QUALIFICATION);
        let gpa = GuestPhysAddr::new(vmcs::read(ro::GUEST_PHYSICAL_ADDRESS));
        if exits::ept_in_page_walk(qualification) {
            log_page_walk(gpa, vmcs::read(ro::GUEST_LINEAR_ADDRESS));
            return Exit::PageFault {
                gpa,
                access: exits::ept_walk_access(qualification),
            };
        }
        let access = exits::ept_access(qualification);
        let fault = Exit::PageFault { gpa, access };
        if access == Access::Execute {
            return fault;
        }
        let rip = vmcs::read(guest::RIP);
        let Some(cs) = CodeSegment::current() else {
            log_sixteen_bit(gpa, rip);
            return fault;
        };
        let memory = GuestMemory {
            regions: &self.memory,
        };
        let fetched = memory.fetch_instruction(&cs, rip);
        let bytes = fetched.bytes.get(..fetched.len).unwrap_or_default();
        let insn = match insn::decode(bytes, cs.mode) {
            Ok(insn) => insn,
            Err(DecodeError::Truncated { fetched: n }) => {
                log_fetch_failed(gpa, rip, n, fetched.stop);
                return fault;
            }
            Err(DecodeError::TooLong | DecodeError::Unsupported) => return fault,
        };
        self.exit_instruction_len = insn.len.into();
        match insn.access {
            insn::Access::Load { dst, dst_size } if access == Access::Read => {
                self.pending = Pending::MmioLoad { dst, dst_size };
                Exit::MmioRead {
                    gpa,
                    size: insn.size,
                }
            }
            insn::Access::Store { src } if access == Access::Write => {
                let value = match src {
                    Operand::Reg(reg) => self.read_reg(reg, insn.size),
                    Operand::Imm(imm) => truncate(imm, insn.size),
                };
                Exit::MmioWrite {
                    gpa,
                    size: insn.size,
                    value,
                }
            }
            // The decoded direction disagrees with the hardware's: do not emulate.
            _ => fault,
        }
    }

    /// Basic exit reason 0, by its interruption information: NMIs and machine checks go to the
    /// hypervisor, #DB and #AC back to the guest. `None`: re-enter. A #DB or #AC that faults
    /// its own delivery again stops the partition: it could never run another instruction.
    fn exception(&mut self, reflected: Option<u8>) -> Option<Exit> {
        let (vector, event, debug_trap) = match exits::exception() {
            ExceptionExit::Nmi => {
                self.clear_nmi_blocking();
                cpu::forward_nmi();
                log_guest_nmi();
                return Some(Exit::ExternalInterrupt {
                    vector: exits::NMI.into(),
                });
            }
            ExceptionExit::MachineCheck => cpu::forward_machine_check(),
            ExceptionExit::Reflect {
                vector,
                event,
                debug_trap,
            } => (vector, event, debug_trap),
        };
        let interrupted = self.reinject.take();
        let faulted_in_delivery =
            interrupted.is_some_and(|(e, _, _)| exits::is_exception(e, vector));
        if faulted_in_delivery || (reflected == Some(vector) && self.at_handler_of(vector)) {
            return Some(Exit::Shutdown {
                cause: ShutdownCause::ExceptionLoop { vector },
            });
        }
        // The new exception replaces an interrupted exception's delivery, which the faulting
        // instruction raises again when it re-executes; an interrupted interrupt is kept.
        if let Some(v) = interrupted.and_then(|(e, _, _)| exits::external_interrupt(e)) {
            self.interrupt.get_or_insert(v);
        }
        if debug_trap {
            // A #DB that exits leaves DR6 unchanged; its conditions are in the exit
            // qualification (SDM Vol. 3C, 28.1 and 28.2.1). DR6 is not switched on entry or
            // exit, so the guest's DR6 is the CPU's.
            let conditions = vmcs::read(ro::EXIT_QUALIFICATION);
            let dr6 = (read_dr6() & !DR6_BREAKPOINTS) | DR6_ACTIVE_LOW | conditions;
            write_dr6(dr6 ^ (conditions & DR6_ACTIVE_LOW));
        }
        self.reinject = Some(event);
        self.reflected = Some(vector);
        None
    }

    /// Whether the guest is at the first instruction of its own handler for `vector`: right
    /// after that vector was injected, delivery then raised it again before the handler ran.
    fn at_handler_of(&self, vector: u8) -> bool {
        let efer = EferFlags::from_bits_retain(vmcs::read(guest::IA32_EFER));
        let cr0 = Cr0Flags::from_bits_retain(vmcs::read(guest::CR0));
        // Gate sizes and offset fields: SDM Vol. 3A, 6.11 and 6.14.1. Real mode is not checked.
        let size = if efer.contains(EferFlags::LONG_MODE_ACTIVE) {
            16
        } else if cr0.contains(Cr0Flags::PROTECTED_MODE_ENABLE) {
            8
        } else {
            return false;
        };
        let offset = u64::from(vector) * size;
        if offset + size - 1 > vmcs::read(guest::IDTR_LIMIT) {
            return false;
        }
        let memory = GuestMemory {
            regions: &self.memory,
        };
        let mut gate = [0u8; 16];
        let gate_bytes = &mut gate[..size as usize];
        if !memory.read_linear(vmcs::read(guest::IDTR_BASE) + offset, gate_bytes) {
            return false;
        }
        let word = |i: usize| u64::from(u16::from_le_bytes([gate[i], gate[i + 1]]));
        let mut target = word(0) | word(6) << 16;
        if size == 16 {
            target |= (word(8) | word(10) << 16) << 32;
        }
        target == vmcs::read(guest::RIP)
    }

    /// MOV to CR4 setting a bit the guest may not own (see [`CR4_HIDDEN`]): #GP, and `true`.
    /// Other control-register exits go to the core.
    fn refuse_hidden_cr4_bits(&mut self) -> bool {
        let q = vmcs::read(ro::EXIT_QUALIFICATION);
        let mov_to_cr4 = q & CR_QUAL_NUMBER == 4
            && (q >> CR_QUAL_TYPE_SHIFT) & CR_QUAL_TYPE_MASK == CR_ACCESS_MOV_TO;
        if mov_to_cr4 {
            self.fault = Some(GuestFault::GeneralProtection);
        }
        mov_to_cr4
    }

    /// After an NMI exit: the guest is entered again without blocking by NMI. With NMI exiting
    /// and no virtual NMIs every NMI goes to the hypervisor, so the guest never has one to
    /// block, and an IRET in VMX non-root operation would not end the blocking then (SDM Vol.
    /// 3C, 26.3, "IRET"): entered with it set, the CPU would take no NMI again while the guest
    /// runs, not even a recovery's stop request. Bochs saves the bit set after an NMI exit.
    /// Cleared before the NMI's handler runs, which may hand this CPU to a recovery that
    /// captures the guest state as it is.
    fn clear_nmi_blocking(&mut self) {
        let blocking = vmcs::read(guest::INTERRUPTIBILITY);
        if blocking & BLOCKING_NMI != 0 {
            self.vmwrite(guest::INTERRUPTIBILITY, blocking & !BLOCKING_NMI);
        }
    }

    // On every completed exit: inlined for the reason given at `run`.
    #[inline(always)]
    fn advance(&mut self) {
        let rip = vmcs::read(guest::RIP) + self.exit_instruction_len;
        self.vmwrite(guest::RIP, rip);
        let blocking = vmcs::read(guest::INTERRUPTIBILITY);
        if blocking & BLOCKING_STI_MOVSS != 0 {
            self.vmwrite(guest::INTERRUPTIBILITY, blocking & !BLOCKING_STI_MOVSS);
        }
    }
}

impl Vcpu for VmxVcpu {
    const GPRS: usize = 16;

    // The exit loop is instantiated once per replica kind (plain, FT primary, FT backup);
    // left to itself LLVM then outlines the exit path, which costs 10-20 % per exit.
    #[inline(always)]
    fn run(&mut self) -> Result<Exit, EntryError> {
        // Exits with no meaning for the core (a reflected exception, a dropped WBINVD, a refused
        // CR4 bit) are completed here and the guest re-entered, as if it had not exited.
        loop {
            self.prepare_event();
            self.sync_events();
            self.arm_preemption_timer();
            if let Some(e) = self.failed {
                return Err(e);
            }
            crate::recovery::pause_stepping();
            // SAFETY: this vCPU's VMCS is current on this CPU with host state for this CPU and
            // HOST_RIP at the exit point (`new`); `regs` lives in the ledger for the whole run.
            let failed = unsafe { entry::vmx_enter(&mut self.slot.regs, u64::from(self.launched)) };
            if failed != 0 {
                let error = VmInstructionError(vmcs::read(ro::INSTRUCTION_ERROR) as u32);
                defmt::error!("VM entry failed: {}", error);
                return Err(EntryError::InstructionFailed { error: error.0 });
            }
            self.launched = true;
            let reason = vmcs::read(ro::EXIT_REASON);
            let basic = ExitReason::basic(reason);
            if reason & ENTRY_FAILURE != 0 {
                defmt::error!("VM entry failed: {}", basic);
                return Err(EntryError::InvalidGuestState {
                    reason: basic.0.into(),
                });
            }
            if basic == ExitReason::EXTERNAL_INTERRUPT {
                apic::take_pending_interrupts();
            }
            let reflected = self.reflected.take();
            self.save_interrupted_event();
            if basic == ExitReason::INTERRUPT_WINDOW {
                self.set_window_exiting(false);
            }
            self.exit_instruction_len = vmcs::read(ro::EXIT_INSTRUCTION_LEN);
            self.pending = Pending::Nothing;
            match basic {
                ExitReason::EPT_VIOLATION if self.dirty.active() && self.record_write() => {
                    continue;
                }
                ExitReason::EPT_VIOLATION => return Ok(self.ept_violation()),
                ExitReason::EXCEPTION_OR_NMI => match self.exception(reflected) {
                    Some(exit) => return Ok(exit),
                    None => continue,
                },
                // Caches are shared with every partition and no partition has DMA to keep
                // coherent: the flush is dropped, as KVM and Xen do without such devices.
                ExitReason::WBINVD => {
                    self.advance();
                    continue;
                }
                ExitReason::CR_ACCESS if self.refuse_hidden_cr4_bits() => continue,
                _ => {}
            }
            let exit = exits::decode(basic, &self.slot.regs, self.proc2);
            self.pending = match exit {
                Exit::PortRead { size, .. } => Pending::PortRead { size },
                Exit::MsrRead { .. } => Pending::MsrRead,
                Exit::CounterRead => Pending::Counter {
                    aux: basic == ExitReason::RDTSCP,
                },
                _ => Pending::Nothing,
            };
            return Ok(exit);
        }
    }

    // Inlined into each exit loop for the reason given at `run`.
    #[inline(always)]
    fn complete(&mut self, completion: Completion) {
        match completion {
            Completion::Done => {}
            Completion::Value(v) => match self.pending {
                Pending::PortRead { size } => self.write_reg(RAX, size, v),
                Pending::MsrRead => {
                    self.slot.regs.rax = v & 0xffff_ffff;
                    self.slot.regs.rdx = v >> 32;
                }
                Pending::MmioLoad { dst, dst_size } => self.write_reg(dst, dst_size, v),
                Pending::Nothing | Pending::Counter { .. } => {}
            },
            Completion::Counter { ns } => {
                let tsc = time::ticks_in(ns);
                self.slot.regs.rax = tsc & 0xffff_ffff;
                self.slot.regs.rdx = tsc >> 32;
                if self.pending == (Pending::Counter { aux: true }) {
                    // SAFETY: IA32_TSC_AUX exists wherever RDTSCP does, and the guest owns it
                    // (`bitmaps`): what it holds is what the guest wrote, in every copy.
                    self.slot.regs.rcx = unsafe { Msr::new(IA32_TSC_AUX).read() } & 0xffff_ffff;
                }
            }
            Completion::Cpuid([a, b, c, d]) => {
                let regs = &mut self.slot.regs;
                regs.rax = a.into();
                regs.rbx = b.into();
                regs.rcx = c.into();
                regs.rdx = d.into();
            }
            Completion::Hypercall { status, value } => {
                self.slot.regs.rax = status as u64;
                self.slot.regs.rdx = value;
            }
            Completion::Fault(fault) => {
                self.fault = Some(fault);
                return;
            }
        }
        self.advance();
    }

    fn raise_interrupt(&mut self, vector: u8) {
        self.interrupt = Some(vector);
        self.slot.events.interrupt = encode(self.interrupt);
    }

    fn interrupt_pending(&self) -> bool {
        self.interrupt.is_some()
    }

    fn accepts_interrupts(&self) -> bool {
        Self::interrupts_enabled()
    }

    fn set_timer_deadline(&mut self, deadline_ns: Option<u64>) {
        self.deadline_ns = deadline_ns;
    }

    fn pc(&self) -> u64 {
        vmcs::read(guest::RIP)
    }

    fn set_pc(&mut self, pc: u64) {
        self.vmwrite(guest::RIP, pc);
    }

    fn save_gprs(&self, into: &mut [u64; MAX_GPRS]) {
        let r = &self.slot.regs;
        into[..16].copy_from_slice(&[
            r.rax, r.rcx, r.rdx, r.rbx, 0, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
            r.r13, r.r14, r.r15,
        ]);
    }

    fn gpr(&self, index: usize) -> Option<u64> {
        let index = u8::try_from(index)
            .ok()
            .filter(|&i| usize::from(i) < Self::GPRS)?;
        Some(VmxVcpu::gpr(self, index))
    }

    fn set_gpr(&mut self, index: usize, value: u64) -> Result<(), NoSuchRegister> {
        let number = u8::try_from(index)
            .ok()
            .filter(|&i| usize::from(i) < Self::GPRS)
            .ok_or(NoSuchRegister { index })?;
        VmxVcpu::set_gpr(self, number, value);
        Ok(())
    }
}

#[cold]
fn log_guest_nmi() {
    defmt::warn!(
        "NMI while a guest ran ({=u64} NMIs so far)",
        cpu::nmis_taken()
    );
}

fn read_dr6() -> u64 {
    let value: u64;
    // SAFETY: reading DR6 at CPL 0 has no side effect.
    unsafe { core::arch::asm!("mov {}, dr6", out(reg) value, options(nomem, nostack)) };
    value
}

fn write_dr6(value: u64) {
    // SAFETY: the hypervisor uses no debug registers; DR6 is the guest's (see `exception`).
    unsafe { core::arch::asm!("mov dr6, {}", in(reg) value, options(nomem, nostack)) };
}

fn write_controls(
    caps: &Caps,
    execution: Execution,
    tables: &PartitionTables,
    vpid: u16,
    virtual_apic: u64,
) -> Result<(), SetupError> {
    w(ctrl::PIN_BASED, caps.pin.bits().into())?;
    w(ctrl::PROC_BASED, execution.proc.bits().into())?;
    w(ctrl::PROC_BASED2, execution.proc2.bits().into())?;
    w(ctrl::EXIT_CONTROLS, caps.exit.bits().into())?;
    w(ctrl::ENTRY_CONTROLS, caps.entry.bits().into())?;
    w(ctrl::EXCEPTION_BITMAP, exits::INTERCEPTED_EXCEPTIONS)?;
    // TPR threshold 0: lowering the TPR never exits (SDM Vol. 3C, 26.6.8).
    w(ctrl::VIRTUAL_APIC_PAGE, virtual_apic)?;
    w(ctrl::TPR_THRESHOLD, 0)?;
    w(ctrl::CR3_TARGET_COUNT, 0)?;
    w(ctrl::IO_BITMAP_A, tables.io_bitmap_a)?;
    w(ctrl::IO_BITMAP_B, tables.io_bitmap_b)?;
    w(ctrl::MSR_BITMAP, tables.msr_bitmap)?;
    w(ctrl::EPT_POINTER, tables.eptp)?;
    w(ctrl::VPID, vpid.into())?;
    // The guest may not clear CR0.NE or see CR4.VMXE, both fixed in VMX operation (SDM Vol. 3D, A.7).
    let ne = Cr0Flags::NUMERIC_ERROR.bits();
    w(ctrl::CR0_MASK, ne)?;
    w(ctrl::CR0_SHADOW, ne)?;
    w(ctrl::CR4_MASK, CR4_HIDDEN)?;
    w(
        ctrl::CR4_SHADOW,
        Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits(),
    )?;
    Ok(())
}

fn write_host_state(cpu: usize) -> Result<(), SetupError> {
    let (gdt, tss, idt) = cpu::descriptor_bases(cpu);
    let (cr3_frame, cr3_flags) = Cr3::read_raw();
    w(host::CR0, Cr0::read_raw())?;
    w(
        host::CR3,
        cr3_frame.start_address().as_u64() | u64::from(cr3_flags),
    )?;
    w(host::CR4, Cr4::read_raw())?;
    w(host::CS_SELECTOR, cpu::KERNEL_CS.0.into())?;
    for sel in [host::SS_SELECTOR, host::DS_SELECTOR, host::ES_SELECTOR] {
        w(sel, cpu::KERNEL_DS.0.into())?;
    }
    w(host::FS_SELECTOR, 0)?;
    w(host::GS_SELECTOR, 0)?;
    w(host::TR_SELECTOR, cpu::KERNEL_TR.0.into())?;
    w(host::FS_BASE, 0)?;
    w(host::GS_BASE, 0)?;
    w(host::TR_BASE, tss)?;
    w(host::GDTR_BASE, gdt)?;
    w(host::IDTR_BASE, idt)?;
    w(host::SYSENTER_CS, 0)?;
    w(host::SYSENTER_ESP, 0)?;
    w(host::SYSENTER_EIP, 0)?;
    // SAFETY: PAT exists on every CPU with VMX; reading it has no side effect.
    let pat = unsafe { Msr::new(IA32_PAT).read() };
    w(host::IA32_EFER, Efer::read_raw())?;
    w(host::IA32_PAT, pat)?;
    w(host::RIP, entry::exit_point())?;
    Ok(())
}

/// 64-bit mode, flat segments, paging on the boot tables the loader wrote, interrupts off.
fn write_guest_state(entry_point: u64) -> Result<(), SetupError> {
    const SEGMENT_COUNT: u32 = 6;
    const CS_INDEX: u32 = 1;
    for i in 0..SEGMENT_COUNT {
        let (selector, access) = if i == CS_INDEX {
            (0x08, 0xa09b)
        } else {
            (0x10, 0xc093)
        };
        w(guest::ES_SELECTOR.nth(i), selector)?;
        w(guest::ES_BASE.nth(i), 0)?;
        w(guest::ES_LIMIT.nth(i), 0xffff_ffff)?;
        w(guest::ES_ACCESS.nth(i), access)?;
    }
    w(guest::LDTR_SELECTOR, 0)?;
    w(guest::LDTR_BASE, 0)?;
    w(guest::LDTR_LIMIT, 0)?;
    w(guest::LDTR_ACCESS, 0x1_0000)?;
    w(guest::TR_SELECTOR, 0)?;
    w(guest::TR_BASE, 0)?;
    w(guest::TR_LIMIT, 0x67)?;
    w(guest::TR_ACCESS, 0x8b)?;
    w(guest::GDTR_BASE, 0)?;
    w(guest::GDTR_LIMIT, 0)?;
    w(guest::IDTR_BASE, 0)?;
    w(guest::IDTR_LIMIT, 0)?;
    let cr0 = Cr0Flags::PAGING
        | Cr0Flags::NUMERIC_ERROR
        | Cr0Flags::EXTENSION_TYPE
        | Cr0Flags::PROTECTED_MODE_ENABLE;
    w(guest::CR0, cr0.bits())?;
    w(guest::CR3, GUEST_CR3)?;
    let cr4 = Cr4Flags::PHYSICAL_ADDRESS_EXTENSION | Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS;
    w(guest::CR4, cr4.bits())?;
    w(guest::DR7, 0x400)?;
    let efer = EferFlags::LONG_MODE_ENABLE | EferFlags::LONG_MODE_ACTIVE;
    w(guest::IA32_EFER, efer.bits())?;
    w(guest::IA32_PAT, DEFAULT_PAT)?;
    w(guest::IA32_DEBUGCTL, 0)?;
    w(guest::LINK_POINTER, u64::MAX)?;
    w(guest::RSP, 0)?;
    w(guest::RIP, entry_point)?;
    w(guest::RFLAGS, RFLAGS_RESERVED_ONE)?;
    w(guest::INTERRUPTIBILITY, 0)?;
    w(guest::ACTIVITY_STATE, 0)?;
    w(guest::PENDING_DEBUG, 0)?;
    w(guest::SYSENTER_CS, 0)?;
    w(guest::SYSENTER_ESP, 0)?;
    w(guest::SYSENTER_EIP, 0)?;
    Ok(())
}
