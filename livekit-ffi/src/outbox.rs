//! The send side of a room's data: one ordered queue per data channel, reliable
//! sequence numbers, and the packets kept for a resume.
//!
//! A packet is encoded and numbered when the caller hands it over, so the order of
//! calls is the order on the wire; the publisher's peer task takes packets from the
//! front while its SCTP buffer is below the high-water mark, and the caller's
//! completion runs once SCTP has the packet. The queue outlives a session: packets
//! published during a reconnection go out on the next publisher connection.
//! [`OutboxState`] is the sans-IO part; [`Outbox`] shares it with a wake-up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use livekit_core::packet;
use parking_lot::Mutex;
use prost::Message;

use crate::data::{DataKind, UserData, MAX_MESSAGE_SIZE};
use crate::error::{DataError, Error};

/// Byte budget of the reliable packets kept (after SCTP took them) for a resume.
pub const RESEND_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Byte bound of the packets waiting for SCTP that the async API admits; a caller
/// past it waits its turn.
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// Runs once SCTP has taken the packet, or with the reason it never will.
pub type Done = Box<dyn FnOnce(Result<(), Error>) + Send>;

struct Pending {
    sequence: u32,
    bytes: Vec<u8>,
    done: Option<Done>,
}

/// A data packet to send: its sender, its recipients (none: everyone) and its value.
pub struct Packet<'a> {
    pub identity: &'a str,
    pub destinations: Vec<String>,
    pub value: packet::data_packet::Value,
}

/// Queues, sequence numbers and resend buffer, without locks or I/O.
pub struct OutboxState {
    next_sequence: u32,
    queues: [VecDeque<Pending>; 2],
    queued_bytes: usize,
    /// Reliable packets SCTP took, until the server confirms it has them.
    sent: VecDeque<(u32, Vec<u8>)>,
    sent_bytes: usize,
    resend_cap: usize,
}

fn slot(kind: DataKind) -> usize {
    match kind {
        DataKind::Reliable => 0,
        DataKind::Lossy => 1,
    }
}

impl Default for OutboxState {
    fn default() -> Self {
        Self::new(RESEND_BUFFER_BYTES)
    }
}

impl OutboxState {
    pub fn new(resend_cap: usize) -> Self {
        Self {
            next_sequence: 1,
            queues: [VecDeque::new(), VecDeque::new()],
            queued_bytes: 0,
            sent: VecDeque::new(),
            sent_bytes: 0,
            resend_cap,
        }
    }

    /// Encodes `data` from `identity` and queues it; refuses it, before anything is
    /// queued, when the packet is over `max_message_size`.
    pub fn push(
        &mut self,
        identity: &str,
        data: UserData,
        kind: DataKind,
        max_message_size: usize,
        done: Option<Done>,
    ) -> Result<(), DataError> {
        let max = max_message_size.min(MAX_MESSAGE_SIZE);
        // Cheap early refusal, without building a packet around a huge payload.
        if data.payload.len() > max {
            return Err(DataError::TooLarge {
                size: data.payload.len(),
                max,
            });
        }
        #[allow(deprecated)] // older receivers read the identities inside UserPacket
        let value = packet::data_packet::Value::User(packet::UserPacket {
            participant_identity: identity.to_owned(),
            payload: data.payload,
            destination_identities: data.destination_identities.clone(),
            topic: data.topic,
            ..Default::default()
        });
        let packet = Packet {
            identity,
            destinations: data.destination_identities,
            value,
        };
        self.push_packet(packet, kind, max, done)
    }

