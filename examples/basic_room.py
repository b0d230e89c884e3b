"""Two participants join a room, print what they see and exchange a data message.

Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, e.g. a local server:

    python3 tests/lkserver.py -- python examples/basic_room.py

Optional: LIVEKIT_ROOM (room name, default "demo") and LIVEKIT_RUN_SECS (how long
to stay after the exchange, default 2).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from livekit import api, rtc


def make_token(identity: str, room: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True)
    return (
        api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity(identity)
        .with_name(identity.capitalize())
        .with_grants(grants)
        .to_jwt()
    )


def watch(room: rtc.Room, who: str, inbox: asyncio.Queue[rtc.DataPacket]) -> None:
    """Prints the room's events as `who` sees them."""

    @room.on("participant_connected")
    def on_participant_connected(participant: rtc.RemoteParticipant) -> None:
        print(f"[{who}] participant connected: {participant.identity}")

    @room.on("participant_disconnected")
    def on_participant_disconnected(participant: rtc.RemoteParticipant) -> None:
        print(f"[{who}] participant disconnected: {participant.identity}")

    @room.on("participant_metadata_changed")
    def on_metadata(participant: rtc.Participant, old: str, new: str) -> None:
        print(f"[{who}] {participant.identity} metadata: {old!r} -> {new!r}")

    @room.on("connection_state_changed")
    def on_state(state: rtc.ConnectionState.ValueType) -> None:
        print(f"[{who}] connection state: {rtc.ConnectionState.Name(state)}")

    @room.on("data_received")
    def on_data(packet: rtc.DataPacket) -> None:
        sender = packet.participant.identity if packet.participant else "server"
        print(f"[{who}] data from {sender} on {packet.topic!r}: {packet.data.decode()}")
        inbox.put_nowait(packet)

    @room.on("disconnected")
    def on_disconnected(reason: rtc.DisconnectReason.ValueType) -> None:
        print(f"[{who}] disconnected: {rtc.DisconnectReason.Name(reason)}")


async def main() -> int:
    url = os.environ["LIVEKIT_URL"]
    room_name = os.environ.get("LIVEKIT_ROOM", "demo")
    linger = float(os.environ.get("LIVEKIT_RUN_SECS", "2"))

    alice_inbox: asyncio.Queue[rtc.DataPacket] = asyncio.Queue()
    bob_inbox: asyncio.Queue[rtc.DataPacket] = asyncio.Queue()
    async with rtc.Room() as alice, rtc.Room() as bob:
        watch(alice, "alice", alice_inbox)
        watch(bob, "bob", bob_inbox)

        await alice.connect(url, make_token("alice", room_name))
        me = alice.local_participant.identity
        print(f"[alice] joined {alice.name} ({await alice.sid}) as {me}")
        await bob.connect(url, make_token("bob", room_name))
        print(f"[bob] joined; already here: {sorted(bob.remote_participants)}")

        # Wait until alice sees bob, so both ends are fully in the room.
        while "bob" not in alice.remote_participants:
            await asyncio.sleep(0.05)

        await alice.local_participant.set_metadata("hello from alice")
        await alice.local_participant.publish_data("hi bob!", topic="chat")
        got = await asyncio.wait_for(bob_inbox.get(), 10)
        await bob.local_participant.publish_data(b"hi alice, got: " + got.data, topic="chat")
        await asyncio.wait_for(alice_inbox.get(), 10)

        await asyncio.sleep(linger)
        await bob.disconnect()
        # The server tells alice once bob's session is gone (a second or two).
        for _ in range(200):
            if "bob" not in alice.remote_participants:
                break
            await asyncio.sleep(0.05)
    print("done")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
