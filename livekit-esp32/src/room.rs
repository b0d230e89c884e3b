//! Rooms behind the handles: the runtime, the registry of live handles, and the
//! delivery of device events to the C callbacks.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use livekit_core::rpc::{ErrorCode, RpcError};
use livekit_device::{Config, ConnectionState, Event};
use livekit_gateway::{DeviceHost, Gateway, GatewayOptions, Transport};
use parking_lot::Mutex;

use crate::types::*;

/// With this set (`host:port`), rooms link to a separate gateway process instead of
/// joining through a gateway of their own in this process.
pub(crate) const GATEWAY_ENV: &str = "LIVEKIT_GATEWAY";

/// How long an in-process gateway keeps a session whose link dropped.
const IN_PROCESS_GRACE: Duration = Duration::from_secs(2);

/// How long `livekit_room_destroy` waits for a session's close to reach the gateway.
const CLOSE_FLUSH: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy)]
pub(crate) struct Callbacks {
    pub options: livekit_room_options_t,
}
// SAFETY: function pointers and the user's ctx, only passed back to C.
unsafe impl Send for Callbacks {}
// SAFETY: as above.
unsafe impl Sync for Callbacks {}

pub(crate) type RpcHandler =
    unsafe extern "C" fn(invocation: *const livekit_rpc_invocation_t, ctx: *mut c_void);

/// A topic's handler as registered (copied: the caller's struct may go).
#[derive(Clone, Copy)]
pub(crate) struct StreamHandler(pub livekit_data_stream_handler_t);
// SAFETY: function pointers and the user's ctx, only passed back to C.
unsafe impl Send for StreamHandler {}
// SAFETY: as above.
unsafe impl Sync for StreamHandler {}

/// What a room keeps beside its device.
#[derive(Default)]
pub(crate) struct Inner {
    pub rpc_methods: HashMap<String, RpcHandler>,
    pub topics: HashMap<String, StreamHandler>,
    /// Incoming streams being delivered: stream id -> topic.
    pub incoming: HashMap<String, String>,
    /// Outgoing streams: handle value -> stream id.
    pub outgoing: HashMap<usize, String>,
    /// Invocations handed to a handler and not answered yet: request id -> the
    /// device's invocation id.
    pub answering: HashMap<String, u64>,
}

/// The part of a room the event callback holds (not the device host: no cycle).
pub(crate) struct Core {
    pub key: usize,
    pub callbacks: Callbacks,
    /// Cleared by `livekit_room_destroy`: no callback starts after that.
    pub alive: AtomicBool,
    /// Held while a callback of this room runs (destroy waits for it).
    pub delivering: Mutex<()>,
    pub inner: Mutex<Inner>,
}

pub(crate) struct Room {
    pub core: Arc<Core>,
    pub host: DeviceHost,
    /// The room's own in-process gateway, if it has one.
    gateway: Option<Gateway>,
    tcp: bool,
}

static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
static ROOMS: LazyLock<Mutex<HashMap<usize, Arc<Room>>>> = LazyLock::new(Default::default);
/// Handle values: never 0, never reused (a stale handle finds nothing).
static NEXT_KEY: AtomicUsize = AtomicUsize::new(0x10);

thread_local! {
    /// Set while this thread runs one of our callbacks.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// The process-wide runtime (two workers), started on first use.
pub(crate) fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("livekit-esp32")
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
}

pub(crate) fn next_key() -> usize {
    NEXT_KEY.fetch_add(0x10, Ordering::Relaxed)
}

/// The live room behind `handle`, if any.
pub(crate) fn lookup(handle: *mut c_void) -> Option<Arc<Room>> {
    ROOMS.lock().get(&(handle as usize)).cloned()
}

