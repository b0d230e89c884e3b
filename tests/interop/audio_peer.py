"""An audio peer for interop tests, written against the official LiveKit Python SDK
(it runs unchanged on ours too). Prints one JSON line per thing it sees.

    audio_peer.py receive URL TOKEN PEER [--seconds S] [--timeout T]
        Waits for PEER's first audio track, reads S seconds of it (after the first
        audible frame) through AudioStream at 48 kHz mono, and prints
        {"event": "audio", "freq": dominant frequency in Hz, "rms": level (1.0 = full
        scale), "seconds": audio analysed}. Exits 0 once done, 1 on timeout.

    audio_peer.py publish URL TOKEN PEER [--freq F] [--amplitude A] [--timeout T]
        Publishes a sine of F Hz (amplitude A of full scale) as a microphone track
        once PEER is in the room, prints {"event": "published", "sid": ...}, and keeps
        playing until PEER leaves (or T seconds pass).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import List, Optional

import numpy as np

from livekit import rtc

RATE = 48000
FRAME = RATE // 100  # 10 ms


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def analyse(samples: "np.ndarray") -> "tuple[float, float]":
    x = samples.astype(np.float64) / 32768.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[: int(20 * len(x) / RATE) + 1] = 0.0  # ignore DC and rumble
    freq = float(np.argmax(spectrum)) * RATE / len(x)
    rms = float(np.sqrt(np.mean(x * x)))
    return freq, rms


async def wait_for_peer(room: rtc.Room, peer: str) -> None:
    while peer not in [p.identity for p in room.remote_participants.values()]:
        await asyncio.sleep(0.05)


async def receive(room: rtc.Room, args: argparse.Namespace) -> int:
    got_track: "asyncio.Future[rtc.Track]" = asyncio.get_running_loop().create_future()

    @room.on("track_subscribed")
    def on_track(
        track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        emit(event="track_subscribed", sid=track.sid, identity=p.identity, kind=int(track.kind))
        is_audio = track.kind == rtc.TrackKind.KIND_AUDIO
        if p.identity == args.peer and is_audio and not got_track.done():
            got_track.set_result(track)

    await room.connect(args.url, args.token)
    # A track subscribed before our handler could see it is already in the room.
    for p in room.remote_participants.values():
        for pub in p.track_publications.values():
            if p.identity == args.peer and pub.track is not None and not got_track.done():
                got_track.set_result(pub.track)
    track = await got_track
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
    chunks: List["np.ndarray"] = []
    wanted = int(args.seconds * RATE)
    have = 0
    settle = int(0.2 * RATE)  # after the first audible frame, let the decoder settle
    audible = False
    async for event in stream:
        frame = event.frame
        pcm = np.frombuffer(bytes(frame.data), dtype=np.int16)[:: frame.num_channels]
        if not audible:
            audible = bool(np.sqrt(np.mean((pcm / 32768.0) ** 2)) > 0.01)
            if not audible:
                continue
        if settle > 0:
            settle -= len(pcm)
            continue
        chunks.append(pcm.copy())
        have += len(pcm)
        if have >= wanted:
            break
    await stream.aclose()
    samples = np.concatenate(chunks)[:wanted]
    freq, rms = analyse(samples)
    emit(event="audio", freq=freq, rms=rms, seconds=len(samples) / RATE)
    return 0


async def publish(room: rtc.Room, args: argparse.Namespace) -> int:
    left = asyncio.Event()

    @room.on("participant_disconnected")
    def on_left(p: rtc.RemoteParticipant) -> None:
        if p.identity == args.peer:
            left.set()

    await room.connect(args.url, args.token)
    await wait_for_peer(room, args.peer)
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await room.local_participant.publish_track(track, options)
    emit(event="published", sid=publication.sid)

    async def play() -> None:
        n = 0
        step = 2 * math.pi * args.freq / RATE
        while True:
            t = np.arange(n, n + FRAME)
            pcm = (args.amplitude * 32767 * np.sin(step * t)).astype(np.int16)
            n += FRAME
            frame = rtc.AudioFrame(pcm.tobytes(), RATE, 1, FRAME)
            await source.capture_frame(frame)

    player = asyncio.ensure_future(play())
    try:
        await left.wait()
    finally:
        player.cancel()
        try:
            await player
        except asyncio.CancelledError:
            pass
        await source.aclose()
    return 0


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["receive", "publish"])
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("peer")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--freq", type=float, default=440.0)
    ap.add_argument("--amplitude", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    room = rtc.Room()
    run = receive if args.mode == "receive" else publish
    code: Optional[int] = None
    try:
        code = await asyncio.wait_for(run(room, args), args.timeout)
    except asyncio.TimeoutError:
        emit(event="timeout")
        code = 1 if args.mode == "receive" else 0
    finally:
        await room.disconnect()
    return code if code is not None else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
