"""A participant on our package for the network fault tests, run inside a network
namespace. It joins a room, then follows JSON commands on stdin and reports JSON
events on stdout, one a line, each with "ev" (its name) and "t" (time.monotonic(),
which all processes of the machine share).

    peer.py URL TOKEN [--connect-timeout S] [--relay] [--ice-server URLS|USER|PASSWORD]...

    --relay         ICE through relays only (RtcConfiguration's ice_transport_type
                    TRANSPORT_RELAY): no host or server-reflexive candidate.
    --ice-server    URL[,URL...]|USERNAME|PASSWORD (repeatable; USERNAME and PASSWORD
                    may be left out): an IceServer in RtcConfiguration's
                    ice_servers (e.g. "turn:10.199.7.1:3479?transport=udp|lkt|secret").

Commands:
    {"cmd": "send", "topic": T, "count": N, "interval": S, "size": B}
        Calls publish_data for reliable packets 0..N-1 on topic T, one every S
        seconds whatever happens to the network (the calls are not awaited one by
        one); each payload starts with its index ("17:") padded to B bytes.
        Reports {"ev": "sent", "topic", "failed", "last_call"} once every call
        has returned.
    {"cmd": "expect", "topic": T, "count": N}
        Reports {"ev": "complete", "topic"} once N packets arrived on topic T.
    {"cmd": "tone", "freq": F}
        Publishes a sine of F Hz (half of full scale) as a microphone track;
        reports {"ev": "published", "sid"}.
    {"cmd": "report"}
        Reports {"ev": "report", "data": {topic: [[index, arrival time], ...]},
        "audio": [[start of a half second, frames with energy, frames], ...],
        "audio_gaps": [[last frame with energy before, seconds without], ...] for
        each time over 0.2 s without the tone (once it came back),
        "state": connection state, "failure_reason": ..., "remotes": [identities]}.
    {"cmd": "paths"}
        Reports {"ev": "paths", "paths": [{"pc": "publisher" | "subscriber",
        "local": candidate type ("relay", "host", ...), "protocol", "relay_protocol"
        ("udp", "tcp", "tls" for a relay), "url" (of the TURN server),
        "address", "remote", "remote_address"}, ...]} for the selected candidate
        pair of each peer connection, from Room.get_rtc_stats; "paths" is null
        (and "error" says why) on a stack without it.
    {"cmd": "close", "how": "disconnect" | "aclose"}
        Leaves; reports {"ev": "closed", "seconds": how long the call took} and
        exits.

Events without a command: "connected" (after the join, with "sid" and "remotes"),
"connection_state" ("state"), "reconnecting", "reconnected", "disconnected"
("reason", "failure_reason"), "participant_connected" / "participant_disconnected"
("identity"), "track_subscribed" ("identity", "sid"), "connect_failed" ("reason",
"message").

The core's log goes to stderr (the test keeps it in a file). The program also runs
on the official SDK (its virtualenv's python), to compare the two stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

from livekit import rtc

RATE = 48000
FRAME = RATE // 100  # 10 ms
AMPLITUDE = 0.5  # RMS 0.35
AUDIBLE = 0.05  # RMS of a frame that carries the tone
AUDIO_SLOT = 0.5  # seconds of received audio counted together
AUDIO_GAP = 0.2  # a longer time without the tone is reported


def failure_name(room: rtc.Room) -> str:
    """The room's failure reason (ours only: the official SDK has none)."""
    reason = getattr(room, "failure_reason", None)
    names = getattr(rtc, "FailureReason", None)
    return names.Name(reason) if reason is not None and names is not None else ""


def enum_name(message: Any, field: str) -> str:
    """The name of enum `field` of a protobuf `message`, lower case, its prefix
    (TRANSPORT_) left out."""
    number = getattr(message, field)
    value = message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number.get(number)
    name = value.name if value is not None else str(number)
    return name.removeprefix("TRANSPORT_").lower()


