//! The echo guest: each line that arrives on its console comes back as `echo: LINE`, until a line
//! `quit`. `get_byte` waits for a received byte, as a driver without interrupts does.

use crate::{Runtime, say};

const LINE_MAX: usize = 80;

pub fn echo_guest<R: Runtime>(get_byte: impl Fn() -> u8) -> u64 {
    say!(R, "type a line");
    let mut line = [0u8; LINE_MAX];
    let mut len = 0;
    loop {
        match get_byte() {
            b'\r' => {}
            b'\n' => {
                let text = core::str::from_utf8(&line[..len]).unwrap_or("?");
                say!(R, "echo: {text}");
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
