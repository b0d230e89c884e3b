//! Arbitrary bytes as signal messages from the server: whatever decodes as a
//! `SignalResponse` goes to our sans-IO handling of it (the room's state, and the
//! engine before the join answer, joined, and resuming), which must never panic.
//!
//! One input may carry several messages: encoded `SignalResponse`s written one
//! after the other still decode as one (the last wins), and are taken apart
//! again here and fed in order (see `livekit_fuzz::top_level_fields`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use livekit_protocol::SignalResponse;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if SignalResponse::decode(data).is_err() {
        return;
    }
    let Some(fields) = livekit_fuzz::top_level_fields(data) else {
        return;
    };
    let messages: Vec<_> = fields
        .into_iter()
        .filter_map(|f| SignalResponse::decode(f).ok()?.message)
        .collect();
    if !messages.is_empty() {
        livekit_ffi::fuzzing::signal_messages(&messages);
    }
});
