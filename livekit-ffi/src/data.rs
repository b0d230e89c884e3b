//! User data packets: kinds, size limits, decoding, and per-sender duplicate
//! filtering on receive.
//!
//! Sans-IO: callers hand in bytes and clocks, and get bytes and verdicts back. The
//! send side (numbering, queues, resend) is [`crate::outbox`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_core::packet;
use prost::Message;

use crate::error::DataError;

/// Hard cap on one data channel message, whatever the SDP allows.
pub const MAX_MESSAGE_SIZE: usize = 64_000;
/// How long per-sender receive state lives after the last packet.
pub const DEDUP_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    Reliable,
    Lossy,
}

impl DataKind {
    pub fn label(self) -> &'static str {
        match self {
            DataKind::Reliable => "_reliable",
            DataKind::Lossy => "_lossy",
        }
    }

    pub(crate) fn proto(self) -> packet::data_packet::Kind {
        match self {
            DataKind::Reliable => packet::data_packet::Kind::Reliable,
            DataKind::Lossy => packet::data_packet::Kind::Lossy,
        }
    }
}

/// What a user publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserData {
    pub payload: Vec<u8>,
    pub topic: Option<String>,
    pub destination_identities: Vec<String>,
}

/// What a user receives: a user packet with its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedData {
    pub payload: Vec<u8>,
    pub topic: Option<String>,
    pub kind: DataKind,
    pub participant_identity: String,
    pub participant_sid: String,
}

/// What a received data channel message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    User(ReceivedData),
    /// A packet of a kind this layer does not handle (RPC, streams, DTMF...).
    Other(Box<packet::DataPacket>),
    /// A reliable packet we already delivered.
    Duplicate,
}

/// Drops reliable packets seen before, per sender, forgetting idle senders.
#[derive(Debug, Default)]
pub struct DataReceiver {
    last_seen: HashMap<String, (u32, Instant)>,
    /// When idle senders were last forgotten: a sweep per packet would cost O(senders)
    /// on the receive path, so it runs at most once per `PRUNE_EVERY`.
    pruned_at: Option<Instant>,
}

