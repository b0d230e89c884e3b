//! The C types of the API: the SDK's (`livekit.h`, `livekit_types.h`,
//! `livekit_rpc.h`, `livekit_data_stream.h`), field for field, less media; and the
//! few of ours, marked as such.

use std::ffi::{c_char, c_int, c_void};

use livekit_device::{ConnectionState, FailureReason};

/// Maximum size in bytes of a single data stream chunk.
pub const LIVEKIT_DATA_STREAM_CHUNK_SIZE: usize = 15000;

/// Maximum payload size in bytes of an RPC request or response.
pub const LIVEKIT_RPC_MAX_PAYLOAD_BYTES: usize = 15360;

/// Error type returned by all public functions.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum livekit_err_t {
    /// No error.
    LIVEKIT_ERR_NONE = 0,
    /// Invalid argument: a NULL or destroyed handle, a NULL or non-UTF-8 string, a
    /// missing required field.
    LIVEKIT_ERR_INVALID_ARG = -1,
    /// Out of room: too many data streams open at once.
    LIVEKIT_ERR_NO_MEM = -2,
    /// The engine could not take the data (the link is down and its queue is full).
    LIVEKIT_ERR_ENGINE = -3,
    /// Any other error.
    LIVEKIT_ERR_OTHER = -4,
    /// Not possible in the room's current state (e.g. not connected, or a method
    /// already registered).
    LIVEKIT_ERR_INVALID_STATE = -5,
    /// The library's runtime could not be started.
    LIVEKIT_ERR_SYSTEM_INIT = -6,
}

/// Connection state of a room.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum livekit_connection_state_t {
    /// Disconnected.
    LIVEKIT_CONNECTION_STATE_DISCONNECTED = 0,
    /// Establishing connection.
    LIVEKIT_CONNECTION_STATE_CONNECTING = 1,
    /// Connected.
    LIVEKIT_CONNECTION_STATE_CONNECTED = 2,
    /// Reestablishing connection after a failure.
    LIVEKIT_CONNECTION_STATE_RECONNECTING = 3,
    /// Connection failed (not retried: see livekit_room_get_failure_reason).
    LIVEKIT_CONNECTION_STATE_FAILED = 4,
}

/// Reason why room connection failed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum livekit_failure_reason_t {
    /// No failure has occurred.
    LIVEKIT_FAILURE_REASON_NONE,
    /// The server could not be reached (network, wrong URL, TLS, server down).
    LIVEKIT_FAILURE_REASON_UNREACHABLE,
    /// The token is malformed (identity or room missing, empty or too long).
    LIVEKIT_FAILURE_REASON_BAD_TOKEN,
    /// The token does not allow joining (bad signature, expired, missing grants).
    LIVEKIT_FAILURE_REASON_UNAUTHORIZED,
    /// The peer connection(s) could not be established or failed.
    LIVEKIT_FAILURE_REASON_RTC,
    /// Out of retries after the connection was lost.
    LIVEKIT_FAILURE_REASON_MAX_RETRIES,
    /// The server stopped answering pings.
    LIVEKIT_FAILURE_REASON_PING_TIMEOUT,
    /// Another participant joined with the same identity.
    LIVEKIT_FAILURE_REASON_DUPLICATE_IDENTITY,
    /// The server is shutting down.
    LIVEKIT_FAILURE_REASON_SERVER_SHUTDOWN,
    /// The participant was removed through the room service API.
    LIVEKIT_FAILURE_REASON_PARTICIPANT_REMOVED,
    /// The room was deleted through the room service API.
    LIVEKIT_FAILURE_REASON_ROOM_DELETED,
    /// A resume the server did not know about.
    LIVEKIT_FAILURE_REASON_STATE_MISMATCH,
    /// The join could not be completed.
    LIVEKIT_FAILURE_REASON_JOIN_INCOMPLETE,
    /// The server asked the client to move elsewhere (cloud only).
    LIVEKIT_FAILURE_REASON_MIGRATION,
    /// The signal connection closed unexpectedly.
    LIVEKIT_FAILURE_REASON_SIGNAL_CLOSE,
    /// The room was closed (every standard and ingress participant left).
    LIVEKIT_FAILURE_REASON_ROOM_CLOSED,
    /// SIP: the callee did not answer in time.
    LIVEKIT_FAILURE_REASON_SIP_USER_UNAVAILABLE,
    /// SIP: the callee rejected the call.
    LIVEKIT_FAILURE_REASON_SIP_USER_REJECTED,
    /// SIP: protocol failure or unexpected response.
    LIVEKIT_FAILURE_REASON_SIP_TRUNK_FAILURE,
    /// The server timed the session out.
    LIVEKIT_FAILURE_REASON_CONNECTION_TIMEOUT,
    /// Media failure or media timeout.
    LIVEKIT_FAILURE_REASON_MEDIA_FAILURE,
    /// Any other failure.
    LIVEKIT_FAILURE_REASON_OTHER,
}

