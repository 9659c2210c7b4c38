//! The hypervisor binary for QEMU `virt` aarch64 boards. Everything board-specific is data: the
//! bundle that `cargo xtask build` validated and embedded (board facts, partitions, guest images).
#![no_std]
#![no_main]

use tandem_arch_aarch64::backend;

static BUNDLE: &[u8] = include_bytes!(env!("TANDEM_BUNDLE"));

/// Called by the boot code on the bootstrap CPU, at EL2 with the MMU on, on its stack.
#[unsafe(no_mangle)]
extern "C" fn board_main() -> ! {
    backend::primary_main(BUNDLE)
}
