//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`; not an API).
//!
//! Each one drives a sans-IO part of the core with input a fuzzer made up, the way
//! the room's driver does: signal messages go into a room's state and into the
//! engine in each phase of a session; received data channel messages go into the
//! receiver (decoding, duplicates) and into a joined engine (senders, RPC, streams).
//! Nothing here opens a socket, starts a task or reads a clock beyond `Instant::now`
//! once per call. Besides "no panic", a few promises are checked as they go:
//! nothing follows `Action::Finished`, a numbered packet is never delivered twice,
//! and a stream handler sees its chunks numbered 0, 1, 2...

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use parking_lot::Mutex;
use proto::signal_response::Message as Resp;
use str0m::IceConnectionState as Ice;

use crate::data::{DataKind, DataReceiver, Incoming};
use crate::engine::{Action, Engine, Input, RoomOptions, Shared};
use crate::peer::{PeerEvent, PeerRole};
use crate::room::RoomState;
use crate::stream::{StreamHandler, StreamHeader};

/// The RPC method a joined fixture room answers (others are refused by the core).
pub const RPC_METHOD: &str = "echo";
/// The stream topic a joined fixture room has a handler for (others become events).
pub const STREAM_TOPIC: &str = "handled";
/// Our identity in the fixture room.
pub const LOCAL_IDENTITY: &str = "me";
/// The remote participants of the fixture room's join.
pub const REMOTE_IDENTITIES: [&str; 2] = ["alice", "bob"];

/// A data-channel-only description, enough for the engine's negotiation.
const DATA_SDP: &str =
    "v=0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n";

/// How many timer steps a session gets after its input (each step jumps to the
/// engine's next deadline).
const TIMER_STEPS: usize = 12;

fn participant(sid: &str, identity: &str) -> proto::ParticipantInfo {
    proto::ParticipantInfo {
        sid: sid.into(),
        identity: identity.into(),
        state: proto::participant_info::State::Active as i32,
        version: 1,
        ..Default::default()
    }
}

/// The join answer every fixture room starts from.
pub fn fixture_join() -> proto::JoinResponse {
    proto::JoinResponse {
        room: Some(proto::Room {
            sid: "RM_fuzz".into(),
            name: "fuzz".into(),
            ..Default::default()
        }),
        participant: Some(participant("PA_me", LOCAL_IDENTITY)),
        other_participants: REMOTE_IDENTITIES
            .iter()
            .map(|i| participant(&format!("PA_{i}"), i))
            .collect(),
        subscriber_primary: true,
        ..Default::default()
    }
}

/// An engine with its shared state, a clock of its own and the promise checks.
struct Session {
    engine: Engine,
    shared: Arc<Shared>,
    now: Instant,
    finished: bool,
}

impl Session {
    fn new() -> Self {
        let options = RoomOptions::default();
        let shared = Arc::new(Shared::new("token", &options));
        shared.rpc.register(RPC_METHOD);
        shared
            .streams
            .register(STREAM_TOPIC, Arc::new(OrderedChunks::default()));
        let mut s = Session {
            engine: Engine::new(options, shared.clone()),
            shared,
            now: Instant::now(),
            finished: false,
        };
        s.drain();
        s
    }

    /// Takes the engine's actions; nothing may follow `Finished`.
    fn drain(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            assert!(
                !self.finished,
                "the engine acted after Finished: {action:?}"
            );
            if matches!(action, Action::Finished) {
                self.finished = true;
                assert!(self.engine.is_closed(), "Finished, yet not closed");
            }
        }
    }

    fn feed(&mut self, input: Input) {
        self.engine.handle_input(self.now, input);
        self.drain();
    }

    fn peer(&mut self, role: PeerRole, ev: PeerEvent) {
        self.feed(Input::Peer(role, ev));
    }

    /// A signal message as the driver hands it over: the join and resume answers
    /// come apart from the rest.
    fn signal(&mut self, m: Resp) {
        let input = match m {
            Resp::Join(join) => Input::Joined(Box::new(join)),
            Resp::Reconnect(answer) => Input::Resumed(answer),
            other => Input::Signal(Box::new(other)),
        };
        self.feed(input);
    }

    /// The rest of a join once the server answered: both transports negotiated and
    /// up, with the fixture's descriptions.
    fn finish_join(&mut self) {
        self.feed(Input::LocalOffer(Some(DATA_SDP.into())));
        self.signal(Resp::Answer(proto::SessionDescription {
            r#type: "answer".into(),
            sdp: DATA_SDP.into(),
            ..Default::default()
        }));
        self.signal(Resp::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: DATA_SDP.into(),
            id: 1,
            ..Default::default()
        }));
        self.feed(Input::LocalAnswer {
            sdp: DATA_SDP.into(),
            id: 1,
        });
        self.transports_up();
    }

    fn transports_up(&mut self) {
        self.peer(PeerRole::Subscriber, PeerEvent::Connected);
        self.peer(
            PeerRole::Subscriber,
            PeerEvent::ChannelOpen(DataKind::Reliable),
        );
        for ev in [
            PeerEvent::Connected,
            PeerEvent::IceState(Ice::Connected),
            PeerEvent::ChannelOpen(DataKind::Reliable),
            PeerEvent::ChannelOpen(DataKind::Lossy),
        ] {
            self.peer(PeerRole::Publisher, ev);
        }
        self.peer(PeerRole::Subscriber, PeerEvent::IceState(Ice::Connected));
    }

    /// A fixture room, joined.
    fn joined() -> Self {
        let mut s = Session::new();
        s.signal(Resp::Join(fixture_join()));
        s.finish_join();
        assert_eq!(
            s.shared.conn.lock().0,
            crate::ConnectionState::Connected,
            "the fixture join did not complete"
        );
        s
    }

    /// Lets time pass: up to [`TIMER_STEPS`] of the engine's deadlines.
    fn run_timers(&mut self) {
        for _ in 0..TIMER_STEPS {
            let Some(at) = self.engine.deadline() else {
                break;
            };
            self.now = self.now.max(at) + Duration::from_millis(1);
            self.engine.handle_timeout(self.now);
            self.drain();
        }
    }

    /// The user leaves: whatever the state, the room must finish.
    fn leave(&mut self) {
        self.feed(Input::Leave);
        assert!(self.engine.is_closed(), "the room did not close on leave");
    }
}

