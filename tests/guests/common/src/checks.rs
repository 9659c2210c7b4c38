//! Test bodies that are the same on every architecture.

mod bad_hypercalls;
mod console;
mod counting;
mod echo;
mod outside;
mod sleeps;

pub use bad_hypercalls::bad_hypercalls;
pub use console::console_guest;
pub use counting::count_lines;
pub use echo::echo_guest;
pub use outside::access_outside;
pub use sleeps::timer_guest;
