//! The `config.txt` the Raspberry Pi 4's firmware reads from the card: where to load the
//! hypervisor, its device tree and images file, and how to start the CPUs, the GIC and the
//! console UART for it. Every setting carries a comment saying why it is there (the settings
//! are the Raspberry Pi documentation's "config.txt" ones).

use std::fmt::Write;

/// What the settings depend on.
pub struct Settings {
    /// Where the hypervisor's flat binary is linked to run, and entered.
    pub kernel_address: u64,
    /// Where the firmware puts its device tree: the base of the hypervisor's RAM.
    pub device_tree_address: u64,
    /// Where the images file goes (the board's image area), if the card carries one.
    pub images_address: Option<u64>,
    /// Whether the card carries `overlays/disable-bt.dtbo`.
    pub disable_bt: bool,
}

pub const KERNEL: &str = "kernel8.img";
pub const IMAGES: &str = "images.bin";

/// The text of `config.txt`.
pub fn text(s: &Settings) -> String {
    let mut t = String::from(
        "# Tandem on a Raspberry Pi 4, written by `cargo xtask flash --board rpi4`. The\n\
         # firmware (start4.elf) reads this file before it starts the Arm cores.\n\
         \n\
         # Start the cores in AArch64: the hypervisor is 64-bit code.\n\
         arm_64bit=1\n",
    );
    let _ = write!(
        t,
        "# The hypervisor, a flat binary the firmware loads as is and enters at its first byte.\n\
         kernel={KERNEL}\n\
         # Where the hypervisor is linked to run (it is not relocatable), instead of the default.\n\
         kernel_address={:#x}\n\
         # The firmware's device tree at the base of the hypervisor's RAM, below its image.\n\
         device_tree_address={:#x}\n",
        s.kernel_address, s.device_tree_address
    );
    if let Some(at) = s.images_address {
        let _ = write!(
            t,
            "# The guest images carried beside the hypervisor, loaded into the board's image area\n\
             # (no `=`: this setting names the file and the address).\n\
             initramfs {IMAGES} {at:#x}\n"
        );
    }
    t += "# Interrupts through the GIC-400, which the hypervisor drives; the firmware's Arm stub then\n\
          # hands every interrupt to the non-secure side and enters the hypervisor at EL2, the\n\
          # secondary cores waiting in its spin table.\n\
          enable_gic=1\n\
          # UART0 (a PL011, the console and the hypervisor's log) on GPIO 14 (TX, header pin 8) and\n\
          # 15 (RX, pin 10), its alternate function 0: the hypervisor sets no pins itself.\n\
          gpio=14,15=a0\n";
    if s.disable_bt {
        t += "# Take UART0 from the Bluetooth module, which otherwise owns it, making it the primary UART.\n\
              dtoverlay=disable-bt\n\
              # The primary UART (UART0, with the overlay) enabled, 8N1.\n\
              enable_uart=1\n";
    } else {
        t += "# No `dtoverlay=disable-bt`: the firmware on this card has no overlays/disable-bt.dtbo\n\
              # (Debian's raspi-firmware ships no overlays), so Bluetooth keeps its pins and gpio= above\n\
              # puts UART0 on the header. No `enable_uart` either: without the overlay the primary\n\
              # UART is the mini UART, which would want GPIO 14 and 15 too.\n";
    }
    t += "# 115200 baud (from the default 48 MHz UART clock): the hypervisor's PL011 driver keeps the\n\
          # rate the firmware sets.\n\
          init_uart_baud=115200\n\
          # The firmware's own boot messages on UART0 too, so a card that does not boot says why\n\
          # (and UART0 is set up whichever UART is the primary one).\n\
          uart_2ndstage=1\n";
    t
}

/// The settings `text` writes, without comments: `key=value` lines, and `initramfs FILE ADDRESS`.
pub fn settings(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            kernel_address: 0x4020_0000,
            device_tree_address: 0x4000_0000,
            images_address: None,
            disable_bt: false,
        }
    }

    #[test]
    fn every_setting_follows_a_comment() {
        let text = text(&Settings {
            images_address: Some(0x4800_0000),
            disable_bt: true,
            ..base()
        });
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate().skip(1) {
            if !line.is_empty() && !line.starts_with('#') {
                assert!(
                    lines[i - 1].starts_with('#'),
                    "{line} has no comment above it"
                );
            }
        }
        let s = settings(&text);
        for wanted in [
            "arm_64bit=1",
            "kernel=kernel8.img",
            "kernel_address=0x40200000",
            "device_tree_address=0x40000000",
            "initramfs images.bin 0x48000000",
            "enable_gic=1",
            "gpio=14,15=a0",
            "dtoverlay=disable-bt",
            "enable_uart=1",
            "init_uart_baud=115200",
            "uart_2ndstage=1",
        ] {
            assert!(s.contains(&wanted), "{wanted} missing from:\n{text}");
        }
    }

    #[test]
    fn without_images_or_overlay_those_lines_are_left_out() {
        let text = text(&base());
        let s = settings(&text);
        assert!(!s.iter().any(|l| l.starts_with("initramfs")));
        assert!(!s.iter().any(|l| l.starts_with("dtoverlay")));
        assert!(!s.iter().any(|l| l.starts_with("enable_uart")));
        assert!(s.contains(&"kernel_address=0x40200000"));
    }
}
