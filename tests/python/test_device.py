"""The device path end to end: a Python agent on our `livekit.rtc`, the real server,
the gateway (`livekit-gateway`) and the firmware's device logic run on the host
(`livekit-sim-device`): RPC both ways, text streams received and echoed, user data,
failure reasons, several devices on one gateway, and a gateway restart and a server
restart survived."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Set

import jwt
import pytest

from device_procs import (
    GatewayProcess,
    LineProcess,
    answer_add,
    cargo,
    debug_dir,
    rpc_both_ways,
    text_reader,
)
from helpers import SignalProxy, settle
from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lkserver import API_KEY, API_SECRET, LiveKitServer  # noqa: E402

Code = rtc.RpcError.ErrorCode


@pytest.fixture(scope="session")
def bins() -> Path:
    """Builds the gateway and the simulated device (quick when up to date)."""
    cargo("cargo build -q -p livekit-gateway --bins")
    return debug_dir()


class SimDevice(LineProcess):
    """`livekit-sim-device` linked to a gateway."""

    def __init__(self, bins: Path, gateway: str, url: str, token: str, device_id: str) -> None:
        super().__init__(
            [
                str(bins / "livekit-sim-device"),
                "--gateway",
                gateway,
                "--url",
                url,
                "--token",
                token,
                "--id",
                device_id,
            ]
        )

    async def state(self, state: str, reason: str = "NONE", timeout: float = 20.0) -> None:
        await self.expect(lambda f: f[:3] == ["state", state, reason], timeout)


@pytest.fixture
def gateway(bins: Path) -> Iterator[GatewayProcess]:
    g = GatewayProcess(bins / "livekit-gateway").start()
    yield g
    g.kill()


@pytest.fixture
def devices(bins: Path) -> Iterator[Callable[..., SimDevice]]:
    made: List[SimDevice] = []

    def make(gateway: str, url: str, token: str, device_id: str = "dev-1") -> SimDevice:
        d = SimDevice(bins, gateway, url, token, device_id)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


async def test_rpc_streams_and_data_both_ways(
    server: LiveKitServer, token: Callable[..., str], join: Callable[..., object], gateway: GatewayProcess,
    devices: Callable[..., SimDevice],
) -> None:
    agent: rtc.Room = await join("agent")  # type: ignore[misc]

    answer_add(agent)

    echoes: "asyncio.Queue[str]" = asyncio.Queue()
    news: "asyncio.Queue[str]" = asyncio.Queue()
    data: "asyncio.Queue[rtc.DataPacket]" = asyncio.Queue()
    tasks: "Set[asyncio.Future[None]]" = set()
    agent.register_text_stream_handler("chat-echo", text_reader(echoes, tasks))
    agent.register_text_stream_handler("device-news", text_reader(news, tasks))
    agent.on("data_received", data.put_nowait)

    device = devices(gateway.addr, server.url, token("esp"))
    await device.state("CONNECTING")
    joined = await device.expect(lambda f: f[0] == "joined")
    assert joined[2] == "esp"
    await device.state("CONNECTED")
    assert await settle(lambda: "esp" in agent.remote_participants)

    await rpc_both_ways(agent, device, "esp")
    error = None
    try:
        await agent.local_participant.perform_rpc(destination_identity="esp", method="nope", payload="")
    except rtc.RpcError as e:
        error = e
    assert error is not None and error.code == Code.UNSUPPORTED_METHOD

    # A text stream to the device comes back on chat-echo; a long one too (chunked
    # both ways, split on character boundaries).
    for text in ["héllo device", "ü" * 12_000]:
        await agent.local_participant.send_text(text, topic="chat", destination_identities=["esp"])
        assert await asyncio.wait_for(echoes.get(), 10) == text
        seen = await device.expect(lambda f: f[0] == "text")
        assert seen[1:3] == ["chat", "agent"]

    device.send("send device-news sensor says 42")
    assert await asyncio.wait_for(news.get(), 10) == "sensor says 42"
    device.send("data telemetry t=21.5")
    packet = await asyncio.wait_for(data.get(), 10)
    assert (packet.data, packet.topic) == (b"t=21.5", "telemetry")
    assert packet.participant is not None and packet.participant.identity == "esp"

    await agent.local_participant.publish_data(b"to the device", topic="cmd", destination_identities=["esp"])
    got = await device.expect(lambda f: f[0] == "data")
    assert got[1:] == ["agent", "cmd", "to the device"]

    # The device leaves: the agent sees it go.
    device.send("close")
    await device.state("DISCONNECTED")
    assert await settle(lambda: "esp" not in agent.remote_participants)


async def test_failure_reasons_after_a_bad_token_and_a_removal(
    server: LiveKitServer,
    token: Callable[..., str],
    room_name: str,
    gateway: GatewayProcess,
    devices: Callable[..., SimDevice],
    lkapi: api.LiveKitAPI,
) -> None:
    wrong = devices(gateway.addr, server.url, token("esp", secret="not-the-secret-not-the-secret-00"), "dev-a")
    await wrong.state("FAILED", "UNAUTHORIZED")
    # The server answers 401 to what is not a token at all, and 400 to a token
    # without an identity (malformed).
    garbage = devices(gateway.addr, server.url, "not-a-token", "dev-b")
    await garbage.state("FAILED", "UNAUTHORIZED")
    now = int(time.time())
    claims = {"iss": API_KEY, "nbf": now - 10, "exp": now + 600, "video": {"room": room_name, "roomJoin": True}}
    malformed = devices(gateway.addr, server.url, jwt.encode(claims, API_SECRET, algorithm="HS256"), "dev-e")
    await malformed.state("FAILED", "BAD_TOKEN")
    nowhere = devices(gateway.addr, "ws://127.0.0.1:9", token("esp"), "dev-c")
    await nowhere.state("FAILED", "UNREACHABLE")

    device = devices(gateway.addr, server.url, token("esp"), "dev-d")
    await device.state("CONNECTED")
    await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=room_name, identity="esp"))
    await device.state("DISCONNECTED", "PARTICIPANT_REMOVED")


async def test_several_devices_share_one_gateway(
    server: LiveKitServer,
    token: Callable[..., str],
    join: Callable[..., object],
    gateway: GatewayProcess,
    devices: Callable[..., SimDevice],
) -> None:
    agent: rtc.Room = await join("agent")  # type: ignore[misc]

    answer_add(agent)

    fleet = [devices(gateway.addr, server.url, token(f"esp-{i}"), f"dev-{i}") for i in range(3)]
    for d in fleet:
        await d.state("CONNECTED")
    for i, d in enumerate(fleet):
        await rpc_both_ways(agent, d, f"esp-{i}")


async def test_a_cut_link_finds_its_session_again_and_loses_no_data(
    server: LiveKitServer,
    token: Callable[..., str],
    join: Callable[..., object],
    gateway: GatewayProcess,
    devices: Callable[..., SimDevice],
) -> None:
    agent: rtc.Room = await join("agent")  # type: ignore[misc]

    answer_add(agent)

    left: List[str] = []
    agent.on("participant_disconnected", lambda p: left.append(p.identity))
    # The device's link goes through a proxy whose connections can be cut.
    proxy = await SignalProxy(int(gateway.addr.rsplit(":", 1)[1])).start()
    try:
        device = devices(f"127.0.0.1:{proxy.port}", server.url, token("esp"))
        await device.state("CONNECTED")
        assert await settle(lambda: "esp" in agent.remote_participants)
        proxy.sever()
        await device.state("RECONNECTING")
        # Sent while the link is down: the gateway keeps it for the device.
        for i in range(20):
            await agent.local_participant.publish_data(
                f"m{i}".encode(), topic="seq", destination_identities=["esp"]
            )
        await device.state("CONNECTED")
        got = [(await device.expect(lambda f: f[:3] == ["data", "agent", "seq"]))[3] for _ in range(20)]
        assert got == [f"m{i}" for i in range(20)], "each once, in order"
        await rpc_both_ways(agent, device, "esp")
        assert left == [], "the room never saw the device leave: its session was kept"
    finally:
        await proxy.aclose()


async def test_a_gateway_restart_and_a_server_restart_are_survived(
    bins: Path,
    token: Callable[..., str],
    rooms: Callable[[], rtc.Room],
    devices: Callable[..., SimDevice],
) -> None:
    # A server of its own: it is restarted below.
    with LiveKitServer() as own:
        agent = rooms()
        await agent.connect(own.url, token("agent"))

        answer_add(agent)

        gw = GatewayProcess(bins / "livekit-gateway").start()
        try:
            device = devices(gw.addr, own.url, token("esp"))
            await device.state("CONNECTED")
            assert await settle(lambda: "esp" in agent.remote_participants)
            await rpc_both_ways(agent, device, "esp")

            # The gateway dies: the device retries until one is back on that port,
            # then joins again.
            gw.kill()
            await device.state("RECONNECTING")
            await asyncio.sleep(1.0)
            gw = GatewayProcess(bins / "livekit-gateway").start(listen=gw.addr)
            await device.state("CONNECTED", timeout=30)
            assert await settle(lambda: "esp" in agent.remote_participants, timeout=15)
            await rpc_both_ways(agent, device, "esp")

            # The server goes away and comes back: the gateway's room rejoins and
            # the device hears it reconnect.
            own.restart()
            lost = await device.expect(lambda f: f[:2] == ["state", "RECONNECTING"], 30)
            assert lost[2] == "SIGNAL_CLOSE", lost
            await device.state("CONNECTED", timeout=60)
            assert await settle(
                lambda: agent.connection_state == rtc.ConnectionState.CONN_CONNECTED
                and "esp" in agent.remote_participants,
                timeout=60,
            )
            await rpc_both_ways(agent, device, "esp")
        finally:
            gw.kill()
            await agent.aclose()
