"""Audio benchmark workers: CPU per published and per subscribed track, and
mouth-to-ear latency through the server. Written against the documented
`livekit.rtc` API, so the very same code runs on every stack; bench.py starts the
processes, relays between them and prints the tables.

    audio.py pub      URL KEY SECRET ROOM SECONDS COUNTS   # stack under test
    audio.py listen   URL KEY SECRET ROOM                  # its peer
    audio.py sub      URL KEY SECRET ROOM SECONDS COUNTS   # stack under test
    audio.py feed     URL KEY SECRET ROOM                  # its peer
    audio.py clicktx  URL KEY SECRET ROOM CLICKS INTERVAL QUEUE_MS
    audio.py clickrx  URL KEY SECRET ROOM

CPU is the whole process's (user + system, all threads: `time.process_time()`, i.e.
CLOCK_PROCESS_CPUTIME_ID), so whatever a stack runs on its own threads (libwebrtc's
audio device module, encoder and network threads; our core's tokio tasks) counts.
Each window also reports it by thread name (/proc/self/task/*/stat, 10 ms ticks):
"main" is the thread running the asyncio loop.

pub: joins ROOM alone in its process (`listen`, another process, subscribes to what
it publishes and checks that the tone arrives), measures an idle window of SECONDS,
then for each N of COUNTS (ascending, e.g. "1,4") publishes tracks until it has N,
each a 48 kHz mono 1 kHz tone from its own AudioSource fed 10 ms frames in a loop
(paced by `capture_frame`, which waits while the source's queue is full), lets them
run 2 s, and measures a window of SECONDS.

sub: joins ROOM (where `feed` waits), measures an idle window of SECONDS, then for
each N prints {"event": "want-N"} (bench.py tells `feed` "publish N"), reads every
subscribed track through an AudioStream (48 kHz mono) and, 2 s after the last one
started, measures a window of SECONDS.

clicktx / clickrx: the publisher feeds one track like a microphone: a 10 ms frame is
due every 10 ms of the wall clock and handed to `capture_frame` when due (AudioSource
queue_size_ms=QUEUE_MS). Silence, and on "go" CLICKS clicks every INTERVAL s (every
other one a frame later, so clicks fall in both halves of the 20 ms Opus packets): a
whole frame of 1 kHz at full scale, starting at the frame's first sample. It reports
when each click frame was handed over (`time.time()` just before `capture_frame`) and
the source's `queued_duration` then. The
subscriber reads the track through an AudioStream and finds the first sample past
|x| > THRESHOLD after at least 250 ms without one (the onset). It reports two times
for it: "arrival", when its frame came out of the iterator plus the sample's offset
in the frame, and "ear", when a player fed the frames as they come would play it: the
player plays frames back to back in real time, each from when it has come and the
previous one has ended, and skips silent frames while it is behind. The two differ
when a stack hands out frames in bursts (ours decodes a 20 ms packet into two 10 ms
frames at once: the second plays 10 ms after it came). On both sides a frame's first
sample is taken to be at the time the frame is handed over / played. Both processes
run on one machine, so their clocks agree.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from array import array
from typing import Any, Dict, List, Optional, Tuple

from livekit import rtc

from common import emit, exit_now, leave, loop_commands, token, wait_for_peer, watchdog

RATE = 48000
SAMPLES = RATE // 100  # one 10 ms frame
THRESHOLD = 8000  # onset: |sample| above a quarter of full scale
QUIET = RATE // 4  # samples after an onset before the next one may start
SILENT = 300  # a frame whose samples all stay under this is silence
WARMUP = 2.0


def tone(freq: float, amplitude: float) -> bytes:
    """One 10 ms frame of a sine that starts at phase 0. At 1 kHz a frame holds whole
    periods, so repeating it gives a continuous tone."""
    step = 2 * math.pi * freq / RATE
    return array("h", (round(amplitude * 32767 * math.sin(step * i)) for i in range(SAMPLES))).tobytes()


TONE = tone(1000, 0.3)
CLICK = tone(1000, 1.0)
SILENCE = bytes(2 * SAMPLES)


def thread_times() -> Dict[int, Tuple[str, float]]:
    """CPU seconds (user + sys) of each of this process's threads, by thread id, with
    its name (the main thread is named after the program)."""
    out: Dict[int, Tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def by_thread(before: Dict[int, Tuple[str, float]], after: Dict[int, Tuple[str, float]]) -> Dict[str, float]:
    """CPU seconds spent between two snapshots, summed by thread name (threads that
    ended meanwhile are missed, but the total comes from process_time)."""
    main = os.getpid()
    spent: Dict[str, float] = {}
    for tid, (name, t) in after.items():
        key = "main" if tid == main else name.strip()
        spent[key] = spent.get(key, 0.0) + t - before.get(tid, (name, 0.0))[1]
    return {k: v for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0}


async def window(seconds: float, counted: Any) -> Dict[str, Any]:
    """CPU and wall time over `seconds`, and how far `counted()` moved meanwhile."""
    t0 = thread_times()
    n0, c0, w0 = counted(), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    n1, c1, w1 = counted(), time.process_time(), time.monotonic()
    t1 = thread_times()
    return {"cpu_s": c1 - c0, "wall_s": w1 - w0, "frames": n1 - n0, "threads": len(t1),
            "by_thread": by_thread(t0, t1)}


async def publish_tone(room: rtc.Room, index: int, queue_ms: int = 1000) -> "Feeder":
    source = rtc.AudioSource(RATE, 1, queue_size_ms=queue_ms)
    track = rtc.LocalAudioTrack.create_audio_track(f"tone-{index}", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await room.local_participant.publish_track(track, options)
    return Feeder(source, track)


class Feeder:
    """Feeds a tone into an AudioSource, 10 ms at a time, as fast as it takes them."""

    def __init__(self, source: rtc.AudioSource, track: rtc.LocalAudioTrack) -> None:
        self.source, self.track = source, track
        self.frames = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await self.source.capture_frame(rtc.AudioFrame(TONE, RATE, 1, SAMPLES))
            self.frames += 1


class Reader:
    """Reads one AudioStream, counting frames; every 100th frame is checked for the tone."""

    def __init__(self, track: rtc.Track) -> None:
        self.stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        self.frames = self.checked = self.loud = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self.stream:
            self.frames += 1
            if self.frames % 100 == 0:
                self.checked += 1
                if max(event.frame.data) > 3000:
                    self.loud += 1

    def summary(self) -> Dict[str, int]:
        return {"frames": self.frames, "checked": self.checked, "loud": self.loud}


def read_subscribed(room: rtc.Room) -> Dict[str, Reader]:
    """A Reader for every audio track subscribed from now on, by track sid."""
    readers: Dict[str, Reader] = {}

    def on_track(track: rtc.Track, pub: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and track.sid not in readers:
            readers[track.sid] = Reader(track)

    room.on("track_subscribed", on_track)
    return readers


async def until_stopped(commands: "asyncio.Queue[str]") -> None:
    while (await commands.get()).split()[0] not in ("stop", "eof"):
        pass


# ---- CPU: the stack under test publishes -------------------------------------------------


async def pub(url: str, key: str, secret: str, name: str, seconds: float, counts: List[int]) -> None:
    room = rtc.Room()
    await room.connect(url, token(key, secret, name, "pub"))
    await wait_for_peer(room, "listen", 30)
    await asyncio.sleep(1.0)
    feeders: List[Feeder] = []

    def captured() -> int:
        return sum(f.frames for f in feeders)

    phases: List[Dict[str, Any]] = [{"tracks": 0, **await window(seconds, captured)}]
    emit("phase", **phases[-1])
    for n in counts:
        while len(feeders) < n:
            feeders.append(await publish_tone(room, len(feeders)))
        await asyncio.sleep(WARMUP)
        phases.append({"tracks": n, **await window(seconds, captured)})
        emit("phase", **phases[-1])
    emit("result", phases=phases)
    for f in feeders:
        f.task.cancel()
    await leave(room)
    exit_now()


async def listen(url: str, key: str, secret: str, name: str) -> None:
    commands = loop_commands(asyncio.get_running_loop())
    room = rtc.Room()
    readers = read_subscribed(room)
    await room.connect(url, token(key, secret, name, "listen"))
    emit("ready")
    await until_stopped(commands)
    emit("result", tracks=[r.summary() for r in readers.values()])
    await leave(room)
    exit_now()


# ---- CPU: the stack under test subscribes ------------------------------------------------


async def sub(url: str, key: str, secret: str, name: str, seconds: float, counts: List[int]) -> None:
    room = rtc.Room()
    readers = read_subscribed(room)
    await room.connect(url, token(key, secret, name, "sub"))
    await wait_for_peer(room, "feed", 30)
    await asyncio.sleep(1.0)

    def received() -> int:
        return sum(r.frames for r in readers.values())

    phases: List[Dict[str, Any]] = [{"tracks": 0, **await window(seconds, received)}]
    emit("phase", **phases[-1])
    for n in counts:
        emit(f"want-{n}")
        deadline = time.monotonic() + 30
        while len(readers) < n or any(r.frames == 0 for r in readers.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(readers)} of {n} tracks subscribed and flowing after 30 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(WARMUP)
        before = {sid: r.summary() for sid, r in readers.items()}
        phases.append({"tracks": n, **await window(seconds, received)})
        phases[-1]["loud"] = sum(r.loud - before[sid]["loud"] for sid, r in readers.items())
        phases[-1]["checked"] = sum(r.checked - before[sid]["checked"] for sid, r in readers.items())
        emit("phase", **phases[-1])
    emit("result", phases=phases)
    await leave(room)
    exit_now()


async def feed(url: str, key: str, secret: str, name: str) -> None:
    commands = loop_commands(asyncio.get_running_loop())
    room = rtc.Room()
    await room.connect(url, token(key, secret, name, "feed"))
    emit("ready")
    feeders: List[Feeder] = []
    while True:
        words = (await commands.get()).split()
        if words[0] in ("stop", "eof"):
            break
        if words[0] == "publish":
            n = int(words[1])
            while len(feeders) < n:
                feeders.append(await publish_tone(room, len(feeders)))
            emit(f"published-{n}")
    emit("result", frames=[f.frames for f in feeders])
    await leave(room)
    exit_now()


# ---- latency -----------------------------------------------------------------------------


async def clicktx(url: str, key: str, secret: str, name: str, clicks: int, interval: float, queue_ms: int) -> None:
    loop = asyncio.get_running_loop()
    commands = loop_commands(loop)
    room = rtc.Room()
    await room.connect(url, token(key, secret, name, "clicktx"))
    source = rtc.AudioSource(RATE, 1, queue_size_ms=queue_ms)
    track = rtc.LocalAudioTrack.create_audio_track("clicks", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await room.local_participant.publish_track(track, options)
    emit("publishing")
    go = asyncio.ensure_future(commands.get())
    every = round(interval * 100)  # frames between clicks
    # Odd clicks one frame later, so that clicks start in both halves of the 20 ms
    # Opus packets instead of always in the same one.
    at_frames = {j * every + j % 2 for j in range(clicks)}
    last = max(at_frames)
    sent: List[Dict[str, float]] = []
    late: List[float] = []
    due = time.monotonic()
    frame = 0
    first_click: Optional[int] = None
    while True:
        if first_click is None and go.done():
            if go.result().split()[0] in ("stop", "eof"):
                break
            first_click = frame
        k = frame - first_click if first_click is not None else -1
        if first_click is not None and k > last + 100:
            break  # 1 s of silence after the last click
        click = k in at_frames
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        late.append(time.monotonic() - due)
        data = CLICK if click else SILENCE
        queued = source.queued_duration if click else 0.0
        at = time.time()
        await source.capture_frame(rtc.AudioFrame(data, RATE, 1, SAMPLES))
        if click:
            sent.append({"at": at, "wait": time.time() - at, "queued": queued})
        frame += 1
        due += 0.01
    late.sort()
    emit("done", clicks=sent, late_p50_ms=late[len(late) // 2] * 1000, late_max_ms=late[-1] * 1000)
    await until_stopped(commands)
    await leave(room)
    exit_now()


async def clickrx(url: str, key: str, secret: str, name: str) -> None:
    loop = asyncio.get_running_loop()
    commands = loop_commands(loop)
    room = rtc.Room()
    first: "asyncio.Future[rtc.Track]" = loop.create_future()

    def on_track(track: rtc.Track, pub: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and not first.done():
            first.set_result(track)

    room.on("track_subscribed", on_track)
    await room.connect(url, token(key, secret, name, "clickrx"))
    emit("ready")
    track = await asyncio.wait_for(first, 60)
    onsets: List[Tuple[float, float]] = []  # (ear, arrival)
    state = {"frames": 0, "skipped": 0}

    async def read() -> None:
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        position = 0  # samples received
        quiet_until = 0
        play_end = 0.0  # when the simulated player finishes what it was given
        async for event in stream:
            now = time.time()
            data = event.frame.data
            n = len(data)
            state["frames"] += 1
            if state["frames"] == 100:
                emit("listening")
            top = max(max(data), -min(data))
            # The player: frames back to back in real time, each when it has come and
            # the previous one has played; a silent frame is skipped while behind.
            start = max(now, play_end)
            if top < SILENT and start > now:
                state["skipped"] += 1
            else:
                play_end = start + n / RATE
            if position + n > quiet_until and top > THRESHOLD:
                for i in range(max(0, quiet_until - position), n):
                    if abs(data[i]) > THRESHOLD:
                        onsets.append((start + i / RATE, now + i / RATE))
                        quiet_until = position + i + QUIET
                        break
            position += n

    reader = asyncio.ensure_future(read())
    await until_stopped(commands)
    reader.cancel()
    emit("result", onsets=onsets, frames=state["frames"], skipped=state["skipped"])
    await leave(room)
    exit_now()


def main() -> None:
    role, url, key, secret, name = sys.argv[1:6]
    rest = sys.argv[6:]
    if role in ("pub", "sub"):
        seconds, counts = float(rest[0]), sorted(int(x) for x in rest[1].split(","))
        watchdog(seconds * (len(counts) + 1) + 10 * len(counts) + 300)
        asyncio.run((pub if role == "pub" else sub)(url, key, secret, name, seconds, counts))
    elif role in ("listen", "feed"):
        watchdog(3600)
        asyncio.run((listen if role == "listen" else feed)(url, key, secret, name))
    elif role == "clicktx":
        clicks, interval = int(rest[0]), float(rest[1])
        watchdog(clicks * interval + 600)
        asyncio.run(clicktx(url, key, secret, name, clicks, interval, int(rest[2])))
    elif role == "clickrx":
        watchdog(3600)
        asyncio.run(clickrx(url, key, secret, name))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
