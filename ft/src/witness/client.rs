//! A board's witness client: an [`Arbiter`] that asks the witness over a datagram transport and
//! never blocks the exit loop.
//!
//! The engines call the arbiter on every poll while they arbitrate and read
//! [`ArbiterError::Unreachable`] as "wait, ask again". So each call takes whatever answers have
//! arrived, sends a request if none went out in the last `retry_ns`, and reports `Unreachable`
//! until an answer settles the question. Answers are matched to requests by nonce and checked
//! against what was asked, so a lost, duplicated, late or corrupted datagram can delay an answer
//! but never make one up.
//!
//! What an answer says about a claimed epoch is final: the witness's holder of an epoch never
//! changes, and a stale epoch never becomes current again. The client keeps the newest epoch it
//! has heard of and its holder, and answers from that without asking again. "Nobody yet" is not
//! final: it counts only for the run of [`Arbiter::holder`] calls whose query it answers.

use super::wire::{ANSWER_LEN, Answer, Ask, Request};
use crate::arbiter::{Arbiter, ArbiterError, Side};
use crate::link::datagram::Datagram;

/// How many requests the client remembers, to recognise their answers. Answers slower than this
/// many retries are dropped: `retry_ns` should exceed the round trip to the witness.
const REMEMBERED: usize = 8;

/// Client settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The pair's deployment (a hash of its configuration), the same on both boards.
    pub cluster: u32,
    /// Ask again after this long without an answer (ns). A caller that stops asking who holds
    /// an epoch for longer than this starts afresh: answers to its earlier queries no longer
    /// count, since whatever it is checking may have happened during the pause.
    pub retry_ns: u64,
    /// Seeds the nonces: pass something that differs between the two boards and between boots
    /// (a MAC and a boot counter or timer reading), so that an answer meant for the other board
    /// or an earlier boot is not taken for one's own.
    pub nonce_seed: u64,
}

/// Counters the caller can log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WitnessStats {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Requests sent again because the previous one went unanswered for `retry_ns`.
    pub retries: u64,
    /// Answers accepted.
    pub answers: u64,
    /// Datagrams that are no answer (length, CRC, kind or shape wrong) or that contradict the
    /// question or an earlier answer.
    pub malformed: u64,
    /// Well-formed answers to no question being asked: unknown nonce (another asker's, or older
    /// than the client remembers), another cluster or epoch, or a query already superseded.
    pub unmatched: u64,
}

/// A request sent.
#[derive(Clone, Copy, Debug)]
struct Sent {
    nonce: u64,
    epoch: u32,
    claim: bool,
    /// Position among all requests sent.
    index: u64,
    /// When it was sent.
    at: u64,
}

/// The board's [`Arbiter`] backed by a witness reached through `T`, a transport carrying only
/// witness payloads (the caller's demultiplexer strips the Ethernet framing).
pub struct WitnessArbiter<T: Datagram> {
    transport: T,
    config: ClientConfig,
    now: u64,
    /// Index of the next request.
    next_index: u64,
    sent: heapless::HistoryBuf<Sent, REMEMBERED>,
    /// The newest epoch claimed in the cluster that an answer reported (0: none).
    current: u32,
    /// Who holds `current`, once an answer said.
    holder: Option<Side>,
    /// An epoch nobody held when a query of the current run of `holder` calls was answered.
    nobody: Option<u32>,
    /// Queries with a lower index were sent before the current run of `holder` calls.
    fresh_from: u64,
    /// When `holder` was last called.
    last_holder_call: Option<u64>,
    stats: WitnessStats,
}

