//! The image's build id: the linker's `--build-id` (a SHA-1 over the image, in a GNU note the
//! board's linker script keeps between `__build_id_start` and `__build_id_end`). The log states
//! it at boot, so `cargo xtask monitor` can refuse to decode the log with an ELF that is not
//! the image running.

use core::fmt::Write;

unsafe extern "C" {
    static __build_id_start: u8;
    static __build_id_end: u8;
}

/// The note's header: name size, descriptor size, type (gABI, "Note Section"), then the name
/// "GNU\0".
const NOTE_HEADER: usize = 16;

/// The id's bytes; empty if the image carries no note.
pub fn get() -> &'static [u8] {
    let start = &raw const __build_id_start;
    let end = &raw const __build_id_end;
    let len = (end as usize).saturating_sub(start as usize);
    // SAFETY: the linker script puts the two symbols around the note, inside the image's
    // read-only data, which stays mapped and unchanged for the whole run.
    let note = unsafe { core::slice::from_raw_parts(start, len) };
    let descriptor = note
        .get(4..8)
        .map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as usize);
    note.get(NOTE_HEADER..NOTE_HEADER.saturating_add(descriptor))
        .unwrap_or(&[])
}

/// [`get`] as lowercase hex, as the log states it.
pub fn hex() -> heapless::String<64> {
    let mut text = heapless::String::new();
    for byte in get() {
        // 64 characters hold a 32-byte id; a longer one is cut, and no longer matches an ELF.
        let _ = write!(text, "{byte:02x}");
    }
    text
}
