"""Relays: media through a TURN server when nothing else gets through, against the
real server in a network of the test's own (tests/netns.py: the server and each
client in a network namespace of their own; faults are iptables DROP rules).

A participant in relay-only mode (RtcConfiguration(ice_transport_type=
TRANSPORT_RELAY), peer.py --relay) gathers relay candidates only; on top of that the
server's own ICE ports (7881/tcp, 7882/udp) are blocked for it, so its room works
only if its media really goes through the relay.

- The server's embedded TURN over UDP (3478; TCP 443 blocked too): our package and
  the official SDK, both relay-only, exchange 300 reliable packets each way, once
  and in order, and hear each other's tone.
- The server's embedded TURN over TLS (turns:turn.lkt.test:443, a certificate of a
  test CA trusted through SSL_CERT_FILE) with all UDP blocked: the same with the
  official SDK connected directly.
- A TURN server the user gives (coturn, static credentials, RtcConfiguration's
  ice_servers) over UDP, TCP and TLS, with the server's embedded TURN off: data
  both ways with a second participant connected directly.

The official SDK runs the same peer.py in its own virtualenv (scripts/official-sdk.sh).
LKT_KEEP_LOGS=1 keeps the servers' and participants' logs (they are always kept when
a test fails; the path is printed).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from netns import (  # noqa: E402
    COTURN_PORT,
    RTC_TCP_PORT,
    JsonProcess,
    TestNetwork,
    arrivals,
    check_exactly_once_in_order,
    running,
)

PEER = ROOT / "tests" / "net" / "peer.py"
PACKETS = 300
AUDIBLE_PER_SLOT = 20  # of the 50 frames of a half second in which the tone flows


def official_python() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "official-sdk.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return out.stdout.strip()


async def join(
    net: TestNetwork, who: str, room: str, *args: str, official: bool = False
) -> JsonProcess:
    """Participant `who` in `room`, from `who`'s namespace: on our package, or on the
    official SDK. It trusts the network's test CA (SSL_CERT_FILE)."""
    python = official_python() if official else sys.executable
    argv = [python, str(PEER), net.url, net.token(who, room), *args]
    p = await net.start_json(who, argv, env=net.client_env())
    await p.wait("connected", timeout=30)
    return p


def room_name() -> str:
    return f"relay-{os.urandom(4).hex()}"


async def exchange(x: JsonProcess, y: JsonProcess, audio: bool = True) -> str:
    """x and y send each other PACKETS reliable packets at once; each arrives once and
    in order. With `audio`, each also plays a tone that the other hears. A line on
    what it saw, for the test's output."""
    if audio:
        x.send(cmd="tone", freq=440.0)
        y.send(cmd="tone", freq=660.0)
        await y.wait("track_subscribed", lambda e: e["identity"] == x.name, timeout=20)
        await x.wait("track_subscribed", lambda e: e["identity"] == y.name, timeout=20)
        heard_from = asyncio.get_running_loop().time()
    up, down = f"{x.name}-to-{y.name}", f"{y.name}-to-{x.name}"
    y.send(cmd="expect", topic=up, count=PACKETS)
    x.send(cmd="expect", topic=down, count=PACKETS)
    x.send(cmd="send", topic=up, count=PACKETS, interval=0.005, size=256)
    y.send(cmd="send", topic=down, count=PACKETS, interval=0.005, size=256)
    await y.wait("complete", lambda e: e["topic"] == up, timeout=20)
    await x.wait("complete", lambda e: e["topic"] == down, timeout=20)
    for p, topic in ((x, up), (y, down)):
        sent = await p.wait("sent", lambda e, t=topic: e["topic"] == t, timeout=20)
        assert sent["failed"] == 0, sent
    if audio:
        # Three half seconds of tone at least, whatever the data took.
        await asyncio.sleep(max(0.0, heard_from + 2.0 - asyncio.get_running_loop().time()))
    x_report = await x.ask("report")
    y_report = await y.ask("report")
    check_exactly_once_in_order(arrivals(y_report, up), PACKETS)
    check_exactly_once_in_order(arrivals(x_report, down), PACKETS)
    line = f"{PACKETS} packets each way once and in order"
    if audio:
        for listener, report in ((y, y_report), (x, x_report)):
            audible = [e for _, e, _ in report["audio"]]
            assert audible and max(audible) >= AUDIBLE_PER_SLOT, (listener.name, report["audio"])
        line += "; each hears the other's tone"
    return line


async def paths(p: JsonProcess) -> Optional[List[Dict[str, Any]]]:
    """The selected candidate pairs of `p`'s peer connections (None: its stack has no
    stats)."""
    found: Optional[List[Dict[str, Any]]] = (await p.ask("paths"))["paths"]
    return found


def check_relayed(p: JsonProcess, found: Optional[List[Dict[str, Any]]], protocol: str) -> None:
    """Each peer connection's chosen candidate pair, as Room.get_rtc_stats tells it,
    is local to a relay reached over `protocol` ("udp", "tcp" or "tls")."""
    assert found is not None, f"{p.name}: no stats"
    assert found, f"{p.name}: no selected candidate pair"
    for path in found:
        assert path.get("local") == "relay", (p.name, found)
        assert path.get("relay_protocol") == protocol, (p.name, found)


