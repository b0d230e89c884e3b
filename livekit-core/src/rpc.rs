//! RPC over data packets, both directions, as a state machine.
//!
//! A call is a reliable `RpcRequest` to one participant; the callee acks it at once
//! and answers with an `RpcResponse` (payload or error). The caller gives up with
//! `CONNECTION_TIMEOUT` when no ack comes within the round-trip bound, and with
//! `RESPONSE_TIMEOUT` when the answer does not follow in time. Nothing here sends
//! or sleeps: the owner feeds in packets, departures and `now`, sends the packets it
//! gets back, and wakes at [`RpcClient::next_deadline`].

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::packet::{self, data_packet, rpc_response};

/// Payloads (request and response) are limited to this many bytes of UTF-8.
pub const MAX_PAYLOAD_BYTES: usize = 15 * 1024;
/// The wire version of requests sent as data packets.
pub const VERSION: u32 = 1;
/// How long a caller waits for the response after the ack, unless told otherwise.
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 15_000;
/// How long a caller waits for the ack, unless told otherwise.
pub const DEFAULT_MAX_ROUND_TRIP_MS: u64 = 7_000;
/// The least response timeout a request announces to its callee.
const MIN_ANNOUNCED_TIMEOUT_MS: u64 = 1_000;

/// The built-in error codes; applications may use other codes of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    ApplicationError = 1500,
    ConnectionTimeout = 1501,
    ResponseTimeout = 1502,
    RecipientDisconnected = 1503,
    ResponsePayloadTooLarge = 1504,
    SendFailed = 1505,
    UnsupportedMethod = 1400,
    RecipientNotFound = 1401,
    RequestPayloadTooLarge = 1402,
    UnsupportedServer = 1403,
    UnsupportedVersion = 1404,
}

impl ErrorCode {
    /// The message every SDK sends with this code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::ApplicationError => "Application error in method handler",
            ErrorCode::ConnectionTimeout => "Connection timeout",
            ErrorCode::ResponseTimeout => "Response timeout",
            ErrorCode::RecipientDisconnected => "Recipient disconnected",
            ErrorCode::ResponsePayloadTooLarge => "Response payload too large",
            ErrorCode::SendFailed => "Failed to send",
            ErrorCode::UnsupportedMethod => "Method not supported at destination",
            ErrorCode::RecipientNotFound => "Recipient not found",
            ErrorCode::RequestPayloadTooLarge => "Request payload too large",
            ErrorCode::UnsupportedServer => "RPC not supported by server",
            ErrorCode::UnsupportedVersion => "Unsupported RPC version",
        }
    }
}

/// An RPC failure as it travels: a code, a message and optional data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: u32,
    pub message: String,
    pub data: String,
}

impl RpcError {
    pub fn new(code: ErrorCode) -> Self {
        RpcError {
            code: code as u32,
            message: code.message().to_string(),
            data: String::new(),
        }
    }

    pub fn with_data(code: ErrorCode, data: impl Into<String>) -> Self {
        RpcError {
            data: data.into(),
            ..RpcError::new(code)
        }
    }

    fn from_wire(e: packet::RpcError) -> Self {
        RpcError {
            code: e.code,
            message: e.message,
            data: e.data,
        }
    }

    fn to_wire(&self) -> packet::RpcError {
        packet::RpcError {
            code: self.code,
            message: self.message.clone(),
            data: self.data.clone(),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RPC error {}: {}", self.code, self.message)?;
        if !self.data.is_empty() {
            write!(f, " ({})", self.data)?;
        }
        Ok(())
    }
}

/// A packet to send reliably to exactly one participant.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub destination: String,
    pub packet: packet::DataPacket,
}

impl Outgoing {
    fn new(destination: &str, value: data_packet::Value) -> Self {
        Outgoing {
            destination: destination.to_string(),
            packet: packet::DataPacket {
                kind: packet::data_packet::Kind::Reliable as i32,
                destination_identities: vec![destination.to_string()],
                value: Some(value),
                ..Default::default()
            },
        }
    }
}

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct Call {
    pub destination: String,
    pub method: String,
    pub payload: String,
    /// How long to wait for the answer once the callee has acked.
    pub response_timeout_ms: u64,
    /// How long to wait for the ack.
    pub max_round_trip_ms: u64,
}

