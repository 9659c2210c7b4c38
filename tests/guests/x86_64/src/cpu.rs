//! Instructions the guests use, wrapped. Guests are bare-metal test programs: each wrapper is
//! exactly the instruction, so tests can provoke what they mean to.

use core::arch::asm;

pub fn outb(port: u16, value: u8) {
    // SAFETY: a test guest owns its (virtual) machine; port writes are what it tests.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) }
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as above.
    unsafe { asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack)) }
    v
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as above.
    unsafe { asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack)) }
    v
}

pub fn outl(port: u16, value: u32) {
    // SAFETY: as above.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack)) }
}

pub fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// RDTSCP: the time-stamp counter and IA32_TSC_AUX.
pub fn rdtscp() -> (u64, u32) {
    let mut aux = 0;
    // SAFETY: reads the time-stamp counter and TSC_AUX; the caller checked CPUID for RDTSCP.
    let tsc = unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
    (tsc, aux)
}

/// RDMSR; 2 bytes long, so a fault handler that expects it skips 2.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: may fault; the caller has armed `expect_fault`.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) }
    u64::from(hi) << 32 | u64::from(lo)
}

/// WRMSR; 2 bytes long.
pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: as `rdmsr`.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack))
    }
}

/// VMXON [rax]: 4 bytes long. In a partition it must fault (#UD), never reach VMX.
pub fn vmxon(region: u64) {
    // SAFETY: as `rdmsr`.
    unsafe { asm!(".byte 0xf3, 0x0f, 0xc7, 0x30", in("rax") &region, options(nostack)) }
}

pub fn read_u64(addr: u64) -> u64 {
    // SAFETY: may be outside the partition's memory on purpose (the hostile guest).
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

pub fn write_u64(addr: u64, value: u64) {
    // SAFETY: as `read_u64`.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

static GDT: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];

#[repr(C, packed)]
pub struct DescriptorPointer {
    pub limit: u16,
    pub base: u64,
}

/// The hypervisor starts guests with flat segments but no GDT in memory; interrupts need one.
pub fn load_gdt() {
    let ptr = DescriptorPointer {
        limit: (core::mem::size_of_val(&GDT) - 1) as u16,
        base: GDT.as_ptr() as u64,
    };
    // SAFETY: the GDT keeps selectors 0x08 (code) and 0x10 (data) the guest already uses.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push 0x08",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {tmp:e}, 0x10",
            "mov ds, {tmp:e}",
            "mov es, {tmp:e}",
            "mov ss, {tmp:e}",
            ptr = in(reg) &ptr,
            tmp = out(reg) _,
        )
    }
}

/// Makes every exception undeliverable, then raises one: a triple fault.
pub fn triple_fault() -> ! {
    let empty = DescriptorPointer { limit: 0, base: 0 };
    // SAFETY: deliberately breaks the guest; only the hypervisor's reaction matters.
    unsafe { asm!("lidt [{}]", "ud2", in(reg) &empty, options(noreturn)) }
}

/// Halts with interrupts disabled: nothing can ever wake the vCPU.
pub fn halt_forever() -> ! {
    // SAFETY: as `triple_fault`.
    unsafe { asm!("cli", "hlt", options(noreturn)) }
}
