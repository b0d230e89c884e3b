//! livekit-esp32: the C API of LiveKit's ESP32 SDK (`client-sdk-esp32`), built for a
//! host as a static library with a generated header (`livekit.h`).
//!
//! Each room handle is a [`livekit_device::Device`] (the firmware's own logic:
//! connection state and failure reasons, retries, RPC, data streams) run by a
//! [`livekit_gateway::DeviceHost`] on a process-wide tokio runtime of two workers. Its
//! link goes to a gateway of its own in this process, which joins the real room with
//! our host core; with `LIVEKIT_GATEWAY=host:port` in the environment it goes to a
//! separate `livekit-gateway` process instead, as a board's would.
//!
//! Every entry point checks its arguments (NULL, strings that are not UTF-8, handles
//! that are not live: a registry holds the live ones, nothing is dereferenced on
//! trust), and no panic crosses into C: each one is caught and answered with an
//! error. Callbacks run on the runtime's threads.
#![allow(non_camel_case_types, clippy::enum_variant_names)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::AssertUnwindSafe;

use livekit_core::rpc::{ErrorCode, RpcError};
use livekit_core::stream::StreamError;
use livekit_device::{DataKind, DeviceError, StreamOptions};

mod room;
mod types;

pub use types::*;

use livekit_err_t::*;
use room::{Room, StreamHandler};

/// Runs an entry point; a panic becomes `fallback`.
fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// A required C string argument: present and UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
unsafe fn arg_str<'a>(p: *const c_char) -> Result<&'a str, livekit_err_t> {
    if p.is_null() {
        return Err(LIVEKIT_ERR_INVALID_ARG);
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| LIVEKIT_ERR_INVALID_ARG)
}

/// An optional C string argument: NULL reads as empty.
///
/// # Safety
/// As [`arg_str`].
unsafe fn opt_str<'a>(p: *const c_char) -> Result<&'a str, livekit_err_t> {
    if p.is_null() {
        Ok("")
    } else {
        arg_str(p)
    }
}

/// A list of identities from C.
///
/// # Safety
/// `list` is NULL or points to `count` string pointers, as [`arg_str`].
unsafe fn identities(
    list: *const *const c_char,
    count: usize,
) -> Result<Vec<String>, livekit_err_t> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if list.is_null() {
        return Err(LIVEKIT_ERR_INVALID_ARG);
    }
    std::slice::from_raw_parts(list, count)
        .iter()
        .map(|&p| arg_str(p).map(str::to_string))
        .collect()
}

fn room_of(handle: livekit_room_handle_t) -> Result<std::sync::Arc<Room>, livekit_err_t> {
    room::lookup(handle).ok_or(LIVEKIT_ERR_INVALID_ARG)
}

fn code(r: Result<(), livekit_err_t>) -> livekit_err_t {
    r.err().unwrap_or(LIVEKIT_ERR_NONE)
}

/// The SDK's error for what the device refused.
fn device_err(e: DeviceError) -> livekit_err_t {
    match e {
        DeviceError::AlreadyConnected | DeviceError::NotConnected => LIVEKIT_ERR_INVALID_STATE,
        DeviceError::InvalidArgument(_) | DeviceError::TooLarge => LIVEKIT_ERR_INVALID_ARG,
        DeviceError::QueueFull => LIVEKIT_ERR_ENGINE,
        DeviceError::Stream(StreamError::TooManyStreams { .. }) => LIVEKIT_ERR_NO_MEM,
        DeviceError::Stream(StreamError::InvalidUtf8 { .. }) => LIVEKIT_ERR_INVALID_ARG,
        DeviceError::Stream(_) => LIVEKIT_ERR_OTHER,
        DeviceError::Rpc(e) if e.code == ErrorCode::RequestPayloadTooLarge as u32 => {
            LIVEKIT_ERR_INVALID_ARG
        }
        DeviceError::Rpc(_) => LIVEKIT_ERR_OTHER,
    }
}

// ---- system --------------------------------------------------------------------------

/// Performs one-time system initialization: starts the library's runtime. Optional
/// here (livekit_room_create starts it when needed), harmless to repeat.
///
/// Returns LIVEKIT_ERR_NONE, or LIVEKIT_ERR_SYSTEM_INIT when the runtime cannot start.
#[no_mangle]
pub extern "C" fn livekit_system_init() -> livekit_err_t {
    guard(LIVEKIT_ERR_SYSTEM_INIT, || match room::runtime() {
        Some(_) => LIVEKIT_ERR_NONE,
        None => LIVEKIT_ERR_SYSTEM_INIT,
    })
}

