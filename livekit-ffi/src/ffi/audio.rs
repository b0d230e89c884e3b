//! Audio resampling over the FFI: the streaming (sox-style) resampler, whose output
//! is lent until the next call on it, and one-shot frame conversion, whose output
//! is owned by a buffer handle the client drops after copying.

use parking_lot::Mutex;

use super::proto;
use super::{FfiError, FfiResult, FfiServer};
use crate::audio::{remix, AudioSource, ResampleQuality, Resampler};

use proto::ffi_event::Message as Ev;

/// A streaming resampler and the output it lends until its next call.
pub(crate) struct FfiSoxResampler {
    state: Mutex<(Resampler, Vec<i16>)>,
}

/// Converts frames one at a time (each call stands alone).
pub(crate) struct FfiAudioResampler;

/// The most channels a frame to convert may have, before or after (the
/// resampler's own limit).
const MAX_CHANNELS: usize = 32;

/// Samples the client copies, then releases by dropping the handle.
pub(crate) struct FfiAudioBuffer {
    /// Read by the client through the pointer it was given, or taken whole
    /// ([`super::FfiServer::take_audio_buffer`]).
    pub(super) data: Vec<i16>,
}

fn quality(q: i32) -> ResampleQuality {
    match proto::SoxQualityRecipe::try_from(q) {
        Ok(proto::SoxQualityRecipe::SoxrQualityQuick) => ResampleQuality::Quick,
        Ok(proto::SoxQualityRecipe::SoxrQualityLow) => ResampleQuality::Low,
        Ok(proto::SoxQualityRecipe::SoxrQualityHigh) => ResampleQuality::High,
        Ok(proto::SoxQualityRecipe::SoxrQualityVeryhigh) => ResampleQuality::VeryHigh,
        _ => ResampleQuality::Medium,
    }
}

/// Copies `samples` int16 from the client's memory at `ptr`.
///
/// # Safety
/// The protocol makes the client keep that memory alive and unchanged for the
/// duration of the (synchronous) request.
unsafe fn samples_at(ptr: u64, samples: usize) -> FfiResult<Vec<i16>> {
    Ok(super::client_bytes(ptr, samples * 2)?
        .chunks_exact(2)
        .map(|b| i16::from_ne_bytes([b[0], b[1]]))
        .collect())
}

pub(super) fn new_sox_resampler(
    server: &FfiServer,
    r: proto::NewSoxResamplerRequest,
) -> proto::NewSoxResamplerResponse {
    use proto::new_sox_resampler_response::Message as M;
    let interleaved = proto::SoxResamplerDataType::SoxrDatatypeInt16i as i32;
    if r.input_data_type != interleaved || r.output_data_type != interleaved {
        return proto::NewSoxResamplerResponse {
            message: Some(M::Error(
                "only interleaved int16 samples are supported".into(),
            )),
        };
    }
    let message = match Resampler::new(
        r.input_rate,
        r.output_rate,
        r.num_channels as usize,
        quality(r.quality_recipe),
    ) {
        Ok(resampler) => {
            let id = server.insert_handle(FfiSoxResampler {
                state: Mutex::new((resampler, Vec::new())),
            });
            M::Resampler(proto::OwnedSoxResampler {
                handle: proto::FfiOwnedHandle { id },
                info: proto::SoxResamplerInfo {},
            })
        }
        Err(e) => M::Error(e.to_string()),
    };
    proto::NewSoxResamplerResponse {
        message: Some(message),
    }
}

/// Runs `step` on resampler `handle` and lends its output.
fn lend(
    server: &FfiServer,
    handle: u64,
    step: impl FnOnce(&mut Resampler) -> Result<Vec<i16>, String>,
) -> FfiResult<(u64, u32, Option<String>)> {
    server.with_handle::<FfiSoxResampler, _>(handle, |h| {
        let mut state = h.state.lock();
        let (resampler, out) = &mut *state;
        match step(resampler) {
            Ok(samples) => {
                *out = samples;
                (out.as_ptr() as u64, (out.len() * 2) as u32, None)
            }
            Err(e) => {
                out.clear();
                (0, 0, Some(e))
            }
        }
    })
}

