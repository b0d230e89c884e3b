//! The C API without a server: texts and values of the enums, argument checks,
//! NULL and destroyed handles, and one connection that fails (nothing listens).

use std::ffi::{c_void, CStr};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use livekit_core::rpc::ErrorCode;
use livekit_device::{ConnectionState, FailureReason};
use parking_lot::Mutex;

use super::*;
use livekit_connection_state_t::*;
use livekit_failure_reason_t::*;

fn text(p: *const c_char) -> &'static str {
    // SAFETY: the *_str functions give static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap()
}

fn no_callbacks() -> livekit_room_options_t {
    livekit_room_options_t {
        on_state_changed: None,
        on_rpc_result: None,
        on_data_received: None,
        ctx: null_mut(),
    }
}

fn new_room(options: &livekit_room_options_t) -> livekit_room_handle_t {
    let mut handle: livekit_room_handle_t = null_mut();
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { livekit_room_create(&mut handle, options) },
        LIVEKIT_ERR_NONE
    );
    assert!(!handle.is_null());
    handle
}

#[test]
fn state_texts_are_the_sdks() {
    let expected = [
        "Disconnected",
        "Connecting",
        "Connected",
        "Reconnecting",
        "Failed",
    ];
    for (value, name) in expected.iter().enumerate() {
        assert_eq!(text(livekit_connection_state_str(value as c_int)), *name);
    }
    for odd in [-1, 5, 1000, c_int::MIN, c_int::MAX] {
        assert_eq!(text(livekit_connection_state_str(odd)), "Unknown");
    }
}

#[test]
fn failure_texts_are_the_sdks() {
    let expected = [
        "None",
        "Unreachable",
        "Bad Token",
        "Unauthorized",
        "RTC",
        "Max Retries",
        "Ping Timeout",
        "Duplicate Identity",
        "Server Shutdown",
        "Participant Removed",
        "Room Deleted",
        "State Mismatch",
        "Join Incomplete",
        "Migration",
        "Signal Close",
        "Room Closed",
        "SIP User Unavailable",
        "SIP User Rejected",
        "SIP Trunk Failure",
        "Connection Timeout",
        "Media Failure",
        "Other",
    ];
    for (value, name) in expected.iter().enumerate() {
        assert_eq!(text(livekit_failure_reason_str(value as c_int)), *name);
    }
    for odd in [-1, 22, 99, c_int::MIN, c_int::MAX] {
        assert_eq!(text(livekit_failure_reason_str(odd)), "Other");
    }
}

