"""The device path end to end: a Python agent on our `livekit.rtc`, the real server,
the gateway (`livekit-gateway`) and the firmware's device logic run on the host
(`livekit-sim-device`): RPC both ways, text streams received and echoed, user data,
failure reasons, several devices on one gateway, and a gateway restart and a server
restart survived."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import jwt
import pytest

from helpers import SignalProxy, settle
from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lkserver import API_KEY, API_SECRET, LiveKitServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
Code = rtc.RpcError.ErrorCode


def _target_dir() -> Path:
    out = subprocess.run(
        ["bash", "-c", 'source scripts/env.sh >/dev/null && echo "$CARGO_TARGET_DIR"'],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


@pytest.fixture(scope="session")
def bins() -> Path:
    """Builds the gateway and the simulated device (quick when up to date)."""
    subprocess.run(
        ["bash", "-c", "source scripts/env.sh >/dev/null && cargo build -q -p livekit-gateway --bins"],
        cwd=ROOT,
        check=True,
    )
    return _target_dir() / "debug"


class Lines:
    """A process's stdout, line by line, read on a thread."""

    def __init__(self, proc: "subprocess.Popen[str]") -> None:
        self.q: "queue.Queue[str]" = queue.Queue()
        self.seen: List[str] = []
        assert proc.stdout is not None
        out = proc.stdout

        def pump() -> None:
            for line in out:
                self.q.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()

    async def expect(self, pred: Callable[[List[str]], bool], timeout: float = 20.0) -> List[str]:
        """The first line whose tab-separated fields satisfy `pred`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for line in self.seen:
                fields = line.split("\t")
                if pred(fields):
                    self.seen.remove(line)
                    return fields
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"nothing matched within {timeout}s; seen: {self.seen}")
            try:
                self.seen.append(self.q.get_nowait())
            except queue.Empty:
                await asyncio.sleep(0.02)


class GatewayProc:
    def __init__(self, bins: Path) -> None:
        self.bins = bins
        self.proc: Optional["subprocess.Popen[str]"] = None
        self.addr = ""

    def start(self, listen: str = "127.0.0.1:0") -> "GatewayProc":
        self.proc = subprocess.Popen(
            [str(self.bins / "livekit-gateway"), "--listen", listen, "--grace", "5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "listening", line
        self.addr = line[1]
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class SimDevice:
    def __init__(self, bins: Path, gateway: str, url: str, token: str, device_id: str) -> None:
        self.proc = subprocess.Popen(
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
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.out = Lines(self.proc)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    async def state(self, state: str, reason: str = "NONE", timeout: float = 20.0) -> None:
        await self.out.expect(lambda f: f[:3] == ["state", state, reason], timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def gateway(bins: Path) -> Iterator[GatewayProc]:
    g = GatewayProc(bins).start()
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


def answer_add(agent: rtc.Room) -> None:
    """The agent's method the devices call: `add` of "a,b"."""

    def add(data: rtc.RpcInvocationData) -> str:
        a, b = data.payload.split(",")
        return str(int(a) + int(b))

    agent.local_participant.register_rpc_method("add", add)


async def _echo_and_add(agent: rtc.Room, device: SimDevice, identity: str) -> None:
    """RPC both ways and a text stream echoed, between `agent` and the device."""
    got = await agent.local_participant.perform_rpc(
        destination_identity=identity, method="echo", payload="ping ✓"
    )
    assert got == "ping ✓"
    device.send("rpc agent add 2,3")
    result = await device.out.expect(lambda f: f[0] == "rpc-result")
    assert result[2:] == ["ok", "5"], result


