"""A peer built on the official LiveKit Python SDK, for interop tests.

Joins ROOM at URL with TOKEN, prints one JSON line per thing it sees, sends its own
packets once PEER has joined, and exits when it has received what it expects.

    official_peer.py URL TOKEN PEER [--send-reliable N] [--send-lossy N]
                     [--expect-reliable N] [--expect-lossy N] [--timeout S]
"""

import argparse
import asyncio
import json
import sys

from livekit import rtc


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("peer")
    ap.add_argument("--send-reliable", type=int, default=0)
    ap.add_argument("--send-lossy", type=int, default=0)
    ap.add_argument("--expect-reliable", type=int, default=0)
    ap.add_argument("--expect-lossy", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    room = rtc.Room()
    got = {"reliable": 0, "lossy": 0}
    done = asyncio.Event()
    peer_here = asyncio.Event()

    def check() -> None:
        if got["reliable"] >= args.expect_reliable and got["lossy"] >= args.expect_lossy:
            done.set()

    @room.on("data_received")
    def on_data(packet: rtc.DataPacket) -> None:
        kind = "lossy" if packet.kind == rtc.DataPacketKind.KIND_LOSSY else "reliable"
        got[kind] += 1
        emit(
            event="data",
            kind=kind,
            sender=packet.participant.identity if packet.participant else None,
            topic=packet.topic,
            payload=packet.data.decode("utf-8", "replace"),
        )
        check()

    @room.on("participant_connected")
    def on_join(p: rtc.RemoteParticipant) -> None:
        emit(event="participant_connected", identity=p.identity)
        if p.identity == args.peer:
            peer_here.set()

    await room.connect(args.url, args.token)
    emit(event="connected", identity=room.local_participant.identity, room=room.name)
    if any(p.identity == args.peer for p in room.remote_participants.values()):
        peer_here.set()
    try:
        await asyncio.wait_for(peer_here.wait(), args.timeout)
        for i in range(args.send_reliable):
            await room.local_participant.publish_data(
                f"official-reliable-{i}", reliable=True, topic="from-official"
            )
        for i in range(args.send_lossy):
            await room.local_participant.publish_data(
                f"official-lossy-{i}", reliable=False, topic="from-official-lossy"
            )
            await asyncio.sleep(0.01)
        emit(event="sent", reliable=args.send_reliable, lossy=args.send_lossy)
        check()
        await asyncio.wait_for(done.wait(), args.timeout)
        emit(event="done", **got)
        return 0
    except asyncio.TimeoutError:
        emit(event="timeout", **got)
        return 1
    finally:
        await room.disconnect()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
