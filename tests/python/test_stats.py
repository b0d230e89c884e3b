"""Room.get_rtc_stats against the real server: what each peer connection reports
about itself, as the official SDK's stats name it (livekit.rtc.stats)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, List

import pytest

from livekit import rtc


def by_kind(entries: List[rtc.stats.RtcStats]) -> Dict[str, Dict[str, Any]]:
    """{kind: {id: the kind's message}} of one peer connection's stats."""
    out: Dict[str, Dict[str, Any]] = {}
    for e in entries:
        kind = e.WhichOneof("stats")
        assert kind is not None
        item = getattr(e, kind)
        assert item.rtc.id and item.rtc.timestamp > 0, e
        out.setdefault(kind, {})[item.rtc.id] = item
    return out


def chosen_pair(kinds: Dict[str, Dict[str, Any]]) -> Any:
    """The candidate pair the transport names as selected, checked to exist with both
    its candidates."""
    (transport,) = kinds["transport"].values()
    pair_id = transport.transport.selected_candidate_pair_id
    pair = kinds["candidate_pair"][pair_id].candidate_pair
    assert pair.local_candidate_id in kinds["local_candidate"]
    assert pair.remote_candidate_id in kinds["remote_candidate"]
    return pair


async def test_stats_tell_the_transport_the_chosen_path_and_the_data_channels(
    rooms: Callable[[], rtc.Room], server: Any, token: Any
) -> None:
    alice, bob = rooms(), rooms()
    await alice.connect(server.url, token("alice"))
    await bob.connect(server.url, token("bob"))
    got: "asyncio.Queue[rtc.DataPacket]" = asyncio.Queue()
    bob.on("data_received", got.put_nowait)
    for i in range(3):
        await alice.local_participant.publish_data(f"m{i}".encode() * 100, reliable=True)
    for _ in range(3):
        await asyncio.wait_for(got.get(), 10)

    sent = await alice.get_rtc_stats()
    pub = by_kind(sent.publisher_stats)
    (transport,) = pub["transport"].values()
    t = transport.transport
    assert t.ice_state == rtc.stats.ICE_TRANSPORT_CONNECTED
    assert t.dtls_state == rtc.stats.DTLS_TRANSPORT_CONNECTED
    assert t.ice_role == rtc.stats.ICE_CONTROLLING  # we offer on the publisher
    assert t.bytes_sent > 900 and t.packets_received > 0
    pair = chosen_pair(pub)
    assert pair.nominated and pair.state == rtc.stats.PAIR_SUCCEEDED
    assert pair.bytes_sent > 900 and pair.last_packet_sent_timestamp > 0
    local = pub["local_candidate"][pair.local_candidate_id].candidate
    assert local.candidate_type == rtc.stats.HOST and local.protocol == "udp"
    assert local.port > 0 and local.priority > 0 and local.foundation
    channels = {c.dc.label: c.dc for c in pub["data_channel"].values()}
    assert set(channels) >= {"_reliable", "_lossy"}
    reliable = channels["_reliable"]
    assert reliable.state == rtc.stats.DC_OPEN
    assert reliable.messages_sent >= 3 and reliable.bytes_sent >= 3 * 200
    (pc,) = pub["peer_connection"].values()
    assert pc.pc.data_channels_opened >= 2

    # The receiver's side: ours receives on its subscriber connection, the official
    # SDK (one peer connection for both ways) on its publisher; either way a connected
    # transport with a chosen path, and the packets counted on a "_reliable" channel.
    received = await bob.get_rtc_stats()
    lists = [x for x in (received.publisher_stats, received.subscriber_stats) if x]
    assert lists
    incoming = 0
    for entries in lists:
        kinds = by_kind(entries)
        (transport,) = kinds["transport"].values()
        assert transport.transport.ice_state == rtc.stats.ICE_TRANSPORT_CONNECTED
        chosen_pair(kinds)
        incoming += sum(
            c.dc.messages_received
            for c in kinds.get("data_channel", {}).values()
            if c.dc.label == "_reliable"
        )
    assert incoming >= 3

    await alice.disconnect()
    with pytest.raises(RuntimeError):
        await alice.get_rtc_stats()
