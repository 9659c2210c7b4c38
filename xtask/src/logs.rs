//! Decoding the hypervisor's defmt log with the exact ELF that produced it.

use anyhow::{Result, anyhow};
use defmt_decoder::{DecodeError, Table};

/// The log as text lines (`LEVEL message`), and how many malformed frames were skipped.
pub fn decode(elf: &[u8], bytes: &[u8]) -> Result<(Vec<String>, usize)> {
    let table = Table::parse(elf)
        .map_err(|e| anyhow!("reading defmt data from the ELF: {e}"))?
        .ok_or_else(|| anyhow!("the ELF carries no defmt data"))?;
    let mut decoder = table.new_stream_decoder();
    decoder.received(bytes);
    let mut lines = Vec::new();
    let mut malformed = 0;
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
                malformed += 1;
                if !table.encoding().can_recover() || malformed > 1000 {
                    break;
                }
            }
        }
    }
    Ok((lines, malformed))
}
