"""Interop: our Room and the official SDK's Room (a subprocess in its own virtualenv,
tests/interop/official_peer.py) exchange data both ways with the right topic and
sender."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List

from helpers import Recorder, settle
from livekit import rtc

ROOT = Path(__file__).resolve().parents[2]
Join = Callable[..., Awaitable[rtc.Room]]


def official_python() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "official-sdk.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return out.stdout.strip()


async def test_data_both_ways_with_official_sdk(server: Any, token: Any, join: Join) -> None:
    peer = await asyncio.create_subprocess_exec(
        official_python(), str(ROOT / "tests" / "interop" / "official_peer.py"),
        server.url, token("official"), "ours",
        "--send-reliable", "3", "--send-lossy", "5",
        "--expect-reliable", "3", "--expect-lossy", "1", "--timeout", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        room = await join("ours")
        rec = Recorder(room, "data_received")
        assert await settle(lambda: "official" in room.remote_participants, timeout=30)
        official = room.remote_participants["official"]

        for i in range(3):
            await room.local_participant.publish_data(f"ours-reliable-{i}", topic="from-ours")
        for i in range(5):
            await room.local_participant.publish_data(
                f"ours-lossy-{i}", reliable=False, topic="from-ours-lossy"
            )
            await asyncio.sleep(0.01)

        def received(kind: int) -> List[rtc.DataPacket]:
            return [a[0] for a in rec.of("data_received") if a[0].kind == kind]

        assert await settle(lambda: len(received(rtc.DataPacketKind.KIND_RELIABLE)) == 3, timeout=30)
        reliable = received(rtc.DataPacketKind.KIND_RELIABLE)
        assert [p.data for p in reliable] == [f"official-reliable-{i}".encode() for i in range(3)]
        assert all(p.topic == "from-official" and p.participant is official for p in reliable)
        assert await settle(lambda: len(received(rtc.DataPacketKind.KIND_LOSSY)) >= 1, timeout=10)
        lossy = received(rtc.DataPacketKind.KIND_LOSSY)
        assert all(p.topic == "from-official-lossy" and p.participant is official for p in lossy)

        out, err = await asyncio.wait_for(peer.communicate(), 45)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    lines: List[Dict[str, Any]] = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    assert peer.returncode == 0, (lines, err.decode()[-2000:])
    data = [x for x in lines if x["event"] == "data"]
    got_reliable = [x for x in data if x["kind"] == "reliable"]
    assert [x["payload"] for x in got_reliable] == [f"ours-reliable-{i}" for i in range(3)]
    assert all(x["sender"] == "ours" and x["topic"] == "from-ours" for x in got_reliable)
    got_lossy = [x for x in data if x["kind"] == "lossy"]
    assert got_lossy and all(
        x["sender"] == "ours" and x["topic"] == "from-ours-lossy" for x in got_lossy
    )
    print(f"official peer saw {len(data)} packets", file=sys.stderr)


async def test_official_peer_script_runs_unchanged_on_our_package(
    server: Any, token: Any
) -> None:
    # The same script, written for the official SDK, once on each stack.
    script = str(ROOT / "tests" / "interop" / "official_peer.py")
    common = ["--send-reliable", "3", "--expect-reliable", "3", "--timeout", "30"]
    procs = [
        await asyncio.create_subprocess_exec(
            python, script, server.url, token(me), other, *common,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for python, me, other in (
            (official_python(), "official", "ours"),
            (sys.executable, "ours", "official"),
        )
    ]
    try:
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (out, err), me, other in zip(procs, results, ("official", "ours"), ("ours", "official")):
        lines = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
        assert p.returncode == 0, (me, lines, err.decode()[-2000:])
        data = [x for x in lines if x["event"] == "data"]
        assert [x["payload"] for x in data] == [f"official-reliable-{i}" for i in range(3)]
        assert all(x["sender"] == other and x["topic"] == "from-official" for x in data)


async def test_sip_dtmf_both_ways_with_official_sdk(server: Any, token: Any, join: Join) -> None:
    peer = await asyncio.create_subprocess_exec(
        official_python(), str(ROOT / "tests" / "interop" / "dtmf_peer.py"),
        server.url, token("official"), "ours", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        room = await join("ours")
        rec = Recorder(room, "sip_dtmf_received")
        assert await settle(lambda: "official" in room.remote_participants, timeout=30)
        assert await settle(lambda: bool(rec.of("sip_dtmf_received")), timeout=30)
        dtmf = rec.of("sip_dtmf_received")[0][0]
        assert (dtmf.code, dtmf.digit) == (3, "3")
        assert dtmf.participant is room.remote_participants["official"]
        await room.local_participant.publish_dtmf(code=11, digit="#")
        out, err = await asyncio.wait_for(peer.communicate(), 45)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    lines = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    assert peer.returncode == 0, err.decode()[-2000:]
    assert [x for x in lines if x["event"] == "dtmf"] == [
        {"event": "dtmf", "code": 11, "digit": "#", "sender": "ours"}
    ]
