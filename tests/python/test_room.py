"""Room lifecycle against a real server: the seed's documented usage, properties,
participants joining and leaving, disconnect, deterministic release."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, List

import pytest

from helpers import Recorder, settle
from livekit import rtc
from livekit.rtc import _native

Join = Callable[..., Awaitable[rtc.Room]]


async def test_seed_example(server: Any, token: Any, join: Join) -> None:
    # The documented example, verbatim in spirit: handlers before connect.
    room = rtc.Room()
    seen: List[str] = []

    @room.on("participant_connected")
    def on_participant_connected(participant: rtc.RemoteParticipant) -> None:
        print(f"Participant connected: {participant.identity}")
        seen.append(participant.identity)

    def on_connected() -> None:
        seen.append("<connected>")

    room.on("connected", on_connected)

    await room.connect(server.url, token("alice"))
    try:
        assert room.isconnected()
        assert room.connection_state == rtc.ConnectionState.CONN_CONNECTED
        assert room.local_participant.identity == "alice"
        assert room.local_participant.sid.startswith("PA_")
        sid = await room.sid
        assert sid.startswith("RM_")
        assert room.name.startswith("test-")
        assert room.metadata == ""
        assert dict(room.remote_participants) == {}

        await join("bob")
        assert await settle(lambda: "bob" in seen)
        assert seen[0] == "<connected>"
        bob = room.remote_participants["bob"]
        assert isinstance(bob, rtc.RemoteParticipant)
        assert bob.identity == "bob" and bob.sid.startswith("PA_")
        assert bob.kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
        assert bob.disconnect_reason is None
    finally:
        await room.disconnect()
    assert not room.isconnected()
    assert room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED


async def test_existing_participants_and_info(join: Join) -> None:
    alice = await join("alice", name="Alice", metadata="a-meta", attributes={"role": "host"})
    bob = await join("bob")
    assert "alice" in bob.remote_participants
    a = bob.remote_participants["alice"]
    assert (a.name, a.metadata, a.attributes) == ("Alice", "a-meta", {"role": "host"})
    assert alice.local_participant.name == "Alice"
    assert alice.local_participant.attributes == {"role": "host"}
    assert a.joined_at is not None


async def test_connected_event_reaches_handlers_registered_after_connect(
    server: Any, token: Any, rooms: Any
) -> None:
    room: rtc.Room = rooms()
    await room.connect(server.url, token("alice"))
    rec = Recorder(room, "connected", "connection_state_changed")  # registered after connect
    await rec.wait("connected", timeout=5)


async def test_disconnect_is_idempotent_and_emits_disconnected(server: Any, token: Any) -> None:
    room = rtc.Room()
    rec = Recorder(room, "disconnected", "connection_state_changed")
    await room.disconnect()  # not connected yet: nothing to do
    await room.connect(server.url, token("alice"))
    await asyncio.gather(room.disconnect(), room.disconnect())
    await room.disconnect()
    assert rec.of("disconnected") == [(rtc.DisconnectReason.CLIENT_INITIATED,)]
    assert rec.of("connection_state_changed")[-1] == (rtc.ConnectionState.CONN_DISCONNECTED,)
    assert not room.isconnected()
    assert _native.handle_count() == 0


async def test_async_with_releases_handles_deterministically(server: Any, token: Any) -> None:
    baseline = _native.handle_count()
    async with rtc.Room() as room:
        await room.connect(server.url, token("alice"))
        assert _native.handle_count() >= baseline + 2  # room + local participant
    # No sleep, no GC: released on exit.
    assert _native.handle_count() == baseline
    assert not room.isconnected()

    async with rtc.Room() as room2:
        await room2.connect(server.url, token("bob"))
        await room2.aclose()
        assert _native.handle_count() == baseline
    assert _native.handle_count() == baseline


async def test_reconnect_same_room_object(server: Any, token: Any, rooms: Any) -> None:
    room: rtc.Room = rooms()
    for i in range(3):
        await room.connect(server.url, token(f"alice-{i}"))
        assert room.local_participant.identity == f"alice-{i}"
        await room.disconnect()
    with pytest.raises(rtc.ConnectError):
        await room.connect(server.url, token("x"))
        await room.connect(server.url, token("y"))  # already connected


async def test_remote_participant_leaving(join: Join) -> None:
    alice = await join("alice")
    rec = Recorder(alice, "participant_connected", "participant_disconnected")
    bob = await join("bob")
    (joined,) = await rec.wait("participant_connected", lambda p: p.identity == "bob")
    await bob.disconnect()
    (left,) = await rec.wait("participant_disconnected", timeout=15)
    assert left is joined
    assert left.identity == "bob"
    assert left.disconnect_reason == rtc.DisconnectReason.CLIENT_INITIATED
    assert "bob" not in alice.remote_participants
    # Only alice's own handles remain: bob's participant handle in alice's room is gone.
    assert _native.handle_count() == 2


async def test_handler_exceptions_are_logged_not_raised(
    join: Join, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await join("alice")
    calls: List[str] = []

    @alice.on("participant_connected")
    def broken(p: rtc.RemoteParticipant) -> None:
        raise RuntimeError("handler bug")

    @alice.on("participant_connected")
    def fine(p: rtc.RemoteParticipant) -> None:
        calls.append(p.identity)

    with caplog.at_level(logging.ERROR, logger="livekit"):
        await join("bob")
        assert await settle(lambda: calls == ["bob"])
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)
    assert alice.isconnected()


async def test_many_rooms_route_only_their_own_events(join: Join) -> None:
    # Each room only ever sees its own participants: events are routed, not fanned out.
    rooms = [await join(f"p{i}", room=f"iso-{i}") for i in range(4)]
    recs = [Recorder(r, "participant_connected") for r in rooms]
    await asyncio.gather(*(join(f"q{i}", room=f"iso-{i}") for i in range(4)))
    for i, rec in enumerate(recs):
        (p,) = await rec.wait("participant_connected")
        assert p.identity == f"q{i}"
    await asyncio.sleep(0.3)
    for i, rec in enumerate(recs):
        assert [a[0].identity for a in rec.of("participant_connected")] == [f"q{i}"]


async def test_room_sid_and_async_property(join: Join) -> None:
    alice = await join("alice")
    bob = await join("bob")
    assert await alice.sid == await bob.sid
    assert repr(alice).startswith("rtc.Room(sid=RM_")


async def test_room_ended_by_the_server_releases_itself(
    join: Join, lkapi: Any, room_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    from livekit import api

    caplog.set_level(logging.INFO, logger="livekit")
    alice = await join("alice")
    rec = Recorder(alice, "disconnected", "connection_state_changed")
    await lkapi.room.remove_participant(
        api.RoomParticipantIdentity(room=room_name, identity="alice")
    )
    (reason,) = await rec.wait("disconnected", timeout=15)
    # The core's own log records reach the "livekit" logger (target-prefixed).
    assert await settle(
        lambda: any(r.getMessage().startswith("livekit_ffi") for r in caplog.records), timeout=2
    )
    assert reason == rtc.DisconnectReason.PARTICIPANT_REMOVED
    assert alice.failure_reason == rtc.FailureReason.FAILURE_PARTICIPANT_REMOVED
    assert not alice.isconnected()
    # The end of the room's stream released every handle, without disconnect().
    assert await settle(lambda: _native.handle_count() == 0)
    await alice.disconnect()  # still harmless
