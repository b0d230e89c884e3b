"""Networks as they are: our package against the real server across faults made in a
network of the test's own (tests/netns.py: the server and each client in a network
namespace of their own, joined by a bridge on a private /24; a fault is iptables
DROP rules on one client's link, silent both ways).

Each test builds its network, starts its server in it, runs its participants
(tests/net/peer.py, on our package) in the clients' namespaces and removes it all
at the end. The participants report JSON events stamped with the machine's
monotonic clock, which the test shares.

- 30% random loss on the sender's link, both ways (UDP; the signal's TCP is left
  alone unless LKT_LOSS_PROTO=all): 1000 reliable packets arrive once and in
  order, and the sender's tone keeps arriving.
- A 3 s cut of everything on the sender's link while it sends: the room goes on
  (nobody sees it leave), the 1000 packets arrive once and in order, and the tone
  stops with the link and comes back with it.
- A silent stall of the signal connection (its segments dropped both ways, no RST):
  found by the ping timeout (the JoinResponse's 5 s interval and 15 s timeout,
  constants of server 1.13.5 that no config key changes; bounded, so we keep them),
  then the session resumes; data sent across it and after it arrives once, in order.
- UDP blocked for one participant from the start: it connects over ICE-TCP, data
  goes both ways exactly once and in order, and its tone is heard.
- A link that never returns: the room ends with FAILURE_MAX_RETRIES within the
  retry bound, and leaving returns at once while the network is gone, whether the
  room still thinks it is connected, is reconnecting, or has failed.

LKT_KEEP_LOGS=1 keeps the server's and participants' logs (they are always kept
when a test fails; the path is printed).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from netns import (  # noqa: E402
    JsonProcess,
    TestNetwork,
    arrivals,
    check_exactly_once_in_order,
    running,
)

PEER = Path(__file__).resolve().parents[1] / "net" / "peer.py"
PACKETS = 1000
FRAMES_PER_SLOT = 50  # peer.py counts received audio frames per half second
AUDIBLE_PER_SLOT = 20  # a half second in which the tone flows has at least this many


async def join(net: TestNetwork, who: str, room: str, *args: str) -> JsonProcess:
    """Participant `who` (our package) in `room`, from `who`'s namespace."""
    argv = [sys.executable, str(PEER), net.url, net.token(who, room), *args]
    p = await net.start_json(who, argv)
    await p.wait("connected", timeout=30)
    return p


async def pair_with_tone(net: TestNetwork, room: str) -> Tuple[JsonProcess, JsonProcess]:
    """a and b in `room`, a playing a tone that b has subscribed to."""
    a = await join(net, "a", room)
    b = await join(net, "b", room)
    a.send(cmd="tone", freq=440.0)
    await b.wait("track_subscribed", lambda e: e["identity"] == "a", timeout=20)
    return a, b


def room_name() -> str:
    return f"net-{uuid.uuid4().hex[:8]}"


def log_lines(p: JsonProcess, pattern: str) -> List[str]:
    text = p.log.read_text(errors="replace")
    return [line for line in text.splitlines() if re.search(pattern, line)]


def reconnections(p: JsonProcess) -> List[str]:
    return [e["ev"] for e in p.events if e["ev"] in ("reconnecting", "reconnected")]


# ---- 30% random loss ------------------------------------------------------------------


async def test_random_loss_keeps_data_exact_and_audio_flowing() -> None:
    async with running() as net:
        room = room_name()
        a, b = await pair_with_tone(net, room)
        b.send(cmd="expect", topic="loss", count=PACKETS)

        protocol = os.environ.get("LKT_LOSS_PROTO", "udp")
        with net.loss("a", 0.30, protocol=protocol):
            lossy_from = time.monotonic()
            a.send(cmd="send", topic="loss", count=PACKETS, interval=0.01, size=64)
            sent = await a.wait("sent", timeout=90)
            done = await b.wait("complete", lambda e: e["topic"] == "loss", timeout=90)
            report = await b.ask("report")
            lossy_to = time.monotonic()

        check_exactly_once_in_order(arrivals(report, "loss"), PACKETS)
        assert sent["failed"] == 0, sent
        # The tone: it carries on in most frames, with no silence of 1.5 s (our
        # jitter buffer waits 40 ms at most for a lost packet, then conceals it).
        slots = [e for s, e, _ in report["audio"] if lossy_from + 1 <= s < lossy_to - 1]
        gaps = [g for t, g in report["audio_gaps"] if lossy_from <= t < lossy_to]
        print(
            f"\nloss 30% ({protocol}): {PACKETS} packets once and in order, the last"
            f" {done['t'] - sent['last_call']:.1f} s after the last call; tone in"
            f" {sum(slots) / max(1, FRAMES_PER_SLOT * len(slots)):.0%} of the frames, the"
            f" longest silence {max(gaps, default=0.0):.2f} s; a: {reconnections(a)}"
        )
        assert slots, report["audio"]
        assert sum(slots) >= 0.6 * FRAMES_PER_SLOT * len(slots), slots
        assert max(gaps, default=0.0) < 1.5, report["audio_gaps"]
        assert not b.of("participant_disconnected"), b.events


