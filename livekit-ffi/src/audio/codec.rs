//! Opus at 48 kHz, 20 ms a packet, through the bundled libopus: what an audio track
//! sends, and what a subscribed one decodes, with packet-loss concealment for a
//! packet that never came.

use opus::{Application, Bitrate, Channels, Decoder, Encoder};

/// The only clock rate WebRTC uses for Opus.
pub const OPUS_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms packet.
pub const FRAME_SAMPLES: usize = 960;
/// Largest packet we produce (well under any MTU).
const MAX_PACKET: usize = 1275;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("Opus carries 1 or 2 channels, not {0}")]
    Channels(usize),
    #[error("a packet takes {expected} samples, not {got}")]
    FrameSize { expected: usize, got: usize },
    #[error("opus: {0}")]
    Codec(#[from] opus::Error),
}

fn channels(n: usize) -> Result<Channels, OpusError> {
    match n {
        1 => Ok(Channels::Mono),
        2 => Ok(Channels::Stereo),
        n => Err(OpusError::Channels(n)),
    }
}

pub struct OpusEncoder {
    inner: Encoder,
    channels: usize,
}

impl OpusEncoder {
    /// A voice encoder; `dtx` sends almost nothing during silence.
    pub fn new(num_channels: usize, dtx: bool) -> Result<Self, OpusError> {
        let mut inner = Encoder::new(OPUS_RATE, channels(num_channels)?, Application::Voip)?;
        inner.set_bitrate(Bitrate::Auto)?;
        inner.set_inband_fec(true)?;
        inner.set_dtx(dtx)?;
        Ok(OpusEncoder {
            inner,
            channels: num_channels,
        })
    }

    /// Encodes exactly one 20 ms frame of interleaved samples.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, OpusError> {
        let expected = FRAME_SAMPLES * self.channels;
        if pcm.len() != expected {
            return Err(OpusError::FrameSize {
                expected,
                got: pcm.len(),
            });
        }
        Ok(self.inner.encode_vec(pcm, MAX_PACKET)?)
    }
}

pub struct OpusDecoder {
    inner: Decoder,
    channels: usize,
}

impl OpusDecoder {
    pub fn new(num_channels: usize) -> Result<Self, OpusError> {
        Ok(OpusDecoder {
            inner: Decoder::new(OPUS_RATE, channels(num_channels)?)?,
            channels: num_channels,
        })
    }

    /// Decodes a packet into interleaved samples (20 ms, or what the packet holds).
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>, OpusError> {
        // Room for the longest packet Opus allows (120 ms).
        let mut out = vec![0i16; 6 * FRAME_SAMPLES * self.channels];
        let n = self.inner.decode(packet, &mut out, false)?;
        out.truncate(n * self.channels);
        Ok(out)
    }

    /// Makes up 20 ms for a packet that was lost, from what came before.
    pub fn conceal(&mut self) -> Result<Vec<i16>, OpusError> {
        let mut out = vec![0i16; FRAME_SAMPLES * self.channels];
        let n = self.inner.decode(&[], &mut out, false)?;
        out.truncate(n * self.channels);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, frames: usize, channels: usize) -> Vec<i16> {
        (0..frames * FRAME_SAMPLES)
            .flat_map(|i| {
                let t = i as f64 / f64::from(OPUS_RATE);
                let v = ((2.0 * std::f64::consts::PI * freq * t).sin() * 12000.0) as i16;
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    /// The strongest frequency, by correlating with candidate tones (no FFT needed).
    fn strongest(samples: &[i16], channels: usize, candidates: &[f64]) -> f64 {
        let mono: Vec<f64> = samples
            .iter()
            .step_by(channels)
            .map(|s| f64::from(*s))
            .collect();
        let power = |f: f64| {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, s) in mono.iter().enumerate() {
                let p = 2.0 * std::f64::consts::PI * f * i as f64 / f64::from(OPUS_RATE);
                re += s * p.cos();
                im += s * p.sin();
            }
            re * re + im * im
        };
        candidates
            .iter()
            .copied()
            .fold((0.0, f64::MIN), |best, f| {
                let p = power(f);
                if p > best.1 {
                    (f, p)
                } else {
                    best
                }
            })
            .0
    }

    #[test]
    fn a_tone_survives_encoding_and_decoding() {
        for channels in [1, 2] {
            let mut enc = OpusEncoder::new(channels, false).unwrap();
            let mut dec = OpusDecoder::new(channels).unwrap();
            let pcm = tone(440.0, 50, channels);
            let mut out = Vec::new();
            for frame in pcm.chunks(FRAME_SAMPLES * channels) {
                let packet = enc.encode(frame).unwrap();
                assert!(!packet.is_empty() && packet.len() <= MAX_PACKET);
                out.extend(dec.decode(&packet).unwrap());
            }
            assert_eq!(out.len(), pcm.len());
            // Skip the codec's start-up; the rest is the same tone at the same level.
            let tail = &out[out.len() / 2..];
            let f = strongest(tail, channels, &[220.0, 330.0, 440.0, 550.0, 880.0]);
            assert_eq!(f, 440.0);
            let rms = |s: &[i16]| {
                (s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
            };
            let ratio = rms(tail) / rms(&pcm[pcm.len() / 2..]);
            assert!((0.8..1.2).contains(&ratio), "level ratio {ratio}");
        }
    }

    #[test]
    fn a_lost_packet_is_concealed_and_bad_frames_refused() {
        let mut enc = OpusEncoder::new(1, true).unwrap();
        let mut dec = OpusDecoder::new(1).unwrap();
        for frame in tone(440.0, 10, 1).chunks(FRAME_SAMPLES) {
            dec.decode(&enc.encode(frame).unwrap()).unwrap();
        }
        let concealed = dec.conceal().unwrap();
        assert_eq!(concealed.len(), FRAME_SAMPLES);
        assert!(
            concealed.iter().any(|s| *s != 0),
            "concealment continues the tone"
        );
        assert!(matches!(
            enc.encode(&[0; 100]),
            Err(OpusError::FrameSize {
                expected: 960,
                got: 100
            })
        ));
        assert!(matches!(
            OpusEncoder::new(3, false),
            Err(OpusError::Channels(3))
        ));
        assert!(dec.decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
