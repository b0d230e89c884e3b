//! Received data packets: decoding, the sender they name, and dropping
//! duplicates.
//!
//! Sans-IO: callers hand in bytes and clocks, and get verdicts back. The kinds,
//! size cap and duplicate filter are `livekit_core`'s (`channel`, `dedup`); the
//! send side (numbering, queues, resend) is [`crate::outbox`].

use std::time::Instant;

use livekit_core::dedup::DuplicateFilter;
use livekit_core::packet;
use prost::Message;

use crate::error::DataError;

pub use livekit_core::channel::{DataKind, MAX_MESSAGE_SIZE};
pub use livekit_core::outbox::UserData;

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

/// Decodes received packets and drops reliable ones seen before, per sender.
#[derive(Debug, Default)]
pub struct DataReceiver {
    seen: DuplicateFilter,
    /// The first `now` handed in: the filter counts milliseconds from it.
    epoch: Option<Instant>,
}

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
        let now_ms = self.millis(now);
        if !self.seen.accept_packet(&packet, now_ms) {
            return Ok(Incoming::Duplicate);
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

    /// Milliseconds since the first packet (earlier instants count as 0).
    fn millis(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Senders with live state.
    #[cfg(test)]
    pub fn tracked_senders(&self) -> usize {
        self.seen.tracked_senders()
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
        assert_eq!(tx.0.kept(), 3);
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
        // The filter's clock is the receiver's instants.
        let later = now + livekit_core::dedup::TTL + std::time::Duration::from_secs(1);
        assert!(matches!(
            rx.decode(&b, false, later).unwrap(),
            Incoming::User(_)
        ));
        assert_eq!(rx.tracked_senders(), 1);
    }

    #[test]
    fn a_refused_packet_is_a_data_error() {
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