pub(super) fn push_sox_resampler(
    server: &FfiServer,
    r: proto::PushSoxResamplerRequest,
) -> FfiResult<proto::PushSoxResamplerResponse> {
    if !r.size.is_multiple_of(2) {
        return Err(FfiError::Invalid(format!(
            "{} bytes are not whole int16 samples",
            r.size
        )));
    }
    // SAFETY: see `samples_at`.
    let input = unsafe { samples_at(r.data_ptr, r.size as usize / 2)? };
    let (output_ptr, size, error) = lend(server, r.resampler_handle, |res| {
        res.push(&input).map_err(|e| e.to_string())
    })?;
    Ok(proto::PushSoxResamplerResponse {
        output_ptr,
        size,
        error,
    })
}

pub(super) fn flush_sox_resampler(
    server: &FfiServer,
    r: proto::FlushSoxResamplerRequest,
) -> FfiResult<proto::FlushSoxResamplerResponse> {
    let (output_ptr, size, error) = lend(server, r.resampler_handle, |res| {
        res.flush().map_err(|e| e.to_string())
    })?;
    Ok(proto::FlushSoxResamplerResponse {
        output_ptr,
        size,
        error,
    })
}

pub(super) fn new_audio_resampler(server: &FfiServer) -> proto::NewAudioResamplerResponse {
    let id = server.insert_handle(FfiAudioResampler);
    proto::NewAudioResamplerResponse {
        resampler: proto::OwnedAudioResampler {
            handle: proto::FfiOwnedHandle { id },
            info: proto::AudioResamplerInfo {},
        },
    }
}

/// Converts one frame to `num_channels` and `sample_rate`: remixed, then resampled
/// as a whole (its output lasts exactly as long as the frame).
pub(super) fn remix_and_resample(
    server: &FfiServer,
    r: proto::RemixAndResampleRequest,
) -> FfiResult<proto::RemixAndResampleResponse> {
    server.with_handle::<FfiAudioResampler, _>(r.resampler_handle, |_| ())?;
    let b = &r.buffer;
    let (from_ch, to_ch) = (b.num_channels as usize, r.num_channels as usize);
    if from_ch == 0 || to_ch == 0 || b.sample_rate == 0 || r.sample_rate == 0 {
        return Err(FfiError::Invalid(
            "channel counts and sample rates must not be 0".into(),
        ));
    }
    // Remixing to 2^30 channels asked for terabytes and aborted the process (fuzzing).
    if from_ch > MAX_CHANNELS || to_ch > MAX_CHANNELS {
        return Err(FfiError::Invalid(format!(
            "at most {MAX_CHANNELS} channels"
        )));
    }
    let samples = (b.samples_per_channel as usize)
        .checked_mul(from_ch)
        .ok_or_else(|| FfiError::Invalid("frame too large".into()))?;
    // SAFETY: see `samples_at`.
    let input = unsafe { samples_at(b.data_ptr, samples)? };
    let remixed = remix(&input, from_ch, to_ch);
    let data = if b.sample_rate == r.sample_rate {
        remixed
    } else {
        let mut res = Resampler::new(
            f64::from(b.sample_rate),
            f64::from(r.sample_rate),
            to_ch,
            ResampleQuality::High,
        )
        .map_err(|e| FfiError::Invalid(e.to_string()))?;
        let mut out = res
            .push(&remixed)
            .map_err(|e| FfiError::Invalid(e.to_string()))?;
        out.extend(res.flush().map_err(|e| FfiError::Invalid(e.to_string()))?);
        out
    };
    Ok(proto::RemixAndResampleResponse {
        buffer: owned_buffer(server, data, to_ch, r.sample_rate),
    })
}

/// Hands interleaved samples to the client as a buffer it copies, then drops.
pub(super) fn owned_buffer(
    server: &FfiServer,
    data: Vec<i16>,
    channels: usize,
    sample_rate: u32,
) -> proto::OwnedAudioFrameBuffer {
    let info = proto::AudioFrameBufferInfo {
        data_ptr: data.as_ptr() as u64,
        num_channels: channels as u32,
        sample_rate,
        samples_per_channel: (data.len() / channels.max(1)) as u32,
    };
    // The Vec's heap buffer does not move when the Vec moves into the handle.
    let id = server.insert_handle(FfiAudioBuffer { data });
    proto::OwnedAudioFrameBuffer {
        handle: proto::FfiOwnedHandle { id },
        info,
    }
}

/// A frame an audio stream received, out of its event and buffer handle.
#[derive(Debug)]
pub struct ReceivedAudioFrame {
    pub stream_handle: u64,
    pub sample_rate: u32,
    pub num_channels: u32,
    pub samples_per_channel: u32,
    /// Interleaved samples.
    pub data: Vec<i16>,
}