async def test_rpc_streams_and_data_both_ways(
    server: LiveKitServer, token: Callable[..., str], join: Callable[..., object], gateway: GatewayProc,
    devices: Callable[..., SimDevice],
) -> None:
    agent: rtc.Room = await join("agent")  # type: ignore[misc]

    answer_add(agent)

    echoes: "asyncio.Queue[str]" = asyncio.Queue()
    news: "asyncio.Queue[str]" = asyncio.Queue()
    data: "asyncio.Queue[rtc.DataPacket]" = asyncio.Queue()
    tasks = set()

    def on_stream(target: "asyncio.Queue[str]") -> Callable[[rtc.TextStreamReader, str], None]:
        def handler(reader: rtc.TextStreamReader, sender: str) -> None:
            async def read() -> None:
                await target.put(await reader.read_all())

            t = asyncio.ensure_future(read())
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        return handler

    agent.register_text_stream_handler("chat-echo", on_stream(echoes))
    agent.register_text_stream_handler("device-news", on_stream(news))
    agent.on("data_received", data.put_nowait)

    device = devices(gateway.addr, server.url, token("esp"))
    await device.state("CONNECTING")
    joined = await device.out.expect(lambda f: f[0] == "joined")
    assert joined[2] == "esp"
    await device.state("CONNECTED")
    assert await settle(lambda: "esp" in agent.remote_participants)

    await _echo_and_add(agent, device, "esp")
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
        seen = await device.out.expect(lambda f: f[0] == "text")
        assert seen[1:3] == ["chat", "agent"]

    device.send("send device-news sensor says 42")
    assert await asyncio.wait_for(news.get(), 10) == "sensor says 42"
    device.send("data telemetry t=21.5")
    packet = await asyncio.wait_for(data.get(), 10)
    assert (packet.data, packet.topic) == (b"t=21.5", "telemetry")
    assert packet.participant is not None and packet.participant.identity == "esp"

    await agent.local_participant.publish_data(b"to the device", topic="cmd", destination_identities=["esp"])
    got = await device.out.expect(lambda f: f[0] == "data")
    assert got[1:] == ["agent", "cmd", "to the device"]

    # The device leaves: the agent sees it go.
    device.send("close")
    await device.state("DISCONNECTED")
    assert await settle(lambda: "esp" not in agent.remote_participants)


async def test_failure_reasons_after_a_bad_token_and_a_removal(
    server: LiveKitServer,
    token: Callable[..., str],
    room_name: str,
    gateway: GatewayProc,
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
    gateway: GatewayProc,
    devices: Callable[..., SimDevice],
) -> None:
    agent: rtc.Room = await join("agent")  # type: ignore[misc]

    answer_add(agent)

    fleet = [devices(gateway.addr, server.url, token(f"esp-{i}"), f"dev-{i}") for i in range(3)]
    for d in fleet:
        await d.state("CONNECTED")
    for i, d in enumerate(fleet):
        await _echo_and_add(agent, d, f"esp-{i}")


async def test_a_cut_link_finds_its_session_again_and_loses_no_data(
    server: LiveKitServer,
    token: Callable[..., str],
    join: Callable[..., object],
    gateway: GatewayProc,
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
        got = [(await device.out.expect(lambda f: f[:3] == ["data", "agent", "seq"]))[3] for _ in range(20)]
        assert got == [f"m{i}" for i in range(20)], "each once, in order"
        await _echo_and_add(agent, device, "esp")
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

        gw = GatewayProc(bins).start()
        try:
            device = devices(gw.addr, own.url, token("esp"))
            await device.state("CONNECTED")
            assert await settle(lambda: "esp" in agent.remote_participants)
            await _echo_and_add(agent, device, "esp")

            # The gateway dies: the device retries until one is back on that port,
            # then joins again.
            gw.kill()
            await device.state("RECONNECTING")
            await asyncio.sleep(1.0)
            gw = GatewayProc(bins).start(listen=gw.addr)
            await device.state("CONNECTED", timeout=30)
            assert await settle(lambda: "esp" in agent.remote_participants, timeout=15)
            await _echo_and_add(agent, device, "esp")

            # The server goes away and comes back: the gateway's room rejoins and
            # the device hears it reconnect.
            own.restart()
            lost = await device.out.expect(lambda f: f[:2] == ["state", "RECONNECTING"], 30)
            assert lost[2] == "SIGNAL_CLOSE", lost
            await device.state("CONNECTED", timeout=60)
            assert await settle(
                lambda: agent.connection_state == rtc.ConnectionState.CONN_CONNECTED
                and "esp" in agent.remote_participants,
                timeout=60,
            )
            await _echo_and_add(agent, device, "esp")
        finally:
            gw.kill()
            await agent.aclose()