    /// Encodes any data packet (DTMF, transcription, RPC, stream...) and queues it.
    pub fn push_packet(
        &mut self,
        packet: Packet<'_>,
        kind: DataKind,
        max_message_size: usize,
        done: Option<Done>,
    ) -> Result<(), DataError> {
        let max = max_message_size.min(MAX_MESSAGE_SIZE);
        let sequence = match kind {
            DataKind::Reliable => self.next_sequence,
            DataKind::Lossy => 0,
        };
        #[allow(deprecated)]
        let encoded = packet::DataPacket {
            kind: kind.proto() as i32,
            participant_identity: packet.identity.to_owned(),
            destination_identities: packet.destinations,
            sequence,
            value: Some(packet.value),
            ..Default::default()
        };
        let bytes = encoded.encode_to_vec();
        if bytes.len() > max {
            return Err(DataError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        if kind == DataKind::Reliable {
            self.next_sequence = self.next_sequence.wrapping_add(1).max(1);
        }
        self.queued_bytes += bytes.len();
        self.queues[slot(kind)].push_back(Pending {
            sequence,
            bytes,
            done,
        });
        Ok(())
    }

    /// The next packet of `kind` to hand to SCTP.
    pub fn front(&self, kind: DataKind) -> Option<&[u8]> {
        self.queues[slot(kind)].front().map(|p| p.bytes.as_slice())
    }

    /// SCTP took the front packet of `kind`: reliable ones are kept for a resume.
    /// Returns the caller's completion.
    pub fn written(&mut self, kind: DataKind) -> Option<Done> {
        let p = self.queues[slot(kind)].pop_front()?;
        self.queued_bytes -= p.bytes.len();
        if kind == DataKind::Reliable {
            self.sent_bytes += p.bytes.len();
            self.sent.push_back((p.sequence, p.bytes));
            while self.sent_bytes > self.resend_cap {
                match self.sent.pop_front() {
                    Some((_, old)) => self.sent_bytes -= old.len(),
                    None => break,
                }
            }
        }
        p.done
    }

    /// The front packet of `kind` can never be sent (e.g. SCTP refused it).
    pub fn discard_front(&mut self, kind: DataKind) -> Option<Done> {
        let p = self.queues[slot(kind)].pop_front()?;
        self.queued_bytes -= p.bytes.len();
        p.done
    }

    /// The server confirmed it received every reliable packet up to `last_sequence`.
    pub fn acknowledge(&mut self, last_sequence: u32) {
        while let Some((seq, _)) = self.sent.front() {
            if *seq > last_sequence {
                break;
            }
            if let Some((_, b)) = self.sent.pop_front() {
                self.sent_bytes -= b.len();
            }
        }
    }

    /// After a resume: the reliable packets the server may not have go out again,
    /// first, in their order. Returns how many.
    pub fn requeue_unacknowledged(&mut self) -> usize {
        let n = self.sent.len();
        let queue = &mut self.queues[slot(DataKind::Reliable)];
        while let Some((sequence, bytes)) = self.sent.pop_back() {
            self.sent_bytes -= bytes.len();
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
        self.sent_bytes = 0;
    }

    /// Empties the queues (the room is over); returns the completions to fail.
    pub fn drain(&mut self) -> Vec<Done> {
        self.queued_bytes = 0;
        self.forget_sent();
        self.queues
            .iter_mut()
            .flat_map(|q| q.drain(..))
            .filter_map(|p| p.done)
            .collect()
    }

    /// (packets waiting for SCTP, their bytes, packets kept for a resume).
    #[cfg(test)]
    pub fn stats(&self) -> (usize, usize, usize) {
        (
            self.queues[0].len() + self.queues[1].len(),
            self.queued_bytes,
            self.sent.len(),
        )
    }
}

/// The outbox of one room, shared by its callers and its current publisher task.
pub struct Outbox {
    state: Mutex<OutboxState>,
    wake: tokio::sync::Notify,
    /// Admission of the async API: permits are bytes waiting for SCTP.
    room: std::sync::Arc<tokio::sync::Semaphore>,
    max_message_size: AtomicUsize,
    closed: Mutex<bool>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            state: Mutex::new(OutboxState::default()),
            wake: tokio::sync::Notify::new(),
            room: std::sync::Arc::new(tokio::sync::Semaphore::new(QUEUE_BYTES)),
            max_message_size: AtomicUsize::new(MAX_MESSAGE_SIZE),
            closed: Mutex::new(false),
        }
    }
}

impl Outbox {
    /// Queues a packet without waiting; `done` runs once SCTP took it.
    pub fn send(
        &self,
        identity: &str,
        data: UserData,
        kind: DataKind,
        done: Done,
    ) -> Result<(), Error> {
        if *self.closed.lock() {
            return Err(Error::Closed);
        }
        let max = self.max_message_size.load(Ordering::Relaxed);
        self.state
            .lock()
            .push(identity, data, kind, max, Some(done))?;
        self.wake.notify_one();
        Ok(())
    }

