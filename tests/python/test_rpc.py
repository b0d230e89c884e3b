"""RPC between participants: answers, every error path, registration forms,
interceptors, departures and disconnects; both ways with the official SDK
(tests/interop/rpc_peer.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Tuple

import pytest

from helpers import settle
from livekit import rtc

ROOT = Path(__file__).resolve().parents[2]
Join = Callable[..., Awaitable[rtc.Room]]
Code = rtc.RpcError.ErrorCode


@pytest.fixture(autouse=True)
async def no_routes() -> AsyncIterator[None]:
    yield
    from livekit.rtc._ffi_client import FfiClient

    assert await settle(lambda: FfiClient.instance().route_count() == 0, timeout=5)


async def pair(join: Join) -> Tuple[rtc.Room, rtc.Room]:
    alice = await join("alice")
    bob = await join("bob")
    assert await settle(lambda: "bob" in alice.remote_participants)
    assert await settle(lambda: "alice" in bob.remote_participants)
    return alice, bob


async def rpc_error(call: Awaitable[str]) -> rtc.RpcError:
    with pytest.raises(rtc.RpcError) as info:
        await call
    return info.value


async def test_calls_both_ways_sync_and_async_handlers(join: Join) -> None:
    alice, bob = await pair(join)
    seen: List[rtc.RpcInvocationData] = []

    @bob.local_participant.register_rpc_method("greet")
    async def greet(data: rtc.RpcInvocationData) -> str:
        seen.append(data)
        await asyncio.sleep(0.01)
        return f"hello {data.caller_identity}: {data.payload}"

    def shout(data: rtc.RpcInvocationData) -> str:
        return data.payload.upper()

    assert alice.local_participant.register_rpc_method("shout", shout) is shout
    assert greet.__name__ == "greet"  # the decorator hands the function back

    answer = await alice.local_participant.perform_rpc(
        destination_identity="bob", method="greet", payload="héllo ✓", response_timeout=10
    )
    assert answer == "hello alice: héllo ✓"
    (data,) = seen
    assert isinstance(data, rtc.RpcInvocationData)
    assert (data.caller_identity, data.method, data.payload) == ("alice", "greet", "héllo ✓")
    # As the official SDKs do, the callee gets the caller's timeout less the
    # round-trip allowance (7 s by default), at least 1 s.
    assert data.response_timeout == pytest.approx(3.0, abs=0.01)
    assert data.request_id

    assert (
        await bob.local_participant.perform_rpc(
            destination_identity="alice", method="shout", payload="quiet"
        )
        == "QUIET"
    )
    # Many calls at once, each with its own answer.
    answers = await asyncio.gather(
        *(
            bob.local_participant.perform_rpc(
                destination_identity="alice", method="shout", payload=f"n{i}"
            )
            for i in range(50)
        )
    )
    assert answers == [f"N{i}" for i in range(50)]


async def test_empty_answer_and_none(join: Join) -> None:
    alice, bob = await pair(join)
    bob.local_participant.register_rpc_method("none", lambda d: None)
    bob.local_participant.register_rpc_method("empty", lambda d: "")
    for method in ("none", "empty"):
        assert (
            await alice.local_participant.perform_rpc(
                destination_identity="bob", method=method, payload="x"
            )
            == ""
        )


async def test_unknown_method_and_unregister(join: Join) -> None:
    alice, bob = await pair(join)
    err = await rpc_error(
        alice.local_participant.perform_rpc(destination_identity="bob", method="nope", payload="")
    )
    assert err.code == Code.UNSUPPORTED_METHOD == 1400
    assert err.message == rtc.RpcError.ErrorMessage[Code.UNSUPPORTED_METHOD]

    bob.local_participant.register_rpc_method("m", lambda d: "first")
    call = dict(destination_identity="bob", method="m", payload="")
    assert await alice.local_participant.perform_rpc(**call) == "first"
    bob.local_participant.register_rpc_method("m", lambda d: "second")  # replaces
    assert await alice.local_participant.perform_rpc(**call) == "second"
    bob.local_participant.unregister_rpc_method("m")
    err = await rpc_error(alice.local_participant.perform_rpc(**call))
    assert err.code == Code.UNSUPPORTED_METHOD
    bob.local_participant.unregister_rpc_method("never-registered")  # no error


async def test_handler_errors(join: Join, caplog: pytest.LogCaptureFixture) -> None:
    alice, bob = await pair(join)

    def custom(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4001, "not today", '{"why": "closed"}')

    async def crash(data: rtc.RpcInvocationData) -> str:
        raise ValueError("internal detail")

    async def builtin(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError._built_in(Code.RECIPIENT_NOT_FOUND)

    bob.local_participant.register_rpc_method("custom", custom)
    bob.local_participant.register_rpc_method("crash", crash)
    bob.local_participant.register_rpc_method("builtin", builtin)
    call = alice.local_participant.perform_rpc

    err = await rpc_error(call(destination_identity="bob", method="custom", payload=""))
    assert (err.code, err.message, err.data) == (4001, "not today", '{"why": "closed"}')
    assert str(err) == "not today"

    err = await rpc_error(call(destination_identity="bob", method="crash", payload=""))
    assert err.code == Code.APPLICATION_ERROR == 1500
    assert "internal detail" not in err.message  # not leaked to the caller
    assert any("crash" in r.getMessage() for r in caplog.records if r.name == "livekit")

    err = await rpc_error(call(destination_identity="bob", method="builtin", payload=""))
    assert err.code == Code.RECIPIENT_NOT_FOUND


async def test_response_timeout_cancels_the_handler(join: Join) -> None:
    alice, bob = await pair(join)
    cancelled = asyncio.Event()
    reasons: List[Optional[rtc.RpcError.ErrorCode]] = []

    @bob.local_participant.register_rpc_method("slow")
    async def slow(data: rtc.RpcInvocationData) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            reasons.append(data.cancel_reason)
            cancelled.set()
            raise
        return "too late"

    start = time.monotonic()
    err = await rpc_error(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="slow", payload="", response_timeout=1.0
        )
    )
    assert err.code == Code.RESPONSE_TIMEOUT == 1502
    assert 0.9 < time.monotonic() - start < 5
    await asyncio.wait_for(cancelled.wait(), 5)
    assert reasons == [Code.RESPONSE_TIMEOUT]


async def test_connection_timeout_to_someone_not_in_the_room(join: Join) -> None:
    alice = await join("alice")
    start = time.monotonic()
    err = await rpc_error(
        alice.local_participant.perform_rpc(
            destination_identity="nobody",
            method="m",
            payload="",
            max_round_trip_latency=0.5,
        )
    )
    assert err.code == Code.CONNECTION_TIMEOUT == 1501
    assert time.monotonic() - start < 5


async def test_payload_limits(join: Join) -> None:
    alice, bob = await pair(join)
    calls: List[int] = []

    @bob.local_participant.register_rpc_method("size")
    def size(data: rtc.RpcInvocationData) -> str:
        calls.append(len(data.payload))
        return "x" * int(data.payload[:8])

    limit = 15 * 1024
    # Exactly at the limit works both ways (UTF-8 bytes, here multi-byte).
    at_limit = "00000000" + "é" * ((limit - 8) // 2)
    assert len(at_limit.encode()) == limit
    assert await alice.local_participant.perform_rpc(
        destination_identity="bob", method="size", payload=at_limit
    ) == ""
    answer = await alice.local_participant.perform_rpc(
        destination_identity="bob", method="size", payload=f"{limit:08d}"
    )
    assert len(answer) == limit

    err = await rpc_error(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="size", payload=at_limit + "x"
        )
    )
    assert err.code == Code.REQUEST_PAYLOAD_TOO_LARGE == 1402
    err = await rpc_error(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="size", payload=f"{limit + 1:08d}"
        )
    )
    assert err.code == Code.RESPONSE_PAYLOAD_TOO_LARGE == 1504
    assert len(calls) == 3  # the oversized request never reached bob


async def test_recipient_leaving_mid_call(join: Join) -> None:
    alice, bob = await pair(join)
    started = asyncio.Event()

    @bob.local_participant.register_rpc_method("hang")
    async def hang(data: rtc.RpcInvocationData) -> str:
        started.set()
        await asyncio.sleep(30)
        return ""

    call = asyncio.ensure_future(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="hang", payload="", response_timeout=20
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    start = time.monotonic()
    await bob.disconnect()
    err = await rpc_error(call)
    assert err.code == Code.RECIPIENT_DISCONNECTED == 1503
    assert time.monotonic() - start < 5


async def test_recipient_process_gone_mid_call(server: Any, token: Any, join: Join) -> None:
    """The callee vanishes without answering (its process is killed): the caller
    learns it from the departure, long before its response timeout."""
    peer = await asyncio.create_subprocess_exec(
        official_python(), str(ROOT / "tests" / "interop" / "rpc_peer.py"),
        server.url, token("official"), "ours", "--serve-only", "--timeout", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        alice = await join("ours")
        assert await settle(lambda: "official" in alice.remote_participants, timeout=30)
        assert await alice.local_participant.perform_rpc(
            destination_identity="official", method="echo", payload="ab"
        ) == "ba"
        call = asyncio.ensure_future(
            alice.local_participant.perform_rpc(
                destination_identity="official", method="hang", payload="", response_timeout=30
            )
        )
        await asyncio.sleep(1.0)
        start = time.monotonic()
        peer.kill()
        err = await rpc_error(call)
        assert err.code == Code.RECIPIENT_DISCONNECTED
        assert time.monotonic() - start < 25
    finally:
        if peer.returncode is None:
            peer.kill()
        await peer.wait()


async def test_our_disconnect_ends_pending_calls(join: Join) -> None:
    alice, bob = await pair(join)
    started = asyncio.Event()
    unwound = asyncio.Event()

    @bob.local_participant.register_rpc_method("hang")
    async def hang(data: rtc.RpcInvocationData) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            unwound.set()
        return ""

    call = asyncio.ensure_future(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="hang", payload="", response_timeout=20
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    start = time.monotonic()
    await alice.disconnect()
    err = await rpc_error(call)
    assert err.code in (Code.RECIPIENT_DISCONNECTED, Code.SEND_FAILED), err
    assert time.monotonic() - start < 5

    # After the disconnect, calls fail at once.
    err = await rpc_error(
        alice.local_participant.perform_rpc(destination_identity="bob", method="hang", payload="")
    )
    assert err.code == Code.SEND_FAILED


async def test_disconnect_of_the_callee_answers_its_pending_calls(join: Join) -> None:
    """A handler still running when its room disconnects is cancelled, with
    cancel_reason RECIPIENT_DISCONNECTED, and its caller is told at once."""
    alice, bob = await pair(join)
    reasons: List[Optional[rtc.RpcError.ErrorCode]] = []
    started = asyncio.Event()

    @bob.local_participant.register_rpc_method("hang")
    async def hang(data: rtc.RpcInvocationData) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            reasons.append(data.cancel_reason)
            raise
        return ""

    call = asyncio.ensure_future(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="hang", payload="", response_timeout=20
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    start = time.monotonic()
    await bob.disconnect()
    assert reasons == [Code.RECIPIENT_DISCONNECTED]
    err = await rpc_error(call)
    assert err.code == Code.RECIPIENT_DISCONNECTED
    assert time.monotonic() - start < 5


async def test_cancelled_call_leaves_nothing_behind(join: Join) -> None:
    alice, bob = await pair(join)

    @bob.local_participant.register_rpc_method("hang")
    async def hang(data: rtc.RpcInvocationData) -> str:
        await asyncio.sleep(2)
        return "late"

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(
            alice.local_participant.perform_rpc(
                destination_identity="bob", method="hang", payload=""
            ),
            0.3,
        )
    bob.local_participant.register_rpc_method("quick", lambda d: "ok")
    assert await alice.local_participant.perform_rpc(
        destination_identity="bob", method="quick", payload=""
    ) == "ok"


class Recording(rtc.RpcInterceptor):
    def __init__(self, name: str, log: List[str]) -> None:
        self.name = name
        self.log = log

    async def intercept_outgoing(
        self, call: rtc.RpcCallInfo, next: Callable[[rtc.RpcCallInfo], Awaitable[str]]
    ) -> str:
        self.log.append(f"{self.name} out {call.method}")
        call = rtc.RpcCallInfo(
            destination_identity=call.destination_identity,
            method=call.method,
            payload=call.payload + f"+{self.name}",
            response_timeout=call.response_timeout,
        )
        try:
            return await next(call)
        except rtc.RpcError as e:
            self.log.append(f"{self.name} saw {e.code}")
            raise

    async def intercept_incoming(
        self,
        invocation: rtc.RpcInvocationData,
        next: Callable[[rtc.RpcInvocationData], Awaitable[Optional[str]]],
    ) -> Optional[str]:
        self.log.append(f"{self.name} in {invocation.method}")
        try:
            answer = await next(invocation)
        except Exception as e:
            self.log.append(f"{self.name} saw {type(e).__name__}")
            raise
        return f"[{answer}]"


async def test_interceptors(join: Join) -> None:
    alice, bob = await pair(join)
    log: List[str] = []
    outer, inner = Recording("outer", log), Recording("inner", log)
    alice.local_participant.add_rpc_interceptor(outer)
    alice.local_participant.add_rpc_interceptor(inner)
    alice.local_participant.add_rpc_interceptor(outer)  # once only
    bob_log: List[str] = []
    bob.local_participant.add_rpc_interceptor(Recording("bob", bob_log))
    bob.local_participant.register_rpc_method("echo", lambda d: d.payload)

    answer = await alice.local_participant.perform_rpc(
        destination_identity="bob", method="echo", payload="p"
    )
    assert answer == "[p+outer+inner]"
    assert log == ["outer out echo", "inner out echo"]
    assert bob_log == ["bob in echo"]

    err = await rpc_error(
        alice.local_participant.perform_rpc(destination_identity="bob", method="gone", payload="")
    )
    assert err.code == Code.UNSUPPORTED_METHOD
    assert log[-2:] == ["inner saw 1400", "outer saw 1400"]
    assert bob_log == ["bob in echo"]  # the core answered the unknown method itself
    log.clear()
    alice.local_participant.remove_rpc_interceptor(outer)
    alice.local_participant.remove_rpc_interceptor(inner)
    assert await alice.local_participant.perform_rpc(
        destination_identity="bob", method="echo", payload="q"
    ) == "[q]"
    assert log == []


def official_python() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "official-sdk.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return out.stdout.strip()


async def test_rpc_both_ways_with_official_sdk(server: Any, token: Any, join: Join) -> None:
    peer = await asyncio.create_subprocess_exec(
        official_python(), str(ROOT / "tests" / "interop" / "rpc_peer.py"),
        server.url, token("official"), "ours", "--timeout", "40",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        room = await join("ours")
        lp = room.local_participant
        served: List[Tuple[str, str]] = []

        @lp.register_rpc_method("ours.echo")
        async def echo(data: rtc.RpcInvocationData) -> str:
            served.append((data.caller_identity, data.payload))
            return data.payload[::-1]

        @lp.register_rpc_method("ours.custom")
        def custom(data: rtc.RpcInvocationData) -> str:
            raise rtc.RpcError(4100, "ours says no", "extra")

        @lp.register_rpc_method("ours.crash")
        def crash(data: rtc.RpcInvocationData) -> str:
            raise KeyError("x")

        @lp.register_rpc_method("ours.slow")
        async def slow(data: rtc.RpcInvocationData) -> str:
            await asyncio.sleep(10)
            return ""

        assert await settle(lambda: "official" in room.remote_participants, timeout=30)
        # ours -> official
        assert await lp.perform_rpc(
            destination_identity="official", method="echo", payload="héllo"
        ) == "olléh"
        err = await rpc_error(lp.perform_rpc(destination_identity="official", method="custom", payload=""))
        assert (err.code, err.message, err.data) == (4001, "official says no", "details")
        err = await rpc_error(lp.perform_rpc(destination_identity="official", method="crash", payload=""))
        assert err.code == Code.APPLICATION_ERROR
        err = await rpc_error(lp.perform_rpc(destination_identity="official", method="none", payload=""))
        assert err.code == Code.UNSUPPORTED_METHOD
        err = await rpc_error(
            lp.perform_rpc(
                destination_identity="official", method="hang", payload="", response_timeout=1
            )
        )
        assert err.code == Code.RESPONSE_TIMEOUT
        big = await lp.perform_rpc(destination_identity="official", method="big", payload="15360")
        assert len(big) == 15360

        # The peer's own calls to us: wait for their five results, then leave.
        lines: List[Dict[str, Any]] = []
        assert peer.stdout is not None
        while sum(1 for x in lines if x.get("event") == "result") < 5:
            raw = await asyncio.wait_for(peer.stdout.readline(), 40)
            assert raw, lines
            lines.append(json.loads(raw))
        await room.disconnect()
        out, err_out = await asyncio.wait_for(peer.communicate(), 30)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    lines += [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    assert peer.returncode == 0, (lines, err_out.decode()[-3000:])
    results = {x["call"]: x for x in lines if x.get("event") == "result"}
    # official -> ours
    assert results["ours.echo"] == {"event": "result", "call": "ours.echo", "payload": "✓dlrow"}
    assert served == [("official", "world✓")]
    assert results["ours.custom"]["error"] == [4100, "ours says no", "extra"]
    assert results["ours.crash"]["error"][0] == 1500
    assert results["ours.unknown"]["error"][0] == 1400
    assert results["ours.slow"]["error"][0] == 1502


async def test_rpc_example(server: Any) -> None:
    from lkserver import API_KEY, API_SECRET

    env = dict(
        os.environ,
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        LIVEKIT_ROOM="rpc-example-test",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "rpc.py"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 60)
    out = out_b.decode()
    assert proc.returncode == 0, out + err_b.decode()
    assert "[caller] greet -> 'Hello, caller! You said: hi'" in out
    assert "[caller] divide(1, 0) failed: 2001 division by zero" in out
    assert "[caller] nope failed: 1400 Method not supported at destination" in out
    assert "[caller] slow failed: 1502 Response timeout" in out
    assert out.rstrip().endswith("done")