/// Creates a room and its device; returns its handle value.
pub(crate) fn create(options: livekit_room_options_t) -> Option<usize> {
    let rt = runtime()?;
    let key = next_key();
    let core = Arc::new(Core {
        key,
        callbacks: Callbacks { options },
        alive: AtomicBool::new(true),
        delivering: Mutex::new(()),
        inner: Mutex::new(Inner::default()),
    });
    let (transport, gateway, tcp) = match std::env::var(GATEWAY_ENV) {
        Ok(addr) if !addr.trim().is_empty() => {
            (Transport::Tcp(addr.trim().to_string()), None, true)
        }
        _ => {
            // Its only link is this room's: a link that drops is a room destroyed
            // (or a runtime stalled for seconds), so the session need not wait long.
            let g = Gateway::new(GatewayOptions {
                session_grace: IN_PROCESS_GRACE,
                ..GatewayOptions::default()
            });
            (Transport::InProcess(g.clone()), Some(g), false)
        }
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32)
        ^ key as u64;
    let config = Config {
        device_id: format!("esp32-capi-{}-{key:x}", std::process::id()),
        ..Config::default()
    };
    let events = core.clone();
    let host = DeviceHost::start(rt.handle(), config, seed, transport, move |e| {
        deliver(&events, e)
    });
    let room = Arc::new(Room {
        core,
        host,
        gateway,
        tcp,
    });
    ROOMS.lock().insert(key, room);
    Some(key)
}

/// Removes the room behind `handle`, leaves its session and stops it; `false` when
/// there is no such room.
pub(crate) fn destroy(handle: *mut c_void) -> bool {
    let Some(room) = ROOMS.lock().remove(&(handle as usize)) else {
        return false;
    };
    let in_callback = IN_CALLBACK.with(Cell::get);
    let had_session = room.host.with(|d, now| {
        let active = matches!(
            d.state(),
            ConnectionState::Connecting
                | ConnectionState::Connected
                | ConnectionState::Reconnecting
        );
        d.close(now);
        active
    });
    // Give the Close frame time to reach the gateway, so the room is left now rather
    // than after the gateway's grace period. Not from a callback: the driver that
    // sends it is the one running the callback.
    if had_session && !in_callback {
        let deadline = Instant::now() + CLOSE_FLUSH;
        match &room.gateway {
            Some(g) => {
                while g.session_count() > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            None if room.tcp => std::thread::sleep(Duration::from_millis(200)),
            None => {}
        }
    }
    room.core.alive.store(false, Ordering::SeqCst);
    if !in_callback {
        // A callback of this room running on another thread finishes first.
        drop(room.core.delivering.lock());
    }
    drop(room); // the last reference stops the device's driver
    true
}

/// Runs a C callback with the thread marked as in a callback.
fn call_out(f: impl FnOnce()) {
    let was = IN_CALLBACK.with(|c| c.replace(true));
    f();
    IN_CALLBACK.with(|c| c.set(was));
}

/// A C string of `s` (cut at a NUL, which C could not see past anyway).
pub(crate) fn c_string(s: &str) -> CString {
    let end = s.find('\0').unwrap_or(s.len());
    CString::new(&s[..end]).unwrap_or_default()
}

fn ptr_or_null(s: &Option<CString>) -> *mut c_char {
    s.as_ref()
        .map_or(std::ptr::null_mut(), |c| c.as_ptr() as *mut c_char)
}

/// Delivers one device event to the room's callbacks (on the runtime).
fn deliver(core: &Arc<Core>, e: Event) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _delivering = core.delivering.lock();
        if !core.alive.load(Ordering::SeqCst) {
            return;
        }
        on_event(core, e);
    }));
}

