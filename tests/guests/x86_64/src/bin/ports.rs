//! Uses the ports its configuration grants: the CMOS RTC passed through (real device values) and
//! the POST port ignored (all ones, writes dropped).
#![no_std]
#![no_main]

use tandem_guest::cpu::{inb, outb};
use tandem_guest::println;

tandem_guest::entry!(main);

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const POST: u16 = 0x80;

fn main() -> u64 {
    // CMOS status register B; NMI stays enabled (bit 7 clear).
    outb(CMOS_INDEX, 0x0b);
    let status_b = inb(CMOS_DATA);
    outb(CMOS_INDEX, 0x00);
    let seconds = inb(CMOS_DATA);
    println!("CMOS status B {status_b:#04x}, seconds {seconds:#04x} (passed through)");
    outb(POST, 0x42);
    let post = inb(POST);
    println!("POST port read {post:#04x} (ignored)");
    let real_device = status_b != 0xff && seconds != 0xff;
    if real_device && post == 0xff { 0 } else { 1 }
}
