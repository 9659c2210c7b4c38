//! Echoes its console input: each line that arrives comes back as `echo: LINE`, until a line
//! `quit`, then it shuts down. It polls the PL011's flag register for received bytes, as a
//! driver without interrupts does.
#![no_std]
#![no_main]

use tandem_guest::console::get_byte;
use tandem_guest::println;

tandem_guest::entry!(main);

const LINE_MAX: usize = 80;

fn main() -> u64 {
    println!("type a line");
    let mut line = [0u8; LINE_MAX];
    let mut len = 0;
    loop {
        match get_byte() {
            b'\r' => {}
            b'\n' => {
                let text = core::str::from_utf8(&line[..len]).unwrap_or("?");
                println!("echo: {text}");
                if text == "quit" {
                    return 0;
                }
                len = 0;
            }
            b if len < LINE_MAX => {
                line[len] = b;
                len += 1;
            }
            _ => {}
        }
    }
}
