//! Tracks over the FFI: local audio tracks (made from a source, published, muted),
//! remote ones (handed over when subscribed), publications, and audio streams that
//! carry a remote track's frames to the client.
//!
//! An audio stream is a task that converts a track's 10 ms frames to the rate,
//! channels and frame length the client asked for and queues them as droppable
//! events: a client that stops reading loses frames, the core keeps no backlog.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::audio::{owned_buffer, source_of};
use super::convert::track_source;
use super::proto;
use super::room::{local_room_handle, FfiParticipant};
use super::{FfiError, FfiResult, FfiServer};
use crate::audio::{
    remix, LocalAudioTrack, PcmFrame, RemoteAudioTrack, ResampleQuality, Resampler,
};
use crate::engine::{PublishOptions, Room};

use proto::ffi_event::Message as Ev;

/// A track handle.
pub(crate) enum FfiTrack {
    Local {
        track: LocalAudioTrack,
        /// The room and sid it is published as.
        published: Arc<Mutex<Option<(Room, String)>>>,
    },
    Remote(RemoteAudioTrack),
}

/// A publication handle (what `set_subscribed` acts on).
pub(crate) struct FfiPublication {
    room: Room,
    sid: String,
}

/// An audio stream handle; dropping it ends the stream (with its `eos`, which
/// clients wait for when they close a stream).
pub(crate) struct FfiAudioStream {
    handle: u64,
    task: tokio::task::AbortHandle,
    ended: Arc<AtomicBool>,
}

impl Drop for FfiAudioStream {
    fn drop(&mut self) {
        self.task.abort();
        end_stream(FfiServer::global(), self.handle, &self.ended);
    }
}

/// Sends a stream's `eos`, once.
fn end_stream(server: &FfiServer, handle: u64, ended: &AtomicBool) {
    if ended.swap(true, Ordering::AcqRel) {
        return;
    }
    server.send_event(Ev::AudioStreamEvent(proto::AudioStreamEvent {
        stream_handle: handle,
        message: Some(proto::audio_stream_event::Message::Eos(
            proto::AudioStreamEos {},
        )),
    }));
}

fn kind(t: &crate::proto::TrackInfo) -> proto::TrackKind {
    match crate::proto::TrackType::try_from(t.r#type) {
        Ok(crate::proto::TrackType::Audio) => proto::TrackKind::KindAudio,
        Ok(crate::proto::TrackType::Video) => proto::TrackKind::KindVideo,
        _ => proto::TrackKind::KindUnknown,
    }
}

/// The FFI description of a publication from the server's description of its track.
pub(super) fn publication_info(
    t: &crate::proto::TrackInfo,
    remote: bool,
) -> proto::TrackPublicationInfo {
    let encryption_type = match t.encryption {
        1 => proto::EncryptionType::Gcm,
        2 => proto::EncryptionType::Custom,
        _ => proto::EncryptionType::None,
    };
    #[allow(deprecated)] // still what the server fills in for simulcast video
    let simulcasted = t.layers.len() > 1;
    proto::TrackPublicationInfo {
        sid: t.sid.clone(),
        name: t.name.clone(),
        kind: kind(t) as i32,
        source: track_source(t.source).unwrap_or(proto::TrackSource::SourceUnknown) as i32,
        simulcasted,
        width: t.width,
        height: t.height,
        mime_type: t.mime_type.clone(),
        muted: t.muted,
        remote,
        encryption_type: encryption_type as i32,
        // The two protocols number the features alike.
        audio_features: t
            .audio_features
            .iter()
            .copied()
            .filter(|f| proto::AudioTrackFeature::try_from(*f).is_ok())
            .collect(),
        frame_metadata_features: vec![],
    }
}

pub(super) fn owned_publication(
    server: &FfiServer,
    room: &Room,
    t: &crate::proto::TrackInfo,
    remote: bool,
) -> proto::OwnedTrackPublication {
    let id = server.insert_handle(FfiPublication {
        room: room.clone(),
        sid: t.sid.clone(),
    });
    proto::OwnedTrackPublication {
        handle: proto::FfiOwnedHandle { id },
        info: publication_info(t, remote),
    }
}

pub(super) fn owned_remote_track(
    server: &FfiServer,
    track: RemoteAudioTrack,
    sid: &str,
    name: &str,
) -> proto::OwnedTrack {
    let id = server.insert_handle(FfiTrack::Remote(track));
    proto::OwnedTrack {
        handle: proto::FfiOwnedHandle { id },
        info: proto::TrackInfo {
            sid: sid.to_owned(),
            name: name.to_owned(),
            kind: proto::TrackKind::KindAudio as i32,
            stream_state: proto::StreamState::StateActive as i32,
            muted: false,
            remote: true,
        },
    }
}

