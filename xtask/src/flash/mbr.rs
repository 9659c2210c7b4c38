//! A disk's master boot record: the 512-byte first sector with four partition entries at byte
//! 446 and the signature 0x55 0xAA at 510 (the layout every PC BIOS and the Raspberry Pi's boot
//! ROM read). Written here rather than with `sfdisk`, so flashing to a file needs neither root
//! nor loop devices.

use anyhow::{Result, bail};

pub const SECTOR: u64 = 512;
/// FAT32 addressed by LBA: what the Raspberry Pi's boot code looks for in its boot partition.
pub const FAT32_LBA: u8 = 0x0c;
const ENTRIES: usize = 446;
const ENTRY: usize = 16;
const SIGNATURE: usize = 510;
/// The CHS geometry the FAT's boot sector states too (`mformat -h 64 -s 32`); CHS is only a
/// fallback for old readers, LBA is what counts.
pub const HEADS: u64 = 64;
pub const SECTORS_PER_TRACK: u64 = 32;

/// One primary partition: its type and where it lies, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub kind: u8,
    pub start: u64,
    pub sectors: u64,
}

/// The CHS address of `lba` under [`HEADS`] and [`SECTORS_PER_TRACK`], or the largest one
/// (cylinder 1023) past what CHS can express, as partitioning tools write it.
fn chs(lba: u64) -> [u8; 3] {
    let cylinder = lba / (HEADS * SECTORS_PER_TRACK);
    if cylinder > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / SECTORS_PER_TRACK) % HEADS;
    let sector = lba % SECTORS_PER_TRACK + 1;
    [
        head as u8,
        (sector as u8) | ((cylinder >> 2) as u8 & 0xc0),
        cylinder as u8,
    ]
}

/// A master boot record with `partition` as its only entry and no boot code (nothing on a
/// Raspberry Pi runs it).
pub fn encode(partition: Partition) -> Result<[u8; SECTOR as usize]> {
    let start = u32::try_from(partition.start)?;
    let sectors = u32::try_from(partition.sectors)?;
    let mut mbr = [0u8; SECTOR as usize];
    let entry = &mut mbr[ENTRIES..ENTRIES + ENTRY];
    entry[1..4].copy_from_slice(&chs(partition.start));
    entry[4] = partition.kind;
    entry[5..8].copy_from_slice(&chs(partition.start + partition.sectors - 1));
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[SIGNATURE] = 0x55;
    mbr[SIGNATURE + 1] = 0xaa;
    Ok(mbr)
}

/// The partitions a disk's first sector names (empty entries left out), or why it is no MBR.
pub fn decode(sector: &[u8]) -> Result<Vec<Partition>> {
    if sector.len() < SECTOR as usize {
        bail!("{} bytes: shorter than a sector", sector.len());
    }
    if sector[SIGNATURE..SIGNATURE + 2] != [0x55, 0xaa] {
        bail!(
            "no boot signature: bytes 510 and 511 are {:#04x} {:#04x}, not 0x55 0xaa",
            sector[SIGNATURE],
            sector[SIGNATURE + 1]
        );
    }
    let word =
        |e: &[u8], at: usize| u64::from(u32::from_le_bytes(e[at..at + 4].try_into().unwrap()));
    Ok(sector[ENTRIES..SIGNATURE]
        .chunks(ENTRY)
        .filter(|e| e[4] != 0)
        .map(|e| Partition {
            kind: e[4],
            start: word(e, 8),
            sectors: word(e, 12),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_reads_back_as_written() {
        let p = Partition {
            kind: FAT32_LBA,
            start: 2048,
            sectors: 129_024,
        };
        let mbr = encode(p).unwrap();
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
        assert_eq!(decode(&mbr).unwrap(), vec![p]);
        // LBA 2048 is cylinder 1, head 0, sector 1 under 64 heads and 32 sectors per track.
        assert_eq!(&mbr[447..450], &[0, 1, 1]);
    }

    #[test]
    fn past_cylinder_1023_chs_is_the_largest_address() {
        assert_eq!(chs(1024 * HEADS * SECTORS_PER_TRACK), [0xfe, 0xff, 0xff]);
    }

    #[test]
    fn a_sector_without_the_signature_is_no_mbr() {
        let error = decode(&[0u8; 512]).unwrap_err().to_string();
        assert!(error.contains("no boot signature"), "{error}");
    }
}
