"""Publishes audio to a room: a 440 Hz tone, or a WAV file (16-bit PCM) when given.

    python examples/publish_audio.py [FILE.wav]

Joins as "publisher" and publishes one microphone track fed by an AudioSource, 10 ms
at a time: `capture_frame` waits while the source's queue is full, which paces the
loop in real time. Plays for LIVEKIT_RUN_SECS seconds (default 10; a WAV file stops
at its end), then unpublishes and leaves.

Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, e.g. a local server:

    python3 tests/lkserver.py -- python examples/publish_audio.py

Optional: LIVEKIT_ROOM (room name, default "audio-demo"), LIVEKIT_IDENTITY (default
"publisher").
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import wave
from array import array
from typing import Iterator, Optional

from livekit import api, rtc


def make_token(identity: str, room: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True)
    return (
        api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity(identity)
        .with_grants(grants)
        .to_jwt()
    )


def tone(rate: int, freq: float = 440.0, amplitude: float = 0.3) -> Iterator[bytes]:
    """Endless 10 ms chunks of a mono sine, as int16 bytes."""
    n = 0
    per_chunk = rate // 100
    step = 2 * math.pi * freq / rate
    while True:
        samples = (int(amplitude * 32767 * math.sin(step * i)) for i in range(n, n + per_chunk))
        chunk = array("h", samples)
        n += per_chunk
        yield chunk.tobytes()


def wav_chunks(wav: wave.Wave_read) -> Iterator[bytes]:
    """10 ms chunks of a WAV file's interleaved int16 samples (the last may be short)."""
    per_chunk = wav.getframerate() // 100
    while True:
        data = wav.readframes(per_chunk)
        if not data:
            return
        yield data


async def main() -> int:
    url = os.environ["LIVEKIT_URL"]
    room_name = os.environ.get("LIVEKIT_ROOM", "audio-demo")
    identity = os.environ.get("LIVEKIT_IDENTITY", "publisher")
    seconds = float(os.environ.get("LIVEKIT_RUN_SECS", "10"))
    path: Optional[str] = sys.argv[1] if len(sys.argv) > 1 else None

    wav: Optional[wave.Wave_read] = None
    if path is not None:
        wav = wave.open(path, "rb")
        if wav.getsampwidth() != 2:
            print(f"{path}: only 16-bit PCM WAV files are supported", file=sys.stderr)
            return 2
        rate, channels = wav.getframerate(), wav.getnchannels()
        chunks = wav_chunks(wav)
        what = f"{path} ({rate} Hz, {channels} channel(s))"
    else:
        rate, channels = 48000, 1
        chunks = tone(rate)
        what = "a 440 Hz tone"

    async with rtc.Room() as room:

        @room.on("local_track_subscribed")
        def on_subscribed(track: rtc.Track) -> None:
            print(f"someone subscribed to {track.name}")

        await room.connect(url, make_token(identity, room_name))
        source = rtc.AudioSource(rate, channels)
        track = rtc.LocalAudioTrack.create_audio_track("audio", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await room.local_participant.publish_track(track, options)
        print(f"publishing {what} as track {publication.sid} in {room.name}")

        played = 0.0
        for data in chunks:
            if played >= seconds:
                break
            samples = len(data) // (2 * channels)
            await source.capture_frame(rtc.AudioFrame(data, rate, channels, samples))
            played += samples / rate
        await source.wait_for_playout()
        print(f"played {played:.1f} s")

        await room.local_participant.unpublish_track(publication.sid)
        await source.aclose()
    if wav is not None:
        wav.close()
    print("done")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