/// SplitMix64's output function: consecutive states give unrelated nonces.
fn mix(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Request `index`'s nonce: SplitMix64's sequence from `seed`, so every request's differs and
/// two seeds' sequences meet only by a fluke.
fn nonce(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

impl<T: Datagram> WitnessArbiter<T> {
    /// A client over `transport`; nothing is sent until the engine asks.
    pub fn new(transport: T, config: ClientConfig) -> Self {
        Self {
            transport,
            config,
            now: 0,
            next_index: 0,
            sent: heapless::HistoryBuf::new(),
            current: 0,
            holder: None,
            nobody: None,
            fresh_from: 0,
            last_holder_call: None,
            stats: WitnessStats::default(),
        }
    }

    /// Advance the clock (ns, monotonic); call before each engine poll.
    pub fn tick(&mut self, now_ns: u64) {
        self.now = now_ns;
    }

    /// Traffic counters.
    pub fn stats(&self) -> WitnessStats {
        self.stats
    }

    /// What the answers so far settle about `epoch`, if anything.
    fn known(&self, epoch: u32) -> Option<Result<Side, ArbiterError>> {
        if epoch < self.current {
            return Some(Err(ArbiterError::StaleEpoch {
                mine: epoch,
                current: self.current,
            }));
        }
        self.holder.filter(|_| epoch == self.current).map(Ok)
    }

    /// Whether an answer to `sent` may still be used: claims are answered with final facts
    /// whenever they arrive, queries only within the run of calls that sent them.
    fn counts(&self, sent: &Sent) -> bool {
        sent.claim || sent.index >= self.fresh_from
    }

    /// Send `ask` about `epoch` unless the same question went out less than `retry_ns` ago.
    fn ask(&mut self, epoch: u32, ask: Ask) {
        let claim = matches!(ask, Ask::Claim(_));
        let last = self
            .sent
            .as_slice()
            .iter()
            .filter(|s| s.epoch == epoch && s.claim == claim && self.counts(s))
            .map(|s| s.at)
            .max();
        if let Some(at) = last {
            if self.now.saturating_sub(at) < self.config.retry_ns {
                return;
            }
            self.stats.retries += 1;
        }
        let index = self.next_index;
        self.next_index += 1;
        let nonce = nonce(self.config.nonce_seed, index);
        let request = Request {
            cluster: self.config.cluster,
            epoch,
            ask,
            nonce,
        };
        self.transport.send(&request.encode());
        self.sent.write(Sent {
            nonce,
            epoch,
            claim,
            index,
            at: self.now,
        });
        self.stats.requests += 1;
    }

    /// Take every datagram waiting.
    fn drain(&mut self) {
        // One byte more than an answer, so that a longer datagram keeps the wrong length.
        let mut buf = [0u8; ANSWER_LEN + 1];
        while let Some(n) = self.transport.recv(&mut buf) {
            match buf.get(..n).and_then(Answer::decode) {
                Some(answer) => self.take(answer),
                None => self.stats.malformed += 1,
            }
        }
    }

    /// Accept `answer` if it answers a question of ours and agrees with what is known.
    fn take(&mut self, answer: Answer) {
        let sent = self
            .sent
            .as_slice()
            .iter()
            .find(|s| s.nonce == answer.nonce)
            .copied();
        let Some(sent) = sent.filter(|s| {
            answer.cluster == self.config.cluster && answer.epoch == s.epoch && self.counts(s)
        }) else {
            self.stats.unmatched += 1;
            return;
        };
        // A claim always leaves a holder for its epoch or finds it stale; and the witness never
        // names two holders for one epoch.
        let contradicts = answer.current == self.current
            && matches!((self.holder, answer.holder), (Some(a), Some(b)) if a != b);
        if (sent.claim && answer.holder.is_none() && answer.current < answer.epoch) || contradicts {
            self.stats.malformed += 1;
            return;
        }
        if answer.current > self.current {
            self.current = answer.current;
            self.holder = None;
        }
        if answer.current == self.current && self.holder.is_none() {
            self.holder = answer.holder;
        }
        if answer.outcome() == Ok(None) {
            self.nobody = Some(answer.epoch);
        }
        self.stats.answers += 1;
    }

    /// Note a `holder` call: after a pause longer than `retry_ns`, earlier queries stop counting.
    fn continue_holder_run(&mut self) {
        let paused = self
            .last_holder_call
            .is_none_or(|at| self.now.saturating_sub(at) > self.config.retry_ns);
        if paused {
            self.start_holder_run();
        }
        self.last_holder_call = Some(self.now);
    }

    /// From now on only answers to queries sent from now on count.
    fn start_holder_run(&mut self) {
        self.fresh_from = self.next_index;
        self.nobody = None;
    }
}

impl<T: Datagram> Arbiter for WitnessArbiter<T> {
    fn test_and_set(&mut self, epoch: u32, me: Side) -> Result<Side, ArbiterError> {
        self.drain();
        if let Some(known) = self.known(epoch) {
            return known;
        }
        self.ask(epoch, Ask::Claim(me));
        Err(ArbiterError::Unreachable)
    }

    fn holder(&mut self, epoch: u32) -> Result<Option<Side>, ArbiterError> {
        self.continue_holder_run();
        self.drain();
        if let Some(known) = self.known(epoch) {
            return known.map(Some);
        }
        if self.nobody == Some(epoch) {
            // Answered once: asking again means asking about the present, not the past.
            self.start_holder_run();
            return Ok(None);
        }
        self.ask(epoch, Ask::Query);
        Err(ArbiterError::Unreachable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::witness::{Claimed, Register};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    const CLUSTER: u32 = 0x5eed;
    const RETRY: u64 = 100;

    /// Datagrams in flight between the clients and the witness.
    #[derive(Default)]
    struct Net {
        /// Requests on their way to the witness, with the client that sent each.
        up: VecDeque<(usize, Vec<u8>)>,
        /// Datagrams on their way to each client.
        down: [VecDeque<Vec<u8>>; 2],
    }

    #[derive(Clone)]
    struct Port {
        net: Rc<RefCell<Net>>,
        id: usize,
    }

    impl Datagram for Port {
        fn send(&mut self, bytes: &[u8]) {
            self.net
                .borrow_mut()
                .up
                .push_back((self.id, bytes.to_vec()));
        }
        fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
            let d = self.net.borrow_mut().down[self.id].pop_front()?;
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            Some(n)
        }
    }

    /// The witness: a register and every decision it made, in order.
    #[derive(Default)]
    struct Witness {
        register: Register,
        decided: Vec<Claimed>,
    }

    impl Witness {
        /// Answer every request waiting; returns the answers (client, bytes) undelivered.
        fn serve(&mut self, net: &Rc<RefCell<Net>>) -> Vec<(usize, Vec<u8>)> {
            let requests: Vec<_> = net.borrow_mut().up.drain(..).collect();
            requests
                .into_iter()
                .filter_map(|(to, bytes)| {
                    let (answer, decided) = self.register.handle(Request::decode(&bytes)?).ok()?;
                    self.decided.extend(decided);
                    Some((to, answer.encode().to_vec()))
                })
                .collect()
        }

        fn winner(&self, epoch: u32) -> Option<Side> {
            self.decided
                .iter()
                .find(|c| c.epoch == epoch)
                .map(|c| c.side)
        }
    }

    fn deliver(net: &Rc<RefCell<Net>>, answers: &[(usize, Vec<u8>)]) {
        for (to, bytes) in answers {
            net.borrow_mut().down[*to].push_back(bytes.clone());
        }
    }

    fn setup() -> (Rc<RefCell<Net>>, [WitnessArbiter<Port>; 2]) {
        let net = Rc::new(RefCell::new(Net::default()));
        let client = |id: usize| {
            let config = ClientConfig {
                cluster: CLUSTER,
                retry_ns: RETRY,
                nonce_seed: 1000 + id as u64,
            };
            WitnessArbiter::new(
                Port {
                    net: net.clone(),
                    id,
                },
                config,
            )
        };
        let clients = [client(0), client(1)];
        (net, clients)
    }

    const UNREACHABLE: ArbiterError = ArbiterError::Unreachable;

    #[test]
    fn a_claim_is_answered_after_a_round_trip_and_then_known_without_asking() {
        let (net, [mut a, _]) = setup();
        let mut w = Witness::default();
        assert_eq!(a.test_and_set(1, Side::Primary), Err(UNREACHABLE));
        assert_eq!(a.test_and_set(1, Side::Primary), Err(UNREACHABLE));
        assert_eq!(net.borrow().up.len(), 1, "at most one request per retry_ns");
        deliver(&net, &w.serve(&net));
        assert_eq!(a.test_and_set(1, Side::Primary), Ok(Side::Primary));
        a.tick(10 * RETRY);
        assert_eq!(a.test_and_set(1, Side::Primary), Ok(Side::Primary));
        assert_eq!(a.holder(1), Ok(Some(Side::Primary)));
        assert!(
            net.borrow().up.is_empty(),
            "a decision is final: no more questions"
        );
        assert_eq!(
            a.stats(),
            WitnessStats {
                requests: 1,
                answers: 1,
                ..WitnessStats::default()
            }
        );
    }

    #[test]
    fn lost_requests_and_lost_answers_are_retried_after_retry_ns() {
        let (net, [mut a, mut b]) = setup();
        let mut w = Witness::default();
        assert_eq!(b.test_and_set(1, Side::Backup), Err(UNREACHABLE));
        net.borrow_mut().up.clear();
        b.tick(RETRY - 1);
        assert_eq!(b.test_and_set(1, Side::Backup), Err(UNREACHABLE));
        assert!(net.borrow().up.is_empty());
        b.tick(RETRY);
        assert_eq!(b.test_and_set(1, Side::Backup), Err(UNREACHABLE));
        // The witness decides, but the answer is lost.
        assert_eq!(w.serve(&net).len(), 1);
        assert_eq!(w.winner(1), Some(Side::Backup));
        // The primary's claim comes second and learns the winner.
        assert_eq!(a.test_and_set(1, Side::Primary), Err(UNREACHABLE));
        deliver(&net, &w.serve(&net));
        assert_eq!(a.test_and_set(1, Side::Primary), Ok(Side::Backup));
        b.tick(2 * RETRY);
        assert_eq!(b.test_and_set(1, Side::Backup), Err(UNREACHABLE));
        deliver(&net, &w.serve(&net));
        assert_eq!(b.test_and_set(1, Side::Backup), Ok(Side::Backup));
        assert_eq!((b.stats().requests, b.stats().retries), (3, 2));
        assert_eq!(w.decided.len(), 1);
    }

    #[test]
    fn duplicated_and_stale_answers_never_name_an_undecided_winner() {
        let (net, [mut a, mut b]) = setup();
        let mut w = Witness::default();
        // The primary asks who holds epoch 1: nobody yet. It reads that answer once.
        assert_eq!(a.holder(1), Err(UNREACHABLE));
        let nobody = w.serve(&net);
        deliver(&net, &nobody);
        assert_eq!(a.holder(1), Ok(None));
        // The backup claims the epoch.
        assert_eq!(b.test_and_set(1, Side::Backup), Err(UNREACHABLE));
        let won = w.serve(&net);
        // Asking again: the duplicate of the old "nobody" must not answer the new question.
        assert_eq!(a.holder(1), Err(UNREACHABLE));
        deliver(&net, &nobody);
        // Nor may the backup's answer, which echoes a nonce the primary never sent.
        net.borrow_mut().down[0].push_back(won[0].1.clone());
        assert_eq!(a.holder(1), Err(UNREACHABLE));
        deliver(&net, &w.serve(&net));
        assert_eq!(a.holder(1), Ok(Some(Side::Backup)));
        assert_eq!(a.test_and_set(1, Side::Primary), Ok(Side::Backup));
        assert_eq!(a.stats().unmatched, 2);
    }

    #[test]
    fn a_nobody_answer_from_before_a_pause_is_not_used_after_it() {
        let (net, [mut a, mut b]) = setup();
        let mut w = Witness::default();
        assert_eq!(a.holder(1), Err(UNREACHABLE));
        let late = w.serve(&net);
        // The primary stalls; meanwhile the backup wins.
        assert_eq!(b.test_and_set(1, Side::Backup), Err(UNREACHABLE));
        deliver(&net, &w.serve(&net));
        a.tick(RETRY + 1);
        deliver(&net, &late);
        assert_eq!(
            a.holder(1),
            Err(UNREACHABLE),
            "the answer predates the pause"
        );
        deliver(&net, &w.serve(&net));
        assert_eq!(a.holder(1), Ok(Some(Side::Backup)));
    }

    #[test]
    fn stale_epochs_are_reported_and_remembered() {
        let (net, [mut a, mut b]) = setup();
        let mut w = Witness::default();
        b.test_and_set(2, Side::Backup).unwrap_err();
        deliver(&net, &w.serve(&net));
        assert_eq!(b.test_and_set(2, Side::Backup), Ok(Side::Backup));
        let stale = Err(ArbiterError::StaleEpoch {
            mine: 1,
            current: 2,
        });
        assert_eq!(a.test_and_set(1, Side::Primary), Err(UNREACHABLE));
        deliver(&net, &w.serve(&net));
        assert_eq!(a.test_and_set(1, Side::Primary), stale);
        assert_eq!(a.holder(1), stale.map(Some));
        assert!(net.borrow().up.is_empty());
        assert_eq!(a.holder(3), Err(UNREACHABLE));
        deliver(&net, &w.serve(&net));
        assert_eq!(a.holder(3), Ok(None));
    }

    #[test]
    fn garbage_and_foreign_answers_are_counted_and_ignored() {
        let (net, [mut a, _]) = setup();
        let mut w = Witness::default();
        a.test_and_set(1, Side::Primary).unwrap_err();
        let (_, good) = w.serve(&net).remove(0);
        let answer = Answer::decode(&good).unwrap();
        let mut corrupt = good.clone();
        corrupt[9] ^= 3;
        let other_cluster = Answer {
            cluster: CLUSTER + 1,
            ..answer
        };
        let other_epoch = Answer {
            epoch: 2,
            holder: None,
            current: 1,
            ..answer
        };
        let backup_won = Answer {
            holder: Some(Side::Backup),
            ..answer
        };
        for bytes in [
            vec![],
            vec![3; 64],
            corrupt,
            good[..ANSWER_LEN - 1].to_vec(),
            [good.as_slice(), &[0]].concat(),
            other_cluster.encode().to_vec(),
            other_epoch.encode().to_vec(),
        ] {
            net.borrow_mut().down[0].push_back(bytes);
        }
        assert_eq!(a.test_and_set(1, Side::Primary), Err(UNREACHABLE));
        net.borrow_mut().down[0].push_back(good);
        net.borrow_mut().down[0].push_back(backup_won.encode().to_vec());
        assert_eq!(a.test_and_set(1, Side::Primary), Ok(Side::Primary));
        let stats = a.stats();
        assert_eq!((stats.malformed, stats.unmatched, stats.answers), (6, 2, 1));
    }

    #[test]
    fn two_clients_racing_agree_on_one_winner_in_either_order() {
        for first in 0..2 {
            let (net, mut clients) = setup();
            let mut w = Witness::default();
            let sides = [Side::Primary, Side::Backup];
            for (c, side) in clients.iter_mut().zip(sides) {
                assert_eq!(c.test_and_set(1, side), Err(UNREACHABLE));
            }
            if first == 1 {
                net.borrow_mut().up.make_contiguous().reverse();
            }
            deliver(&net, &w.serve(&net));
            let winner = sides[first];
            for (c, side) in clients.iter_mut().zip(sides) {
                assert_eq!(c.test_and_set(1, side), Ok(winner));
            }
            assert_eq!(w.decided.len(), 1);
        }
    }

    /// A small deterministic generator, so a failing seed can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 += 1;
            nonce(0, self.0) % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Both sides ask over a network that loses, duplicates, delays, reorders and replays old
    /// answers and adds garbage, until it heals. Every winner a client reports is the witness's,
    /// and a "nobody" is reported only if nobody held the epoch when the question was asked.
    #[test]
    fn a_hostile_network_never_makes_a_client_report_an_undecided_winner() {
        for seed in 0..300u64 {
            let mut rng = Rng(seed);
            let (net, mut clients) = setup();
            let mut w = Witness::default();
            let mut held_back: Vec<(usize, Vec<u8>)> = Vec::new();
            let mut seen: Vec<(usize, Vec<u8>)> = Vec::new();
            let start_claim = [rng.below(60), rng.below(60)];
            let sides = [Side::Primary, Side::Backup];
            let mut results: [Option<Side>; 2] = [None, None];
            // Step of the primary's last "nobody": a later one must come from a later question.
            let mut last_nobody = 0u64;
            let mut decided_at = None;
            let mut now = 0;
            for step in 1..2_000u64 {
                let healed = step > 500;
                now += rng.below(RETRY / 2);
                for (id, c) in clients.iter_mut().enumerate() {
                    c.tick(now);
                    if step < start_claim[id] {
                        // Only the primary fences with queries before it claims.
                        if id == 0 && c.holder(1) == Ok(None) {
                            assert!(
                                decided_at.is_none_or(|d| d > last_nobody),
                                "seed {seed}: stale nobody at step {step}"
                            );
                            last_nobody = step;
                        }
                        continue;
                    }
                    match c.test_and_set(1, sides[id]) {
                        Ok(side) => {
                            assert_eq!(Some(side), w.winner(1), "seed {seed}");
                            results[id] = Some(side);
                        }
                        Err(e) => assert_eq!(e, UNREACHABLE, "seed {seed}"),
                    }
                }
                if results.iter().all(Option::is_some) {
                    break;
                }
                if healed || rng.chance(50) {
                    if !healed && rng.chance(30) {
                        net.borrow_mut().up.make_contiguous().reverse();
                    }
                    let answers = w.serve(&net);
                    if decided_at.is_none() && w.winner(1).is_some() {
                        decided_at = Some(step);
                    }
                    for a in answers {
                        seen.push(a.clone());
                        match rng.below(10) {
                            _ if healed => deliver(&net, &[a]),
                            0..=2 => {}
                            3..=4 => deliver(&net, &[a.clone(), a]),
                            5..=7 => held_back.push(a),
                            _ => deliver(&net, &[a]),
                        }
                    }
                }
                if !held_back.is_empty() && rng.chance(30) {
                    let a = held_back.swap_remove(rng.below(held_back.len() as u64) as usize);
                    deliver(&net, &[a]);
                }
                if !seen.is_empty() && rng.chance(10) {
                    let (_, old) = seen[rng.below(seen.len() as u64) as usize].clone();
                    deliver(&net, &[(rng.below(2) as usize, old)]);
                }
                if rng.chance(5) {
                    let junk = (0..rng.below(40)).map(|_| rng.below(256) as u8).collect();
                    deliver(&net, &[(rng.below(2) as usize, junk)]);
                }
            }
            assert_eq!(results[0], results[1], "seed {seed}: one winner");
            assert!(results[0].is_some(), "seed {seed}: decided once healed");
            assert_eq!(w.decided.len(), 1, "seed {seed}");
        }
    }
}
