//! What the loader tells the hypervisor: which loader it was and the boot command line.

use crate::boot::{MULTIBOOT2_MAGIC, PVH_MAGIC};

/// Multiboot2 tag type of the boot command line (Multiboot2 specification, 3.6.3).
const MB2_TAG_CMDLINE: u32 = 1;
const MB2_TAG_END: u32 = 0;
/// Offset of `cmdline_paddr` in `hvm_start_info` (Xen `arch-x86/hvm/start_info.h`).
const PVH_CMDLINE: u64 = 24;
const CMDLINE_MAX: usize = 256;

pub enum Loader {
    Multiboot2,
    Pvh,
    Unknown,
}

pub struct BootInfo {
    pub loader: Loader,
    /// Physical address of the NUL-terminated command line, or 0.
    cmdline: u64,
}

/// Reads 32 bits of loader data at `addr`.
///
/// # Safety
/// `addr` lies in the loader's boot information, identity-mapped and not yet reused.
unsafe fn read_u32(addr: u64) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { (addr as *const u32).read_unaligned() }
}

impl BootInfo {
    /// Interprets the registers the boot code passed on. Must run before anything reuses low
    /// memory (the AP trampoline). GRUB and QEMU leave their boot information at `info`, inside
    /// the identity-mapped first 4 GiB, and nothing has overwritten it yet.
    pub fn parse(magic: u32, info: u64) -> Self {
        if magic == MULTIBOOT2_MAGIC {
            // SAFETY: the multiboot2 information starts with its total size (see above).
            let total = u64::from(unsafe { read_u32(info) });
            let mut tag = info + 8;
            while tag + 8 <= info + total {
                // SAFETY: the tag header lies inside the information's declared size.
                let (kind, size) = unsafe { (read_u32(tag), read_u32(tag + 4)) };
                if kind == MB2_TAG_END || size < 8 {
                    break;
                }
                if kind == MB2_TAG_CMDLINE {
                    return Self {
                        loader: Loader::Multiboot2,
                        cmdline: tag + 8,
                    };
                }
                tag += u64::from(size).next_multiple_of(8);
            }
            return Self {
                loader: Loader::Multiboot2,
                cmdline: 0,
            };
        }
        // SAFETY: on the PVH path `info` points at `hvm_start_info`, whose first word is its magic.
        if info != 0 && unsafe { read_u32(info) } == PVH_MAGIC {
            // SAFETY: `cmdline_paddr` is a field of the same structure.
            let cmdline = unsafe { ((info + PVH_CMDLINE) as *const u64).read_unaligned() };
            return Self {
                loader: Loader::Pvh,
                cmdline,
            };
        }
        Self {
            loader: Loader::Unknown,
            cmdline: 0,
        }
    }

    pub fn loader_name(&self) -> &'static str {
        match self.loader {
            Loader::Multiboot2 => "multiboot2",
            Loader::Pvh => "PVH",
            Loader::Unknown => "an unknown loader",
        }
    }

    /// The command line, up to its first NUL (at most 256 bytes), if it is text.
    pub fn cmdline(&self) -> &'static str {
        if self.cmdline == 0 {
            return "";
        }
        // SAFETY: as in `parse`; the loader's string stays in place for the whole run because
        // nothing allocates from loader memory.
        let bytes = unsafe { core::slice::from_raw_parts(self.cmdline as *const u8, CMDLINE_MAX) };
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(0);
        core::str::from_utf8(&bytes[..len]).unwrap_or("")
    }
}
