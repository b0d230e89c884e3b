//! An audio source: the application pushes PCM in, a real-time clock takes it out.
//!
//! The queue holds at most `queue_size_ms` of audio; `capture` waits while it is
//! full, which is the application's backpressure (never unbounded buffering). A
//! task takes 10 ms out every 10 ms, whether or not anything listens, so that a
//! source plays out at real time like a microphone; what it takes goes to the
//! sinks (the tracks sending it), or nowhere.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

/// How much audio the clock takes at a time.
pub const TICK: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("invalid audio source: {0}")]
    Invalid(&'static str),
    #[error("{samples} samples do not make whole frames of {channels} channels")]
    PartialFrame { samples: usize, channels: usize },
    #[error("the audio source was closed")]
    Closed,
}

struct State {
    queue: VecDeque<i16>,
    sinks: Vec<mpsc::Sender<Vec<i16>>>,
    closed: bool,
}

struct Inner {
    sample_rate: u32,
    channels: usize,
    /// Queue bound, in samples (all channels).
    capacity: usize,
    state: Mutex<State>,
    /// Woken when the clock takes audio out, or the queue is cleared.
    room: Notify,
}

/// Cheap to clone; the clock stops when the last clone is dropped.
#[derive(Clone)]
pub struct AudioSource {
    inner: Arc<Inner>,
}

impl AudioSource {
    /// Must be called inside a tokio runtime (the clock is a task of it).
    pub fn new(sample_rate: u32, channels: usize, queue_size_ms: u32) -> Result<Self, SourceError> {
        if !(1_000..=384_000).contains(&sample_rate) {
            return Err(SourceError::Invalid("sample rate"));
        }
        if channels == 0 || channels > 8 {
            return Err(SourceError::Invalid("channel count"));
        }
        let per_tick = Self::tick_samples(sample_rate, channels);
        // At least one tick of room, so a source always drains.
        let capacity =
            (sample_rate as usize * channels * queue_size_ms as usize / 1000).max(per_tick);
        let inner = Arc::new(Inner {
            sample_rate,
            channels,
            capacity,
            state: Mutex::new(State {
                // Room for a second at most now, the rest as audio comes: reserved
                // whole, a queue of `u32::MAX` ms aborted the process (fuzzing).
                queue: VecDeque::with_capacity(capacity.min(sample_rate as usize * channels)),
                sinks: Vec::new(),
                closed: false,
            }),
            room: Notify::new(),
        });
        tokio::spawn(clock(Arc::downgrade(&inner), per_tick));
        Ok(AudioSource { inner })
    }

    fn tick_samples(sample_rate: u32, channels: usize) -> usize {
        (sample_rate as usize / 100).max(1) * channels
    }

    pub fn sample_rate(&self) -> u32 {
        self.inner.sample_rate
    }

    pub fn channels(&self) -> usize {
        self.inner.channels
    }

    /// Queues interleaved samples, waiting while the queue is full. Cancel-safe:
    /// what was queued before a cancellation stays queued.
    pub async fn capture(&self, pcm: &[i16]) -> Result<(), SourceError> {
        let channels = self.inner.channels;
        if !pcm.len().is_multiple_of(channels) {
            return Err(SourceError::PartialFrame {
                samples: pcm.len(),
                channels,
            });
        }
        let mut rest = pcm;
        while !rest.is_empty() {
            let room = self.inner.room.notified();
            {
                let mut s = self.inner.state.lock();
                if s.closed {
                    return Err(SourceError::Closed);
                }
                let free = self.inner.capacity.saturating_sub(s.queue.len());
                // Whole frames only.
                let take = (free - free % channels).min(rest.len());
                s.queue.extend(&rest[..take]);
                rest = &rest[take..];
            }
            if !rest.is_empty() {
                room.await;
            }
        }
        Ok(())
    }

    /// Drops what is queued and not played yet.
    pub fn clear(&self) {
        self.inner.state.lock().queue.clear();
        self.inner.room.notify_waiters();
    }

    /// Audio waiting to be played out.
    pub fn queued(&self) -> Duration {
        let samples = self.inner.state.lock().queue.len();
        let frames = samples / self.inner.channels;
        Duration::from_secs_f64(frames as f64 / f64::from(self.inner.sample_rate))
    }

    /// Where the played-out audio goes, 10 ms at a time (interleaved, at the
    /// source's rate); a sink that falls behind misses chunks rather than
    /// holding the clock up.
    pub fn subscribe(&self) -> mpsc::Receiver<Vec<i16>> {
        let (tx, rx) = mpsc::channel(50);
        self.inner.state.lock().sinks.push(tx);
        rx
    }

    /// Ends the source: waiting captures fail, the clock stops.
    pub fn close(&self) {
        let mut s = self.inner.state.lock();
        s.closed = true;
        s.queue.clear();
        s.sinks.clear();
        drop(s);
        self.inner.room.notify_waiters();
    }
}

/// Takes one tick of audio out per tick of real time while the source lives.
async fn clock(source: Weak<Inner>, per_tick: usize) {
    let mut ticker = tokio::time::interval(TICK);
    // Catch up after a stall so the average rate stays real time.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        ticker.tick().await;
        let Some(inner) = source.upgrade() else {
            return;
        };
        let chunk: Vec<i16> = {
            let mut s = inner.state.lock();
            if s.closed {
                return;
            }
            let n = per_tick.min(s.queue.len());
            let chunk: Vec<i16> = s.queue.drain(..n).collect();
            if !chunk.is_empty() {
                s.sinks.retain(|tx| match tx.try_send(chunk.clone()) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
            }
            chunk
        };
        if !chunk.is_empty() {
            inner.room.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn captures_wait_while_the_queue_is_full_and_play_out_in_real_time() {
        let source = AudioSource::new(48_000, 1, 100).unwrap();
        let mut sink = source.subscribe();
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < 48_000 {
                let chunk = tokio::time::timeout(Duration::from_secs(2), sink.recv())
                    .await
                    .expect("audio keeps coming")
                    .expect("sink open");
                assert!(chunk.len() <= 480 && chunk.iter().all(|s| *s == 1000));
                got += chunk.len();
            }
        });
        let t0 = Instant::now();
        // One second of audio in 50 ms frames through a 100 ms queue.
        for _ in 0..20 {
            source.capture(&[1000i16; 2400]).await.unwrap();
        }
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(800), "{took:?}");
        assert!(took <= Duration::from_millis(2000), "{took:?}");
        assert!(source.queued() <= Duration::from_millis(100));
        reader.await.unwrap();
        assert_eq!(source.queued(), Duration::ZERO);
    }

    #[tokio::test]
    async fn clear_frees_room_at_once_and_close_ends_waiting_captures() {
        let source = AudioSource::new(16_000, 2, 100).unwrap();
        source.capture(&[0i16; 3200]).await.unwrap();
        assert_eq!(source.queued(), Duration::from_millis(100));
        source.clear();
        assert_eq!(source.queued(), Duration::ZERO);
        let t0 = Instant::now();
        source.capture(&[0i16; 3200]).await.unwrap();
        assert!(t0.elapsed() < Duration::from_millis(50));
        let waiting = {
            let s = source.clone();
            tokio::spawn(async move { s.capture(&[0i16; 32_000]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        source.close();
        assert_eq!(waiting.await.unwrap(), Err(SourceError::Closed));
        assert!(matches!(
            source.capture(&[0i16; 3]).await,
            Err(SourceError::PartialFrame { .. })
        ));
        assert!(AudioSource::new(0, 1, 100).is_err());
        assert!(AudioSource::new(48_000, 0, 100).is_err());
    }
}
