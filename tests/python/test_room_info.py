"""The room's and participants' non-media surface: counts, timeouts, creation time,
recording, permissions, kind details, activity and connection quality."""

from __future__ import annotations

import datetime
from typing import Any, Awaitable, Callable, List

import pytest

from helpers import Recorder, settle
from livekit import api, rtc

Join = Callable[..., Awaitable[rtc.Room]]


async def test_room_counts_times_and_recording(join: Join) -> None:
    alice = await join("alice")
    rec = Recorder(alice, "room_updated")
    started = datetime.datetime.now(datetime.timezone.utc)
    bob = await join("bob")
    await bob.local_participant.publish_data("here")
    # The server counts participants and tells the room (eventually consistent).
    assert await settle(lambda: alice.num_participants == 2, timeout=15), alice.num_participants
    assert rec.of("room_updated"), "no room_updated event"
    assert alice.num_publishers == 0
    assert not alice.is_recording
    created = alice.creation_time
    assert created.tzinfo is not None
    assert abs((created - started).total_seconds()) < 60
    assert isinstance(alice.empty_timeout, float) and alice.empty_timeout > 0
    assert isinstance(alice.departure_timeout, float) and alice.departure_timeout > 0


async def test_permissions_kind_details_and_quality(
    join: Join, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    alice = await join("alice")
    bob = await join("bob")
    at_alice = Recorder(alice, "participant_permissions_changed", "participant_active")
    at_bob = Recorder(bob, "participant_permissions_changed")
    # bob's data makes him known to alice at once; the server's description follows.
    await bob.local_participant.publish_data("hello")
    assert await settle(lambda: "bob" in alice.remote_participants)
    remote_bob = alice.remote_participants["bob"]
    (active,) = await at_alice.wait("participant_active", timeout=10)
    assert active is remote_bob
    assert remote_bob.state == rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
    assert remote_bob.kind_details == []
    assert remote_bob.permissions.can_publish_data
    assert bob.local_participant.permissions.can_subscribe
    assert remote_bob.connection_quality == rtc.ConnectionQuality.QUALITY_UNKNOWN

    await lkapi.room.update_participant(
        api.UpdateParticipantRequest(
            room=room_name,
            identity="bob",
            permission=api.ParticipantPermission(
                can_subscribe=True, can_publish=True, can_publish_data=False
            ),
        )
    )
    who: Any
    for rec, who in ((at_alice, remote_bob), (at_bob, bob.local_participant)):
        p, permissions = await rec.wait(
            "participant_permissions_changed", lambda p, perms: not perms.can_publish_data
        )
        assert p is who
        assert permissions == who.permissions
        assert not who.permissions.can_publish_data
        assert who.permissions.can_subscribe


async def test_disconnect_with_a_reason(join: Join) -> None:
    alice = await join("alice")
    bob = await join("bob")
    await bob.local_participant.publish_data("hi")
    assert await settle(lambda: "bob" in alice.remote_participants)
    rec = Recorder(alice, "participant_disconnected")
    await bob.disconnect(reason=rtc.DisconnectReason.USER_REJECTED)
    (gone,) = await rec.wait("participant_disconnected")
    assert gone.identity == "bob"
    # The server passes our reason on to the others.
    assert gone.disconnect_reason == rtc.DisconnectReason.USER_REJECTED
    assert not bob.isconnected()


async def test_track_subscription_permissions_are_accepted(join: Any) -> None:
    room = await join("perm-owner")
    other = await join("perm-other")
    room.local_participant.set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[
            rtc.ParticipantTrackPermission(participant_identity="perm-other", allow_all=True)
        ],
    )
    room.local_participant.set_track_subscription_permissions(allow_all_participants=True)
    # The session goes on: data still flows after the updates.
    got: List[bytes] = []
    other.on("data_received", lambda p: got.append(p.data))
    await room.local_participant.publish_data(b"after")
    assert await settle(lambda: got == [b"after"], timeout=10)
    await room.disconnect()
    with pytest.raises(RuntimeError):
        room.local_participant.set_track_subscription_permissions(allow_all_participants=True)
