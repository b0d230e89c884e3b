//! Arbitrary bytes into the FFI server's request entry point, as a client hands
//! them over: `FfiServer::handle_request` must answer every one (an error for
//! what it cannot serve) and never panic or abort.
//!
//! Kept away from the network: a `ConnectRequest` is not served (it would dial its
//! URL), so no room ever exists and every request on a room, participant, stream
//! or track of one is refused by handle. The audio requests work without a room:
//! those that carry a pointer to the client's samples get one to real memory of
//! the size they claim (up to a bound), as the protocol requires of a client, and
//! requests on a resampler or source are also tried on a fresh one. Every handle
//! is released after each input, so memory stays bounded across runs.
#![no_main]

use std::sync::{Arc, Once};

use libfuzzer_sys::fuzz_target;
use livekit_ffi::ffi::{proto, FfiError, FfiServer};
use livekit_ffi::video::BufferType;
use prost::Message;

use proto::ffi_request::Message as Req;
use proto::ffi_response::Message as Res;

/// The most samples a fixed-up pointer points to (100 ms of 48 kHz mono).
const MAX_SAMPLES: usize = 4_800;
/// The most samples a rate conversion asked for here may make. The core bounds
/// the ratio (128) and the channels (32); within those bounds a conversion costs
/// in proportion to what it makes, and an instrumented build makes ~40k samples a
/// second at the best quality: more would only slow the search down.
const MAX_CONVERTED: u64 = 8_192;
/// The largest side of a frame converted here.
const MAX_SIDE: u32 = 64;

fn server() -> &'static FfiServer {
    static INIT: Once = Once::new();
    let server = FfiServer::global();
    INIT.call_once(|| server.initialize(Arc::new(|_: &[u8]| {}), false));
    server
}

fn request(server: &'static FfiServer, m: Req) -> Option<Res> {
    let bytes = proto::FfiRequest { message: Some(m) }.encode_to_vec();
    let response = server.handle_request(&bytes).ok()?;
    let decoded = proto::FfiResponse::decode(response.as_slice());
    decoded.expect("the server's response decodes").message
}

/// Samples for a pointer: `count` of them (bounded), made from the input.
fn samples(data: &[u8], count: usize) -> Vec<i16> {
    let count = count.min(MAX_SAMPLES);
    (0..count)
        .map(|i| {
            let b = |j: usize| data.get((2 * i + j) % data.len().max(1)).copied();
            i16::from_le_bytes([b(0).unwrap_or(0), b(1).unwrap_or(0)])
        })
        .collect()
}

/// A pointer to `buf`, unless the request's own was null (the null check is the
/// server's to make).
fn pointer(original: u64, buf: &[i16]) -> u64 {
    if original == 0 {
        0
    } else {
        buf.as_ptr() as u64
    }
}

/// How many whole frames of `channels` fit in [`MAX_SAMPLES`], at most `claimed`.
fn bounded_frames(claimed: u32, channels: u32) -> u32 {
    let fit = MAX_SAMPLES as u64 / u64::from(channels.max(1));
    u64::from(claimed).min(fit) as u32
}

/// The output frames per input frame of a conversion, rounded up (1 for none).
fn growth(from_rate: f64, to_rate: f64) -> u64 {
    if from_rate > 0.0 && to_rate.is_finite() && to_rate > from_rate {
        (to_rate / from_rate).ceil().min(u64::MAX as f64) as u64
    } else {
        1
    }
}

fn new_sox_resampler(server: &'static FfiServer) -> Option<u64> {
    let r = proto::NewSoxResamplerRequest {
        input_rate: 48_000.0,
        output_rate: 16_000.0,
        num_channels: 1,
        ..Default::default()
    };
    match request(server, Req::NewSoxResampler(r))? {
        Res::NewSoxResampler(proto::NewSoxResamplerResponse {
            message: Some(proto::new_sox_resampler_response::Message::Resampler(owned)),
        }) => Some(owned.handle.id),
        _ => None,
    }
}

fn new_audio_resampler(server: &'static FfiServer) -> Option<u64> {
    match request(server, Req::NewAudioResampler(Default::default()))? {
        Res::NewAudioResampler(r) => Some(r.resampler.handle.id),
        _ => None,
    }
}

fn new_audio_source(server: &'static FfiServer, sample_rate: u32, channels: u32) -> Option<u64> {
    let r = proto::NewAudioSourceRequest {
        sample_rate: Some(sample_rate),
        num_channels: Some(channels),
        queue_size_ms: Some(100),
        ..Default::default()
    };
    match request(server, Req::NewAudioSource(r))? {
        Res::NewAudioSource(r) => Some(r.source.handle.id),
        _ => None,
    }
}

/// Pushes a little audio through resampler `handle` and flushes it.
fn exercise_sox(server: &'static FfiServer, handle: u64, data: &[u8]) {
    let pcm = samples(data, 960);
    let push = proto::PushSoxResamplerRequest {
        resampler_handle: handle,
        data_ptr: pcm.as_ptr() as u64,
        size: (pcm.len() * 2) as u32,
    };
    let _ = request(server, Req::PushSoxResampler(push));
    let flush = proto::FlushSoxResamplerRequest {
        resampler_handle: handle,
    };
    let _ = request(server, Req::FlushSoxResampler(flush));
}

