//! The engine machine driven by signal traces: no server, no sockets, no clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use str0m::IceConnectionState as Ice;

use super::io::{Action, Input};
use super::machine::Engine;
use super::requests::{RequestError, REQUEST_TIMEOUT};
use super::{RoomOptions, Shared};
use crate::data::{DataKind, UserData};
use crate::outbox::OutboxState;
use crate::peer::{PeerEvent, PeerRole};
use crate::room::RoomEvent;
use crate::sdp::tests::THREE_SECTIONS;
use crate::state::{ConnectionState, FailureReason};

const PUBLISHER_OFFER: &str =
    "v=0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n";

fn participant(sid: &str, identity: &str) -> proto::ParticipantInfo {
    proto::ParticipantInfo {
        sid: sid.into(),
        identity: identity.into(),
        state: proto::participant_info::State::Active as i32,
        version: 1,
        ..Default::default()
    }
}

fn join_response(others: &[(&str, &str)]) -> proto::JoinResponse {
    proto::JoinResponse {
        room: Some(proto::Room {
            sid: "RM_1".into(),
            name: "room".into(),
            ..Default::default()
        }),
        participant: Some(participant("PA_me", "me")),
        other_participants: others.iter().map(|(s, i)| participant(s, i)).collect(),
        subscriber_primary: true,
        ..Default::default()
    }
}

struct Trace {
    engine: Engine,
    shared: Arc<Shared>,
    now: Instant,
}

impl Trace {
    fn new() -> Self {
        let shared = Arc::new(Shared::new("token", &RoomOptions::default()));
        let engine = Engine::new(RoomOptions::default(), shared.clone());
        let mut t = Self {
            engine,
            shared,
            now: Instant::now(),
        };
        assert!(matches!(
            t.actions()[..],
            [Action::OpenSignal { resume: None }]
        ));
        t
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.engine.poll_action()).collect()
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        self.engine.handle_input(self.now, input);
        self.actions()
    }

    fn signal(&mut self, m: Resp) -> Vec<Action> {
        self.feed(Input::Signal(Box::new(m)))
    }

    fn peer(&mut self, role: PeerRole, ev: PeerEvent) -> Vec<Action> {
        self.feed(Input::Peer(role, ev))
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.engine.handle_timeout(self.now);
        self.actions()
    }

    /// A whole join: the answer, both transports negotiated and up.
    fn joined(others: &[(&str, &str)]) -> Self {
        let mut t = Self::new();
        t.establish(join_response(others));
        assert_eq!(t.shared.conn.lock().0, ConnectionState::Connected);
        t
    }

    fn establish(&mut self, join: proto::JoinResponse) -> Vec<Action> {
        let a = self.feed(Input::Joined(Box::new(join)));
        assert!(matches!(
            a[..],
            [Action::NewPeers, Action::CreateOffer { ice_restart: false }]
        ));
        self.feed(Input::LocalOffer(Some(PUBLISHER_OFFER.into())));
        self.signal(answer());
        self.signal(offer(1, PUBLISHER_OFFER));
        self.feed(Input::LocalAnswer {
            sdp: PUBLISHER_OFFER.into(),
            id: 1,
        });
        let mut done = self.peer(PeerRole::Subscriber, PeerEvent::Connected);
        done.extend(self.peer(
            PeerRole::Subscriber,
            PeerEvent::ChannelOpen(DataKind::Reliable),
        ));
        for ev in [
            PeerEvent::Connected,
            PeerEvent::IceState(Ice::Connected),
            PeerEvent::ChannelOpen(DataKind::Reliable),
            PeerEvent::ChannelOpen(DataKind::Lossy),
        ] {
            done.extend(self.peer(PeerRole::Publisher, ev));
        }
        done.extend(self.peer(PeerRole::Subscriber, PeerEvent::IceState(Ice::Connected)));
        done
    }
}

fn answer() -> Resp {
    Resp::Answer(proto::SessionDescription {
        r#type: "answer".into(),
        sdp: PUBLISHER_OFFER.into(),
        ..Default::default()
    })
}

fn offer(id: u32, sdp: &str) -> Resp {
    Resp::Offer(proto::SessionDescription {
        r#type: "offer".into(),
        sdp: sdp.into(),
        id,
        ..Default::default()
    })
}

