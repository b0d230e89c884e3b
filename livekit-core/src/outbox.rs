//! The send side of a participant's data, without locks or I/O: one ordered queue
//! per data channel, reliable sequence numbers, and the packets kept for a resume.
//!
//! A packet is encoded and numbered when it is pushed, so the order of pushes is
//! the order on the wire. Whoever drives the data channels takes packets from the
//! front ([`Outbox::front`]) and reports each one SCTP took ([`Outbox::written`]);
//! reliable ones then wait in a [`ResendBuffer`] until a resume says which the
//! server has. Each packet may carry a completion `D` (a callback, a channel, a
//! handle) that is handed back once the packet left or can never leave.

use alloc::borrow::ToOwned;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use prost::Message;

use crate::channel::{DataKind, MAX_MESSAGE_SIZE};
use crate::packet;
use crate::reliable::{ResendBuffer, Sequencer, RESEND_BUFFER_BYTES};

/// What a user publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserData {
    pub payload: Vec<u8>,
    pub topic: Option<String>,
    pub destination_identities: Vec<String>,
}

/// A data packet to send: its sender, its recipients (none: everyone) and its value.
pub struct Packet<'a> {
    pub identity: &'a str,
    pub destinations: Vec<String>,
    pub value: packet::data_packet::Value,
}

impl<'a> Packet<'a> {
    /// A user packet from `identity`. The identities are also written inside the
    /// `UserPacket`, where receivers older than the envelope fields read them.
    pub fn user(identity: &'a str, data: UserData) -> Self {
        #[allow(deprecated)]
        let value = packet::data_packet::Value::User(packet::UserPacket {
            participant_identity: identity.to_owned(),
            payload: data.payload,
            destination_identities: data.destination_identities.clone(),
            topic: data.topic,
            ..Default::default()
        });
        Self {
            identity,
            destinations: data.destination_identities,
            value,
        }
    }
}

/// A packet (or its payload) is over the message size limit; nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// Bytes of what was refused.
    pub size: usize,
    /// The limit it went over.
    pub max: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data packet of {} bytes is over the limit of {} bytes",
            self.size, self.max
        )
    }
}

impl core::error::Error for TooLarge {}

struct Pending<D> {
    sequence: u32,
    bytes: Vec<u8>,
    done: Option<D>,
}

/// Queues, sequence numbers and resend buffer of one sender; `D` is what the
/// caller wants back once a packet left (or never will).
pub struct Outbox<D> {
    sequence: Sequencer,
    queues: [VecDeque<Pending<D>>; 2],
    queued_bytes: usize,
    sent: ResendBuffer,
}

impl<D> Default for Outbox<D> {
    fn default() -> Self {
        Self::new(RESEND_BUFFER_BYTES)
    }
}

impl<D> Outbox<D> {
    /// An empty outbox keeping up to `resend_cap` bytes of sent reliable packets.
    pub fn new(resend_cap: usize) -> Self {
        Self {
            sequence: Sequencer::default(),
            queues: [VecDeque::new(), VecDeque::new()],
            queued_bytes: 0,
            sent: ResendBuffer::new(resend_cap),
        }
    }

    /// Encodes user `data` from `identity` and queues it; refuses it, before
    /// anything is built, when its payload alone is over `max_message_size`.
    /// Returns its sequence number (0 on the lossy channel).
    pub fn push(
        &mut self,
        identity: &str,
        data: UserData,
        kind: DataKind,
        max_message_size: usize,
        done: Option<D>,
    ) -> Result<u32, TooLarge> {
        let max = max_message_size.min(MAX_MESSAGE_SIZE);
        // Cheap early refusal, without building a packet around a huge payload.
        if data.payload.len() > max {
            return Err(TooLarge {
                size: data.payload.len(),
                max,
            });
        }
        self.push_packet(Packet::user(identity, data), kind, max, done)
    }