/// Built-in RPC result codes. Remote applications may answer with codes of their
/// own: a code received is passed on as it came, listed here or not.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum livekit_rpc_result_code_t {
    /// The RPC method returned normally.
    LIVEKIT_RPC_RESULT_OK = 0,
    /// Application error in method handler.
    LIVEKIT_RPC_RESULT_APPLICATION = 1500,
    /// Connection timeout (no acknowledgement from the recipient).
    LIVEKIT_RPC_RESULT_CONNECTION_TIMEOUT = 1501,
    /// Response timeout.
    LIVEKIT_RPC_RESULT_RESPONSE_TIMEOUT = 1502,
    /// Recipient disconnected.
    LIVEKIT_RPC_RESULT_RECIPIENT_DISCONNECTED = 1503,
    /// Response payload too large.
    LIVEKIT_RPC_RESULT_RESPONSE_PAYLOAD_TOO_LARGE = 1504,
    /// Failed to send.
    LIVEKIT_RPC_RESULT_SEND_FAILED = 1505,
    /// Method not supported at destination.
    LIVEKIT_RPC_RESULT_UNSUPPORTED_METHOD = 1400,
    /// Recipient not found.
    LIVEKIT_RPC_RESULT_RECIPIENT_NOT_FOUND = 1401,
    /// Request payload too large.
    LIVEKIT_RPC_RESULT_REQUEST_PAYLOAD_TOO_LARGE = 1402,
    /// RPC not supported by server.
    LIVEKIT_RPC_RESULT_UNSUPPORTED_SERVER = 1403,
    /// Unsupported RPC version.
    LIVEKIT_RPC_RESULT_UNSUPPORTED_VERSION = 1404,
}

/// A connection state as C hands it in (any int: unknown values are answered, not
/// trusted). `livekit_connection_state_t` in the header.
pub type RawConnectionState = c_int;
/// A failure reason as C hands it in. `livekit_failure_reason_t` in the header.
pub type RawFailureReason = c_int;
/// An RPC result code as it travels (any int). `livekit_rpc_result_code_t` in the
/// header.
pub type RawRpcResultCode = c_int;

/// Handle to a room object.
pub type livekit_room_handle_t = *mut c_void;

/// Opaque handle to an open outgoing data stream.
pub type livekit_data_stream_handle_t = *mut c_void;

// ---- data packets --------------------------------------------------------------------

/// Payload containing a pointer to data and its size.
#[repr(C)]
pub struct livekit_data_payload_t {
    /// Pointer to data.
    pub bytes: *mut u8,
    /// Size of the data.
    pub size: usize,
}

/// A data packet received from a remote participant, passed to
/// livekit_room_options_t::on_data_received.
#[repr(C)]
pub struct livekit_data_received_t {
    /// Received data.
    pub payload: livekit_data_payload_t,
    /// Topic the data was sent under, NULL if the sender gave none.
    pub topic: *mut c_char,
    /// Identity of the participant who sent the data.
    pub sender_identity: *mut c_char,
}

