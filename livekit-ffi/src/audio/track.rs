//! Audio tracks: a local one turns its source's PCM into Opus packets for the
//! publisher connection; a remote one turns the packets the subscriber connection
//! receives into PCM for whoever listens.
//!
//! Each runs as a task of its own, apart from the signal path: the peer task only
//! passes packets through bounded queues, and a listener that falls behind loses
//! frames rather than holding anything up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::jitter::{Jitter, Play};
use super::{
    dbov, remix, AudioPacket, AudioSource, EncodedAudio, OpusDecoder, OpusEncoder, ResampleQuality,
    Resampler, FRAME_SAMPLES, OPUS_RATE, VOICE_DBOV,
};

/// Samples per channel in the 10 ms frames a remote track hands out.
pub const FRAME_10MS: usize = OPUS_RATE as usize / 100;
/// Frames a listener may fall behind before it loses some (500 ms).
const LISTENER_QUEUE: usize = 50;
/// With no packet for this long past the audio played, silence fills in, so that
/// a muted or paused track still produces audio in real time, as a device would.
const SILENCE_AFTER: Duration = Duration::from_millis(60);

/// 10 ms of interleaved PCM at 48 kHz.
#[derive(Debug, Clone)]
pub struct PcmFrame {
    pub samples: Arc<[i16]>,
    pub channels: usize,
}

impl PcmFrame {
    pub const SAMPLE_RATE: u32 = OPUS_RATE;
}

/// Where a room's publisher connection takes encoded audio; replaced when the room
/// opens a new session.
pub type MediaInput = Arc<Mutex<Option<mpsc::Sender<EncodedAudio>>>>;

struct LocalInner {
    cid: String,
    name: String,
    source: AudioSource,
    muted: AtomicBool,
    sending: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for LocalInner {
    fn drop(&mut self) {
        if let Some(task) = self.sending.get_mut().take() {
            task.abort();
        }
    }
}

/// A track fed by an [`AudioSource`]. Cheap to clone.
#[derive(Clone)]
pub struct LocalAudioTrack {
    inner: Arc<LocalInner>,
}

impl std::fmt::Debug for LocalAudioTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAudioTrack")
            .field("cid", &self.inner.cid)
            .field("name", &self.inner.name)
            .finish()
    }
}

impl PartialEq for LocalAudioTrack {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl LocalAudioTrack {
    pub fn new(name: &str, source: AudioSource) -> Self {
        let cid = crate::rpc::random_id();
        Self {
            inner: Arc::new(LocalInner {
                cid,
                name: name.to_owned(),
                source,
                muted: AtomicBool::new(false),
                sending: Mutex::new(None),
            }),
        }
    }