async def tone_and_data_both_ways(a: JsonProcess, b: JsonProcess, topic: str) -> None:
    """a plays a tone that b hears, and each sends the other 200 reliable packets,
    which arrive once and in order."""
    up, down = f"{topic}-up", f"{topic}-down"
    a.send(cmd="tone", freq=440.0)
    await b.wait("track_subscribed", lambda e: e["identity"] == "a", timeout=20)
    b.send(cmd="expect", topic=up, count=200)
    a.send(cmd="expect", topic=down, count=200)
    a.send(cmd="send", topic=up, count=200, interval=0.005, size=512)
    b.send(cmd="send", topic=down, count=200, interval=0.005, size=512)
    await b.wait("complete", lambda e: e["topic"] == up, timeout=30)
    await a.wait("complete", lambda e: e["topic"] == down, timeout=30)
    await asyncio.sleep(1.0)
    heard = await b.ask("report")
    got = await a.ask("report")
    check_exactly_once_in_order(arrivals(heard, up), 200)
    check_exactly_once_in_order(arrivals(got, down), 200)
    audible = [e for _, e, _ in heard["audio"]]
    assert audible and max(audible) >= AUDIBLE_PER_SLOT, heard["audio"]


# ---- UDP blocked ----------------------------------------------------------------------


async def test_udp_blocked_the_room_connects_over_ice_tcp() -> None:
    async with running() as net:
        room = room_name()
        # Every UDP packet between a and the server is dropped, from before a joins:
        # only its TCP candidate can connect (the signal is TCP anyway).
        with net.fault("a", ["-p", "udp"]):
            a = await join(net, "a", room)
            b = await join(net, "b", room)
            await tone_and_data_both_ways(a, b, "tcp")
        assert not a.of("reconnecting"), a.events


# ---- IPv4 media blocked ---------------------------------------------------------------


async def test_ipv4_media_blocked_the_room_connects_over_ipv6() -> None:
    async with running(ipv6=True) as net:
        room = room_name()
        # a's IPv4 reaches the server's signal port only (the faults are IPv4 rules):
        # its media can only go over its IPv6 host candidate.
        with net.fault("a", ["-p", "udp"]), net.fault("a", ["-p", "tcp", "--dport", "7881"],
                                                      ["-p", "tcp", "--sport", "7881"]):  # fmt: skip
            a = await join(net, "a", room)
            b = await join(net, "b", room)
            await tone_and_data_both_ways(a, b, "v6")
            paths = (await a.ask("paths"))["paths"]
        # Both of a's peer connections chose a pair between IPv6 host candidates.
        assert paths and {p["pc"] for p in paths} == {"publisher", "subscriber"}, paths
        for path in paths:
            assert path["local"] == "host" and path["address"].startswith(net.addr6("a")), paths
            assert path["remote_address"].startswith(net.addr6("srv")), paths


# ---- a new address takes over ------------------------------------------------------------