fn on_event(core: &Arc<Core>, e: Event) {
    let cb = core.callbacks.options;
    match e {
        Event::StateChanged { state, .. } => {
            if matches!(
                state,
                ConnectionState::Disconnected | ConnectionState::Failed
            ) {
                // The session is over: nothing pending can be answered any more.
                let mut inner = core.inner.lock();
                inner.answering.clear();
                inner.incoming.clear();
            }
            if let Some(f) = cb.on_state_changed {
                // SAFETY: the user's callback, called as declared.
                call_out(|| unsafe { f(state.into(), cb.ctx) });
            }
        }
        Event::DataReceived {
            sender,
            topic,
            mut payload,
            ..
        } => {
            let Some(f) = cb.on_data_received else {
                return;
            };
            let topic = topic.as_deref().map(c_string);
            let sender = c_string(&sender);
            let data = livekit_data_received_t {
                payload: livekit_data_payload_t {
                    bytes: payload.as_mut_ptr(),
                    size: payload.len(),
                },
                topic: ptr_or_null(&topic),
                sender_identity: sender.as_ptr() as *mut c_char,
            };
            // SAFETY: `data` and what it points to outlive the call.
            call_out(|| unsafe { f(&data, cb.ctx) });
        }
        Event::RpcInvocation(inv) => {
            let handler = core.inner.lock().rpc_methods.get(&inv.method).copied();
            let Some(handler) = handler else {
                // Unregistered meanwhile: refused as the device refuses unknown methods.
                if let Some(room) = lookup(core.key as *mut c_void) {
                    let refusal = Err(RpcError::new(ErrorCode::UnsupportedMethod));
                    room.host.with(|d, now| d.rpc_respond(now, inv.id, refusal));
                }
                return;
            };
            core.inner
                .lock()
                .answering
                .insert(inv.request_id.clone(), inv.id);
            let id = c_string(&inv.request_id);
            let method = c_string(&inv.method);
            let caller = c_string(&inv.caller);
            let payload = (!inv.payload.is_empty()).then(|| c_string(&inv.payload));
            let invocation = livekit_rpc_invocation_t {
                id: id.as_ptr() as *mut c_char,
                method: method.as_ptr() as *mut c_char,
                caller_identity: caller.as_ptr() as *mut c_char,
                payload: ptr_or_null(&payload),
                send_result: Some(crate::send_result),
                ctx: core.key as *mut c_void,
            };
            // SAFETY: `invocation` and its strings outlive the call.
            call_out(|| unsafe { handler(&invocation, cb.ctx) });
        }
        Event::RpcResult { call, outcome } => {
            let Some(f) = cb.on_rpc_result else {
                return;
            };
            let id = c_string(&call.to_string());
            let (code, message, payload) = match outcome {
                Ok(p) => (0, None, Some(c_string(&p))),
                Err(e) => (
                    i32::try_from(e.code).unwrap_or(i32::MAX),
                    Some(c_string(&e.message)),
                    None,
                ),
            };
            let result = livekit_rpc_result_t {
                id: id.as_ptr() as *mut c_char,
                code,
                error_message: ptr_or_null(&message),
                payload: ptr_or_null(&payload),
            };
            // SAFETY: `result` and its strings outlive the call.
            call_out(|| unsafe { f(&result, cb.ctx) });
        }
        Event::StreamOpened {
            sender,
            header,
            is_text,
        } => {
            let handler = {
                let mut inner = core.inner.lock();
                let h = inner.topics.get(&header.topic).copied();
                if h.is_some() {
                    inner
                        .incoming
                        .insert(header.stream_id.clone(), header.topic.clone());
                }
                h
            };
            let Some(StreamHandler(h)) = handler else {
                return;
            };
            let Some(f) = h.on_open else {
                return;
            };
            let id = c_string(&header.stream_id);
            let topic = c_string(&header.topic);
            let sender = c_string(&sender);
            let c_header = livekit_data_stream_header_t {
                stream_id: id.as_ptr(),
                topic: topic.as_ptr(),
                sender_identity: sender.as_ptr(),
                timestamp: header.timestamp,
                total_length: header.total_length.unwrap_or(0),
                has_total_length: header.total_length.is_some(),
                is_text,
            };
            // SAFETY: `c_header` and its strings outlive the call.
            call_out(|| unsafe { f(&c_header, h.ctx) });
        }
        Event::StreamChunk { id, index, content } => {
            let handler = {
                let inner = core.inner.lock();
                inner
                    .incoming
                    .get(&id)
                    .and_then(|topic| inner.topics.get(topic).copied())
            };
            let Some(StreamHandler(h)) = handler else {
                return;
            };
            let Some(f) = h.on_recv else {
                return;
            };
            let c_id = c_string(&id);
            let chunk = livekit_data_stream_chunk_t {
                stream_id: c_id.as_ptr(),
                chunk_index: index,
                content: content.as_ptr(),
                content_size: content.len(),
            };
            // SAFETY: `chunk` and what it points to outlive the call.
            call_out(|| unsafe { f(&chunk, h.ctx) });
        }
        Event::StreamClosed { id, reason } => {
            let handler = {
                let mut inner = core.inner.lock();
                inner
                    .incoming
                    .remove(&id)
                    .and_then(|topic| inner.topics.get(&topic).copied())
            };
            let Some(StreamHandler(h)) = handler else {
                return;
            };
            let Some(f) = h.on_close else {
                return;
            };
            let c_id = c_string(&id);
            let c_reason = c_string(&reason);
            let trailer = livekit_data_stream_trailer_t {
                stream_id: c_id.as_ptr(),
                reason: c_reason.as_ptr(),
            };
            // SAFETY: `trailer` and its strings outlive the call.
            call_out(|| unsafe { f(&trailer, h.ctx) });
        }
        Event::Joined { .. } | Event::ParticipantLeft { .. } => {}
    }
}
