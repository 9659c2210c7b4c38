//! A board's console as lines, filled by a thread that follows its serial port.

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// Every line a board's console showed, in order, shared with the thread that reads it.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<Lines>>);

#[derive(Default)]
struct Lines {
    done: Vec<String>,
    open: Vec<u8>,
}

impl Transcript {
    /// Takes `bytes` from the serial line: each newline ends a line (a carriage return before
    /// it is dropped).
    pub fn feed(&self, bytes: &[u8]) {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut lines.open);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.done.push(String::from_utf8_lossy(&line).into_owned());
            } else {
                lines.open.push(b);
            }
        }
    }

    /// The first whole line at or after `from` that contains `text`: its index.
    pub fn find(&self, from: usize, text: &str) -> Option<usize> {
        let lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (from..lines.done.len()).find(|&i| lines.done[i].contains(text))
    }

    /// Every whole line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .done
            .clone()
    }

    /// The last `n` whole lines, for a failure's report.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// Follows `port` on a thread of its own until `stop` is set or the port ends (a stand-in's
    /// pseudo-terminal closes when its emulator dies).
    pub fn follow(
        &self,
        mut port: Box<dyn serialport::SerialPort>,
        stop: Arc<AtomicBool>,
    ) -> thread::JoinHandle<()> {
        let transcript = self.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Acquire) {
                match port.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => transcript.feed(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                    Err(_) => break,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_newlines_wherever_the_reads_cut_them() {
        let t = Transcript::default();
        t.feed(b"[a] one\r\n[a] t");
        t.feed(b"wo\n[a] three");
        assert_eq!(t.lines(), ["[a] one", "[a] two"]);
        assert_eq!(t.find(0, "two"), Some(1));
        assert_eq!(
            t.find(2, "three"),
            None,
            "an unfinished line is not matched"
        );
        t.feed(b"\n");
        assert_eq!(t.find(2, "three"), Some(2));
    }
}