// ---- lifecycle -----------------------------------------------------------------------

/// Creates a room.
///
/// handle[out]: the new room's handle. options[in]: callbacks and their ctx (copied).
/// Returns LIVEKIT_ERR_NONE if successful, otherwise an error code.
///
/// # Safety
/// `handle` is NULL or writable; `options` is NULL or points to a valid
/// livekit_room_options_t.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_create(
    handle: *mut livekit_room_handle_t,
    options: *const livekit_room_options_t,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        if handle.is_null() || options.is_null() {
            return LIVEKIT_ERR_INVALID_ARG;
        }
        match room::create(*options) {
            Some(key) => {
                *handle = key as livekit_room_handle_t;
                LIVEKIT_ERR_NONE
            }
            None => LIVEKIT_ERR_SYSTEM_INIT,
        }
    })
}

/// Destroys a room: leaves its room if connected (as livekit_room_close), stops it
/// and frees the handle, which is invalid afterwards (functions given it return
/// LIVEKIT_ERR_INVALID_ARG). No callback of the room starts after this returns, and
/// one running on another thread has finished (called from a callback, it returns
/// at once).
///
/// Returns LIVEKIT_ERR_NONE if successful, otherwise an error code.
#[no_mangle]
pub extern "C" fn livekit_room_destroy(handle: livekit_room_handle_t) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        if room::destroy(handle) {
            LIVEKIT_ERR_NONE
        } else {
            LIVEKIT_ERR_INVALID_ARG
        }
    })
}

// ---- connection ----------------------------------------------------------------------

/// Connects to a room asynchronously: progress comes to
/// livekit_room_options_t::on_state_changed.
///
/// server_url[in]: URL of the LiveKit server beginning with "wss://" or "ws://".
/// token[in]: server-generated token for authentication.
/// Returns LIVEKIT_ERR_NONE, otherwise an error code (LIVEKIT_ERR_INVALID_STATE while
/// a session is under way).
///
/// # Safety
/// `server_url` and `token` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_connect(
    handle: livekit_room_handle_t,
    server_url: *const c_char,
    token: *const c_char,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let url = arg_str(server_url)?;
            let token = arg_str(token)?;
            room.host
                .with(|d, now| d.connect(now, url, token))
                .map_err(device_err)
        })())
    })
}

/// Disconnects from a room asynchronously. Calls in flight end with
/// LIVEKIT_RPC_RESULT_RECIPIENT_DISCONNECTED; streams end.
///
/// Returns LIVEKIT_ERR_NONE if successful, otherwise an error code.
#[no_mangle]
pub extern "C" fn livekit_room_close(handle: livekit_room_handle_t) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            room.host.with(|d, now| d.close(now));
            Ok(())
        })())
    })
}

/// Gets the current connection state of a room (DISCONNECTED for a handle that is
/// not live).
#[no_mangle]
pub extern "C" fn livekit_room_get_state(
    handle: livekit_room_handle_t,
) -> livekit_connection_state_t {
    guard(
        livekit_connection_state_t::LIVEKIT_CONNECTION_STATE_DISCONNECTED,
        || match room::lookup(handle) {
            Some(room) => room.host.with(|d, _| d.state()).into(),
            None => livekit_connection_state_t::LIVEKIT_CONNECTION_STATE_DISCONNECTED,
        },
    )
}

/// Gets a string representation of a connection state ("Unknown" for a value that
/// is not one). The string is static.
#[no_mangle]
pub extern "C" fn livekit_connection_state_str(state: RawConnectionState) -> *const c_char {
    types::connection_state_text(state).as_ptr()
}

/// Gets the reason why the room connection failed or ended, after its state changed
/// to LIVEKIT_CONNECTION_STATE_FAILED, LIVEKIT_CONNECTION_STATE_RECONNECTING or
/// LIVEKIT_CONNECTION_STATE_DISCONNECTED (e.g. removed from the room); NONE for a
/// handle that is not live.
#[no_mangle]
pub extern "C" fn livekit_room_get_failure_reason(
    handle: livekit_room_handle_t,
) -> livekit_failure_reason_t {
    guard(
        livekit_failure_reason_t::LIVEKIT_FAILURE_REASON_NONE,
        || match room::lookup(handle) {
            Some(room) => room.host.with(|d, _| d.failure_reason()).into(),
            None => livekit_failure_reason_t::LIVEKIT_FAILURE_REASON_NONE,
        },
    )
}

