"""One benchmark run in one Python process, written against the documented
`livekit.rtc` API so the very same code measures every stack.

    worker.py URL API_KEY API_SECRET LABEL

Prints one JSON line of figures. Connect time is the median of several joins;
throughput and latency use two rooms in this process (same clock on both ends).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import statistics
import sys
import time
import uuid

from livekit import api, rtc


def token(key: str, secret: str, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return api.AccessToken(key, secret).with_identity(identity).with_grants(grants).to_jwt()


async def connect_times(url: str, key: str, secret: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        room = rtc.Room()
        t0 = time.perf_counter()
        await room.connect(url, token(key, secret, f"bench-connect-{uuid.uuid4().hex[:6]}", f"c{i}"))
        out.append(time.perf_counter() - t0)
        await room.disconnect()
    return out


async def data_run(url: str, key: str, secret: str, size: int, count: int) -> dict[str, float]:
    name = f"bench-data-{uuid.uuid4().hex[:6]}"
    tx, rx = rtc.Room(), rtc.Room()
    await rx.connect(url, token(key, secret, name, "rx"))
    await tx.connect(url, token(key, secret, name, "tx"))
    while "rx" not in tx.remote_participants or "tx" not in rx.remote_participants:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    latencies: list[float] = []
    done = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        sent = float(packet.data[:24].decode().strip())
        latencies.append(time.perf_counter() - sent)
        if len(latencies) >= count:
            done.set()

    rx.on("data_received", on_data)
    pad = b"x" * (size - 24)
    t0 = time.perf_counter()
    for _ in range(count):
        stamp = f"{time.perf_counter():<24.9f}".encode()
        await tx.local_participant.publish_data(stamp + pad, reliable=True, topic="bench")
    try:
        await asyncio.wait_for(done.wait(), 60)
    except asyncio.TimeoutError:
        pass
    elapsed = time.perf_counter() - t0
    await tx.disconnect()
    await rx.disconnect()
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "received": len(lat),
        "mbit_s": len(lat) * size * 8 / elapsed / 1e6,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def native_request_cost(room: rtc.Room, n: int) -> float:
    """Microseconds per synchronous request that does no work in the core:
    `ready_for_room_event` on a connected room (a no-op once the room is running)."""
    # Private on both stacks: the official keeps an FfiHandle, ours a plain int.
    official = getattr(room, "_ffi_handle", None)
    handle = official.handle if official is not None else room._handle  # type: ignore[attr-defined]
    inner = b"\x08" + varint(handle)
    raw = b"\x9a\x05" + varint(len(inner)) + inner
    try:  # our package: the PyO3 module
        from livekit.rtc import _native  # type: ignore[attr-defined]

        t0 = time.perf_counter()
        for _ in range(n):
            _native.request(raw)
        return (time.perf_counter() - t0) / n * 1e6
    except ImportError:
        pass
    from livekit.rtc._ffi_client import FfiClient  # the official SDK, on either core

    lib = FfiClient.instance._ffi_lib
    buf = ctypes.cast(ctypes.c_char_p(raw), ctypes.POINTER(ctypes.c_ubyte))
    res_ptr = ctypes.POINTER(ctypes.c_ubyte)()
    res_len = ctypes.c_size_t()
    t0 = time.perf_counter()
    for _ in range(n):
        h = lib.livekit_ffi_request(buf, len(raw), ctypes.byref(res_ptr), ctypes.byref(res_len))
        lib.livekit_ffi_drop_handle(ctypes.c_uint64(h))
    return (time.perf_counter() - t0) / n * 1e6


async def main() -> None:
    url, key, secret, label = sys.argv[1:5]
    conn = await connect_times(url, key, secret, 5)
    small = await data_run(url, key, secret, 1024, 1000)
    large = await data_run(url, key, secret, 15 * 1024, 300)
    room = rtc.Room()
    await room.connect(url, token(key, secret, "bench-ffi", "ffi"))
    req_us = native_request_cost(room, 20000)
    await room.disconnect()
    print(
        json.dumps(
            {
                "label": label,
                "connect_ms_median": statistics.median(conn) * 1000,
                "1KiB": small,
                "15KiB": large,
                "ffi_request_us": req_us,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
