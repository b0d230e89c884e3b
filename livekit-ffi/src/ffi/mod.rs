//! The FFI server: protobuf `FfiRequest` in, `FfiResponse` out, `FfiEvent`s later.
//!
//! One process-wide server owns a tokio runtime, the handle table (u64 ids for every
//! native object a client holds) and the event sink the client registered. Async
//! requests answer at once with an `async_id` and finish with an event carrying it.
//! Nothing panics across the boundary: requests run under `catch_unwind`, spawned
//! work under a guard that turns a panic into an error callback plus a `Panic` event.
//! [`cabi`] exports the same server with the official C entry points; the Python
//! binding calls [`FfiServer`] directly.

mod audio;
mod cabi;
mod chat;
mod convert;
mod data_stream;
mod delivery;
mod logs;
mod room;
mod rpc;
mod track;
mod video;

pub use audio::ReceivedAudioFrame;
pub use delivery::{Batch, DeliveryStats, DEFAULT_QUEUE_BYTES};

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt;
use parking_lot::Mutex;
use prost::Message;

/// Messages of `protocol/*.proto`, package `livekit.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/livekit.proto.rs"));
}

/// Errors a request is refused with (its response cannot carry them, so the caller
/// sees them as the request's failure).
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    #[error("malformed request: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("empty request")]
    Empty,
    #[error("request kind not implemented: {0}")]
    Unimplemented(&'static str),
    #[error("unknown handle {0}")]
    UnknownHandle(u64),
    #[error("handle {0} is not a {1}")]
    WrongHandle(u64, &'static str),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the core panicked: {0}")]
    Panic(String),
    #[error("the FFI server is not initialized")]
    NotInitialized,
}

pub type FfiResult<T> = Result<T, FfiError>;

/// Where events go: called from the delivery thread, one serialized `FfiEvent` each.
pub type EventSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Where events go, several at a time (in order): for clients that pay for each call
/// (a lock to take, a thread to wake), one call per burst of events.
pub type BatchSink = Arc<dyn Fn(&mut Batch<'_>) + Send + Sync>;

/// A native object a client holds, with its type's name (for leak reports).
struct Handle {
    value: Box<dyn Any + Send + Sync>,
    kind: &'static str,
}

impl Handle {
    fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self {
            value: Box::new(value),
            kind: std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("?"),
        }
    }
}

pub struct FfiServer {
    runtime: tokio::runtime::Runtime,
    handles: Mutex<HashMap<u64, Handle>>,
    next_id: AtomicU64,
    delivery: Arc<delivery::Delivery>,
    /// Async work that may still be cancelled, by async_id (with its task, if it has
    /// one of its own: a queued packet has none).
    pending: Mutex<HashMap<u64, Option<tokio::task::AbortHandle>>>,
}

static SERVER: OnceLock<FfiServer> = OnceLock::new();

impl FfiServer {
    /// The process-wide server, created on first use.
    pub fn global() -> &'static FfiServer {
        SERVER.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("livekit-ffi")
                .enable_all()
                .build()
                .expect("tokio runtime");
            FfiServer {
                runtime,
                handles: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                delivery: Arc::new(delivery::Delivery::new()),
                pending: Mutex::new(HashMap::new()),
            }
        })
    }

    /// Registers where events go; with `capture_logs`, the core's logs become
    /// `LogBatch` events instead of going nowhere.
    /// Calling it again replaces the sink without waiting for a delivery under way.
    pub fn initialize(&'static self, sink: EventSink, capture_logs: bool) {
        self.delivery.open(sink);
        if capture_logs {
            logs::install(self);
        }
    }

    /// [`FfiServer::initialize`] with a sink that takes the queued events in batches.
    pub fn initialize_batched(&'static self, sink: BatchSink, capture_logs: bool) {
        self.delivery.open_batched(sink);
        if capture_logs {
            logs::install(self);
        }
    }

    /// When `event` is an audio stream's received frame, takes its samples out of the
    /// buffer handle (released here): a binding of our own hands them to its client in
    /// one copy, with no protobuf parse, raw address or handle drop on the client's side.
    /// `None` for every other event, which then goes its usual way.
    pub fn take_audio_frame_event(&self, event: &[u8]) -> Option<audio::ReceivedAudioFrame> {
        audio::take_frame_event(self, event)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The async_id of a request: the client's choice if it made one.
    pub(crate) fn async_id(&self, requested: Option<u64>) -> u64 {
        match requested {
            Some(id) if id != 0 => id,
            _ => self.next_id(),
        }
    }

    pub(crate) fn insert_handle<T: Any + Send + Sync>(&self, value: T) -> u64 {
        let id = self.next_id();
        self.handles.lock().insert(id, Handle::new(value));
        id
    }

    /// Stores `value` under an id taken with [`FfiServer::next_id`] beforehand (for
    /// objects whose work must know their own handle).
    pub(crate) fn insert_handle_as<T: Any + Send + Sync>(&self, id: u64, value: T) {
        self.handles.lock().insert(id, Handle::new(value));
    }

    /// Runs `f` on the handle `id` of type `T`.
    pub(crate) fn with_handle<T: Any + Send + Sync, R>(
        &self,
        id: u64,
        f: impl FnOnce(&T) -> R,
    ) -> FfiResult<R> {
        let handles = self.handles.lock();
        let h = handles.get(&id).ok_or(FfiError::UnknownHandle(id))?;
        let t = h
            .value
            .downcast_ref::<T>()
            .ok_or(FfiError::WrongHandle(id, std::any::type_name::<T>()))?;
        Ok(f(t))
    }

    /// Takes handle `id` of type `T` out of the table (the client gave it back to
    /// have it consumed by a request).
    pub(crate) fn take_handle<T: Any + Send + Sync>(&self, id: u64) -> FfiResult<Box<T>> {
        let mut handles = self.handles.lock();
        match handles.get(&id) {
            None => return Err(FfiError::UnknownHandle(id)),
            Some(h) if !h.value.is::<T>() => {
                return Err(FfiError::WrongHandle(id, std::any::type_name::<T>()))
            }
            Some(_) => {}
        }
        let h = handles.remove(&id).ok_or(FfiError::UnknownHandle(id))?;
        h.value
            .downcast::<T>()
            .map_err(|_| FfiError::WrongHandle(id, std::any::type_name::<T>()))
    }

    pub fn drop_handle(&self, id: u64) -> bool {
        // Dropped outside the lock: a handle's Drop may take it again.
        let removed = self.handles.lock().remove(&id);
        removed.is_some()
    }

    pub fn handle_count(&self) -> usize {
        self.handles.lock().len()
    }

    /// The type of every live handle, by id (for leak reports).
    pub fn handle_kinds(&self) -> Vec<(u64, &'static str)> {
        let mut kinds: Vec<_> = self
            .handles
            .lock()
            .iter()
            .map(|(id, h)| (*id, h.kind))
            .collect();
        kinds.sort_unstable();
        kinds
    }

    /// Bounds the bytes of undelivered events (see [`DEFAULT_QUEUE_BYTES`]).
    pub fn set_event_queue_bytes(&self, bytes: usize) {
        self.delivery.set_bound(bytes);
    }

    pub fn delivery_stats(&self) -> DeliveryStats {
        self.delivery.stats()
    }

    /// Queues an event for the client; never waits for it.
    pub(crate) fn send_event(&self, message: proto::ffi_event::Message) {
        self.push_event(message, delivery::Class::Keep);
    }

    /// Queues an event that may be dropped when the client is far behind; `false`
    /// when it was (the caller then releases what the event would have handed over).
    pub(crate) fn push_event(
        &self,
        message: proto::ffi_event::Message,
        class: delivery::Class,
    ) -> bool {
        let bytes = proto::FfiEvent {
            message: Some(message),
        }
        .encode_to_vec();
        self.delivery.push(bytes, class)
    }

    /// Spawns the work of request `async_id`; it stays cancellable until it calls
    /// [`FfiServer::finish`]. A panic becomes `on_panic(message)` and a `Panic` event.
    pub(crate) fn spawn_async<F>(
        &'static self,
        async_id: u64,
        work: F,
        on_panic: impl FnOnce(String) + Send + 'static,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut pending = self.pending.lock();
        let task = self.runtime.spawn(async move {
            if let Err(p) = AssertUnwindSafe(work).catch_unwind().await {
                let message = panic_message(&*p);
                log::error!("request {async_id} panicked: {message}");
                if self.pending.lock().remove(&async_id).is_some() {
                    on_panic(message.clone());
                }
                self.send_event(proto::ffi_event::Message::Panic(proto::Panic { message }));
            }
        });
        // Registered under the lock, so `finish` from the task cannot come first.
        pending.insert(async_id, Some(task.abort_handle()));
    }

    /// Registers request `async_id` whose work runs without a task of its own; a
    /// cancel then only stops its callback.
    pub(crate) fn register(&self, async_id: u64) {
        self.pending.lock().insert(async_id, None);
    }

    /// Marks request `async_id` as done; `false` when it was cancelled meanwhile, in
    /// which case its result must be dropped and no callback sent.
    pub(crate) fn finish(&self, async_id: u64) -> bool {
        self.pending.lock().remove(&async_id).is_some()
    }

    fn cancel(&self, async_id: u64) -> bool {
        match self.pending.lock().remove(&async_id) {
            Some(task) => {
                if let Some(task) = task {
                    task.abort();
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn spawn<F: Future<Output = ()> + Send + 'static>(&self, f: F) {
        self.runtime.spawn(f);
    }

    /// Decodes and serves one request; never panics.
    pub fn handle_request(&'static self, bytes: &[u8]) -> FfiResult<Vec<u8>> {
        let request = proto::FfiRequest::decode(bytes)?;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.dispatch(request)));
        match result {
            Ok(r) => r.map(|m| proto::FfiResponse { message: Some(m) }.encode_to_vec()),
            Err(p) => {
                let message = panic_message(&*p);
                log::error!("request panicked: {message}");
                Err(FfiError::Panic(message))
            }
        }
    }

    fn dispatch(
        &'static self,
        request: proto::FfiRequest,
    ) -> FfiResult<proto::ffi_response::Message> {
        use proto::ffi_request::Message as Req;
        use proto::ffi_response::Message as Res;
        let _guard = self.runtime.enter();
        match request.message.ok_or(FfiError::Empty)? {
            Req::Dispose(r) => Ok(Res::Dispose(self.dispose(r.r#async))),
            Req::Cancel(r) => Ok(Res::Cancel(proto::CancelResponse {
                cancelled: self.cancel(r.async_id),
            })),
            Req::Connect(r) => room::connect(self, r).map(Res::Connect),
            Req::Disconnect(r) => room::disconnect(self, r).map(Res::Disconnect),
            Req::PublishData(r) => room::publish_data(self, r).map(Res::PublishData),
            Req::SetLocalMetadata(r) => {
                room::set_local_metadata(self, r).map(Res::SetLocalMetadata)
            }
            Req::SetLocalName(r) => room::set_local_name(self, r).map(Res::SetLocalName),
            Req::GetSessionStats(r) => room::get_session_stats(self, r).map(Res::GetSessionStats),
            Req::PublishSipDtmf(r) => room::publish_sip_dtmf(self, r).map(Res::PublishSipDtmf),
            Req::PublishTranscription(r) => {
                room::publish_transcription(self, r).map(Res::PublishTranscription)
            }
            Req::ReadyForRoomEvent(r) => {
                room::ready_for_room_event(self, r).map(Res::ReadyForRoomEvent)
            }
            Req::SetLocalAttributes(r) => {
                room::set_local_attributes(self, r).map(Res::SetLocalAttributes)
            }
            Req::NewAudioSource(r) => audio::new_audio_source(self, r).map(Res::NewAudioSource),
            Req::CaptureAudioFrame(r) => {
                audio::capture_audio_frame(self, r).map(Res::CaptureAudioFrame)
            }
            Req::ClearAudioBuffer(r) => {
                audio::clear_audio_buffer(self, r).map(Res::ClearAudioBuffer)
            }
            Req::NewAudioResampler(_) => {
                Ok(Res::NewAudioResampler(audio::new_audio_resampler(self)))
            }
            Req::VideoConvert(r) => Ok(Res::VideoConvert(video::video_convert(self, r))),
            Req::RemixAndResample(r) => {
                audio::remix_and_resample(self, r).map(Res::RemixAndResample)
            }
            Req::NewSoxResampler(r) => Ok(Res::NewSoxResampler(audio::new_sox_resampler(self, r))),
            Req::PushSoxResampler(r) => {
                audio::push_sox_resampler(self, r).map(Res::PushSoxResampler)
            }
            Req::FlushSoxResampler(r) => {
                audio::flush_sox_resampler(self, r).map(Res::FlushSoxResampler)
            }
            Req::SetTrackSubscriptionPermissions(r) => {
                room::set_track_subscription_permissions(self, r)
                    .map(Res::SetTrackSubscriptionPermissions)
            }
            Req::CreateAudioTrack(r) => {
                track::create_audio_track(self, r).map(Res::CreateAudioTrack)
            }
            Req::PublishTrack(r) => track::publish_track(self, r).map(Res::PublishTrack),
            Req::UnpublishTrack(r) => track::unpublish_track(self, r).map(Res::UnpublishTrack),
            Req::LocalTrackMute(r) => track::local_track_mute(self, r).map(Res::LocalTrackMute),
            Req::EnableRemoteTrack(r) => {
                track::enable_remote_track(self, r).map(Res::EnableRemoteTrack)
            }
            Req::EnableRemoteTrackPublication(r) => track::enable_remote_track_publication(self, r)
                .map(Res::EnableRemoteTrackPublication),
            Req::SetSubscribed(r) => track::set_subscribed(self, r).map(Res::SetSubscribed),
            Req::NewAudioStream(r) => track::new_audio_stream(self, r).map(Res::NewAudioStream),
            Req::AudioStreamFromParticipant(r) => {
                track::audio_stream_from_participant(self, r).map(Res::AudioStreamFromParticipant)
            }
            Req::SendChatMessage(r) => chat::send(self, r).map(Res::SendChatMessage),
            Req::EditChatMessage(r) => chat::edit(self, r).map(Res::SendChatMessage),
            Req::PerformRpc(r) => rpc::perform(self, r).map(Res::PerformRpc),
            Req::RegisterRpcMethod(r) => rpc::register(self, r).map(Res::RegisterRpcMethod),
            Req::UnregisterRpcMethod(r) => rpc::unregister(self, r).map(Res::UnregisterRpcMethod),
            Req::RpcMethodInvocationResponse(r) => {
                rpc::respond(self, r).map(Res::RpcMethodInvocationResponse)
            }
            Req::SendText(r) => data_stream::send_text(self, r).map(Res::SendText),
            Req::SendBytes(r) => data_stream::send_bytes(self, r).map(Res::SendBytes),
            Req::SendFile(r) => data_stream::send_file(self, r).map(Res::SendFile),
            Req::TextStreamOpen(r) => {
                data_stream::text_stream_open(self, r).map(Res::TextStreamOpen)
            }
            Req::ByteStreamOpen(r) => {
                data_stream::byte_stream_open(self, r).map(Res::ByteStreamOpen)
            }
            Req::TextStreamWrite(r) => {
                data_stream::text_stream_write(self, r).map(Res::TextStreamWrite)
            }
            Req::ByteStreamWrite(r) => {
                data_stream::byte_stream_write(self, r).map(Res::ByteStreamWrite)
            }
            Req::TextStreamClose(r) => {
                data_stream::text_stream_close(self, r).map(Res::TextStreamClose)
            }
            Req::ByteStreamClose(r) => {
                data_stream::byte_stream_close(self, r).map(Res::ByteStreamClose)
            }
            Req::TextReadIncremental(r) => data_stream::read_incremental(self, r.reader_handle)
                .map(|()| {
                    Res::TextReadIncremental(proto::TextStreamReaderReadIncrementalResponse {})
                }),
            Req::ByteReadIncremental(r) => data_stream::read_incremental(self, r.reader_handle)
                .map(|()| {
                    Res::ByteReadIncremental(proto::ByteStreamReaderReadIncrementalResponse {})
                }),
            Req::TextReadAll(r) => data_stream::text_read_all(self, r).map(Res::TextReadAll),
            Req::ByteReadAll(r) => data_stream::byte_read_all(self, r).map(Res::ByteReadAll),
            Req::ByteWriteToFile(r) => {
                data_stream::byte_write_to_file(self, r).map(Res::ByteWriteToFile)
            }
        }
    }

    /// Releases every handle and cancels pending work. Rooms leave (bounded by a
    /// couple of seconds when called off the runtime); no event is sent afterwards
    /// unless the client initializes again.
    pub fn dispose(&'static self, asynchronous: bool) -> proto::DisposeResponse {
        if !asynchronous {
            // Waits for a callback under way; none start afterwards (a client may tear
            // its runtime down right after, as Python does at exit).
            self.delivery.close();
        }
        let pending: Vec<_> = self.pending.lock().drain().collect();
        for (_, task) in pending {
            let Some(task) = task else { continue };
            task.abort();
        }
        let handles: Vec<_> = self.handles.lock().drain().collect();
        let rooms: Vec<_> = handles
            .iter()
            .filter_map(|(_, h)| room::room_of(&*h.value))
            .collect();
        drop(handles);
        let leave_all = async move {
            let leaving = rooms.iter().map(|r| r.disconnect());
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                futures_util::future::join_all(leaving),
            )
            .await;
        };
        if asynchronous {
            let async_id = self.next_id();
            self.spawn(async move {
                leave_all.await;
                self.send_event(proto::ffi_event::Message::Dispose(proto::DisposeCallback {
                    async_id,
                }));
            });
            proto::DisposeResponse {
                async_id: Some(async_id),
            }
        } else {
            if tokio::runtime::Handle::try_current().is_err() {
                self.runtime.block_on(leave_all);
            } else {
                self.spawn(leave_all);
            }
            proto::DisposeResponse { async_id: None }
        }
    }
}

/// `len` bytes of the client's memory at `ptr` (none for 0; null refused).
///
/// # Safety
/// The protocol makes the client keep that memory alive and unchanged for the
/// duration of the (synchronous) request that names it.
pub(crate) unsafe fn client_bytes<'a>(ptr: u64, len: usize) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr == 0 {
        return Err(FfiError::Invalid("data_ptr is null".into()));
    }
    Ok(std::slice::from_raw_parts(ptr as *const u8, len))
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn events() -> &'static Mutex<Vec<proto::FfiEvent>> {
        static EVENTS: OnceLock<Mutex<Vec<proto::FfiEvent>>> = OnceLock::new();
        EVENTS.get_or_init(|| {
            FfiServer::global().initialize(
                Arc::new(|bytes: &[u8]| {
                    if let Ok(e) = proto::FfiEvent::decode(bytes) {
                        events().lock().push(e);
                    }
                }),
                false,
            );
            Mutex::new(Vec::new())
        })
    }

    fn wait_for(pred: impl Fn(&proto::FfiEvent) -> bool) -> bool {
        for _ in 0..100 {
            if events().lock().iter().any(&pred) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn an_audio_frame_event_gives_up_its_samples_and_handle() {
        use proto::audio_stream_event::Message as StreamEv;
        let server = FfiServer::global();
        let frame = audio::owned_buffer(server, vec![1, -2, 3, -4, 5, -6], 2, 24_000);
        let id = frame.handle.id;
        let event = proto::FfiEvent {
            message: Some(proto::ffi_event::Message::AudioStreamEvent(
                proto::AudioStreamEvent {
                    stream_handle: 77,
                    message: Some(StreamEv::FrameReceived(proto::AudioFrameReceived { frame })),
                },
            )),
        }
        .encode_to_vec();
        let got = server.take_audio_frame_event(&event).expect("a frame");
        assert_eq!(got.stream_handle, 77);
        assert_eq!(
            (got.sample_rate, got.num_channels, got.samples_per_channel),
            (24_000, 2, 3)
        );
        assert_eq!(got.data, vec![1, -2, 3, -4, 5, -6]);
        assert!(!server.drop_handle(id), "the handle went with the samples");
        assert!(
            server.take_audio_frame_event(&event).is_none(),
            "taken once only"
        );

        let eos = proto::FfiEvent {
            message: Some(proto::ffi_event::Message::AudioStreamEvent(
                proto::AudioStreamEvent {
                    stream_handle: 77,
                    message: Some(StreamEv::Eos(proto::AudioStreamEos {})),
                },
            )),
        };
        assert!(server
            .take_audio_frame_event(&eos.encode_to_vec())
            .is_none());
        assert!(server.take_audio_frame_event(b"").is_none());
        assert!(server.take_audio_frame_event(&[0x22, 0xff]).is_none());
    }

    #[test]
    fn a_panic_in_async_work_becomes_an_error_and_a_panic_event() {
        let _ = events();
        let server = FfiServer::global();
        let (tx, rx) = std::sync::mpsc::channel();
        server.spawn_async(
            424242,
            async { panic!("boom in the core") },
            move |message| {
                let _ = tx.send(message);
            },
        );
        let message = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("on_panic ran");
        assert!(message.contains("boom in the core"));
        assert!(wait_for(|e| matches!(
            &e.message,
            Some(proto::ffi_event::Message::Panic(p)) if p.message.contains("boom")
        )));
        // The server still serves requests afterwards.
        let req = proto::FfiRequest {
            message: Some(proto::ffi_request::Message::Cancel(proto::CancelRequest {
                async_id: 1,
            })),
        };
        assert!(server.handle_request(&req.encode_to_vec()).is_ok());
    }

    #[test]
    fn bad_requests_are_errors_not_crashes() {
        let server = FfiServer::global();
        assert!(matches!(
            server.handle_request(&[0xff, 0xff]),
            Err(FfiError::Decode(_))
        ));
        assert!(matches!(server.handle_request(&[]), Err(FfiError::Empty)));
        let req = proto::FfiRequest {
            message: Some(proto::ffi_request::Message::Disconnect(
                proto::DisconnectRequest {
                    room_handle: 987_654_321,
                    ..Default::default()
                },
            )),
        };
        assert!(matches!(
            server.handle_request(&req.encode_to_vec()),
            Err(FfiError::UnknownHandle(987_654_321))
        ));
        // A request with its required handles missing (FfiRequest field 5,
        // publish_track) names no handle we have and is refused.
        assert!(server.handle_request(&[0x2a, 0x00]).is_err());
        assert!(!server.drop_handle(987_654_321));
        // Invalid UTF-8 in a string field (ConnectRequest.url) is a decode error.
        let connect = [0x0a, 0x02, 0xff, 0xfe, 0x12, 0x00, 0x1a, 0x00];
        let mut req = vec![0x1a, connect.len() as u8];
        req.extend_from_slice(&connect);
        assert!(matches!(
            server.handle_request(&req),
            Err(FfiError::Decode(_))
        ));
    }

    #[test]
    fn cancelled_work_sends_no_callback() {
        let server = FfiServer::global();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        server.spawn_async(
            777,
            async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let _ = tx.send(());
            },
            |_| {},
        );
        let req = proto::FfiRequest {
            message: Some(proto::ffi_request::Message::Cancel(proto::CancelRequest {
                async_id: 777,
            })),
        };
        let res = proto::FfiResponse::decode(
            server
                .handle_request(&req.encode_to_vec())
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert!(
            matches!(res.message, Some(proto::ffi_response::Message::Cancel(c)) if c.cancelled)
        );
        // The task is gone: its channel closed without a value.
        assert!(rx.recv_timeout(Duration::from_secs(2)).is_err());
        // A second cancel finds nothing.
        let res = proto::FfiResponse::decode(
            server
                .handle_request(&req.encode_to_vec())
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert!(
            matches!(res.message, Some(proto::ffi_response::Message::Cancel(c)) if !c.cancelled)
        );
    }
}
