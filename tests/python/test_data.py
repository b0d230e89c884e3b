"""Data packets between rooms: topic, sender, kind, destinations, limits."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Tuple

import pytest

from helpers import Recorder, settle
from livekit import rtc

Join = Callable[..., Awaitable[rtc.Room]]


async def pair(join: Join) -> Tuple[rtc.Room, rtc.Room]:
    """alice and bob in one room, each seeing the other."""
    alice = await join("alice")
    bob = await join("bob")
    assert await settle(lambda: "bob" in alice.remote_participants)
    return alice, bob


async def test_reliable_both_ways_with_topic_and_sender(join: Join) -> None:
    alice, bob = await pair(join)
    at_alice = Recorder(alice, "data_received")
    at_bob = Recorder(bob, "data_received")

    for i in range(5):
        await alice.local_participant.publish_data(f"a{i}", topic="chat")
    await bob.local_participant.publish_data(b"\x00\x01binary", topic="bin")

    await settle(lambda: len(at_bob.of("data_received")) == 5)
    packets = [args[0] for args in at_bob.of("data_received")]
    assert [p.data for p in packets] == [f"a{i}".encode() for i in range(5)]  # in order
    for p in packets:
        assert isinstance(p, rtc.DataPacket)
        assert p.topic == "chat"
        assert p.kind == rtc.DataPacketKind.KIND_RELIABLE
        assert p.participant is bob.remote_participants["alice"]

    (p,) = await at_alice.wait("data_received")
    assert (p.data, p.topic) == (b"\x00\x01binary", "bin")
    assert p.participant is alice.remote_participants["bob"]


async def test_lossy(join: Join) -> None:
    alice, bob = await pair(join)
    at_bob = Recorder(bob, "data_received")
    for i in range(20):
        await alice.local_participant.publish_data(f"l{i}", reliable=False, topic="pos")
        await asyncio.sleep(0.005)
    (p,) = await at_bob.wait("data_received")
    assert p.kind == rtc.DataPacketKind.KIND_LOSSY
    assert p.topic == "pos"
    assert p.data.startswith(b"l")
    assert p.participant is bob.remote_participants["alice"]
    await settle(lambda: len(at_bob.of("data_received")) >= 15, timeout=3)
    assert len(at_bob.of("data_received")) >= 15  # loopback loses next to nothing


async def test_empty_topic_and_payload(join: Join) -> None:
    alice, bob = await pair(join)
    at_bob = Recorder(bob, "data_received")
    await alice.local_participant.publish_data(b"")
    await alice.local_participant.publish_data("x")
    await settle(lambda: len(at_bob.of("data_received")) == 2)
    first, second = (a[0] for a in at_bob.of("data_received"))
    assert (first.data, first.topic) == (b"", "")
    assert second.data == b"x"


async def test_destination_identities(join: Join) -> None:
    alice = await join("alice")
    bob = await join("bob")
    carol = await join("carol")
    assert await settle(lambda: {"bob", "carol"} <= set(alice.remote_participants))
    at_bob = Recorder(bob, "data_received")
    at_carol = Recorder(carol, "data_received")

    await alice.local_participant.publish_data("for bob", destination_identities=["bob"])
    await alice.local_participant.publish_data("for all", topic="marker")

    # Reliable packets are ordered: once carol has the marker, she would have had the
    # first packet too if it had been sent to her.
    await at_carol.wait("data_received", lambda p: p.topic == "marker")
    await at_bob.wait("data_received", lambda p: p.topic == "marker")
    assert [a[0].data for a in at_bob.of("data_received")] == [b"for bob", b"for all"]
    assert [a[0].data for a in at_carol.of("data_received")] == [b"for all"]


async def test_oversized_payload_raises(join: Join) -> None:
    alice, _ = await pair(join)
    with pytest.raises(rtc.PublishDataError):
        await alice.local_participant.publish_data(b"x" * 70_000)
    # The room is still usable afterwards.
    await alice.local_participant.publish_data(b"x" * 10_000)


async def test_publish_after_disconnect_raises(join: Join) -> None:
    alice = await join("alice")
    local = alice.local_participant
    await alice.disconnect()
    with pytest.raises(rtc.PublishDataError):
        await local.publish_data("late")


async def test_concurrent_publishes_arrive_complete_and_in_call_order(join: Join) -> None:
    """10,000 publish_data calls made at once (10 MB): every packet arrives, once, in the
    order the calls were made, and the core never holds more than its send window."""
    alice, bob = await pair(join)
    got: list[bytes] = []
    bob.on("data_received", lambda p: got.append(p.data))
    count, size = 10_000, 1024
    payloads = [i.to_bytes(4, "big") * (size // 4) for i in range(count)]
    sends = [alice.local_participant.publish_data(p, topic="burst") for p in payloads]
    await asyncio.gather(*sends)
    assert await settle(lambda: len(got) >= count, timeout=60), f"{len(got)} of {count} arrived"
    assert len(got) == count
    order = [int.from_bytes(p[:4], "big") for p in got]
    assert order == list(range(count)), "out of call order"


async def test_a_cancelled_publish_does_not_disturb_the_others(join: Join) -> None:
    alice, bob = await pair(join)
    at_bob = Recorder(bob, "data_received")
    sends = [
        asyncio.ensure_future(alice.local_participant.publish_data(f"p{i}".encode() * 500))
        for i in range(200)
    ]
    sends[100].cancel()
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(results[100], asyncio.CancelledError)
    assert all(r is None for i, r in enumerate(results) if i != 100)
    await alice.local_participant.publish_data("last", topic="marker")
    await at_bob.wait("data_received", lambda p: p.topic == "marker", timeout=30)
    data = [a[0].data for a in at_bob.of("data_received")][:-1]
    expected = [f"p{i}".encode() * 500 for i in range(200)]
    # The cancelled call may or may not have gone out; everything else did, in order.
    assert [d for d in data if d != expected[100]] == expected[:100] + expected[101:]