/// Options passed to livekit_room_publish_data.
#[repr(C)]
pub struct livekit_data_publish_options_t {
    /// Data to publish and its size. Required.
    pub payload: *mut livekit_data_payload_t,
    /// Topic to send the data packet under (may be NULL).
    pub topic: *mut c_char,
    /// Whether the data packet is sent using the lossy channel.
    pub lossy: bool,
    /// Identities of the participants to send the data packet to; if none are
    /// given, the data packet is sent to all participants.
    pub destination_identities: *mut *mut c_char,
    /// Number of destination identities.
    pub destination_identities_count: c_int,
}

// ---- RPC -----------------------------------------------------------------------------

/// The result of an RPC method invocation: what a handler sends back with
/// livekit_rpc_invocation_t::send_result, and what
/// livekit_room_options_t::on_rpc_result receives for a call made with
/// livekit_room_rpc_invoke.
#[repr(C)]
pub struct livekit_rpc_result_t {
    /// Invocation identifier: livekit_rpc_invocation_t::id when answering; for a
    /// result of livekit_room_rpc_invoke, the identifier it gave back, in decimal.
    pub id: *mut c_char,
    /// LIVEKIT_RPC_RESULT_OK, or the error code.
    pub code: RawRpcResultCode,
    /// Optional description of the error (NULL for an ok result).
    pub error_message: *mut c_char,
    /// The payload returned to the caller (NULL for an error result).
    pub payload: *mut c_char,
}

/// Details about an RPC method invocation, passed to a livekit_rpc_handler_t.
#[repr(C)]
pub struct livekit_rpc_invocation_t {
    /// Invocation identifier (the request id).
    pub id: *mut c_char,
    /// The name of the method being invoked.
    pub method: *mut c_char,
    /// Participant identity of the caller.
    pub caller_identity: *mut c_char,
    /// Caller provided payload: NULL when there is none, otherwise a
    /// NUL-terminated string.
    pub payload: *mut c_char,
    /// Sends the result of the invocation to the caller; true when it went out.
    /// One result per invocation (a second one gives false). It may also be called
    /// after the handler returned, from any thread, with the id and ctx copied from
    /// the invocation, as long as the room exists.
    pub send_result:
        Option<unsafe extern "C" fn(res: *const livekit_rpc_result_t, ctx: *mut c_void) -> bool>,
    /// Context for send_result.
    pub ctx: *mut c_void,
}

/// Handler for an RPC invocation. `ctx` is the room's livekit_room_options_t::ctx.
pub type livekit_rpc_handler_t =
    Option<unsafe extern "C" fn(invocation: *const livekit_rpc_invocation_t, ctx: *mut c_void)>;

/// Options of an outgoing RPC call (ours: the SDK only answers calls).
#[repr(C)]
pub struct livekit_rpc_invoke_options_t {
    /// Identity of the participant to call. Required.
    pub destination_identity: *const c_char,
    /// Name of the method to call. Required.
    pub method: *const c_char,
    /// Payload (may be NULL for none); at most LIVEKIT_RPC_MAX_PAYLOAD_BYTES bytes.
    pub payload: *const c_char,
    /// How long to wait for the answer once the recipient acknowledged the call,
    /// in milliseconds; 0 for the default (15000).
    pub response_timeout_ms: u32,
}

// ---- data streams --------------------------------------------------------------------

/// Header information about a data stream.
#[repr(C)]
pub struct livekit_data_stream_header_t {
    /// The stream's identifier.
    pub stream_id: *const c_char,
    /// Topic the stream was sent under.
    pub topic: *const c_char,
    /// Identity of the participant sending the stream.
    pub sender_identity: *const c_char,
    /// When the stream was opened (Unix milliseconds).
    pub timestamp: i64,
    /// Total size of the stream in bytes, if has_total_length.
    pub total_length: u64,
    /// Whether total_length is known.
    pub has_total_length: bool,
    /// True if this is a text stream (UTF-8 chunks), false if byte stream (raw binary).
    pub is_text: bool,
}

