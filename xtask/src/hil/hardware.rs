//! A real board on a rig: its console on a serial port, its power, reset and fault lines GPIO
//! outputs through the Linux GPIO character device (`embedded-hal`'s `OutputPin`, implemented by
//! `linux-embedded-hal`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use embedded_hal::digital::OutputPin;
use linux_embedded_hal::CdevPin;
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};

use super::rig::{Board, BoardEntry, GpioEntry};
use super::transcript::Transcript;

/// How long the reset line is held active.
const RESET_PULSE: Duration = Duration::from_millis(100);

/// An output line of the rig, active high or low.
struct Line<P> {
    pin: P,
    active_low: bool,
    what: String,
}

impl<P: OutputPin> Line<P> {
    fn set(&mut self, active: bool) -> Result<()> {
        let high = active != self.active_low;
        let result = if high {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        result.map_err(|e| anyhow!("{}: setting the line: {e:?}", self.what))
    }
}

/// The line `entry` names, requested as an output, inactive.
fn request(entry: &GpioEntry, what: String) -> Result<Line<CdevPin>> {
    // gpio-cdev's error already ends with its cause: as context it would print it twice.
    let mut chip = Chip::new(&entry.chip)
        .map_err(|e| anyhow!("{what}: opening {}: {e}", entry.chip.display()))?;
    let inactive = u8::from(entry.active_low);
    let handle = chip
        .get_line(entry.line)
        .and_then(|line| line.request(LineRequestFlags::OUTPUT, inactive, "tandem-hil"))
        .with_context(|| {
            format!(
                "{what}: requesting line {} of {}",
                entry.line,
                entry.chip.display()
            )
        })?;
    let pin = CdevPin::new(handle).with_context(|| format!("{what}: reading the line's state"))?;
    Ok(Line {
        pin,
        active_low: entry.active_low,
        what,
    })
}

pub struct HardwareBoard {
    console: Transcript,
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
    power: Line<CdevPin>,
    reset: Option<Line<CdevPin>>,
    faults: BTreeMap<String, Line<CdevPin>>,
}

impl HardwareBoard {
    /// Opens the board's serial port and requests its lines; the board starts powered off.
    pub fn open(entry: &BoardEntry) -> Result<Self> {
        let name = &entry.name;
        let (Some(serial), Some(power)) = (&entry.serial, &entry.power) else {
            return Err(anyhow!(
                "board `{name}`: a real board needs `serial` and `power`"
            ));
        };
        let mut power = request(power, format!("board `{name}`: power"))?;
        power.set(false)?;
        let reset = entry
            .reset
            .as_ref()
            .map(|r| request(r, format!("board `{name}`: reset")))
            .transpose()?;
        let faults = entry
            .faults
            .iter()
            .map(|(line, g)| {
                Ok((
                    line.clone(),
                    request(g, format!("board `{name}`: fault `{line}`"))?,
                ))
            })
            .collect::<Result<_>>()?;
        let port = crate::monitor::open(&serial.port, serial.baud)?;
        let console = Transcript::default();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Some(console.follow(port, stop.clone()));
        Ok(Self {
            console,
            stop,
            reader,
            power,
            reset,
            faults,
        })
    }
}

impl Board for HardwareBoard {
    fn console(&self) -> &Transcript {
        &self.console
    }

    fn power(&mut self, on: bool) -> Result<()> {
        self.power.set(on)
    }

    fn reset(&mut self) -> Result<()> {
        let line = self
            .reset
            .as_mut()
            .ok_or_else(|| anyhow!("the rig file gives this board no `reset` line"))?;
        line.set(true)?;
        thread::sleep(RESET_PULSE);
        line.set(false)
    }

    fn fault(&mut self, line: &str, asserted: bool) -> Result<()> {
        self.faults
            .get_mut(line)
            .ok_or_else(|| anyhow!("the rig file gives this board no fault line `{line}`"))?
            .set(asserted)
    }

    fn log(&self) -> Result<Vec<String>> {
        Err(anyhow!(
            "the rig runner does not read a real board's log: `cargo xtask monitor --log-port` \
             decodes it"
        ))
    }
}

impl Drop for HardwareBoard {
    /// A scenario leaves its boards powered off.
    fn drop(&mut self) {
        let _ = self.power.set(false);
        self.stop.store(true, Ordering::Release);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
