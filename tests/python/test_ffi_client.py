"""The event router of `_ffi_client`, against a fake native module: callbacks by
async_id, room events by room handle (one consumer each), held and orphaned events,
cancellation, logs and panics. The core's threads are simulated with real threads."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable, List, Optional

import pytest

from helpers import settle
from livekit.rtc._ffi_client import FfiClient, FfiRequestError
from livekit.rtc._proto import ffi_pb2 as proto_ffi


class FakeNative:
    """Answers requests like the core would (async ids as requested)."""

    class FfiError(Exception):
        pass

    def __init__(self) -> None:
        self.callback: Optional[Callable[[bytes], None]] = None
        self.requests: List[proto_ffi.FfiRequest] = []
        self.dropped: List[int] = []
        self.cancel_result = True

    def initialize(
        self,
        callback: Callable[[bytes], None],
        capture_logs: bool,
        sdk: str,
        v: str,
        frame_callback: Optional[Callable[..., None]] = None,
    ) -> None:
        self.callback = callback
        self.frame_callback = frame_callback

    def request(self, data: bytes) -> bytes:
        req = proto_ffi.FfiRequest.FromString(data)
        self.requests.append(req)
        which = req.WhichOneof("message")
        resp = proto_ffi.FfiResponse()
        if which == "cancel":
            resp.cancel.cancelled = self.cancel_result
        elif which == "disconnect" and req.disconnect.room_handle == 404:
            raise self.FfiError("unknown handle 404")
        elif which is not None and which != "ready_for_room_event":
            getattr(resp, which).async_id = getattr(req, which).request_async_id
        return resp.SerializeToString()

    def drop_handle(self, handle: int) -> bool:
        self.dropped.append(handle)
        return True

    def dispose(self) -> None:
        pass

    def emit(self, event: proto_ffi.FfiEvent) -> None:
        """Delivers an event from a foreign thread, as the core does."""
        assert self.callback is not None
        t = threading.Thread(target=self.callback, args=(event.SerializeToString(),))
        t.start()
        t.join()


@pytest.fixture
def fake() -> FakeNative:
    return FakeNative()


@pytest.fixture
def client(fake: FakeNative) -> FfiClient:
    return FfiClient(fake, register_atexit=False)


def connect_result(async_id: int, room: int, participants: List[int]) -> proto_ffi.FfiEvent:
    ev = proto_ffi.FfiEvent()
    ev.connect.async_id = async_id
    r = ev.connect.result
    r.room.handle.id = room
    r.room.info.name = "r"
    r.room.info.metadata = ""
    r.room.info.lossy_dc_buffered_amount_low_threshold = 0
    r.room.info.reliable_dc_buffered_amount_low_threshold = 0
    r.room.info.empty_timeout = 0
    r.room.info.departure_timeout = 0
    r.room.info.max_participants = 0
    r.room.info.creation_time = 0
    r.room.info.num_participants = 0
    r.room.info.num_publishers = 0
    r.room.info.active_recording = False
    r.local_participant.handle.id = participants[0]
    _fill_info(r.local_participant.info, "me")
    for i, h in enumerate(participants[1:]):
        item = r.participants.add()
        item.participant.handle.id = h
        _fill_info(item.participant.info, f"p{i}")
    return ev


def _fill_info(info: Any, identity: str) -> None:
    info.sid = "PA_" + identity
    info.identity = identity
    info.name = ""
    info.metadata = ""
    info.state = 0
    info.kind = 0
    info.disconnect_reason = 0
    info.joined_at = 0
    info.client_protocol = 0


def room_event(room: int, kind: str = "reconnecting") -> proto_ffi.FfiEvent:
    ev = proto_ffi.FfiEvent()
    ev.room_event.room_handle = room
    getattr(ev.room_event, kind).SetInParent()
    return ev


def participant_joined(room: int, handle: int) -> proto_ffi.FfiEvent:
    ev = proto_ffi.FfiEvent()
    ev.room_event.room_handle = room
    owned = ev.room_event.participant_connected.info
    owned.handle.id = handle
    _fill_info(owned.info, f"h{handle}")
    return ev


async def open_room(
    client: FfiClient, fake: FakeNative, room: int, sink: Callable[[proto_ffi.FfiEvent], None],
    participants: Optional[List[int]] = None,
) -> proto_ffi.FfiEvent:
    req = proto_ffi.FfiRequest()
    req.connect.url = "ws://x"
    req.connect.token = "t"
    req.connect.options.auto_subscribe = True
    task = asyncio.ensure_future(client.call(req, room_sink=sink))
    await settle(lambda: client.waiter_count() == 1 and bool(fake.requests))
    async_id = fake.requests[-1].connect.request_async_id
    fake.emit(connect_result(async_id, room, participants or [room + 1]))
    return await task


async def test_callbacks_are_matched_by_the_async_id_we_chose(
    client: FfiClient, fake: FakeNative
) -> None:
    req = proto_ffi.FfiRequest()
    req.publish_data.local_participant_handle = 1
    req.publish_data.data_ptr = 0
    req.publish_data.data_len = 0
    req.publish_data.reliable = True
    task = asyncio.ensure_future(client.call(req))
    await settle(lambda: bool(fake.requests))
    async_id = fake.requests[0].publish_data.request_async_id
    assert async_id > 0
    # A callback of another request and one with an unknown id go nowhere.
    other = proto_ffi.FfiEvent()
    other.publish_data.async_id = async_id + 1000
    fake.emit(other)
    mine = proto_ffi.FfiEvent()
    mine.publish_data.async_id = async_id
    mine.publish_data.error = "too big"
    fake.emit(mine)
    ev = await asyncio.wait_for(task, 2)
    assert ev.publish_data.error == "too big"
    assert client.waiter_count() == 0


async def test_room_events_reach_only_their_room(client: FfiClient, fake: FakeNative) -> None:
    got: dict[int, List[str]] = {}

    def sink_for(room: int) -> Callable[[proto_ffi.FfiEvent], None]:
        got[room] = []
        return lambda ev: got[room].append(ev.room_event.WhichOneof("message") or "")

    rooms = [1000 + 10 * i for i in range(50)]
    for r in rooms:
        await open_room(client, fake, r, sink_for(r))
    assert client.room_count() == 50
    fake.emit(room_event(1200, "reconnecting"))
    fake.emit(room_event(1200, "reconnected"))
    await settle(lambda: len(got[1200]) == 2)
    assert got[1200] == ["reconnecting", "reconnected"]
    assert all(not events for r, events in got.items() if r != 1200)


async def test_events_before_the_connect_callback_are_held_then_delivered(
    client: FfiClient, fake: FakeNative
) -> None:
    order: List[str] = []
    req = proto_ffi.FfiRequest()
    req.connect.url = "ws://x"
    req.connect.token = "t"
    req.connect.options.auto_subscribe = True
    task = asyncio.ensure_future(
        client.call(req, room_sink=lambda ev: order.append(ev.room_event.WhichOneof("message") or ""))
    )
    await settle(lambda: bool(fake.requests))
    fake.emit(room_event(7, "reconnecting"))  # races ahead of the callback
    fake.emit(connect_result(fake.requests[0].connect.request_async_id, 7, [8]))
    fake.emit(room_event(7, "reconnected"))
    await task
    await settle(lambda: len(order) == 2)
    assert order == ["reconnecting", "reconnected"]


async def test_orphans_have_their_handles_dropped(client: FfiClient, fake: FakeNative) -> None:
    await open_room(client, fake, 50, lambda ev: None, participants=[51])
    client.close_room(50)
    fake.emit(participant_joined(50, 52))  # a late event of a closed room
    assert await settle(lambda: 52 in fake.dropped)
    # A connect callback nobody waits for: its room and participants are released.
    fake.emit(connect_result(99999, 60, [61, 62]))
    assert await settle(lambda: {60, 61, 62} <= set(fake.dropped))
    assert await settle(lambda: client._janitor is None)  # the janitor is gone


async def test_cancelled_call_cancels_in_the_core_and_releases_late_results(
    client: FfiClient, fake: FakeNative
) -> None:
    late: List[proto_ffi.FfiEvent] = []
    req = proto_ffi.FfiRequest()
    req.connect.url = "ws://x"
    req.connect.token = "t"
    req.connect.options.auto_subscribe = True
    task = asyncio.ensure_future(client.call(req, room_sink=lambda ev: None, on_late=late.append))
    await settle(lambda: bool(fake.requests))
    async_id = fake.requests[0].connect.request_async_id
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.requests[-1].cancel.async_id == async_id
    assert client.waiter_count() == 0
    # Too late to cancel in the core: the result arrives anyway and is dropped.
    fake.emit(connect_result(async_id, 70, [71]))
    assert await settle(lambda: {70, 71} <= set(fake.dropped))
    assert client.room_count() == 0


async def test_request_errors_become_ffi_request_errors(client: FfiClient) -> None:
    req = proto_ffi.FfiRequest()
    req.disconnect.room_handle = 404
    with pytest.raises(FfiRequestError, match="unknown handle"):
        await client.call(req)
    assert client.waiter_count() == 0


async def test_logs_and_panics_go_to_the_livekit_logger(
    client: FfiClient, fake: FakeNative, caplog: pytest.LogCaptureFixture
) -> None:
    ev = proto_ffi.FfiEvent()
    for level, text in ((proto_ffi.LOG_WARN, "careful"), (proto_ffi.LOG_ERROR, "broken"),
                        (proto_ffi.LOG_DEBUG, "detail")):
        rec = ev.logs.records.add()
        rec.level = level
        rec.target = "livekit_ffi::engine"
        rec.message = text
        rec.file = "engine.rs"
        rec.line = 42
    with caplog.at_level(logging.INFO, logger="livekit"):
        fake.emit(ev)
        panic = proto_ffi.FfiEvent()
        panic.panic.message = "index out of bounds"
        fake.emit(panic)
        assert fake.callback is not None
        fake.callback(b"\xff\xff not protobuf")  # never raises into the core
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "livekit"]
    assert (logging.WARNING, "livekit_ffi::engine: careful") in records
    assert (logging.ERROR, "livekit_ffi::engine: broken") in records
    assert all("detail" not in m for _, m in records)  # below the level
    assert any(lvl == logging.ERROR and "index out of bounds" in m for lvl, m in records)
    warn = next(r for r in caplog.records if r.getMessage().endswith("careful"))
    assert (warn.pathname, warn.lineno) == ("engine.rs", 42)