/// A received chunk of data stream content.
#[repr(C)]
pub struct livekit_data_stream_chunk_t {
    /// The stream's identifier.
    pub stream_id: *const c_char,
    /// Index of the chunk in the stream (0, 1, 2, ...).
    pub chunk_index: u64,
    /// The content (for a text stream: whole UTF-8 characters, not NUL-terminated).
    pub content: *const u8,
    /// Size of the content in bytes.
    pub content_size: usize,
}

/// Trailer information when a data stream closes.
#[repr(C)]
pub struct livekit_data_stream_trailer_t {
    /// The stream's identifier.
    pub stream_id: *const c_char,
    /// Empty string for normal closure, non-empty for abnormal end.
    pub reason: *const c_char,
}

/// Called when a new data stream is opened.
pub type livekit_data_stream_open_cb_t =
    Option<unsafe extern "C" fn(header: *const livekit_data_stream_header_t, ctx: *mut c_void)>;

/// Called for each received chunk of a data stream.
pub type livekit_data_stream_recv_cb_t =
    Option<unsafe extern "C" fn(chunk: *const livekit_data_stream_chunk_t, ctx: *mut c_void)>;

/// Called when a data stream is closed.
pub type livekit_data_stream_close_cb_t =
    Option<unsafe extern "C" fn(trailer: *const livekit_data_stream_trailer_t, ctx: *mut c_void)>;

/// Options for opening an outgoing data stream.
#[repr(C)]
pub struct livekit_data_stream_options_t {
    /// Topic to publish the stream under. Required.
    pub topic: *const c_char,
    /// True for a text stream (UTF-8 chunks), false for a byte stream (raw binary).
    pub is_text: bool,
    /// Total size of the stream in bytes, if known upfront.
    pub total_length: u64,
    /// Whether total_length is set.
    pub has_total_length: bool,
    /// Ours: identities of the participants to send the stream to; NULL (or a count
    /// of 0) sends it to everyone.
    pub destination_identities: *const *const c_char,
    /// Ours: number of destination identities.
    pub destination_identities_count: usize,
}

/// Handler for incoming data streams on a topic.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct livekit_data_stream_handler_t {
    /// Callback invoked for each received chunk. Required.
    pub on_recv: livekit_data_stream_recv_cb_t,
    /// Callback invoked when a new stream is opened. Optional, can be NULL.
    pub on_open: livekit_data_stream_open_cb_t,
    /// Callback invoked when a stream is closed. Optional, can be NULL.
    pub on_close: livekit_data_stream_close_cb_t,
    /// User context passed to all callbacks.
    pub ctx: *mut c_void,
}

// ---- rooms ---------------------------------------------------------------------------

/// Options for creating a room, passed to livekit_room_create. The SDK's media
/// options (publish, subscribe) and info handlers (on_room_info,
/// on_participant_info) are not part of this build.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct livekit_room_options_t {
    /// Handler for when the room's connection state changes.
    pub on_state_changed:
        Option<unsafe extern "C" fn(state: livekit_connection_state_t, ctx: *mut c_void)>,
    /// Handler for when an RPC method invoked with livekit_room_rpc_invoke returns a
    /// result.
    pub on_rpc_result:
        Option<unsafe extern "C" fn(result: *const livekit_rpc_result_t, ctx: *mut c_void)>,
    /// Handler for data packets received from remote participants.
    pub on_data_received:
        Option<unsafe extern "C" fn(data: *const livekit_data_received_t, ctx: *mut c_void)>,
    /// User context passed to all handlers (and to RPC method handlers).
    pub ctx: *mut c_void,
}

// ---- conversions ---------------------------------------------------------------------

