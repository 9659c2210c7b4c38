//! One vCPU on VT-x: its VMCS, the guest entry state, interrupt and fault injection, and how
//! exits are completed.

use tandem_core::config::Partition;
use tandem_core::exit::Exit;
use tandem_core::vcpu::{Completion, EntryError, GuestFault, Vcpu};

use super::caps::{Caps, proc};
use super::exits;
use super::vmcs::{self, VmFail, ctrl, guest, host, ro};
use super::{GuestRegs, entry};
use crate::frames::{self, OutOfFrames};
use crate::io::{rdmsr, rdtsc, read_cr0, read_cr3, read_cr4};
use crate::{cpu, time};

const RFLAGS_IF: u64 = 1 << 9;
/// Interruptibility state: blocking by STI (bit 0) and by MOV SS (bit 1).
const BLOCKING_STI_MOVSS: u64 = 0b11;
const EVENT_VALID: u64 = 1 << 31;
const EVENT_HAS_ERROR: u64 = 1 << 11;
const TYPE_HARDWARE_EXCEPTION: u64 = 3 << 8;
/// IDT-vectoring information bit 12 ("NMI unblocking due to IRET") is not part of an injection.
const VECTORING_UNDEFINED_BITS: u64 = 1 << 12;
const CR0_NE: u64 = 1 << 5;
const CR4_PAE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;
/// Guest boot page tables (see `tandem_core::config::validate::X86_BOOT_TABLES`).
const GUEST_CR3: u64 = 0x1000;
const EFER_LME_LMA: u64 = 0x500;
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
const IA32_EFER: u32 = 0xc000_0080;
const IA32_PAT: u32 = 0x277;

#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum SetupError {
    OutOfFrames,
    Vmcs { field: u32, fail: VmFail },
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
            msr_bitmap: super::bitmaps::msr()?,
        })
    }
}

/// What the last exit needs from its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    PortRead { size: u8 },
    MsrRead,
}

pub struct VmxVcpu {
    regs: &'static mut GuestRegs,
    launched: bool,
    preemption_rate: u32,
    deadline_ns: Option<u64>,
    interrupt: Option<u8>,
    /// An event whose delivery an exit interrupted, to be re-injected (SDM Vol. 3C, 28.2.4).
    reinject: Option<(u64, u64, u64)>,
    /// An exception the last completion asked for, injected at the next entry.
    fault: Option<GuestFault>,
    pending: Pending,
    exit_instruction_len: u64,
    window_exiting: bool,
    proc_controls: u32,
}

fn w(field: u32, value: u64) -> Result<(), SetupError> {
    vmcs::write(field, value).map_err(|fail| SetupError::Vmcs { field, fail })
}

impl VmxVcpu {
    /// Creates the vCPU's VMCS on this CPU, makes it current and fills it so the guest starts in
    /// 64-bit mode at the partition's entry point.
    pub fn new(
        caps: &Caps,
        cpu: usize,
        partition: &Partition,
        tables: &PartitionTables,
        vpid: u16,
        regs: &'static mut GuestRegs,
    ) -> Result<Self, SetupError> {
        let vmcs_frame = frames::alloc()?.raw();
        // SAFETY: a fresh frame, the revision identifier in its first word; it becomes this
        // CPU's current VMCS and is never loaded on another CPU.
        unsafe {
            (vmcs_frame as *mut u32).write(caps.revision);
            vmcs::vmclear(vmcs_frame).map_err(|fail| SetupError::Vmcs { field: 0, fail })?;
            vmcs::vmptrld(vmcs_frame).map_err(|fail| SetupError::Vmcs { field: 0, fail })?;
        }
        *regs = GuestRegs::default();
        let vcpu = Self {
            regs,
            launched: false,
            preemption_rate: caps.preemption_rate,
            deadline_ns: None,
            interrupt: None,
            reinject: None,
            fault: None,
            pending: Pending::Nothing,
            exit_instruction_len: 0,
            window_exiting: false,
            proc_controls: caps.proc,
        };
        write_controls(caps, tables, vpid)?;
        write_host_state(cpu)?;
        write_guest_state(partition.image.entry.raw())?;
        Ok(vcpu)
    }

    fn set_window_exiting(&mut self, on: bool) {
        if self.window_exiting != on {
            self.window_exiting = on;
            let controls = if on {
                self.proc_controls | proc::INTERRUPT_WINDOW_EXITING
            } else {
                self.proc_controls
            };
            // Writing a control of the current VMCS with a value the CPU allows cannot fail.
            let _ = vmcs::write(ctrl::PROC_BASED, controls.into());
        }
    }

