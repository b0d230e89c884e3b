//! The send side of a room's data: the sans-IO queues, sequence numbers and
//! resend buffer of `livekit_core::outbox`, shared by the room's callers and its
//! current publisher task.
//!
//! The caller's completion runs once SCTP has the packet; callers of the async API
//! wait for room in a byte-bounded queue. The queue outlives a session: packets
//! published during a reconnection go out on the next publisher connection.

use std::sync::atomic::{AtomicUsize, Ordering};

use livekit_core::packet;
use parking_lot::Mutex;

use crate::data::{DataKind, UserData, MAX_MESSAGE_SIZE};
use crate::error::{DataError, Error};

pub use livekit_core::outbox::Packet;

/// Byte bound of the packets waiting for SCTP that the async API admits; a caller
/// past it waits its turn.
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// Runs once SCTP has taken the packet, or with the reason it never will.
pub type Done = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// Queues, sequence numbers and resend buffer, without locks or I/O.
pub type OutboxState = livekit_core::outbox::Outbox<Done>;

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
            .push(identity, data, kind, max, Some(done))
            .map_err(DataError::from)?;
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
            .push_packet(packet, kind, max, Some(done))
            .map_err(DataError::from)?;
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

    fn user(payload: &[u8]) -> UserData {
        UserData {
            payload: payload.to_vec(),
            topic: Some("t".into()),
            destination_identities: vec![],
        }
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

    #[test]
    fn packets_over_the_negotiated_size_are_refused_with_a_data_error() {
        let outbox = Outbox::default();
        outbox.set_max_message_size(1000);
        let refused = outbox.send("me", user(&[0; 2000]), DataKind::Reliable, Box::new(|_| {}));
        assert!(matches!(
            refused,
            Err(Error::Data(DataError::TooLarge {
                size: 2000,
                max: 1000
            }))
        ));
        assert_eq!(outbox.lock().queued(), 0);
    }
}
