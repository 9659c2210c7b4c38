//! Whether a live log may be shown as decoded with a given ELF: only once the log's own build id
//! (the hypervisor states it at boot) matches the ELF's. Until then what decodes is held back,
//! since a mismatched ELF can decode a frame into a wrong message without any error.

use std::fmt::Write;

use anyhow::{Result, bail};

/// The message the hypervisor logs at boot (`tandem_hw::bringup`).
const PREFIX: &str = "build id ";

/// How many frames are held while no build id has come: a monitor started after the board
/// booted would otherwise hold the log forever.
const HOLD_MAX: usize = 64;

/// The build id as the log states it: lowercase hex.
pub fn hex(id: &[u8]) -> String {
    id.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The gate between a decoder and the screen.
pub struct Gate {
    elf_id: String,
    verified: bool,
    held: Vec<String>,
    /// Said once: the log began without a build id.
    warned: bool,
    /// A frame has decoded: what did not before is noise, not the log.
    decoded: bool,
    /// Frames that did not decode before any did (firmware and boot loaders may write to the
    /// port first: OVMF writes its console to every serial port), and since.
    noise: usize,
    bad: usize,
}

/// How many frames of noise may come before the log's first: firmware text has no frame
/// delimiters, so it makes one or two.
const NOISE_MAX: usize = 64;

/// What the monitor does with a decoded line.
#[derive(Debug, PartialEq, Eq)]
pub enum Show {
    /// Show these lines now.
    Lines(Vec<String>),
    /// The log began before the monitor: its build id went by, so nothing can be checked;
    /// shown once, then the lines as they come, marked unchecked.
    Unchecked(Vec<String>),
}

impl Gate {
    pub fn new(elf_id: &[u8]) -> Self {
        Self {
            elf_id: hex(elf_id),
            verified: false,
            held: Vec::new(),
            warned: false,
            decoded: false,
            noise: 0,
            bad: 0,
        }
    }

    /// A frame decoded as `message` (the defmt text, without level); `line` is how it is shown.
    pub fn frame(&mut self, message: &str, line: String) -> Result<Show> {
        self.decoded = true;
        if let Some(id) = message.strip_prefix(PREFIX) {
            if id != self.elf_id {
                bail!(
                    "the board runs build {id}, but the ELF is build {}: decode its log with the \
                     ELF that was flashed (--elf)",
                    self.elf_id
                );
            }
            self.verified = true;
            self.warned = false;
            self.held.push(line);
            return Ok(Show::Lines(std::mem::take(&mut self.held)));
        }
        if self.verified {
            return Ok(Show::Lines(vec![line]));
        }
        self.held.push(line);
        if self.held.len() < HOLD_MAX {
            return Ok(Show::Lines(Vec::new()));
        }
        self.warned = true;
        Ok(Show::Unchecked(std::mem::take(&mut self.held)))
    }

    /// A frame that does not decode with the ELF: before any did, noise from whatever used the
    /// port first; after one did and before the build id matched, the sign of a wrong ELF (the
    /// first may be a frame cut at the start).
    pub fn malformed(&mut self) -> Result<()> {
        if !self.decoded {
            self.noise += 1;
            if self.noise > NOISE_MAX {
                bail!(
                    "nothing on the log port decodes with this ELF (build {}, {} frames): not \
                     the image the board runs, or not its log port",
                    self.elf_id,
                    self.noise
                );
            }
            return Ok(());
        }
        self.bad += 1;
        if !self.verified && self.bad > 1 {
            bail!(
                "the log does not decode with this ELF (build {}): it is not the image the board \
                 runs; pass the ELF that was flashed (--elf)",
                self.elf_id
            );
        }
        Ok(())
    }

    /// Whether lines now shown come unchecked.
    pub fn unchecked(&self) -> bool {
        self.warned && !self.verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 3] = [0xde, 0xad, 0x01];

    #[test]
    fn lines_wait_for_a_matching_build_id_then_flow() {
        let mut g = Gate::new(&ID);
        assert_eq!(
            g.frame("Tandem on pc", "INFO Tandem on pc".into()).unwrap(),
            Show::Lines(vec![])
        );
        assert_eq!(
            g.frame("build id dead01", "INFO build id dead01".into())
                .unwrap(),
            Show::Lines(vec![
                "INFO Tandem on pc".into(),
                "INFO build id dead01".into()
            ])
        );
        assert_eq!(
            g.frame("next", "INFO next".into()).unwrap(),
            Show::Lines(vec!["INFO next".into()])
        );
        assert!(
            (0..5).all(|_| g.malformed().is_ok()),
            "after the match, a bad frame is the line's problem"
        );
    }

    #[test]
    fn another_build_is_refused_with_both_ids() {
        let mut g = Gate::new(&ID);
        let e = g.frame("build id 0badc0de", String::new()).unwrap_err();
        assert!(
            e.to_string()
                .contains("build 0badc0de, but the ELF is build dead01"),
            "{e}"
        );
    }

    #[test]
    fn frames_that_do_not_decode_before_the_id_mean_a_wrong_elf() {
        let mut g = Gate::new(&ID);
        assert!(
            (0..3).all(|_| g.malformed().is_ok()),
            "before any frame decoded: firmware noise"
        );
        g.frame("x", "INFO x".into()).unwrap();
        assert!(
            g.malformed().is_ok(),
            "the first may be a frame cut at the start"
        );
        assert!(g.malformed().is_err());
    }

    #[test]
    fn a_port_where_nothing_ever_decodes_is_refused() {
        let mut g = Gate::new(&ID);
        assert!((0..NOISE_MAX).all(|_| g.malformed().is_ok()));
        let e = g.malformed().unwrap_err().to_string();
        assert!(e.contains("nothing on the log port decodes"), "{e}");
    }

    #[test]
    fn a_log_joined_after_boot_is_shown_unchecked() {
        let mut g = Gate::new(&ID);
        let shown = (0..HOLD_MAX)
            .map(|i| g.frame("x", format!("{i}")).unwrap())
            .last();
        assert!(matches!(shown, Some(Show::Unchecked(lines)) if lines.len() == HOLD_MAX));
        assert!(g.unchecked());
    }
}
