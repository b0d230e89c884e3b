"""An official-SDK participant for the data-stream interop tests.

Reads text streams on topic "text" (read_all) and byte streams on topic "file"
(async iteration) and prints one JSON line per stream with its sha256 and info.
Once PEER is in the room it sends a 5 MB file (send_file), a 1 MB multi-byte text
(send_text) and a streamed text (stream_text, several writes), and prints what it
sent. Exits once it has received --expect-text / --expect-bytes streams and PEER
has left.

    stream_peer.py URL TOKEN PEER [--expect-text N] [--expect-bytes N] [--timeout S]
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile

from livekit import rtc


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def big_text(min_bytes: int) -> str:
    unit = "héllo wörld ✓ 𝄞 日本語 — "
    reps = min_bytes // len(unit.encode()) + 1
    return unit * reps


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("peer")
    ap.add_argument("--expect-text", type=int, default=0)
    ap.add_argument("--expect-bytes", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    room = rtc.Room()
    peer_here = asyncio.Event()
    peer_gone = asyncio.Event()
    got = {"text": 0, "bytes": 0}
    all_in = asyncio.Event()
    tasks = set()

    def check() -> None:
        if got["text"] >= args.expect_text and got["bytes"] >= args.expect_bytes:
            all_in.set()

    def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            try:
                text = await reader.read_all()
                info = reader.info
                emit(event="text", sender=sender, sha=sha(text.encode()), chars=len(text),
                     topic=info.topic, stream_id=info.stream_id, mime_type=info.mime_type,
                     attributes=info.attributes)
            except rtc.StreamError as e:
                emit(event="text_error", sender=sender, error=str(e))
            got["text"] += 1
            check()

        t = asyncio.ensure_future(read())
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    def on_bytes(reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            h = hashlib.sha256()
            n = 0
            try:
                async for chunk in reader:
                    h.update(chunk)
                    n += len(chunk)
                info = reader.info
                emit(event="bytes", sender=sender, sha=h.hexdigest(), len=n, name=info.name,
                     topic=info.topic, stream_id=info.stream_id, mime_type=info.mime_type,
                     size=info.size, attributes=info.attributes)
            except rtc.StreamError as e:
                emit(event="bytes_error", sender=sender, error=str(e))
            got["bytes"] += 1
            check()

        t = asyncio.ensure_future(read())
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    room.register_text_stream_handler("text", on_text)
    room.register_byte_stream_handler("file", on_bytes)

    @room.on("participant_connected")
    def on_join(p: rtc.RemoteParticipant) -> None:
        if p.identity == args.peer:
            peer_here.set()

    @room.on("participant_disconnected")
    def on_leave(p: rtc.RemoteParticipant) -> None:
        if p.identity == args.peer:
            peer_gone.set()

    await room.connect(args.url, args.token)
    lp = room.local_participant
    emit(event="connected", identity=lp.identity)
    if any(p.identity == args.peer for p in room.remote_participants.values()):
        peer_here.set()
    try:
        await asyncio.wait_for(peer_here.wait(), args.timeout)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "official.bin")
            data = os.urandom(5 * 1024 * 1024)
            with open(path, "wb") as f:
                f.write(data)
            info = await lp.send_file(path, topic="file", attributes={"from": "official"})
            emit(event="sent_file", sha=sha(data), len=len(data), stream_id=info.stream_id)
        text = big_text(1024 * 1024)
        tinfo = await lp.send_text(text, topic="text", attributes={"kind": "whole"})
        emit(event="sent_text", sha=sha(text.encode()), chars=len(text), stream_id=tinfo.stream_id)
        writer = await lp.stream_text(topic="text", attributes={"kind": "streamed"})
        parts = [f"part {i} ✓ 日本 " * 100 for i in range(20)]
        for part in parts:
            await writer.write(part)
        await writer.aclose()
        emit(event="sent_stream", sha=sha("".join(parts).encode()),
             stream_id=writer.info.stream_id)
        await asyncio.wait_for(all_in.wait(), args.timeout)
        emit(event="received_all", **got)
        await asyncio.wait_for(peer_gone.wait(), args.timeout)
        emit(event="done")
        return 0
    except asyncio.TimeoutError:
        emit(event="timeout", **got)
        return 1
    finally:
        await room.disconnect()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
