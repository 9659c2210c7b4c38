//! The physical console on COM1 (or the UART the board names): see `tandem_hw::console`.

pub type Console = tandem_hw::console::Console<crate::serial::Uart>;
