//! What the loader tells the hypervisor: which loader it was, the boot command line and the
//! module that carries the guest images (Multiboot2 only).
//!
//! All of it is the loader's word. Sizes are bounded before they are followed, the command line
//! is copied out, and module addresses are only recorded here, to be checked against the board
//! before anything moves (`tandem_core::beside::check`): the images module may be moved over
//! the loader's information, so nothing keeps pointing into it.

use spin::Once;
use tandem_core::beside::{IMAGES_MODULE, Module};

use crate::boot::{MULTIBOOT2_MAGIC, PVH_MAGIC};

/// Multiboot2 information tags (Multiboot2 specification 2.0, 3.6.2): after an 8-byte fixed
/// part (`total_size`, `reserved`), tags at 8-byte aligned offsets, each starting with `type`
/// and `size` (u32 each; `size` counts the header, not the padding to the next tag), ending with
/// a tag of type 0 and size 8.
const MB2_TAG_END: u32 = 0;
/// Boot command line (3.6.5): `type` = 1, `size`, then a NUL-terminated UTF-8 string.
const MB2_TAG_CMDLINE: u32 = 1;
/// Modules (3.6.6): `type` = 3, `size`, `mod_start`, `mod_end` (u32 physical addresses; GRUB
/// writes `mod_end` = `mod_start` + the file's size), then the module's NUL-terminated string.
const MB2_TAG_MODULE: u32 = 3;
const MB2_MODULE_STRING: u64 = 16;
/// The largest information structure read (GRUB's, with its memory map, ELF sections and ACPI
/// tables, is a few KiB).
const MB2_MAX_SIZE: u64 = 1 << 20;
/// Offset of `cmdline_paddr` in `hvm_start_info` (Xen `arch-x86/hvm/start_info.h`).
const PVH_CMDLINE: u64 = 24;
const CMDLINE_MAX: usize = 256;
/// The identity map `boot.rs` sets up: the loader's data must lie below it to be read.
const MAPPED: u64 = 1 << 32;

pub enum Loader {
    Multiboot2,
    Pvh,
    Unknown,
}

/// The command line, copied out of the loader's memory.
static CMDLINE: Once<heapless::String<CMDLINE_MAX>> = Once::new();

pub struct BootInfo {
    pub loader: Loader,
    /// The module named [`IMAGES_MODULE`], as the loader describes it.
    pub images: Option<Module>,
    /// How many modules the loader passed.
    pub modules: u32,
    /// The loader's information was cut short: a tag overran it, or its size was impossible.
    pub malformed: bool,
}

/// Reads 32 bits of loader data at `addr`.
///
/// # Safety
/// `addr..addr + 4` lies in the loader's boot information, below 4 GiB (identity-mapped) and
/// not yet reused.
unsafe fn read_u32(addr: u64) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { (addr as *const u32).read_unaligned() }
}

/// The bytes at `addr..addr + len` up to the first NUL.
///
/// # Safety
/// As [`read_u32`], for the whole range.
unsafe fn c_string(addr: u64, len: u64) -> impl Iterator<Item = u8> {
    (addr..addr + len)
        // SAFETY: the caller's contract covers every byte of the range.
        .map(|a| unsafe { (a as *const u8).read() })
        .take_while(|&b| b != 0)
}

/// Keeps the command line the loader passed at `addr`, at most `len` bytes of it (up to its
/// first NUL, at most [`CMDLINE_MAX`]), if it is text.
///
/// # Safety
/// As [`read_u32`], for `addr..addr + len`.
unsafe fn keep_cmdline(addr: u64, len: u64) {
    let mut bytes = heapless::Vec::<u8, CMDLINE_MAX>::new();
    // SAFETY: the caller's contract.
    for b in unsafe { c_string(addr, len.min(CMDLINE_MAX as u64)) } {
        let _ = bytes.push(b);
    }
    if let Ok(line) = heapless::String::from_utf8(bytes) {
        CMDLINE.call_once(|| line);
    }
}