#[test]
fn enum_values_are_the_cores_and_the_sdks() {
    // Failure reasons: the C enum counts from 0 in the SDK's order, which is the
    // core's, name for name.
    for (i, reason) in FAILURE_REASONS.iter().enumerate() {
        assert_eq!(*reason as c_int, i as c_int);
        let core = FailureReason::from_u8(i as u8).expect("the core has every reason");
        assert_eq!(livekit_failure_reason_t::from(core), *reason);
        let c_name = format!("{reason:?}");
        assert_eq!(c_name, format!("LIVEKIT_FAILURE_REASON_{}", core.as_str()));
    }
    assert_eq!(FailureReason::from_u8(FAILURE_REASONS.len() as u8), None);

    for v in 0..5u8 {
        let core = ConnectionState::from_u8(v).unwrap();
        let c = livekit_connection_state_t::from(core);
        assert_eq!(c as c_int, c_int::from(v));
        assert_eq!(
            format!("{c:?}"),
            format!("LIVEKIT_CONNECTION_STATE_{}", core.as_str())
        );
    }
    assert_eq!(LIVEKIT_CONNECTION_STATE_CONNECTED as c_int, 2);

    use livekit_err_t::*;
    let errors = [
        (LIVEKIT_ERR_NONE, 0),
        (LIVEKIT_ERR_INVALID_ARG, -1),
        (LIVEKIT_ERR_NO_MEM, -2),
        (LIVEKIT_ERR_ENGINE, -3),
        (LIVEKIT_ERR_OTHER, -4),
        (LIVEKIT_ERR_INVALID_STATE, -5),
        (LIVEKIT_ERR_SYSTEM_INIT, -6),
    ];
    for (e, v) in errors {
        assert_eq!(e as c_int, v);
    }

    use livekit_rpc_result_code_t::*;
    let codes = [
        (LIVEKIT_RPC_RESULT_APPLICATION, ErrorCode::ApplicationError),
        (
            LIVEKIT_RPC_RESULT_CONNECTION_TIMEOUT,
            ErrorCode::ConnectionTimeout,
        ),
        (
            LIVEKIT_RPC_RESULT_RESPONSE_TIMEOUT,
            ErrorCode::ResponseTimeout,
        ),
        (
            LIVEKIT_RPC_RESULT_RECIPIENT_DISCONNECTED,
            ErrorCode::RecipientDisconnected,
        ),
        (
            LIVEKIT_RPC_RESULT_RESPONSE_PAYLOAD_TOO_LARGE,
            ErrorCode::ResponsePayloadTooLarge,
        ),
        (LIVEKIT_RPC_RESULT_SEND_FAILED, ErrorCode::SendFailed),
        (
            LIVEKIT_RPC_RESULT_UNSUPPORTED_METHOD,
            ErrorCode::UnsupportedMethod,
        ),
        (
            LIVEKIT_RPC_RESULT_RECIPIENT_NOT_FOUND,
            ErrorCode::RecipientNotFound,
        ),
        (
            LIVEKIT_RPC_RESULT_REQUEST_PAYLOAD_TOO_LARGE,
            ErrorCode::RequestPayloadTooLarge,
        ),
        (
            LIVEKIT_RPC_RESULT_UNSUPPORTED_SERVER,
            ErrorCode::UnsupportedServer,
        ),
        (
            LIVEKIT_RPC_RESULT_UNSUPPORTED_VERSION,
            ErrorCode::UnsupportedVersion,
        ),
    ];
    for (c, core) in codes {
        assert_eq!(c as u32, core as u32);
        assert_eq!(standard_message(core as u32), core.message());
    }
    assert_eq!(LIVEKIT_RPC_RESULT_OK as c_int, 0);
    assert_eq!(standard_message(4001), "");

    assert_eq!(
        LIVEKIT_DATA_STREAM_CHUNK_SIZE,
        livekit_core::stream::CHUNK_SIZE
    );
    assert_eq!(
        LIVEKIT_RPC_MAX_PAYLOAD_BYTES,
        livekit_core::rpc::MAX_PAYLOAD_BYTES
    );
}

