//! Per-CPU descriptor tables: a GDT with a TSS whose IST stack catches NMI, double fault and
//! machine check even on a broken stack (every other exception has a second one), and one shared
//! IDT whose handlers report and stop (or recover, `fault`), except the NMI's, which counts and
//! returns: an NMI is an event, not a hypervisor fault. With recovery armed it also asks
//! `recovery::nmi_check` whether this CPU must stop for a recovery or is hung.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};

use tandem_core::config::MAX_CPUS;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{DescriptorTablePointer, lidt, load_tss};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::{Entry, HandlerFunc};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

use crate::apic::{self, SPURIOUS_VECTOR, WAKE_VECTOR};

/// Selectors of the GDT `init` builds, in the order it appends the descriptors; the boot GDT
/// has the same code and data slots, so the switch keeps the loaded selectors valid.
pub const KERNEL_CS: SegmentSelector = SegmentSelector::new(1, PrivilegeLevel::Ring0);
pub const KERNEL_DS: SegmentSelector = SegmentSelector::new(2, PrivilegeLevel::Ring0);
pub const KERNEL_TR: SegmentSelector = SegmentSelector::new(3, PrivilegeLevel::Ring0);
/// Null, code, data and the two slots of the 64-bit TSS descriptor.
const GDT_ENTRIES: usize = 5;
const IST_STACK_SIZE: usize = 16 * 1024;
/// As the bootstrap CPU's ([`crate::boot::BOOT_STACK_SIZE`]).
pub const AP_STACK_SIZE: usize = 256 * 1024;
/// The IST slot NMI, #DF and #MC switch to (the crate counts from 0; the hardware's IST1).
const IST_INDEX: u16 = 0;
/// The IST slot every other exception switches to: a fault in hypervisor context starts the
/// recovery on a known-good stack even when the stack pointer was the fault (recovery.md 6.1).
const FAULT_IST_INDEX: u16 = 1;

/// All-zero until `init`, so the per-CPU area stays in `.bss` instead of the image (an empty GDT
/// and a fresh TSS are not all-zero).
#[repr(C, align(4096))]
struct CpuLocal {
    gdt: MaybeUninit<GlobalDescriptorTable<GDT_ENTRIES>>,
    tss: MaybeUninit<TaskStateSegment>,
    ist_stack: [u8; IST_STACK_SIZE],
    fault_stack: [u8; IST_STACK_SIZE],
    stack: [u8; AP_STACK_SIZE],
}

impl CpuLocal {
    const fn new() -> Self {
        Self {
            gdt: MaybeUninit::zeroed(),
            tss: MaybeUninit::zeroed(),
            ist_stack: [0; IST_STACK_SIZE],
            fault_stack: [0; IST_STACK_SIZE],
            stack: [0; AP_STACK_SIZE],
        }
    }
}

struct PerCpu([UnsafeCell<CpuLocal>; MAX_CPUS]);
// SAFETY: entry `i` is only written by CPU `i` (in `init`) and by the BSP before CPU `i` starts.
unsafe impl Sync for PerCpu {}
static PER_CPU: PerCpu = PerCpu([const { UnsafeCell::new(CpuLocal::new()) }; MAX_CPUS]);

const VECTORS: usize = 34;
const NMI_VECTOR: u8 = 2;
/// The single-step trap the fault injection counts hypervisor instructions with (`recovery`).
const DEBUG_VECTOR: u8 = 1;

/// The IDT is an array of the crate's gate descriptors indexed by vector: its
/// `InterruptDescriptorTable` types each exception's slot for the unstable `x86-interrupt` ABI
/// and hides the reserved vectors, while Tandem's stubs are naked and the same for every vector.
struct Idt(UnsafeCell<[Entry<HandlerFunc>; VECTORS]>);
// SAFETY: written once by the BSP in `init_idt` before any other CPU starts; read-only after.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([const { Entry::missing() }; VECTORS]));

/// Top of the stack CPU `cpu` runs on after the trampoline (APs only; the BSP keeps its boot stack).
pub fn ap_stack_top(cpu: usize) -> u64 {
    // SAFETY: only the address is taken.
    let local = unsafe { &raw const (*PER_CPU.0[cpu].get()).stack };
    local as u64 + AP_STACK_SIZE as u64
}

unsafe extern "C" {
    static exception_stubs: [u64; 32];
    fn wake_stub();
    fn spurious_stub();
    fn nmi_stub();
    fn debug_stub();
}