    /// Encodes any data packet (DTMF, transcription, RPC, stream...) and queues it.
    /// A packet refused as too large takes no sequence number. Returns its sequence
    /// number (0 on the lossy channel).
    pub fn push_packet(
        &mut self,
        packet: Packet<'_>,
        kind: DataKind,
        max_message_size: usize,
        done: Option<D>,
    ) -> Result<u32, TooLarge> {
        let max = max_message_size.min(MAX_MESSAGE_SIZE);
        let sequence = match kind {
            DataKind::Reliable => self.sequence.peek(),
            DataKind::Lossy => 0,
        };
        #[allow(deprecated)]
        let encoded = packet::DataPacket {
            kind: kind.packet_kind() as i32,
            participant_identity: packet.identity.to_owned(),
            destination_identities: packet.destinations,
            sequence,
            value: Some(packet.value),
            ..Default::default()
        };
        let bytes = encoded.encode_to_vec();
        if bytes.len() > max {
            return Err(TooLarge {
                size: bytes.len(),
                max,
            });
        }
        if kind == DataKind::Reliable {
            self.sequence.take();
        }
        self.queued_bytes += bytes.len();
        self.queues[kind.index()].push_back(Pending {
            sequence,
            bytes,
            done,
        });
        Ok(sequence)
    }

    /// The next packet of `kind` to hand to SCTP.
    pub fn front(&self, kind: DataKind) -> Option<&[u8]> {
        self.queues[kind.index()]
            .front()
            .map(|p| p.bytes.as_slice())
    }

    /// SCTP took the front packet of `kind`: reliable ones are kept for a resume.
    /// Returns the packet's completion.
    pub fn written(&mut self, kind: DataKind) -> Option<D> {
        let p = self.queues[kind.index()].pop_front()?;
        self.queued_bytes -= p.bytes.len();
        if kind == DataKind::Reliable {
            self.sent.keep(p.sequence, p.bytes);
        }
        p.done
    }

    /// The front packet of `kind` can never be sent (e.g. SCTP refused it).
    pub fn discard_front(&mut self, kind: DataKind) -> Option<D> {
        let p = self.queues[kind.index()].pop_front()?;
        self.queued_bytes -= p.bytes.len();
        p.done
    }

    /// The server confirmed it received every reliable packet up to
    /// `last_sequence` (0: none).
    pub fn acknowledge(&mut self, last_sequence: u32) {
        self.sent.acknowledge(last_sequence);
    }

    /// After a resume: the reliable packets the server may not have go out again,
    /// first, in their order. Returns how many.
    pub fn requeue_unacknowledged(&mut self) -> usize {
        let again = self.sent.take();
        let n = again.len();
        let queue = &mut self.queues[DataKind::Reliable.index()];
        for (sequence, bytes) in again.into_iter().rev() {
            self.queued_bytes += bytes.len();
            queue.push_front(Pending {
                sequence,
                bytes,
                done: None,
            });
        }
        n
    }

    /// A new session knows nothing of the old one's packets.
    pub fn forget_sent(&mut self) {
        self.sent.clear();
    }

    /// Empties the queues and the resend buffer (the room is over); returns the
    /// completions of the packets that never left.
    pub fn drain(&mut self) -> Vec<D> {
        self.queued_bytes = 0;
        self.forget_sent();
        self.queues
            .iter_mut()
            .flat_map(|q| q.drain(..))
            .filter_map(|p| p.done)
            .collect()
    }