/// The first byte of a serialized `FfiEvent` carrying an `AudioStreamEvent` (field 4,
/// length-delimited): the one set field of the oneof comes first.
const AUDIO_STREAM_EVENT_TAG: u8 = (4 << 3) | 2;

pub(super) fn take_frame_event(server: &FfiServer, event: &[u8]) -> Option<ReceivedAudioFrame> {
    use prost::Message;
    if event.first() != Some(&AUDIO_STREAM_EVENT_TAG) {
        return None;
    }
    let Ok(proto::FfiEvent {
        message: Some(Ev::AudioStreamEvent(stream_event)),
    }) = proto::FfiEvent::decode(event)
    else {
        return None;
    };
    let Some(proto::audio_stream_event::Message::FrameReceived(received)) = stream_event.message
    else {
        return None;
    };
    let owned = received.frame;
    let buffer = server.take_handle::<FfiAudioBuffer>(owned.handle.id).ok()?;
    Some(ReceivedAudioFrame {
        stream_handle: stream_event.stream_handle,
        sample_rate: owned.info.sample_rate,
        num_channels: owned.info.num_channels,
        samples_per_channel: owned.info.samples_per_channel,
        data: buffer.data,
    })
}

/// The source behind an audio source handle.
pub(super) fn source_of(server: &FfiServer, handle: u64) -> FfiResult<AudioSource> {
    server.with_handle::<FfiAudioSource, _>(handle, |h| h.source.clone())
}

/// An audio source handle; dropping it closes the source.
pub(crate) struct FfiAudioSource {
    source: AudioSource,
}

impl Drop for FfiAudioSource {
    fn drop(&mut self) {
        self.source.close();
    }
}

pub(super) fn new_audio_source(
    server: &FfiServer,
    r: proto::NewAudioSourceRequest,
) -> FfiResult<proto::NewAudioSourceResponse> {
    if r.r#type != proto::AudioSourceType::AudioSourceNative as i32 {
        return Err(FfiError::Invalid(
            "only native audio sources exist here".into(),
        ));
    }
    let source = AudioSource::new(
        r.sample_rate.unwrap_or(48_000),
        r.num_channels.unwrap_or(1) as usize,
        r.queue_size_ms.unwrap_or(1000),
    )
    .map_err(|e| FfiError::Invalid(e.to_string()))?;
    let id = server.insert_handle(FfiAudioSource { source });
    Ok(proto::NewAudioSourceResponse {
        source: proto::OwnedAudioSource {
            handle: proto::FfiOwnedHandle { id },
            info: proto::AudioSourceInfo {
                r#type: proto::AudioSourceType::AudioSourceNative as i32,
            },
        },
    })
}

/// Copies the frame now (its memory is the client's only for this request) and
/// calls back once it is queued.
pub(super) fn capture_audio_frame(
    server: &'static FfiServer,
    r: proto::CaptureAudioFrameRequest,
) -> FfiResult<proto::CaptureAudioFrameResponse> {
    let source = server.with_handle::<FfiAudioSource, _>(r.source_handle, |h| h.source.clone())?;
    let b = &r.buffer;
    if b.num_channels as usize != source.channels() || b.sample_rate != source.sample_rate() {
        return Err(FfiError::Invalid(format!(
            "frame of {} Hz / {} channels for a source of {} Hz / {} channels",
            b.sample_rate,
            b.num_channels,
            source.sample_rate(),
            source.channels()
        )));
    }
    let samples = (b.samples_per_channel as usize)
        .checked_mul(source.channels())
        .ok_or_else(|| FfiError::Invalid("frame too large".into()))?;
    // SAFETY: see `samples_at`.
    let pcm = unsafe { samples_at(b.data_ptr, samples)? };
    let async_id = server.async_id(r.request_async_id);
    let callback = move |error: Option<String>| {
        Ev::CaptureAudioFrame(proto::CaptureAudioFrameCallback { async_id, error })
    };
    server.spawn_async(
        async_id,
        async move {
            let result = source.capture(&pcm).await;
            if server.finish(async_id) {
                server.send_event(callback(result.err().map(|e| e.to_string())));
            }
        },
        move |m| FfiServer::global().send_event(callback(Some(m))),
    );
    Ok(proto::CaptureAudioFrameResponse { async_id })
}

