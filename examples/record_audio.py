"""Records the first remote audio track of a room to a WAV file.

    python examples/record_audio.py OUT.wav [SECONDS]

Joins as "recorder", waits for another participant's audio track (one already
published counts), reads it through an AudioStream at 48 kHz mono and writes SECONDS
seconds of it (default 5) to OUT.wav, then leaves. Prints the level it recorded.

Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, e.g. a local server, with
examples/publish_audio.py running in the same room:

    python3 tests/lkserver.py -- python examples/record_audio.py out.wav 5

Optional: LIVEKIT_ROOM (room name, default "audio-demo"), LIVEKIT_IDENTITY (default
"recorder"), LIVEKIT_WAIT_SECS (how long to wait for a track, default 30).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import wave
from array import array

from livekit import api, rtc

RATE = 48000


def make_token(identity: str, room: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return (
        api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity(identity)
        .with_grants(grants)
        .to_jwt()
    )


async def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    url = os.environ["LIVEKIT_URL"]
    room_name = os.environ.get("LIVEKIT_ROOM", "audio-demo")
    identity = os.environ.get("LIVEKIT_IDENTITY", "recorder")
    wait = float(os.environ.get("LIVEKIT_WAIT_SECS", "30"))

    async with rtc.Room() as room:
        first: asyncio.Future[rtc.Track] = asyncio.get_running_loop().create_future()

        @room.on("track_subscribed")
        def on_track(
            track: rtc.Track, pub: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant
        ) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO and not first.done():
                print(f"recording {who.identity}'s track {pub.name!r} ({track.sid})")
                first.set_result(track)

        await room.connect(url, make_token(identity, room_name))
        try:
            track = await asyncio.wait_for(first, wait)
        except asyncio.TimeoutError:
            print(f"no audio track in {room_name} within {wait:.0f} s", file=sys.stderr)
            return 1

        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        wanted = int(seconds * RATE)
        written = 0
        energy = 0.0
        with wave.open(path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            async for event in stream:
                frame = event.frame
                samples = array("h", frame.data[: max(0, wanted - written)])
                out.writeframes(samples.tobytes())
                written += len(samples)
                energy += sum((s / 32768.0) ** 2 for s in samples)
                if written >= wanted:
                    break
        await stream.aclose()
        level = math.sqrt(energy / written) if written else 0.0
        print(f"wrote {written / RATE:.1f} s to {path} (RMS level {level:.3f})")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
