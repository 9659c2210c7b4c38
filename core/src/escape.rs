//! How a guest's console bytes are shown on the machine's console. Every line is prefixed with its
//! partition's name; a guest that could print control characters could move the cursor, erase
//! that prefix or forge another partition's (ESC sequences, backspace), so only printable ASCII is
//! shown as it is and everything else as an escape.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Calls `out` with the pieces of `line` as shown: printable ASCII as is, a backslash as `\\` (so
/// an escape in the output always means a byte the guest sent), every other byte as `\xNN`.
pub fn escape(line: &[u8], mut out: impl FnMut(&[u8])) {
    let mut start = 0;
    for (i, &byte) in line.iter().enumerate() {
        if byte.is_ascii_graphic() && byte != b'\\' || byte == b' ' {
            continue;
        }
        out(&line[start..i]);
        if byte == b'\\' {
            out(b"\\\\");
        } else {
            out(&[
                b'\\',
                b'x',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        }
        start = i + 1;
    }
    out(&line[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(line: &[u8]) -> String {
        let mut text = Vec::new();
        escape(line, |piece| text.extend_from_slice(piece));
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn printable_text_is_shown_as_it_is() {
        assert_eq!(
            shown(b"count 60 (last sleep 250 us) ~!@#"),
            "count 60 (last sleep 250 us) ~!@#"
        );
        assert_eq!(shown(b""), "");
    }

    #[test]
    fn control_characters_cannot_forge_or_erase_a_prefix() {
        assert_eq!(
            shown(b"\r[counter] forged\x1b[2K\x08\x7f"),
            "\\x0d[counter] forged\\x1b[2K\\x08\\x7f"
        );
        assert_eq!(shown(b"\t\0"), "\\x09\\x00");
    }

    #[test]
    fn backslashes_and_non_ascii_bytes_are_unambiguous() {
        assert_eq!(shown(b"a\\x1b"), "a\\\\x1b");
        assert_eq!(shown("µs".as_bytes()), "\\xc2\\xb5s");
    }
}
