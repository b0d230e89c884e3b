"""Audio tracks end to end, against a real server: publishing a tone from an
AudioSource, receiving it through AudioStream (checked by its spectrum and level),
with the official SDK on the other side both ways, mixing, mute, unpublish,
subscription control, first-subscription signals, and the bound of a stream's queue.

Tones are 48 kHz mono sines at half of full scale (RMS 0.35); Opus carries them with
their frequency and roughly their level.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, List, Optional, Tuple

import numpy as np

from helpers import Recorder, SignalProxy, settle
from livekit import rtc
from test_interop import official_python

ROOT = Path(__file__).resolve().parents[2]
Join = Callable[..., Awaitable[rtc.Room]]
RATE = 48000
FRAME = RATE // 100
AMPLITUDE = 0.5
MEDIA_TIMEOUT = 30.0


# ---- helpers -------------------------------------------------------------------------


class Tone:
    """A sine published by one of our rooms: AudioSource -> LocalAudioTrack."""

    def __init__(self, room: rtc.Room, freq: float, name: str = "tone") -> None:
        self.room = room
        self.freq = freq
        self.name = name
        self.source: Optional[rtc.AudioSource] = None
        self.track: Optional[rtc.LocalAudioTrack] = None
        self.publication: Optional[rtc.LocalTrackPublication] = None
        self._task: Optional["asyncio.Task[None]"] = None

    async def start(self) -> rtc.LocalTrackPublication:
        self.source = rtc.AudioSource(RATE, 1)
        self.track = rtc.LocalAudioTrack.create_audio_track(self.name, self.source)
        self._task = asyncio.ensure_future(self._play(self.source))
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self.publication = await self.room.local_participant.publish_track(self.track, options)
        return self.publication

    async def _play(self, source: rtc.AudioSource) -> None:
        n = 0
        step = 2 * math.pi * self.freq / RATE
        while True:
            pcm = (AMPLITUDE * 32767 * np.sin(step * np.arange(n, n + FRAME))).astype(np.int16)
            n += FRAME
            await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), RATE, 1, FRAME))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.source is not None:
            await self.source.aclose()
        # Drop our references: the track's handle goes with its last one.
        self.source = self.track = self.publication = None


def pcm_of(frame: rtc.AudioFrame) -> "np.ndarray":
    return np.frombuffer(bytes(frame.data), dtype=np.int16)[:: frame.num_channels].copy()


def rms(samples: "np.ndarray") -> float:
    x = samples.astype(np.float64) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def spectrum(samples: "np.ndarray") -> "np.ndarray":
    x = samples.astype(np.float64) / 32768.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spec[: int(20 * len(x) / RATE) + 1] = 0.0
    return spec


def dominant(samples: "np.ndarray") -> float:
    return float(np.argmax(spectrum(samples))) * RATE / len(samples)


async def read_tone(
    frames: AsyncIterator[Any], seconds: float, timeout: float = MEDIA_TIMEOUT
) -> "np.ndarray":
    """`seconds` of audio from an AudioStream (or a mixer), starting 0.2 s after
    the first audible frame."""
    wanted = int(seconds * RATE)

    async def go() -> "np.ndarray":
        chunks: List["np.ndarray"] = []
        have, settle_left, audible = 0, int(0.2 * RATE), False
        async for item in frames:
            frame = item.frame if isinstance(item, rtc.AudioFrameEvent) else item
            pcm = pcm_of(frame)
            if not audible:
                audible = rms(pcm) > 0.01
                if not audible:
                    continue
            if settle_left > 0:
                settle_left -= len(pcm)
                continue
            chunks.append(pcm)
            have += len(pcm)
            if have >= wanted:
                break
        assert have >= wanted, f"the stream ended after {have / RATE:.2f} s of audio"
        return np.concatenate(chunks)[:wanted]

    return await asyncio.wait_for(go(), timeout)


async def frames_of(stream: rtc.AudioStream) -> AsyncIterator[rtc.AudioFrame]:
    """An AudioStream as the plain frames AudioMixer takes."""
    async for event in stream:
        yield event.frame


async def subscribed_track(
    rec: Recorder, identity: str, timeout: float = MEDIA_TIMEOUT
) -> Tuple[rtc.RemoteAudioTrack, rtc.RemoteTrackPublication, rtc.RemoteParticipant]:
    track, pub, participant = await rec.wait(
        "track_subscribed", lambda t, pub, p: p.identity == identity, timeout=timeout
    )
    assert isinstance(track, rtc.RemoteAudioTrack)
    assert isinstance(pub, rtc.RemoteTrackPublication)
    assert pub.track is track and pub.subscribed
    assert participant.track_publications[pub.sid] is pub
    return track, pub, participant


TRACK_EVENTS = (
    "track_published",
    "track_unpublished",
    "track_subscribed",
    "track_unsubscribed",
    "track_subscription_failed",
    "track_muted",
    "track_unmuted",
    "local_track_published",
    "local_track_unpublished",
    "local_track_subscribed",
)


async def run_peer(*args: str) -> "asyncio.subprocess.Process":
    return await asyncio.create_subprocess_exec(
        official_python(), str(ROOT / "tests" / "interop" / "audio_peer.py"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def finish_peer(peer: "asyncio.subprocess.Process", timeout: float) -> List[Any]:
    try:
        out, err = await asyncio.wait_for(peer.communicate(), timeout)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    lines = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    assert peer.returncode == 0, (lines, err.decode()[-3000:])
    return lines


# ---- publishing and receiving ---------------------------------------------------------


async def test_official_sdk_hears_our_tone(server: Any, token: Any, join: Join) -> None:
    peer = await run_peer(
        "receive", server.url, token("official"), "ours", "--seconds", "2", "--timeout", "60"
    )
    tone: Optional[Tone] = None
    try:
        room = await join("ours")
        rec = Recorder(room, *TRACK_EVENTS)
        tone = Tone(room, 440)
        pub = await tone.start()
        assert pub.kind == rtc.TrackKind.KIND_AUDIO
        assert pub.source == rtc.TrackSource.SOURCE_MICROPHONE
        assert pub.sid.startswith("TR_") and tone.track is not None and tone.track.sid == pub.sid
        assert room.local_participant.track_publications[pub.sid] is pub
        assert pub.track is tone.track
        published = await rec.wait("local_track_published")
        assert published[0] is pub and published[1] is tone.track
        lines = await finish_peer(peer, 70)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
        if tone is not None:
            await tone.stop()
    audio = [x for x in lines if x["event"] == "audio"]
    assert audio, lines
    assert abs(audio[0]["freq"] - 440) <= 10, audio
    assert 0.1 < audio[0]["rms"] < 0.6, audio


async def test_we_hear_the_official_sdks_tone(server: Any, token: Any, join: Join) -> None:
    peer = await run_peer(
        "publish", server.url, token("official"), "ours", "--freq", "440", "--timeout", "60"
    )
    stream: Optional[rtc.AudioStream] = None
    try:
        room = await join("ours")
        rec = Recorder(room, *TRACK_EVENTS)
        track, pub, participant = await subscribed_track(rec, "official")
        published = rec.of("track_published")
        if published:  # the official peer may have published before we joined
            assert published[0][0] is pub and published[0][1] is participant
        assert pub.kind == rtc.TrackKind.KIND_AUDIO and pub.name == "tone"
        assert track.kind == rtc.TrackKind.KIND_AUDIO and track.sid == pub.sid
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        samples = await read_tone(stream, 2.0)
        assert abs(dominant(samples) - 440) <= 10, dominant(samples)
        assert 0.1 < rms(samples) < 0.6, rms(samples)
        await stream.aclose()
        await room.disconnect()  # the peer stops when we leave
        await finish_peer(peer, 30)
    finally:
        if stream is not None:
            await stream.aclose()
        if peer.returncode is None:
            peer.kill()
            await peer.wait()


async def test_two_tones_mixed_from_two_remote_streams(join: Join) -> None:
    a, b = await join("a"), await join("b")
    tone_a, tone_b = Tone(a, 440, "low"), Tone(b, 880, "high")
    streams: List[rtc.AudioStream] = []
    mixer: Optional[rtc.AudioMixer] = None
    try:
        await tone_a.start()
        await tone_b.start()
        c = await join("c")
        rec = Recorder(c, *TRACK_EVENTS)
        track_a, _, _ = await subscribed_track(rec, "a")
        track_b, _, _ = await subscribed_track(rec, "b")
        streams = [rtc.AudioStream(t, sample_rate=RATE, num_channels=1) for t in (track_a, track_b)]
        mixer = rtc.AudioMixer(RATE, 1, blocksize=FRAME, stream_timeout_ms=200)
        for s in streams:
            mixer.add_stream(frames_of(s))
        samples = await read_tone(mixer, 2.0)
        spec = spectrum(samples)
        bin_hz = RATE / len(samples)

        def peak_near(hz: float) -> float:
            k = int(round(hz / bin_hz))
            return float(spec[k - 10 : k + 11].max())

        floor = float(np.median(spec))
        assert peak_near(440) > 50 * floor, (peak_near(440), floor)
        assert peak_near(880) > 50 * floor, (peak_near(880), floor)
        top_two = sorted(np.argsort(spec)[-40:] * bin_hz)
        assert any(abs(f - 440) <= 10 for f in top_two) and any(abs(f - 880) <= 10 for f in top_two)
    finally:
        if mixer is not None:
            await mixer.aclose()
        for s in streams:
            await s.aclose()
        await tone_a.stop()
        await tone_b.stop()


# ---- mute, unpublish, subscription control --------------------------------------------


async def frames_after(
    stream: rtc.AudioStream, grace: float, window: float
) -> Tuple[List["np.ndarray"], bool]:
    """Skips `grace` seconds of the stream, then collects what arrives during
    `window` seconds; also says whether the stream ended."""
    collected: List["np.ndarray"] = []
    ended = False
    start = time.monotonic()

    async def go() -> None:
        nonlocal ended
        async for event in stream:
            if time.monotonic() - start >= grace:
                collected.append(pcm_of(event.frame))
        ended = True

    try:
        await asyncio.wait_for(go(), grace + window)
    except asyncio.TimeoutError:
        pass
    return collected, ended


async def test_mute_and_unmute_reach_the_subscriber(join: Join) -> None:
    a = await join("a")
    tone = Tone(a, 440)
    stream: Optional[rtc.AudioStream] = None
    try:
        pub = await tone.start()
        b = await join("b")
        rec = Recorder(b, *TRACK_EVENTS)
        track, remote_pub, participant = await subscribed_track(rec, "a")
        assert not remote_pub.muted and not track.muted
        stream = rtc.AudioStream(track)
        assert rms(await read_tone(stream, 0.5)) > 0.1

        assert tone.track is not None
        tone.track.mute()
        assert tone.track.muted
        muted = await rec.wait("track_muted", timeout=MEDIA_TIMEOUT)
        assert muted[0] is participant and muted[1] is remote_pub
        assert remote_pub.muted and track.muted
        quiet, _ = await frames_after(stream, grace=0.5, window=1.5)
        # A muted track either stops sending or sends silence.
        assert not quiet or rms(np.concatenate(quiet)) < 0.01, rms(np.concatenate(quiet))

        tone.track.unmute()
        assert not tone.track.muted
        unmuted = await rec.wait("track_unmuted", timeout=MEDIA_TIMEOUT)
        assert unmuted[0] is participant and unmuted[1] is remote_pub
        assert not remote_pub.muted and not track.muted
        assert rms(await read_tone(stream, 0.5)) > 0.1
        assert pub.sid == remote_pub.sid
    finally:
        if stream is not None:
            await stream.aclose()
        await tone.stop()


async def test_unpublish_reaches_both_sides_in_order(join: Join) -> None:
    a = await join("a")
    rec_a = Recorder(a, *TRACK_EVENTS)
    tone = Tone(a, 440)
    stream: Optional[rtc.AudioStream] = None
    try:
        pub = await tone.start()
        b = await join("b")
        rec_b = Recorder(b, *TRACK_EVENTS)
        track, remote_pub, participant = await subscribed_track(rec_b, "a")
        stream = rtc.AudioStream(track)
        await read_tone(stream, 0.2)

        await a.local_participant.unpublish_track(pub.sid)
        assert pub.sid not in a.local_participant.track_publications
        assert pub.track is None
        unpublished = await rec_a.wait("local_track_unpublished")
        assert unpublished[0] is pub

        gone = await rec_b.wait("track_unpublished", timeout=MEDIA_TIMEOUT)
        assert gone[0] is remote_pub and gone[1] is participant
        names = [n for n, _ in rec_b.seen if n in ("track_unsubscribed", "track_unpublished")]
        assert names == ["track_unsubscribed", "track_unpublished"], rec_b.seen
        unsub = rec_b.of("track_unsubscribed")[0]
        assert unsub[0] is track and unsub[1] is remote_pub and unsub[2] is participant
        assert remote_pub.track is None and not remote_pub.subscribed
        assert remote_pub.sid not in participant.track_publications

        # The stream of an unsubscribed track ends.
        async def drain() -> None:
            assert stream is not None
            async for _ in stream:
                pass

        await asyncio.wait_for(drain(), MEDIA_TIMEOUT)
    finally:
        if stream is not None:
            await stream.aclose()
        await tone.stop()


async def test_set_subscribed_stops_and_resumes_the_audio(join: Join) -> None:
    a = await join("a")
    tone = Tone(a, 440)
    streams: List[rtc.AudioStream] = []
    try:
        await tone.start()
        b = await join("b")
        rec = Recorder(b, *TRACK_EVENTS)
        track, remote_pub, participant = await subscribed_track(rec, "a")
        streams.append(rtc.AudioStream(track))
        await read_tone(streams[0], 0.3)

        remote_pub.set_subscribed(False)
        unsub = await rec.wait("track_unsubscribed", timeout=MEDIA_TIMEOUT)
        assert unsub[0] is track and unsub[1] is remote_pub and unsub[2] is participant
        assert not remote_pub.subscribed and remote_pub.track is None
        assert remote_pub.sid in participant.track_publications  # still published
        late, _ = await frames_after(streams[0], grace=0.5, window=1.5)
        assert not late, f"{len(late)} frames after unsubscribing"

        remote_pub.set_subscribed(True)
        again = await rec.wait(
            "track_subscribed", lambda t, p, who: t is not track, timeout=MEDIA_TIMEOUT
        )
        assert again[1] is remote_pub and remote_pub.subscribed
        new_track = again[0]
        assert isinstance(new_track, rtc.RemoteAudioTrack) and new_track.sid == remote_pub.sid
        streams.append(rtc.AudioStream(new_track))
        assert remote_pub.track is new_track
        samples = await read_tone(streams[1], 1.0)
        assert abs(dominant(samples) - 440) <= 10 and rms(samples) > 0.1
    finally:
        for s in streams:
            await s.aclose()
        await tone.stop()


async def test_local_track_subscribed_and_wait_for_subscription(join: Join) -> None:
    a = await join("a")
    rec_a = Recorder(a, *TRACK_EVENTS)
    tone = Tone(a, 440)
    try:
        pub = await tone.start()
        waiter = asyncio.ensure_future(pub.wait_for_subscription())
        await asyncio.sleep(0)
        assert not waiter.done()  # nobody else is in the room yet
        await join("b")
        subscribed = await rec_a.wait("local_track_subscribed", timeout=MEDIA_TIMEOUT)
        assert subscribed[0] is tone.track
        await asyncio.wait_for(waiter, MEDIA_TIMEOUT)
        await asyncio.wait_for(pub.wait_for_subscription(), 1)  # at once from now on
    finally:
        await tone.stop()


async def test_an_unread_stream_holds_at_most_its_capacity(join: Join) -> None:
    a = await join("a")
    tone = Tone(a, 440)
    stream: Optional[rtc.AudioStream] = None
    try:
        await tone.start()
        b = await join("b")
        rec = Recorder(b, *TRACK_EVENTS)
        track, _, _ = await subscribed_track(rec, "a")
        stream = rtc.AudioStream(track, capacity=10)
        await read_tone(stream, 0.1)  # audio flows
        await asyncio.sleep(3.0)  # nobody reads: ~300 frames arrive meanwhile
        assert len(stream._frames) <= 10
        assert stream._dropped >= 100  # the newest were kept, the rest dropped
        # Reading resumes with what was kept, then live audio.
        samples = await read_tone(stream, 0.5)
        assert abs(dominant(samples) - 440) <= 10
    finally:
        if stream is not None:
            await stream.aclose()
        await tone.stop()


async def test_audio_stream_from_participant(join: Join) -> None:
    a = await join("a")
    tone = Tone(a, 880)
    stream: Optional[rtc.AudioStream] = None
    try:
        await tone.start()
        b = await join("b")
        rec = Recorder(b, *TRACK_EVENTS)
        _, _, participant = await subscribed_track(rec, "a")
        stream = rtc.AudioStream.from_participant(
            participant=participant,
            track_source=rtc.TrackSource.SOURCE_MICROPHONE,
            sample_rate=24000,
        )
        samples = await read_tone_at(stream, 24000, 1.0)
        assert abs(float(np.argmax(spectrum(samples))) * 24000 / len(samples) - 880) <= 10
    finally:
        if stream is not None:
            await stream.aclose()
        await tone.stop()


async def read_tone_at(stream: rtc.AudioStream, rate: int, seconds: float) -> "np.ndarray":
    async def go() -> "np.ndarray":
        chunks: List["np.ndarray"] = []
        have = 0
        async for event in stream:
            assert event.frame.sample_rate == rate
            pcm = pcm_of(event.frame)
            if not chunks and rms(pcm) <= 0.01:
                continue
            chunks.append(pcm)
            have += len(pcm)
            if have >= rate * seconds:
                break
        return np.concatenate(chunks)

    return await asyncio.wait_for(go(), MEDIA_TIMEOUT)


async def test_participants_already_publishing_come_with_their_publications(
    join: Join,
) -> None:
    a = await join("a")
    tone = Tone(a, 440)
    try:
        pub = await tone.start()
        b = await join("b")
        # Known from the connect result, before any track event.
        assert await settle(lambda: "a" in b.remote_participants, timeout=MEDIA_TIMEOUT)
        assert await settle(
            lambda: pub.sid in b.remote_participants["a"].track_publications, timeout=MEDIA_TIMEOUT
        )
        remote_pub = b.remote_participants["a"].track_publications[pub.sid]
        assert remote_pub.kind == rtc.TrackKind.KIND_AUDIO and remote_pub.name == "tone"
        assert remote_pub.source == rtc.TrackSource.SOURCE_MICROPHONE
        assert await settle(lambda: remote_pub.track is not None, timeout=MEDIA_TIMEOUT)
    finally:
        await tone.stop()


# ---- examples -------------------------------------------------------------------------


async def test_publish_and_record_examples(server: Any, tmp_path: Path) -> None:
    from lkserver import API_KEY, API_SECRET

    env = dict(
        os.environ,
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        LIVEKIT_ROOM="audio-example-test",
        LIVEKIT_RUN_SECS="30",
    )
    out = tmp_path / "recorded.wav"
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "publish_audio.py"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    recorder = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "record_audio.py"), str(out), "3", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        rec_out, rec_err = await asyncio.wait_for(recorder.communicate(), 60)
        assert recorder.returncode == 0, rec_out.decode() + rec_err.decode()
        assert "wrote 3.0 s" in rec_out.decode(), rec_out.decode()
    finally:
        for proc in (recorder, publisher):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (RATE, 1, 2)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples) > 1000)
    assert len(loud), "the recording is silent"
    tail = samples[loud[0] + RATE // 5 :]
    assert len(tail) >= RATE, f"only {len(tail) / RATE:.2f} s of tone"
    assert abs(dominant(tail) - 440) <= 10, dominant(tail)


async def test_transcription_and_active_speakers_of_a_published_track(join: Join) -> None:
    # The server relays transcriptions from agents only.
    a = await join("a", kind="agent")
    tone = Tone(a, 440)
    try:
        pub = await tone.start()
        b = await join("b")
        rec_b = Recorder(b, *TRACK_EVENTS, "transcription_received", "active_speakers_changed")
        _, remote_pub, participant = await subscribed_track(rec_b, "a")

        # The server relays a transcription of a track that exists.
        segment = rtc.TranscriptionSegment(
            id="s1", text="héllo wörld", start_time=10, end_time=250, language="fr", final=True
        )
        await a.local_participant.publish_transcription(
            rtc.Transcription(participant_identity="a", track_sid=pub.sid, segments=[segment])
        )
        segments, speaker, publication = await rec_b.wait(
            "transcription_received", timeout=MEDIA_TIMEOUT
        )
        assert speaker is participant and publication is remote_pub
        assert [(s.id, s.text, s.start_time, s.end_time, s.language, s.final) for s in segments] == [
            ("s1", "héllo wörld", 10, 250, "fr", True)
        ]

        # A tone at half scale is speech enough for the server's speaker detection.
        (speakers,) = await rec_b.wait(
            "active_speakers_changed",
            lambda s: [p.identity for p in s] == ["a"],
            timeout=MEDIA_TIMEOUT,
        )
        assert speakers[0] is participant
    finally:
        await tone.stop()


async def test_audio_keeps_flowing_across_a_resume(
    server: Any, token: Any, rooms: Any, join: Join
) -> None:
    proxy = await SignalProxy(server.port).start()
    tone: Optional[Tone] = None
    stream: Optional[rtc.AudioStream] = None
    try:
        a = rooms()
        rec_a = Recorder(a, "reconnecting", "reconnected")
        await a.connect(proxy.url, token("a"))
        tone = Tone(a, 440)
        pub = await tone.start()
        b = await join("b")
        rec_b = Recorder(b, *TRACK_EVENTS)
        track, _, _ = await subscribed_track(rec_b, "a")
        stream = rtc.AudioStream(track)
        await read_tone(stream, 0.3)

        session = a.local_participant.sid
        proxy.sever()
        await rec_a.wait("reconnecting", timeout=MEDIA_TIMEOUT)
        await rec_a.wait("reconnected", timeout=MEDIA_TIMEOUT)
        assert a.local_participant.sid == session, "resumed, not rejoined"
        assert a.local_participant.track_publications[pub.sid] is pub

        samples = await read_tone(stream, 1.0)
        assert abs(dominant(samples) - 440) <= 10, dominant(samples)
        assert 0.1 < rms(samples) < 0.6, rms(samples)
        assert not rec_b.of("track_unsubscribed"), rec_b.seen
    finally:
        if stream is not None:
            await stream.aclose()
        if tone is not None:
            await tone.stop()
        await proxy.aclose()