/// NMIs taken on any CPU, in hypervisor context or forwarded from a guest's exit. The stub only
/// counts: it may interrupt code holding the log's lock, so it cannot log.
#[unsafe(no_mangle)]
static HOST_NMIS: AtomicU64 = AtomicU64::new(0);

pub fn nmis_taken() -> u64 {
    HOST_NMIS.load(Ordering::Relaxed)
}

/// Runs the hypervisor's NMI handler for an NMI that made a guest exit (NMI exiting), as KVM
/// does: its IRET ends any NMI blocking the exit left in place (SDM Vol. 3A, 6.7.1).
pub fn forward_nmi() {
    // SAFETY: vector 2's gate is `nmi_stub`, which saves nothing it changes except the counter
    // and returns with `iretq`.
    unsafe { core::arch::asm!("int 2") }
}

/// Hands a machine check that made a guest exit to the hypervisor's #MC handler, which reports
/// it and stops the machine: the hardware, not the guest, failed.
pub fn forward_machine_check() -> ! {
    // SAFETY: vector 18's gate is the reporting exception stub, which never returns.
    unsafe { core::arch::asm!("int 18", options(noreturn)) }
}

/// Fills the shared IDT. Runs once on the BSP before any AP starts.
pub fn init_idt() {
    // SAFETY: no CPU has loaded the IDT yet, so nothing reads it concurrently.
    let idt = unsafe { &mut *IDT.0.get() };
    for (vector, entry) in idt.iter_mut().enumerate() {
        let handler = match vector as u8 {
            NMI_VECTOR => nmi_stub as *const () as u64,
            DEBUG_VECTOR => debug_stub as *const () as u64,
            WAKE_VECTOR => wake_stub as *const () as u64,
            SPURIOUS_VECTOR => spurious_stub as *const () as u64,
            // SAFETY: `exception_stubs` is a table of 32 addresses built by the assembly below.
            _ => unsafe { exception_stubs[vector] },
        };
        // SAFETY: `handler` is one of the stubs below, which save what they use and end in
        // `iretq` or never return; KERNEL_CS is the 64-bit code segment of every CPU's GDT.
        let options = unsafe {
            let options = entry.set_handler_addr(VirtAddr::new(handler));
            options.set_code_selector(KERNEL_CS);
            options
        };
        // NMI, #DF and #MC switch to the IST stack so they run on a known-good stack; the
        // other exceptions to another, so an NMI for the recovery cannot overwrite them.
        let ist = match vector {
            2 | 8 | 18 => IST_INDEX,
            _ if vector < 32 => FAULT_IST_INDEX,
            _ => continue,
        };
        // SAFETY: every CPU's TSS has both IST slots set (`init`).
        unsafe { options.set_stack_index(ist) };
    }
}

/// Loads this CPU's GDT, TSS and the shared IDT.
pub fn init(cpu: usize) {
    crate::boot::protect_cpu();
    // SAFETY: entry `cpu` belongs to the calling CPU (see `PerCpu`).
    let local = unsafe { &mut *PER_CPU.0[cpu].get() };
    let ist_top = local.ist_stack.as_ptr() as u64 + IST_STACK_SIZE as u64;
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[usize::from(IST_INDEX)] = VirtAddr::new(ist_top);
    let fault_top = local.fault_stack.as_ptr() as u64 + IST_STACK_SIZE as u64;
    tss.interrupt_stack_table[usize::from(FAULT_IST_INDEX)] = VirtAddr::new(fault_top);
    let tss = local.tss.write(tss);
    let mut gdt = GlobalDescriptorTable::empty();
    let cs = gdt.append(Descriptor::kernel_code_segment());
    let ds = gdt.append(Descriptor::kernel_data_segment());
    // SAFETY: the TSS lives in this CPU's static entry for the whole run.
    let tr = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
    debug_assert!(cs == KERNEL_CS && ds == KERNEL_DS && tr == KERNEL_TR);
    let gdt = local.gdt.write(gdt);
    let idt = DescriptorTablePointer {
        limit: (size_of::<[Entry<HandlerFunc>; VECTORS]>() - 1) as u16,
        base: VirtAddr::new(IDT.0.get() as u64),
    };
    // SAFETY: the GDT is static and not changed while loaded, and keeps the boot code and data
    // selectors, so reloading the segment registers with them is valid; the TSS descriptor is
    // fresh (not busy); the IDT was filled by `init_idt` and is static.
    unsafe {
        gdt.load_unsafe();
        CS::set_reg(KERNEL_CS);
        SS::set_reg(KERNEL_DS);
        DS::set_reg(KERNEL_DS);
        ES::set_reg(KERNEL_DS);
        load_tss(KERNEL_TR);
        lidt(&idt);
    }
}

