//! What a test guest's architecture runtime provides, and the hypercalls built on it.

use crate::abi::{CONSOLE_WRITE, PARTITION_INFO, TIME_NOW, TIMER_SET};
use crate::info::{self, PartitionInfo};

pub trait Runtime {
    /// The hypercall instruction with `nr` and four arguments; returns (status, value).
    fn hypercall(nr: u64, args: [u64; 4]) -> (i64, u64);

    /// Sends one byte to the partition's UART, waiting until it has room.
    fn console_byte(byte: u8);

    /// Timer interrupts taken so far.
    fn ticks() -> u64;

    fn time_now() -> u64 {
        Self::hypercall(TIME_NOW, [0; 4]).1
    }

    fn timer_set(delay_ns: u64, vector: u64) -> (i64, u64) {
        Self::hypercall(TIMER_SET, [delay_ns, vector, 0, 0])
    }

    fn console_write(s: &[u8]) -> (i64, u64) {
        Self::hypercall(CONSOLE_WRITE, [s.as_ptr() as u64, s.len() as u64, 0, 0])
    }

    fn partition_info() -> PartitionInfo {
        let mut buf = [0u8; info::SIZE];
        let (status, _) = Self::hypercall(
            PARTITION_INFO,
            [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0],
        );
        assert_eq!(status, 0, "PARTITION_INFO failed");
        PartitionInfo::decode(buf)
    }
}

/// Defines `pub struct Guest`, the architecture's [`Runtime`], from its hypercall instruction,
/// its UART output and its tick count.
#[macro_export]
macro_rules! runtime {
    (hypercall: $call:path, console_byte: $byte:path, ticks: $ticks:path $(,)?) => {
        /// The runtime the shared checks run on.
        pub struct Guest;

        impl $crate::Runtime for Guest {
            fn hypercall(nr: u64, args: [u64; 4]) -> (i64, u64) {
                $call(nr, args)
            }

            fn console_byte(byte: u8) {
                $byte(byte)
            }

            fn ticks() -> u64 {
                $ticks()
            }
        }
    };
}