impl BootInfo {
    /// Interprets the registers the boot code passed on. Must run first, before anything
    /// reuses low memory (the AP trampoline) or moves the images module: GRUB and QEMU leave
    /// their boot information at `info`, and nothing has overwritten it yet.
    pub fn parse(magic: u32, info: u64) -> Self {
        if magic == MULTIBOOT2_MAGIC {
            return Self::multiboot2(info);
        }
        let mut found = Self {
            loader: Loader::Unknown,
            images: None,
            modules: 0,
            malformed: false,
        };
        // SAFETY: on the PVH path `info` points at `hvm_start_info`, whose first word is its magic.
        if info != 0 && info + 32 <= MAPPED && unsafe { read_u32(info) } == PVH_MAGIC {
            found.loader = Loader::Pvh;
            // SAFETY: `cmdline_paddr` is a field of the same structure.
            let cmdline = unsafe { ((info + PVH_CMDLINE) as *const u64).read_unaligned() };
            if cmdline != 0 && cmdline < MAPPED {
                // SAFETY: QEMU's option ROM wrote the NUL-terminated line there; the read stops
                // below 4 GiB.
                unsafe { keep_cmdline(cmdline, (MAPPED - cmdline).min(CMDLINE_MAX as u64)) };
            }
        }
        found
    }

    /// Walks the Multiboot2 information at `info` (3.6.2), bounded by its declared size.
    fn multiboot2(info: u64) -> Self {
        let mut found = Self {
            loader: Loader::Multiboot2,
            images: None,
            modules: 0,
            malformed: false,
        };
        // The fixed part, then at least the end tag: 16 bytes, 8-byte aligned (3.6.2).
        if !info.is_multiple_of(8) || info + 16 > MAPPED {
            found.malformed = true;
            return found;
        }
        // SAFETY: GRUB passed the information's address in EBX; its fixed part lies below 4 GiB
        // (checked above).
        let total = u64::from(unsafe { read_u32(info) });
        if !(16..=MB2_MAX_SIZE).contains(&total) || info + total > MAPPED {
            found.malformed = true;
            return found;
        }
        let end = info + total;
        let mut tag = info + 8;
        while tag + 8 <= end {
            // SAFETY: the tag header lies inside the information's declared size.
            let (kind, size) = unsafe { (read_u32(tag), u64::from(read_u32(tag + 4))) };
            if kind == MB2_TAG_END {
                return found;
            }
            if size < 8 || size > end - tag {
                break;
            }
            match kind {
                MB2_TAG_CMDLINE => {
                    // SAFETY: the string lies inside this tag, inside the information.
                    unsafe { keep_cmdline(tag + 8, size - 8) };
                }
                MB2_TAG_MODULE if size >= MB2_MODULE_STRING => {
                    found.modules += 1;
                    // SAFETY: `mod_start`, `mod_end` and the string lie inside this tag.
                    let (start, stop, named) = unsafe {
                        (
                            read_u32(tag + 8),
                            read_u32(tag + 12),
                            c_string(tag + MB2_MODULE_STRING, size - MB2_MODULE_STRING)
                                .eq(IMAGES_MODULE.bytes()),
                        )
                    };
                    if named && found.images.is_none() {
                        found.images = Some(Module {
                            start: start.into(),
                            end: stop.into(),
                        });
                    }
                }
                _ => {}
            }
            tag += size.next_multiple_of(8);
        }
        // Ran past the declared size, or a tag's size was impossible: the end tag never came.
        found.malformed = true;
        found
    }

    pub fn loader_name(&self) -> &'static str {
        match self.loader {
            Loader::Multiboot2 => "multiboot2",
            Loader::Pvh => "PVH",
            Loader::Unknown => "an unknown loader",
        }
    }

    /// The command line (at most 256 bytes, up to its first NUL), if it is text.
    pub fn cmdline(&self) -> &'static str {
        CMDLINE.get().map_or("", |line| line.as_str())
    }
}