/// Gets a string representation for a failure reason ("Other" for a value that is
/// not one). The string is static.
#[no_mangle]
pub extern "C" fn livekit_failure_reason_str(reason: RawFailureReason) -> *const c_char {
    types::failure_reason_text(reason).as_ptr()
}

// ---- data packets --------------------------------------------------------------------

/// Publishes a data packet to participants in a room asynchronously. Reliable
/// packets sent while the connection is being reestablished are kept and sent when
/// it is back (up to a bound: then LIVEKIT_ERR_ENGINE); lossy ones are dropped.
///
/// Returns LIVEKIT_ERR_NONE if successful, otherwise an error code
/// (LIVEKIT_ERR_INVALID_STATE when not connected).
///
/// # Safety
/// `options` is NULL or points to valid options whose pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_publish_data(
    handle: livekit_room_handle_t,
    options: *mut livekit_data_publish_options_t,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let o = options.as_ref().ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            let p = o.payload.as_ref().ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            let payload: &[u8] = match (p.bytes.is_null(), p.size) {
                (_, 0) => &[],
                (true, _) => return Err(LIVEKIT_ERR_INVALID_ARG),
                (false, n) => std::slice::from_raw_parts(p.bytes, n),
            };
            let topic = if o.topic.is_null() {
                None
            } else {
                Some(arg_str(o.topic)?)
            };
            let count = usize::try_from(o.destination_identities_count)
                .map_err(|_| LIVEKIT_ERR_INVALID_ARG)?;
            let to = identities(o.destination_identities as *const *const c_char, count)?;
            let kind = if o.lossy {
                DataKind::Lossy
            } else {
                DataKind::Reliable
            };
            room.host
                .with(|d, now| d.publish_data(now, payload, topic, &to, kind))
                .map_err(device_err)
        })())
    })
}

// ---- RPC -----------------------------------------------------------------------------

/// Registers a handler for an RPC method; once registered, remote participants can
/// invoke it. Calls of methods nobody registered are answered
/// LIVEKIT_RPC_RESULT_UNSUPPORTED_METHOD. The handler gets the room's
/// livekit_room_options_t::ctx as its ctx.
///
/// Returns LIVEKIT_ERR_NONE if successful, LIVEKIT_ERR_INVALID_STATE if the method
/// already has a handler, otherwise an error code.
///
/// # Safety
/// `method` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_rpc_register(
    handle: livekit_room_handle_t,
    method: *const c_char,
    handler: livekit_rpc_handler_t,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let method = arg_str(method)?;
            let handler = handler.ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            {
                let mut inner = room.core.inner.lock();
                if inner.rpc_methods.contains_key(method) {
                    return Err(LIVEKIT_ERR_INVALID_STATE);
                }
                inner.rpc_methods.insert(method.to_string(), handler);
            }
            room.host.with(|d, _| d.register_rpc_method(method));
            Ok(())
        })())
    })
}

/// Unregisters a handler for an RPC method.
///
/// Returns LIVEKIT_ERR_NONE if successful, LIVEKIT_ERR_INVALID_STATE if the method
/// has no handler, otherwise an error code.
///
/// # Safety
/// `method` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_rpc_unregister(
    handle: livekit_room_handle_t,
    method: *const c_char,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let method = arg_str(method)?;
            if room.core.inner.lock().rpc_methods.remove(method).is_none() {
                return Err(LIVEKIT_ERR_INVALID_STATE);
            }
            room.host.with(|d, _| d.unregister_rpc_method(method));
            Ok(())
        })())
    })
}

