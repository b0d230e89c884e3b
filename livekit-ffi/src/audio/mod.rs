//! Audio that does not need a room: sample-rate conversion and channel remixing
//! of int16 PCM, the Opus codec (20 ms packets, loss concealment), and the audio
//! source an application pushes into (bounded, played out in real time). Tracks
//! and the jitter buffer come beside them.

mod codec;
mod resample;
mod source;

pub use codec::{OpusDecoder, OpusEncoder, OpusError, FRAME_SAMPLES, OPUS_RATE};
pub use resample::{remix, Quality as ResampleQuality, ResampleError, Resampler};
pub use source::{AudioSource, SourceError, TICK as SOURCE_TICK};
