//! The engine machine's vocabulary: what the driver tells it ([`Input`]) and what it
//! asks the driver to do ([`Action`]).

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;

use super::requests::RequestError;
use crate::error::Error;
use crate::peer::{PeerEvent, PeerRole};
use crate::room::RoomEvent;
use crate::signal::Resume;
use crate::state::FailureReason;

/// What happened, as the driver reports it.
#[derive(Debug)]
pub enum Input {
    /// A signal connection opened and the server answered a join: a new session.
    Joined(Box<proto::JoinResponse>),
    /// A signal connection opened and the server resumed our session.
    Resumed(proto::ReconnectResponse),
    /// Opening a signal connection failed.
    SignalFailed(Error),
    Signal(Box<Resp>),
    /// The signal connection is gone.
    SignalClosed {
        reason: FailureReason,
        message: String,
    },
    Peer(PeerRole, PeerEvent),
    /// The publisher's offer, asked for by [`Action::CreateOffer`]; `None` when
    /// nothing changed since the last one.
    LocalOffer(Option<String>),
    /// Media `mid` of the subscriber carries track `sid` (`track`), or stopped (`None`).
    RemoteAudio {
        mid: String,
        sid: String,
        track: Option<crate::audio::RemoteAudioTrack>,
    },
    /// The subscriber's answer to the server's offer `id`.
    LocalAnswer {
        sdp: String,
        id: u32,
    },
    /// A peer connection refused what it was given, or could not be created.
    PeerFailed(PeerRole, String),
    /// The user leaves (or nobody holds the room any more).
    Leave,
}

/// What the driver must do, in this order.
#[derive(Debug)]
pub enum Action {
    /// Open a signal connection: a join, or a resume of the current session.
    OpenSignal {
        resume: Option<Resume>,
    },
    /// Close the signal connection, saying we leave when `leave`.
    CloseSignal {
        leave: bool,
    },
    /// Replace both peer connections with new ones (a new session).
    NewPeers,
    DropPeers,
    SendSignal(Box<Req>),
    /// Ask the publisher for an offer; the answer comes as [`Input::LocalOffer`].
    CreateOffer {
        ice_restart: bool,
    },
    AcceptAnswer(String),
    /// Give the subscriber the server's offer; the answer comes as [`Input::LocalAnswer`].
    AcceptOffer {
        sdp: String,
        id: u32,
    },
    AddRemoteCandidate(PeerRole, String),
    /// Trickle our candidates of `role` for the m-line `mid` at `index`.
    TrickleLocal {
        role: PeerRole,
        mid: String,
        index: u32,
    },
    Emit(RoomEvent),
    /// The server has every reliable packet up to this sequence: send the rest again.
    ResendAfter(u32),
    /// A new session: the packets kept for the old one are of no use.
    ForgetSent,
    /// The first join is complete, or failed for good.
    JoinResult(Result<(), Error>),
    /// The server answered (or never will) request `id`.
    RequestDone {
        id: u32,
        result: Result<(), RequestError>,
    },
    /// Send track `cid` on the publisher connection (before the offer that adds it).
    StartSending {
        cid: String,
    },
    /// Stop sending track `cid`; `forget` when it is unpublished for good.
    StopSending {
        cid: String,
        forget: bool,
    },
    /// The server muted or unmuted our track `cid`.
    MuteLocal {
        cid: String,
        muted: bool,
    },
    /// The server accepted (or never will) track `cid`.
    PublishDone {
        cid: String,
        result: Result<proto::TrackInfo, super::media::PublishError>,
    },
    /// The room is over; nothing follows.
    Finished,
}
