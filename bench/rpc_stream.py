"""RPC round trips and data-stream throughput in one process, written against the
documented `livekit.rtc` API so the very same code measures every stack.

    rpc_stream.py URL API_KEY API_SECRET LABEL [CALLS] [STREAM_MB]

Two rooms in this process (one clock on both ends): a caller performs CALLS
sequential `perform_rpc` calls of a 100-byte payload to a method that echoes it
(round trip p50/p99), then sends a STREAM_MB byte stream (`send_bytes`) and a text
stream of the same size (`send_text`, multi-byte characters) that the other room reads
piece by piece (random content, which deflate cannot shrink); throughput runs from the first byte sent to the last byte read.
Prints one JSON line of figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from typing import Any, Dict, List

from livekit import api, rtc


def token(key: str, secret: str, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return api.AccessToken(key, secret).with_identity(identity).with_grants(grants).to_jwt()


def pct(values: List[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000 if s else float("nan")


async def main() -> None:
    url, key, secret, label = sys.argv[1:5]
    calls = int(sys.argv[5]) if len(sys.argv) > 5 else 300
    stream_mb = float(sys.argv[6]) if len(sys.argv) > 6 else 20.0
    name = f"bench-rpc-{uuid.uuid4().hex[:6]}"
    caller, callee = rtc.Room(), rtc.Room()
    await callee.connect(url, token(key, secret, name, "callee"))
    await caller.connect(url, token(key, secret, name, "caller"))

    async def echo(data: rtc.RpcInvocationData) -> str:
        return data.payload

    callee.local_participant.register_rpc_method("echo", echo)
    while "callee" not in caller.remote_participants or "caller" not in callee.remote_participants:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)

    out: Dict[str, Any] = {"label": label}
    payload = "x" * 100
    rtts: List[float] = []
    errors = 0
    t_rpc = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        try:
            await caller.local_participant.perform_rpc(
                destination_identity="callee", method="echo", payload=payload
            )
            rtts.append(time.perf_counter() - t0)
        except rtc.RpcError:
            errors += 1
    out["rpc"] = {
        "calls": calls,
        "ok": len(rtts),
        "errors": errors,
        "p50_ms": pct(rtts, 0.5),
        "p99_ms": pct(rtts, 0.99),
        "calls_per_s": calls / (time.perf_counter() - t_rpc),
    }

    size = int(stream_mb * 1_000_000)
    finished: "asyncio.Queue[tuple[str, int, float]]" = asyncio.Queue()
    tasks = set()

    def on_bytes(reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            n = 0
            async for chunk in reader:
                n += len(chunk)
            finished.put_nowait(("bytes", n, time.perf_counter()))

        t = asyncio.ensure_future(read())
        tasks.add(t)

    def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            n = 0
            async for chunk in reader:
                n += len(chunk.encode())
            finished.put_nowait(("text", n, time.perf_counter()))

        t = asyncio.ensure_future(read())
        tasks.add(t)

    callee.register_byte_stream_handler("bench-bytes", on_bytes)
    callee.register_text_stream_handler("bench-text", on_text)

    # Incompressible content: the official SDK deflates streams between its peers.
    data = os.urandom(size)
    t0 = time.perf_counter()
    await caller.local_participant.send_bytes(data, name="bench.bin", topic="bench-bytes")
    sent_at = time.perf_counter()
    try:
        kind, n, done_at = await asyncio.wait_for(finished.get(), 300)
        out["bytes_stream"] = {
            "bytes": n,
            "complete": n == len(data),
            "mb_s": n / (done_at - t0) / 1e6,
            "send_s": sent_at - t0,
        }
    except asyncio.TimeoutError:
        out["bytes_stream"] = {"error": "timeout"}

    rng = random.Random(7)
    alphabet = "añ€🦀xyz"
    text = "".join(rng.choices(alphabet, k=size // 3))
    t0 = time.perf_counter()
    await caller.local_participant.send_text(text, topic="bench-text")
    sent_at = time.perf_counter()
    try:
        kind, n, done_at = await asyncio.wait_for(finished.get(), 300)
        out["text_stream"] = {
            "bytes": n,
            "complete": n == len(text.encode()),
            "mb_s": n / (done_at - t0) / 1e6,
            "send_s": sent_at - t0,
        }
    except asyncio.TimeoutError:
        out["text_stream"] = {"error": "timeout"}

    await caller.disconnect()
    await callee.disconnect()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
