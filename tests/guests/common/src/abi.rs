//! The Tandem hypercall ABI's numbers, as `tandem_core::hypercall` defines them.

pub const CONSOLE_WRITE: u64 = 1;
pub const PARTITION_INFO: u64 = 2;
pub const YIELD: u64 = 3;
pub const SHUTDOWN: u64 = 4;
pub const TIMER_SET: u64 = 5;
pub const TIME_NOW: u64 = 6;

pub const E_NOSYS: i64 = -1;
pub const E_INVALID: i64 = -2;
pub const E_FAULT: i64 = -3;
