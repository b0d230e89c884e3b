"""GIL-hold benchmark: are reliable packets delivered across a long GIL hold?

A sender publishes a reliable 100-byte packet every INTERVAL seconds; a receiver, in
another process, keeps the GIL on its event-loop thread for HOLD seconds
(`ctypes.PyDLL(None).sleep`: a PyDLL call does not release the GIL) starting
HOLD_AFTER seconds after its first packet, then reports what arrived.

    hold.py recv URL KEY SECRET ROOM HOLD_AFTER HOLD EXPECTED
    hold.py send URL KEY SECRET ROOM COUNT INTERVAL

Packet: index (u32) and the sender's CLOCK_MONOTONIC send time (f64), padded to 100
bytes; both processes run on one machine, so send and arrival times compare directly.

recv prints {"event": "ready"} once connected, {"event": "complete"} once every packet
arrived, and {"event": "result", ...} on "stop". send prints {"event": "done", ...}
when it has sent everything and {"event": "result", ...} on "stop".
"""

from __future__ import annotations

import asyncio
import ctypes
import struct
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from livekit import rtc

from common import emit, exit_now, leave, loop_commands, token, wait_for_peer, watchdog

TOPIC = "bench-hold"
SIZE = 100
HEADER = struct.Struct("!Id")
# A packet arriving later than this after it was sent is still backlog.
LIVE_LATENCY = 0.25


def hold_gil(seconds: int) -> None:
    """Blocks this thread for `seconds` with the GIL held."""
    libc = ctypes.PyDLL(None)
    libc.sleep.argtypes = [ctypes.c_uint]
    libc.sleep.restype = ctypes.c_uint
    left = seconds
    while left:  # sleep() returns early, with what is left, if a signal arrives
        left = libc.sleep(left)


async def receive(url: str, key: str, secret: str, name: str, hold_after: float, hold: int, expected: int) -> None:
    loop = asyncio.get_running_loop()
    commands = loop_commands(loop)
    room = rtc.Room()
    arrivals: List[Tuple[int, float, float]] = []  # (index, arrived, sent)
    seen: set[int] = set()
    events: List[Tuple[str, float]] = []  # room events, CLOCK_MONOTONIC
    span: Dict[str, float] = {}
    announced = False

    def do_hold() -> None:
        span["start"] = time.monotonic()
        hold_gil(hold)
        span["end"] = time.monotonic()

    def on_data(packet: rtc.DataPacket) -> None:
        nonlocal announced
        if packet.topic != TOPIC:
            return
        now = time.monotonic()
        index, sent = HEADER.unpack_from(packet.data)
        if not arrivals:
            loop.call_later(hold_after, do_hold)
        arrivals.append((index, now, sent))
        seen.add(index)
        if len(seen) >= expected and not announced:
            announced = True
            emit("complete")

    def note(name: str) -> Any:
        return lambda *_: events.append((name, time.monotonic()))

    room.on("data_received", on_data)
    for event in ("reconnecting", "reconnected", "disconnected"):
        room.on(event, note(event))
    await room.connect(url, token(key, secret, name, "rx"))
    emit("ready")
    while (await commands.get()).split()[0] not in ("stop", "eof"):
        pass

    first_seen: set[int] = set()
    duplicates = 0
    in_order = True
    last = -1
    for index, _, _ in arrivals:
        if index in first_seen:
            duplicates += 1
            continue
        first_seen.add(index)
        in_order = in_order and index > last
        last = max(last, index)
    start = arrivals[0][1] if arrivals else None
    end = span.get("end")
    catch_up: Optional[float] = None
    drained: Optional[float] = None
    if end is not None:
        live = [a for _, a, s in arrivals if a >= end and a - s < LIVE_LATENCY]
        catch_up = live[0] - end if live else None
        backlog = [a for _, a, s in arrivals if s < end]
        drained = max(backlog) - end if backlog else None
    emit(
        "result",
        received=len(first_seen),
        duplicates=duplicates,
        in_order=in_order,
        first_arrival_at=start,
        hold_start_at=span.get("start"),
        hold_end_at=end,
        catch_up_s=catch_up,
        backlog_drained_s=drained,
        events=events,
        connected=room.isconnected(),
    )
    await leave(room)
    exit_now()


async def send(url: str, key: str, secret: str, name: str, count: int, interval: float) -> None:
    loop = asyncio.get_running_loop()
    commands = loop_commands(loop)
    room = rtc.Room()
    rx_events: List[Tuple[str, float]] = []

    def on_left(p: rtc.RemoteParticipant) -> None:
        if p.identity == "rx":
            rx_events.append(("left", time.monotonic()))

    def on_joined(p: rtc.RemoteParticipant) -> None:
        if p.identity == "rx":
            rx_events.append(("joined", time.monotonic()))

    room.on("participant_disconnected", on_left)
    room.on("participant_connected", on_joined)
    await room.connect(url, token(key, secret, name, "tx"))
    await wait_for_peer(room, "rx", 30)
    await asyncio.sleep(0.5)
    sent = failed = 0
    errors: set[str] = set()
    pad = b"-" * (SIZE - HEADER.size)
    start = time.monotonic()
    for i in range(count):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        payload = HEADER.pack(i, time.monotonic()) + pad
        try:
            await asyncio.wait_for(
                room.local_participant.publish_data(payload, reliable=True, topic=TOPIC), 5
            )
            sent += 1
        except Exception as e:  # noqa: BLE001 - counted and reported
            failed += 1
            errors.add(repr(e)[:160])
    emit("done", sent=sent, seconds=time.monotonic() - start)
    while (await commands.get()).split()[0] not in ("stop", "eof"):
        pass
    emit(
        "result",
        sent=sent,
        failed=failed,
        errors=sorted(errors)[:5],
        started_at=start,
        rx_events=rx_events,
    )
    await leave(room)
    exit_now()


def main() -> None:
    role, url, key, secret, name = sys.argv[1:6]
    rest = sys.argv[6:]
    if role == "recv":
        hold_after, hold, expected = float(rest[0]), int(rest[1]), int(rest[2])
        watchdog(hold_after + hold + 600)
        asyncio.run(receive(url, key, secret, name, hold_after, hold, expected))
    elif role == "send":
        count, interval = int(rest[0]), float(rest[1])
        watchdog(count * interval + 600)
        asyncio.run(send(url, key, secret, name, count, interval))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
