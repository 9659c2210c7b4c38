//! Guest images from files: a flat binary, loaded and entered where the partition says, or an
//! ELF executable, flattened from its loadable segments and entered at its entry point.

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
}

/// An image ready for the bundle: its bytes, where they go and where the guest starts.
#[derive(Debug, Clone)]
pub struct FileImage {
    pub bytes: Vec<u8>,
    pub load: u64,
    pub entry: u64,
}

/// Reads the image at `path` in `format` for a board of `arch`. `load` and `entry` are the
/// partition's, which a flat image needs and an ELF must not have. The error says why, for the
/// caller to name the file and field.
pub fn read(
    path: &Path,
    format: Format,
    arch: Arch,
    load: Option<u64>,
    entry: Option<u64>,
) -> Result<FileImage, String> {
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
    match format {
        Format::Flat => {
            let load = load.ok_or("a flat image needs `load`, the address it is copied to")?;
            let entry = entry.ok_or("a flat image needs `entry`, where the guest starts")?;
            Ok(FileImage { bytes, load, entry })
        }
        Format::Elf => {
            if load.is_some() || entry.is_some() {
                return Err(
                    "an ELF image takes `load` and `entry` from its headers: leave them out".into(),
                );
            }
            flatten(&bytes, arch).map_err(|why| format!("`{}`: {why}", path.display()))
        }
    }
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
}
