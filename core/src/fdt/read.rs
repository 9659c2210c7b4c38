//! The reader: a property of a node named by its path, in a tree the firmware wrote.
//!
//! Hand-written rather than the `fdt` crate: that crate panics on a malformed structure block
//! (an unexpected token inside a node), and a hypervisor must say a firmware tree is bad, not
//! stop on it. Every offset here is checked; a malformed tree reads as one without the property.

use super::{BEGIN_NODE, END_NODE, HEADER, MAGIC, NOP, PROP};

/// The versions whose structure block this reader understands (16 and 17 share it).
const LAST_COMPATIBLE: u32 = 16;

/// Why bytes are not a device tree this reader can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FdtError {
    /// Fewer bytes than the header, or than the size the header declares.
    Truncated { have: usize, need: usize },
    /// The first word is not the DTB magic.
    BadMagic { found: u32 },
    /// The structure or strings block lies outside the blob.
    BadLayout,
    /// A tree that version 16 readers cannot read.
    Incompatible { last_compatible: u32 },
}

/// A device tree blob, checked enough to walk safely.
#[derive(Debug, Clone, Copy)]
pub struct FdtReader<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
}

pub(super) fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let w = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// `blob[at..at + len]`, if it is all inside.
fn block(blob: &[u8], at: u32, len: u32) -> Option<&[u8]> {
    let at = at as usize;
    blob.get(at..at.checked_add(len as usize)?)
}

/// The NUL-terminated string at `at`, without its NUL.
pub(super) fn c_str(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let rest = bytes.get(at..)?;
    Some(&rest[..rest.iter().position(|&b| b == 0)?])
}

/// Whether node name `name` (`node-name@unit-address`) is what path component `want` names:
/// the whole name, or the node name alone when `want` gives no unit address.
fn names(name: &[u8], want: &str) -> bool {
    let want = want.as_bytes();
    name == want || (!want.contains(&b'@') && name.split(|&b| b == b'@').next() == Some(want))
}

impl<'a> FdtReader<'a> {
    /// The size the header at the start of `bytes` declares: how much memory the tree spans.
    pub fn total_size(bytes: &[u8]) -> Result<usize, FdtError> {
        let truncated = FdtError::Truncated {
            have: bytes.len(),
            need: 8,
        };
        let magic = word(bytes, 0).ok_or(truncated)?;
        if magic != MAGIC {
            return Err(FdtError::BadMagic { found: magic });
        }
        Ok(word(bytes, 4).ok_or(truncated)? as usize)
    }

