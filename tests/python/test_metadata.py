"""Metadata, names and attributes: our own updates and RoomService updates raise the
documented events, with old and new values, on every room that sees the change."""

from __future__ import annotations

from typing import Awaitable, Callable, Tuple

import pytest

from helpers import Recorder, settle
from livekit import api, rtc

Join = Callable[..., Awaitable[rtc.Room]]

EVENTS = (
    "participant_metadata_changed",
    "participant_name_changed",
    "participant_attributes_changed",
    "room_metadata_changed",
)


async def pair(join: Join) -> Tuple[rtc.Room, rtc.Room, Recorder, Recorder]:
    alice = await join("alice", name="Alice", metadata="m0", attributes={"a": "1", "b": "2"})
    bob = await join("bob")
    assert await settle(lambda: "bob" in alice.remote_participants)
    return alice, bob, Recorder(alice, *EVENTS), Recorder(bob, *EVENTS)


async def test_own_metadata_and_name(join: Join) -> None:
    alice, bob, at_alice, at_bob = await pair(join)
    me = alice.local_participant

    await me.set_metadata("m1")
    p, old, new = await at_alice.wait("participant_metadata_changed")
    assert (p, old, new) == (me, "m0", "m1")
    p, old, new = await at_bob.wait("participant_metadata_changed")
    assert (p, old, new) == (bob.remote_participants["alice"], "m0", "m1")
    assert me.metadata == "m1" and bob.remote_participants["alice"].metadata == "m1"

    await me.set_name("Alice II")
    p, old, new = await at_alice.wait("participant_name_changed")
    assert (p, old, new) == (me, "Alice", "Alice II")
    p, old, new = await at_bob.wait("participant_name_changed")
    assert (p.identity, old, new) == ("alice", "Alice", "Alice II")
    assert bob.remote_participants["alice"].name == "Alice II"


async def test_own_attributes(join: Join) -> None:
    alice, bob, at_alice, at_bob = await pair(join)
    me = alice.local_participant

    await me.set_attributes({"b": "3", "c": "4"})
    changed, p = await at_alice.wait("participant_attributes_changed")
    assert p is me
    assert changed == {"b": "3", "c": "4"}
    assert me.attributes == {"a": "1", "b": "3", "c": "4"}
    changed, p = await at_bob.wait("participant_attributes_changed")
    assert p is bob.remote_participants["alice"]
    assert changed == {"b": "3", "c": "4"}
    assert p.attributes == {"a": "1", "b": "3", "c": "4"}

    # An empty value deletes the key; the event reports it with "".
    await me.set_attributes({"a": ""})
    changed, p = await at_bob.wait("participant_attributes_changed", lambda c, p: "a" in c)
    assert changed == {"a": ""}
    assert p.attributes == {"b": "3", "c": "4"}
    assert await settle(lambda: me.attributes == {"b": "3", "c": "4"})


async def test_updates_without_permission_raise(join: Join) -> None:
    eve = await join("eve", can_update_own_metadata=False)
    with pytest.raises(rtc.ParticipantUpdateError):
        await eve.local_participant.set_metadata("nope")
    assert eve.isconnected()


async def test_room_service_updates(join: Join, lkapi: api.LiveKitAPI, room_name: str) -> None:
    alice, bob, at_alice, at_bob = await pair(join)

    await lkapi.room.update_participant(
        api.UpdateParticipantRequest(
            room=room_name, identity="alice", metadata="srv", name="Server Alice",
            attributes={"a": "9"},
        )
    )
    for rec, who in ((at_alice, alice.local_participant), (at_bob, bob.remote_participants["alice"])):
        p, old, new = await rec.wait("participant_metadata_changed")
        assert (p, old, new) == (who, "m0", "srv")
        p, old, new = await rec.wait("participant_name_changed")
        assert (p, old, new) == (who, "Alice", "Server Alice")
        changed, p = await rec.wait("participant_attributes_changed")
        assert (changed, p) == ({"a": "9"}, who)
        assert who.attributes == {"a": "9", "b": "2"}

    await lkapi.room.update_room_metadata(
        api.UpdateRoomMetadataRequest(room=room_name, metadata="room-meta")
    )
    for rec, room in ((at_alice, alice), (at_bob, bob)):
        assert await rec.wait("room_metadata_changed") == ("", "room-meta")
        assert room.metadata == "room-meta"
