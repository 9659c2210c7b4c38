//! The simulated network between the two boards: two one-way wires that lose, duplicate,
//! corrupt, delay and reorder datagrams, and a partition switch.

use super::rng::Rng;
use crate::link::datagram::Datagram;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::vec::Vec;

/// Fault rates for a wire; delays in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WireFaults {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability one bit of a datagram is flipped.
    pub corrupt: f64,
    /// Probability a datagram takes an extra, long delay (and so is overtaken by later ones).
    pub reorder: f64,
    /// Least one-way delay.
    pub delay_min: u64,
    /// Greatest ordinary one-way delay.
    pub delay_max: u64,
}

/// Datagrams on a wire, ordered by delivery time, then by send order.
type Wire = BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>;

/// Both directions of the log link's network.
pub struct Net {
    now: u64,
    faults: WireFaults,
    rng: Rng,
    /// While true nothing crosses.
    pub partitioned: bool,
    wires: [Wire; 2],
    /// Delivery time of the last in-order datagram on each wire.
    last_at: [u64; 2],
    sent: u64,
}

impl Net {
    /// A network with `faults` in both directions.
    pub fn new(faults: WireFaults, rng: Rng) -> Rc<RefCell<Net>> {
        Rc::new(RefCell::new(Net {
            now: 0,
            faults,
            rng,
            partitioned: false,
            wires: [BinaryHeap::new(), BinaryHeap::new()],
            last_at: [0; 2],
            sent: 0,
        }))
    }

    /// Advance the network's clock.
    pub fn set_now(&mut self, now: u64) {
        self.now = now;
    }

    fn send(&mut self, wire: usize, bytes: &[u8]) {
        if self.partitioned || self.rng.chance(self.faults.loss) {
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut data = bytes.to_vec();
            if !data.is_empty() && self.rng.chance(self.faults.corrupt) {
                let bit = self.rng.below(data.len() as u64 * 8);
                data[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            let delay = self
                .rng
                .between(self.faults.delay_min, self.faults.delay_max);
            // Jitter alone never reorders a point-to-point link: a datagram leaves after the one
            // sent before it. Only the reorder fault lets one fall behind later ones.
            let at = if self.rng.chance(self.faults.reorder) {
                self.now + delay + self.rng.between(1, 4) * self.faults.delay_max.max(1)
            } else {
                let at = (self.now + delay).max(self.last_at[wire]);
                self.last_at[wire] = at;
                at
            };
            self.sent += 1;
            self.wires[wire].push(Reverse((at, self.sent, data)));
        }
    }

    fn recv(&mut self, wire: usize, buf: &mut [u8]) -> Option<usize> {
        loop {
            let Reverse((at, _, _)) = self.wires[wire].peek()?;
            if *at > self.now {
                return None;
            }
            let Reverse((_, _, data)) = self.wires[wire].pop()?;
            // A partition also swallows what was already on the wire.
            if self.partitioned {
                continue;
            }
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            return Some(n);
        }
    }
}

/// One board's network port: sends on one wire, receives from the other.
pub struct Port {
    net: Rc<RefCell<Net>>,
    tx: usize,
}

impl Port {
    /// The primary's and the backup's ports on `net`.
    pub fn pair(net: &Rc<RefCell<Net>>) -> (Port, Port) {
        (
            Port {
                net: net.clone(),
                tx: 0,
            },
            Port {
                net: net.clone(),
                tx: 1,
            },
        )
    }
}

impl Datagram for Port {
    fn send(&mut self, bytes: &[u8]) {
        self.net.borrow_mut().send(self.tx, bytes);
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.net.borrow_mut().recv(1 - self.tx, buf)
    }
}