/// Invokes an RPC method of another participant (ours: the SDK itself cannot make
/// calls). The call's outcome comes to livekit_room_options_t::on_rpc_result, whose
/// result id is `*invocation_id` in decimal: LIVEKIT_RPC_RESULT_OK with the payload,
/// or an error code with a message (CONNECTION_TIMEOUT when the recipient does not
/// acknowledge within 7 s, also for an identity that is not in the room;
/// RESPONSE_TIMEOUT; RECIPIENT_DISCONNECTED when it leaves, or we do; or the
/// recipient's own code).
///
/// invocation_id[out]: may be NULL.
/// Returns LIVEKIT_ERR_NONE if the call was sent, LIVEKIT_ERR_INVALID_ARG for a
/// missing field or a payload over LIVEKIT_RPC_MAX_PAYLOAD_BYTES,
/// LIVEKIT_ERR_INVALID_STATE when not connected, otherwise an error code.
///
/// # Safety
/// `options` is NULL or points to valid options; `invocation_id` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_rpc_invoke(
    handle: livekit_room_handle_t,
    options: *const livekit_rpc_invoke_options_t,
    invocation_id: *mut u64,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let o = options.as_ref().ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            let destination = arg_str(o.destination_identity)?;
            let method = arg_str(o.method)?;
            let payload = opt_str(o.payload)?;
            if destination.is_empty() || method.is_empty() {
                return Err(LIVEKIT_ERR_INVALID_ARG);
            }
            if payload.len() > LIVEKIT_RPC_MAX_PAYLOAD_BYTES {
                return Err(LIVEKIT_ERR_INVALID_ARG);
            }
            let timeout = match o.response_timeout_ms {
                0 => livekit_core::rpc::DEFAULT_RESPONSE_TIMEOUT_MS,
                t => u64::from(t),
            };
            let call = room
                .host
                .with(|d, now| d.perform_rpc(now, destination, method, payload, timeout))
                .map_err(device_err)?;
            if let Some(out) = invocation_id.as_mut() {
                *out = call;
            }
            Ok(())
        })())
    })
}

/// livekit_rpc_invocation_t::send_result: answers the invocation `res.id` of the
/// room `ctx` (a room handle value, checked against the live ones).
pub(crate) unsafe extern "C" fn send_result(
    res: *const livekit_rpc_result_t,
    ctx: *mut c_void,
) -> bool {
    guard(false, || {
        let Some(res) = res.as_ref() else {
            return false;
        };
        let Some(room) = room::lookup(ctx) else {
            return false;
        };
        let Ok(id) = arg_str(res.id) else {
            return false;
        };
        let answer = if res.code == livekit_rpc_result_code_t::LIVEKIT_RPC_RESULT_OK as c_int {
            match opt_str(res.payload) {
                Ok(p) => Ok(p.to_string()),
                Err(_) => return false, // not UTF-8: the handler may answer again
            }
        } else {
            let code = u32::try_from(res.code).unwrap_or(ErrorCode::ApplicationError as u32);
            let given = opt_str(res.error_message).unwrap_or("");
            let message = if given.is_empty() {
                standard_message(code).to_string()
            } else {
                given.to_string()
            };
            Err(RpcError {
                code,
                message,
                data: String::new(),
            })
        };
        let too_large = matches!(&answer, Ok(p) if p.len() > LIVEKIT_RPC_MAX_PAYLOAD_BYTES);
        let Some(invocation) = room.core.inner.lock().answering.remove(id) else {
            return false;
        };
        // A payload too large goes to the caller as RESPONSE_PAYLOAD_TOO_LARGE.
        let sent = room
            .host
            .with(|d, now| d.rpc_respond(now, invocation, answer));
        sent && !too_large
    })
}

/// The message the SDKs send with a built-in code ("" for others).
fn standard_message(code: u32) -> &'static str {
    use ErrorCode::*;
    [
        ApplicationError,
        ConnectionTimeout,
        ResponseTimeout,
        RecipientDisconnected,
        ResponsePayloadTooLarge,
        SendFailed,
        UnsupportedMethod,
        RecipientNotFound,
        RequestPayloadTooLarge,
        UnsupportedServer,
        UnsupportedVersion,
    ]
    .into_iter()
    .find(|c| *c as u32 == code)
    .map_or("", ErrorCode::message)
}

// ---- data streams --------------------------------------------------------------------

/// Registers a handler for incoming data streams on a given topic. Streams on topics
/// without a handler are ignored.
///
/// handler[in]: on_recv is required; on_open and on_close are optional and may be
/// NULL. The struct is copied internally.
/// Returns LIVEKIT_ERR_NONE if successful, LIVEKIT_ERR_INVALID_STATE if the topic
/// already has a handler, otherwise an error code.
///
/// # Safety
/// `topic` is NULL or a NUL-terminated string; `handler` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_data_stream_topic_register(
    handle: livekit_room_handle_t,
    topic: *const c_char,
    handler: *const livekit_data_stream_handler_t,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let topic = arg_str(topic)?;
            let handler = *handler.as_ref().ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            if handler.on_recv.is_none() || topic.is_empty() {
                return Err(LIVEKIT_ERR_INVALID_ARG);
            }
            {
                let mut inner = room.core.inner.lock();
                if inner.topics.contains_key(topic) {
                    return Err(LIVEKIT_ERR_INVALID_STATE);
                }
                inner
                    .topics
                    .insert(topic.to_string(), StreamHandler(handler));
            }
            room.host.with(|d, _| d.register_stream_topic(topic));
            Ok(())
        })())
    })
}

