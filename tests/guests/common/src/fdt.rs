//! Reading a flattened device tree (Devicetree Specification v0.3, chapter 5): the header, the
//! nodes of the structure block, their properties, and the `reg` of the root's children, which
//! is where the tree Tandem writes for a partition puts its devices. Every offset is checked
//! against the blob: a malformed tree reads as one without the node or property asked for,
//! never as a read outside the blob. Tested on the host: `cargo test -p tandem-guest-common`.

const MAGIC: u32 = 0xd00d_feed;
// Structure block tokens (5.4.1).
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
/// The oldest version with `size_dt_struct` (5.2), and the newest layout this reader knows.
const VERSION: u32 = 17;
/// `#address-cells` and `#size-cells` where a node does not say (2.3.5).
const DEFAULT_ADDRESS_CELLS: u32 = 2;
const DEFAULT_SIZE_CELLS: u32 = 1;

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// `at` rounded up to the next token: tokens are 32-bit aligned in the structure block (5.4.1).
fn align4(at: usize) -> Option<usize> {
    Some(at.checked_add(3)? & !3)
}

/// The NUL-terminated string at `at`, without its NUL.
fn c_str(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let rest = bytes.get(at..)?;
    rest.get(..rest.iter().position(|&b| b == 0)?)
}

/// The size of the tree whose header starts `header`, from its `totalsize` (5.2); `None` unless
/// the magic is there.
fn total_size(header: &[u8]) -> Option<usize> {
    (be32(header, 0)? == MAGIC).then_some(be32(header, 4)? as usize)
}

/// A device tree: its structure and strings blocks.
#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    structs: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Fdt<'a> {
    /// The tree in `blob`, if its header is one this reader understands and its blocks lie
    /// inside both `totalsize` and `blob`.
    pub fn new(blob: &'a [u8]) -> Option<Self> {
        let blob = blob.get(..total_size(blob)?)?;
        let word = |n: usize| be32(blob, 4 * n).map(|w| w as usize);
        // version and last_comp_version (5.2): a tree this reader can read.
        if word(5)? < VERSION as usize || word(6)? > VERSION as usize {
            return None;
        }
        let block = |off: usize, size: usize| blob.get(off..off.checked_add(size)?);
        Some(Self {
            structs: block(word(2)?, word(9)?)?,
            strings: block(word(3)?, word(8)?)?,
        })
    }

    /// Every node, in the order the structure block holds them, the root first.
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes {
            tree: *self,
            at: 0,
            depth: 0,
        }
    }

    /// The first child of the root whose `compatible` names `what`.
    pub fn device(&self, what: &str) -> Option<Node<'a>> {
        self.nodes().find(|n| n.depth == 1 && n.is_compatible(what))
    }

    /// Entry `index` of the `reg` of `node`, a child of the root: (address, size), each as many
    /// cells as the root's `#address-cells` and `#size-cells` say (2.3.5, 2.3.6).
    pub fn reg(&self, node: &Node<'a>, index: usize) -> Option<(u64, u64)> {
        let root = self.nodes().next()?;
        let cells = |name, default| root.cell(name).unwrap_or(default) as usize;
        let address_cells = cells("#address-cells", DEFAULT_ADDRESS_CELLS);
        let size_cells = cells("#size-cells", DEFAULT_SIZE_CELLS);
        // Wider than 64 bits is no address a guest can use.
        if node.depth != 1 || address_cells > 2 || size_cells > 2 {
            return None;
        }
        let reg = node.property("reg")?;
        let entry = 4 * (address_cells + size_cells);
        let at = index.checked_mul(entry)?;
        let number = |at: usize, cells: usize| {
            (0..cells).try_fold(0u64, |n, i| {
                Some(n << 32 | u64::from(be32(reg, at.checked_add(4 * i)?)?))
            })
        };
        Some((
            number(at, address_cells)?,
            number(at.checked_add(4 * address_cells)?, size_cells)?,
        ))
    }
}

/// A node: its name (with the unit address), its depth (the root's is 0) and where its
/// properties start.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    tree: Fdt<'a>,
    pub name: &'a [u8],
    pub depth: usize,
    props: usize,
}

impl<'a> Node<'a> {
    /// The value of property `name`.
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        let structs = self.tree.structs;
        let mut at = self.props;
        loop {
            match be32(structs, at)? {
                NOP => at = at.checked_add(4)?,
                PROP => {
                    let len = be32(structs, at + 4)? as usize;
                    let name_at = be32(structs, at + 8)? as usize;
                    let start = at.checked_add(12)?;
                    let value = structs.get(start..start.checked_add(len)?)?;
                    if c_str(self.tree.strings, name_at)? == name.as_bytes() {
                        return Some(value);
                    }
                    at = align4(start + len)?;
                }
                // The node's properties come before its children (5.4.2).
                _ => return None,
            }
        }
    }

    /// Property `name` as one 32-bit cell.
    pub fn cell(&self, name: &str) -> Option<u32> {
        let value = self.property(name)?;
        if value.len() == 4 {
            be32(value, 0)
        } else {
            None
        }
    }

    /// Whether its `compatible` list names `what` (2.3.1).
    pub fn is_compatible(&self, what: &str) -> bool {
        self.property("compatible")
            .is_some_and(|list| list.split(|&b| b == 0).any(|c| c == what.as_bytes()))
    }
}

/// The walk [`Fdt::nodes`] makes; it ends at the END token or at the first token that is not
/// where the format puts one.
pub struct Nodes<'a> {
    tree: Fdt<'a>,
    at: usize,
    depth: usize,
}

impl<'a> Iterator for Nodes<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let structs = self.tree.structs;
        loop {
            let at = self.at;
            match be32(structs, at)? {
                BEGIN_NODE => {
                    let name = c_str(structs, at + 4)?;
                    let node = Node {
                        tree: self.tree,
                        name,
                        depth: self.depth,
                        props: align4(at + 4 + name.len() + 1)?,
                    };
                    self.depth += 1;
                    self.at = node.props;
                    return Some(node);
                }
                END_NODE => {
                    self.depth = self.depth.checked_sub(1)?;
                    self.at = at + 4;
                }
                PROP => {
                    let len = be32(structs, at + 4)? as usize;
                    self.at = align4(at.checked_add(12)?.checked_add(len)?)?;
                }
                NOP => self.at = at + 4,
                // END, or no token at all.
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