#[test]
fn null_and_destroyed_handles_are_refused() {
    let options = no_callbacks();
    let mut handle: livekit_room_handle_t = null_mut();
    // SAFETY: NULL where the API allows it, valid pointers otherwise.
    unsafe {
        assert_eq!(
            livekit_room_create(null_mut(), &options),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_create(&mut handle, null()),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert!(handle.is_null());
    }
    assert_eq!(livekit_system_init(), LIVEKIT_ERR_NONE);

    let live = new_room(&options);
    let bogus = 0x7777_7770usize as livekit_room_handle_t;
    assert_eq!(livekit_room_destroy(live), LIVEKIT_ERR_NONE);
    for handle in [null_mut(), live, bogus] {
        // SAFETY: valid strings; the handle is checked, never dereferenced.
        unsafe {
            assert_eq!(livekit_room_destroy(handle), LIVEKIT_ERR_INVALID_ARG);
            assert_eq!(
                livekit_room_connect(handle, c"ws://127.0.0.1:9".as_ptr(), c"t".as_ptr()),
                LIVEKIT_ERR_INVALID_ARG
            );
            assert_eq!(livekit_room_close(handle), LIVEKIT_ERR_INVALID_ARG);
            assert_eq!(
                livekit_room_get_state(handle),
                LIVEKIT_CONNECTION_STATE_DISCONNECTED
            );
            assert_eq!(
                livekit_room_get_failure_reason(handle),
                LIVEKIT_FAILURE_REASON_NONE
            );
            assert_eq!(
                livekit_room_rpc_register(handle, c"m".as_ptr(), Some(never_called)),
                LIVEKIT_ERR_INVALID_ARG
            );
            assert_eq!(
                livekit_room_rpc_unregister(handle, c"m".as_ptr()),
                LIVEKIT_ERR_INVALID_ARG
            );
            assert_eq!(
                livekit_room_data_stream_topic_unregister(handle, c"t".as_ptr()),
                LIVEKIT_ERR_INVALID_ARG
            );
            assert_eq!(
                livekit_room_data_stream_close(handle, 0x10 as *mut c_void),
                LIVEKIT_ERR_INVALID_ARG
            );
        }
    }
}

unsafe extern "C" fn never_called(_: *const livekit_rpc_invocation_t, _: *mut c_void) {
    panic!("no invocation expected");
}

unsafe extern "C" fn ignore_chunk(_: *const livekit_data_stream_chunk_t, _: *mut c_void) {}

#[test]
fn arguments_are_checked() {
    let room = new_room(&no_callbacks());
    let not_utf8 = c"\xff\xfe".as_ptr();
    // SAFETY: every pointer is NULL or valid for what it is passed as.
    unsafe {
        // Connecting: strings required and UTF-8, not empty.
        let url = c"ws://127.0.0.1:9".as_ptr();
        assert_eq!(
            livekit_room_connect(room, null(), c"t".as_ptr()),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_connect(room, url, null()),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_connect(room, not_utf8, c"t".as_ptr()),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_connect(room, url, not_utf8),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_connect(room, c"".as_ptr(), c"t".as_ptr()),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_get_state(room),
            LIVEKIT_CONNECTION_STATE_DISCONNECTED
        );

        // RPC methods: one handler each.
        assert_eq!(
            livekit_room_rpc_register(room, c"m".as_ptr(), None),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_rpc_register(room, not_utf8, Some(never_called)),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_rpc_register(room, c"m".as_ptr(), Some(never_called)),
            LIVEKIT_ERR_NONE
        );
        assert_eq!(
            livekit_room_rpc_register(room, c"m".as_ptr(), Some(never_called)),
            LIVEKIT_ERR_INVALID_STATE
        );
        assert_eq!(
            livekit_room_rpc_unregister(room, c"m".as_ptr()),
            LIVEKIT_ERR_NONE
        );
        assert_eq!(
            livekit_room_rpc_unregister(room, c"m".as_ptr()),
            LIVEKIT_ERR_INVALID_STATE
        );
        assert_eq!(
            livekit_room_rpc_unregister(room, null()),
            LIVEKIT_ERR_INVALID_ARG
        );

        // Stream topics: on_recv required, one handler each.
        let mut handler = livekit_data_stream_handler_t {
            on_recv: None,
            on_open: None,
            on_close: None,
            ctx: null_mut(),
        };
        let topic = c"chat".as_ptr();
        assert_eq!(
            livekit_room_data_stream_topic_register(room, topic, null()),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_data_stream_topic_register(room, topic, &handler),
            LIVEKIT_ERR_INVALID_ARG
        );
        handler.on_recv = Some(ignore_chunk);
        assert_eq!(
            livekit_room_data_stream_topic_register(room, null(), &handler),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_data_stream_topic_register(room, topic, &handler),
            LIVEKIT_ERR_NONE
        );
        assert_eq!(
            livekit_room_data_stream_topic_register(room, topic, &handler),
            LIVEKIT_ERR_INVALID_STATE
        );
        assert_eq!(
            livekit_room_data_stream_topic_unregister(room, topic),
            LIVEKIT_ERR_NONE
        );
        assert_eq!(
            livekit_room_data_stream_topic_unregister(room, topic),
            LIVEKIT_ERR_OTHER
        );

        // Sending needs a room; bad options are refused first.
        let mut stream: livekit_data_stream_handle_t = null_mut();
        let mut options = livekit_data_stream_options_t {
            topic: null(),
            is_text: true,
            total_length: 0,
            has_total_length: false,
            destination_identities: null(),
            destination_identities_count: 0,
        };
        assert_eq!(
            livekit_room_data_stream_open(room, &options, &mut stream),
            LIVEKIT_ERR_INVALID_ARG
        );
        options.topic = topic;
        assert_eq!(
            livekit_room_data_stream_open(room, null(), &mut stream),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_data_stream_open(room, &options, null_mut()),
            LIVEKIT_ERR_INVALID_ARG
        );
        options.destination_identities_count = 1; // with no list
        assert_eq!(
            livekit_room_data_stream_open(room, &options, &mut stream),
            LIVEKIT_ERR_INVALID_ARG
        );
        options.destination_identities_count = 0;
        assert_eq!(
            livekit_room_data_stream_open(room, &options, &mut stream),
            LIVEKIT_ERR_INVALID_STATE
        );
        let bogus = 0x20 as livekit_data_stream_handle_t;
        assert_eq!(
            livekit_room_data_stream_write(room, bogus, b"x".as_ptr(), 1),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_data_stream_write(room, null_mut(), null(), 0),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_data_stream_close(room, bogus),
            LIVEKIT_ERR_INVALID_ARG
        );

        let mut payload = livekit_data_payload_t {
            bytes: b"hi".as_ptr() as *mut u8,
            size: 2,
        };
        let mut publish = livekit_data_publish_options_t {
            payload: null_mut(),
            topic: null_mut(),
            lossy: false,
            destination_identities: null_mut(),
            destination_identities_count: 0,
        };
        assert_eq!(
            livekit_room_publish_data(room, &mut publish),
            LIVEKIT_ERR_INVALID_ARG
        );
        publish.payload = &mut payload;
        publish.destination_identities_count = -1;
        assert_eq!(
            livekit_room_publish_data(room, &mut publish),
            LIVEKIT_ERR_INVALID_ARG
        );
        publish.destination_identities_count = 0;
        assert_eq!(
            livekit_room_publish_data(room, null_mut()),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_publish_data(room, &mut publish),
            LIVEKIT_ERR_INVALID_STATE
        );
        (*publish.payload).bytes = null_mut();
        assert_eq!(
            livekit_room_publish_data(room, &mut publish),
            LIVEKIT_ERR_INVALID_ARG
        );

        // Outgoing RPC: destination and method required, payload bounded.
        let big = "x".repeat(LIVEKIT_RPC_MAX_PAYLOAD_BYTES + 1) + "\0";
        let mut call = livekit_rpc_invoke_options_t {
            destination_identity: c"agent".as_ptr(),
            method: null(),
            payload: null(),
            response_timeout_ms: 0,
        };
        let mut id = 0u64;
        assert_eq!(
            livekit_room_rpc_invoke(room, &call, &mut id),
            LIVEKIT_ERR_INVALID_ARG
        );
        call.method = c"".as_ptr();
        assert_eq!(
            livekit_room_rpc_invoke(room, &call, &mut id),
            LIVEKIT_ERR_INVALID_ARG
        );
        call.method = c"add".as_ptr();
        call.payload = big.as_ptr() as *const c_char;
        assert_eq!(
            livekit_room_rpc_invoke(room, &call, &mut id),
            LIVEKIT_ERR_INVALID_ARG
        );
        call.payload = not_utf8;
        assert_eq!(
            livekit_room_rpc_invoke(room, &call, &mut id),
            LIVEKIT_ERR_INVALID_ARG
        );
        call.payload = null();
        assert_eq!(
            livekit_room_rpc_invoke(room, null(), &mut id),
            LIVEKIT_ERR_INVALID_ARG
        );
        assert_eq!(
            livekit_room_rpc_invoke(room, &call, null_mut()),
            LIVEKIT_ERR_INVALID_STATE
        );

        // An answer for nothing, or for a room that is not there, goes nowhere.
        let result = livekit_rpc_result_t {
            id: c"no-such-invocation".as_ptr() as *mut c_char,
            code: 0,
            error_message: null_mut(),
            payload: null_mut(),
        };
        assert!(!send_result(null(), room));
        assert!(!send_result(&result, room));
        assert!(!send_result(&result, null_mut()));
    }
    assert_eq!(livekit_room_close(room), LIVEKIT_ERR_NONE);
    assert_eq!(livekit_room_destroy(room), LIVEKIT_ERR_NONE);
}

/// What the state callback saw, and the handle to destroy from it (if any).
struct Seen {
    states: Mutex<Vec<(livekit_connection_state_t, livekit_failure_reason_t)>>,
    room: Mutex<livekit_room_handle_t>,
    destroy_on_failure: bool,
    destroyed: Mutex<Option<livekit_err_t>>,
}

unsafe extern "C" fn record_state(state: livekit_connection_state_t, ctx: *mut c_void) {
    let seen = &*(ctx as *const Seen);
    let room = *seen.room.lock();
    let reason = livekit_room_get_failure_reason(room);
    seen.states.lock().push((state, reason));
    if state == LIVEKIT_CONNECTION_STATE_FAILED && seen.destroy_on_failure {
        // From the room's own callback: returns at once, no deadlock.
        *seen.destroyed.lock() = Some(livekit_room_destroy(room));
    }
}

fn wait_for(what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !what() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_server_that_is_not_there_is_unreachable() {
    let mut rooms = Vec::new();
    for destroy_on_failure in [false, true] {
        let seen = Box::new(Seen {
            states: Mutex::new(Vec::new()),
            room: Mutex::new(null_mut()),
            destroy_on_failure,
            destroyed: Mutex::new(None),
        });
        let options = livekit_room_options_t {
            on_state_changed: Some(record_state),
            on_rpc_result: None,
            on_data_received: None,
            ctx: &*seen as *const Seen as *mut c_void,
        };
        let room = new_room(&options);
        *seen.room.lock() = room;
        // Nothing listens on the discard port: the gateway cannot reach a server.
        let url = c"ws://127.0.0.1:9".as_ptr();
        // SAFETY: valid strings.
        unsafe {
            assert_eq!(
                livekit_room_connect(room, url, c"token".as_ptr()),
                LIVEKIT_ERR_NONE
            );
            assert_eq!(
                livekit_room_connect(room, url, c"token".as_ptr()),
                LIVEKIT_ERR_INVALID_STATE
            );
        }
        rooms.push((room, seen));
    }
    for (room, seen) in &rooms {
        assert!(
            wait_for(|| seen
                .states
                .lock()
                .iter()
                .any(|s| s.0 == LIVEKIT_CONNECTION_STATE_FAILED)),
            "no failure: {:?}",
            seen.states.lock()
        );
        let states = seen.states.lock().clone();
        assert_eq!(
            states.first(),
            Some(&(
                LIVEKIT_CONNECTION_STATE_CONNECTING,
                LIVEKIT_FAILURE_REASON_NONE
            ))
        );
        if seen.destroy_on_failure {
            assert_eq!(*seen.destroyed.lock(), Some(LIVEKIT_ERR_NONE));
            assert_eq!(livekit_room_destroy(*room), LIVEKIT_ERR_INVALID_ARG);
        } else {
            assert_eq!(
                states.last(),
                Some(&(
                    LIVEKIT_CONNECTION_STATE_FAILED,
                    LIVEKIT_FAILURE_REASON_UNREACHABLE
                ))
            );
            assert_eq!(
                livekit_room_get_state(*room),
                LIVEKIT_CONNECTION_STATE_FAILED
            );
            assert_eq!(
                livekit_room_get_failure_reason(*room),
                LIVEKIT_FAILURE_REASON_UNREACHABLE
            );
            assert_eq!(livekit_room_destroy(*room), LIVEKIT_ERR_NONE);
        }
    }
    // No callback runs after destroy: the contexts can go.
    drop(rooms);
}