pub(super) fn clear_audio_buffer(
    server: &FfiServer,
    r: proto::ClearAudioBufferRequest,
) -> FfiResult<proto::ClearAudioBufferResponse> {
    server.with_handle::<FfiAudioSource, _>(r.source_handle, |h| h.source.clear())?;
    Ok(proto::ClearAudioBufferResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn request(m: proto::ffi_request::Message) -> proto::ffi_response::Message {
        let bytes = proto::FfiRequest { message: Some(m) }.encode_to_vec();
        let res = FfiServer::global().handle_request(&bytes).unwrap();
        proto::FfiResponse::decode(res.as_slice())
            .unwrap()
            .message
            .unwrap()
    }

    fn read(ptr: u64, bytes: u32) -> Vec<i16> {
        // SAFETY: the core lends these bytes until the next call on the resampler.
        unsafe { samples_at(ptr, bytes as usize / 2).unwrap() }
    }

    #[test]
    fn a_stream_resampled_in_pieces_has_the_length_of_its_input() {
        use proto::ffi_request::Message as Req;
        use proto::ffi_response::Message as Res;
        let Res::NewSoxResampler(r) =
            request(Req::NewSoxResampler(proto::NewSoxResamplerRequest {
                input_rate: 48_000.0,
                output_rate: 16_000.0,
                num_channels: 1,
                input_data_type: 0,
                output_data_type: 0,
                quality_recipe: proto::SoxQualityRecipe::SoxrQualityHigh as i32,
                flags: None,
            }))
        else {
            panic!("no resampler")
        };
        let Some(proto::new_sox_resampler_response::Message::Resampler(owned)) = r.message else {
            panic!("refused: {r:?}")
        };
        let handle = owned.handle.id;
        let tone: Vec<i16> = (0..48_000).map(|i| ((i % 48) as i16 - 24) * 500).collect();
        let mut out = Vec::new();
        for piece in tone.chunks(1000) {
            let Res::PushSoxResampler(p) =
                request(Req::PushSoxResampler(proto::PushSoxResamplerRequest {
                    resampler_handle: handle,
                    data_ptr: piece.as_ptr() as u64,
                    size: (piece.len() * 2) as u32,
                }))
            else {
                panic!()
            };
            assert_eq!(p.error, None);
            out.extend(read(p.output_ptr, p.size));
        }
        let Res::FlushSoxResampler(f) =
            request(Req::FlushSoxResampler(proto::FlushSoxResamplerRequest {
                resampler_handle: handle,
            }))
        else {
            panic!()
        };
        out.extend(read(f.output_ptr, f.size));
        assert_eq!(out.len(), 16_000);
        // An odd byte count is not samples.
        let bad = proto::PushSoxResamplerRequest {
            resampler_handle: handle,
            data_ptr: tone.as_ptr() as u64,
            size: 3,
        };
        let bytes = proto::FfiRequest {
            message: Some(Req::PushSoxResampler(bad)),
        }
        .encode_to_vec();
        assert!(FfiServer::global().handle_request(&bytes).is_err());
        assert!(FfiServer::global().drop_handle(handle));
    }

    #[test]
    fn a_frame_is_remixed_and_resampled_into_an_owned_buffer() {
        use proto::ffi_request::Message as Req;
        use proto::ffi_response::Message as Res;
        let Res::NewAudioResampler(r) =
            request(Req::NewAudioResampler(proto::NewAudioResamplerRequest {}))
        else {
            panic!()
        };
        let stereo: Vec<i16> = (0..480).flat_map(|_| [1000i16, 3000]).collect();
        let Res::RemixAndResample(out) =
            request(Req::RemixAndResample(proto::RemixAndResampleRequest {
                resampler_handle: r.resampler.handle.id,
                buffer: proto::AudioFrameBufferInfo {
                    data_ptr: stereo.as_ptr() as u64,
                    num_channels: 2,
                    sample_rate: 48_000,
                    samples_per_channel: 480,
                },
                num_channels: 1,
                sample_rate: 48_000,
            }))
        else {
            panic!()
        };
        let info = out.buffer.info;
        assert_eq!(
            (
                info.num_channels,
                info.sample_rate,
                info.samples_per_channel
            ),
            (1, 48_000, 480)
        );
        let mono = read(info.data_ptr, info.samples_per_channel * 2);
        assert!(mono.iter().all(|s| *s == 2000));
        assert!(FfiServer::global().drop_handle(out.buffer.handle.id));
        assert!(FfiServer::global().drop_handle(r.resampler.handle.id));
    }
}