    /// Packets waiting for SCTP, on both channels.
    pub fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Bytes waiting for SCTP, on both channels.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Reliable packets kept for a resume.
    pub fn kept(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    fn user(payload: &[u8]) -> UserData {
        UserData {
            payload: payload.to_vec(),
            topic: Some("t".into()),
            destination_identities: vec![],
        }
    }

    fn decode(b: &[u8]) -> packet::DataPacket {
        packet::DataPacket::decode(b).expect("a packet the outbox encoded")
    }

    /// Sends what waits on the reliable channel; returns its sequence numbers.
    fn flush(o: &mut Outbox<u8>) -> Vec<u32> {
        let mut seqs = vec![];
        while let Some(b) = o.front(DataKind::Reliable) {
            seqs.push(decode(b).sequence);
            o.written(DataKind::Reliable);
        }
        seqs
    }

    #[cfg_attr(test, test)]
    fn packets_keep_call_order_and_numbering() {
        let mut o = Outbox::<u8>::default();
        for i in 0..3u8 {
            assert_eq!(
                o.push("me", user(&[i]), DataKind::Reliable, 64_000, Some(i)),
                Ok(u32::from(i) + 1)
            );
        }
        assert_eq!(
            o.push("me", user(b"lossy"), DataKind::Lossy, 64_000, None),
            Ok(0)
        );
        let mut got = vec![];
        while let Some(b) = o.front(DataKind::Reliable) {
            let p = decode(b);
            assert_eq!(p.participant_identity, "me");
            match p.value {
                Some(packet::data_packet::Value::User(u)) => {
                    assert_eq!(u.topic.as_deref(), Some("t"));
                    got.push(u.payload[0]);
                }
                other => panic!("{other:?}"),
            }
            let done = o.written(DataKind::Reliable);
            assert_eq!(done, got.last().copied());
        }
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!((o.queued(), o.kept()), (1, 3));
        let lossy = decode(o.front(DataKind::Lossy).expect("the lossy packet"));
        assert_eq!(lossy.sequence, 0);
        assert_eq!(lossy.kind, packet::data_packet::Kind::Lossy as i32);
        o.written(DataKind::Lossy);
        // Lossy packets are never kept.
        assert_eq!((o.queued(), o.queued_bytes(), o.kept()), (0, 0, 3));
    }

    #[cfg_attr(test, test)]
    fn oversized_packets_are_refused_before_queueing() {
        let mut o = Outbox::<u8>::default();
        let err = o.push("me", user(&[0; 2000]), DataKind::Reliable, 1000, None);
        assert_eq!(
            err,
            Err(TooLarge {
                size: 2000,
                max: 1000
            })
        );
        // The envelope counts too.
        let err = o.push("me", user(&[0; 1000]), DataKind::Reliable, 1000, None);
        assert!(matches!(err, Err(TooLarge { max: 1000, size }) if size > 1000));
        // Whatever the caller allows, a message is at most MAX_MESSAGE_SIZE.
        let err = o.push("me", user(&[0; 70_000]), DataKind::Lossy, 1 << 20, None);
        assert_eq!(
            err,
            Err(TooLarge {
                size: 70_000,
                max: MAX_MESSAGE_SIZE
            })
        );
        assert_eq!((o.queued(), o.queued_bytes(), o.kept()), (0, 0, 0));
        // A refused packet takes no sequence number.
        assert_eq!(
            o.push("me", user(b"x"), DataKind::Reliable, 1000, None),
            Ok(1)
        );
    }

    #[cfg_attr(test, test)]
    fn a_resume_sends_unacknowledged_packets_first_in_order() {
        let mut o = Outbox::<u8>::default();
        for i in 0..5u8 {
            o.push("me", user(&[i]), DataKind::Reliable, 64_000, Some(i))
                .expect("a small packet");
        }
        for _ in 0..3 {
            o.written(DataKind::Reliable);
        }
        // The server had 1 and 2; 3 was lost with the connection, 4 and 5 never left.
        o.acknowledge(2);
        assert_eq!(o.requeue_unacknowledged(), 1);
        // The resent packet's completion already ran: it carries none.
        assert_eq!(o.written(DataKind::Reliable), None);
        assert_eq!(flush(&mut o), vec![4, 5]);
    }

    #[cfg_attr(test, test)]
    fn a_resume_where_the_server_had_nothing_resends_everything_kept() {
        let mut o = Outbox::<u8>::default();
        for i in 0..3u8 {
            o.push("me", user(&[i]), DataKind::Reliable, 64_000, None)
                .expect("a small packet");
        }
        flush(&mut o);
        o.acknowledge(0);
        assert_eq!(o.requeue_unacknowledged(), 3);
        assert_eq!(o.queued(), 3);
        assert_eq!(flush(&mut o), vec![1, 2, 3]);
        // Sent again, they are kept again until confirmed.
        assert_eq!(o.kept(), 3);
        o.acknowledge(3);
        assert_eq!(o.kept(), 0);
    }

    #[cfg_attr(test, test)]
    fn the_resend_buffer_is_bounded() {
        let mut o = Outbox::<u8>::new(3000);
        for _ in 0..10 {
            o.push("me", user(&[0; 1000]), DataKind::Reliable, 64_000, None)
                .expect("a small packet");
            o.written(DataKind::Reliable);
        }
        assert!(o.kept() <= 3, "kept {}", o.kept());
    }

    #[cfg_attr(test, test)]
    fn a_new_session_resends_nothing_of_the_old_one() {
        let mut o = Outbox::<u8>::default();
        o.push("me", user(b"x"), DataKind::Reliable, 64_000, None)
            .expect("a small packet");
        flush(&mut o);
        o.forget_sent();
        assert_eq!(o.requeue_unacknowledged(), 0);
        // Numbering goes on.
        assert_eq!(
            o.push("me", user(b"y"), DataKind::Reliable, 64_000, None),
            Ok(2)
        );
    }

    #[cfg_attr(test, test)]
    fn draining_hands_back_what_never_left() {
        let mut o = Outbox::<u8>::default();
        o.push("me", user(b"a"), DataKind::Reliable, 64_000, Some(1))
            .expect("a small packet");
        o.push("me", user(b"b"), DataKind::Lossy, 64_000, Some(2))
            .expect("a small packet");
        o.push("me", user(b"c"), DataKind::Reliable, 64_000, Some(3))
            .expect("a small packet");
        assert_eq!(o.written(DataKind::Reliable), Some(1));
        assert_eq!(o.discard_front(DataKind::Reliable), Some(3));
        assert_eq!(o.front(DataKind::Reliable), None);
        assert_eq!(o.drain(), vec![2]);
        assert_eq!((o.queued(), o.queued_bytes(), o.kept()), (0, 0, 0));
    }

    #[cfg_attr(test, test)]
    fn user_packets_name_their_sender_and_recipients_twice() {
        let data = UserData {
            payload: b"hi".to_vec(),
            topic: None,
            destination_identities: vec!["bob".into()],
        };
        let p = Packet::user("alice", data);
        assert_eq!(p.destinations, vec![String::from("bob")]);
        #[allow(deprecated)]
        match p.value {
            packet::data_packet::Value::User(u) => {
                assert_eq!(u.participant_identity, "alice");
                assert_eq!(u.destination_identities, vec![String::from("bob")]);
            }
            _ => panic!("not a user packet"),
        }
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "packets_keep_call_order_and_numbering",
            packets_keep_call_order_and_numbering,
        ),
        (
            "oversized_packets_are_refused_before_queueing",
            oversized_packets_are_refused_before_queueing,
        ),
        (
            "a_resume_sends_unacknowledged_packets_first_in_order",
            a_resume_sends_unacknowledged_packets_first_in_order,
        ),
        (
            "a_resume_where_the_server_had_nothing_resends_everything_kept",
            a_resume_where_the_server_had_nothing_resends_everything_kept,
        ),
        ("the_resend_buffer_is_bounded", the_resend_buffer_is_bounded),
        (
            "a_new_session_resends_nothing_of_the_old_one",
            a_new_session_resends_nothing_of_the_old_one,
        ),
        (
            "draining_hands_back_what_never_left",
            draining_hands_back_what_never_left,
        ),
        (
            "user_packets_name_their_sender_and_recipients_twice",
            user_packets_name_their_sender_and_recipients_twice,
        ),
    ];
}
