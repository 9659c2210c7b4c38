//! Guest images from files: a flat binary, loaded and entered where the partition says; an ELF
//! executable, flattened from its loadable segments and entered at its entry point; or a Linux
//! arm64 kernel `Image`, placed by its header (Documentation/arch/arm64/booting.rst).

use std::path::Path;

use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Architecture, Endianness, Object, ObjectKind};
use serde::Deserialize;

use crate::Arch;

/// The largest image a partition may name (the bundle carries it inside the hypervisor's image).
pub const MAX_IMAGE: u64 = 64 << 20;

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Bytes loaded at `load` and entered at `entry`, both given by the partition.
    Flat,
    /// An ELF64 executable for the board's architecture: loaded at its segments' physical
    /// addresses, entered at its entry point.
    Elf,
    /// A Linux arm64 kernel `Image`: `text_offset` above the 2 MiB-aligned base of the
    /// partition's first memory region, entered at its first byte.
    Linux,
}

/// What the partition says about where its image goes.
pub struct Requested {
    pub load: Option<u64>,
    pub entry: Option<u64>,
    /// The guest-physical base of the partition's first memory region.
    pub memory_base: u64,
}

/// An image ready for the bundle: its bytes, where they go and where the guest starts.
#[derive(Debug, Clone)]
pub struct FileImage {
    pub bytes: Vec<u8>,
    pub load: u64,
    pub entry: u64,
    /// A Linux kernel's `image_size`: the memory it uses from `load`, BSS included.
    pub image_size: Option<u64>,
}

/// The bytes of the file at `path` (an image or an initial RAM disk), which must have some and
/// at most [`MAX_IMAGE`].
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if bytes.is_empty() {
        return Err(format!("`{}` is empty", path.display()));
    }
    if bytes.len() as u64 > MAX_IMAGE {
        return Err(format!(
            "`{}` has {} bytes, more than the {} MiB an image may have",
            path.display(),
            bytes.len(),
            MAX_IMAGE >> 20
        ));
    }
    Ok(bytes)
}

/// Reads the image at `path` in `format` for a board of `arch`, placed as `at` says: `load`
/// and `entry`, which a flat image needs and the other formats must not have. The error says
/// why, for the caller to name the file and field.
pub fn read(path: &Path, format: Format, arch: Arch, at: Requested) -> Result<FileImage, String> {
    let bytes = read_bytes(path)?;
    if format != Format::Flat && (at.load.is_some() || at.entry.is_some()) {
        return Err(
            "this format takes `load` and `entry` from the image itself: leave them out".into(),
        );
    }
    let named = |why: String| format!("`{}`: {why}", path.display());
    match format {
        Format::Flat => {
            let load = at
                .load
                .ok_or("a flat image needs `load`, the address it is copied to")?;
            let entry = at
                .entry
                .ok_or("a flat image needs `entry`, where the guest starts")?;
            Ok(FileImage {
                bytes,
                load,
                entry,
                image_size: None,
            })
        }
        Format::Elf => flatten(&bytes, arch).map_err(named),
        Format::Linux if arch != Arch::Aarch64 => Err(
            "format \"linux\" is the arm64 kernel Image; x86 kernels are not supported yet".into(),
        ),
        Format::Linux => linux(bytes, at.memory_base).map_err(named),
    }
}