fn trickle(target: i32, mid: &str) -> Resp {
    Resp::Trickle(proto::TrickleRequest {
        candidate_init: format!(
            r#"{{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host","sdpMid":"{mid}"}}"#
        ),
        target,
        ..Default::default()
    })
}

fn leave(action: proto::leave_request::Action, reason: proto::DisconnectReason) -> Resp {
    Resp::Leave(proto::LeaveRequest {
        action: action as i32,
        reason: reason as i32,
        ..Default::default()
    })
}

fn update(infos: Vec<proto::ParticipantInfo>) -> Resp {
    Resp::Update(proto::ParticipantUpdate {
        participants: infos,
    })
}

fn emitted(actions: &[Action]) -> Vec<&RoomEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

fn data_from(identity: &str, sequence_of: &mut OutboxState, payload: &[u8]) -> PeerEvent {
    let data = UserData {
        payload: payload.to_vec(),
        topic: None,
        destination_identities: vec![],
    };
    sequence_of
        .push(identity, data, DataKind::Reliable, 64_000, None)
        .unwrap();
    let bytes = sequence_of.front(DataKind::Reliable).unwrap().to_vec();
    sequence_of.written(DataKind::Reliable);
    PeerEvent::Data {
        kind: DataKind::Reliable,
        bytes,
    }
}

#[test]
fn a_join_completes_when_the_primary_transport_is_up() {
    let mut t = Trace::new();
    t.feed(Input::Joined(Box::new(join_response(&[("PA_a", "alice")]))));
    let a = t.feed(Input::LocalOffer(Some(PUBLISHER_OFFER.into())));
    assert!(matches!(&a[0], Action::SendSignal(r) if matches!(**r, Req::Offer(_))));
    assert!(
        matches!(&a[1], Action::TrickleLocal { role: PeerRole::Publisher, mid, index: 0 } if mid == "0")
    );
    assert!(matches!(t.signal(answer())[..], [Action::AcceptAnswer(_)]));
    assert!(matches!(
        t.signal(offer(7, PUBLISHER_OFFER))[..],
        [Action::AcceptOffer { id: 7, .. }]
    ));
    let a = t.feed(Input::LocalAnswer {
        sdp: PUBLISHER_OFFER.into(),
        id: 7,
    });
    assert!(
        matches!(&a[0], Action::SendSignal(r) if matches!(&**r, Req::Answer(sd) if sd.id == 7))
    );
    assert!(matches!(
        a[1],
        Action::TrickleLocal {
            role: PeerRole::Subscriber,
            ..
        }
    ));
    // A participant update before the join is done waits for it.
    assert!(t
        .signal(update(vec![participant("PA_b", "bob")]))
        .is_empty());
    assert!(t
        .peer(PeerRole::Subscriber, PeerEvent::Connected)
        .is_empty());
    let a = t.peer(
        PeerRole::Subscriber,
        PeerEvent::ChannelOpen(DataKind::Reliable),
    );
    assert!(matches!(a[0], Action::JoinResult(Ok(()))));
    assert_eq!(
        emitted(&a),
        vec![
            &RoomEvent::ConnectionStateChanged(ConnectionState::Connected),
            &RoomEvent::ParticipantConnected(crate::room::Participant::from_info(&participant(
                "PA_b", "bob"
            ))),
        ]
    );
    assert_eq!(t.shared.state.lock().local.identity, "me");
    assert!(t.shared.state.lock().remotes.contains_key("alice"));
    // The publisher still has until the ICE timeout to come up.
    assert!(t.engine.deadline().is_some());
    t.peer(PeerRole::Publisher, PeerEvent::Connected);
    t.peer(
        PeerRole::Publisher,
        PeerEvent::ChannelOpen(DataKind::Reliable),
    );
    t.peer(PeerRole::Publisher, PeerEvent::ChannelOpen(DataKind::Lossy));
    assert_eq!(t.engine.deadline(), None);
}

#[test]
fn a_join_that_does_not_come_up_fails_and_leaves() {
    let mut t = Trace::new();
    t.feed(Input::Joined(Box::new(join_response(&[]))));
    let a = t.advance(RoomOptions::default().ice_timeout);
    assert!(matches!(a[0], Action::CloseSignal { leave: true }));
    assert!(matches!(a[1], Action::DropPeers));
    assert!(
        matches!(&a[2], Action::JoinResult(Err(e)) if e.failure_reason() == FailureReason::Rtc)
    );
    assert!(matches!(a.last(), Some(Action::Finished)));
    assert!(t.engine.is_closed());
}