/// Unregisters a handler for incoming data streams on a given topic; streams of it
/// under way are no longer delivered.
///
/// Returns LIVEKIT_ERR_NONE if successful, LIVEKIT_ERR_OTHER if the topic has no
/// handler, otherwise an error code.
///
/// # Safety
/// `topic` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_data_stream_topic_unregister(
    handle: livekit_room_handle_t,
    topic: *const c_char,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let topic = arg_str(topic)?;
            if room.core.inner.lock().topics.remove(topic).is_none() {
                return Err(LIVEKIT_ERR_OTHER);
            }
            room.host.with(|d, _| d.unregister_stream_topic(topic));
            Ok(())
        })())
    })
}

/// Opens an outgoing data stream: sends the stream header and gives back a stream
/// handle for writing. At most 4 streams are open at once (then LIVEKIT_ERR_NO_MEM).
///
/// options[in]: topic (required), type, optional total length, and (ours) optional
/// destination identities.
/// stream[out]: the stream's handle, for livekit_room_data_stream_write and _close.
/// Returns LIVEKIT_ERR_NONE if successful, otherwise an error code
/// (LIVEKIT_ERR_INVALID_STATE when not connected).
///
/// # Safety
/// `options` is NULL or valid (its pointers NULL or valid); `stream` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_data_stream_open(
    handle: livekit_room_handle_t,
    options: *const livekit_data_stream_options_t,
    stream: *mut livekit_data_stream_handle_t,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let o = options.as_ref().ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            if stream.is_null() {
                return Err(LIVEKIT_ERR_INVALID_ARG);
            }
            let topic = arg_str(o.topic)?;
            if topic.is_empty() {
                return Err(LIVEKIT_ERR_INVALID_ARG);
            }
            let options = StreamOptions {
                topic: topic.to_string(),
                is_text: o.is_text,
                total_length: o.has_total_length.then_some(o.total_length),
                destinations: identities(o.destination_identities, o.destination_identities_count)?,
                ..Default::default()
            };
            let id = room
                .host
                .with(|d, now| d.stream_open(now, &options))
                .map_err(device_err)?;
            let key = room::next_key();
            room.core.inner.lock().outgoing.insert(key, id);
            *stream = key as livekit_data_stream_handle_t;
            Ok(())
        })())
    })
}

/// Writes data to an open outgoing data stream, in chunks of at most
/// LIVEKIT_DATA_STREAM_CHUNK_SIZE bytes. Can be called multiple times. For a text
/// stream each write must be whole UTF-8 text (LIVEKIT_ERR_INVALID_ARG otherwise).
///
/// Returns LIVEKIT_ERR_NONE if successful, otherwise an error code.
///
/// # Safety
/// `data` is NULL or points to `size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn livekit_room_data_stream_write(
    handle: livekit_room_handle_t,
    stream: livekit_data_stream_handle_t,
    data: *const u8,
    size: usize,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let id = room
                .core
                .inner
                .lock()
                .outgoing
                .get(&(stream as usize))
                .cloned()
                .ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            let bytes: &[u8] = match (data.is_null(), size) {
                (_, 0) => &[],
                (true, _) => return Err(LIVEKIT_ERR_INVALID_ARG),
                (false, n) => std::slice::from_raw_parts(data, n),
            };
            room.host
                .with(|d, now| d.stream_write(now, &id, bytes))
                .map_err(device_err)
        })())
    })
}

/// Closes an open outgoing data stream: sends the stream trailer and releases the
/// stream and its handle.
///
/// Returns LIVEKIT_ERR_NONE if successful, otherwise an error code.
#[no_mangle]
pub extern "C" fn livekit_room_data_stream_close(
    handle: livekit_room_handle_t,
    stream: livekit_data_stream_handle_t,
) -> livekit_err_t {
    guard(LIVEKIT_ERR_OTHER, || {
        code((|| {
            let room = room_of(handle)?;
            let id = room
                .core
                .inner
                .lock()
                .outgoing
                .remove(&(stream as usize))
                .ok_or(LIVEKIT_ERR_INVALID_ARG)?;
            room.host
                .with(|d, now| d.stream_close(now, &id, ""))
                .map_err(device_err)
        })())
    })
}

#[cfg(test)]
mod tests;
