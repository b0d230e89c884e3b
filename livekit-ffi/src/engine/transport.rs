//! One session's two transports as the engine sees them: how far each has come
//! (ICE, DTLS, data channels), and their negotiation (offers, answers, candidates),
//! so that each signal message goes to the transport it belongs to.

use std::collections::VecDeque;

use livekit_protocol as proto;
use proto::signal_request::Message as Req;

use super::io::Action;
use crate::data::DataKind;
use crate::peer::PeerRole;
use crate::sdp;

#[derive(Debug, Default)]
pub(super) struct Transports {
    pub subscriber_primary: bool,
    publisher_connected: bool,
    subscriber_connected: bool,
    reliable_open: bool,
    lossy_open: bool,
    subscriber_channel_open: bool,
    pub publisher_ice: bool,
    pub subscriber_ice: bool,
    /// Whether the subscriber answered an offer (and trickled its candidates).
    pub subscriber_answered: bool,
    /// The publisher sent an offer and waits for its answer.
    offer_pending: bool,
    /// An offer was asked for and its answer has not come yet.
    negotiating: bool,
    /// Something changed during a negotiation: offer again after it.
    again: bool,
    /// The answer to the ICE-restart offer of a resume arrived.
    pub restart_answered: bool,
    /// The last remote description of each transport, for candidate routing.
    publisher_remote: Option<String>,
    subscriber_remote: Option<String>,
}

impl Transports {
    pub fn new(subscriber_primary: bool) -> Self {
        Self {
            subscriber_primary,
            ..Default::default()
        }
    }

    pub fn publisher_ready(&self) -> bool {
        self.publisher_connected && self.reliable_open && self.lossy_open
    }

    /// The join is done when the primary connection is up, as in the official SDKs.
    pub fn primary_ready(&self) -> bool {
        if self.subscriber_primary {
            self.subscriber_connected && self.subscriber_channel_open
        } else {
            self.publisher_ready()
        }
    }

    /// A resume restarts the publisher's ICE with a new offer.
    pub fn restart(&mut self) {
        self.publisher_ice = false;
        self.offer_pending = false;
        self.restart_answered = false;
        self.negotiating = true;
    }

    /// The publisher's tracks changed: offer now, or after the offer under way.
    pub fn renegotiate(&mut self, out: &mut VecDeque<Action>) {
        if self.negotiating {
            self.again = true;
        } else {
            self.negotiating = true;
            out.push_back(Action::CreateOffer { ice_restart: false });
        }
    }

    /// The offer asked for turned out to change nothing.
    pub fn no_offer(&mut self, out: &mut VecDeque<Action>) {
        self.negotiating = false;
        if std::mem::take(&mut self.again) {
            self.renegotiate(out);
        }
    }

    pub fn connected(&mut self, role: PeerRole) {
        match role {
            PeerRole::Publisher => self.publisher_connected = true,
            PeerRole::Subscriber => self.subscriber_connected = true,
        }
    }

    pub fn channel_open(&mut self, role: PeerRole, kind: DataKind) {
        match (role, kind) {
            (PeerRole::Publisher, DataKind::Reliable) => self.reliable_open = true,
            (PeerRole::Publisher, DataKind::Lossy) => self.lossy_open = true,
            (PeerRole::Subscriber, DataKind::Reliable) => self.subscriber_channel_open = true,
            (PeerRole::Subscriber, DataKind::Lossy) => {}
        }
    }

    pub fn ice(&mut self, role: PeerRole, up: bool) {
        match role {
            PeerRole::Publisher => self.publisher_ice = up,
            PeerRole::Subscriber => self.subscriber_ice = up,
        }
    }

    /// Our offer is ready: send it and trickle for it.
    pub fn local_offer(&mut self, sdp: String, out: &mut VecDeque<Action>) {
        self.offer_pending = true;
        let trickle = trickle(PeerRole::Publisher, &sdp);
        out.push_back(Action::SendSignal(Box::new(Req::Offer(
            proto::SessionDescription {
                r#type: "offer".into(),
                sdp,
                ..Default::default()
            },
        ))));
        out.extend(trickle);
    }

    /// The subscriber's answer to offer `id` is ready: send it (and trickle once).
    pub fn local_answer(&mut self, sdp: String, id: u32, out: &mut VecDeque<Action>) {
        let trickle = (!std::mem::replace(&mut self.subscriber_answered, true))
            .then(|| trickle(PeerRole::Subscriber, &sdp))
            .flatten();
        out.push_back(Action::SendSignal(Box::new(Req::Answer(
            proto::SessionDescription {
                r#type: "answer".into(),
                sdp,
                id,
                ..Default::default()
            },
        ))));
        out.extend(trickle);
    }

    /// Routes offer, answer and trickle messages to their transport; `false` for
    /// anything else. `resuming`: an answer now completes a resume's ICE restart.
    pub fn negotiate(
        &mut self,
        m: &proto::signal_response::Message,
        resuming: bool,
        out: &mut VecDeque<Action>,
    ) -> bool {
        use proto::signal_response::Message as Resp;
        match m {
            Resp::Answer(sd) => {
                // An answer to no offer of ours (a stale one from before a resume)
                // would only make the publisher fail.
                if !std::mem::take(&mut self.offer_pending) {
                    log::warn!("skipping a publisher answer with no offer pending");
                    return true;
                }
                self.restart_answered |= resuming;
                self.publisher_remote = Some(sd.sdp.clone());
                out.push_back(Action::AcceptAnswer(sd.sdp.clone()));
                self.no_offer(out);
            }
            Resp::Offer(sd) => {
                self.subscriber_remote = Some(sd.sdp.clone());
                out.push_back(Action::AcceptOffer {
                    sdp: sd.sdp.clone(),
                    id: sd.id,
                });
            }
            Resp::Trickle(t) => out.extend(self.remote_candidate(t)),
            _ => return false,
        }
        true
    }

    fn remote_candidate(&self, t: &proto::TrickleRequest) -> Option<Action> {
        let role = match proto::SignalTarget::try_from(t.target) {
            Ok(proto::SignalTarget::Publisher) => PeerRole::Publisher,
            Ok(proto::SignalTarget::Subscriber) => PeerRole::Subscriber,
            Err(_) => {
                log::warn!("skipping a candidate for unknown transport {}", t.target);
                return None;
            }
        };
        // A candidate names its m-line; one for a section the transport does not have
        // belongs to another negotiation.
        let remote = match role {
            PeerRole::Publisher => &self.publisher_remote,
            PeerRole::Subscriber => &self.subscriber_remote,
        };
        if let (Some(sdp), Some(mid)) = (remote, candidate_mid(&t.candidate_init)) {
            if !sdp::has_mid(sdp, &mid) {
                log::warn!("skipping a {role:?} candidate for unknown m-line {mid:?}");
                return None;
            }
        }
        Some(Action::AddRemoteCandidate(role, t.candidate_init.clone()))
    }
}

/// Our candidates go out for the m-line whose transport the bundle shares.
fn trickle(role: PeerRole, local_sdp: &str) -> Option<Action> {
    sdp::transport_line(local_sdp).map(|line| Action::TrickleLocal {
        role,
        mid: line.mid,
        index: line.index,
    })
}

/// The `sdpMid` of a trickled `candidate_init`, if it names one.
fn candidate_mid(init: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(init).ok()?;
    v.get("sdpMid")?.as_str().map(str::to_owned)
}