#[test]
fn candidates_go_to_the_m_line_they_belong_to() {
    let mut t = Trace::new();
    t.feed(Input::Joined(Box::new(join_response(&[]))));
    t.signal(offer(1, THREE_SECTIONS));
    // Our answer bundles on the data section, the second m-line: candidates are
    // trickled for its mid and its index, not for the first a=mid.
    let a = t.feed(Input::LocalAnswer {
        sdp: THREE_SECTIONS.into(),
        id: 1,
    });
    assert!(
        matches!(&a[1], Action::TrickleLocal { role: PeerRole::Subscriber, mid, index: 1 } if mid == "1")
    );
    let subscriber = proto::SignalTarget::Subscriber as i32;
    let publisher = proto::SignalTarget::Publisher as i32;
    // Remote candidates go to the transport their target names.
    assert!(matches!(
        t.signal(trickle(subscriber, "2"))[..],
        [Action::AddRemoteCandidate(PeerRole::Subscriber, _)]
    ));
    assert!(matches!(
        t.signal(trickle(publisher, "0"))[..],
        [Action::AddRemoteCandidate(PeerRole::Publisher, _)]
    ));
    // A section the subscriber's description does not have, or an unknown target,
    // is skipped, never routed to the first transport.
    assert!(t.signal(trickle(subscriber, "9")).is_empty());
    assert!(t.signal(trickle(7, "0")).is_empty());
}

#[test]
fn a_server_initiated_resume_keeps_the_session() {
    let mut t = Trace::joined(&[("PA_a", "alice")]);
    let a = t.signal(leave(
        proto::leave_request::Action::Resume,
        proto::DisconnectReason::SignalClose,
    ));
    assert_eq!(
        emitted(&a),
        vec![
            &RoomEvent::ConnectionStateChanged(ConnectionState::Reconnecting),
            &RoomEvent::Reconnecting
        ]
    );
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::CloseSignal { leave: false })));
    let resume = a.iter().find_map(|a| match a {
        Action::OpenSignal { resume: Some(r) } => Some(r.clone()),
        _ => None,
    });
    assert_eq!(resume.map(|r| r.participant_sid), Some("PA_me".into()));
    assert!(!a.iter().any(|a| matches!(a, Action::DropPeers)));
    let a = t.feed(Input::Resumed(proto::ReconnectResponse {
        last_message_seq: 41,
        ..Default::default()
    }));
    assert!(matches!(a[..], [Action::CreateOffer { ice_restart: true }]));
    t.feed(Input::LocalOffer(Some(PUBLISHER_OFFER.into())));
    t.signal(answer());
    let a = t.peer(PeerRole::Publisher, PeerEvent::IceState(Ice::Connected));
    assert!(matches!(a[0], Action::ResendAfter(41)));
    assert_eq!(
        emitted(&a),
        vec![
            &RoomEvent::ConnectionStateChanged(ConnectionState::Connected),
            &RoomEvent::Reconnected
        ]
    );
}

#[test]
fn a_negotiation_that_crosses_a_resume_completes() {
    let mut t = Trace::joined(&[]);
    t.feed(Input::SignalClosed {
        reason: FailureReason::SignalClose,
        message: "gone".into(),
    });
    t.feed(Input::Resumed(proto::ReconnectResponse::default()));
    // The server offers the subscriber again before our restart offer is out, and an
    // answer to no offer of ours (the old one) must not reach the publisher.
    assert!(matches!(
        t.signal(offer(2, PUBLISHER_OFFER))[..],
        [Action::AcceptOffer { id: 2, .. }]
    ));
    assert!(t.signal(answer()).is_empty());
    t.feed(Input::LocalOffer(Some(PUBLISHER_OFFER.into())));
    let a = t.feed(Input::LocalAnswer {
        sdp: PUBLISHER_OFFER.into(),
        id: 2,
    });
    // Answered, but trickled only once per session.
    assert!(matches!(a[..], [Action::SendSignal(_)]));
    // ICE comes back before the answer: not resumed until the answer arrives.
    assert!(emitted(&t.peer(PeerRole::Publisher, PeerEvent::IceState(Ice::Connected))).is_empty());
    let a = t.signal(answer());
    assert!(matches!(a[0], Action::AcceptAnswer(_)));
    assert!(emitted(&a).contains(&&RoomEvent::Reconnected));
}