    /// The track's id in our session descriptions, until the server gives a sid.
    pub fn cid(&self) -> &str {
        &self.inner.cid
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn source(&self) -> &AudioSource {
        &self.inner.source
    }

    pub fn stereo(&self) -> bool {
        self.inner.source.channels() >= 2
    }

    pub fn is_muted(&self) -> bool {
        self.inner.muted.load(Ordering::Relaxed)
    }

    /// A muted track sends nothing (the receivers play silence).
    pub fn set_muted(&self, muted: bool) {
        self.inner.muted.store(muted, Ordering::Relaxed);
    }

    /// Starts encoding the source into `to` (the room's publisher); a track sends
    /// to one room at a time.
    pub fn start(&self, to: MediaInput, dtx: bool) {
        let task = tokio::spawn(send(
            Arc::downgrade(&self.inner),
            self.inner.source.subscribe(),
            self.inner.source.sample_rate(),
            self.inner.source.channels(),
            to,
            dtx,
        ));
        if let Some(old) = self.inner.sending.lock().replace(task) {
            old.abort();
        }
    }

    pub fn stop(&self) {
        if let Some(task) = self.inner.sending.lock().take() {
            task.abort();
        }
    }
}

/// The encoding loop of a local track: resample to 48 kHz, cut 20 ms packets,
/// encode, hand over. RTP time follows the wall clock across pauses, as a
/// receiver's playout expects.
async fn send(
    track: std::sync::Weak<LocalInner>,
    mut pcm: mpsc::Receiver<Vec<i16>>,
    rate: u32,
    source_channels: usize,
    to: MediaInput,
    dtx: bool,
) {
    let channels = source_channels.min(2);
    let mut resampler = if rate == OPUS_RATE {
        None
    } else {
        match Resampler::new(
            f64::from(rate),
            f64::from(OPUS_RATE),
            channels,
            ResampleQuality::Medium,
        ) {
            Ok(r) => Some(r),
            Err(e) => return log::error!("audio track cannot resample: {e}"),
        }
    };
    let mut encoder = match OpusEncoder::new(channels, dtx) {
        Ok(e) => e,
        Err(e) => return log::error!("audio track cannot encode: {e}"),
    };
    let packet = FRAME_SAMPLES * channels;
    let mut pending: Vec<i16> = Vec::with_capacity(packet * 2);
    let start = Instant::now();
    let mut rtp_time: Option<u64> = None;
    while let Some(chunk) = pcm.recv().await {
        let chunk = remix(&chunk, source_channels, channels);
        match &mut resampler {
            Some(r) => match r.push(&chunk) {
                Ok(out) => pending.extend(out),
                Err(e) => return log::error!("audio track cannot resample: {e}"),
            },
            None => pending.extend(chunk),
        }
        while pending.len() >= packet {
            let frame: Vec<i16> = pending.drain(..packet).collect();
            let Some(inner) = track.upgrade() else { return };
            let muted = inner.muted.load(Ordering::Relaxed);
            let cid = inner.cid.clone();
            drop(inner);
            let by_clock = start.elapsed().as_micros() as u64 * u64::from(OPUS_RATE) / 1_000_000;
            let by_clock = by_clock - by_clock % FRAME_SAMPLES as u64;
            let time = match rtp_time {
                Some(t) => (t + FRAME_SAMPLES as u64).max(by_clock),
                None => by_clock,
            };
            rtp_time = Some(time);
            if muted {
                continue;
            }
            let level = dbov(&frame);
            let data = match encoder.encode(&frame) {
                Ok(d) => d,
                Err(e) => return log::error!("audio track cannot encode: {e}"),
            };
            let Some(tx) = to.lock().clone() else {
                continue;
            };
            // Full: the connection is behind, and a late packet is worth nothing.
            let _ = tx.try_send(EncodedAudio {
                cid,
                rtp_time: time,
                data,
                level,
                voice: level > VOICE_DBOV,
            });
        }
    }
}

struct RemoteInner {
    sid: String,
    listeners: Mutex<Vec<mpsc::Sender<PcmFrame>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for RemoteInner {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

/// A subscribed remote track. Cheap to clone; decoding stops when the track is
/// unsubscribed (its packets stop) or the last clone is dropped.
#[derive(Clone)]
pub struct RemoteAudioTrack {
    inner: Arc<RemoteInner>,
}

impl std::fmt::Debug for RemoteAudioTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAudioTrack")
            .field("sid", &self.inner.sid)
            .finish()
    }
}

impl PartialEq for RemoteAudioTrack {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl RemoteAudioTrack {
    /// A track decoding what comes through the returned sender.
    pub fn new(sid: &str) -> (Self, mpsc::Sender<AudioPacket>) {
        let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
        let inner = Arc::new(RemoteInner {
            sid: sid.to_owned(),
            listeners: Mutex::new(Vec::new()),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(receive(Arc::downgrade(&inner), rx));
        *inner.task.lock() = Some(task);
        (Self { inner }, tx)
    }

    pub fn sid(&self) -> &str {
        &self.inner.sid
    }

    /// 10 ms frames of the track's audio from now on; a listener that falls
    /// behind loses frames. The channel closes when the track ends.
    pub fn listen(&self) -> mpsc::Receiver<PcmFrame> {
        let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
        self.inner.listeners.lock().push(tx);
        rx
    }

    /// Stops decoding; listeners see their channel close.
    pub fn end(&self) {
        if let Some(task) = self.inner.task.lock().take() {
            task.abort();
        }
        self.inner.listeners.lock().clear();
    }
}

/// Hands a frame to every listener; `false` when nobody is left.
fn deliver(inner: &RemoteInner, frame: PcmFrame) {
    inner
        .listeners
        .lock()
        .retain(|tx| match tx.try_send(frame.clone()) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
}

/// The decoding loop of a remote track: jitter buffer, Opus with concealment,
/// 10 ms frames out, and silence when packets stop.
async fn receive(track: std::sync::Weak<RemoteInner>, mut packets: mpsc::Receiver<AudioPacket>) {
    // Made for the first packet, mono or stereo as it says (the stereo bit of the
    // Opus TOC byte, RFC 6716 3.1): no need to know the publisher's options.
    let mut decoder: Option<OpusDecoder> = None;
    let mut channels = 1;
    let mut frame = FRAME_10MS;
    let mut jitter = Jitter::default();
    let mut plays = Vec::new();
    let mut pending: Vec<i16> = Vec::with_capacity(frame * 24);
    // Wall-clock time up to which audio has been handed out.
    let mut played_until: Option<Instant> = None;
    loop {
        let silence_at = played_until.map(|t| t + SILENCE_AFTER);
        let wake = [jitter.deadline(), silence_at].into_iter().flatten().min();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            p = packets.recv() => match p {
                Some(p) => jitter.push(p, Instant::now(), &mut plays),
                None => break,
            },
            _ = sleep => {
                let now = Instant::now();
                jitter.timeout(now, &mut plays);
                if let Some(until) = played_until {
                    if now >= until + SILENCE_AFTER && plays.is_empty() {
                        // Fill up to now with silence, 10 ms at a time.
                        let missing = now.saturating_duration_since(until).as_millis() / 10;
                        pending.extend(std::iter::repeat_n(0i16, missing as usize * frame));
                        played_until = Some(until + Duration::from_millis(missing as u64 * 10));
                    }
                }
            }
        }
        for play in plays.drain(..) {
            if decoder.is_none() {
                let Play::Decode(data) = &play else { continue };
                channels = if data.first().is_some_and(|toc| toc & 0x04 != 0) {
                    2
                } else {
                    1
                };
                frame = FRAME_10MS * channels;
                match OpusDecoder::new(channels) {
                    Ok(d) => decoder = Some(d),
                    Err(e) => return log::error!("remote audio track cannot decode: {e}"),
                }
            }
            let Some(decoder) = decoder.as_mut() else {
                continue;
            };
            let pcm = match play {
                Play::Decode(data) => decoder.decode(&data),
                Play::Conceal => decoder.conceal(),
            };
            match pcm {
                Ok(pcm) => {
                    let now = Instant::now();
                    let d = Duration::from_micros(
                        (pcm.len() / channels) as u64 * 1_000_000 / u64::from(OPUS_RATE),
                    );
                    played_until = Some(played_until.map_or(now, |t| t.max(now)) + d);
                    pending.extend(pcm);
                }
                Err(e) => log::debug!("undecodable audio packet: {e}"),
            }
        }
        if pending.len() >= frame {
            let Some(inner) = track.upgrade() else { return };
            let whole = pending.len() - pending.len() % frame;
            for chunk in pending[..whole].chunks_exact(frame) {
                deliver(
                    &inner,
                    PcmFrame {
                        samples: chunk.into(),
                        channels,
                    },
                );
            }
            pending.drain(..whole);
        }
    }
    if let Some(inner) = track.upgrade() {
        inner.listeners.lock().clear();
    }
}
