//! Sequence numbers of reliable data packets and the buffer that keeps sent ones
//! for a resume.
//!
//! A sender numbers its reliable packets 1, 2, ... (0 means "not numbered", so the
//! count skips it when it wraps). SCTP may have taken a packet the server never
//! got when a connection drops; after a resume the server tells the last sequence
//! it received (`ReconnectResponse.last_message_seq`), and whatever the sender
//! kept beyond it goes out again. Receivers use the same numbers to drop what
//! they saw before ([`crate::dedup`]). Numbers are compared as serial numbers
//! (RFC 1982), so order holds across the wrap.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// A sender's first reliable sequence number.
pub const FIRST_SEQUENCE: u32 = 1;

/// Byte budget of the reliable packets kept for a resume, by default.
pub const RESEND_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// The number after `sequence`: wraps from `u32::MAX` to 1, never 0.
pub fn next_sequence(sequence: u32) -> u32 {
    sequence.wrapping_add(1).max(FIRST_SEQUENCE)
}

/// Whether `a` comes after `b` (serial number order: of the two ways round the
/// circle, the shorter one says which is first).
pub fn is_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// Hands out one sender's reliable sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequencer {
    next: u32,
}

impl Default for Sequencer {
    fn default() -> Self {
        Self::starting_at(FIRST_SEQUENCE)
    }
}

impl Sequencer {
    /// A sequencer whose next number is `next` (0 is taken as 1).
    pub fn starting_at(next: u32) -> Self {
        Self {
            next: next.max(FIRST_SEQUENCE),
        }
    }

    /// The number the next packet gets, without taking it.
    pub fn peek(&self) -> u32 {
        self.next
    }

    /// Takes the next number.
    pub fn take(&mut self) -> u32 {
        let n = self.next;
        self.next = next_sequence(n);
        n
    }
}

/// Reliable packets SCTP took, kept in send order until the server confirms it
/// has them or their bytes pass the budget (the oldest go first).
#[derive(Debug, Clone)]
pub struct ResendBuffer {
    kept: VecDeque<(u32, Vec<u8>)>,
    bytes: usize,
    cap: usize,
}

impl Default for ResendBuffer {
    fn default() -> Self {
        Self::new(RESEND_BUFFER_BYTES)
    }
}

impl ResendBuffer {
    /// An empty buffer keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            kept: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    /// Keeps the packet numbered `sequence`, dropping the oldest over the budget.
    pub fn keep(&mut self, sequence: u32, bytes: Vec<u8>) {
        self.bytes += bytes.len();
        self.kept.push_back((sequence, bytes));
        while self.bytes > self.cap {
            match self.kept.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The server has every packet up to `last_sequence`: they need no resend.
    /// 0 (never a packet's number) means it has none of them.
    pub fn acknowledge(&mut self, last_sequence: u32) {
        if last_sequence == 0 {
            return;
        }
        while let Some((seq, _)) = self.kept.front() {
            if is_after(*seq, last_sequence) {
                break;
            }
            if let Some((_, b)) = self.kept.pop_front() {
                self.bytes -= b.len();
            }
        }
    }

    /// Takes every kept packet, oldest first, to send again.
    pub fn take(&mut self) -> VecDeque<(u32, Vec<u8>)> {
        self.bytes = 0;
        core::mem::take(&mut self.kept)
    }

    /// Forgets every kept packet (a new session knows nothing of the old one's).
    pub fn clear(&mut self) {
        self.kept.clear();
        self.bytes = 0;
    }

    /// Packets kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The numbers kept, oldest first.
    pub fn sequences(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.kept.iter().map(|(s, _)| *s)
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    #[cfg_attr(test, test)]
    fn numbers_start_at_one_and_skip_zero_when_they_wrap() {
        let mut s = Sequencer::default();
        assert_eq!((s.take(), s.take()), (1, 2));
        let mut s = Sequencer::starting_at(u32::MAX - 1);
        assert_eq!(s.take(), u32::MAX - 1);
        assert_eq!(s.take(), u32::MAX);
        assert_eq!(s.peek(), 1);
        assert_eq!(s.take(), 1);
        assert_eq!(Sequencer::starting_at(0).peek(), 1);
    }

    #[cfg_attr(test, test)]
    fn order_holds_across_the_wrap() {
        assert!(is_after(2, 1));
        assert!(!is_after(1, 2));
        assert!(!is_after(5, 5));
        assert!(is_after(1, u32::MAX));
        assert!(is_after(next_sequence(u32::MAX), u32::MAX));
        assert!(!is_after(u32::MAX, 1));
        assert!(is_after(10, u32::MAX - 10));
    }

    #[cfg_attr(test, test)]
    fn acknowledged_packets_are_dropped_and_the_rest_kept_in_order() {
        let mut b = ResendBuffer::new(1000);
        for seq in 1..=5 {
            b.keep(seq, vec![0; 10]);
        }
        b.acknowledge(0);
        assert_eq!(b.len(), 5);
        b.acknowledge(3);
        assert_eq!(b.sequences().collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(b.bytes(), 20);
        // An older confirmation changes nothing.
        b.acknowledge(2);
        assert_eq!(b.len(), 2);
        let again = b.take();
        assert_eq!(again.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 5]);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
    }

    #[cfg_attr(test, test)]
    fn acknowledging_works_across_the_wrap() {
        let mut b = ResendBuffer::new(1000);
        let mut s = Sequencer::starting_at(u32::MAX - 1);
        for _ in 0..4 {
            b.keep(s.take(), vec![1]);
        }
        // Kept: MAX-1, MAX, 1, 2. The server had up to MAX.
        b.acknowledge(u32::MAX);
        assert_eq!(b.sequences().collect::<Vec<_>>(), vec![1, 2]);
        b.acknowledge(1);
        assert_eq!(b.sequences().collect::<Vec<_>>(), vec![2]);
    }

    #[cfg_attr(test, test)]
    fn the_budget_drops_the_oldest_first() {
        let mut b = ResendBuffer::new(3000);
        for seq in 1..=10 {
            b.keep(seq, vec![0; 1000]);
        }
        assert_eq!(b.sequences().collect::<Vec<_>>(), vec![8, 9, 10]);
        assert_eq!(b.bytes(), 3000);
        // A packet over the whole budget is not kept at all.
        b.keep(11, vec![0; 3001]);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
        b.keep(12, vec![0; 5]);
        b.clear();
        assert_eq!((b.len(), b.bytes()), (0, 0));
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "numbers_start_at_one_and_skip_zero_when_they_wrap",
            numbers_start_at_one_and_skip_zero_when_they_wrap,
        ),
        ("order_holds_across_the_wrap", order_holds_across_the_wrap),
        (
            "acknowledged_packets_are_dropped_and_the_rest_kept_in_order",
            acknowledged_packets_are_dropped_and_the_rest_kept_in_order,
        ),
        (
            "acknowledging_works_across_the_wrap",
            acknowledging_works_across_the_wrap,
        ),
        (
            "the_budget_drops_the_oldest_first",
            the_budget_drops_the_oldest_first,
        ),
    ];
}
