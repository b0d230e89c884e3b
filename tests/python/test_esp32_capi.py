"""The ESP32 SDK's C API on a host (`livekit-esp32`): a C program compiled with gcc
against the generated `livekit.h` and the static library joins the real server and is
driven by a Python agent on our `livekit.rtc`: RPC answered both ways, text streams
received and echoed, user data, and the failure reason after bad tokens and after the
server removes the participant. The program is livekit-esp32/examples/device_demo.c,
the same app as `livekit-sim-device`; it prints one tab-separated line per event."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable, Iterator, List, Optional, Set

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
from helpers import settle
from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lkserver import API_KEY, API_SECRET, LiveKitServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
Code = rtc.RpcError.ErrorCode
Join = Callable[..., Awaitable[rtc.Room]]

# What the C side prints for the states and reasons these tests meet: the SDK's
# livekit_*_str texts, then the enum values.
CONNECTING = ("Connecting", "None", 1, 0)
CONNECTED = ("Connected", "None", 2, 0)
DISCONNECTED = ("Disconnected", "None", 0, 0)
FAILED_UNAUTHORIZED = ("Failed", "Unauthorized", 4, 3)
FAILED_BAD_TOKEN = ("Failed", "Bad Token", 4, 2)
REMOVED = ("Disconnected", "Participant Removed", 0, 9)


@pytest.fixture(scope="session")
def profile_dir() -> Path:
    """Builds the static library and its header (quick when up to date)."""
    cargo("cargo build -q -p livekit-esp32")
    d = debug_dir()
    assert (d / "liblivekit_esp32.a").is_file()
    assert (d / "include" / "livekit.h").is_file()
    return d


@pytest.fixture(scope="session")
def demo(profile_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """device_demo.c compiled with gcc against the header and the static library."""
    exe = tmp_path_factory.mktemp("esp32-capi") / "device_demo"
    subprocess.run(
        [
            "gcc",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            str(profile_dir / "include"),
            str(ROOT / "livekit-esp32" / "examples" / "device_demo.c"),
            str(profile_dir / "liblivekit_esp32.a"),
            "-lpthread",
            "-ldl",
            "-lm",
            "-lrt",
            "-lutil",
            "-o",
            str(exe),
        ],
        check=True,
    )
    return exe


class Device(LineProcess):
    """The C program (in-process gateway, or `gateway` when given)."""

    def __init__(self, exe: Path, url: str, token: str, gateway: Optional[str] = None) -> None:
        env = dict(os.environ)
        env.pop("LIVEKIT_GATEWAY", None)
        if gateway is not None:
            env["LIVEKIT_GATEWAY"] = gateway
        super().__init__([str(exe), url, token], env=env)

    async def state(self, expected: tuple, timeout: float = 20.0) -> None:  # type: ignore[type-arg]
        name, reason, value, reason_value = expected
        fields = await self.expect(lambda f: f[0] == "state" and f[1:3] == [name, reason], timeout)
        assert fields[3:5] == [str(value), str(reason_value)], fields


@pytest.fixture
def devices(demo: Path) -> Iterator[Callable[..., Device]]:
    made: List[Device] = []

    def make(url: str, token: str, gateway: Optional[str] = None) -> Device:
        d = Device(demo, url, token, gateway)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def _agent_methods(agent: rtc.Room) -> None:
    answer_add(agent)

    @agent.local_participant.register_rpc_method("refuse")
    def refuse(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4001, "not today")


async def test_rpc_streams_and_data_both_ways(
    server: LiveKitServer, token: Callable[..., str], join: Join, devices: Callable[..., Device]
) -> None:
    agent = await join("agent")
    _agent_methods(agent)
    echoes: "asyncio.Queue[str]" = asyncio.Queue()
    news: "asyncio.Queue[str]" = asyncio.Queue()
    data: "asyncio.Queue[rtc.DataPacket]" = asyncio.Queue()
    tasks: "Set[asyncio.Future[None]]" = set()
    agent.register_text_stream_handler("chat-echo", text_reader(echoes, tasks))
    agent.register_text_stream_handler("device-news", text_reader(news, tasks))
    agent.on("data_received", data.put_nowait)

    device = devices(server.url, token("esp"))
    await device.state(CONNECTING)
    await device.state(CONNECTED)
    assert await settle(lambda: "esp" in agent.remote_participants)

    # RPC: the agent calls the C handler, the C program calls the agent.
    await rpc_both_ways(agent, device, "esp")
    assert await agent.local_participant.perform_rpc(destination_identity="esp", method="echo", payload="") == ""
    with pytest.raises(rtc.RpcError) as info:
        await agent.local_participant.perform_rpc(destination_identity="esp", method="nope", payload="x")
    assert info.value.code == Code.UNSUPPORTED_METHOD
    # Errors come back to C with their code and message, the agent's own or built in.
    device.send("rpc agent refuse x")
    sent = await device.expect(lambda f: f[0] == "rpc-sent")
    result = await device.expect(lambda f: f[0] == "rpc-result" and f[1] == sent[1])
    assert result[2:] == ["error", "4001", "not today"], result
    device.send("rpc agent missing x")
    sent = await device.expect(lambda f: f[0] == "rpc-sent")
    result = await device.expect(lambda f: f[0] == "rpc-result" and f[1] == sent[1])
    assert result[2:4] == ["error", str(int(Code.UNSUPPORTED_METHOD))], result

    # Text streams to the C program come back on chat-echo, to their sender only; a
    # long one too (chunked both ways on character boundaries).
    for text in ["héllo device", "ü" * 12_000]:
        await agent.local_participant.send_text(text, topic="chat", destination_identities=["esp"])
        assert await asyncio.wait_for(echoes.get(), 15) == text
        seen = await device.expect(lambda f: f[0] == "text")
        assert seen[1:] == ["chat", "agent", text]

    # The C program sends a stream and user data of its own; and receives data.
    device.send("send device-news sensor says 42")
    assert await asyncio.wait_for(news.get(), 10) == "sensor says 42"
    device.send("data telemetry t=21.5")
    packet = await asyncio.wait_for(data.get(), 10)
    assert (packet.data, packet.topic) == (b"t=21.5", "telemetry")
    assert packet.participant is not None and packet.participant.identity == "esp"
    await agent.local_participant.publish_data(b"to the device", topic="cmd", destination_identities=["esp"])
    got = await device.expect(lambda f: f[0] == "data")
    assert got[1:] == ["agent", "cmd", "to the device"]

    # It leaves: the agent sees it go, and calls now fail at the C side at once.
    device.send("close")
    await device.state(DISCONNECTED)
    assert await settle(lambda: "esp" not in agent.remote_participants)
    device.send("rpc agent add 1,1")
    refused = await device.expect(lambda f: f[0] == "error" and f[1] == "rpc")
    assert refused[2] == "-5"  # LIVEKIT_ERR_INVALID_STATE
    assert device.stop() == 0


async def test_failure_reasons_after_bad_tokens_and_a_removal(
    server: LiveKitServer,
    token: Callable[..., str],
    room_name: str,
    devices: Callable[..., Device],
    lkapi: api.LiveKitAPI,
) -> None:
    # A token signed with another secret: the server answers 401.
    wrong = devices(server.url, token("esp-w", secret="not-the-secret-not-the-secret-00"))
    # Not a token at all: 401 as well.
    garbage = devices(server.url, "not-a-token")
    # A well-signed token without an identity is malformed: 400.
    now = int(time.time())
    claims = {"iss": API_KEY, "nbf": now - 10, "exp": now + 600, "video": {"room": room_name, "roomJoin": True}}
    malformed = devices(server.url, jwt.encode(claims, API_SECRET, algorithm="HS256"))
    await wrong.state(FAILED_UNAUTHORIZED)
    await garbage.state(FAILED_UNAUTHORIZED)
    await malformed.state(FAILED_BAD_TOKEN)

    device = devices(server.url, token("esp"))
    await device.state(CONNECTED)
    await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=room_name, identity="esp"))
    await device.state(REMOVED)
    for d in (wrong, garbage, malformed, device):
        assert d.stop() == 0


@pytest.fixture
def gateway_addr() -> Iterator[str]:
    """A separate livekit-gateway process."""
    cargo("cargo build -q -p livekit-gateway --bin livekit-gateway")
    gateway = GatewayProcess(debug_dir() / "livekit-gateway").start()
    try:
        yield gateway.addr
    finally:
        gateway.kill()


async def test_through_a_gateway_process(
    server: LiveKitServer,
    token: Callable[..., str],
    join: Join,
    devices: Callable[..., Device],
    gateway_addr: str,
) -> None:
    agent = await join("agent")
    _agent_methods(agent)
    device = devices(server.url, token("esp-gw"), gateway=gateway_addr)
    await device.state(CONNECTED)
    assert await settle(lambda: "esp-gw" in agent.remote_participants)
    await rpc_both_ways(agent, device, "esp-gw")
    assert device.stop() == 0
    # Destroying the room closed the session first: the agent sees it leave now,
    # not after the gateway's grace period.
    assert await settle(lambda: "esp-gw" not in agent.remote_participants, timeout=4)