    /// Queues any data packet without waiting; `done` runs once SCTP took it.
    pub fn send_packet(&self, packet: Packet<'_>, kind: DataKind, done: Done) -> Result<(), Error> {
        if *self.closed.lock() {
            return Err(Error::Closed);
        }
        let max = self.max_message_size.load(Ordering::Relaxed);
        self.state
            .lock()
            .push_packet(packet, kind, max, Some(done))?;
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a packet once the queue has room for it (callers wait in call order),
    /// then resolves when SCTP took it.
    pub async fn send_when_room(
        &self,
        identity: &str,
        data: UserData,
        kind: DataKind,
    ) -> Result<(), Error> {
        let want = data.payload.len().clamp(1, QUEUE_BYTES) as u32;
        let permit = self
            .room
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| Error::Closed)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(
            identity,
            data,
            kind,
            Box::new(move |r| {
                drop(permit);
                let _ = tx.send(r);
            }),
        )?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Queues reliable packets in order, each once the queue has room for it, and
    /// resolves when SCTP took the last one: a long stream holds at most the
    /// queue's bound in memory, and its chunks stay pipelined.
    pub async fn send_packets_when_room(
        &self,
        identity: &str,
        packets: Vec<(Vec<String>, packet::data_packet::Value)>,
    ) -> Result<(), Error> {
        let mut last = None;
        for (destinations, value) in packets {
            let want = value.encoded_len().clamp(1, QUEUE_BYTES) as u32;
            let permit = self
                .room
                .clone()
                .acquire_many_owned(want)
                .await
                .map_err(|_| Error::Closed)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let packet = Packet {
                identity,
                destinations,
                value,
            };
            let done = Box::new(move |r| {
                drop(permit);
                let _ = tx.send(r);
            });
            self.send_packet(packet, DataKind::Reliable, done)?;
            last = Some(rx);
        }
        match last {
            Some(rx) => rx.await.map_err(|_| Error::Closed)?,
            None => Ok(()),
        }
    }

    pub fn set_max_message_size(&self, n: usize) {
        self.max_message_size.store(n, Ordering::Relaxed);
    }

    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, OutboxState> {
        self.state.lock()
    }

    /// Resolves when a packet was queued since the last call.
    pub(crate) async fn queued(&self) {
        self.wake.notified().await
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The room is over: queued packets fail, later sends are refused.
    pub fn close(&self) {
        *self.closed.lock() = true;
        let failed = self.state.lock().drain();
        for done in failed {
            done(Err(Error::Closed));
        }
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataReceiver, Incoming};
    use std::time::Instant;

    fn user(payload: &[u8]) -> UserData {
        UserData {
            payload: payload.to_vec(),
            topic: Some("t".into()),
            destination_identities: vec![],
        }
    }

    #[test]
    fn packets_keep_call_order_and_numbering() {
        let mut o = OutboxState::default();
        for i in 0..3u8 {
            o.push("me", user(&[i]), DataKind::Reliable, 64_000, None)
                .unwrap();
        }
        o.push("me", user(b"lossy"), DataKind::Lossy, 64_000, None)
            .unwrap();
        let mut rx = DataReceiver::default();
        let mut got = vec![];
        while let Some(b) = o.front(DataKind::Reliable) {
            match rx.decode(b, false, Instant::now()).unwrap() {
                Incoming::User(d) => got.push(d.payload[0]),
                other => panic!("{other:?}"),
            }
            o.written(DataKind::Reliable);
        }
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(o.stats(), (1, o.stats().1, 3));
        assert!(o.front(DataKind::Lossy).is_some());
    }

    #[test]
    fn oversized_packets_are_refused_before_queueing() {
        let mut o = OutboxState::default();
        let err = o
            .push("me", user(&[0; 2000]), DataKind::Reliable, 1000, None)
            .unwrap_err();
        assert!(matches!(
            err,
            DataError::TooLarge {
                size: 2000,
                max: 1000
            }
        ));
        assert_eq!(o.stats(), (0, 0, 0));
        // A refused packet takes no sequence number.
        o.push("me", user(b"x"), DataKind::Reliable, 1000, None)
            .unwrap();
        let b = o.front(DataKind::Reliable).unwrap().to_vec();
        assert_eq!(
            packet::DataPacket::decode(b.as_slice()).unwrap().sequence,
            1
        );
    }

    #[test]
    fn a_resume_sends_unacknowledged_packets_first_in_order() {
        let mut o = OutboxState::default();
        for i in 0..5u8 {
            o.push("me", user(&[i]), DataKind::Reliable, 64_000, None)
                .unwrap();
        }
        for _ in 0..3 {
            o.written(DataKind::Reliable);
        }
        // The server had 1 and 2; 3 was lost with the connection, 4 and 5 never left.
        o.acknowledge(2);
        assert_eq!(o.requeue_unacknowledged(), 1);
        let mut seqs = vec![];
        while let Some(b) = o.front(DataKind::Reliable) {
            seqs.push(packet::DataPacket::decode(b).unwrap().sequence);
            o.written(DataKind::Reliable);
        }
        assert_eq!(seqs, vec![3, 4, 5]);
    }

    #[test]
    fn the_resend_buffer_is_bounded() {
        let mut o = OutboxState::new(3000);
        for _ in 0..10 {
            o.push("me", user(&[0; 1000]), DataKind::Reliable, 64_000, None)
                .unwrap();
            o.written(DataKind::Reliable);
        }
        let (_, _, kept) = o.stats();
        assert!(kept <= 3, "kept {kept}");
    }

    #[test]
    fn closing_fails_what_waits() {
        let outbox = Outbox::default();
        let (tx, rx) = std::sync::mpsc::channel();
        outbox
            .send(
                "me",
                user(b"x"),
                DataKind::Reliable,
                Box::new(move |r| tx.send(r.is_err()).unwrap()),
            )
            .unwrap();
        outbox.close();
        assert!(rx.recv().unwrap());
        assert!(matches!(
            outbox.send("me", user(b"y"), DataKind::Reliable, Box::new(|_| {})),
            Err(Error::Closed)
        ));
    }
}