/// Every failure reason, at the index of its value.
pub(crate) const FAILURE_REASONS: [livekit_failure_reason_t; 22] = {
    use livekit_failure_reason_t::*;
    [
        LIVEKIT_FAILURE_REASON_NONE,
        LIVEKIT_FAILURE_REASON_UNREACHABLE,
        LIVEKIT_FAILURE_REASON_BAD_TOKEN,
        LIVEKIT_FAILURE_REASON_UNAUTHORIZED,
        LIVEKIT_FAILURE_REASON_RTC,
        LIVEKIT_FAILURE_REASON_MAX_RETRIES,
        LIVEKIT_FAILURE_REASON_PING_TIMEOUT,
        LIVEKIT_FAILURE_REASON_DUPLICATE_IDENTITY,
        LIVEKIT_FAILURE_REASON_SERVER_SHUTDOWN,
        LIVEKIT_FAILURE_REASON_PARTICIPANT_REMOVED,
        LIVEKIT_FAILURE_REASON_ROOM_DELETED,
        LIVEKIT_FAILURE_REASON_STATE_MISMATCH,
        LIVEKIT_FAILURE_REASON_JOIN_INCOMPLETE,
        LIVEKIT_FAILURE_REASON_MIGRATION,
        LIVEKIT_FAILURE_REASON_SIGNAL_CLOSE,
        LIVEKIT_FAILURE_REASON_ROOM_CLOSED,
        LIVEKIT_FAILURE_REASON_SIP_USER_UNAVAILABLE,
        LIVEKIT_FAILURE_REASON_SIP_USER_REJECTED,
        LIVEKIT_FAILURE_REASON_SIP_TRUNK_FAILURE,
        LIVEKIT_FAILURE_REASON_CONNECTION_TIMEOUT,
        LIVEKIT_FAILURE_REASON_MEDIA_FAILURE,
        LIVEKIT_FAILURE_REASON_OTHER,
    ]
};

impl From<ConnectionState> for livekit_connection_state_t {
    fn from(s: ConnectionState) -> Self {
        use livekit_connection_state_t::*;
        match s {
            ConnectionState::Disconnected => LIVEKIT_CONNECTION_STATE_DISCONNECTED,
            ConnectionState::Connecting => LIVEKIT_CONNECTION_STATE_CONNECTING,
            ConnectionState::Connected => LIVEKIT_CONNECTION_STATE_CONNECTED,
            ConnectionState::Reconnecting => LIVEKIT_CONNECTION_STATE_RECONNECTING,
            ConnectionState::Failed => LIVEKIT_CONNECTION_STATE_FAILED,
        }
    }
}

impl From<FailureReason> for livekit_failure_reason_t {
    fn from(r: FailureReason) -> Self {
        // The core's reasons carry the SDK's values (checked by the tests).
        FAILURE_REASONS
            .get(r as usize)
            .copied()
            .unwrap_or(livekit_failure_reason_t::LIVEKIT_FAILURE_REASON_OTHER)
    }
}

/// The SDK's text for a connection state.
pub(crate) fn connection_state_text(state: RawConnectionState) -> &'static std::ffi::CStr {
    match state {
        0 => c"Disconnected",
        1 => c"Connecting",
        2 => c"Connected",
        3 => c"Reconnecting",
        4 => c"Failed",
        _ => c"Unknown",
    }
}

/// The SDK's text for a failure reason.
pub(crate) fn failure_reason_text(reason: RawFailureReason) -> &'static std::ffi::CStr {
    match reason {
        0 => c"None",
        1 => c"Unreachable",
        2 => c"Bad Token",
        3 => c"Unauthorized",
        4 => c"RTC",
        5 => c"Max Retries",
        6 => c"Ping Timeout",
        7 => c"Duplicate Identity",
        8 => c"Server Shutdown",
        9 => c"Participant Removed",
        10 => c"Room Deleted",
        11 => c"State Mismatch",
        12 => c"Join Incomplete",
        13 => c"Migration",
        14 => c"Signal Close",
        15 => c"Room Closed",
        16 => c"SIP User Unavailable",
        17 => c"SIP User Rejected",
        18 => c"SIP Trunk Failure",
        19 => c"Connection Timeout",
        20 => c"Media Failure",
        _ => c"Other",
    }
}