/// A topic handler that checks the order promised to handlers.
#[derive(Default)]
struct OrderedChunks {
    next: Mutex<HashMap<String, u64>>,
}

impl StreamHandler for OrderedChunks {
    fn on_open(&self, _sender: &str, header: &StreamHeader) {
        self.next.lock().insert(header.stream_id.clone(), 0);
    }

    fn on_chunk(&self, stream_id: &str, index: u64, _content: &[u8]) {
        let mut next = self.next.lock();
        let expected = next
            .get_mut(stream_id)
            .unwrap_or_else(|| panic!("chunk {index} of {stream_id:?}, never opened"));
        assert_eq!(index, *expected, "chunk out of order on {stream_id:?}");
        *expected += 1;
    }

    fn on_close(&self, stream_id: &str, _reason: &str, _attributes: &BTreeMap<String, String>) {
        assert!(
            self.next.lock().remove(stream_id).is_some(),
            "{stream_id:?} closed, never opened"
        );
    }
}

/// Signal messages, in order, into: a room's state alone; an engine that has not
/// been answered yet (then joined with the fixture); a joined engine; and a joined
/// engine resuming after its signal connection dropped. Each session then lets its
/// timers run and leaves.
pub fn signal_messages(messages: &[Resp]) {
    let now = Instant::now();

    // The room's state, as the engine keeps it.
    let mut state = RoomState::from_join(&fixture_join());
    for m in messages {
        match m {
            Resp::Join(join) => {
                let _ = RoomState::from_join(join);
                let _ = state.resync(join);
            }
            other => {
                let _ = state.on_signal(other.clone(), now);
            }
        }
        for identity in REMOTE_IDENTITIES {
            let _ = state.learn_sender(identity, "", now);
        }
        let _ = state.active_speakers();
    }

    // Before the join answer: messages wait or fail the join.
    let mut s = Session::new();
    for m in messages {
        s.signal(m.clone());
    }
    if !s.engine.is_closed() {
        s.signal(Resp::Join(fixture_join()));
        s.finish_join();
    }
    s.run_timers();
    s.leave();

    // In a joined room.
    let mut s = Session::joined();
    for m in messages {
        s.signal(m.clone());
    }
    s.run_timers();
    s.leave();

    // While resuming: the signal connection dropped, the engine reopens it.
    let mut s = Session::joined();
    s.feed(Input::SignalClosed {
        reason: crate::FailureReason::SignalClose,
        message: "fuzz".into(),
    });
    for m in messages {
        s.signal(m.clone());
    }
    s.transports_up();
    s.run_timers();
    s.leave();
}

/// Received data channel messages (`true` for the lossy channel), in order, into a
/// receiver (decoding and the duplicate filter) and into a joined room (senders
/// learned, RPC answered for [`RPC_METHOD`], streams of [`STREAM_TOPIC`] handed to
/// a handler, the others made events). Returns how many were user data.
pub fn data_packets(packets: &[(bool, &[u8])]) -> usize {
    let mut rx = DataReceiver::default();
    let mut now = Instant::now();
    let mut user = 0;
    for (lossy, bytes) in packets {
        now += Duration::from_millis(5);
        match rx.decode(bytes, *lossy, now) {
            Ok(Incoming::Duplicate) | Err(_) => continue,
            Ok(Incoming::User(_)) => user += 1,
            Ok(Incoming::Other(_)) => {}
        }
        // Accepted once: a numbered packet must not be accepted again.
        let numbered = <livekit_core::packet::DataPacket as prost::Message>::decode(*bytes)
            .map(|p| p.sequence != 0)
            .unwrap_or(false);
        if numbered {
            assert_eq!(
                rx.decode(bytes, *lossy, now).ok(),
                Some(Incoming::Duplicate),
                "a numbered packet was accepted twice"
            );
        }
    }

    let mut s = Session::joined();
    for (lossy, bytes) in packets {
        s.now += Duration::from_millis(5);
        let kind = if *lossy {
            DataKind::Lossy
        } else {
            DataKind::Reliable
        };
        s.peer(
            PeerRole::Subscriber,
            PeerEvent::Data {
                kind,
                bytes: bytes.to_vec(),
            },
        );
    }
    // A sender leaves with its streams and calls under way.
    s.signal(Resp::Update(proto::ParticipantUpdate {
        participants: vec![proto::ParticipantInfo {
            state: proto::participant_info::State::Disconnected as i32,
            ..participant("PA_alice", "alice")
        }],
    }));
    s.run_timers();
    s.leave();
    user
}
