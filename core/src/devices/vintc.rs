//! The interrupt state of one virtual CPU, independent of how the hardware injects it: which
//! interrupt IDs are pending, enabled and at which priority, and whether a pending one stands for a
//! physical interrupt the guest will deactivate itself. The backend moves pending interrupts into
//! its few hardware slots (GICv3 list registers) in priority order, and keeps the rest here until
//! slots free up, so no interrupt is lost when more are pending than there are slots.

/// Interrupt IDs modelled: 0..256 (on a GICv3: SGIs, PPIs and the first 224 SPIs).
pub const INTIDS: usize = 256;
const WORDS: usize = INTIDS / 64;
/// Priority of an interrupt the guest has not configured (GICv3 resets them to 0).
pub const DEFAULT_PRIORITY: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct VirtualInterrupts {
    pending: [u64; WORDS],
    enabled: [u64; WORDS],
    hardware: [u64; WORDS],
    priority: [u8; INTIDS],
}

/// A pending interrupt chosen for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub intid: u32,
    pub priority: u8,
    /// The physical interrupt with the same ID stays active until the guest deactivates this one.
    pub hardware: bool,
}

fn bit(intid: u32) -> Option<(usize, u64)> {
    let i = intid as usize;
    (i < INTIDS).then(|| (i / 64, 1u64 << (i % 64)))
}

impl Default for VirtualInterrupts {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualInterrupts {
    pub const fn new() -> Self {
        Self {
            pending: [0; WORDS],
            enabled: [0; WORDS],
            hardware: [0; WORDS],
            priority: [DEFAULT_PRIORITY; INTIDS],
        }
    }

    /// Makes `intid` pending; `hardware` links it to the physical interrupt of the same ID.
    pub fn raise(&mut self, intid: u32, hardware: bool) {
        if let Some((w, m)) = bit(intid) {
            self.pending[w] |= m;
            if hardware {
                self.hardware[w] |= m;
            } else {
                self.hardware[w] &= !m;
            }
        }
    }

    pub fn clear_pending(&mut self, intid: u32) {
        if let Some((w, m)) = bit(intid) {
            self.pending[w] &= !m;
        }
    }

    pub fn set_enabled(&mut self, intid: u32, on: bool) {
        if let Some((w, m)) = bit(intid) {
            if on {
                self.enabled[w] |= m;
            } else {
                self.enabled[w] &= !m;
            }
        }
    }

    /// A 32-interrupt register's worth of enable (or pending) bits, starting at `first`.
    pub fn enabled_word(&self, first: u32) -> u32 {
        Self::word(&self.enabled, first)
    }

    pub fn pending_word(&self, first: u32) -> u32 {
        Self::word(&self.pending, first)
    }

    fn word(bits: &[u64; WORDS], first: u32) -> u32 {
        match bit(first) {
            Some((w, _)) => (bits[w] >> ((first % 64) & !31)) as u32,
            None => 0,
        }
    }

    pub fn priority(&self, intid: u32) -> u8 {
        self.priority.get(intid as usize).copied().unwrap_or(0)
    }

    pub fn set_priority(&mut self, intid: u32, priority: u8) {
        if let Some(p) = self.priority.get_mut(intid as usize) {
            *p = priority;
        }
    }

    /// Pending interrupts that are enabled, i.e. could be delivered.
    pub fn deliverable(&self) -> bool {
        self.pending
            .iter()
            .zip(&self.enabled)
            .any(|(p, e)| p & e != 0)
    }

    /// Removes and returns the highest-priority (lowest value, then lowest ID) pending, enabled
    /// interrupt for which `in_flight` is false (the backend already holds a copy of it).
    pub fn take_next(&mut self, in_flight: impl Fn(u32) -> bool) -> Option<Delivery> {
        let mut best: Option<(u8, u32)> = None;
        for w in 0..WORDS {
            let mut bits = self.pending[w] & self.enabled[w];
            while bits != 0 {
                let intid = (w * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                let p = self.priority[intid as usize];
                if best.is_none_or(|(bp, _)| p < bp) && !in_flight(intid) {
                    best = Some((p, intid));
                }
            }
        }
        let (priority, intid) = best?;
        let (w, m) = bit(intid)?;
        self.pending[w] &= !m;
        Some(Delivery {
            intid,
            priority,
            hardware: self.hardware[w] & m != 0,
        })
    }

    /// Pending interrupts linked to physical ones, which a reset must deactivate; cleared.
    pub fn take_hardware_pending(&mut self) -> impl Iterator<Item = u32> {
        let linked: [u64; WORDS] = core::array::from_fn(|w| self.pending[w] & self.hardware[w]);
        *self = Self::new();
        (0..INTIDS as u32).filter(move |&i| linked[i as usize / 64] & 1 << (i % 64) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_pending_than_slots_are_delivered_in_priority_order_without_loss() {
        let mut v = VirtualInterrupts::new();
        for (intid, prio) in [(40, 0x80), (27, 0x20), (33, 0x80), (50, 0x10), (34, 0xa0)] {
            v.set_enabled(intid, true);
            v.set_priority(intid, prio);
            v.raise(intid, intid == 27);
        }
        let mut order = Vec::new();
        // Two slots at a time, as with a GIC that has two list registers.
        while v.deliverable() {
            for _ in 0..2 {
                if let Some(d) = v.take_next(|_| false) {
                    order.push((d.intid, d.hardware));
                }
            }
        }
        assert_eq!(
            order,
            [
                (50, false),
                (27, true),
                (33, false),
                (40, false),
                (34, false)
            ]
        );
    }

    #[test]
    fn disabled_or_in_flight_interrupts_wait() {
        let mut v = VirtualInterrupts::new();
        v.raise(27, true);
        assert!(!v.deliverable());
        assert_eq!(v.take_next(|_| false), None);
        v.set_enabled(27, true);
        assert_eq!(
            v.take_next(|i| i == 27),
            None,
            "a copy is still in a list register"
        );
        assert_eq!(v.take_next(|_| false).map(|d| d.intid), Some(27));
        assert_eq!(v.take_next(|_| false), None);
    }

    #[test]
    fn registers_read_back_32_bits_at_a_time() {
        let mut v = VirtualInterrupts::new();
        v.set_enabled(27, true);
        v.set_enabled(33, true);
        v.raise(70, false);
        assert_eq!(v.enabled_word(0), 1 << 27);
        assert_eq!(v.enabled_word(32), 1 << 1);
        assert_eq!(v.pending_word(64), 1 << 6);
    }

    #[test]
    fn reset_returns_the_linked_physical_interrupts() {
        let mut v = VirtualInterrupts::new();
        v.raise(27, true);
        v.raise(40, false);
        assert_eq!(v.take_hardware_pending().collect::<Vec<_>>(), [27]);
        assert_eq!(v, VirtualInterrupts::new());
    }
}
