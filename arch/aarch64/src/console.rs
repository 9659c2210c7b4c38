//! The physical console on the board's PL011: see `tandem_hw::console`.

pub type Console = tandem_hw::console::Console<crate::pl011::Pl011>;
