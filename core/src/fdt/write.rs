//! The writer: header, an empty memory reservation map, the structure block, then the strings
//! block, into a caller's buffer, allocating nothing.

use heapless::Vec;

use super::{BEGIN_NODE, END, END_NODE, HEADER, MAGIC, PROP};

const RESERVATION_MAP: usize = 16;
const STRINGS_MAX: usize = 512;

/// The buffer (or the strings table) is too small for the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooSmall;

pub struct FdtWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    strings: Vec<u8, STRINGS_MAX>,
    depth: usize,
    full: bool,
}

impl<'a> FdtWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        let mut w = Self {
            buf,
            len: 0,
            strings: Vec::new(),
            depth: 0,
            full: false,
        };
        w.bytes(&[0; HEADER + RESERVATION_MAP]);
        w
    }

    fn bytes(&mut self, data: &[u8]) {
        match self.buf.get_mut(self.len..self.len + data.len()) {
            Some(dst) => dst.copy_from_slice(data),
            None => self.full = true,
        }
        self.len += data.len();
    }

    fn word(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.len.is_multiple_of(4) {
            self.bytes(&[0]);
        }
    }

    pub fn begin_node(&mut self, name: &str) {
        self.word(BEGIN_NODE);
        self.bytes(name.as_bytes());
        self.bytes(&[0]);
        self.pad();
        self.depth += 1;
    }

    pub fn end_node(&mut self) {
        self.word(END_NODE);
        self.depth = self.depth.saturating_sub(1);
    }

    fn name_offset(&mut self, name: &str) -> u32 {
        let s = self.strings.as_slice();
        let found = (0..s.len()).find(|&i| {
            (i == 0 || s[i - 1] == 0)
                && s[i..].starts_with(name.as_bytes())
                && s.get(i + name.len()) == Some(&0)
        });
        if let Some(at) = found {
            return at as u32;
        }
        let at = self.strings.len();
        if self.strings.extend_from_slice(name.as_bytes()).is_err() || self.strings.push(0).is_err()
        {
            self.full = true;
        }
        at as u32
    }

    pub fn prop(&mut self, name: &str, value: &[u8]) {
        let off = self.name_offset(name);
        self.word(PROP);
        self.word(value.len() as u32);
        self.word(off);
        self.bytes(value);
        self.pad();
    }

    pub fn prop_empty(&mut self, name: &str) {
        self.prop(name, &[]);
    }

    pub fn prop_str(&mut self, name: &str, value: &str) {
        let off = self.name_offset(name);
        self.word(PROP);
        self.word(value.len() as u32 + 1);
        self.word(off);
        self.bytes(value.as_bytes());
        self.bytes(&[0]);
        self.pad();
    }

    /// A property of 32-bit cells.
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) {
        let off = self.name_offset(name);
        self.word(PROP);
        self.word(4 * cells.len() as u32);
        self.word(off);
        for &c in cells {
            self.word(c);
        }
    }

    /// A property of 64-bit values, each as two cells (for `#address-cells = <2>` and
    /// `#size-cells = <2>`).
    pub fn prop_u64s(&mut self, name: &str, values: &[u64]) {
        let off = self.name_offset(name);
        self.word(PROP);
        self.word(8 * values.len() as u32);
        self.word(off);
        for &v in values {
            self.word((v >> 32) as u32);
            self.word(v as u32);
        }
    }

    /// Ends the tree and fills in the header; returns the blob's total size.
    pub fn finish(mut self) -> Result<usize, TooSmall> {
        while self.depth > 0 {
            self.end_node();
        }
        self.word(END);
        let struct_off = HEADER + RESERVATION_MAP;
        let struct_size = self.len - struct_off;
        let strings_off = self.len;
        let strings = self.strings.clone();
        self.bytes(&strings);
        let total = self.len;
        if self.full {
            return Err(TooSmall);
        }
        let header = [
            MAGIC,
            total as u32,
            struct_off as u32,
            strings_off as u32,
            HEADER as u32,
            17,
            16,
            0,
            strings.len() as u32,
            struct_size as u32,
        ];
        for (i, v) in header.iter().enumerate() {
            self.buf[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn writes_a_valid_header_structure_and_shared_strings() {
        let mut buf = [0u8; 512];
        let mut w = FdtWriter::new(&mut buf);
        w.begin_node("");
        w.prop_cells("#address-cells", &[2]);
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[0x4000_0000, 0x40_0000]);
        w.end_node();
        w.begin_node("cpus");
        w.prop_cells("#address-cells", &[1]);
        let total = w.finish().unwrap();
        assert_eq!(be(&buf, 0), MAGIC);
        assert_eq!(be(&buf, 4) as usize, total);
        let (structure, strings) = (be(&buf, 8) as usize, be(&buf, 12) as usize);
        assert_eq!(structure, 56);
        assert_eq!(be(&buf, structure), BEGIN_NODE);
        assert_eq!(be(&buf, 32) as usize, total - strings, "strings size");
        let table = &buf[strings..total];
        assert_eq!(
            table, b"#address-cells\0device_type\0reg\0",
            "each name stored once"
        );
        assert_eq!(be(&buf, strings - 4), END);
    }

    #[test]
    fn a_small_buffer_is_refused() {
        let mut buf = [0u8; 64];
        let mut w = FdtWriter::new(&mut buf);
        w.begin_node("");
        w.prop_str("compatible", "linux,dummy-virt");
        assert_eq!(w.finish(), Err(TooSmall));
    }
}