#[test]
fn a_leave_to_reconnect_rejoins_and_reports_the_difference() {
    let mut t = Trace::joined(&[("PA_a", "alice")]);
    let a = t.signal(leave(
        proto::leave_request::Action::Reconnect,
        proto::DisconnectReason::Migration,
    ));
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::CloseSignal { leave: true })));
    assert!(a.iter().any(|a| matches!(a, Action::DropPeers)));
    assert!(emitted(&a).contains(&&RoomEvent::Reconnecting));
    // The first attempt comes after the policy's first delay.
    assert!(t.advance(Duration::from_millis(50)).is_empty());
    let a = t.advance(Duration::from_millis(60));
    assert!(matches!(a[..], [Action::OpenSignal { resume: None }]));
    // Alice left meanwhile; bob came.
    let a = t.establish(join_response(&[("PA_b", "bob")]));
    assert!(a.iter().any(|a| matches!(a, Action::ForgetSent)));
    let events = emitted(&a);
    assert_eq!(
        events[0],
        &RoomEvent::ConnectionStateChanged(ConnectionState::Connected)
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, RoomEvent::ParticipantDisconnected { participant, .. } if participant.identity == "alice")));
    assert!(events
        .iter()
        .any(|e| matches!(e, RoomEvent::ParticipantConnected(p) if p.identity == "bob")));
    assert_eq!(events.last(), Some(&&RoomEvent::Reconnected));
}

#[test]
fn a_leave_to_disconnect_ends_the_room_with_its_reason() {
    let mut t = Trace::joined(&[]);
    let a = t.signal(leave(
        proto::leave_request::Action::Disconnect,
        proto::DisconnectReason::ParticipantRemoved,
    ));
    assert!(matches!(a[0], Action::CloseSignal { leave: true }));
    assert_eq!(
        emitted(&a),
        vec![
            &RoomEvent::ConnectionStateChanged(ConnectionState::Disconnected),
            &RoomEvent::Disconnected {
                reason: FailureReason::ParticipantRemoved
            }
        ]
    );
    assert!(matches!(a.last(), Some(Action::Finished)));
    assert!(t.engine.is_closed());
}

#[test]
fn rejoins_stop_after_the_policy_gives_up() {
    let mut t = Trace::joined(&[]);
    t.signal(leave(
        proto::leave_request::Action::Reconnect,
        proto::DisconnectReason::ServerShutdown,
    ));
    let mut finished = false;
    for _ in 0..50 {
        let a = t.advance(Duration::from_secs(5));
        if a.iter().any(|a| matches!(a, Action::OpenSignal { .. })) {
            let e = crate::Error::connect(FailureReason::Unreachable, "nobody there");
            t.feed(Input::SignalFailed(e));
        }
        if t.engine.is_closed() {
            finished = true;
            break;
        }
    }
    assert!(finished);
    assert_eq!(
        *t.shared.conn.lock(),
        (ConnectionState::Failed, FailureReason::MaxRetries)
    );
}

