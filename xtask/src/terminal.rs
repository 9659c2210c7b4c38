//! The user's terminal as the machine's console line (`cargo xtask qemu` when standard input is
//! a terminal): keys go to the emulator as they are typed, Ctrl-C included, and Ctrl-T q — the
//! hypervisor's own key sequence ([`tandem_core::console_switch`]), decoded here by the same
//! state machine — ends the run.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::termios::{
    InputModes, LocalModes, OptionalActions, SpecialCodeIndex, Termios, tcgetattr, tcsetattr,
};
use tandem_core::console_switch::{Command, Key, Keys};

/// The terminal in the mode the console line needs, put back as it was when dropped.
pub struct Raw {
    saved: Termios,
}

impl Raw {
    /// Puts standard input's terminal in raw mode; `None` if standard input is no terminal.
    ///
    /// Raw as the line needs it: no line editing, echo or signals (Ctrl-C, Ctrl-Z and Ctrl-\ are
    /// bytes for the guest), no flow control (Ctrl-S, Ctrl-Q). Enter still sends a newline
    /// (ICRNL) and output still ends lines properly, so the partitions' lines show as before.
    pub fn enter() -> anyhow::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.local_modes
            .remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG | LocalModes::IEXTEN);
        raw.input_modes.remove(InputModes::IXON);
        raw.special_codes[SpecialCodeIndex::VMIN] = 1;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// How long a wait for a key lasts before `done` is looked at again.
const POLL: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// Sends what is typed on standard input to `to` until `done` is set, standard input closes, or
/// the user types Ctrl-T q: then `quit` is set (the Ctrl-T has gone to the machine, the `q` not).
pub fn forward(mut to: impl Write, done: &AtomicBool, quit: &AtomicBool) {
    let stdin = std::io::stdin();
    let mut keys = Keys::new();
    let mut buf = [0u8; 256];
    while !done.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        match poll(&mut fds, Some(&POLL)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        let n = match rustix::io::read(&stdin, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let typed = &buf[..n];
        let end = typed
            .iter()
            .position(|&b| keys.feed(b) == Key::Command(Command::Quit));
        let send = &typed[..end.unwrap_or(n)];
        if to.write_all(send).and_then(|()| to.flush()).is_err() {
            return;
        }
        if end.is_some() {
            quit.store(true, Ordering::Release);
            return;
        }
    }
}

/// A progress bar for the terminal, `[####    ]`, `done` of `total` filled.
pub fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 40;
    let filled = (done.min(total) * WIDTH / total.max(1)) as usize;
    format!(
        "[{}{}]",
        "#".repeat(filled),
        " ".repeat(WIDTH as usize - filled)
    )
}
