//! Drops reliable data packets a receiver has seen before.
//!
//! After a resume the sender (or the server on its behalf) may send again what
//! already arrived, so each sender's highest sequence number is remembered and
//! anything at or before it is a duplicate. A sender is known by its participant
//! sid when the packet names one (a rejoin gets a new sid and starts afresh), else
//! by its identity; unnumbered packets (sequence 0, the lossy channel) always pass.
//! Senders idle for the time to live are forgotten, so state stays bounded by the
//! senders active recently.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use core::time::Duration;

use crate::packet::DataPacket;
use crate::reliable::is_after;

/// How long a sender's state lives after its last packet, by default.
pub const TTL: Duration = Duration::from_secs(30);

/// Idle senders are looked for at most this often: a sweep on every packet would
/// cost O(senders) on the receive path.
pub const PRUNE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Seen {
    sequence: u32,
    at_ms: u64,
}

/// Per-sender duplicate filter for received reliable packets. Times are
/// milliseconds on any monotonic clock.
#[derive(Debug, Clone)]
pub struct DuplicateFilter {
    last_seen: BTreeMap<String, Seen>,
    ttl_ms: u64,
    pruned_at_ms: Option<u64>,
}

impl Default for DuplicateFilter {
    fn default() -> Self {
        Self::new(TTL)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl DuplicateFilter {
    /// A filter forgetting senders idle for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            last_seen: BTreeMap::new(),
            ttl_ms: millis(ttl),
            pruned_at_ms: None,
        }
    }

    /// Whether `packet` is new: `false` for a numbered packet its sender sent
    /// before.
    pub fn accept_packet(&mut self, packet: &DataPacket, now_ms: u64) -> bool {
        let sender = if packet.participant_sid.is_empty() {
            &packet.participant_identity
        } else {
            &packet.participant_sid
        };
        self.accept(sender, packet.sequence, now_ms)
    }

    /// Whether the packet numbered `sequence` from `sender` is new, remembering it.
    pub fn accept(&mut self, sender: &str, sequence: u32, now_ms: u64) -> bool {
        if sequence == 0 {
            return true;
        }
        self.prune(now_ms);
        let ttl = self.ttl_ms;
        match self.last_seen.get_mut(sender) {
            Some(seen) => {
                // State older than the TTL is as good as forgotten.
                let fresh = now_ms.saturating_sub(seen.at_ms) < ttl;
                seen.at_ms = now_ms;
                if fresh && !is_after(sequence, seen.sequence) {
                    return false;
                }
                seen.sequence = sequence;
                true
            }
            None => {
                self.last_seen.insert(
                    sender.to_owned(),
                    Seen {
                        sequence,
                        at_ms: now_ms,
                    },
                );
                true
            }
        }
    }

    /// Forgets a sender (e.g. one that left).
    pub fn forget(&mut self, sender: &str) {
        self.last_seen.remove(sender);
    }

    /// Senders with live state.
    pub fn tracked_senders(&self) -> usize {
        self.last_seen.len()
    }

    fn prune(&mut self, now_ms: u64) {
        let due = self
            .pruned_at_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= millis(PRUNE_EVERY));
        if due {
            self.pruned_at_ms = Some(now_ms);
            let ttl = self.ttl_ms;
            self.last_seen
                .retain(|_, seen| now_ms.saturating_sub(seen.at_ms) < ttl);
        }
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;
    use crate::channel::DataKind;
    use crate::outbox::{Outbox, UserData};
    use alloc::vec::Vec;
    use prost::Message;

    const TTL_MS: u64 = 30_000;

    #[cfg_attr(test, test)]
    fn duplicates_are_dropped_per_sender_and_forgotten_after_ttl() {
        let mut f = DuplicateFilter::default();
        assert!(f.accept("alice", 1, 0));
        assert!(!f.accept("alice", 1, 0));
        // Another sender with the same sequence is not a duplicate.
        assert!(f.accept("bob", 1, 0));
        assert_eq!(f.tracked_senders(), 2);
        let later = TTL_MS + 1000;
        assert!(f.accept("alice", 1, later));
        assert_eq!(f.tracked_senders(), 1);
    }

    #[cfg_attr(test, test)]
    fn older_numbers_are_duplicates_and_gaps_are_not() {
        let mut f = DuplicateFilter::default();
        assert!(f.accept("a", 5, 0));
        assert!(!f.accept("a", 3, 1));
        assert!(f.accept("a", 9, 2));
        assert!(!f.accept("a", 5, 3));
        // Unnumbered packets always pass and leave no state.
        assert!(f.accept("b", 0, 4));
        assert!(f.accept("b", 0, 4));
        assert_eq!(f.tracked_senders(), 1);
    }

