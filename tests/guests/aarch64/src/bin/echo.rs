//! Echoes its console input: each line that arrives comes back as `echo: LINE`, until a line
//! `quit`, then it shuts down. It polls its UART for received bytes.
#![no_std]
#![no_main]

use tandem_guest::Guest;
use tandem_guest::console::get_byte;

tandem_guest::entry!(main);

fn main() -> u64 {
    tandem_guest::common::checks::echo_guest::<Guest>(get_byte)
}