def selected_paths(pc: str, entries: Any) -> List[Dict[str, Any]]:
    """The selected candidate pair of each transport among the stats `entries` of one
    peer connection, as the "paths" event reports them."""
    by_kind: Dict[str, Dict[str, Any]] = {}
    for entry in entries:
        kind = entry.WhichOneof("stats")
        if kind in ("transport", "candidate_pair", "local_candidate", "remote_candidate"):
            item = getattr(entry, kind)
            by_kind.setdefault(kind, {})[item.rtc.id] = item
    pairs = by_kind.get("candidate_pair", {})
    locals_ = by_kind.get("local_candidate", {})
    remotes = by_kind.get("remote_candidate", {})
    found = []
    for transport in by_kind.get("transport", {}).values():
        pair = pairs.get(transport.transport.selected_candidate_pair_id)
        if pair is None:
            continue
        local = locals_.get(pair.candidate_pair.local_candidate_id)
        remote = remotes.get(pair.candidate_pair.remote_candidate_id)
        path: Dict[str, Any] = {"pc": pc}
        if local is not None:
            c = local.candidate
            kind = enum_name(c, "candidate_type")
            path.update(
                local=kind,
                protocol=c.protocol,
                relay_protocol=enum_name(c, "relay_protocol") if kind == "relay" else "",
                url=c.url,
                address=f"{c.address}:{c.port}",
            )
        if remote is not None:
            c = remote.candidate
            path.update(
                remote=enum_name(c, "candidate_type"), remote_address=f"{c.address}:{c.port}"
            )
        found.append(path)
    return found


def emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, "t": round(time.monotonic(), 4), **fields}), flush=True)


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.room = rtc.Room()
        self.received: Dict[str, List[Tuple[int, float]]] = {}
        self.expected: Dict[str, int] = {}
        self.completed: Set[str] = set()
        # start of a slot of AUDIO_SLOT seconds -> [frames with energy, frames]
        self.audio: Dict[float, List[int]] = {}
        # [last audible frame before, silence] of each silence over AUDIO_GAP
        self.gaps: List[Tuple[float, float]] = []
        self.last_audible: Optional[float] = None
        self.tasks: Set["asyncio.Task[Any]"] = set()
        self.tone_source: Optional[rtc.AudioSource] = None
        self._hook_events()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _hook_events(self) -> None:
        room = self.room

        @room.on("data_received")
        def on_data(packet: rtc.DataPacket) -> None:
            topic = packet.topic or ""
            head = bytes(packet.data).split(b":", 1)[0]
            try:
                index = int(head)
            except ValueError:
                index = -1
            got = self.received.setdefault(topic, [])
            got.append((index, round(time.monotonic(), 4)))
            want = self.expected.get(topic)
            if want is not None and topic not in self.completed and len(got) >= want:
                self.completed.add(topic)
                emit("complete", topic=topic)

        @room.on("connection_state_changed")
        def on_state(state: rtc.ConnectionState.ValueType) -> None:
            emit("connection_state", state=rtc.ConnectionState.Name(state))

        @room.on("reconnecting")
        def on_reconnecting() -> None:
            emit("reconnecting")

        @room.on("reconnected")
        def on_reconnected() -> None:
            emit("reconnected")

        @room.on("disconnected")
        def on_disconnected(reason: int) -> None:
            emit("disconnected", reason=int(reason), failure_reason=failure_name(room))

        @room.on("participant_connected")
        def on_joined(p: rtc.RemoteParticipant) -> None:
            emit("participant_connected", identity=p.identity)

        @room.on("participant_disconnected")
        def on_left(p: rtc.RemoteParticipant) -> None:
            emit("participant_disconnected", identity=p.identity)

        @room.on("track_subscribed")
        def on_track(
            track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
        ) -> None:
            emit("track_subscribed", identity=p.identity, sid=track.sid)
            if track.kind == rtc.TrackKind.KIND_AUDIO:
                self.spawn(self.listen(track))

    async def listen(self, track: rtc.Track) -> None:
        """Counts the frames of `track` that carry the tone, per half second."""
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        try:
            async for event in stream:
                frame = event.frame
                pcm = np.frombuffer(bytes(frame.data), dtype=np.int16)[:: frame.num_channels]
                x = pcm.astype(np.float64) / 32768.0
                level = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
                now = time.monotonic()
                slot = math.floor(now / AUDIO_SLOT) * AUDIO_SLOT
                counts = self.audio.setdefault(slot, [0, 0])
                counts[0] += level > AUDIBLE
                counts[1] += 1
                if level > AUDIBLE:
                    last = self.last_audible
                    if last is not None and now - last > AUDIO_GAP:
                        self.gaps.append((round(last, 3), round(now - last, 3)))
                    self.last_audible = now
        finally:
            await stream.aclose()

    async def send(self, topic: str, count: int, interval: float, size: int) -> None:
        lp = self.room.local_participant
        calls: List["asyncio.Future[None]"] = []
        start = time.monotonic()
        for i in range(count):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            payload = f"{i}:".encode().ljust(size, b".")
            call = lp.publish_data(payload, reliable=True, topic=topic)
            calls.append(asyncio.ensure_future(call))
        last_call = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [repr(r) for r in results if isinstance(r, BaseException)]
        emit(
            "sent",
            topic=topic,
            count=count,
            failed=len(failed),
            errors=failed[:3],
            last_call=round(last_call, 4),
        )

    async def tone(self, freq: float) -> None:
        source = self.tone_source = rtc.AudioSource(RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self.spawn(self.play(source, freq))
        publication = await self.room.local_participant.publish_track(track, options)
        emit("published", sid=publication.sid)

    async def play(self, source: rtc.AudioSource, freq: float) -> None:
        n = 0
        step = 2 * math.pi * freq / RATE
        while True:
            pcm = (AMPLITUDE * 32767 * np.sin(step * np.arange(n, n + FRAME))).astype(np.int16)
            n += FRAME
            await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), RATE, 1, FRAME))

    def report(self) -> None:
        emit(
            "report",
            data={topic: got for topic, got in self.received.items()},
            audio=[[round(s, 1), c[0], c[1]] for s, c in sorted(self.audio.items())],
            audio_gaps=self.gaps,
            state=rtc.ConnectionState.Name(self.room.connection_state),
            failure_reason=failure_name(self.room),
            remotes=sorted(p.identity for p in self.room.remote_participants.values()),
        )

    async def paths(self) -> None:
        get_stats = getattr(self.room, "get_rtc_stats", None)
        if get_stats is None:
            emit("paths", paths=None, error="no Room.get_rtc_stats")
            return
        try:
            stats = await get_stats()
        except Exception as e:  # noqa: BLE001 - reported, not raised
            emit("paths", paths=None, error=repr(e))
            return
        found = selected_paths("publisher", stats.publisher_stats)
        found += selected_paths("subscriber", stats.subscriber_stats)
        emit("paths", paths=found)

    async def close(self, how: str) -> None:
        started = time.monotonic()
        if how == "aclose":
            await self.room.aclose()  # ours (the official SDK has only disconnect)
        else:
            await self.room.disconnect()
        emit("closed", how=how, seconds=round(time.monotonic() - started, 3))

    async def run(self) -> int:
        options = rtc.RoomOptions()
        if self.args.connect_timeout:
            options.connect_timeout = self.args.connect_timeout
        if self.args.relay or self.args.ice_server:
            config = rtc.RtcConfiguration()
            if self.args.relay:
                config.ice_transport_type = rtc.IceTransportType.TRANSPORT_RELAY
            config.ice_servers = [ice_server(spec) for spec in self.args.ice_server]
            options.rtc_config = config
        try:
            await self.room.connect(self.args.url, self.args.token, options)
        except rtc.ConnectError as e:
            reason = getattr(e, "reason", None)
            names = getattr(rtc, "FailureReason", None)
            name = names.Name(reason) if reason is not None and names is not None else ""
            emit("connect_failed", reason=name, message=e.message)
            return 1
        emit(
            "connected",
            sid=self.room.local_participant.sid,
            remotes=sorted(p.identity for p in self.room.remote_participants.values()),
        )
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                what = cmd.pop("cmd")
                if what == "send":
                    size = cmd.get("size", 64)
                    self.spawn(self.send(cmd["topic"], cmd["count"], cmd["interval"], size))
                elif what == "expect":
                    topic = cmd["topic"]
                    self.expected[topic] = cmd["count"]
                    have = len(self.received.get(topic, []))
                    if have >= cmd["count"] and topic not in self.completed:
                        self.completed.add(topic)
                        emit("complete", topic=topic)
                elif what == "tone":
                    self.spawn(self.tone(cmd.get("freq", 440.0)))
                elif what == "report":
                    self.report()
                elif what == "paths":
                    self.spawn(self.paths())
                elif what == "close":
                    await self.close(cmd.get("how", "disconnect"))
                    return 0
                else:
                    emit("error", message=f"unknown command {what!r}")
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.tone_source is not None:
                await self.tone_source.aclose()
            await self.room.disconnect()
        return 0


def ice_server(spec: str) -> rtc.IceServer:
    """An IceServer of "URL[,URL...]|USERNAME|PASSWORD"."""
    urls, _, rest = spec.partition("|")
    username, _, password = rest.partition("|")
    server = rtc.IceServer(urls=[u for u in urls.split(",") if u])
    if username:
        server.username = username
    if password:
        server.password = password
    return server


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("--connect-timeout", type=float, default=0.0)
    ap.add_argument("--relay", action="store_true", help="relay candidates only")
    ap.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URLS|USER|PASSWORD",
        help="an ICE server, URLs separated by commas (repeatable)",
    )
    args = ap.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )

    async def run() -> int:
        # The official SDK's Room takes the running loop when it is made.
        return await Peer(args).run()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
