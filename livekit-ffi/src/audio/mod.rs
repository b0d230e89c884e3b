//! Audio: sample-rate conversion and channel remixing of int16 PCM, the Opus codec
//! (20 ms packets, loss concealment), the audio source an application pushes into
//! (bounded, played out in real time), the jitter buffer, and the tracks that join
//! them to a room's connections (`track`).

mod codec;
mod jitter;
mod resample;
mod source;
mod track;

pub use codec::{OpusDecoder, OpusEncoder, OpusError, FRAME_SAMPLES, OPUS_RATE};
pub use resample::{remix, Quality as ResampleQuality, ResampleError, Resampler};
pub use source::{AudioSource, SourceError, TICK as SOURCE_TICK};
pub use track::{LocalAudioTrack, MediaInput, PcmFrame, RemoteAudioTrack, FRAME_10MS};

/// One Opus packet of a local track (`cid`), on its way to the publisher connection.
#[derive(Debug)]
pub struct EncodedAudio {
    pub cid: String,
    /// In 48 kHz samples.
    pub rtp_time: u64,
    pub data: Vec<u8>,
    /// The packet's level in dBov (0 loudest, -127 silence) and whether it holds
    /// voice: the server picks active speakers from these (RFC 6464).
    pub level: i8,
    pub voice: bool,
}

/// The level of interleaved samples in dBov, as RFC 6464 carries it.
pub fn dbov(pcm: &[i16]) -> i8 {
    if pcm.is_empty() {
        return -127;
    }
    let sum: f64 = pcm.iter().map(|s| f64::from(*s).powi(2)).sum();
    let rms = (sum / pcm.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return -127;
    }
    (20.0 * rms.log10()).round().clamp(-127.0, 0.0) as i8
}

/// Below this level a packet is not counted as voice.
pub const VOICE_DBOV: i8 = -50;

/// One Opus packet received on the subscriber connection.
#[derive(Debug)]
pub struct AudioPacket {
    /// RTP sequence number, extended past its wrap.
    pub seq: u64,
    /// RTP time, extended.
    pub rtp_time: u64,
    pub data: std::sync::Arc<[u8]>,
}
