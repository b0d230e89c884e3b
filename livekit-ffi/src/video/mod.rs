//! Video: raw frames and their conversions (`frame`). Tracks, codecs and streams
//! follow, beside `audio`.

pub mod frame;

pub use frame::{BufferType, VideoBuffer, VideoError};
