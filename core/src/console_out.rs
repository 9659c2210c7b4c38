//! The machine's console as the partitions share it: which partition's line is open on it.
//!
//! A line is normally printed whole, `[name] text` and a newline. A partition that is not
//! fault-tolerant and waits (idles, or reads its UART's receive side) with part of a line may
//! show that part at once ([`ConsoleOut::partition`] with `ends = false`): the prefix and the
//! bytes, no newline, and the line stays *open* for it. Its next bytes of that line follow without
//! a prefix; a newline closes it. Whatever else is printed meanwhile (another partition's line, a
//! `[tandem]` line) first closes the open line with a newline, and the partition's continuation
//! then starts a fresh `[name] ` line. So the console's lines, stripped of their prefixes, still
//! hold exactly what each guest wrote, and when nothing interleaves they are the lines a whole
//! printing would have made.
//!
//! Bounded (a name of at most [`NAME_LEN`] bytes) and total: any bytes and any name print without
//! a panic, the guest's bytes escaped as [`crate::escape`] says.

use crate::config::NAME_LEN;
use crate::escape::escape;

/// What the console has open: the name of the partition whose line is unfinished (length 0:
/// none). Kept under the console lock by the hardware layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleOut {
    open: [u8; NAME_LEN],
    open_len: u8,
}

impl Default for ConsoleOut {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleOut {
    pub const fn new() -> Self {
        Self {
            open: [0; NAME_LEN],
            open_len: 0,
        }
    }

    /// Whether `name`'s line is open.
    fn is_open(&self, name: &str) -> bool {
        self.open_len != 0 && self.open.get(..usize::from(self.open_len)) == Some(name.as_bytes())
    }

    /// Whether any partition's line is open.
    pub fn any_open(&self) -> bool {
        self.open_len != 0
    }

    /// Ends the open line, if one is, with a newline: something else prints next.
    pub fn close(&mut self, out: &mut impl FnMut(&[u8])) {
        if self.open_len != 0 {
            out(b"\n");
            self.open_len = 0;
        }
    }

    /// Prints `bytes` of partition `name`'s current line through `out`: after its prefix unless
    /// its line is open, then a newline if `ends` (the line is complete), else the line stays
    /// open. A name too long to remember ends its part with a newline instead.
    pub fn partition(&mut self, name: &str, bytes: &[u8], ends: bool, mut out: impl FnMut(&[u8])) {
        if !ends && bytes.is_empty() {
            return;
        }
        if !self.is_open(name) {
            self.close(&mut out);
            out(b"[");
            out(name.as_bytes());
            out(b"] ");
        }
        escape(bytes, &mut out);
        let remembered = self.open.get_mut(..name.len()).filter(|_| !name.is_empty());
        match remembered {
            Some(slot) if !ends => {
                slot.copy_from_slice(name.as_bytes());
                self.open_len = name.len() as u8;
            }
            _ => {
                out(b"\n");
                self.open_len = 0;
            }
        }
    }

