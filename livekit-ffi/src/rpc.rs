//! RPC for a room: the core's state machines ([`livekit_core::rpc`]) with a clock,
//! random request ids, the room's outbox and one waiting caller per call.
//!
//! Packets arrive through [`Rpc::on_packet`] (from the engine, in order with all
//! other data); a call waits for its outcome or its next deadline, whichever comes
//! first, so no timer task is needed. Dropping a call's future forgets the call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_core::packet::data_packet;
use livekit_core::rpc::{Call, Invocation, Outcome, RpcClient, RpcServer};
use parking_lot::Mutex;
use tokio::sync::oneshot;

pub use livekit_core::rpc::{
    ErrorCode as RpcErrorCode, RpcError, DEFAULT_MAX_ROUND_TRIP_MS, DEFAULT_RESPONSE_TIMEOUT_MS,
    MAX_PAYLOAD_BYTES as MAX_RPC_PAYLOAD_BYTES,
};

use crate::data::DataKind;
use crate::outbox::{Outbox, Packet};

/// What a caller asks for, with the official defaults.
#[derive(Debug, Clone)]
pub struct PerformRpc {
    pub destination_identity: String,
    pub method: String,
    pub payload: String,
    /// How long to wait for the answer once the callee has acked.
    pub response_timeout: Duration,
    /// How long to wait for the ack.
    pub max_round_trip_latency: Duration,
}

impl PerformRpc {
    pub fn new(destination: &str, method: &str, payload: &str) -> Self {
        PerformRpc {
            destination_identity: destination.to_owned(),
            method: method.to_owned(),
            payload: payload.to_owned(),
            response_timeout: Duration::from_millis(DEFAULT_RESPONSE_TIMEOUT_MS),
            max_round_trip_latency: Duration::from_millis(DEFAULT_MAX_ROUND_TRIP_MS),
        }
    }
}

/// A request for one of our methods, answered with [`crate::Room::respond_rpc`].
pub type RpcInvocation = Invocation;

struct State {
    client: RpcClient,
    server: RpcServer,
    waiting: HashMap<u64, oneshot::Sender<Outcome>>,
    next_call: u64,
}

pub(crate) struct Rpc {
    state: Mutex<State>,
    epoch: Instant,
}

impl Default for Rpc {
    fn default() -> Self {
        Rpc {
            state: Mutex::new(State {
                client: RpcClient::new(),
                server: RpcServer::new(),
                waiting: HashMap::new(),
                next_call: 1,
            }),
            epoch: Instant::now(),
        }
    }
}

/// A random id in the UUID v4 text form other SDKs use for requests and streams.
pub(crate) fn random_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex =
        |r: std::ops::Range<usize>| -> String { b[r].iter().map(|x| format!("{x:02x}")).collect() };
    let mut b6 = b[6];
    b6 = (b6 & 0x0f) | 0x40;
    let b8 = (b[8] & 0x3f) | 0x80;
    format!(
        "{}-{}-{:02x}{:02x}-{:02x}{:02x}-{}",
        hex(0..4),
        hex(4..6),
        b6,
        b[7],
        b8,
        b[9],
        hex(10..16)
    )
}

impl Rpc {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn settle(state: &mut State, ended: Vec<(u64, Outcome)>) {
        for (call, outcome) in ended {
            if let Some(tx) = state.waiting.remove(&call) {
                let _ = tx.send(outcome);
            }
        }
    }