    fn can_take_interrupt() -> bool {
        vmcs::read(guest::RFLAGS) & RFLAGS_IF != 0
            && vmcs::read(guest::INTERRUPTIBILITY) & BLOCKING_STI_MOVSS == 0
    }

    /// At most one event per entry: a re-injection first, then a fault, then an interrupt.
    fn prepare_event(&mut self) {
        let fault_event = |fault| match fault {
            GuestFault::GeneralProtection => (
                13 | TYPE_HARDWARE_EXCEPTION | EVENT_HAS_ERROR | EVENT_VALID,
                0,
                0,
            ),
            GuestFault::InvalidOpcode => (6 | TYPE_HARDWARE_EXCEPTION | EVENT_VALID, 0, 0),
        };
        let event = self
            .reinject
            .take()
            .or_else(|| self.fault.take().map(fault_event));
        if let Some((info, error, len)) = event {
            let _ = vmcs::write(ctrl::ENTRY_INTERRUPTION_INFO, info);
            let _ = vmcs::write(ctrl::ENTRY_EXCEPTION_ERROR, error);
            let _ = vmcs::write(ctrl::ENTRY_INSTRUCTION_LEN, len);
            self.set_window_exiting(self.interrupt.is_some());
            return;
        }
        if let Some(vector) = self.interrupt {
            if Self::can_take_interrupt() {
                // External interrupt, type 0 (SDM Vol. 3C, 26.8.3).
                let _ = vmcs::write(
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

    fn arm_preemption_timer(&self) {
        let value = match self.deadline_ns {
            Some(deadline) => {
                let ticks = time::tsc_at(deadline).saturating_sub(rdtsc());
                (ticks >> self.preemption_rate).min(u64::from(u32::MAX))
            }
            None => u64::from(u32::MAX),
        };
        let _ = vmcs::write(guest::PREEMPTION_TIMER, value);
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

    fn advance(&mut self) {
        let rip = vmcs::read(guest::RIP) + self.exit_instruction_len;
        let _ = vmcs::write(guest::RIP, rip);
        let blocking = vmcs::read(guest::INTERRUPTIBILITY);
        if blocking & BLOCKING_STI_MOVSS != 0 {
            let _ = vmcs::write(guest::INTERRUPTIBILITY, blocking & !BLOCKING_STI_MOVSS);
        }
    }
}

impl Vcpu for VmxVcpu {
    fn run(&mut self) -> Result<Exit, EntryError> {
        self.prepare_event();
        self.arm_preemption_timer();
        // SAFETY: this vCPU's VMCS is current on this CPU with host state for this CPU and
        // HOST_RIP at the exit point (`new`); `regs` lives in the ledger for the whole run.
        let failed = unsafe { entry::vmx_enter(self.regs, u64::from(self.launched)) };
        if failed != 0 {
            return Err(EntryError::InstructionFailed {
                error: vmcs::read(ro::INSTRUCTION_ERROR) as u32,
            });
        }
        self.launched = true;
        let reason = vmcs::read(ro::EXIT_REASON) as u32;
        if reason & (1 << 31) != 0 {
            return Err(EntryError::InvalidGuestState {
                reason: reason & 0xffff,
            });
        }
        let basic = reason & 0xffff;
        self.save_interrupted_event();
        if basic == exits::INTERRUPT_WINDOW {
            self.set_window_exiting(false);
        }
        self.exit_instruction_len = vmcs::read(ro::EXIT_INSTRUCTION_LEN);
        let exit = exits::decode(basic, self.regs);
        self.pending = match exit {
            Exit::PortRead { size, .. } => Pending::PortRead { size },
            Exit::MsrRead { .. } => Pending::MsrRead,
            _ => Pending::Nothing,
        };
        Ok(exit)
    }

    fn complete(&mut self, completion: Completion) {
        let regs = &mut *self.regs;
        match completion {
            Completion::Done => {}
            Completion::Value(v) => match self.pending {
                // IN writes AL/AX (merging) or EAX (zero-extending into RAX).
                Pending::PortRead { size: 1 } => regs.rax = (regs.rax & !0xff) | (v & 0xff),
                Pending::PortRead { size: 2 } => regs.rax = (regs.rax & !0xffff) | (v & 0xffff),
                Pending::PortRead { .. } => regs.rax = v & 0xffff_ffff,
                Pending::MsrRead => {
                    regs.rax = v & 0xffff_ffff;
                    regs.rdx = v >> 32;
                }
                Pending::Nothing => {}
            },
            Completion::Cpuid([a, b, c, d]) => {
                regs.rax = a.into();
                regs.rbx = b.into();
                regs.rcx = c.into();
                regs.rdx = d.into();
            }
            Completion::Hypercall { status, value } => {
                regs.rax = status as u64;
                regs.rdx = value;
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
    }

    fn interrupt_pending(&self) -> bool {
        self.interrupt.is_some()
    }

    fn accepts_interrupts(&self) -> bool {
        vmcs::read(guest::RFLAGS) & RFLAGS_IF != 0
    }

    fn set_timer_deadline(&mut self, deadline_ns: Option<u64>) {
        self.deadline_ns = deadline_ns;
    }

    fn pc(&self) -> u64 {
        vmcs::read(guest::RIP)
    }
}

fn write_controls(caps: &Caps, tables: &PartitionTables, vpid: u16) -> Result<(), SetupError> {
    w(ctrl::PIN_BASED, caps.pin.into())?;
    w(ctrl::PROC_BASED, caps.proc.into())?;
    w(ctrl::PROC_BASED2, caps.proc2.into())?;
    w(ctrl::EXIT_CONTROLS, caps.exit.into())?;
    w(ctrl::ENTRY_CONTROLS, caps.entry.into())?;
    w(ctrl::EXCEPTION_BITMAP, 0)?;
    w(ctrl::CR3_TARGET_COUNT, 0)?;
    w(ctrl::IO_BITMAP_A, tables.io_bitmap_a)?;
    w(ctrl::IO_BITMAP_B, tables.io_bitmap_b)?;
    w(ctrl::MSR_BITMAP, tables.msr_bitmap)?;
    w(ctrl::EPT_POINTER, tables.eptp)?;
    w(ctrl::VPID, vpid.into())?;
    // The guest may not clear CR0.NE or see CR4.VMXE, both fixed in VMX operation (SDM Vol. 3D, A.7).
    w(ctrl::CR0_MASK, CR0_NE)?;
    w(ctrl::CR0_SHADOW, CR0_NE)?;
    w(ctrl::CR4_MASK, CR4_VMXE)?;
    w(ctrl::CR4_SHADOW, CR4_PAE)?;
    Ok(())
}

fn write_host_state(cpu: usize) -> Result<(), SetupError> {
    let (gdt, tss, idt) = cpu::descriptor_bases(cpu);
    w(host::CR0, read_cr0())?;
    w(host::CR3, read_cr3())?;
    w(host::CR4, read_cr4())?;
    w(host::CS_SELECTOR, cpu::KERNEL_CS.into())?;
    for sel in [host::SS_SELECTOR, host::DS_SELECTOR, host::ES_SELECTOR] {
        w(sel, cpu::KERNEL_DS.into())?;
    }
    w(host::FS_SELECTOR, 0)?;
    w(host::GS_SELECTOR, 0)?;
    w(host::TR_SELECTOR, cpu::KERNEL_TR.into())?;
    w(host::FS_BASE, 0)?;
    w(host::GS_BASE, 0)?;
    w(host::TR_BASE, tss)?;
    w(host::GDTR_BASE, gdt)?;
    w(host::IDTR_BASE, idt)?;
    w(host::SYSENTER_CS, 0)?;
    w(host::SYSENTER_ESP, 0)?;
    w(host::SYSENTER_EIP, 0)?;
    // SAFETY: EFER and PAT exist on every CPU with VMX.
    let (efer, pat) = unsafe { (rdmsr(IA32_EFER), rdmsr(IA32_PAT)) };
    w(host::IA32_EFER, efer)?;
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
        w(guest::ES_SELECTOR + 2 * i, selector)?;
        w(guest::ES_BASE + 2 * i, 0)?;
        w(guest::ES_LIMIT + 2 * i, 0xffff_ffff)?;
        w(guest::ES_ACCESS + 2 * i, access)?;
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
    // PG | NE | ET | PE.
    w(guest::CR0, 0x8000_0031)?;
    w(guest::CR3, GUEST_CR3)?;
    w(guest::CR4, CR4_PAE | CR4_VMXE)?;
    w(guest::DR7, 0x400)?;
    w(guest::IA32_EFER, EFER_LME_LMA)?;
    w(guest::IA32_PAT, DEFAULT_PAT)?;
    w(guest::IA32_DEBUGCTL, 0)?;
    w(guest::LINK_POINTER, u64::MAX)?;
    w(guest::RSP, 0)?;
    w(guest::RIP, entry_point)?;
    w(guest::RFLAGS, 0x2)?;
    w(guest::INTERRUPTIBILITY, 0)?;
    w(guest::ACTIVITY_STATE, 0)?;
    w(guest::PENDING_DEBUG, 0)?;
    w(guest::SYSENTER_CS, 0)?;
    w(guest::SYSENTER_ESP, 0)?;
    w(guest::SYSENTER_EIP, 0)?;
    Ok(())
}
