//! Failure detection: silence from the peer raises suspicion, nothing more. What to do about a
//! suspicion is decided by the arbiter.

/// What the detector concludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The peer was heard from recently.
    Alive,
    /// Nothing from the peer for `silent_for` ns, at least the configured timeout.
    Suspect { silent_for: u64 },
}

/// Watches a peer's activity counter (see [`crate::link::LogSender::peer_activity`]).
#[derive(Clone, Copy, Debug)]
pub struct Detector {
    timeout: u64,
    last_activity: u64,
    last_heard: u64,
}

impl Detector {
    /// A detector that suspects the peer after `timeout` ns of silence, counting from `now`.
    pub fn new(timeout: u64, now: u64) -> Self {
        Self {
            timeout,
            last_activity: 0,
            last_heard: now,
        }
    }

    /// How long the peer has been silent at `now`, as of the last [`Detector::observe`].
    pub fn silent_for(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_heard)
    }

    /// Feed the peer's activity counter at time `now`.
    pub fn observe(&mut self, activity: u64, now: u64) -> Health {
        if activity != self.last_activity {
            self.last_activity = activity;
            self.last_heard = now;
        }
        let silent_for = now.saturating_sub(self.last_heard);
        if silent_for >= self.timeout {
            Health::Suspect { silent_for }
        } else {
            Health::Alive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_past_the_timeout_raises_suspicion_and_activity_clears_it() {
        let mut d = Detector::new(100, 0);
        assert_eq!(d.observe(0, 99), Health::Alive);
        assert_eq!(d.observe(0, 100), Health::Suspect { silent_for: 100 });
        assert_eq!(d.observe(1, 150), Health::Alive);
        assert_eq!(d.observe(1, 249), Health::Alive);
        assert_eq!(d.observe(1, 260), Health::Suspect { silent_for: 110 });
    }
}