/// The outcome of a call, for the caller's handle.
pub type Outcome = Result<String, RpcError>;

struct Pending {
    handle: u64,
    destination: String,
    /// Set until the ack arrives.
    ack_deadline: Option<u64>,
    response_deadline: u64,
    response_timeout_ms: u64,
}

/// The caller's side: calls in flight, keyed by request id.
#[derive(Default)]
pub struct RpcClient {
    pending: BTreeMap<String, Pending>,
}

impl RpcClient {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a call identified by the caller's `handle` and a fresh random
    /// `request_id`; returns the request to send, or the error the call ends with
    /// before anything is sent.
    pub fn perform(
        &mut self,
        now: u64,
        handle: u64,
        request_id: String,
        call: Call,
    ) -> Result<Outgoing, RpcError> {
        if call.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(RpcError::new(ErrorCode::RequestPayloadTooLarge));
        }
        // The callee is told how long it has: what is left once the request and its
        // ack have travelled, but never less than a second.
        let announced = call
            .response_timeout_ms
            .saturating_sub(call.max_round_trip_ms)
            .max(MIN_ANNOUNCED_TIMEOUT_MS);
        let request = packet::RpcRequest {
            id: request_id.clone(),
            method: call.method,
            payload: call.payload,
            response_timeout_ms: u32::try_from(announced).unwrap_or(u32::MAX),
            version: VERSION,
            ..Default::default()
        };
        let out = Outgoing::new(&call.destination, data_packet::Value::RpcRequest(request));
        self.pending.insert(
            request_id,
            Pending {
                handle,
                destination: call.destination,
                ack_deadline: Some(now.saturating_add(call.max_round_trip_ms)),
                response_deadline: now
                    .saturating_add(call.max_round_trip_ms)
                    .saturating_add(call.response_timeout_ms),
                response_timeout_ms: call.response_timeout_ms,
            },
        );
        Ok(out)
    }

    /// The request could not be sent: the call ends with `SEND_FAILED`.
    pub fn send_failed(&mut self, request_id: &str, why: &str) -> Option<(u64, Outcome)> {
        let p = self.pending.remove(request_id)?;
        Some((
            p.handle,
            Err(RpcError::with_data(ErrorCode::SendFailed, why)),
        ))
    }

    /// The caller gave up (e.g. a cancelled await): forget the call.
    pub fn cancel(&mut self, handle: u64) {
        self.pending.retain(|_, p| p.handle != handle);
    }

    /// Takes in an RPC ack or response from `sender`; returns the call it ends.
    pub fn on_packet(
        &mut self,
        now: u64,
        sender: &str,
        value: &data_packet::Value,
    ) -> Option<(u64, Outcome)> {
        match value {
            data_packet::Value::RpcAck(ack) => {
                let p = self.pending.get_mut(&ack.request_id)?;
                if p.destination == sender && p.ack_deadline.take().is_some() {
                    // The answer's clock starts with the ack.
                    p.response_deadline = now.saturating_add(p.response_timeout_ms);
                }
                None
            }
            data_packet::Value::RpcResponse(r) => {
                if self.pending.get(&r.request_id)?.destination != sender {
                    return None;
                }
                let p = self.pending.remove(&r.request_id)?;
                let outcome = match &r.value {
                    Some(rpc_response::Value::Payload(s)) => Ok(s.clone()),
                    Some(rpc_response::Value::Error(e)) => Err(RpcError::from_wire(e.clone())),
                    Some(rpc_response::Value::CompressedPayload(_)) => Err(RpcError::with_data(
                        ErrorCode::UnsupportedVersion,
                        "compressed payloads are not supported",
                    )),
                    None => Ok(String::new()),
                };
                Some((p.handle, outcome))
            }
            _ => None,
        }
    }

    /// Calls whose time is up at `now`.
    pub fn poll_timeouts(&mut self, now: u64) -> Vec<(u64, Outcome)> {
        let mut done = Vec::new();
        self.pending.retain(|_, p| {
            let error = match p.ack_deadline {
                Some(at) if now >= at => ErrorCode::ConnectionTimeout,
                Some(_) => return true,
                None if now >= p.response_deadline => ErrorCode::ResponseTimeout,
                None => return true,
            };
            done.push((p.handle, Err(RpcError::new(error))));
            false
        });
        done
    }

    /// The earliest moment [`RpcClient::poll_timeouts`] has something to end.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|p| p.ack_deadline.unwrap_or(p.response_deadline))
            .min()
    }

    /// The destination left the room: its calls end with `RECIPIENT_DISCONNECTED`.
    pub fn on_participant_left(&mut self, identity: &str) -> Vec<(u64, Outcome)> {
        self.end_where(|p| p.destination == identity)
    }

    /// We left the room: every call ends with `RECIPIENT_DISCONNECTED`.
    pub fn close(&mut self) -> Vec<(u64, Outcome)> {
        self.end_where(|_| true)
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn end_where(&mut self, mut f: impl FnMut(&Pending) -> bool) -> Vec<(u64, Outcome)> {
        let mut done = Vec::new();
        self.pending.retain(|_, p| {
            if f(p) {
                done.push((
                    p.handle,
                    Err(RpcError::new(ErrorCode::RecipientDisconnected)),
                ));
                false
            } else {
                true
            }
        });
        done
    }
}