    /// Performs a call: sends the request through `outbox` as `identity`, then
    /// waits for the outcome. Cancel-safe.
    pub(crate) async fn perform(
        &self,
        outbox: &Outbox,
        identity: &str,
        call: PerformRpc,
    ) -> Result<String, RpcError> {
        let request_id = random_id();
        let (tx, mut rx) = oneshot::channel();
        let (handle, out) = {
            let mut s = self.state.lock();
            let handle = s.next_call;
            s.next_call += 1;
            let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let out = s.client.perform(
                self.now_ms(),
                handle,
                request_id.clone(),
                Call {
                    destination: call.destination_identity,
                    method: call.method,
                    payload: call.payload,
                    response_timeout_ms: millis(call.response_timeout),
                    max_round_trip_ms: millis(call.max_round_trip_latency),
                },
            )?;
            s.waiting.insert(handle, tx);
            (handle, out)
        };
        let forget = Forget { rpc: self, handle };
        let sent = send(
            outbox,
            identity,
            out.packet.destination_identities,
            out.packet.value,
        );
        if let Err(e) = sent {
            let mut s = self.state.lock();
            let ended = s.client.send_failed(&request_id, &e.to_string());
            Self::settle(&mut s, ended.into_iter().collect());
        }
        loop {
            let deadline = self.state.lock().client.next_deadline();
            let wait = deadline
                .map(|d| Duration::from_millis(d.saturating_sub(self.now_ms())))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                outcome = &mut rx => {
                    drop(forget);
                    return outcome.unwrap_or_else(|_| {
                        Err(RpcError::new(RpcErrorCode::RecipientDisconnected))
                    });
                }
                _ = tokio::time::sleep(wait) => {
                    let mut s = self.state.lock();
                    let ended = s.client.poll_timeouts(self.now_ms());
                    Self::settle(&mut s, ended);
                }
            }
        }
    }

    pub(crate) fn register(&self, method: &str) {
        self.state.lock().server.register(method);
    }

    pub(crate) fn unregister(&self, method: &str) {
        self.state.lock().server.unregister(method);
    }

    /// The application's answer to an invocation; `false` if it was not pending.
    pub(crate) fn respond(
        &self,
        outbox: &Outbox,
        identity: &str,
        invocation: u64,
        answer: Result<String, RpcError>,
    ) -> bool {
        let out = self.state.lock().server.respond(invocation, answer);
        match out {
            Some(out) => {
                if let Err(e) = send(
                    outbox,
                    identity,
                    out.packet.destination_identities,
                    out.packet.value,
                ) {
                    log::warn!("RPC answer not sent: {e}");
                }
                true
            }
            None => false,
        }
    }

    /// Takes in an RPC packet from `sender`: acks and answers go out through
    /// `outbox`; an invocation of a registered method is returned for the
    /// application.
    pub(crate) fn on_packet(
        &self,
        outbox: &Outbox,
        identity: &str,
        sender: &str,
        value: &data_packet::Value,
    ) -> Option<Invocation> {
        match value {
            data_packet::Value::RpcRequest(r) => {
                let (out, invocation) = self.state.lock().server.on_request(sender, r);
                for o in out {
                    if let Err(e) = send(
                        outbox,
                        identity,
                        o.packet.destination_identities,
                        o.packet.value,
                    ) {
                        log::warn!("RPC ack or answer not sent: {e}");
                    }
                }
                invocation
            }
            _ => {
                let mut s = self.state.lock();
                let ended = s.client.on_packet(self.now_ms(), sender, value);
                Self::settle(&mut s, ended.into_iter().collect());
                None
            }
        }
    }

    /// `identity` left: calls to it end with `RECIPIENT_DISCONNECTED`.
    pub(crate) fn participant_left(&self, identity: &str) {
        let mut s = self.state.lock();
        let ended = s.client.on_participant_left(identity);
        Self::settle(&mut s, ended);
    }

    /// The room is closed: every call ends, pending answers are dropped.
    pub(crate) fn close(&self) {
        let mut s = self.state.lock();
        let ended = s.client.close();
        Self::settle(&mut s, ended);
        s.server.close();
    }
}

/// Forgets a call whose caller stopped waiting.
struct Forget<'a> {
    rpc: &'a Rpc,
    handle: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut s = self.rpc.state.lock();
        s.client.cancel(self.handle);
        s.waiting.remove(&self.handle);
    }
}

fn send(
    outbox: &Outbox,
    identity: &str,
    destinations: Vec<String>,
    value: Option<data_packet::Value>,
) -> crate::Result<()> {
    let Some(value) = value else {
        return Ok(());
    };
    let packet = Packet {
        identity,
        destinations,
        value,
    };
    outbox.send_packet(packet, DataKind::Reliable, Box::new(|_| {}))
}