#[test]
fn data_from_an_unannounced_sender_is_delivered_at_once_with_its_sender() {
    let mut t = Trace::joined(&[("PA_a", "alice")]);
    let mut carol = OutboxState::default();
    // The server announces carol only in its next batch; her data comes first. She is
    // announced from her packet, then the packet is delivered.
    let a = t.peer(PeerRole::Subscriber, data_from("carol", &mut carol, b"1"));
    let events = emitted(&a);
    assert!(
        matches!(events[..], [RoomEvent::ParticipantConnected(p), RoomEvent::DataReceived(d)]
        if p.identity == "carol" && d.participant_identity == "carol" && d.payload == b"1")
    );
    assert!(t.shared.state.lock().remotes.contains_key("carol"));
    // Her next packet needs no announcement.
    let a = t.peer(PeerRole::Subscriber, data_from("carol", &mut carol, b"2"));
    assert!(matches!(emitted(&a)[..], [RoomEvent::DataReceived(_)]));
    // The server's description fills her in without a second announcement.
    let mut described = participant("PA_c", "carol");
    described.name = "Carol".into();
    described.metadata = "m".into();
    described.kind = proto::participant_info::Kind::Agent as i32;
    let a = t.signal(update(vec![described]));
    assert!(
        matches!(emitted(&a)[..], [RoomEvent::ParticipantsUpdated(ps), RoomEvent::ParticipantActive { identity }]
        if ps.len() == 1 && ps[0].name == "Carol" && ps[0].metadata == "m" && identity == "carol")
    );
    assert_eq!(
        t.shared.state.lock().remotes["carol"].kind,
        proto::participant_info::Kind::Agent as i32
    );
    // Later changes are changes as usual.
    let mut renamed = participant("PA_c", "carol");
    renamed.name = "C.".into();
    renamed.metadata = "m".into();
    renamed.version = 2;
    let a = t.signal(update(vec![renamed]));
    assert!(
        matches!(emitted(&a)[..], [RoomEvent::ParticipantNameChanged { new, .. }] if new == "C.")
    );
    // A packet seen before (same sender, same sequence) is dropped.
    let packet = data_from("carol", &mut carol, b"3");
    let PeerEvent::Data { kind, bytes } = packet else {
        unreachable!()
    };
    let copy = PeerEvent::Data {
        kind,
        bytes: bytes.clone(),
    };
    assert_eq!(
        emitted(&t.peer(PeerRole::Subscriber, PeerEvent::Data { kind, bytes })).len(),
        1
    );
    assert!(emitted(&t.peer(PeerRole::Subscriber, copy)).is_empty());
}

#[test]
fn a_late_packet_does_not_bring_back_a_participant_that_left() {
    let mut t = Trace::joined(&[("PA_a", "alice")]);
    let mut gone = participant("PA_a", "alice");
    gone.state = proto::participant_info::State::Disconnected as i32;
    gone.version = 2;
    t.signal(update(vec![gone]));
    let mut alice = OutboxState::default();
    let a = t.peer(
        PeerRole::Subscriber,
        data_from("alice", &mut alice, b"late"),
    );
    assert!(matches!(emitted(&a)[..], [RoomEvent::DataReceived(_)]));
    assert!(!t.shared.state.lock().remotes.contains_key("alice"));
}

#[test]
fn requests_are_matched_with_their_answers_or_time_out() {
    let mut t = Trace::joined(&[]);
    let req = proto::UpdateParticipantMetadata {
        metadata: "m".into(),
        ..Default::default()
    };
    let first = t.engine.request_update(t.now, req.clone());
    let a = t.actions();
    assert!(
        matches!(&a[..], [Action::SendSignal(r)] if matches!(&**r, Req::UpdateMetadata(u) if u.request_id == first))
    );
    let second = t.engine.request_update(t.now, req);
    t.actions();
    let a = t.signal(Resp::RequestResponse(proto::RequestResponse {
        request_id: second,
        reason: proto::request_response::Reason::NotAllowed as i32,
        message: "no grant".into(),
        ..Default::default()
    }));
    assert!(
        matches!(&a[..], [Action::RequestDone { id, result: Err(RequestError::Refused(m)) }] if *id == second && m.contains("no grant"))
    );
    let a = t.advance(REQUEST_TIMEOUT);
    assert!(
        matches!(&a[..], [Action::RequestDone { id, result: Err(RequestError::NoAnswer) }] if *id == first)
    );
}

#[test]
fn leaving_during_a_join_answers_the_caller() {
    let mut t = Trace::new();
    t.feed(Input::Joined(Box::new(join_response(&[]))));
    let a = t.feed(Input::Leave);
    assert!(matches!(
        a[0],
        Action::JoinResult(Err(crate::Error::Closed))
    ));
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::CloseSignal { leave: true })));
    assert!(t.engine.is_closed());
}