/// A request for one of our methods, for the application to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub id: u64,
    pub request_id: String,
    pub caller: String,
    pub method: String,
    pub payload: String,
    pub response_timeout_ms: u32,
}

struct Answering {
    request_id: String,
    caller: String,
}

/// The callee's side: registered methods and invocations awaiting their answer.
#[derive(Default)]
pub struct RpcServer {
    methods: BTreeSet<String>,
    answering: BTreeMap<u64, Answering>,
    next_id: u64,
}

impl RpcServer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, method: &str) {
        self.methods.insert(method.to_string());
    }

    pub fn unregister(&mut self, method: &str) {
        self.methods.remove(method);
    }

    pub fn is_registered(&self, method: &str) -> bool {
        self.methods.contains(method)
    }

    /// Takes in a request from `caller`: the ack goes out first, then either an
    /// error answer (unknown method, unknown version) or an invocation for the
    /// application, which answers through [`RpcServer::respond`].
    pub fn on_request(
        &mut self,
        caller: &str,
        request: &packet::RpcRequest,
    ) -> (Vec<Outgoing>, Option<Invocation>) {
        let ack = Outgoing::new(
            caller,
            data_packet::Value::RpcAck(packet::RpcAck {
                request_id: request.id.clone(),
            }),
        );
        let refuse = |code| {
            let error = RpcError::new(code);
            vec![ack.clone(), response(caller, &request.id, Err(&error))]
        };
        if request.version != VERSION {
            return (refuse(ErrorCode::UnsupportedVersion), None);
        }
        if !self.methods.contains(&request.method) {
            return (refuse(ErrorCode::UnsupportedMethod), None);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.answering.insert(
            id,
            Answering {
                request_id: request.id.clone(),
                caller: caller.to_string(),
            },
        );
        let invocation = Invocation {
            id,
            request_id: request.id.clone(),
            caller: caller.to_string(),
            method: request.method.clone(),
            payload: request.payload.clone(),
            response_timeout_ms: request.response_timeout_ms,
        };
        (vec![ack], Some(invocation))
    }

    /// The application's answer to invocation `id`; `None` if it was already
    /// answered or never existed. An answer too large to send becomes
    /// `RESPONSE_PAYLOAD_TOO_LARGE`.
    pub fn respond(&mut self, id: u64, answer: Result<String, RpcError>) -> Option<Outgoing> {
        let a = self.answering.remove(&id)?;
        Some(match answer {
            Ok(payload) if payload.len() > MAX_PAYLOAD_BYTES => {
                let error = RpcError::new(ErrorCode::ResponsePayloadTooLarge);
                response(&a.caller, &a.request_id, Err(&error))
            }
            Ok(payload) => response(&a.caller, &a.request_id, Ok(payload)),
            Err(e) => response(&a.caller, &a.request_id, Err(&e)),
        })
    }

    /// We left the room: answers that were pending have nobody to go to.
    pub fn close(&mut self) {
        self.answering.clear();
    }

    pub fn answering(&self) -> usize {
        self.answering.len()
    }
}

