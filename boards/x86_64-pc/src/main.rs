//! The hypervisor binary for PC-class boards. Everything board-specific is data: the bundle that
//! `cargo xtask build` validated and embedded (board facts, partitions, guest images).
#![no_std]
#![no_main]

use tandem_arch_x86_64::backend;

static BUNDLE: &[u8] = include_bytes!(env!("TANDEM_BUNDLE"));

/// Called by the boot code on the bootstrap CPU, in long mode on the boot stack.
#[unsafe(no_mangle)]
extern "C" fn board_main(magic: u32, info: u64) -> ! {
    backend::primary_main(magic, info, BUNDLE)
}
