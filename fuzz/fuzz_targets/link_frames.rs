//! Arbitrary bytes as a device's link from its gateway: `livekit_core::link`'s
//! frame decoder, and a `livekit_device::Device` (connected, link up) reading the
//! same bytes, must never panic. Checked on the way: the decoder holds no more
//! than one unfinished frame, a decoded message framed again decodes the same, and
//! every frame the device writes decodes as one message.
//!
//! The first byte picks how: its low bit 0, the rest of the input is the byte
//! stream itself (frames with their checksums); 1, the rest is a sequence of
//! length-delimited `LinkMessage`s that are framed here first, so the fuzzer can
//! reach the device's handling past the checksum. The other bits seed the random
//! split of the stream into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livekit_core::link::{self, Decoder, LinkMessage};
use livekit_device::{Config, Device, Event};
use livekit_fuzz::{split, Lcg, MAX_MESSAGES};
use prost::Message;

const MAX_HELD: usize = link::HEADER_LEN + link::MAX_PAYLOAD + link::TRAILER_LEN;

/// Frames `messages` given as length-delimited `LinkMessage`s.
fn framed(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..MAX_MESSAGES {
        if b.is_empty() {
            break;
        }
        let Ok(m) = LinkMessage::decode_length_delimited(&mut b) else {
            break;
        };
        if let Some(frame) = link::encode(&m) {
            out.extend_from_slice(&frame);
        }
    }
    out
}

fn decode_all(decoder: &mut Decoder) {
    while let Some(next) = decoder.next_message() {
        if let Ok(m) = next {
            let frame = link::encode(&m).expect("a decoded message fits a frame again");
            let mut again = Decoder::new();
            again.push(&frame);
            assert_eq!(
                again.next_message(),
                Some(Ok(m)),
                "framed again, decoded the same"
            );
            assert_eq!(again.pending(), 0);
        }
    }
    assert!(
        decoder.pending() < MAX_HELD,
        "more than one unfinished frame held"
    );
}

/// What the device wrote must be whole, well-formed frames, one message each.
fn check_output(device: &mut Device) {
    while let Some(frame) = device.poll_transmit() {
        let mut d = Decoder::new();
        d.push(&frame);
        assert!(
            matches!(d.next_message(), Some(Ok(_))),
            "the device wrote a bad frame"
        );
        assert_eq!(d.next_message(), None);
        assert_eq!(d.pending(), 0);
    }
}

fn drain_events(device: &mut Device, now: u64) {
    while let Some(e) = device.poll_event() {
        if let Event::RpcInvocation(inv) = e {
            device.rpc_respond(now, inv.id, Ok(inv.payload));
        }
    }
    check_output(device);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let stream = if first & 1 == 1 {
        framed(rest)
    } else {
        rest.to_vec()
    };
    let mut rng = Lcg::new(u64::from(first >> 1));
    let pieces = split(&stream, &mut rng);

    let mut decoder = Decoder::new();
    for piece in &pieces {
        decoder.push(piece);
        decode_all(&mut decoder);
    }

    let mut device = Device::new(Config::default(), 7);
    device.register_rpc_method("echo");
    device.register_stream_topic("chat");
    let mut now = 1_000u64;
    device
        .connect(now, "wss://gateway.invalid", "token")
        .expect("connect");
    device.link_up(now);
    check_output(&mut device);
    for piece in &pieces {
        now += rng.between_1_and(50);
        if device.wants_link(now) {
            device.link_up(now);
        }
        device.handle_input(now, piece);
        let _ = device.take_link_drop();
        drain_events(&mut device, now);
    }
    // Time passes: pings, timeouts, retries.
    for _ in 0..8 {
        let Some(at) = device.poll_timeout() else {
            break;
        };
        now = now.max(at);
        device.handle_timeout(now);
        drain_events(&mut device, now);
    }
    device.close(now);
    drain_events(&mut device, now);
});