    /// The hypervisor prints a line of its own next: the open line ends first.
    pub fn hypervisor(&mut self, mut out: impl FnMut(&[u8])) {
        self.close(&mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn print(c: &mut ConsoleOut, text: &mut Vec<u8>, name: &str, bytes: &[u8], ends: bool) {
        c.partition(name, bytes, ends, |p| text.extend_from_slice(p));
    }

    #[test]
    fn a_line_shown_in_parts_is_the_same_line() {
        let (mut c, mut text) = (ConsoleOut::new(), Vec::new());
        print(&mut c, &mut text, "linux", b"/ # ", false);
        assert_eq!(text, b"[linux] / # ");
        print(&mut c, &mut text, "linux", b"ls", false);
        print(&mut c, &mut text, "linux", b"", true);
        print(&mut c, &mut text, "linux", b"bin", true);
        assert_eq!(text, b"[linux] / # ls\n[linux] bin\n");
    }

    #[test]
    fn others_close_the_open_line_and_it_continues_prefixed() {
        let (mut c, mut text) = (ConsoleOut::new(), Vec::new());
        print(&mut c, &mut text, "a", b"one ", false);
        print(&mut c, &mut text, "b", b"x", true);
        print(&mut c, &mut text, "a", b"two", false);
        c.hypervisor(|p| text.extend_from_slice(p));
        text.extend_from_slice(b"[tandem] hi\n");
        print(&mut c, &mut text, "a", b"three\x1b", true);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "[a] one \n[b] x\n[a] two\n[tandem] hi\n[a] three\\x1b\n"
        );
        assert!(!c.any_open());
    }

    #[test]
    fn a_name_it_cannot_remember_ends_its_part() {
        let (mut c, mut text) = (ConsoleOut::new(), Vec::new());
        let long = "a-name-longer-than-sixteen";
        print(&mut c, &mut text, long, b"x", false);
        print(&mut c, &mut text, "", b"y", false);
        assert_eq!(text, format!("[{long}] x\n[] y\n").as_bytes());
        assert!(!c.any_open());
    }

    /// A printing step: partition (0 or 1), bytes, whether they end the line; or a `[tandem]`
    /// line (partition 2).
    fn steps() -> impl Strategy<Value = Vec<(u8, Vec<u8>, bool)>> {
        proptest::collection::vec(
            (
                0u8..3,
                proptest::collection::vec(any::<u8>(), 0..12),
                any::<bool>(),
            ),
            0..40,
        )
    }

    /// The offsets in `text`, newlines left out, at which a newline stood; and the text without
    /// them.
    fn newlines(text: &str) -> (Vec<usize>, String) {
        let (mut at, mut rest) = (Vec::new(), String::new());
        for ch in text.chars() {
            match ch {
                '\n' => at.push(rest.len()),
                _ => rest.push(ch),
            }
        }
        (at, rest)
    }

    proptest! {
        /// Whatever is printed in whatever parts: each partition's console lines, stripped of
        /// their prefixes, are its escaped bytes, with a newline wherever one of its lines ended
        /// and otherwise only where another printer cut in (the closing newlines); and with no
        /// other printer, exactly its lines.
        #[test]
        fn no_byte_lost_added_or_misattributed(steps in steps()) {
            let names = ["a", "bb"];
            let (mut c, mut text) = (ConsoleOut::new(), Vec::new());
            let mut wrote = [String::new(), String::new()];
            for (who, bytes, ends) in &steps {
                match names.get(usize::from(*who)) {
                    Some(name) => {
                        print(&mut c, &mut text, name, bytes, *ends);
                        let mut escaped = Vec::new();
                        escape(bytes, |p| escaped.extend_from_slice(p));
                        let wrote = &mut wrote[usize::from(*who)];
                        wrote.push_str(core::str::from_utf8(&escaped).unwrap());
                        if *ends {
                            wrote.push('\n');
                        }
                    }
                    None => {
                        c.hypervisor(|p| text.extend_from_slice(p));
                        text.extend_from_slice(b"[tandem] said\n");
                    }
                }
            }
            c.close(&mut |p| text.extend_from_slice(p));
            let text = String::from_utf8(text).unwrap();
            prop_assert!(text.is_empty() || text.ends_with('\n'));
            let mut seen = [String::new(), String::new()];
            for line in text.lines().filter(|&l| l != "[tandem] said") {
                let who = names.iter().position(|n| line.starts_with(&format!("[{n}] ")));
                prop_assert!(who.is_some(), "a line of no printer: {:?}", line);
                let who = who.unwrap();
                seen[who].push_str(&line[names[who].len() + 3..]);
                seen[who].push('\n');
            }
            for who in 0..2 {
                let (shown_at, shown) = newlines(&seen[who]);
                let (wrote_at, written) = newlines(&wrote[who]);
                prop_assert_eq!(&shown, &written);
                // Every line end of the guest is one on the console (a line of its own each).
                let mut extra = shown_at.clone();
                for at in &wrote_at {
                    let i = extra.iter().position(|x| x == at);
                    prop_assert!(i.is_some(), "line end at {} lost", at);
                    extra.remove(i.unwrap());
                }
                let alone = steps.iter().all(|(w, b, e)| usize::from(*w) == who || (b.is_empty() && !*e && *w < 2));
                if alone {
                    // Nothing cut in: at most the final close of a line left open.
                    prop_assert!(extra.is_empty() || extra == [written.len()]);
                }
            }
        }
    }
}