fn response(caller: &str, request_id: &str, answer: Result<String, &RpcError>) -> Outgoing {
    let value = match answer {
        Ok(payload) => rpc_response::Value::Payload(payload),
        Err(e) => rpc_response::Value::Error(e.to_wire()),
    };
    Outgoing::new(
        caller,
        data_packet::Value::RpcResponse(packet::RpcResponse {
            request_id: request_id.to_string(),
            value: Some(value),
        }),
    )
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;

    fn call(to: &str, payload: &str) -> Call {
        Call {
            destination: to.into(),
            method: "greet".into(),
            payload: payload.into(),
            response_timeout_ms: DEFAULT_RESPONSE_TIMEOUT_MS,
            max_round_trip_ms: DEFAULT_MAX_ROUND_TRIP_MS,
        }
    }

    fn value(o: &Outgoing) -> &data_packet::Value {
        o.packet.value.as_ref().unwrap()
    }

    fn request_of(o: &Outgoing) -> packet::RpcRequest {
        match value(o) {
            data_packet::Value::RpcRequest(r) => r.clone(),
            v => panic!("not a request: {v:?}"),
        }
    }

    /// Runs a request from `client` through `server` and back, returning what
    /// reaches the caller.
    fn answer_of(out: &[Outgoing]) -> Option<&packet::RpcResponse> {
        out.iter().find_map(|o| match value(o) {
            data_packet::Value::RpcResponse(r) => Some(r),
            _ => None,
        })
    }

    #[cfg_attr(test, test)]
    fn a_call_is_acked_answered_and_ended() {
        let (mut client, mut server) = (RpcClient::new(), RpcServer::new());
        server.register("greet");
        let req = client
            .perform(0, 7, "r1".into(), call("bob", "hi"))
            .unwrap();
        assert_eq!(req.packet.destination_identities, vec!["bob".to_string()]);
        let r = request_of(&req);
        assert_eq!((r.version, r.response_timeout_ms), (1, 8_000));

        let (out, inv) = server.on_request("alice", &r);
        assert_eq!(out.len(), 1, "only the ack goes out before the answer");
        let inv = inv.unwrap();
        assert_eq!((inv.caller.as_str(), inv.payload.as_str()), ("alice", "hi"));
        assert!(client.on_packet(10, "bob", value(&out[0])).is_none());

        let answer = server.respond(inv.id, Ok("hello".into())).unwrap();
        assert_eq!(answer.destination, "alice");
        assert!(server.respond(inv.id, Ok("again".into())).is_none());
        let (handle, outcome) = client.on_packet(20, "bob", value(&answer)).unwrap();
        assert_eq!((handle, outcome), (7, Ok("hello".to_string())));
        assert_eq!(client.in_flight(), 0);
    }

    #[cfg_attr(test, test)]
    fn an_unknown_method_or_version_is_refused_after_the_ack() {
        let mut server = RpcServer::new();
        let r = packet::RpcRequest {
            id: "x".into(),
            method: "nope".into(),
            version: 1,
            ..Default::default()
        };
        let (out, inv) = server.on_request("alice", &r);
        assert!(inv.is_none());
        assert!(matches!(value(&out[0]), data_packet::Value::RpcAck(_)));
        let err = match &answer_of(&out).unwrap().value {
            Some(rpc_response::Value::Error(e)) => e.clone(),
            v => panic!("{v:?}"),
        };
        assert_eq!(err.code, 1400);
        assert_eq!(err.message, "Method not supported at destination");

        server.register("nope");
        let (out, _) = server.on_request("alice", &packet::RpcRequest { version: 2, ..r });
        match &answer_of(&out).unwrap().value {
            Some(rpc_response::Value::Error(e)) => assert_eq!(e.code, 1404),
            v => panic!("{v:?}"),
        }
    }

    #[cfg_attr(test, test)]
    fn payload_limits_are_checked_before_sending_and_answering() {
        let mut client = RpcClient::new();
        let big = "é".repeat(MAX_PAYLOAD_BYTES / 2 + 1);
        let e = client
            .perform(0, 1, "r".into(), call("bob", &big))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::RequestPayloadTooLarge as u32);
        assert_eq!(client.in_flight(), 0);

        let mut server = RpcServer::new();
        server.register("greet");
        let exact = "a".repeat(MAX_PAYLOAD_BYTES);
        let ok = client
            .perform(0, 2, "r2".into(), call("bob", &exact))
            .unwrap();
        let (_, inv) = server.on_request("alice", &request_of(&ok));
        let answer = server.respond(inv.unwrap().id, Ok(big)).unwrap();
        match client.on_packet(1, "bob", value(&answer)) {
            Some((2, Err(e))) => assert_eq!(e.code, 1504),
            o => panic!("{o:?}"),
        }
    }

    #[cfg_attr(test, test)]
    fn no_ack_is_a_connection_timeout_and_a_late_answer_a_response_timeout() {
        let mut client = RpcClient::new();
        client
            .perform(1000, 1, "a".into(), call("bob", ""))
            .unwrap();
        let mut c2 = call("bob", "");
        c2.response_timeout_ms = 2_000;
        client.perform(1000, 2, "b".into(), c2).unwrap();
        assert_eq!(client.next_deadline(), Some(8_000));
        let ack = data_packet::Value::RpcAck(packet::RpcAck {
            request_id: "b".into(),
        });
        // An ack from someone else than the callee does not count.
        client.on_packet(1500, "mallory", &ack);
        assert_eq!(client.next_deadline(), Some(8_000));
        client.on_packet(1500, "bob", &ack);
        assert_eq!(client.next_deadline(), Some(3_500));
        assert!(client.poll_timeouts(3_499).is_empty());
        let ended = client.poll_timeouts(3_500);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].0, 2);
        assert_eq!(ended[0].1.as_ref().unwrap_err().code, 1502);
        let ended = client.poll_timeouts(8_000);
        assert_eq!(ended[0].1.as_ref().unwrap_err().code, 1501);
        assert_eq!(client.next_deadline(), None);
    }

    #[cfg_attr(test, test)]
    fn departures_and_disconnects_end_calls_cleanly() {
        let mut client = RpcClient::new();
        client.perform(0, 1, "a".into(), call("bob", "")).unwrap();
        client.perform(0, 2, "b".into(), call("carol", "")).unwrap();
        client.perform(0, 3, "c".into(), call("carol", "")).unwrap();
        let gone = client.on_participant_left("bob");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1.as_ref().unwrap_err().code, 1503);
        client.cancel(3);
        let rest = client.close();
        assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(client.in_flight(), 0);
        assert_eq!(client.send_failed("a", "closed").map(|(h, _)| h), None);
    }

    #[cfg_attr(test, test)]
    fn a_handler_error_passes_through_with_its_code() {
        let (mut client, mut server) = (RpcClient::new(), RpcServer::new());
        server.register("greet");
        let req = client.perform(0, 5, "q".into(), call("bob", "x")).unwrap();
        let (_, inv) = server.on_request("alice", &request_of(&req));
        let custom = RpcError {
            code: 42,
            message: "nope".into(),
            data: "why".into(),
        };
        let answer = server
            .respond(inv.unwrap().id, Err(custom.clone()))
            .unwrap();
        assert_eq!(
            client.on_packet(1, "bob", value(&answer)),
            Some((5, Err(custom)))
        );
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "a_call_is_acked_answered_and_ended",
            a_call_is_acked_answered_and_ended,
        ),
        (
            "an_unknown_method_or_version_is_refused_after_the_ack",
            an_unknown_method_or_version_is_refused_after_the_ack,
        ),
        (
            "payload_limits_are_checked_before_sending_and_answering",
            payload_limits_are_checked_before_sending_and_answering,
        ),
        (
            "no_ack_is_a_connection_timeout_and_a_late_answer_a_response_timeout",
            no_ack_is_a_connection_timeout_and_a_late_answer_a_response_timeout,
        ),
        (
            "departures_and_disconnects_end_calls_cleanly",
            departures_and_disconnects_end_calls_cleanly,
        ),
        (
            "a_handler_error_passes_through_with_its_code",
            a_handler_error_passes_through_with_its_code,
        ),
    ];
}
