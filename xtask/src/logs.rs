//! Decoding the hypervisor's defmt log with the exact ELF that produced it.

use anyhow::{Result, anyhow};
use defmt_decoder::{DecodeError, Table};

/// The log as text lines (`LEVEL message`), and how many malformed frames were skipped after
/// its first frame. What comes before that is not the hypervisor's: firmware and boot loaders
/// may write to the same port first (OVMF writes its console to every serial port).
pub fn decode(elf: &[u8], bytes: &[u8]) -> Result<(Vec<String>, usize)> {
    let table = Table::parse(elf)
        .map_err(|e| anyhow!("reading defmt data from the ELF: {e}"))?
        .ok_or_else(|| anyhow!("the ELF carries no defmt data"))?;
    let mut decoder = table.new_stream_decoder();
    decoder.received(bytes);
    let mut lines = Vec::new();
    let mut malformed = 0;
    let mut skipped = 0;
    loop {
        match decoder.decode() {
            Ok(frame) => {
                let level = frame
                    .level()
                    .map(|l| l.as_str().to_uppercase())
                    .unwrap_or_else(|| "PRINT".into());
                lines.push(format!("{level:<5} {}", frame.display_message()));
            }
            Err(DecodeError::UnexpectedEof) => break,
            Err(DecodeError::Malformed) => {
                if !lines.is_empty() {
                    malformed += 1;
                }
                skipped += 1;
                if !table.encoding().can_recover() || skipped > 1000 {
                    break;
                }
            }
        }
    }
    Ok((lines, malformed))
}
