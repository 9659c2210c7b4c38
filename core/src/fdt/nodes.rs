//! Walking every node of a firmware's tree, and turning a node's `reg` into CPU addresses
//! through its ancestors' `ranges` (Devicetree Specification 0.4, 2.3.5 to 2.3.8).
//!
//! Like the rest of the reader, every offset is checked: a malformed tree ends the walk, and a
//! property that cannot be read reads as missing.

use heapless::Vec;

use super::read::{FdtReader, c_str, word};
use super::{BEGIN_NODE, END_NODE, NOP, PROP};

/// How deep the walk follows the tree; deeper nodes are skipped (firmware trees nest about
/// five levels).
pub const MAX_DEPTH: usize = 12;

/// The cell counts a node without `#address-cells` / `#size-cells` gives its children (2.3.5).
const DEFAULT_ADDRESS_CELLS: u32 = 2;
const DEFAULT_SIZE_CELLS: u32 = 1;

/// A node: its name and where its properties are, and the same for its ancestors.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    tree: FdtReader<'a>,
    pub name: &'a [u8],
    /// Where the properties of the root, ..., the parent, and this node start, in that order.
    props: Vec<usize, MAX_DEPTH>,
}

impl<'a> Node<'a> {
    /// Property `name` of this node.
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        self.property_at(*self.props.last()?, name)
    }

    /// Whether its `compatible` list names `what`.
    pub fn is_compatible(&self, what: &str) -> bool {
        self.property("compatible")
            .is_some_and(|list| list.split(|&b| b == 0).any(|c| c == what.as_bytes()))
    }

    /// Whether its `device_type` is `what` (`memory`, `cpu`).
    pub fn has_type(&self, what: &str) -> bool {
        self.property("device_type")
            .is_some_and(|t| t.strip_suffix(&[0]).unwrap_or(t) == what.as_bytes())
    }

    /// Entry `index` of its `reg` as CPU-physical (address, size), translated through every
    /// ancestor's `ranges`; `None` if there is no such entry or an ancestor does not map it.
    pub fn reg(&self, index: usize) -> Option<(u64, u64)> {
        let depth = self.props.len();
        // The parent's cell counts size this node's `reg`.
        let parent = *self.props.get(depth.checked_sub(2)?)?;
        let (address_cells, size_cells) = self.cells(parent);
        let entry = (address_cells + size_cells) as usize * 4;
        let reg = self.property("reg")?;
        let at = index.checked_mul(entry)?;
        let bytes = reg.get(at..at.checked_add(entry)?)?;
        let address = cells(bytes, 0, address_cells)?;
        let size = cells(bytes, address_cells as usize * 4, size_cells)?;
        // Up through the buses: each one's `ranges` maps its children's addresses into its
        // parent's; the root's children's addresses are the CPU's.
        let mut address = address;
        for level in (1..depth - 1).rev() {
            address = self.translate(level, address)?;
        }
        Some((address, size))
    }

    /// `address`, a child address of the node at `level` (the root is 0), as its parent sees it.
    fn translate(&self, level: usize, address: u64) -> Option<u64> {
        let bus = *self.props.get(level)?;
        let ranges = self.property_at(bus, "ranges")?;
        if ranges.is_empty() {
            return Some(address);
        }
        let (child_cells, size_cells) = self.cells(bus);
        let (parent_cells, _) = self.cells(*self.props.get(level.checked_sub(1)?)?);
        let entry = (child_cells + parent_cells + size_cells) as usize * 4;
        ranges.chunks_exact(entry).find_map(|r| {
            let child = cells(r, 0, child_cells)?;
            let parent = cells(r, child_cells as usize * 4, parent_cells)?;
            let size = cells(r, (child_cells + parent_cells) as usize * 4, size_cells)?;
            let offset = address.checked_sub(child).filter(|&o| o < size)?;
            parent.checked_add(offset)
        })
    }

    /// The `#address-cells` and `#size-cells` of the node whose properties start at `props`.
    fn cells(&self, props: usize) -> (u32, u32) {
        let count = |name| {
            self.property_at(props, name)
                .and_then(|v| word(v, 0))
                // More than two cells do not fit a u64; such a tree's addresses read as missing.
                .map(|c| c.min(3))
        };
        (
            count("#address-cells").unwrap_or(DEFAULT_ADDRESS_CELLS),
            count("#size-cells").unwrap_or(DEFAULT_SIZE_CELLS),
        )
    }

    /// Property `name` among the properties starting at `at` (up to the node's first child or
    /// its end).
    fn property_at(&self, mut at: usize, name: &str) -> Option<&'a [u8]> {
        let s = self.tree.structure();
        loop {
            match word(s, at)? {
                PROP => {
                    let len = word(s, at + 4)? as usize;
                    let name_at = word(s, at + 8)? as usize;
                    let value = s.get(at + 12..(at + 12).checked_add(len)?)?;
                    if c_str(self.tree.strings(), name_at)? == name.as_bytes() {
                        return Some(value);
                    }
                    at = (at + 12 + len).next_multiple_of(4);
                }
                NOP => at += 4,
                _ => return None,
            }
        }
    }
}

/// A big-endian number of `count` cells (0 to 2) at `at` of `bytes`.
fn cells(bytes: &[u8], at: usize, count: u32) -> Option<u64> {
    match count {
        0 => Some(0),
        1 => word(bytes, at).map(u64::from),
        2 => Some(u64::from(word(bytes, at)?) << 32 | u64::from(word(bytes, at + 4)?)),
        _ => None,
    }
}

/// Every node of a tree, in the order they appear ([`FdtReader::nodes`]).
pub struct Nodes<'a> {
    tree: FdtReader<'a>,
    at: usize,
    props: Vec<usize, MAX_DEPTH>,
    /// Levels entered beyond [`MAX_DEPTH`], whose nodes are skipped.
    too_deep: usize,
}

impl<'a> FdtReader<'a> {
    /// Every node, in the order the tree lists them.
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes {
            tree: *self,
            at: 0,
            props: Vec::new(),
            too_deep: 0,
        }
    }
}

impl<'a> Iterator for Nodes<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let s = self.tree.structure();
        loop {
            let token = word(s, self.at)?;
            self.at += 4;
            match token {
                BEGIN_NODE => {
                    let name = c_str(s, self.at)?;
                    self.at = (self.at + name.len() + 1).next_multiple_of(4);
                    if self.too_deep > 0 || self.props.push(self.at).is_err() {
                        self.too_deep += 1;
                        continue;
                    }
                    return Some(Node {
                        tree: self.tree,
                        name,
                        props: self.props.clone(),
                    });
                }
                END_NODE => {
                    if self.too_deep > 0 {
                        self.too_deep -= 1;
                    } else {
                        // An END_NODE without its BEGIN_NODE is a malformed tree.
                        self.props.pop()?;
                    }
                }
                PROP => {
                    let len = word(s, self.at)? as usize;
                    self.at = (self.at + 8).checked_add(len)?.next_multiple_of(4);
                }
                NOP => {}
                _ => return None,
            }
        }
    }
}
