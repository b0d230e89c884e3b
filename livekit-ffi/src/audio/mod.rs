//! Audio that does not need a room: sample-rate conversion and channel remixing
//! of int16 PCM. Tracks, Opus and the jitter buffer come beside it.

mod resample;

pub use resample::{remix, Quality as ResampleQuality, ResampleError, Resampler};
