//! I/O and MSR bitmaps: a set bit makes the access exit. Everything starts trapped; only what the
//! configuration grants, or what VT-x switches itself, is cleared (SDM Vol. 3C, 26.6.4, 26.6.9).

use tandem_core::config::{PortMode, PortRange};

use tandem_hw::frames::{self, OutOfFrames};

/// MSRs partitions own without exits: segment bases, SYSCALL/SYSENTER targets (VT-x saves
/// SYSENTER; the hypervisor uses neither SYSCALL nor SWAPGS), EFER and PAT, which the
/// VM-entry and VM-exit controls switch, and TSC_AUX, which RDTSCP and RDPID read: CPUID
/// announces them, the hypervisor never reads it, and each CPU runs one partition only.
const PASSTHROUGH_MSRS: [u32; 13] = [
    0x174,       // IA32_SYSENTER_CS
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0x277,       // IA32_PAT
    0xc000_0080, // IA32_EFER
    0xc000_0081, // IA32_STAR
    0xc000_0082, // IA32_LSTAR
    0xc000_0083, // IA32_CSTAR
    0xc000_0084, // IA32_FMASK
    0xc000_0100, // IA32_FS_BASE
    0xc000_0101, // IA32_GS_BASE
    0xc000_0102, // IA32_KERNEL_GS_BASE
    0xc000_0103, // IA32_TSC_AUX
];
/// Readable without exits: the time-stamp counter (except by a fault-tolerant partition, whose
/// copies read the time the log gives them).
const IA32_TSC: u32 = 0x10;

fn filled_frame() -> Result<*mut u8, OutOfFrames> {
    let frame = frames::alloc()?.raw() as *mut u8;
    // SAFETY: a fresh identity-mapped frame owned by the caller.
    unsafe { core::ptr::write_bytes(frame, 0xff, 4096) };
    Ok(frame)
}

fn clear_bit(base: *mut u8, bit: u32) {
    // SAFETY: `base` is a 4 KiB bitmap frame and callers keep `bit` < 32768.
    unsafe { *base.add((bit / 8) as usize) &= !(1 << (bit % 8)) };
}

/// I/O bitmaps A (ports 0-0x7fff) and B (0x8000-0xffff) with passthrough ranges cleared.
pub fn io(ports: &[PortRange]) -> Result<(u64, u64), OutOfFrames> {
    let a = filled_frame()?;
    let b = filled_frame()?;
    for range in ports.iter().filter(|r| r.mode == PortMode::Passthrough) {
        for port in u32::from(range.base)..range.end() {
            if port < 0x8000 {
                clear_bit(a, port);
            } else {
                clear_bit(b, port - 0x8000);
            }
        }
    }
    Ok((a as u64, b as u64))
}

/// The MSR bitmap: read-low, read-high, write-low, write-high quarters of 1 KiB each;
/// `replicated` for a fault-tolerant partition.
pub fn msr(replicated: bool) -> Result<u64, OutOfFrames> {
    let map = filled_frame()?;
    let quarter = |msr: u32| if msr >= 0xc000_0000 { 1024 * 8 } else { 0 };
    let tsc = (!replicated).then_some(IA32_TSC);
    for msr in PASSTHROUGH_MSRS.iter().chain(tsc.iter()) {
        clear_bit(map, quarter(*msr) + (msr & 0x1fff));
    }
    for msr in PASSTHROUGH_MSRS {
        clear_bit(map, 2048 * 8 + quarter(msr) + (msr & 0x1fff));
    }
    Ok(map as u64)
}
