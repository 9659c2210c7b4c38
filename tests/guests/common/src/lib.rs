//! What Tandem's test guests share across architectures: the hypercall numbers and statuses, the
//! partition information and its arguments, console formatting, a device tree reader, and the
//! checks whose bodies are the same everywhere. Each architecture's runtime implements
//! [`Runtime`] for the rest.
#![no_std]

pub mod abi;
pub mod checks;
pub mod console;
pub mod fdt;
pub mod info;
mod runtime;

pub use info::{PartitionInfo, arg};
pub use runtime::Runtime;