async def test_a_new_address_found_while_connected_takes_over_when_the_old_one_fails() -> None:
    """Continual gathering (the default policy): an address a gets while connected
    becomes a candidate the server hears of; when the first address loses its media
    (UDP and ICE-TCP dropped, the signal still up), the session carries on over the new
    one with nothing lost: the silent path is noticed (8 s), and a resume restarts ICE
    over every candidate while the server still holds the session."""
    async with running() as net:
        room = room_name()
        a = await join(net, "a", room)
        b = await join(net, "b", room)
        extra = net.add_address("a", 200)
        await asyncio.sleep(7.0)  # one look at the interfaces (5 s) and a trickle
        b.send(cmd="expect", topic="moved", count=PACKETS)
        a.send(cmd="send", topic="moved", count=PACKETS, interval=0.01, size=64)
        await asyncio.sleep(2.0)
        # Only the first address: from it (rules match their source) and to it.
        first = ["-d", net.addr("a")]
        udp = net.fault("a", ["-p", "udp"], ["-p", "udp", *first])
        tcp = net.fault("a", ["-p", "tcp", "--dport", "7881"],
                        ["-p", "tcp", "--sport", "7881", *first])  # fmt: skip
        with udp, tcp:
            sent = await a.wait("sent", timeout=60)
            await b.wait("complete", lambda e: e["topic"] == "moved", timeout=60)
            paths = (await a.ask("paths"))["paths"]
        report = await b.ask("report")
        check_exactly_once_in_order(arrivals(report, "moved"), PACKETS)
        assert sent["failed"] == 0, sent
        # What a sends goes from the new address (its subscriber sends only ICE checks
        # here, which the stats do not follow).
        sending = [p for p in paths if p["pc"] == "publisher"]
        assert sending and sending[0]["address"].startswith(f"{extra}:"), paths
        assert not b.of("participant_disconnected"), b.events
        print(f"\nnew address {extra} took over: {PACKETS} packets once and in order;"
              f" a: {reconnections(a)}")  # fmt: skip


# ---- a 3 s cut ------------------------------------------------------------------------


async def test_cut_of_three_seconds_keeps_the_room_and_data_exact() -> None:
    async with running() as net:
        room = room_name()
        a, b = await pair_with_tone(net, room)
        b.send(cmd="expect", topic="cut", count=PACKETS)
        a.send(cmd="send", topic="cut", count=PACKETS, interval=0.01, size=64)
        # 3 s into the stream (10 s long), the link goes for 3 s.
        await asyncio.sleep(3.0)
        with net.cut("a"):
            cut_from = time.monotonic()
            await asyncio.sleep(3.0)
        cut_to = time.monotonic()
        sent = await a.wait("sent", timeout=60)
        done = await b.wait("complete", lambda e: e["topic"] == "cut", timeout=60)
        await asyncio.sleep(max(0.0, cut_to + 5.0 - time.monotonic()))
        report = await b.ask("report")

        got = arrivals(report, "cut")
        check_exactly_once_in_order(got, PACKETS)
        assert sent["failed"] == 0, sent
        first_after = min((t for _, t in got if t > cut_to), default=float("nan")) - cut_to
        # The tone stops with the link and comes back with it.
        during = [e for s, e, _ in report["audio"] if cut_from + 0.5 <= s < cut_to - 0.5]
        silences = [(t, g) for t, g in report["audio_gaps"] if t < cut_to and t + g > cut_from]
        tone_back = max((t + g for t, g in silences), default=float("nan")) - cut_to
        print(
            f"\ncut {cut_to - cut_from:.1f} s: {PACKETS} packets once and in order; the first"
            f" after the cut {first_after:.2f} s after the link came back, the last"
            f" {done['t'] - sent['last_call']:.2f} s after the last call; the tone back"
            f" {tone_back:.2f} s after the link; a: {reconnections(a)}"
        )
        assert max(during, default=0) < AUDIBLE_PER_SLOT, report["audio"]
        assert len(silences) == 1, report["audio_gaps"]
        assert tone_back < 3.0, report["audio_gaps"]
        assert not b.of("participant_disconnected"), b.events
        assert not a.of("disconnected"), a.events


# ---- a silent stall of the signal connection --------------------------------------------