# ---- the server's embedded TURN ----------------------------------------------------------


async def test_relay_only_over_the_servers_turn_udp_data_and_audio_with_official_sdk() -> None:
    async with running(turn=True) as net:
        room = room_name()
        # Neither reaches the server's ICE ports, nor its TURN over TLS: only the
        # TURN over UDP is left.
        for who in ("a", "b"):
            net.block_direct_rtc(who).add()
            net.block_server_ports(who, "443/tcp").add()
        a = await join(net, "a", room, "--relay")
        b = await join(net, "b", room, "--relay", official=True)
        line = await exchange(a, b)
        a_paths, b_paths = await paths(a), await paths(b)
        print(f"\nserver's TURN over UDP, ours and official both relay-only: {line};"
              f" paths: ours {a_paths}, official {b_paths}")  # fmt: skip
        check_relayed(a, a_paths, "udp")
        check_relayed(b, b_paths, "udp")
        assert not a.of("reconnecting") and not b.of("reconnecting"), (a.events, b.events)


async def test_relay_only_over_the_servers_turn_tls_on_443_when_udp_is_blocked() -> None:
    async with running(turn=True) as net:
        room = room_name()
        # a reaches nothing over UDP, nor the server's ICE-TCP port: the signal (7880)
        # and TURN over TLS (443) are all that is left to it.
        net.block_server_ports("a", "udp", f"{RTC_TCP_PORT}/tcp").add()
        a = await join(net, "a", room, "--relay")
        b = await join(net, "b", room, official=True)
        line = await exchange(a, b)
        a_paths = await paths(a)
        print(f"\nserver's TURN over TLS (443), ours relay-only: {line}; paths: {a_paths}")
        check_relayed(a, a_paths, "tls")
        assert not a.of("reconnecting"), a.events


# ---- a TURN server of the user's: coturn -------------------------------------------------

# What a is kept from besides the server's ICE ports, so that only `transport` is left.
COTURN_BLOCKED = {
    "udp": (),
    "tcp": ("udp",),
    "tls": ("udp", f"{COTURN_PORT}/tcp"),
}


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_relay_only_through_a_turn_server_given_in_ice_servers(transport: str) -> None:
    # The server's embedded TURN is off: coturn is the only relay.
    async with running(coturn=True) as net:
        room = room_name()
        net.block_direct_rtc("a").add()
        if COTURN_BLOCKED[transport]:
            net.block_server_ports("a", *COTURN_BLOCKED[transport]).add()
        ice = net.coturn_ice_server(transport)
        a = await join(net, "a", room, "--relay", "--ice-server", ice)
        b = await join(net, "b", room)
        line = await exchange(a, b, audio=False)
        a_paths = await paths(a)
        served = coturn_requests(net)
        print(f"\ncoturn over {transport}, ours relay-only: {line}; paths: {a_paths};"
              f" coturn served {served}")  # fmt: skip
        check_relayed(a, a_paths, transport)
        # A relay, and a permission for the server's address on it.
        assert served["ALLOCATE"] >= 1 and served["CREATE_PERMISSION"] >= 1, served
        assert not a.of("reconnecting"), a.events


def coturn_requests(net: TestNetwork) -> Dict[str, int]:
    """How many TURN requests of each kind coturn served its user with success."""
    counts = {"ALLOCATE": 0, "CREATE_PERMISSION": 0, "CHANNEL_BIND": 0}
    log = (net.dir / "coturn.log").read_text(errors="replace")
    for line in log.splitlines():
        for request in counts:
            if f"user <lkt>: incoming packet {request} processed, success" in line:
                counts[request] += 1
    return counts


# ---- a cut on a relayed path ------------------------------------------------------------


async def test_relay_only_session_survives_a_cut_of_three_seconds_with_data_exact() -> None:
    """The relayed path goes for 3 s (everything between a and the server, TURN
    included): the session carries on over the same allocation (ICE consent comes
    back, or a resume restarts ICE through it), the other side sees no leave, and the
    reliable packets sent across the cut arrive once and in order."""
    async with running(turn=True) as net:
        room = room_name()
        net.block_direct_rtc("a").add()
        a = await join(net, "a", room, "--relay")
        b = await join(net, "b", room)
        count = 500
        b.send(cmd="expect", topic="cut", count=count)
        a.send(cmd="send", topic="cut", count=count, interval=0.01, size=64)
        await asyncio.sleep(2.0)
        with net.cut("a"):
            await asyncio.sleep(3.0)
        sent = await a.wait("sent", timeout=60)
        await b.wait("complete", lambda e: e["topic"] == "cut", timeout=60)
        report = await b.ask("report")
        check_exactly_once_in_order(arrivals(report, "cut"), count)
        assert sent["failed"] == 0, sent
        check_relayed(a, await paths(a), "udp")
        assert not b.of("participant_disconnected"), b.events
        assert not a.of("disconnected"), a.events
        print(f"\nrelayed cut of 3 s: {count} packets once and in order; a: "
              f"{[e['ev'] for e in a.events if e['ev'] in ('reconnecting', 'reconnected')]}")  # fmt: skip
