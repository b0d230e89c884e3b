"""A sender or a receiver of a steady stream of reliable packets, where the receiver
freezes its Python side for a while in the middle of the stream.

Written only against the documented `livekit.rtc` API, so the same file runs on the
official SDK (its virtualenv's python) and on our package.

    hold_peer.py URL TOKEN PEER_IDENTITY --role sender|receiver
                 [--count N] [--interval S] [--topic T]
                 [--hold gil|loop|none] [--hold-seconds S] [--hold-after S]
                 [--grace S] [--timeout S]

Before the stream the two shake hands, so that no packet is sent before the receiver
can tell who sent it: the sender repeats a packet on topic `<T>-sync` until the
receiver, having received one from the sender it knows, answers on `<T>-ready`.

sender:   waits for PEER and the handshake, publishes `seq-0` .. `seq-<N-1>`
          (reliable, topic T) one every `--interval` seconds, then waits for the
          receiver's report (topic `<T>-done`) and leaves first.
receiver: waits for PEER and the handshake, collects the sender's packets on topic T;
          `--hold-after` seconds after the first one it freezes for `--hold-seconds`:
            gil:  a C call made with the GIL held (ctypes.PyDLL -> libc sleep), so no
                  Python thread runs;
            loop: time.sleep() on the event loop, so the loop is stuck but the GIL free.
          It stops when it has every packet, or `--grace` seconds after the sender's
          last packet was due, reports to the sender, waits for it to leave, then
          leaves.

Every line on stdout is one JSON object with "event" and "t" (seconds since start);
the last one is the summary:
    {"event": "done", "role": "receiver", "received": [...payloads...], ...}
    {"event": "done", "role": "sender", "sent": N, "disconnected": [...], ...}
"disconnected" lists the identities seen leaving before the run wound down (for the
sender: before the receiver's report arrived; for the receiver: before it sent it).
Exit status 0 means the run succeeded: a sender sent everything, got the report and
saw nobody leave; a receiver got every packet once and in order.
"""

import argparse
import asyncio
import ctypes
import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Set

from livekit import rtc

START = time.monotonic()


def now() -> float:
    return round(time.monotonic() - START, 3)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": now(), **fields}), flush=True)


def hold_gil(seconds: float) -> None:
    """Sleeps in C without releasing the GIL: PyDLL calls keep it."""
    try:
        libc = ctypes.PyDLL("libc.so.6")
    except OSError:
        libc = ctypes.PyDLL(None)
    libc.sleep.argtypes = [ctypes.c_uint]
    libc.sleep.restype = ctypes.c_uint
    libc.usleep.argtypes = [ctypes.c_uint]
    libc.usleep.restype = ctypes.c_int
    whole = int(seconds)
    left = whole
    while left > 0:  # sleep() returns early (the seconds left) if a signal arrives
        left = int(libc.sleep(left))
    fraction = seconds - whole
    if fraction > 0:
        libc.usleep(int(fraction * 1_000_000))


def hold(mode: str, seconds: float) -> None:
    emit("hold_start", mode=mode, seconds=seconds)
    began = time.monotonic()
    if mode == "gil":
        hold_gil(seconds)
    elif mode == "loop":
        time.sleep(seconds)
    emit("hold_end", mode=mode, held=round(time.monotonic() - began, 3))


def remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = START + args.timeout
        self.room = rtc.Room()
        self.peer_here = asyncio.Event()
        self.peer_gone = asyncio.Event()
        self.peer_done = asyncio.Event()
        self.all_received = asyncio.Event()
        self.first_packet = asyncio.Event()
        self.sync_seen = asyncio.Event()  # receiver: the sender's handshake arrived
        self.peer_ready = asyncio.Event()  # sender: the receiver answered it
        self.ignored = 0  # packets from someone else or from an unknown sender
        self.peer_report: Optional[Dict[str, Any]] = None
        self.received: List[str] = []
        self.distinct: Set[str] = set()
        self.expected = [f"seq-{i}" for i in range(args.count)]
        self.expected_set = set(self.expected)
        # every participant_disconnected seen, with its time and whether the run was
        # already winding down (sender: the report arrived; receiver: it was sent), in
        # which case it is the normal end of the run, not a drop
        self.departures: List[Dict[str, Any]] = []
        self.winding_down = False
        self.room_events: List[Dict[str, Any]] = []
        self.leaving = False
        self.first_packet_at: Optional[float] = None
        self._wire()

    def _wire(self) -> None:
        room = self.room
        args = self.args

        @room.on("participant_connected")
        def on_join(p: rtc.RemoteParticipant) -> None:
            emit("participant_connected", identity=p.identity)
            if p.identity == args.peer:
                self.peer_here.set()

        @room.on("participant_disconnected")
        def on_leave(p: rtc.RemoteParticipant) -> None:
            emit("participant_disconnected", identity=p.identity)
            self.departures.append(
                {"identity": p.identity, "t": now(), "expected": self.winding_down}
            )
            if p.identity == args.peer:
                self.peer_gone.set()

        @room.on("data_received")
        def on_data(packet: rtc.DataPacket) -> None:
            sender = packet.participant.identity if packet.participant else None
            if sender != args.peer:
                self.ignored += 1
                return
            if packet.topic == args.topic and args.role == "receiver":
                self._on_stream_packet(packet.data.decode("utf-8", "replace"))
            elif packet.topic == f"{args.topic}-sync" and args.role == "receiver":
                self.sync_seen.set()
            elif packet.topic == f"{args.topic}-ready" and args.role == "sender":
                self.peer_ready.set()
            elif packet.topic == f"{args.topic}-done" and args.role == "sender":
                try:
                    self.peer_report = json.loads(packet.data.decode())
                except ValueError:
                    self.peer_report = {"raw": packet.data.decode("utf-8", "replace")}
                emit("peer_report", report=self.peer_report)
                self.winding_down = True
                self.peer_done.set()

        # connection-level events, recorded to explain a failure
        room.on("reconnecting", self._room_event_recorder("reconnecting"))
        room.on("reconnected", self._room_event_recorder("reconnected"))
        room.on("disconnected", self._room_event_recorder("disconnected"))
        room.on("connection_state_changed", self._room_event_recorder("connection_state_changed"))

    def _room_event_recorder(self, name: str) -> Callable[..., None]:
        def record(*event_args: Any) -> None:
            if self.leaving:
                return
            entry = {"name": name, "t": now(), "args": [str(a) for a in event_args]}
            self.room_events.append(entry)
            emit("room_event", **entry)

        return record

    def _on_stream_packet(self, payload: str) -> None:
        self.received.append(payload)
        if self.first_packet_at is None:
            self.first_packet_at = time.monotonic()
            emit("first_packet", payload=payload)
            self.first_packet.set()
            if self.args.hold != "none":
                asyncio.get_running_loop().call_later(
                    self.args.hold_after, hold, self.args.hold, self.args.hold_seconds
                )
        if payload in self.expected_set:
            self.distinct.add(payload)
            if len(self.distinct) == len(self.expected):
                self.all_received.set()

    def peer_present(self) -> bool:
        return any(p.identity == self.args.peer for p in self.room.remote_participants.values())

    async def wait(self, event: asyncio.Event, until: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), remaining(until))
            return True
        except asyncio.TimeoutError:
            return event.is_set()

    async def run(self) -> int:
        args = self.args
        try:
            await asyncio.wait_for(
                self.room.connect(args.url, args.token), min(30.0, remaining(self.deadline))
            )
        except Exception as e:  # report any failure
            emit("error", stage="connect", error=repr(e))
            self.summary(ok=False)
            return 2
        emit("connected", identity=self.room.local_participant.identity)
        try:
            if self.peer_present():
                self.peer_here.set()
            if not await self.wait(self.peer_here, self.deadline):
                emit("error", stage="peer", error="peer never joined")
                self.summary(ok=False)
                return 1
            emit("peer_present", identity=args.peer)
            if args.role == "sender":
                return await self.send()
            return await self.receive()
        except Exception as e:  # always report, always leave
            emit("error", stage="run", error=repr(e))
            self.summary(ok=False)
            return 1
        finally:
            self.leaving = True
            try:
                await asyncio.wait_for(self.room.disconnect(), 10)
            except Exception as e:
                emit("error", stage="disconnect", error=repr(e))
            emit("left")

    async def handshake(self) -> bool:
        """Sender: repeats the sync packet until the receiver answers."""
        k = 0
        while not self.peer_ready.is_set() and time.monotonic() < self.deadline:
            await asyncio.wait_for(
                self.room.local_participant.publish_data(
                    f"sync-{k}", reliable=True, topic=f"{self.args.topic}-sync"
                ),
                10,
            )
            k += 1
            await self.wait(self.peer_ready, min(self.deadline, time.monotonic() + 0.2))
        emit("handshake", ok=self.peer_ready.is_set(), syncs=k)
        return self.peer_ready.is_set()

    async def send(self) -> int:
        args = self.args
        if not await self.handshake():
            emit("error", stage="handshake", error="the receiver never answered")
            self.summary(ok=False, sent=0, errors=["no handshake"], got_report=False)
            return 1
        began = time.monotonic()
        sent = 0
        errors: List[str] = []
        for i in range(args.count):
            due = began + i * args.interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > self.deadline:
                errors.append("deadline reached while sending")
                break
            try:
                await asyncio.wait_for(
                    self.room.local_participant.publish_data(
                        f"seq-{i}", reliable=True, topic=args.topic
                    ),
                    10,
                )
                sent += 1
            except Exception as e:
                errors.append(f"seq-{i}: {e!r}")
                if len(errors) > 20:
                    break
        emit("sent", sent=sent, seconds=round(time.monotonic() - began, 3), errors=errors[:20])
        got_report = await self.wait(self.peer_done, self.deadline)
        if not got_report:
            emit("error", stage="report", error="the receiver never reported")
        dropped = self.dropped()
        ok = sent == args.count and not errors and got_report and not dropped
        self.summary(ok=ok, sent=sent, errors=errors[:20], got_report=got_report)
        return 0 if ok else 1

    async def receive(self) -> int:
        args = self.args
        if not await self.wait(self.sync_seen, self.deadline):
            emit("error", stage="handshake", error="no sync packet from the sender")
            self.summary(ok=False, received=[])
            return 1
        await asyncio.wait_for(
            self.room.local_participant.publish_data(
                "ready", reliable=True, topic=f"{args.topic}-ready"
            ),
            10,
        )
        emit("handshake", ok=True)
        # until the first packet, the overall deadline; then until `grace` seconds after
        # the sender's last packet was due
        if not await self.wait(self.first_packet, self.deadline):
            emit("error", stage="receive", error="no packet arrived")
        else:
            assert self.first_packet_at is not None
            last_due = self.first_packet_at + args.count * args.interval
            until = min(self.deadline, last_due + args.grace)
            if await self.wait(self.all_received, until):
                emit("all_received", count=len(self.received))
                # a moment for duplicates, if any, to show up
                await asyncio.sleep(min(1.0, remaining(self.deadline)))
            else:
                emit("error", stage="receive", error="not every packet arrived")
        received = list(self.received)
        ok = received == self.expected and not any(
            e["name"] == "disconnected" for e in self.room_events
        )
        report = {"received": len(received), "distinct": len(self.distinct), "ok": ok}
        self.winding_down = True
        try:
            await asyncio.wait_for(
                self.room.local_participant.publish_data(
                    json.dumps(report), reliable=True, topic=f"{args.topic}-done"
                ),
                10,
            )
            # the sender leaves once it has the report; then it is safe for us to leave
            await self.wait(self.peer_gone, min(self.deadline, time.monotonic() + 15))
        except Exception as e:
            emit("error", stage="report", error=repr(e))
        self.summary(ok=ok, received=received)
        return 0 if ok else 1

    def dropped(self) -> List[str]:
        return [d["identity"] for d in self.departures if not d["expected"]]

    def summary(self, ok: bool, **fields: Any) -> None:
        emit(
            "done",
            role=self.args.role,
            ok=ok,
            hold=self.args.hold,
            disconnected=self.dropped(),
            departures=self.departures,
            room_events=self.room_events,
            ignored=self.ignored,
            **fields,
        )


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("peer", help="identity of the other participant")
    ap.add_argument("--role", choices=("sender", "receiver"), required=True)
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--topic", default="hold")
    ap.add_argument("--hold", choices=("gil", "loop", "none"), default="none")
    ap.add_argument("--hold-seconds", type=float, default=25.0)
    ap.add_argument("--hold-after", type=float, default=2.0)
    ap.add_argument("--grace", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=90.0)
    return ap.parse_args(argv)


async def main(argv: List[str]) -> int:
    args = parse_args(argv)
    emit("start", role=args.role, python=sys.executable, rtc=getattr(rtc, "__file__", None))
    return await Peer(args).run()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