/// The arm64 kernel `Image` header (booting.rst, "Call the kernel image"): code0/code1, then
/// little-endian `text_offset` at 8, `image_size` at 16, `flags` at 24, and the magic
/// "ARM\x64" at 56.
fn linux(bytes: Vec<u8>, memory_base: u64) -> Result<FileImage, String> {
    const MAGIC: &[u8] = b"ARM\x64";
    const BLOCK: u64 = 2 << 20;
    if bytes.get(56..60) != Some(MAGIC) {
        return Err("no arm64 kernel Image header (magic \"ARM\\x64\" at byte 56)".into());
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (text_offset, image_size, flags) = (word(8), word(16), word(24));
    if image_size == 0 {
        return Err("image_size is 0: kernels before Linux 3.17 are not supported".into());
    }
    if flags & 1 != 0 {
        return Err("a big-endian kernel: the guest runs little-endian".into());
    }
    if (bytes.len() as u64) > image_size {
        return Err(format!(
            "the file has {} bytes, more than the header's image_size {image_size:#x}",
            bytes.len()
        ));
    }
    if text_offset >= BLOCK {
        return Err(format!("text_offset {text_offset:#x} is not below 2 MiB"));
    }
    let load = memory_base.next_multiple_of(BLOCK) + text_offset;
    Ok(FileImage {
        bytes,
        load,
        entry: load,
        image_size: Some(image_size),
    })
}

/// The loadable segments of an ELF executable as one image from the lowest physical address to
/// the end of the highest segment's memory (gaps and `.bss` as zeros: the partition's memory is
/// zeroed anyway, and the image's size then covers everything the program uses).
fn flatten(elf: &[u8], arch: Arch) -> Result<FileImage, String> {
    let file = ElfFile64::<Endianness>::parse(elf).map_err(|_| "not an ELF64 file")?;
    let wanted = match arch {
        Arch::X86_64 => Architecture::X86_64,
        Arch::Aarch64 => Architecture::Aarch64,
    };
    if file.architecture() != wanted {
        return Err(format!(
            "built for {:?}, not for this board's {wanted:?}",
            file.architecture()
        ));
    }
    if !file.is_little_endian() {
        return Err("big-endian: the guest runs little-endian".into());
    }
    if file.kind() != ObjectKind::Executable {
        return Err("not a fixed-address executable (ET_EXEC); position-independent images are not relocated".into());
    }
    let endian = file.endian();
    let mut segments = Vec::new();
    for header in file.elf_program_headers() {
        if header.p_type(endian) != PT_LOAD || header.p_memsz(endian) == 0 {
            continue;
        }
        let (addr, filesz, memsz) = (
            header.p_paddr(endian),
            header.p_filesz(endian),
            header.p_memsz(endian),
        );
        let data = header
            .data(endian, elf)
            .map_err(|_| format!("a segment at {addr:#x} lies outside the file"))?;
        if filesz > memsz {
            return Err(format!(
                "the segment at {addr:#x} has more file bytes than memory"
            ));
        }
        let end = addr
            .checked_add(memsz)
            .ok_or_else(|| format!("the segment at {addr:#x} wraps around"))?;
        segments.push((addr, end, data));
    }
    segments.sort_by_key(|&(addr, _, _)| addr);
    let (Some(&(lo, _, _)), Some(hi)) = (segments.first(), segments.iter().map(|s| s.1).max())
    else {
        return Err("no loadable segment".into());
    };
    for pair in segments.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(format!(
                "segments at {:#x} and {:#x} overlap",
                pair[0].0, pair[1].0
            ));
        }
    }
    if hi - lo > MAX_IMAGE {
        return Err(format!(
            "its segments span {} bytes, more than the {} MiB an image may have",
            hi - lo,
            MAX_IMAGE >> 20
        ));
    }
    let entry = file.entry();
    if !(lo..hi).contains(&entry) {
        return Err(format!(
            "its entry point {entry:#x} is outside its segments ({lo:#x}..{hi:#x})"
        ));
    }
    let mut bytes = vec![0; (hi - lo) as usize];
    for (addr, _, data) in segments {
        let at = (addr - lo) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
    }
    Ok(FileImage {
        bytes,
        load: lo,
        entry,
        image_size: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;

    /// A little-endian ELF64 executable for `machine` entered at `entry`, with one PT_LOAD
    /// segment per `(paddr, bytes, memsz)`.
    fn elf(machine: u16, entry: u64, segments: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // ELFDATA2LSB
        out[6] = 1; // EV_CURRENT
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&machine.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut data_at = 64 + 56 * segments.len() as u64;
        for &(paddr, bytes, memsz) in segments {
            let mut ph = vec![0u8; 56];
            ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R X
            ph[8..16].copy_from_slice(&data_at.to_le_bytes());
            ph[16..24].copy_from_slice(&paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(&ph);
            data_at += bytes.len() as u64;
        }
        for &(_, bytes, _) in segments {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn segments_are_laid_out_at_their_addresses_with_zeros_between_and_after() {
        let file = elf(
            EM_X86_64,
            0x20_0000,
            &[(0x20_1000, b"data", 8), (0x20_0000, b"code", 4)],
        );
        let image = flatten(&file, Arch::X86_64).unwrap();
        assert_eq!((image.load, image.entry), (0x20_0000, 0x20_0000));
        assert_eq!(image.bytes.len(), 0x1008);
        assert_eq!(&image.bytes[..4], b"code");
        assert_eq!(&image.bytes[0x1000..0x1004], b"data");
        assert!(image.bytes[4..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&image.bytes[0x1004..], &[0; 4]);
    }

    #[test]
    fn an_elf_for_the_other_architecture_is_refused() {
        let file = elf(EM_AARCH64, 0x4020_0000, &[(0x4020_0000, b"code", 4)]);
        let why = flatten(&file, Arch::X86_64).unwrap_err();
        assert!(why.contains("not for this board's X86_64"), "{why}");
    }

    #[test]
    fn malformed_executables_are_refused_with_the_reason() {
        let cases: [(Vec<u8>, &str); 4] = [
            (elf(EM_X86_64, 0x1000, &[]), "no loadable segment"),
            (
                elf(EM_X86_64, 0x9000, &[(0x1000, b"code", 4)]),
                "entry point 0x9000 is outside",
            ),
            (
                elf(
                    EM_X86_64,
                    0x1000,
                    &[(0x1000, b"code", 16), (0x1008, b"more", 4)],
                ),
                "overlap",
            ),
            (
                elf(EM_X86_64, 0x1000, &[(0x1000, b"code", 2)]),
                "more file bytes than memory",
            ),
        ];
        for (file, reason) in cases {
            let why = flatten(&file, Arch::X86_64).unwrap_err();
            assert!(why.contains(reason), "`{why}` lacks `{reason}`");
        }
        assert!(flatten(b"not an elf", Arch::X86_64).is_err());
    }

    /// An arm64 kernel Image header with these fields, followed by `body` bytes.
    fn kernel(text_offset: u64, image_size: u64, flags: u64, body: usize) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[8..16].copy_from_slice(&text_offset.to_le_bytes());
        out[16..24].copy_from_slice(&image_size.to_le_bytes());
        out[24..32].copy_from_slice(&flags.to_le_bytes());
        out[56..60].copy_from_slice(b"ARM\x64");
        out.resize(64 + body, 0xaa);
        out
    }

    #[test]
    fn a_kernel_goes_text_offset_above_the_2_mib_aligned_memory_base() {
        let image = linux(kernel(0x8_0000, 0x20_0000, 0xa, 16), 0x4010_0000).unwrap();
        assert_eq!(image.load, 0x4028_0000);
        assert_eq!(image.entry, image.load);
        assert_eq!(image.image_size, Some(0x20_0000));
    }

    #[test]
    fn kernel_headers_that_cannot_boot_are_refused_with_the_reason() {
        let cases: [(Vec<u8>, &str); 5] = [
            (vec![0; 64], "no arm64 kernel Image header"),
            (kernel(0, 0, 0, 0), "kernels before Linux 3.17"),
            (kernel(0, 0x1000, 1, 0), "big-endian"),
            (kernel(0, 0x20, 0, 0), "more than the header's image_size"),
            (kernel(0x20_0000, 0x1000, 0, 0), "not below 2 MiB"),
        ];
        for (bytes, reason) in cases {
            let why = linux(bytes, 0x4000_0000).unwrap_err();
            assert!(why.contains(reason), "`{why}` lacks `{reason}`");
        }
    }
}
