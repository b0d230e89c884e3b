//! The receive side's jitter buffer, sans-IO: packets go in as they arrive, what
//! to play comes out in sequence order.
//!
//! Audio is worth little late, so the buffer adds no fixed delay: a packet in
//! order plays at once. Only a gap holds what follows it, for at most `max_wait`,
//! in case the missing packet was merely overtaken; then the gap is concealed
//! (the decoder makes it up) and the held packets play. Late and repeated packets
//! are dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::AudioPacket;

/// How long a gap may hold later packets back.
pub const MAX_WAIT: Duration = Duration::from_millis(40);
/// At most this many packets are held; more means the gap is a loss.
const MAX_HELD: usize = 16;
/// At most this many lost packets are concealed for one gap (the rest is silence
/// the playout clock fills).
const MAX_CONCEAL: u64 = 5;

/// What to do next, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Play {
    Decode(Arc<[u8]>),
    /// One packet is missing: make up its audio.
    Conceal,
}

#[derive(Debug)]
pub struct Jitter {
    max_wait: Duration,
    next: Option<u64>,
    held: BTreeMap<u64, Arc<[u8]>>,
    /// When the oldest held packet came.
    waiting_since: Option<Instant>,
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new(MAX_WAIT)
    }
}

impl Jitter {
    pub fn new(max_wait: Duration) -> Self {
        Self {
            max_wait,
            next: None,
            held: BTreeMap::new(),
            waiting_since: None,
        }
    }

    /// When [`Jitter::timeout`] must be called, if something is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + self.max_wait)
    }

    pub fn push(&mut self, packet: AudioPacket, now: Instant, out: &mut Vec<Play>) {
        let next = *self.next.get_or_insert(packet.seq);
        if packet.seq < next || self.held.contains_key(&packet.seq) {
            return;
        }
        if packet.seq == next {
            out.push(Play::Decode(packet.data));
            self.next = Some(next + 1);
            self.release(out);
            return;
        }
        self.held.insert(packet.seq, packet.data);
        self.waiting_since.get_or_insert(now);
        if self.held.len() > MAX_HELD {
            self.skip_gap(out);
        }
    }

    /// The wait for a missing packet is over: conceal it and play what follows.
    pub fn timeout(&mut self, now: Instant, out: &mut Vec<Play>) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.skip_gap(out);
        }
    }

    fn skip_gap(&mut self, out: &mut Vec<Play>) {
        let (Some(next), Some(first)) = (self.next, self.held.keys().next().copied()) else {
            return;
        };
        for _ in 0..(first - next).min(MAX_CONCEAL) {
            out.push(Play::Conceal);
        }
        self.next = Some(first);
        self.release(out);
    }

    /// Plays the held packets that are now in order.
    fn release(&mut self, out: &mut Vec<Play>) {
        while let Some(next) = self.next {
            match self.held.remove(&next) {
                Some(data) => {
                    out.push(Play::Decode(data));
                    self.next = Some(next + 1);
                }
                None => break,
            }
        }
        if self.held.is_empty() {
            self.waiting_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64) -> AudioPacket {
        AudioPacket {
            seq,
            rtp_time: seq * 960,
            data: vec![seq as u8].into(),
        }
    }

    fn played(out: &[Play]) -> Vec<i32> {
        out.iter()
            .map(|p| match p {
                Play::Decode(d) => i32::from(d[0]),
                Play::Conceal => -1,
            })
            .collect()
    }

    #[test]
    fn in_order_plays_at_once_and_reordering_is_undone() {
        let mut j = Jitter::default();
        let t = Instant::now();
        let mut out = vec![];
        j.push(p(1), t, &mut out);
        j.push(p(2), t, &mut out);
        assert_eq!(played(&out), [1, 2]);
        assert!(j.deadline().is_none());
        j.push(p(4), t, &mut out);
        assert_eq!(j.deadline(), Some(t + MAX_WAIT));
        j.push(p(3), t, &mut out);
        j.push(p(3), t, &mut out);
        j.push(p(2), t, &mut out);
        assert_eq!(played(&out), [1, 2, 3, 4]);
        assert!(j.deadline().is_none());
    }

    #[test]
    fn a_lost_packet_is_concealed_after_the_wait() {
        let mut j = Jitter::default();
        let t = Instant::now();
        let mut out = vec![];
        j.push(p(10), t, &mut out);
        j.push(p(12), t, &mut out);
        j.push(p(13), t + Duration::from_millis(20), &mut out);
        j.timeout(t + Duration::from_millis(39), &mut out);
        assert_eq!(played(&out), [10]);
        j.timeout(t + MAX_WAIT, &mut out);
        assert_eq!(played(&out), [10, -1, 12, 13]);
        // The late one is dropped.
        j.push(p(11), t + MAX_WAIT, &mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_long_gap_conceals_a_little_and_moves_on() {
        let mut j = Jitter::default();
        let t = Instant::now();
        let mut out = vec![];
        j.push(p(0), t, &mut out);
        for s in 100..=100 + MAX_HELD as u64 {
            j.push(p(s), t, &mut out);
        }
        let got = played(&out);
        assert_eq!(got[0], 0);
        assert_eq!(
            got.iter().filter(|v| **v == -1).count(),
            MAX_CONCEAL as usize
        );
        assert_eq!(got.len(), 1 + MAX_CONCEAL as usize + MAX_HELD + 1);
    }
}