pub(super) fn create_audio_track(
    server: &FfiServer,
    r: proto::CreateAudioTrackRequest,
) -> FfiResult<proto::CreateAudioTrackResponse> {
    let source = source_of(server, r.source_handle)?;
    let track = LocalAudioTrack::new(&r.name, source);
    let info = proto::TrackInfo {
        sid: track.cid().to_owned(),
        name: r.name,
        kind: proto::TrackKind::KindAudio as i32,
        stream_state: proto::StreamState::StateActive as i32,
        muted: false,
        remote: false,
    };
    let id = server.insert_handle(FfiTrack::Local {
        track,
        published: Arc::default(),
    });
    Ok(proto::CreateAudioTrackResponse {
        track: proto::OwnedTrack {
            handle: proto::FfiOwnedHandle { id },
            info,
        },
    })
}

type LocalParts = (LocalAudioTrack, Arc<Mutex<Option<(Room, String)>>>);

fn local_track(server: &FfiServer, handle: u64) -> FfiResult<LocalParts> {
    server
        .with_handle::<FfiTrack, _>(handle, |t| match t {
            FfiTrack::Local { track, published } => Some((track.clone(), published.clone())),
            FfiTrack::Remote(_) => None,
        })?
        .ok_or_else(|| FfiError::Invalid(format!("handle {handle} is not a local track")))
}

/// The server's track source for the FFI's (the two enums number them apart);
/// `unset` when the request names none.
fn server_source(
    source: Option<i32>,
    unset: crate::proto::TrackSource,
) -> crate::proto::TrackSource {
    use crate::proto::TrackSource as S;
    match source.and_then(|s| proto::TrackSource::try_from(s).ok()) {
        Some(proto::TrackSource::SourceCamera) => S::Camera,
        Some(proto::TrackSource::SourceMicrophone) => S::Microphone,
        Some(proto::TrackSource::SourceScreenshare) => S::ScreenShare,
        Some(proto::TrackSource::SourceScreenshareAudio) => S::ScreenShareAudio,
        Some(proto::TrackSource::SourceUnknown) => S::Unknown,
        None => unset,
    }
}

fn publish_options(o: &proto::TrackPublishOptions) -> PublishOptions {
    let defaults = PublishOptions::default();
    PublishOptions {
        source: server_source(o.source, defaults.source),
        dtx: o.dtx.unwrap_or(defaults.dtx),
        red: o.red.unwrap_or(defaults.red),
        stream: o.stream.clone().unwrap_or_default(),
    }
}

pub(super) fn publish_track(
    server: &'static FfiServer,
    r: proto::PublishTrackRequest,
) -> FfiResult<proto::PublishTrackResponse> {
    let (room, room_handle) = local_room_handle(server, r.local_participant_handle)?;
    let (track, published) = local_track(server, r.track_handle)?;
    let options = publish_options(&r.options);
    let async_id = server.async_id(r.request_async_id);
    let callback = move |message| {
        Ev::PublishTrack(proto::PublishTrackCallback {
            async_id,
            message: Some(message),
        })
    };
    server.spawn_async(
        async_id,
        async move {
            let result = room.publish_audio(&track, options).await;
            if !server.finish(async_id) {
                // Cancelled: what was published meanwhile is taken back.
                if let Ok(info) = result {
                    let _ = room.unpublish_track(&info.sid).await;
                }
                return;
            }
            match result {
                Ok(info) => {
                    *published.lock() = Some((room.clone(), info.sid.clone()));
                    let publication = owned_publication(server, &room, &info, false);
                    server.send_event(callback(
                        proto::publish_track_callback::Message::Publication(publication),
                    ));
                    // After the callback: the client knows the publication by then.
                    server.send_event(Ev::RoomEvent(proto::RoomEvent {
                        room_handle,
                        message: Some(proto::room_event::Message::LocalTrackPublished(
                            proto::LocalTrackPublished {
                                track_sid: info.sid,
                            },
                        )),
                    }));
                }
                Err(e) => server.send_event(callback(
                    proto::publish_track_callback::Message::Error(e.to_string()),
                )),
            }
        },
        move |m| {
            FfiServer::global().send_event(callback(proto::publish_track_callback::Message::Error(
                format!("publish panicked: {m}"),
            )))
        },
    );
    Ok(proto::PublishTrackResponse { async_id })
}