async def test_stalled_signal_is_found_by_ping_timeout_and_resumed() -> None:
    async with running() as net:
        room = room_name()
        a = await join(net, "a", room)
        b = await join(net, "b", room)
        ports = net.tcp_ports("a")
        assert len(ports) == 1, ports  # the signal's WebSocket
        # Data goes on over the peer connections while the signal is stalled, and
        # across the resume.
        b.send(cmd="expect", topic="stall", count=300)
        a.send(cmd="send", topic="stall", count=300, interval=0.1, size=64)
        with net.stall_tcp("a", ports[0]):
            stalled = time.monotonic()
            lost = await a.wait("reconnecting", timeout=30)
            back = await a.wait("reconnected", timeout=30)
        sent = await a.wait("sent", timeout=60)
        await b.wait("complete", lambda e: e["topic"] == "stall", timeout=30)
        check_exactly_once_in_order(arrivals(await b.ask("report"), "stall"), 300)
        assert sent["failed"] == 0, sent
        print(
            f"\nstall: found {lost['t'] - stalled:.1f} s after the stall began, resumed"
            f" {back['t'] - lost['t']:.2f} s later; 300 packets across it once and in order"
        )
        # Found by the ping timeout, and a resume, not a rejoin: the same session,
        # on a new connection, and nobody saw us leave.
        assert log_lines(a, r"session lost \(PING_TIMEOUT\)"), "not found by the ping timeout"
        assert not log_lines(a, "rejoin"), log_lines(a, "rejoin")
        assert not b.of("participant_disconnected"), b.events
        assert net.tcp_ports("a") != ports
        # And data sent after it arrives.
        b.send(cmd="expect", topic="after", count=50)
        a.send(cmd="send", topic="after", count=50, interval=0.0, size=64)
        await b.wait("complete", lambda e: e["topic"] == "after", timeout=20)
        check_exactly_once_in_order(arrivals(await b.ask("report"), "after"), 50)


# ---- a link that never returns ----------------------------------------------------------

# The loss is acted on by the ping timeout (at most 5 + 15 s) or once ICE stayed down
# for 10 s; the resume tried first ends within the connect timeout; then the core's
# retry policy (livekit-core RetryPolicy): at most 7 rejoin attempts, none begun later
# than 60 s after the first, each ending within the connect timeout.
CONNECT_TIMEOUT = 3.0
FAIL_BOUND = 20.0 + CONNECT_TIMEOUT + 60.0 + CONNECT_TIMEOUT + 5.0


async def test_link_that_never_returns_fails_with_max_retries() -> None:
    async with running("a", "b", "c", "d") as net:
        room = room_name()
        timeout = ("--connect-timeout", str(CONNECT_TIMEOUT))
        a = await join(net, "a", room, *timeout)
        b = await join(net, "b", room)
        c = await join(net, "c", room, *timeout)
        d = await join(net, "d", room, *timeout)
        for who in ("a", "c", "d"):
            net.cut(who).add()
        cut = time.monotonic()
        # d leaves before anything noticed the loss, c while it reconnects.
        await asyncio.sleep(0.5)
        d_leave = await d.ask("close", ev="closed", how="disconnect", timeout=20)
        await c.wait("reconnecting", timeout=40)
        c_leave = await c.ask("close", ev="closed", how="disconnect", timeout=20)
        # a sees it to the end.
        failed = await a.wait("disconnected", timeout=FAIL_BOUND + 10)
        took = failed["t"] - cut
        assert failed["failure_reason"] == "FAILURE_MAX_RETRIES", failed
        states = [e["state"] for e in a.of("connection_state")]
        assert states[-2:] == ["CONN_RECONNECTING", "CONN_DISCONNECTED"], states
        report = await a.ask("report")
        assert report["state"] == "CONN_DISCONNECTED", report
        assert report["failure_reason"] == "FAILURE_MAX_RETRIES", report
        attempts = log_lines(a, r"reconnection attempt \d+ failed")
        a_leave = await a.ask("close", ev="closed", how="aclose")
        print(
            f"\nnever returns: reconnecting {a.of('reconnecting')[0]['t'] - cut:.1f} s after"
            f" the cut, FAILURE_MAX_RETRIES {took:.1f} s after it (bound {FAIL_BOUND:.0f} s,"
            f" {len(attempts)} rejoin attempts); aclose after it {a_leave['seconds']:.2f} s;"
            f" disconnect while reconnecting {c_leave['seconds']:.2f} s, while still"
            f" connected {d_leave['seconds']:.2f} s"
        )
        assert took <= FAIL_BOUND, took
        assert 1 <= len(attempts) <= 7, attempts
        assert a_leave["seconds"] < 3.0, a_leave
        assert c_leave["seconds"] < 5.0, c_leave
        assert d_leave["seconds"] < 5.0, d_leave
        # The others see it leave, in the end.
        await b.wait("participant_disconnected", lambda e: e["identity"] == "a", timeout=30)
