//! Audio that does not need a room: sample-rate conversion and channel remixing
//! of int16 PCM, and the Opus codec (20 ms packets, loss concealment). Tracks and
//! the jitter buffer come beside them.

mod codec;
mod resample;

pub use codec::{OpusDecoder, OpusEncoder, OpusError, FRAME_SAMPLES, OPUS_RATE};
pub use resample::{remix, Quality as ResampleQuality, ResampleError, Resampler};