pub(super) fn unpublish_track(
    server: &'static FfiServer,
    r: proto::UnpublishTrackRequest,
) -> FfiResult<proto::UnpublishTrackResponse> {
    let (room, _) = local_room_handle(server, r.local_participant_handle)?;
    let async_id = server.async_id(r.request_async_id);
    let callback =
        move |error| Ev::UnpublishTrack(proto::UnpublishTrackCallback { async_id, error });
    server.spawn_async(
        async_id,
        async move {
            let error = match room.unpublish_track(&r.track_sid).await {
                Ok(true) => None,
                Ok(false) => Some(format!("track {} is not published", r.track_sid)),
                Err(e) => Some(e.to_string()),
            };
            if server.finish(async_id) {
                server.send_event(callback(error));
            }
        },
        move |m| FfiServer::global().send_event(callback(Some(m))),
    );
    Ok(proto::UnpublishTrackResponse { async_id })
}

pub(super) fn local_track_mute(
    server: &FfiServer,
    r: proto::LocalTrackMuteRequest,
) -> FfiResult<proto::LocalTrackMuteResponse> {
    let (track, published) = local_track(server, r.track_handle)?;
    track.set_muted(r.mute);
    if let Some((room, sid)) = published.lock().clone() {
        // Told to the server (and the room's events) in order, after this answer.
        server.spawn(async move {
            if let Err(e) = room.set_track_muted(&sid, r.mute).await {
                log::debug!("mute of {sid} not sent: {e}");
            }
        });
    }
    Ok(proto::LocalTrackMuteResponse { muted: r.mute })
}

pub(super) fn enable_remote_track(
    server: &FfiServer,
    r: proto::EnableRemoteTrackRequest,
) -> FfiResult<proto::EnableRemoteTrackResponse> {
    server.with_handle::<FfiTrack, _>(r.track_handle, |_| ())?;
    Ok(proto::EnableRemoteTrackResponse { enabled: r.enabled })
}

pub(super) fn enable_remote_track_publication(
    server: &FfiServer,
    r: proto::EnableRemoteTrackPublicationRequest,
) -> FfiResult<proto::EnableRemoteTrackPublicationResponse> {
    server.with_handle::<FfiPublication, _>(r.track_publication_handle, |_| ())?;
    Ok(proto::EnableRemoteTrackPublicationResponse {})
}

pub(super) fn set_subscribed(
    server: &FfiServer,
    r: proto::SetSubscribedRequest,
) -> FfiResult<proto::SetSubscribedResponse> {
    let (room, sid) = server.with_handle::<FfiPublication, _>(r.publication_handle, |p| {
        (p.room.clone(), p.sid.clone())
    })?;
    server.spawn(async move {
        if let Err(e) = room.set_subscribed(&sid, r.subscribe).await {
            log::warn!("subscription to {sid} not changed: {e}");
        }
    });
    Ok(proto::SetSubscribedResponse {})
}

/// What an audio stream plays: one track, or whatever audio track of a participant
/// we receive, across unsubscriptions, until the participant leaves.
enum Follow {
    Track(RemoteAudioTrack),
    Participant {
        room: Room,
        identity: String,
        source: crate::proto::TrackSource,
    },
}

/// How often a participant's stream looks for its track while it has none.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

struct Format {
    sample_rate: u32,
    channels: usize,
    /// Samples per channel in one frame handed out.
    frame: usize,
}

impl Format {
    fn new(
        sample_rate: Option<u32>,
        channels: Option<u32>,
        frame_ms: Option<u32>,
    ) -> FfiResult<Self> {
        let sample_rate = sample_rate.unwrap_or(48_000);
        let channels = channels.unwrap_or(1) as usize;
        let frame_ms = frame_ms.unwrap_or(10);
        if !(8_000..=192_000).contains(&sample_rate) || !(1..=8).contains(&channels) {
            return Err(FfiError::Invalid(format!(
                "audio stream of {sample_rate} Hz and {channels} channels"
            )));
        }
        if !(1..=1000).contains(&frame_ms) {
            return Err(FfiError::Invalid(format!("frames of {frame_ms} ms")));
        }
        Ok(Self {
            sample_rate,
            channels,
            frame: (sample_rate as usize * frame_ms as usize / 1000).max(1),
        })
    }
}

fn start_stream(
    server: &'static FfiServer,
    follow: Follow,
    format: Format,
) -> proto::OwnedAudioStream {
    let handle = server.next_id();
    let ended = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(stream(server, handle, follow, format, ended.clone()));
    server.insert_handle_as(
        handle,
        FfiAudioStream {
            handle,
            task: task.abort_handle(),
            ended,
        },
    );
    proto::OwnedAudioStream {
        handle: proto::FfiOwnedHandle { id: handle },
        info: proto::AudioStreamInfo {
            r#type: proto::AudioStreamType::AudioStreamNative as i32,
        },
    }
}

