//! The hypervisor's ELF as the flat binary a boot loader without an ELF loader takes (the
//! Raspberry Pi firmware's `kernel8.img`): its loadable segments' file bytes, each at its
//! physical address less the lowest one's, gaps as zeros.
//!
//! `.bss` ends the image as memory only (NOBITS): the boot code clears it before any Rust code
//! runs (`arch/aarch64/src/boot.rs`), so the binary stops at the last file-backed byte, as
//! `objcopy -O binary` would.

use anyhow::{Context, Result, bail};
use object::Endianness;
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};

/// A flat binary and the address its first byte is loaded at, which is also where it is entered.
pub struct Flat {
    pub base: u64,
    pub bytes: Vec<u8>,
}

/// Flattens `elf`, refusing one whose entry point is not its first byte: a firmware that jumps
/// to where it loaded the binary would otherwise start in the middle of something.
pub fn flatten(elf: &[u8]) -> Result<Flat> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not an ELF64 file")?;
    let endian = file.endian();
    let entry = file.elf_header().e_entry(endian);
    let segments: Vec<(u64, &[u8])> = file
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == PT_LOAD && p.p_filesz(endian) > 0)
        .map(|p| {
            let bytes = p
                .data(endian, file.data())
                .map_err(|()| anyhow::anyhow!("a loadable segment lies outside the file"))?;
            Ok((p.p_paddr(endian), bytes))
        })
        .collect::<Result<_>>()?;
    let Some(base) = segments.iter().map(|(at, _)| *at).min() else {
        bail!("the ELF has no loadable segment with contents");
    };
    if entry != base {
        bail!(
            "the ELF's entry point {entry:#x} is not its lowest load address {base:#x}: the \
             firmware enters the flat binary at its first byte"
        );
    }
    let end = segments
        .iter()
        .map(|(at, bytes)| at + bytes.len() as u64)
        .max()
        .unwrap_or(base);
    let mut flat = vec![0u8; usize::try_from(end - base)?];
    for (at, bytes) in segments {
        let from = usize::try_from(at - base)?;
        flat[from..from + bytes.len()].copy_from_slice(bytes);
    }
    Ok(Flat { base, bytes: flat })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian aarch64 ET_EXEC with `entry` and one PT_LOAD per `(paddr, bytes,
    /// memsz)`, the segments' bytes after the program headers.
    fn elf(entry: u64, segments: &[(u64, &[u8], u64)]) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        let mut out = vec![0u8; EHDR];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // ELFDATA2LSB
        out[6] = 1; // EV_CURRENT
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
        out[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
        out[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut offset = EHDR + PHDR * segments.len();
        for (paddr, bytes, memsz) in segments {
            let mut ph = vec![0u8; PHDR];
            ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[4..8].copy_from_slice(&7u32.to_le_bytes());
            ph[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
            ph[16..24].copy_from_slice(&paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(&ph);
            offset += bytes.len();
        }
        for (_, bytes, _) in segments {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn segments_land_at_their_offsets_with_zeros_between_and_no_bss() {
        let image = elf(
            0x4020_0000,
            &[
                (0x4020_0000, b"code", 4),
                (0x4020_0010, b"data", 0x1000),
                (0x4020_2000, b"", 0x1000),
            ],
        );
        let flat = flatten(&image).unwrap();
        assert_eq!(flat.base, 0x4020_0000);
        let mut expected = b"code".to_vec();
        expected.resize(0x10, 0);
        expected.extend_from_slice(b"data");
        assert_eq!(flat.bytes, expected);
    }

    #[test]
    fn an_entry_point_past_the_first_byte_is_refused() {
        let image = elf(0x4020_0004, &[(0x4020_0000, b"code", 4)]);
        let error = format!("{:#}", flatten(&image).err().unwrap());
        assert!(error.contains("entry point 0x40200004"), "{error}");
    }

    #[test]
    fn an_elf_without_contents_is_refused() {
        let image = elf(0x4020_0000, &[(0x4020_0000, b"", 0x1000)]);
        assert!(flatten(&image).is_err());
        assert!(flatten(b"not an elf").is_err());
    }
}
