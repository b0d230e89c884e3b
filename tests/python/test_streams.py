"""Data streams: whole and streamed text and bytes read back identical, their info,
destinations, concurrency, limits, abrupt ends, handler registration; both ways
with the official SDK (tests/interop/stream_peer.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Tuple, Union

import pytest

from helpers import settle
from livekit import rtc
from livekit.rtc import data_stream

ROOT = Path(__file__).resolve().parents[2]
Join = Callable[..., Awaitable[rtc.Room]]
Reader = Union[rtc.TextStreamReader, rtc.ByteStreamReader]


@pytest.fixture(autouse=True)
async def no_routes() -> AsyncIterator[None]:
    yield
    from livekit.rtc._ffi_client import FfiClient

    assert await settle(lambda: FfiClient.instance().route_count() == 0, timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def big_text(min_bytes: int) -> str:
    unit = "héllo wörld ✓ 𝄞 日本語 — "
    return unit * (min_bytes // len(unit.encode()) + 1)


async def pair(join: Join) -> Tuple[rtc.Room, rtc.Room]:
    alice = await join("alice")
    bob = await join("bob")
    assert await settle(lambda: "bob" in alice.remote_participants)
    assert await settle(lambda: "alice" in bob.remote_participants)
    return alice, bob


class Inbox:
    """A stream handler that keeps the readers it gets, with their senders."""

    def __init__(self) -> None:
        self.items: List[Tuple[Any, str]] = []
        self.taken = 0

    def __call__(self, reader: Reader, sender: str) -> None:
        self.items.append((reader, sender))

    async def next(self, timeout: float = 10) -> Tuple[Any, str]:
        n = self.taken
        assert await settle(lambda: len(self.items) > n, timeout=timeout), "no stream arrived"
        self.taken += 1
        return self.items[n]


async def test_send_text_multibyte_read_all(join: Join) -> None:
    alice, bob = await pair(join)
    results: "asyncio.Queue[Tuple[str, rtc.TextStreamInfo, str]]" = asyncio.Queue()

    def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            results.put_nowait((text, reader.info, sender))

        asyncio.ensure_future(read())

    bob.register_text_stream_handler("chat", on_text)
    text = big_text(1024 * 1024)
    info = await alice.local_participant.send_text(
        text, topic="chat", attributes={"lang": "fr", "n": "1"}
    )
    assert isinstance(info, rtc.TextStreamInfo)
    got, got_info, sender = await asyncio.wait_for(results.get(), 30)
    assert sha(got.encode()) == sha(text.encode())
    assert sender == "alice"
    assert got_info.stream_id == info.stream_id and info.stream_id
    assert got_info.topic == "chat"
    assert got_info.mime_type == "text/plain"
    assert got_info.attributes == {"lang": "fr", "n": "1"}
    assert got_info.timestamp > 0


async def test_send_file_5mb_async_iteration(join: Join, tmp_path: Path) -> None:
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_byte_stream_handler("files", inbox)
    data = os.urandom(5 * 1024 * 1024)
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    info = await alice.local_participant.send_file(
        str(path), topic="files", attributes={"k": "v"}
    )
    assert isinstance(info, rtc.ByteStreamInfo)
    assert (info.name, info.mime_type, info.size) == ("photo.png", "image/png", len(data))

    reader, sender = await inbox.next()
    assert isinstance(reader, rtc.ByteStreamReader)
    assert sender == "alice"
    rinfo = reader.info
    assert (rinfo.stream_id, rinfo.name, rinfo.mime_type, rinfo.topic) == (
        info.stream_id, "photo.png", "image/png", "files"
    )
    assert rinfo.size == len(data)
    assert rinfo.attributes == {"k": "v"}
    h = hashlib.sha256()
    chunks = 0
    async for chunk in reader:
        assert isinstance(chunk, bytes)
        h.update(chunk)
        chunks += 1
    assert h.hexdigest() == sha(data)
    assert chunks > 1
    # A finished reader stays finished.
    assert [c async for c in reader] == []


async def test_stream_text_writer_and_trailer_attributes(join: Join) -> None:
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_text_stream_handler("live", inbox)
    writer = await alice.local_participant.stream_text(
        topic="live", attributes={"a": "1"}, stream_id="my-stream-1", total_size=12345
    )
    assert isinstance(writer, rtc.TextStreamWriter)
    assert writer.info.stream_id == "my-stream-1"
    reader, _ = await inbox.next()
    parts = [f"{i}: ünïcödé ✓ 𝄞 " * 50 for i in range(30)]
    received: List[str] = []

    async def consume() -> None:
        async for chunk in reader:
            received.append(chunk)

    consumer = asyncio.ensure_future(consume())
    for part in parts:
        await writer.write(part)
    await writer.aclose(attributes={"b": "2"})
    await asyncio.wait_for(consumer, 10)
    assert "".join(received) == "".join(parts)
    assert reader.info.stream_id == "my-stream-1"
    assert reader.info.attributes == {"a": "1", "b": "2"}

    # A closed writer says so, as a StreamError and (like the official SDK) a RuntimeError.
    with pytest.raises(rtc.StreamError):
        await writer.write("late")
    with pytest.raises(RuntimeError):
        await writer.aclose()


async def test_stream_bytes_and_send_bytes(join: Join) -> None:
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_byte_stream_handler("raw", inbox)
    payload = os.urandom(300_000)
    writer = await alice.local_participant.stream_bytes(
        "dump.bin", total_size=len(payload), mime_type="application/x-test", topic="raw"
    )
    assert isinstance(writer, rtc.ByteStreamWriter)
    for i in range(0, len(payload), 70_000):
        await writer.write(payload[i : i + 70_000])
    await writer.aclose()
    reader, _ = await inbox.next()
    assert await reader.read_all() == payload
    assert (reader.info.name, reader.info.mime_type, reader.info.size) == (
        "dump.bin", "application/x-test", len(payload)
    )

    info = await alice.local_participant.send_bytes(
        b"small", topic="raw", name="s.txt", mime_type="text/x-small", stream_id="sb-1"
    )
    assert info.stream_id == "sb-1"
    reader, _ = await inbox.next()
    assert await reader.read_all() == b"small"
    assert (reader.info.name, reader.info.mime_type, reader.info.stream_id) == (
        "s.txt", "text/x-small", "sb-1"
    )
    # Defaults of send_bytes.
    await alice.local_participant.send_bytes(b"", topic="raw")
    reader, _ = await inbox.next()
    assert await reader.read_all() == b""
    assert reader.info.mime_type == "application/octet-stream"


async def test_destination_identities(join: Join) -> None:
    alice = await join("alice")
    bob = await join("bob")
    carol = await join("carol")
    assert await settle(lambda: {"bob", "carol"} <= set(alice.remote_participants))
    at_bob, at_carol = Inbox(), Inbox()
    bob.register_text_stream_handler("t", at_bob)
    carol.register_text_stream_handler("t", at_carol)
    await alice.local_participant.send_text("only bob", topic="t", destination_identities=["bob"])
    await alice.local_participant.send_text("everyone", topic="t")
    reader, _ = await at_bob.next()
    assert await reader.read_all() == "only bob"
    reader, _ = await at_bob.next()
    assert await reader.read_all() == "everyone"
    reader, _ = await at_carol.next()
    assert await reader.read_all() == "everyone"
    await asyncio.sleep(0.3)
    assert len(at_carol.items) == 1


async def test_concurrent_streams(join: Join) -> None:
    alice, bob = await pair(join)
    texts: Dict[str, str] = {}
    blobs: Dict[str, bytes] = {}

    def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            texts[reader.info.attributes["i"]] = await reader.read_all()  # type: ignore[index]

        asyncio.ensure_future(read())

    def on_bytes(reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            blobs[reader.info.attributes["i"]] = b"".join([c async for c in reader])  # type: ignore[index]

        asyncio.ensure_future(read())

    bob.register_text_stream_handler("t", on_text)
    bob.register_byte_stream_handler("b", on_bytes)
    sent_text = {str(i): big_text(100_000 + i * 1000) + str(i) for i in range(6)}
    sent_bytes = {str(i): os.urandom(200_000 + i) for i in range(6)}

    async def streamed(i: str) -> None:
        w = await alice.local_participant.stream_bytes("n", topic="b", attributes={"i": i})
        data = sent_bytes[i]
        for k in range(0, len(data), 50_000):
            await w.write(data[k : k + 50_000])
        await w.aclose()

    lp = alice.local_participant
    await asyncio.gather(
        *(lp.send_text(t, topic="t", attributes={"i": i}) for i, t in sent_text.items()),
        *(streamed(i) for i in sent_bytes),
    )
    assert await settle(lambda: len(texts) == 6 and len(blobs) == 6, timeout=30)
    assert texts == sent_text
    assert blobs == sent_bytes


async def test_handlers_registration_and_streams_without_handler(join: Join) -> None:
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_text_stream_handler("t", inbox)
    with pytest.raises(ValueError):
        bob.register_text_stream_handler("t", inbox)
    bob.register_byte_stream_handler("t", inbox)  # another kind: fine
    # Streams on topics nobody handles are released at once (the conftest checks that
    # no handle is left behind).
    await alice.local_participant.send_text("x" * 50_000, topic="nobody")
    await alice.local_participant.send_file(__file__, topic="nobody")
    bob.unregister_text_stream_handler("t")
    await alice.local_participant.send_text("dropped", topic="t")
    # Reliable data arrives in order: once the marker is in, so is the stream.
    marker = asyncio.Event()
    bob.on("data_received", lambda p: marker.set())
    await alice.local_participant.publish_data("marker")
    await asyncio.wait_for(marker.wait(), 10)
    bob.register_text_stream_handler("t", inbox)
    await alice.local_participant.send_text("kept", topic="t")
    reader, _ = await inbox.next()
    assert await reader.read_all() == "kept"
    bob.unregister_byte_stream_handler("t")
    bob.unregister_byte_stream_handler("never")


async def test_sender_disconnect_cuts_the_stream(join: Join) -> None:
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_byte_stream_handler("cut", inbox)
    writer = await alice.local_participant.stream_bytes("big.bin", topic="cut")
    await writer.write(b"a" * 100_000)
    reader, _ = await inbox.next()
    received = bytearray()

    async def consume() -> None:
        async for chunk in reader:
            received.extend(chunk)

    consumer = asyncio.ensure_future(consume())
    assert await settle(lambda: len(received) == 100_000)
    await alice.disconnect()
    with pytest.raises(rtc.StreamError):
        await asyncio.wait_for(consumer, 15)
    assert bytes(received) == b"a" * 100_000
    # The writer of the disconnected room is released and says why.
    with pytest.raises(rtc.StreamError, match="disconnected"):
        await writer.write(b"more")


async def test_our_disconnect_ends_readers(join: Join) -> None:
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_text_stream_handler("t", inbox)
    writers = [await alice.local_participant.stream_text(topic="t") for _ in range(2)]
    await writers[0].write("before")
    await writers[1].write("x")
    iterated, whole = (await inbox.next())[0], (await inbox.next())[0]
    first = await iterated.__anext__()
    assert first == "before"
    read_all = asyncio.ensure_future(whole.read_all())
    await asyncio.sleep(0.2)
    await bob.disconnect()
    with pytest.raises(rtc.StreamError, match="(?i)disconnected"):
        await iterated.__anext__()
    with pytest.raises(rtc.StreamError):
        await asyncio.wait_for(read_all, 5)
    for w in writers:
        await w.aclose()


async def test_unread_bytes_are_bounded(
    join: Join, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(data_stream, "MAX_BUFFERED_BYTES", 200_000)
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_byte_stream_handler("flood", inbox)  # keeps readers, never reads
    await alice.local_participant.send_bytes(os.urandom(1_000_000), topic="flood")
    reader, _ = await inbox.next()
    await asyncio.sleep(1.0)
    with pytest.raises(rtc.StreamError, match="unread"):
        async for _ in reader:
            pass
    # A reader that keeps up gets past the same bound.
    got = bytearray()
    done = asyncio.Event()

    def on_flow(reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            async for chunk in reader:
                got.extend(chunk)
            done.set()

        asyncio.ensure_future(read())

    bob.register_byte_stream_handler("flow", on_flow)
    writer = await alice.local_participant.stream_bytes("flow", topic="flow")
    for _ in range(10):
        await writer.write(b"z" * 100_000)
        await asyncio.sleep(0.05)
    await writer.aclose()
    await asyncio.wait_for(done.wait(), 20)
    assert bytes(got) == b"z" * 1_000_000


async def test_max_payload_option(server: Any, token: Any, rooms: Callable[[], rtc.Room]) -> None:
    alice, bob = rooms(), rooms()
    await alice.connect(server.url, token("alice"))
    await bob.connect(
        server.url,
        token("bob"),
        rtc.RoomOptions(data_stream=rtc.DataStreamOptions(max_payload_byte_length=100_000)),
    )
    assert await settle(lambda: "bob" in alice.remote_participants)
    inbox = Inbox()
    bob.register_text_stream_handler("t", inbox)
    bob.register_byte_stream_handler("b", inbox)
    await alice.local_participant.send_text("ok" * 1000, topic="t")
    await alice.local_participant.send_text("x" * 200_000, topic="t")
    await alice.local_participant.send_bytes(b"y" * 200_000, topic="b")
    reader, _ = await inbox.next()
    assert await reader.read_all() == "ok" * 1000
    reader, _ = await inbox.next()
    with pytest.raises(rtc.StreamError, match="maximum payload"):
        await reader.read_all()
    reader, _ = await inbox.next()
    with pytest.raises(rtc.StreamError, match="maximum payload"):
        async for _ in reader:
            pass


async def test_reader_close_mid_stream(join: Join) -> None:
    alice, bob = await pair(join)
    inbox = Inbox()
    bob.register_text_stream_handler("t", inbox)
    writer = await alice.local_participant.stream_text(topic="t")
    await writer.write("one")
    reader, _ = await inbox.next()
    assert await reader.__anext__() == "one"
    reader.close()
    await writer.write("two")
    await writer.aclose()
    assert [c async for c in reader] == []
    reader.close()  # again: nothing
    # A reader closed before it was read releases its stream.
    await alice.local_participant.send_text("never read", topic="t")
    reader, _ = await inbox.next()
    await reader.aclose()


async def test_send_after_disconnect_raises(join: Join) -> None:
    alice = await join("alice")
    lp = alice.local_participant
    await alice.disconnect()
    with pytest.raises(rtc.StreamError):
        await lp.send_text("x", topic="t")
    with pytest.raises(rtc.StreamError):
        await lp.stream_bytes("n")


def official_python() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "official-sdk.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return out.stdout.strip()


async def test_streams_both_ways_with_official_sdk(
    server: Any, token: Any, join: Join, tmp_path: Path
) -> None:
    peer = await asyncio.create_subprocess_exec(
        official_python(), str(ROOT / "tests" / "interop" / "stream_peer.py"),
        server.url, token("official"), "ours",
        "--expect-text", "2", "--expect-bytes", "1", "--timeout", "90",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    lines: List[Dict[str, Any]] = []
    try:
        room = await join("ours")
        texts: List[Tuple[str, rtc.TextStreamInfo, str]] = []
        files: List[Tuple[str, int, rtc.ByteStreamInfo, str]] = []

        def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
            async def read() -> None:
                text = await reader.read_all()
                texts.append((sha(text.encode()), reader.info, sender))

            asyncio.ensure_future(read())

        def on_file(reader: rtc.ByteStreamReader, sender: str) -> None:
            async def read() -> None:
                h, n = hashlib.sha256(), 0
                async for chunk in reader:
                    h.update(chunk)
                    n += len(chunk)
                files.append((h.hexdigest(), n, reader.info, sender))

            asyncio.ensure_future(read())

        room.register_text_stream_handler("text", on_text)
        room.register_byte_stream_handler("file", on_file)
        assert await settle(lambda: "official" in room.remote_participants, timeout=30)

        # ours -> official
        data = os.urandom(5 * 1024 * 1024)
        path = tmp_path / "ours.bin"
        path.write_bytes(data)
        lp = room.local_participant
        finfo = await lp.send_file(str(path), topic="file", attributes={"from": "ours"})
        text = big_text(1024 * 1024)
        tinfo = await lp.send_text(text, topic="text", attributes={"kind": "whole"})
        writer = await lp.stream_text(topic="text", attributes={"kind": "streamed"})
        parts = [f"ours {i} — ✓ 𝄞 " * 200 for i in range(25)]
        for part in parts:
            await writer.write(part)
        await writer.aclose()

        # official -> ours
        assert await settle(lambda: len(texts) == 2 and len(files) == 1, timeout=90)
        assert peer.stdout is not None
        while not any(x.get("event") == "received_all" for x in lines):
            raw = await asyncio.wait_for(peer.stdout.readline(), 90)
            if not raw:
                assert peer.stderr is not None
                raise AssertionError((lines, (await peer.stderr.read()).decode()[-3000:]))
            lines.append(json.loads(raw))
        await room.disconnect()
        out, err = await asyncio.wait_for(peer.communicate(), 30)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    lines += [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    assert peer.returncode == 0, (lines, err.decode()[-3000:])
    by_event: Dict[str, List[Dict[str, Any]]] = {}
    for x in lines:
        by_event.setdefault(x["event"], []).append(x)

    (got_file,) = by_event["bytes"]
    assert got_file["sha"] == sha(data) and got_file["len"] == len(data)
    assert (got_file["name"], got_file["stream_id"], got_file["sender"]) == (
        "ours.bin", finfo.stream_id, "ours"
    )
    assert got_file["attributes"] == {"from": "ours"}
    assert got_file["size"] == len(data)
    (got_text,) = [x for x in by_event["text"] if x["stream_id"] == tinfo.stream_id]
    assert got_text["sha"] == sha(text.encode()) and got_text["chars"] == len(text)
    assert got_text["attributes"] == {"kind": "whole"} and got_text["sender"] == "ours"
    (got_stream,) = [x for x in by_event["text"] if x["stream_id"] == writer.info.stream_id]
    assert got_stream["sha"] == sha("".join(parts).encode())
    assert got_stream["attributes"] == {"kind": "streamed"}

    (sent_file,) = by_event["sent_file"]
    (f_sha, f_len, f_info, f_sender) = files[0]
    assert (f_sha, f_len, f_sender) == (sent_file["sha"], sent_file["len"], "official")
    assert (f_info.name, f_info.stream_id, f_info.attributes) == (
        "official.bin", sent_file["stream_id"], {"from": "official"}
    )
    sent = {x["stream_id"]: x["sha"] for x in by_event["sent_text"] + by_event["sent_stream"]}
    assert {info.stream_id: h for h, info, _ in texts} == sent
    assert all(sender == "official" for _, _, sender in texts)
    assert sorted(info.attributes["kind"] for _, info, _ in texts) == ["streamed", "whole"]  # type: ignore[index]


async def test_data_streams_example(server: Any) -> None:
    from lkserver import API_KEY, API_SECRET

    env = dict(
        os.environ,
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        LIVEKIT_ROOM="streams-example-test",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "data_streams.py"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 60)
    out = out_b.decode()
    assert proc.returncode == 0, out + err_b.decode()
    assert "[bob] chat from alice: 'Hello Bob! ✓'" in out
    assert "[bob] streamed from alice: 'one two three '" in out
    assert "[bob] file report.txt (text/plain, 262144 bytes) from alice: sha256 matches" in out
    assert out.rstrip().endswith("done")