#[test]
fn a_lost_transport_gets_time_to_recover_before_a_resume() {
    use super::watch::{ICE_LOST_TIMEOUT, LEAVE_GRACE};
    let mut t = Trace::joined(&[]);
    // ICE drops and comes back within its grace: nothing happens.
    t.peer(PeerRole::Subscriber, PeerEvent::IceState(Ice::Disconnected));
    t.advance(ICE_LOST_TIMEOUT / 2);
    t.peer(PeerRole::Subscriber, PeerEvent::IceState(Ice::Connected));
    assert!(t.advance(ICE_LOST_TIMEOUT).is_empty());
    // It drops for good: a resume once the grace is over.
    t.peer(PeerRole::Subscriber, PeerEvent::IceState(Ice::Disconnected));
    assert!(t.advance(ICE_LOST_TIMEOUT / 2).is_empty());
    let a = t.advance(ICE_LOST_TIMEOUT / 2);
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::OpenSignal { resume: Some(_) })));

    // A path that went silent is lost at once: resume while the server still
    // holds the session (str0m would hold on to the path for 15 s more).
    let mut t = Trace::joined(&[]);
    let a = t.peer(PeerRole::Publisher, PeerEvent::PathSilent);
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::OpenSignal { resume: Some(_) })));

    // A closed peer connection waits briefly for the server's word, which wins.
    let mut t = Trace::joined(&[]);
    t.peer(PeerRole::Publisher, PeerEvent::Closed("gone".into()));
    assert_eq!(t.engine.deadline(), Some(t.now + LEAVE_GRACE));
    let a = t.signal(leave(
        proto::leave_request::Action::Disconnect,
        proto::DisconnectReason::RoomDeleted,
    ));
    assert!(emitted(&a).contains(&&RoomEvent::Disconnected {
        reason: FailureReason::RoomDeleted
    }));
    assert!(t.engine.is_closed());
}

fn add_track(cid: &str) -> proto::AddTrackRequest {
    proto::AddTrackRequest {
        cid: cid.into(),
        name: "mic".into(),
        r#type: proto::TrackType::Audio as i32,
        ..Default::default()
    }
}

fn track_info(sid: &str) -> proto::TrackInfo {
    proto::TrackInfo {
        sid: sid.into(),
        name: "mic".into(),
        r#type: proto::TrackType::Audio as i32,
        ..Default::default()
    }
}

fn published(cid: &str, sid: &str) -> Resp {
    Resp::TrackPublished(proto::TrackPublishedResponse {
        cid: cid.into(),
        track: Some(track_info(sid)),
    })
}

#[test]
fn a_track_is_published_then_negotiated_and_changes_wait_for_the_offer_under_way() {
    let mut t = Trace::joined(&[]);
    t.engine.publish(t.now, add_track("c1"));
    let a = t.actions();
    assert!(
        matches!(&a[..], [Action::SendSignal(r)] if matches!(**r, Req::AddTrack(ref r) if r.cid == "c1"))
    );

    let a = t.signal(published("c1", "TR_1"));
    assert!(
        matches!(&a[0], Action::StartSending { cid } if cid == "c1"),
        "{a:?}"
    );
    assert!(
        matches!(&a[1], Action::CreateOffer { ice_restart: false }),
        "{a:?}"
    );
    assert!(
        matches!(&a[2], Action::PublishDone { cid, result: Ok(i) } if cid == "c1" && i.sid == "TR_1")
    );
    assert!(matches!(&a[3], Action::Emit(RoomEvent::LocalTrackPublished(i)) if i.sid == "TR_1"));
    assert_eq!(t.shared.state.lock().local_tracks.len(), 1);

    // A second track while the first offer waits for its answer: one more offer after it.
    t.engine.publish(t.now, add_track("c2"));
    t.actions();
    let a = t.signal(published("c2", "TR_2"));
    assert!(
        !a.iter().any(|a| matches!(a, Action::CreateOffer { .. })),
        "{a:?}"
    );
    t.feed(Input::LocalOffer(Some(PUBLISHER_OFFER.into())));
    let a = t.signal(answer());
    assert!(
        matches!(
            &a[..],
            [
                Action::AcceptAnswer(_),
                Action::CreateOffer { ice_restart: false }
            ]
        ),
        "{a:?}"
    );
    // Nothing changed after all: the negotiation ends quietly.
    assert!(t.feed(Input::LocalOffer(None)).is_empty());

    // Mute is told to the server and to the user; unpublish stops the track and
    // renegotiates.
    assert!(t.engine.mute("TR_1", true));
    let a = t.actions();
    assert!(
        matches!(&a[0], Action::SendSignal(r) if matches!(**r, Req::Mute(ref m) if m.sid == "TR_1" && m.muted))
    );
    assert!(
        matches!(&a[1], Action::Emit(RoomEvent::TrackMuted { identity, muted: true, .. }) if identity == "me")
    );
    assert!(t.engine.unpublish("TR_1"));
    let a = t.actions();
    assert!(matches!(&a[0], Action::StopSending { cid, forget: true } if cid == "c1"));
    assert!(matches!(&a[1], Action::CreateOffer { .. }));
    assert!(
        matches!(&a[2], Action::Emit(RoomEvent::LocalTrackUnpublished { sid }) if sid == "TR_1")
    );
    assert!(!t.engine.unpublish("TR_1"), "already gone");
    assert_eq!(t.shared.state.lock().local_tracks.len(), 1);
}

