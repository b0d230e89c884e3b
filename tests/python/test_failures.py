"""Failed and cancelled connects: the right `ConnectError.reason`, and nothing left
behind (handles, routes, file descriptors, threads), even when `connect()` is
cancelled at any stage."""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any, List

import pytest

from helpers import fd_count, native_quiet, python_thread_count, settle, task_count
from livekit import rtc
from livekit.rtc import _native
from livekit.rtc._ffi_client import FfiClient


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_server(token: Any) -> None:
    baseline = _native.handle_count()
    room = rtc.Room()
    with pytest.raises(rtc.ConnectError) as err:
        await room.connect(f"ws://127.0.0.1:{unused_port()}", token("alice"))
    assert err.value.reason == rtc.FailureReason.FAILURE_UNREACHABLE
    assert err.value.message
    assert not room.isconnected()
    assert _native.handle_count() == baseline
    assert FfiClient.instance().room_count() == 0


async def test_bad_token(server: Any, token: Any) -> None:
    baseline = _native.handle_count()
    room = rtc.Room()
    with pytest.raises(rtc.ConnectError) as err:
        await room.connect(server.url, token("alice", secret="not-the-secret-not-the-secret-00"))
    assert err.value.reason == rtc.FailureReason.FAILURE_UNAUTHORIZED
    with pytest.raises(rtc.ConnectError) as err:
        await room.connect(server.url, "garbage")
    assert err.value.reason == rtc.FailureReason.FAILURE_UNAUTHORIZED
    assert _native.handle_count() == baseline
    # The same Room still connects afterwards.
    await room.connect(server.url, token("alice"))
    await room.aclose()


async def test_unsupported_transport_policy_is_refused_clearly(server: Any, token: Any) -> None:
    baseline = _native.handle_count()
    room = rtc.Room()
    relay_only = rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY)
    )
    with pytest.raises(rtc.ConnectError) as err:
        await room.connect(server.url, token("alice"), relay_only)
    assert "relay" in err.value.message
    assert not room.isconnected()
    assert _native.handle_count() == baseline
    # The default policy still connects.
    await room.connect(server.url, token("alice"))
    await room.aclose()


async def test_connect_error_is_documented_shape() -> None:
    e = rtc.ConnectError("boom")
    assert e.message == "boom" and str(e) == "boom"
    assert e.reason == rtc.FailureReason.FAILURE_OTHER


def timeouts(n: int) -> List[float]:
    """n timeouts spread from 1 ms to 200 ms, so cancels land at every stage."""
    lo, hi = 0.001, 0.2
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


async def test_cancelled_connect_storm_leaks_nothing(server: Any, token: Any) -> None:
    # Warm up: the core's runtime threads exist from here on.
    async with rtc.Room() as warm:
        await warm.connect(server.url, token("warmup"))
    await settle(native_quiet)
    gc.collect()
    fds0, tasks0, threads0 = fd_count(), task_count(), python_thread_count()

    outcomes = {"cancelled": 0, "connected": 0}
    shared = rtc.Room()  # one room reused across attempts, plus fresh ones
    for i, t in enumerate(timeouts(50)):
        room = shared if i % 2 else rtc.Room()
        try:
            await asyncio.wait_for(room.connect(server.url, token(f"storm-{i}")), t)
            outcomes["connected"] += 1
            await room.aclose()
        except asyncio.TimeoutError:
            outcomes["cancelled"] += 1
            assert not room.isconnected()
    assert outcomes["cancelled"] >= 10, outcomes

    # Abandoned joins are left in the background; let them wind down.
    assert await settle(native_quiet, timeout=15), (
        _native.handle_count(),
        FfiClient.instance().room_count(),
    )
    gc.collect()
    assert await settle(lambda: fd_count() <= fds0, timeout=20), (fd_count(), fds0)
    assert await settle(lambda: python_thread_count() <= threads0, timeout=5)
    # The core's blocking-pool threads retire after ~10 s idle.
    assert await settle(lambda: task_count() <= tasks0, timeout=30), (task_count(), tasks0)

    # And a normal connect still works.
    async with rtc.Room() as room:
        await room.connect(server.url, token("after-storm"))
        assert room.isconnected()


async def test_cancel_while_connected_result_is_queued(server: Any, token: Any) -> None:
    # Cancel right when the connect callback has been queued on the loop but before
    # connect() resumes: the late result must be released, not adopted.
    room = rtc.Room()
    task = asyncio.ensure_future(room.connect(server.url, token("alice")))
    client = FfiClient.instance()
    await settle(lambda: client.waiter_count() == 0 or task.done(), interval=0.0005)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        assert not room.isconnected()
    else:  # it finished first
        await room.aclose()
    assert await settle(native_quiet)