    /// Checks the header of the tree at the start of `blob`.
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        let total = Self::total_size(blob)?;
        let need = total.max(HEADER);
        let blob = blob.get(..need).ok_or(FdtError::Truncated {
            have: blob.len(),
            need,
        })?;
        let header = |i: usize| word(blob, 4 * i).unwrap_or(0);
        let last_compatible = header(6);
        if last_compatible > LAST_COMPATIBLE {
            return Err(FdtError::Incompatible { last_compatible });
        }
        let structure = block(blob, header(2), header(9)).ok_or(FdtError::BadLayout)?;
        let strings = block(blob, header(3), header(8)).ok_or(FdtError::BadLayout)?;
        Ok(Self { structure, strings })
    }

    /// The value of property `name` of the node at `path` (`/chosen`, `/memory`, `/`), or `None`
    /// if the tree has no such node or property, or is malformed on the way there.
    pub fn property(&self, path: &str, name: &str) -> Option<&'a [u8]> {
        let want = path.trim_matches('/');
        let depth_wanted = if want.is_empty() {
            1
        } else {
            want.split('/').count() + 1
        };
        let s = self.structure;
        // Nodes entered (the root is depth 1) and how many of them lie on the path.
        let (mut depth, mut matched) = (0usize, 0usize);
        let mut at = 0;
        loop {
            let token = word(s, at)?;
            at += 4;
            match token {
                BEGIN_NODE => {
                    let node = c_str(s, at)?;
                    at = (at + node.len() + 1).next_multiple_of(4);
                    depth += 1;
                    let on_path = match depth {
                        1 => true,
                        d => want.split('/').nth(d - 2).is_some_and(|c| names(node, c)),
                    };
                    if matched == depth - 1 && on_path {
                        matched = depth;
                    }
                }
                END_NODE => {
                    // An END_NODE without its BEGIN_NODE is a malformed tree.
                    let parent = depth.checked_sub(1)?;
                    if matched == depth {
                        if depth == depth_wanted {
                            return None;
                        }
                        matched = parent;
                    }
                    depth = parent;
                }
                PROP => {
                    let len = word(s, at)? as usize;
                    let name_at = word(s, at + 4)? as usize;
                    let value = s.get(at + 8..(at + 8).checked_add(len)?)?;
                    at = (at + 8 + len).next_multiple_of(4);
                    if matched == depth
                        && depth == depth_wanted
                        && c_str(self.strings, name_at)? == name.as_bytes()
                    {
                        return Some(value);
                    }
                }
                NOP => {}
                // END, or a token no valid tree has.
                _ => return None,
            }
        }
    }

    pub(super) fn structure(&self) -> &'a [u8] {
        self.structure
    }

    pub(super) fn strings(&self) -> &'a [u8] {
        self.strings
    }

    /// A string property, without its terminating NUL; `None` also when it is not UTF-8.
    pub fn property_str(&self, path: &str, name: &str) -> Option<&'a str> {
        let value = self.property(path, name)?;
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        core::str::from_utf8(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::FdtWriter;

    fn machine_tree(buf: &mut [u8]) -> usize {
        let mut w = FdtWriter::new(buf);
        w.begin_node("");
        w.prop_str("compatible", "linux,dummy-virt");
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[0x4000_0000, 0x1000_0000]);
        w.end_node();
        w.begin_node("cpus");
        w.begin_node("chosen");
        w.prop_str("bootargs", "decoy");
        w.end_node();
        w.end_node();
        w.begin_node("chosen");
        w.prop_str("stdout-path", "/pl011@9000000");
        w.prop_str("bootargs", "ft-kill=sent:12");
        w.end_node();
        w.finish().unwrap()
    }

    #[test]
    fn finds_a_property_by_path_and_only_there() {
        let mut buf = [0u8; 1024];
        let len = machine_tree(&mut buf);
        let tree = FdtReader::new(&buf[..len]).unwrap();
        assert_eq!(
            tree.property_str("/chosen", "bootargs"),
            Some("ft-kill=sent:12"),
            "not the /cpus/chosen decoy"
        );
        assert_eq!(tree.property_str("/cpus/chosen", "bootargs"), Some("decoy"));
        assert_eq!(
            tree.property_str("/", "compatible"),
            Some("linux,dummy-virt")
        );
        assert_eq!(
            tree.property("/memory", "reg").map(<[u8]>::len),
            Some(16),
            "a path without the unit address names the node"
        );
        assert!(tree.property("/memory@40000000", "reg").is_some());
        assert_eq!(tree.property("/chosen", "reg"), None);
        assert_eq!(tree.property("/memory", "bootargs"), None);
        assert_eq!(tree.property("/nowhere", "bootargs"), None);
    }

    #[test]
    fn a_bad_header_is_an_error() {
        let mut buf = [0u8; 1024];
        let len = machine_tree(&mut buf);
        assert_eq!(
            FdtReader::new(&buf[..len - 1]).err(),
            Some(FdtError::Truncated {
                have: len - 1,
                need: len
            })
        );
        let mut bad = buf;
        bad[0] = 0;
        assert_eq!(
            FdtReader::new(&bad[..len]).err(),
            Some(FdtError::BadMagic { found: 0x000d_feed })
        );
        let mut bad = buf;
        bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(FdtReader::new(&bad[..len]).err(), Some(FdtError::BadLayout));
        assert_eq!(FdtReader::total_size(&buf), Ok(len));
    }

    proptest::proptest! {
        #[test]
        fn any_corruption_never_panics(at in 0usize..600, value: u8) {
            let mut buf = [0u8; 1024];
            let len = machine_tree(&mut buf);
            buf[at % len] = value;
            if let Ok(tree) = FdtReader::new(&buf[..len]) {
                let _ = tree.property_str("/chosen", "bootargs");
                let _ = tree.property("/memory", "reg");
            }
        }
    }
}