/// The current GDT and IDT bases, for the VMCS host-state area.
pub fn descriptor_bases(cpu: usize) -> (u64, u64, u64) {
    // SAFETY: entry `cpu` is only written by `init`, which has run on the calling CPU.
    let local = unsafe { &*PER_CPU.0[cpu].get() };
    // SAFETY: as above, `init` wrote the GDT.
    let gdt = unsafe { local.gdt.assume_init_ref() }.entries().as_ptr() as u64;
    let tss = local.tss.as_ptr() as u64;
    (gdt, tss, IDT.0.get() as u64)
}

/// What the exception stubs push, lowest address first; `fault` handles it.
#[repr(C)]
pub struct ExceptionFrame {
    pub gprs: [u64; 15],
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
}

#[unsafe(no_mangle)]
extern "C" fn wake_interrupt() {
    apic::end_of_interrupt();
}

// The wake-up interrupt only has to be acknowledged; the spurious vector needs no EOI
// (SDM Vol. 3A, 12.9). The stubs keep every register the interrupted code may be using.
global_asm!(
    r#"
    .section .text.wake, "ax"
    .balign 16
    .global wake_stub, spurious_stub, nmi_stub, debug_stub
wake_stub:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    call wake_interrupt
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
    .balign 16
debug_stub:
    push 0
    push 1
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rbp
    push rdi
    push rsi
    push rdx
    push rcx
    push rbx
    push rax
    mov rbx, rsp
    mov rdi, rsp
    and rsp, -16
    call debug_step
    mov rsp, rbx
    pop rax
    pop rbx
    pop rcx
    pop rdx
    pop rsi
    pop rdi
    pop rbp
    pop r8
    pop r9
    pop r10
    pop r11
    pop r12
    pop r13
    pop r14
    pop r15
    add rsp, 16
    iretq
    .balign 16
spurious_stub:
    iretq
    .balign 16
nmi_stub:
    lock inc qword ptr [rip + HOST_NMIS]
    cmp dword ptr [rip + NMI_CHECKS], 0
    jne 1f
    iretq
1:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    push rbx
    mov rbx, rsp
    lea rdi, [rsp + 80]
    mov rsi, [rsp + 64]
    and rsp, -16
    call nmi_check
    mov rsp, rbx
    cmp rax, -1
    je 2f
    add rsp, 80
    iretq
2:
    pop rbx
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
"#
);

// Vectors 8, 10-14, 17, 21, 29 and 30 push an error code; the others get a zero so every frame
// has the same layout.
global_asm!(
    r#"
    .macro STUB vector, has_error
    .balign 16
exception_stub_\vector:
    .if \has_error == 0
    push 0
    .endif
    push \vector
    jmp exception_common
    .endm

    .section .text.exceptions, "ax"
    STUB 0, 0
    STUB 1, 0
    STUB 2, 0
    STUB 3, 0
    STUB 4, 0
    STUB 5, 0
    STUB 6, 0
    STUB 7, 0
    STUB 8, 1
    STUB 9, 0
    STUB 10, 1
    STUB 11, 1
    STUB 12, 1
    STUB 13, 1
    STUB 14, 1
    STUB 15, 0
    STUB 16, 0
    STUB 17, 1
    STUB 18, 0
    STUB 19, 0
    STUB 20, 0
    STUB 21, 1
    STUB 22, 0
    STUB 23, 0
    STUB 24, 0
    STUB 25, 0
    STUB 26, 0
    STUB 27, 0
    STUB 28, 0
    STUB 29, 1
    STUB 30, 1
    STUB 31, 0

exception_common:
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rbp
    push rdi
    push rsi
    push rdx
    push rcx
    push rbx
    push rax
    mov rdi, rsp
    and rsp, -16
    call exception_entry
    ud2

    .section .rodata.exception_stubs, "a"
    .balign 8
    .global exception_stubs
exception_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\v
    .endr
"#
);
