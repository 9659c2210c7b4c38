//! The datagram link keeps most of its fault-free throughput under jitter, loss and reordering,
//! counted in simulated time under a saturating load ([`tandem_ft::sim::load`]).
//!
//! Go-back-N, which this link replaced, fails each case: over the same 20 ms it delivered 91 % of
//! its fault-free frames under 1 us of jitter (its window covers only a round trip), 46 % under
//! 1 % loss and 27 % under 2 % reordering (a lost or late frame made it resend the whole window).

use tandem_ft::sim::load::{Load, saturate};
use tandem_ft::sim::net::WireFaults;

const US: u64 = 1_000;
const RUN: u64 = 20_000 * US;
/// One-way delay of the wire.
const DELAY: u64 = 10 * US;

fn wire(loss: f64, reorder: f64, jitter: u64) -> WireFaults {
    WireFaults {
        loss,
        reorder,
        delay_min: DELAY,
        delay_max: DELAY + jitter,
        ..WireFaults::default()
    }
}

fn run(faults: WireFaults) -> Load {
    let load = saturate(faults, None, RUN, 7);
    assert_eq!(load.misdelivered, 0, "{load:?}");
    load
}

#[test]
fn the_link_keeps_most_of_its_throughput_under_jitter_loss_and_reordering() {
    let clean = run(wire(0.0, 0.0, 0));
    assert_eq!(clean.sender.retransmits, 0, "{clean:?}");
    // Each case's least share of the fault-free frames, in percent.
    for (name, faults, keep) in [
        ("1 us jitter", wire(0.0, 0.0, US), 95),
        ("1 % loss", wire(0.01, 0.0, 0), 85),
        ("2 % reordering", wire(0.0, 0.02, 0), 85),
    ] {
        let load = run(faults);
        assert!(
            load.frames * 100 >= clean.frames * keep,
            "{name}: {} of {} frames delivered: {load:?}",
            load.frames,
            clean.frames,
        );
        // Only missing frames are resent: a few per frame the network lost or held back.
        assert!(
            load.sender.retransmits * 100 <= load.frames * 3,
            "{name}: {} retransmissions: {load:?}",
            load.sender.retransmits,
        );
    }
}