fn serve(server: &'static FfiServer, data: &[u8], req: proto::FfiRequest) {
    let Some(m) = req.message else {
        assert!(matches!(server.handle_request(data), Err(FfiError::Empty)));
        return;
    };
    match m {
        // Would dial the request's URL.
        Req::Connect(_) => {}
        Req::PushSoxResampler(mut r) => {
            let pcm = samples(data, r.size as usize / 2);
            let odd = r.size % 2;
            r.size = (pcm.len() * 2) as u32 + odd;
            r.data_ptr = pointer(r.data_ptr, &pcm);
            let _ = request(server, Req::PushSoxResampler(r));
            if let Some(handle) = new_sox_resampler(server) {
                r.resampler_handle = handle;
                let _ = request(server, Req::PushSoxResampler(r));
            }
        }
        Req::RemixAndResample(mut r) => {
            let b = &mut r.buffer;
            b.samples_per_channel = bounded_frames(b.samples_per_channel, b.num_channels);
            if b.sample_rate != r.sample_rate {
                // Filtering costs per sample made (a remix alone is a copy).
                let made = growth(f64::from(b.sample_rate), f64::from(r.sample_rate))
                    .saturating_mul(u64::from(r.num_channels.max(1)));
                let fit = MAX_CONVERTED / made.max(1);
                b.samples_per_channel = u64::from(b.samples_per_channel).min(fit) as u32;
            }
            let pcm = samples(
                data,
                (b.samples_per_channel * b.num_channels.max(1)) as usize,
            );
            b.data_ptr = pointer(b.data_ptr, &pcm);
            let _ = request(server, Req::RemixAndResample(r));
            if let Some(handle) = new_audio_resampler(server) {
                r.resampler_handle = handle;
                let _ = request(server, Req::RemixAndResample(r));
            }
        }
        Req::CaptureAudioFrame(mut r) => {
            let b = &mut r.buffer;
            b.samples_per_channel = bounded_frames(b.samples_per_channel, b.num_channels);
            let pcm = samples(
                data,
                (b.samples_per_channel * b.num_channels.max(1)) as usize,
            );
            b.data_ptr = pointer(b.data_ptr, &pcm);
            let (rate, channels) = (b.sample_rate, b.num_channels);
            let _ = request(server, Req::CaptureAudioFrame(r));
            if let Some(handle) = new_audio_source(server, rate, channels) {
                r.source_handle = handle;
                let _ = request(server, Req::CaptureAudioFrame(r));
            }
        }
        Req::VideoConvert(mut r) => {
            // Small frames (a conversion costs per pixel), with bytes behind the
            // pointer for all the request claims, padded rows included.
            let b = &mut r.buffer;
            b.width %= MAX_SIDE + 1;
            b.height %= MAX_SIDE + 1;
            let need = BufferType::from_wire(b.r#type)
                .map(|k| k.len(b.width.max(1), b.height.max(1)))
                .unwrap_or(0);
            if let Some(stride) = b.stride.as_mut() {
                *stride %= MAX_SIDE * 8 + 1;
            }
            let rows = b.stride.map_or(0, |s| s as usize * b.height as usize);
            let bytes: Vec<u8> = (0..need.max(rows))
                .map(|i| data.get(i % data.len().max(1)).copied().unwrap_or(0))
                .collect();
            if b.data_ptr != 0 {
                b.data_ptr = bytes.as_ptr() as u64;
            }
            let _ = request(server, Req::VideoConvert(r));
        }
        Req::PublishData(mut r) => {
            // Refused for want of a room; its pointer is real all the same.
            let bytes = data.to_vec();
            r.data_len = r.data_len.min(bytes.len() as u64);
            if r.data_ptr != 0 {
                r.data_ptr = bytes.as_ptr() as u64;
            }
            let _ = request(server, Req::PublishData(r));
        }
        Req::FlushSoxResampler(mut r) => {
            let _ = server.handle_request(data);
            if let Some(handle) = new_sox_resampler(server) {
                r.resampler_handle = handle;
                let _ = request(server, Req::FlushSoxResampler(r));
            }
        }
        Req::ClearAudioBuffer(mut r) => {
            let _ = server.handle_request(data);
            if let Some(handle) = new_audio_source(server, 48_000, 1) {
                r.source_handle = handle;
                let _ = request(server, Req::ClearAudioBuffer(r));
            }
        }
        Req::CreateAudioTrack(mut r) => {
            let _ = server.handle_request(data);
            if let Some(handle) = new_audio_source(server, 48_000, 1) {
                r.source_handle = handle;
                let _ = request(server, Req::CreateAudioTrack(r));
            }
        }
        Req::NewSoxResampler(r) => {
            // Whatever rates and quality it asks for; if made, and affordable
            // (a flush makes a whole chunk of 480 frames), it must work.
            let made = 480u64
                .saturating_mul(growth(r.input_rate, r.output_rate))
                .saturating_mul(u64::from(r.num_channels.max(1)));
            let Ok(bytes) = server.handle_request(data) else {
                return;
            };
            if made > MAX_CONVERTED {
                return;
            }
            if let Ok(proto::FfiResponse {
                message:
                    Some(Res::NewSoxResampler(proto::NewSoxResamplerResponse {
                        message: Some(proto::new_sox_resampler_response::Message::Resampler(o)),
                    })),
            }) = proto::FfiResponse::decode(bytes.as_slice())
            {
                exercise_sox(server, o.handle.id, data);
            }
        }
        _ => {
            let _ = server.handle_request(data);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let server = server();
    match proto::FfiRequest::decode(data) {
        Ok(req) => serve(server, data, req),
        Err(_) => assert!(matches!(
            server.handle_request(data),
            Err(FfiError::Decode(_))
        )),
    }
    // What the responses handed out goes back, as a client drops its handles.
    for (id, _) in server.handle_kinds() {
        server.drop_handle(id);
    }
});
