//! Received data on its way to the user: duplicates dropped, and packets whose
//! sender the room has not announced yet held (in order) until it is, or until
//! they have waited [`UNKNOWN_SENDER_HOLD`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::data::{DataKind, DataReceiver, Incoming, ReceivedData};
use crate::room::RoomEvent;

/// Data can overtake the signal update that announces its sender; hold such packets
/// this long (at most) so that every packet is delivered with a known participant.
pub const UNKNOWN_SENDER_HOLD: Duration = Duration::from_secs(5);
/// Bound of the packets held for unknown senders.
const HELD_MAX: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Inbox {
    receiver: DataReceiver,
    held: VecDeque<(Instant, ReceivedData)>,
}

impl Inbox {
    /// Decodes one data channel message; `known` says whether an identity is in the
    /// room. Returns what can be delivered now, in order.
    pub fn receive(
        &mut self,
        now: Instant,
        kind: DataKind,
        bytes: &[u8],
        known: impl Fn(&str) -> bool,
    ) -> Vec<RoomEvent> {
        match self.receiver.decode(bytes, kind == DataKind::Lossy, now) {
            Ok(Incoming::User(d)) => {
                if self.held.is_empty() && known(&d.participant_identity) {
                    vec![RoomEvent::DataReceived(d)]
                } else {
                    self.held.push_back((now, d));
                    self.release(now, false, known)
                }
            }
            Ok(Incoming::Other(p)) => vec![RoomEvent::DataPacket(p)],
            Ok(Incoming::Duplicate) => vec![],
            Err(e) => {
                log::warn!("dropping data packet: {e}");
                vec![]
            }
        }
    }

    /// Held packets that can go now, in order: while their sender is known (or, with
    /// `expired`, once they waited long enough).
    pub fn release(
        &mut self,
        now: Instant,
        expired: bool,
        known: impl Fn(&str) -> bool,
    ) -> Vec<RoomEvent> {
        let mut out = Vec::new();
        while let Some((at, d)) = self.held.front() {
            let overdue = expired && now >= *at + UNKNOWN_SENDER_HOLD;
            if !(known(&d.participant_identity) || overdue || self.held.len() >= HELD_MAX) {
                break;
            }
            if let Some((_, d)) = self.held.pop_front() {
                out.push(RoomEvent::DataReceived(d));
            }
        }
        out
    }

    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// When the oldest held packet is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.front().map(|(at, _)| *at + UNKNOWN_SENDER_HOLD)
    }
}