#[test]
fn a_track_the_server_never_accepts_fails_its_publication() {
    let mut t = Trace::joined(&[]);
    t.engine.publish(t.now, add_track("c1"));
    t.actions();
    let a = t.advance(super::media::PUBLISH_TIMEOUT);
    assert!(
        matches!(&a[..], [Action::PublishDone { cid, result: Err(super::PublishError::Timeout(_)) }] if cid == "c1"),
        "{a:?}"
    );
    // Before the room is connected, a publication is refused at once.
    let mut t = Trace::new();
    t.engine.publish(t.now, add_track("c9"));
    assert!(matches!(
        &t.actions()[..],
        [Action::PublishDone {
            result: Err(super::PublishError::NotConnected),
            ..
        }]
    ));
}

#[tokio::test]
async fn media_before_its_track_waits_and_a_track_that_goes_is_unsubscribed_first() {
    let mut t = Trace::joined(&[("PA_a", "alice")]);
    let (remote, _packets) = crate::audio::RemoteAudioTrack::new("TR_a");
    // The subscriber's offer came before the participant update naming the track.
    let a = t.feed(Input::RemoteAudio {
        mid: "1".into(),
        sid: "TR_a".into(),
        track: Some(remote.clone()),
    });
    assert!(a.is_empty(), "{a:?}");
    let mut alice = participant("PA_a", "alice");
    alice.version = 2;
    alice.tracks = vec![track_info("TR_a")];
    let a = t.signal(Resp::Update(proto::ParticipantUpdate {
        participants: vec![alice.clone()],
    }));
    let names: Vec<&str> = a
        .iter()
        .filter_map(|a| match a {
            Action::Emit(RoomEvent::TrackPublished { .. }) => Some("published"),
            Action::Emit(RoomEvent::TrackSubscribed { .. }) => Some("subscribed"),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["published", "subscribed"]);
    let mut frames = remote.listen();

    alice.version = 3;
    alice.tracks.clear();
    let a = t.signal(Resp::Update(proto::ParticipantUpdate {
        participants: vec![alice],
    }));
    let names: Vec<&str> = a
        .iter()
        .filter_map(|a| match a {
            Action::Emit(RoomEvent::TrackUnsubscribed { sid, .. }) if sid == "TR_a" => {
                Some("unsubscribed")
            }
            Action::Emit(RoomEvent::TrackUnpublished { sid, .. }) if sid == "TR_a" => {
                Some("unpublished")
            }
            _ => None,
        })
        .collect();
    assert_eq!(names, ["unsubscribed", "unpublished"]);
    // Its listeners see the end.
    assert!(frames.recv().await.is_none());
    assert!(t.shared.state.lock().subscribed.is_empty());
}

#[tokio::test]
async fn media_that_comes_during_the_join_is_subscribed_once_joined() {
    let mut t = Trace::new();
    let mut join = join_response(&[("PA_a", "alice")]);
    join.other_participants[0].tracks = vec![track_info("TR_a")];
    let a = t.feed(Input::Joined(Box::new(join.clone())));
    assert!(matches!(
        a[..],
        [Action::NewPeers, Action::CreateOffer { .. }]
    ));
    let (remote, _packets) = crate::audio::RemoteAudioTrack::new("TR_a");
    assert!(t
        .feed(Input::RemoteAudio {
            mid: "1".into(),
            sid: "TR_a".into(),
            track: Some(remote),
        })
        .is_empty());
    // Finish the join by hand (the helper expects a fresh engine).
    t.feed(Input::LocalOffer(Some(PUBLISHER_OFFER.into())));
    t.signal(answer());
    let mut done = t.peer(PeerRole::Subscriber, PeerEvent::Connected);
    done.extend(t.peer(
        PeerRole::Subscriber,
        PeerEvent::ChannelOpen(DataKind::Reliable),
    ));
    assert!(
        done.iter().any(|a| matches!(a, Action::Emit(RoomEvent::TrackSubscribed { identity, sid, .. }) if identity == "alice" && sid == "TR_a")),
        "{done:?}"
    );
}
