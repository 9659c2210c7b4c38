//! Every instruction CPUID announces must run: for each announced feature, execute it and count
//! the faults. A fault means the hypervisor shows a feature its VMX controls or MSR model make
//! unusable.

use core::arch::asm;

use tandem_guest::cpu::{cpuid, rdmsr};
use tandem_guest::{expect_fault, faults_taken, println};

const UD: u8 = 6;
const GP: u8 = 13;

fn cpuid_sub(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Registers in CPUID order.
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// A feature: its name, where CPUID announces it, and a run of its instruction whose length a
/// fault handler skips.
struct Feature {
    name: &'static str,
    leaf: u32,
    reg: usize,
    bit: u32,
    run: fn(),
    len: u8,
    fault: u8,
}

macro_rules! bytes {
    ($($b:literal),*) => {
        || {
            // SAFETY: one instruction that may fault (the check arms `expect_fault` first); RAX,
            // RCX, RDX and RDI hold a harmless operand: a valid stack address or small numbers.
            unsafe {
                asm!(concat!(".byte ", $(stringify!($b), ", ",)* "0x90"),
                     inout("rax") 2u64 => _, inout("rdi") &0u128 as *const u128 => _,
                     out("rcx") _, out("rdx") _, options(nostack))
            }
        }
    };
}

const FEATURES: &[Feature] = &[
    Feature {
        name: "RDTSC",
        leaf: 1,
        reg: EDX,
        bit: 4,
        run: bytes!(0x0f, 0x31),
        len: 2,
        fault: UD,
    },
    Feature {
        name: "RDTSCP",
        leaf: 0x8000_0001,
        reg: EDX,
        bit: 27,
        run: bytes!(0x0f, 0x01, 0xf9),
        len: 3,
        fault: UD,
    },
    Feature {
        name: "RDPID",
        leaf: 7,
        reg: ECX,
        bit: 22,
        run: bytes!(0xf3, 0x0f, 0xc7, 0xf8),
        len: 4,
        fault: UD,
    },
    Feature {
        name: "RDRAND",
        leaf: 1,
        reg: ECX,
        bit: 30,
        run: bytes!(0x0f, 0xc7, 0xf0),
        len: 3,
        fault: UD,
    },
    Feature {
        name: "RDSEED",
        leaf: 7,
        reg: EBX,
        bit: 18,
        run: bytes!(0x0f, 0xc7, 0xf8),
        len: 3,
        fault: UD,
    },
    Feature {
        name: "INVPCID",
        leaf: 7,
        reg: EBX,
        bit: 10,
        run: bytes!(0x66, 0x0f, 0x38, 0x82, 0x07),
        len: 5,
        fault: UD,
    },
    Feature {
        name: "POPCNT",
        leaf: 1,
        reg: ECX,
        bit: 23,
        run: bytes!(0xf3, 0x48, 0x0f, 0xb8, 0xc0),
        len: 5,
        fault: UD,
    },
    Feature {
        name: "BMI1",
        leaf: 7,
        reg: EBX,
        bit: 3,
        run: bytes!(0xc4, 0xe2, 0x78, 0xf2, 0xc0),
        len: 5,
        fault: UD,
    },
    Feature {
        name: "BMI2",
        leaf: 7,
        reg: EBX,
        bit: 8,
        run: bytes!(0xc4, 0xe2, 0x78, 0xf5, 0xc0),
        len: 5,
        fault: UD,
    },
    Feature {
        name: "ADX",
        leaf: 7,
        reg: EBX,
        bit: 19,
        run: bytes!(0x66, 0x0f, 0x38, 0xf6, 0xc0),
        len: 5,
        fault: UD,
    },
    Feature {
        name: "CLFLUSHOPT",
        leaf: 7,
        reg: EBX,
        bit: 23,
        run: bytes!(0x66, 0x0f, 0xae, 0x3f),
        len: 4,
        fault: UD,
    },
    Feature {
        name: "CLWB",
        leaf: 7,
        reg: EBX,
        bit: 24,
        run: bytes!(0x66, 0x0f, 0xae, 0x37),
        len: 4,
        fault: UD,
    },
    Feature {
        name: "WBNOINVD",
        leaf: 0x8000_0008,
        reg: EBX,
        bit: 9,
        run: bytes!(0xf3, 0x0f, 0x09),
        len: 3,
        fault: UD,
    },
    Feature {
        name: "SPEC_CTRL",
        leaf: 7,
        reg: EDX,
        bit: 26,
        run: || {
            rdmsr(0x48);
        },
        len: 2,
        fault: GP,
    },
    Feature {
        name: "ARCH_CAPABILITIES",
        leaf: 7,
        reg: EDX,
        bit: 29,
        run: || {
            rdmsr(0x10a);
        },
        len: 2,
        fault: GP,
    },
    Feature {
        name: "AMD IBRS",
        leaf: 0x8000_0008,
        reg: EBX,
        bit: 14,
        run: || {
            rdmsr(0x48);
        },
        len: 2,
        fault: GP,
    },
];

/// CR4.OSXSAVE (bit 18): with XSAVE hidden, setting it must fault like a reserved bit.
fn osxsave_refused() -> bool {
    const OSXSAVE: u64 = 1 << 18;
    let before = faults_taken();
    // 3-byte `mov cr4, rax`, skipped by the #GP handler.
    expect_fault(GP, 3);
    // SAFETY: sets CR4.OSXSAVE if the hypervisor lets it; nothing here uses XSAVE state.
    unsafe {
        asm!("mov rax, cr4", "or rax, {b}", ".byte 0x0f, 0x22, 0xe0", b = in(reg) OSXSAVE,
             out("rax") _, options(nostack))
    };
    faults_taken() != before
}

pub fn check() -> u64 {
    // FSGSBASE and friends need no set-up; CR4.FSGSBASE stays off, so it is not checked.
    let max = cpuid(0)[0];
    let max_ext = cpuid(0x8000_0000)[0];
    let (mut announced, mut failures) = (0, 0);
    for f in FEATURES {
        let available = if f.leaf >= 0x8000_0000 {
            f.leaf <= max_ext
        } else {
            f.leaf <= max
        };
        if !available || cpuid_sub(f.leaf, 0)[f.reg] & (1 << f.bit) == 0 {
            continue;
        }
        announced += 1;
        let before = faults_taken();
        expect_fault(f.fault, f.len);
        (f.run)();
        if faults_taken() != before {
            println!(
                "ERROR: CPUID announces {} but it raised vector {}",
                f.name, f.fault
            );
            failures += 1;
        }
    }
    let xsave = cpuid(1)[2] & (1 << 26) != 0;
    if !xsave && !osxsave_refused() {
        println!("ERROR: CR4.OSXSAVE could be set while XSAVE is hidden");
        failures += 1;
    }
    println!("{announced} announced features checked, {failures} unusable");
    failures
}