    #[cfg_attr(test, test)]
    fn a_sender_that_keeps_talking_is_not_forgotten() {
        let mut f = DuplicateFilter::default();
        for i in 1..=100u32 {
            assert!(f.accept("a", i, u64::from(i) * 1000));
        }
        // 100 s have passed, never more than 1 s between packets.
        assert!(!f.accept("a", 100, 100_500));
    }

    #[cfg_attr(test, test)]
    fn numbers_that_wrap_are_new() {
        let mut f = DuplicateFilter::default();
        assert!(f.accept("a", u32::MAX - 1, 0));
        assert!(f.accept("a", u32::MAX, 0));
        assert!(f.accept("a", 1, 0));
        assert!(!f.accept("a", u32::MAX, 0));
        assert!(f.accept("a", 2, 0));
    }

    #[cfg_attr(test, test)]
    fn a_clock_going_back_does_not_forget_or_panic() {
        let mut f = DuplicateFilter::default();
        assert!(f.accept("a", 1, 50_000));
        assert!(!f.accept("a", 1, 10_000));
        f.forget("a");
        assert!(f.accept("a", 1, 10_000));
    }

    #[cfg_attr(test, test)]
    fn the_sid_names_the_sender_when_there_is_one() {
        let mut f = DuplicateFilter::default();
        let mut p = DataPacket {
            participant_identity: "alice".into(),
            participant_sid: "PA_1".into(),
            sequence: 7,
            ..Default::default()
        };
        assert!(f.accept_packet(&p, 0));
        assert!(!f.accept_packet(&p, 0));
        // Alice rejoined: a new session, a new sid, fresh numbering.
        p.participant_sid = "PA_2".into();
        p.sequence = 1;
        assert!(f.accept_packet(&p, 0));
        // Without a sid the identity is the key.
        p.participant_sid.clear();
        assert!(f.accept_packet(&p, 0));
        assert!(!f.accept_packet(&p, 0));
    }

    /// What a sender sends, as bytes, and what a receiver keeps of it.
    fn receive(f: &mut DuplicateFilter, bytes: &[u8], now_ms: u64) -> Option<u32> {
        let p = DataPacket::decode(bytes).expect("a packet the outbox encoded");
        f.accept_packet(&p, now_ms).then_some(p.sequence)
    }

    #[cfg_attr(test, test)]
    fn packets_sent_again_after_a_resume_are_delivered_once() {
        let mut alice = Outbox::<()>::default();
        let mut bob = DuplicateFilter::default();
        let mut delivered = Vec::new();
        let data = |b: &[u8]| UserData {
            payload: b.to_vec(),
            ..Default::default()
        };
        for i in 0..5u8 {
            alice
                .push("alice", data(&[i]), DataKind::Reliable, 64_000, None)
                .expect("a small packet");
        }
        // All five reach bob, but the server's count lags: after the resume it
        // says it has up to 3, so 4 and 5 go out again.
        while let Some(b) = alice.front(DataKind::Reliable) {
            delivered.extend(receive(&mut bob, b, 10));
            alice.written(DataKind::Reliable);
        }
        alice.acknowledge(3);
        assert_eq!(alice.requeue_unacknowledged(), 2);
        alice
            .push("alice", data(b"6"), DataKind::Reliable, 64_000, None)
            .expect("a small packet");
        while let Some(b) = alice.front(DataKind::Reliable) {
            delivered.extend(receive(&mut bob, b, 20));
            alice.written(DataKind::Reliable);
        }
        assert_eq!(delivered, [1, 2, 3, 4, 5, 6]);
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "duplicates_are_dropped_per_sender_and_forgotten_after_ttl",
            duplicates_are_dropped_per_sender_and_forgotten_after_ttl,
        ),
        (
            "older_numbers_are_duplicates_and_gaps_are_not",
            older_numbers_are_duplicates_and_gaps_are_not,
        ),
        (
            "a_sender_that_keeps_talking_is_not_forgotten",
            a_sender_that_keeps_talking_is_not_forgotten,
        ),
        ("numbers_that_wrap_are_new", numbers_that_wrap_are_new),
        (
            "a_clock_going_back_does_not_forget_or_panic",
            a_clock_going_back_does_not_forget_or_panic,
        ),
        (
            "the_sid_names_the_sender_when_there_is_one",
            the_sid_names_the_sender_when_there_is_one,
        ),
        (
            "packets_sent_again_after_a_resume_are_delivered_once",
            packets_sent_again_after_a_resume_are_delivered_once,
        ),
    ];
}