pub(super) fn new_audio_stream(
    server: &'static FfiServer,
    r: proto::NewAudioStreamRequest,
) -> FfiResult<proto::NewAudioStreamResponse> {
    let track = server
        .with_handle::<FfiTrack, _>(r.track_handle, |t| match t {
            FfiTrack::Remote(t) => Some(t.clone()),
            FfiTrack::Local { .. } => None,
        })?
        .ok_or_else(|| FfiError::Invalid("audio streams read remote tracks".into()))?;
    let format = Format::new(r.sample_rate, r.num_channels, r.frame_size_ms)?;
    Ok(proto::NewAudioStreamResponse {
        stream: start_stream(server, Follow::Track(track), format),
    })
}

pub(super) fn audio_stream_from_participant(
    server: &'static FfiServer,
    r: proto::AudioStreamFromParticipantRequest,
) -> FfiResult<proto::AudioStreamFromParticipantResponse> {
    let (room, identity) = server.with_handle::<FfiParticipant, _>(r.participant_handle, |p| {
        (p.room.clone(), p.identity.clone())
    })?;
    let source = server_source(r.track_source, crate::proto::TrackSource::Unknown);
    let format = Format::new(r.sample_rate, r.num_channels, r.frame_size_ms)?;
    let follow = Follow::Participant {
        room,
        identity,
        source,
    };
    Ok(proto::AudioStreamFromParticipantResponse {
        stream: start_stream(server, follow, format),
    })
}

/// Converts 48 kHz frames of any channel count to the stream's format and cuts
/// them into frames of its length.
struct Converter {
    format: Format,
    resampler: Option<Resampler>,
    pending: Vec<i16>,
}

impl Converter {
    fn new(format: Format) -> Self {
        let resampler = (format.sample_rate != PcmFrame::SAMPLE_RATE)
            .then(|| {
                Resampler::new(
                    f64::from(PcmFrame::SAMPLE_RATE),
                    f64::from(format.sample_rate),
                    format.channels,
                    ResampleQuality::Medium,
                )
                .ok()
            })
            .flatten();
        Self {
            format,
            resampler,
            pending: Vec::new(),
        }
    }

    /// Takes one frame in; whole output frames come out.
    fn push(&mut self, f: &PcmFrame, out: &mut Vec<Vec<i16>>) {
        let same_channels = f.channels == self.format.channels;
        match &mut self.resampler {
            Some(r) => {
                let pushed = if same_channels {
                    r.push(&f.samples)
                } else {
                    r.push(&remix(&f.samples, f.channels, self.format.channels))
                };
                match pushed {
                    Ok(s) => self.pending.extend(s),
                    Err(e) => log::debug!("audio stream cannot resample: {e}"),
                }
            }
            // Per frame on the hot path: no intermediate copy when nothing changes.
            None if same_channels => self.pending.extend_from_slice(&f.samples),
            None => self
                .pending
                .extend(remix(&f.samples, f.channels, self.format.channels)),
        }
        let n = self.format.frame * self.format.channels;
        while self.pending.len() >= n {
            out.push(self.pending.drain(..n).collect());
        }
    }
}

async fn stream(
    server: &'static FfiServer,
    handle: u64,
    follow: Follow,
    format: Format,
    ended: Arc<AtomicBool>,
) {
    let mut conv = Converter::new(format);
    let mut frames = Vec::new();
    loop {
        let track = match &follow {
            Follow::Track(t) => Some(t.clone()),
            Follow::Participant {
                room,
                identity,
                source,
            } => {
                if room.remote_participant(identity).is_none()
                    || room.connection_state() == crate::ConnectionState::Disconnected
                {
                    break;
                }
                room.subscribed_audio(identity, *source)
            }
        };
        let Some(track) = track else {
            tokio::time::sleep(FOLLOW_POLL).await;
            continue;
        };
        let mut rx: mpsc::Receiver<PcmFrame> = track.listen();
        while let Some(f) = rx.recv().await {
            conv.push(&f, &mut frames);
            for data in frames.drain(..) {
                let frame =
                    owned_buffer(server, data, conv.format.channels, conv.format.sample_rate);
                let id = frame.handle.id;
                let event = Ev::AudioStreamEvent(proto::AudioStreamEvent {
                    stream_handle: handle,
                    message: Some(proto::audio_stream_event::Message::FrameReceived(
                        proto::AudioFrameReceived { frame },
                    )),
                });
                if !server.push_event(event, super::delivery::Class::Droppable) {
                    server.drop_handle(id);
                }
            }
        }
        if matches!(follow, Follow::Track(_)) {
            break;
        }
    }
    end_stream(server, handle, &ended);
}