const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl DataReceiver {
    #[allow(deprecated)] // older senders fill only the UserPacket's identity fields
    pub fn decode(
        &mut self,
        bytes: &[u8],
        lossy_channel: bool,
        now: Instant,
    ) -> Result<Incoming, DataError> {
        let packet =
            packet::DataPacket::decode(bytes).map_err(|e| DataError::Malformed(e.to_string()))?;
        if packet.sequence > 0 {
            let key = if packet.participant_sid.is_empty() {
                &packet.participant_identity
            } else {
                &packet.participant_sid
            };
            if !self.accept(key, packet.sequence, now) {
                return Ok(Incoming::Duplicate);
            }
        }
        #[allow(deprecated)]
        let kind = if lossy_channel || packet.kind == packet::data_packet::Kind::Lossy as i32 {
            DataKind::Lossy
        } else {
            DataKind::Reliable
        };
        match packet.value {
            Some(packet::data_packet::Value::User(user)) => {
                let participant_identity = if packet.participant_identity.is_empty() {
                    user.participant_identity
                } else {
                    packet.participant_identity
                };
                let participant_sid = if packet.participant_sid.is_empty() {
                    user.participant_sid
                } else {
                    packet.participant_sid
                };
                Ok(Incoming::User(ReceivedData {
                    payload: user.payload,
                    topic: user.topic,
                    kind,
                    participant_identity,
                    participant_sid,
                }))
            }
            _ => Ok(Incoming::Other(Box::new(packet))),
        }
    }

    fn accept(&mut self, sender: &str, sequence: u32, now: Instant) -> bool {
        if self
            .pruned_at
            .is_none_or(|t| now.saturating_duration_since(t) >= PRUNE_EVERY)
        {
            self.pruned_at = Some(now);
            self.last_seen
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < DEDUP_TTL);
        }
        match self.last_seen.get_mut(sender) {
            Some((last, at)) => {
                // State older than the TTL is as good as forgotten.
                let fresh = now.saturating_duration_since(*at) < DEDUP_TTL;
                *at = now;
                if fresh && sequence <= *last {
                    return false;
                }
                *last = sequence;
                true
            }
            None => {
                self.last_seen.insert(sender.to_owned(), (sequence, now));
                true
            }
        }
    }

    /// Senders with live state.
    #[cfg(test)]
    pub fn tracked_senders(&self) -> usize {
        self.last_seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxState;

    /// Encodes one packet the way the outbox does.
    struct DataSender(OutboxState);

    impl DataSender {
        fn default() -> Self {
            Self(OutboxState::default())
        }

        fn encode(
            &mut self,
            identity: &str,
            data: UserData,
            kind: DataKind,
            max: usize,
        ) -> Result<Vec<u8>, DataError> {
            self.0.push(identity, data, kind, max, None)?;
            let bytes = self.0.front(kind).map(<[u8]>::to_vec).unwrap_or_default();
            self.0.written(kind);
            Ok(bytes)
        }
    }

    fn user(payload: &[u8], topic: Option<&str>) -> UserData {
        UserData {
            payload: payload.to_vec(),
            topic: topic.map(str::to_owned),
            destination_identities: vec![],
        }
    }

    #[test]
    fn reliable_packets_are_numbered_and_lossy_are_not() {
        let mut tx = DataSender::default();
        let mut rx = DataReceiver::default();
        let now = Instant::now();
        for expected in 1..=3u32 {
            let b = tx
                .encode("alice", user(b"x", None), DataKind::Reliable, 64_000)
                .unwrap();
            let p = packet::DataPacket::decode(b.as_slice()).unwrap();
            assert_eq!(p.sequence, expected);
            assert!(matches!(
                rx.decode(&b, false, now).unwrap(),
                Incoming::User(_)
            ));
        }
        let b = tx
            .encode("alice", user(b"y", Some("t")), DataKind::Lossy, 64_000)
            .unwrap();
        match rx.decode(&b, true, now).unwrap() {
            Incoming::User(d) => {
                assert_eq!(d.kind, DataKind::Lossy);
                assert_eq!(d.topic.as_deref(), Some("t"));
                assert_eq!(d.participant_identity, "alice");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(tx.0.stats().2, 3);
    }

    #[test]
    fn duplicates_are_dropped_per_sender_and_forgotten_after_ttl() {
        let mut tx = DataSender::default();
        let mut rx = DataReceiver::default();
        let now = Instant::now();
        let b = tx
            .encode("alice", user(b"x", None), DataKind::Reliable, 64_000)
            .unwrap();
        assert!(matches!(
            rx.decode(&b, false, now).unwrap(),
            Incoming::User(_)
        ));
        assert_eq!(rx.decode(&b, false, now).unwrap(), Incoming::Duplicate);
        // Another sender with the same sequence is not a duplicate.
        let mut tx2 = DataSender::default();
        let b2 = tx2
            .encode("bob", user(b"x", None), DataKind::Reliable, 64_000)
            .unwrap();
        assert!(matches!(
            rx.decode(&b2, false, now).unwrap(),
            Incoming::User(_)
        ));
        assert_eq!(rx.tracked_senders(), 2);
        let later = now + DEDUP_TTL + Duration::from_secs(1);
        assert!(matches!(
            rx.decode(&b, false, later).unwrap(),
            Incoming::User(_)
        ));
        assert_eq!(rx.tracked_senders(), 1);
    }

    #[test]
    fn oversized_packets_are_refused_before_sending() {
        let mut tx = DataSender::default();
        let err = tx
            .encode(
                "a",
                user(&vec![0; 70_000], None),
                DataKind::Reliable,
                262_144,
            )
            .unwrap_err();
        assert_eq!(
            err,
            DataError::TooLarge {
                size: 70_000,
                max: MAX_MESSAGE_SIZE
            }
        );
        // Envelope overhead counts too.
        let err = tx
            .encode(
                "a",
                user(&vec![0; 16_000], Some("topic")),
                DataKind::Reliable,
                16_000,
            )
            .unwrap_err();
        assert!(matches!(err, DataError::TooLarge { max: 16_000, .. }));
        // A refused packet consumed no sequence number.
        let b = tx
            .encode("a", user(b"ok", None), DataKind::Reliable, 16_000)
            .unwrap();
        assert_eq!(
            packet::DataPacket::decode(b.as_slice()).unwrap().sequence,
            1
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut rx = DataReceiver::default();
        assert!(matches!(
            rx.decode(&[0xff, 0xff, 0xff], false, Instant::now()),
            Err(DataError::Malformed(_))
        ));
    }
}
