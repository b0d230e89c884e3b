//! Sample-rate conversion of interleaved int16 audio, streamed: push any number of
//! samples, get what is ready; flush at the end for the tail.
//!
//! rubato does the filtering (a windowed-sinc resampler for the better qualities,
//! a polynomial one for the quick ones). Around it: int16 <-> f32, interleaved <->
//! planar, fixed-size input chunks, the filter's delay removed from the front, and
//! an output whose length matches the input's duration exactly once flushed.

use rubato::{
    calculate_cutoff, FastFixedIn, PolynomialDegree, Resampler as _, SincFixedIn,
    SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

/// Input frames the filter takes at a time.
const CHUNK_FRAMES: usize = 480;
/// The largest conversion factor, up or down.
const MAX_RATIO: f64 = 128.0;

/// How much filtering a conversion gets, quickest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Quick,
    Low,
    Medium,
    High,
    VeryHigh,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResampleError {
    #[error("unsupported sample rates {input} -> {output}")]
    Rates { input: f64, output: f64 },
    #[error("unsupported channel count {0}")]
    Channels(usize),
    #[error("{samples} samples do not make whole frames of {channels} channels")]
    PartialFrame { samples: usize, channels: usize },
    #[error("resampling failed: {0}")]
    Filter(String),
}

enum Filter {
    /// Same rate in and out: samples pass through.
    None,
    Sinc(Box<SincFixedIn<f32>>),
    Poly(Box<FastFixedIn<f32>>),
}

pub struct Resampler {
    channels: usize,
    ratio: f64,
    filter: Filter,
    /// Planar input waiting for a whole chunk.
    pending: Vec<Vec<f32>>,
    /// Output frames still to drop: the filter's delay.
    skip: usize,
    frames_in: u64,
    frames_out: u64,
}

impl Resampler {
    pub fn new(
        input_rate: f64,
        output_rate: f64,
        channels: usize,
        quality: Quality,
    ) -> Result<Self, ResampleError> {
        let rates_ok = |r: f64| r.is_finite() && (1.0..=768_000.0).contains(&r);
        if !rates_ok(input_rate) || !rates_ok(output_rate) {
            return Err(ResampleError::Rates {
                input: input_rate,
                output: output_rate,
            });
        }
        if channels == 0 || channels > 32 {
            return Err(ResampleError::Channels(channels));
        }
        let ratio = output_rate / input_rate;
        // Memory and time grow with the ratio for any input: no real conversion goes
        // past it (8 kHz to 768 kHz is 96).
        if !(1.0 / MAX_RATIO..=MAX_RATIO).contains(&ratio) {
            return Err(ResampleError::Rates {
                input: input_rate,
                output: output_rate,
            });
        }
        let filter = if input_rate == output_rate {
            Filter::None
        } else {
            let e = |e: rubato::ResamplerConstructionError| ResampleError::Filter(e.to_string());
            match quality {
                Quality::Quick | Quality::Low => {
                    let degree = if quality == Quality::Quick {
                        PolynomialDegree::Linear
                    } else {
                        PolynomialDegree::Cubic
                    };
                    Filter::Poly(Box::new(
                        FastFixedIn::new(ratio, 1.0, degree, CHUNK_FRAMES, channels).map_err(e)?,
                    ))
                }
                _ => {
                    let (sinc_len, oversampling) = match quality {
                        Quality::Medium => (64, 64),
                        Quality::High => (128, 128),
                        _ => (256, 256),
                    };
                    let window = WindowFunction::BlackmanHarris2;
                    let params = SincInterpolationParameters {
                        sinc_len,
                        f_cutoff: calculate_cutoff(sinc_len, window),
                        oversampling_factor: oversampling,
                        interpolation: SincInterpolationType::Cubic,
                        window,
                    };
                    Filter::Sinc(Box::new(
                        SincFixedIn::new(ratio, 1.0, params, CHUNK_FRAMES, channels).map_err(e)?,
                    ))
                }
            }
        };
        // rubato's sinc filters start half a window early, so their output is
        // already aligned with the input (measured: within a sample); the
        // polynomial ones lag by their reported delay.
        let skip = match &filter {
            Filter::Poly(f) => f.output_delay(),
            _ => 0,
        };
        Ok(Resampler {
            channels,
            ratio,
            filter,
            pending: vec![Vec::new(); channels],
            skip,
            frames_in: 0,
            frames_out: 0,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Takes interleaved samples; returns the interleaved output ready so far.
    pub fn push(&mut self, input: &[i16]) -> Result<Vec<i16>, ResampleError> {
        if !input.len().is_multiple_of(self.channels) {
            return Err(ResampleError::PartialFrame {
                samples: input.len(),
                channels: self.channels,
            });
        }
        self.frames_in += (input.len() / self.channels) as u64;
        if let Filter::None = self.filter {
            self.frames_out += (input.len() / self.channels) as u64;
            return Ok(input.to_vec());
        }
        for frame in input.chunks_exact(self.channels) {
            for (c, s) in frame.iter().enumerate() {
                self.pending[c].push(f32::from(*s) / 32768.0);
            }
        }
        let mut out = Vec::new();
        while self.pending[0].len() >= CHUNK_FRAMES {
            let chunk: Vec<Vec<f32>> = self
                .pending
                .iter_mut()
                .map(|p| p.drain(..CHUNK_FRAMES).collect())
                .collect();
            let planar = self.run(Some(&chunk))?;
            self.emit(planar, &mut out, None);
        }
        Ok(out)
    }

    /// Ends the stream: the rest of the output, so that all of it lasts as long as
    /// all the input did.
    pub fn flush(&mut self) -> Result<Vec<i16>, ResampleError> {
        let mut out = Vec::new();
        if let Filter::None = self.filter {
            return Ok(out);
        }
        let expected = (self.frames_in as f64 * self.ratio).round() as u64;
        let rest: Vec<Vec<f32>> = self.pending.iter_mut().map(std::mem::take).collect();
        if !rest[0].is_empty() {
            let planar = self.run_partial(Some(&rest))?;
            self.emit(planar, &mut out, Some(expected));
        }
        // Silence pushes the filter's delayed tail out.
        let mut rounds = 0;
        while self.frames_out < expected && rounds < 64 {
            let planar = self.run_partial(None)?;
            self.emit(planar, &mut out, Some(expected));
            rounds += 1;
        }
        self.reset();
        Ok(out)
    }

    /// Back to a fresh start, for the next stream.
    fn reset(&mut self) {
        self.skip = match &mut self.filter {
            Filter::Sinc(f) => {
                f.reset();
                0
            }
            Filter::Poly(f) => {
                f.reset();
                f.output_delay()
            }
            Filter::None => 0,
        };
        for p in &mut self.pending {
            p.clear();
        }
        self.frames_in = 0;
        self.frames_out = 0;
    }

    fn run(&mut self, chunk: Option<&Vec<Vec<f32>>>) -> Result<Vec<Vec<f32>>, ResampleError> {
        let e = |e: rubato::ResampleError| ResampleError::Filter(e.to_string());
        match (&mut self.filter, chunk) {
            (Filter::Sinc(f), Some(c)) => f.process(c, None).map_err(e),
            (Filter::Poly(f), Some(c)) => f.process(c, None).map_err(e),
            _ => Ok(vec![Vec::new(); self.channels]),
        }
    }

    fn run_partial(
        &mut self,
        chunk: Option<&Vec<Vec<f32>>>,
    ) -> Result<Vec<Vec<f32>>, ResampleError> {
        let e = |e: rubato::ResampleError| ResampleError::Filter(e.to_string());
        let input = chunk.map(|c| c.as_slice());
        match &mut self.filter {
            Filter::Sinc(f) => f.process_partial(input, None).map_err(e),
            Filter::Poly(f) => f.process_partial(input, None).map_err(e),
            Filter::None => Ok(vec![Vec::new(); self.channels]),
        }
    }

    /// Appends planar output, interleaved, minus the delay still to skip and
    /// anything past `limit` frames in total.
    fn emit(&mut self, planar: Vec<Vec<f32>>, out: &mut Vec<i16>, limit: Option<u64>) {
        let frames = planar.first().map_or(0, Vec::len);
        let start = self.skip.min(frames);
        self.skip -= start;
        let mut end = frames;
        if let Some(limit) = limit {
            let room = limit.saturating_sub(self.frames_out) as usize;
            end = end.min(start + room);
        }
        for i in start..end {
            for ch in &planar {
                out.push(to_i16(ch[i]));
            }
        }
        self.frames_out += (end - start) as u64;
    }
}

fn to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Changes the channel count of interleaved samples: down to mono averages, up
/// from mono copies, otherwise output channel `c` takes input channel `c % from`.
pub fn remix(input: &[i16], from: usize, to: usize) -> Vec<i16> {
    if from == to || from == 0 || to == 0 {
        return input.to_vec();
    }
    let frames = input.len() / from;
    let mut out = Vec::with_capacity(frames * to);
    for frame in input.chunks_exact(from) {
        if to == 1 {
            let sum: i32 = frame.iter().map(|s| i32::from(*s)).sum();
            out.push((sum / from as i32) as i16);
        } else {
            for c in 0..to {
                out.push(frame[c % from]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f64, freq: f64, frames: usize, channels: usize) -> Vec<i16> {
        (0..frames)
            .flat_map(|i| {
                let v = (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin() * 16000.0;
                std::iter::repeat_n(v as i16, channels)
            })
            .collect()
    }

    /// The largest distance, over the middle of the first channel, from the tone
    /// the output should be: same frequency, level and phase (so the filter's
    /// delay was removed).
    fn error_from_ideal(samples: &[i16], rate: f64, channels: usize) -> f64 {
        let ch: Vec<i16> = samples.iter().step_by(channels).copied().collect();
        let (lo, hi) = (ch.len() / 10, ch.len() * 9 / 10);
        (lo..hi)
            .map(|i| {
                let ideal = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate).sin() * 16000.0;
                (f64::from(ch[i]) - ideal).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn every_quality_keeps_the_tone_and_the_duration() {
        for quality in [
            Quality::Quick,
            Quality::Low,
            Quality::Medium,
            Quality::High,
            Quality::VeryHigh,
        ] {
            for (from, to) in [
                (48_000.0, 16_000.0),
                (16_000.0, 48_000.0),
                (44_100.0, 48_000.0),
            ] {
                let input = sine(from, 440.0, from as usize, 2);
                let mut r = Resampler::new(from, to, 2, quality).unwrap();
                let mut out = Vec::new();
                // Uneven pushes, as a real source makes them.
                for piece in input.chunks(2 * 333) {
                    out.extend(r.push(piece).unwrap());
                }
                out.extend(r.flush().unwrap());
                assert_eq!(out.len() / 2, to as usize, "{quality:?} {from}->{to}");
                let err = error_from_ideal(&out, to, 2);
                // Within about one output sample of phase at 16 kHz.
                assert!(err < 3000.0, "{quality:?} {from}->{to}: off by {err:.0}");
                let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
                assert!((15_000..17_500).contains(&peak), "{quality:?}: peak {peak}");
            }
        }
    }

    #[test]
    fn a_flushed_resampler_starts_afresh() {
        let input = sine(48_000.0, 1000.0, 4800, 1);
        let mut fresh = Resampler::new(48_000.0, 16_000.0, 1, Quality::High).unwrap();
        let mut expected = fresh.push(&input).unwrap();
        expected.extend(fresh.flush().unwrap());
        let mut reused = Resampler::new(48_000.0, 16_000.0, 1, Quality::High).unwrap();
        reused.push(&sine(48_000.0, 440.0, 4800, 1)).unwrap();
        reused.flush().unwrap();
        let mut again = reused.push(&input).unwrap();
        again.extend(reused.flush().unwrap());
        assert_eq!(again, expected);
    }

    #[test]
    fn same_rate_passes_through_and_bad_input_is_refused() {
        let mut r = Resampler::new(48_000.0, 48_000.0, 1, Quality::High).unwrap();
        assert_eq!(r.push(&[1, 2, 3]).unwrap(), vec![1, 2, 3]);
        assert!(r.flush().unwrap().is_empty());
        assert!(Resampler::new(0.0, 48_000.0, 1, Quality::High).is_err());
        assert!(Resampler::new(48_000.0, f64::NAN, 1, Quality::High).is_err());
        assert!(Resampler::new(48_000.0, 16_000.0, 0, Quality::High).is_err());
        // Found by fuzzing: 9 Hz to 48 kHz took seconds and memory in proportion.
        assert!(Resampler::new(9.0, 48_000.0, 1, Quality::High).is_err());
        assert!(Resampler::new(768_000.0, 1_000.0, 1, Quality::Quick).is_err());
        assert!(Resampler::new(8_000.0, 768_000.0, 1, Quality::Quick).is_ok());
        let mut r = Resampler::new(48_000.0, 16_000.0, 2, Quality::High).unwrap();
        assert!(matches!(
            r.push(&[1, 2, 3]),
            Err(ResampleError::PartialFrame { .. })
        ));
    }

    #[test]
    fn remixing_averages_down_and_copies_up() {
        assert_eq!(remix(&[100, 300, -50, 50], 2, 1), vec![200, 0]);
        assert_eq!(remix(&[7, 8], 1, 2), vec![7, 7, 8, 8]);
        assert_eq!(remix(&[1, 2, 3, 4], 2, 2), vec![1, 2, 3, 4]);
    }
}
