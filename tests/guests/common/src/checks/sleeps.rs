//! The timer guest: sleeps on a timer, checking each wake-up came no earlier than asked and by
//! exactly one tick.

use crate::Runtime;
use crate::say;

/// Sleeps `sleeps=` times (10) for `period_us=` (500) with `sleep` (which takes nanoseconds),
/// announced as "sleeping N times for P us" and `how`, reporting every fifth wake-up. Returns the
/// guest's exit code: 0 when no sleep was short and each took one tick.
pub fn timer_guest<R: Runtime>(how: &str, sleep: impl Fn(u64)) -> u64 {
    let info = R::partition_info();
    let sleeps = info.number("sleeps").unwrap_or(10);
    let period_us = info.number("period_us").unwrap_or(500);
    say!(R, "sleeping {sleeps} times for {period_us} us{how}");
    let mut early = 0;
    for i in 1..=sleeps {
        let before = R::time_now();
        sleep(period_us * 1000);
        let slept = R::time_now() - before;
        if slept < period_us * 1000 {
            early += 1;
        }
        if i % 5 == 0 || i == sleeps {
            say!(R, "woke {i} times (last sleep {} us)", slept / 1000);
        }
    }
    say!(
        R,
        "timer ticks {} of {} sleeps, {} woke early",
        R::ticks(),
        sleeps,
        early
    );
    if R::ticks() == sleeps && early == 0 {
        0
    } else {
        1
    }
}
