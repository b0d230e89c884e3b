"""Failed and cancelled connects: the right `ConnectError.reason`, and nothing left
behind (handles, routes, file descriptors, threads), even when `connect()` is
cancelled at any stage."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
from typing import Any, List, Tuple

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


async def test_relay_only_without_a_turn_server_and_bad_ice_servers_fail_clearly(
    server: Any, token: Any
) -> None:
    baseline = _native.handle_count()
    room = rtc.Room()
    # The test server runs no TURN, and the user gives none: nothing could relay.
    relay_only = rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY)
    )
    with pytest.raises(rtc.ConnectError) as err:
        await room.connect(server.url, token("alice"), relay_only)
    assert "TURN" in err.value.message
    assert not room.isconnected()
    # A URL that can never work is refused before anything is dialed.
    for url, user, password, why in [
        ("turn:10.0.0.1:3478", "", "", "credential"),
        ("http://example.org", "", "", "scheme"),
        ("turn:example.org:99999", "u", "p", "port"),
        ("turns:example.org?transport=udp", "u", "p", "transport"),
    ]:
        bad = rtc.RoomOptions(
            rtc_config=rtc.RtcConfiguration(
                ice_servers=[rtc.IceServer(urls=[url], username=user, password=password)]
            )
        )
        with pytest.raises(rtc.ConnectError) as err:
            await room.connect(server.url, token("alice"), bad)
        assert why in err.value.message and url in err.value.message, err.value.message
    assert _native.handle_count() == baseline
    # A STUN server that never answers costs nothing; no-host still connects (the
    # server learns our address from the checks themselves).
    quiet = rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(
            ice_transport_type=rtc.IceTransportType.TRANSPORT_NOHOST,
            ice_servers=[rtc.IceServer(urls=["stun:127.0.0.1:9"])],
        )
    )
    await room.connect(server.url, token("alice"), quiet)
    assert room.isconnected()
    await room.aclose()


async def test_connect_error_is_documented_shape() -> None:
    e = rtc.ConnectError("boom")
    assert e.message == "boom" and str(e) == "boom"
    assert e.reason == rtc.FailureReason.FAILURE_OTHER


def timeouts(n: int) -> List[float]:
    """n timeouts spread from 1 ms to 300 ms (log-uniform, in a random order with a
    fixed seed), so cancels land at every stage of a join."""
    lo, hi = 0.001, 0.3
    spread = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    random.Random(7).shuffle(spread)
    return spread


async def baseline(server: Any, token: Any) -> Tuple[int, int, int]:
    """Descriptors, OS threads and Python threads once the core is warm (its runtime
    threads exist from the first room on)."""
    async with rtc.Room() as warm:
        await warm.connect(server.url, token("warmup"))
    await settle(native_quiet)
    gc.collect()
    return fd_count(), task_count(), python_thread_count()


async def back_to(fds0: int, tasks0: int, threads0: int) -> None:
    """Handles, descriptors and threads return to their starting counts."""
    assert await settle(native_quiet, timeout=15), (
        _native.handle_count(),
        FfiClient.instance().room_count(),
    )
    gc.collect()
    assert await settle(lambda: fd_count() <= fds0, timeout=20), (fd_count(), fds0)
    assert await settle(lambda: python_thread_count() <= threads0, timeout=5)
    # The core's blocking-pool threads retire after ~10 s idle.
    assert await settle(lambda: task_count() <= tasks0, timeout=30), (task_count(), tasks0)


async def test_cancelled_connect_storm_leaks_nothing(server: Any, token: Any) -> None:
    fds0, tasks0, threads0 = await baseline(server, token)

    outcomes = {"cancelled": 0, "connected": 0}
    shared = rtc.Room()  # one room reused across attempts, plus fresh ones
    for i, t in enumerate(timeouts(100)):
        room = shared if i % 2 else rtc.Room()
        try:
            await asyncio.wait_for(room.connect(server.url, token(f"storm-{i}")), t)
            outcomes["connected"] += 1
            await room.aclose()
        except asyncio.TimeoutError:
            outcomes["cancelled"] += 1
            assert not room.isconnected()
    assert outcomes["cancelled"] >= 20, outcomes

    # Abandoned joins are left in the background; let them wind down.
    await back_to(fds0, tasks0, threads0)

    # And a normal connect still works.
    async with rtc.Room() as room:
        await room.connect(server.url, token("after-storm"))
        assert room.isconnected()


async def test_a_hundred_connect_disconnect_cycles_leak_nothing(server: Any, token: Any) -> None:
    fds0, tasks0, threads0 = await baseline(server, token)
    async with rtc.Room() as peer:
        await peer.connect(server.url, token("peer"))
        got: "asyncio.Queue[bytes]" = asyncio.Queue()
        peer.on("data_received", lambda p: got.put_nowait(p.data))
        for i in range(100):
            room = rtc.Room()
            await room.connect(server.url, token("cycler"))
            if i % 10 == 0:
                # Now and then the room is used before it goes: data reaches the peer.
                await room.local_participant.publish_data(f"cycle {i}".encode())
                assert await asyncio.wait_for(got.get(), 10) == f"cycle {i}".encode()
            if i % 2:
                await room.disconnect()
            else:
                await room.aclose()
            assert not room.isconnected()
    await back_to(fds0, tasks0, threads0)


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

