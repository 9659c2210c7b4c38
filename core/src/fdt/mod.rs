//! Flattened device trees (DTB, version 17; Devicetree Specification 0.4, chapter 5): the writer
//! builds each partition's tree, the reader takes what the hypervisor needs from the tree its
//! firmware hands over.

pub mod cpus;
pub mod facts;
mod nodes;
mod read;
mod write;

pub use nodes::{Node, Nodes};
pub use read::{FdtError, FdtReader};
pub use write::{FdtWriter, TooSmall};

const MAGIC: u32 = 0xd00d_feed;
/// The header's size in bytes (ten big-endian words).
const HEADER: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
/// The structure block's last token (the reader stops at any token it does not know).
const END: u32 = 9;
