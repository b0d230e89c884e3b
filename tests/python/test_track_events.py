"""The Python side of audio tracks against a fake core (no server): which objects the
room creates, keeps and releases for each track event and what it emits; the order of
publish_track's callback and the local track events; AudioStream routing (frames
that beat their route, bounded queue, cancelled reads, end of stream, aclose)."""

from __future__ import annotations

import asyncio
import ctypes
import threading
from typing import Any, Iterator, List, Tuple

import pytest

from helpers import Recorder, settle
from livekit import rtc
from livekit.rtc._ffi_client import FfiClient
from livekit.rtc._proto import audio_frame_pb2 as proto_audio
from livekit.rtc._proto import ffi_pb2 as proto_ffi
from livekit.rtc._proto import track_pb2 as proto_track
from test_ffi_client import FakeNative, connect_result

ROOM = 500
LOCAL = 501
REMOTE = 502


class FakeCore(FakeNative):
    """A FakeNative that also answers the synchronous track and stream requests."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 10_000
        self.on_new_stream: Any = None

    def handle(self) -> int:
        self._next += 1
        return self._next

    def request(self, data: bytes) -> bytes:
        req = proto_ffi.FfiRequest.FromString(data)
        which = req.WhichOneof("message")
        resp = proto_ffi.FfiResponse()
        if which == "new_audio_source":
            resp.new_audio_source.source.handle.id = self.handle()
            resp.new_audio_source.source.info.type = proto_audio.AUDIO_SOURCE_NATIVE
        elif which == "create_audio_track":
            owned = resp.create_audio_track.track
            owned.handle.id = self.handle()
            fill_track(owned.info, "", req.create_audio_track.name, remote=False)
        elif which == "local_track_mute":
            resp.local_track_mute.muted = req.local_track_mute.mute
        elif which == "set_subscribed":
            resp.set_subscribed.SetInParent()
        elif which in ("new_audio_stream", "audio_stream_from_participant"):
            stream = getattr(resp, which).stream
            stream.handle.id = self.handle()
            stream.info.type = proto_audio.AUDIO_STREAM_NATIVE
            if self.on_new_stream is not None:
                self.on_new_stream(stream.handle.id)  # events racing the response
        elif which == "disconnect":
            raw = super().request(data)
            done = proto_ffi.FfiEvent()
            done.disconnect.async_id = req.disconnect.request_async_id
            self.emit(done)
            self.emit(room_ev("eos"))
            return raw
        else:
            return super().request(data)
        self.requests.append(req)
        return resp.SerializeToString()


def fill_track(info: Any, sid: str, name: str, remote: bool) -> None:
    info.sid = sid
    info.name = name
    info.kind = proto_track.KIND_AUDIO
    info.stream_state = proto_track.STATE_ACTIVE
    info.muted = False
    info.remote = remote


def fill_publication(owned: Any, handle: int, sid: str, remote: bool) -> None:
    owned.handle.id = handle
    info = owned.info
    info.sid = sid
    info.name = "mic"
    info.kind = proto_track.KIND_AUDIO
    info.source = proto_track.SOURCE_MICROPHONE
    info.simulcasted = False
    info.width = 0
    info.height = 0
    info.mime_type = "audio/opus"
    info.muted = False
    info.remote = remote
    info.encryption_type = proto_track.NONE
    info.audio_features.append(proto_track.TF_NO_DTX)


def room_ev(kind: str, **fields: Any) -> proto_ffi.FfiEvent:
    """A room event of `kind` with the given scalar fields."""
    ev = proto_ffi.FfiEvent()
    ev.room_event.room_handle = ROOM
    message = getattr(ev.room_event, kind)
    message.SetInParent()
    for name, value in fields.items():
        setattr(message, name, value)
    return ev


def track_published(identity: str, handle: int, sid: str) -> proto_ffi.FfiEvent:
    ev = room_ev("track_published", participant_identity=identity)
    fill_publication(ev.room_event.track_published.publication, handle, sid, remote=True)
    return ev


def track_subscribed(identity: str, handle: int, sid: str) -> proto_ffi.FfiEvent:
    ev = room_ev("track_subscribed", participant_identity=identity)
    owned = ev.room_event.track_subscribed.track
    owned.handle.id = handle
    fill_track(owned.info, sid, "mic", remote=True)
    return ev


@pytest.fixture
def core(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCore]:
    fake = FakeCore()
    client = FfiClient(fake, register_atexit=False)
    monkeypatch.setattr(FfiClient, "_instance", client)
    yield fake


async def connected(core: FakeCore, with_publication: bool = False) -> rtc.Room:
    room = rtc.Room()
    task = asyncio.ensure_future(room.connect("ws://x", "t"))
    await settle(lambda: any(r.WhichOneof("message") == "connect" for r in core.requests))
    async_id = core.requests[-1].connect.request_async_id
    ev = connect_result(async_id, ROOM, [LOCAL, REMOTE])
    if with_publication:
        item = ev.connect.result.participants[0]
        fill_publication(item.publications.add(), 600, "TR_old", remote=True)
    core.emit(ev)
    await asyncio.wait_for(task, 2)
    return room


def frame_event(
    stream: int, handle: int, buf: "ctypes.Array[ctypes.c_int16]"
) -> proto_ffi.FfiEvent:
    ev = proto_ffi.FfiEvent()
    ev.audio_stream_event.stream_handle = stream
    owned = ev.audio_stream_event.frame_received.frame
    owned.handle.id = handle
    owned.info.data_ptr = ctypes.addressof(buf)
    owned.info.num_channels = 1
    owned.info.sample_rate = 48000
    owned.info.samples_per_channel = len(buf)
    return ev


def eos_event(stream: int) -> proto_ffi.FfiEvent:
    ev = proto_ffi.FfiEvent()
    ev.audio_stream_event.stream_handle = stream
    ev.audio_stream_event.eos.SetInParent()
    return ev


EVENTS = (
    "track_published", "track_unpublished", "track_subscribed", "track_unsubscribed",
    "track_subscription_failed", "track_muted", "track_unmuted", "local_track_published",
    "local_track_unpublished", "local_track_subscribed", "transcription_received",
)


async def test_remote_track_lifecycle(core: FakeCore) -> None:
    room = await connected(core, with_publication=True)
    rec = Recorder(room, *EVENTS)
    rp = room.remote_participants["p0"]
    old = rp.track_publications["TR_old"]
    assert isinstance(old, rtc.RemoteTrackPublication) and not old.subscribed
    assert old.audio_features == [proto_track.TF_NO_DTX] and old.mime_type == "audio/opus"

    core.emit(track_published("p0", 601, "TR_new"))
    core.emit(track_subscribed("p0", 602, "TR_new"))
    core.emit(room_ev("track_muted", participant_identity="p0", track_sid="TR_new"))
    core.emit(room_ev(
        "track_subscription_failed", participant_identity="p0", track_sid="TR_x", error="nope"
    ))
    core.emit(room_ev("track_unsubscribed", participant_identity="p0", track_sid="TR_new"))
    core.emit(room_ev("track_unpublished", participant_identity="p0", publication_sid="TR_new"))
    await settle(lambda: len(rec.seen) == 6)
    assert [n for n, _ in rec.seen] == [
        "track_published", "track_subscribed", "track_muted", "track_subscription_failed",
        "track_unsubscribed", "track_unpublished",
    ]
    pub, who = rec.of("track_published")[0]
    assert isinstance(pub, rtc.RemoteTrackPublication) and who is rp and pub.sid == "TR_new"
    track, pub2, who2 = rec.of("track_subscribed")[0]
    assert isinstance(track, rtc.RemoteAudioTrack) and pub2 is pub and who2 is rp
    assert rec.of("track_muted")[0] == (rp, pub) and pub.muted and track.muted
    assert rec.of("track_subscription_failed")[0] == (rp, "TR_x", "nope")
    assert rec.of("track_unsubscribed")[0] == (track, pub, rp)
    assert rec.of("track_unpublished")[0] == (pub, rp)
    assert pub.track is None and not pub.subscribed
    assert "TR_new" not in rp.track_publications
    assert {601, 602} <= set(core.dropped)  # publication and track released
    assert 600 not in core.dropped
    await room.disconnect()
    assert 600 in core.dropped  # the room's remaining publications go with it


async def test_publish_unpublish_and_first_subscription(core: FakeCore) -> None:
    room = await connected(core)
    rec = Recorder(room, *EVENTS)
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    track.mute()
    assert track.muted
    track.unmute()
    task = asyncio.ensure_future(room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)))
    await settle(lambda: core.requests[-1].WhichOneof("message") == "publish_track")
    req = core.requests[-1].publish_track
    assert req.track_handle == track._handle and req.local_participant_handle == LOCAL
    assert req.options.source == rtc.TrackSource.SOURCE_MICROPHONE
    # As the official core does: the callback, then at once the room's event.
    cb = proto_ffi.FfiEvent()
    cb.publish_track.async_id = req.request_async_id
    fill_publication(cb.publish_track.publication, 700, "TR_mine", remote=False)
    core.emit(cb)
    core.emit(room_ev("local_track_published", track_sid="TR_mine"))
    pub = await asyncio.wait_for(task, 2)
    await settle(lambda: bool(rec.of("local_track_published")))
    assert rec.of("local_track_published")[0] == (pub, track)
    assert isinstance(pub, rtc.LocalTrackPublication) and pub.track is track
    assert track.sid == "TR_mine" and room.local_participant.track_publications == {"TR_mine": pub}

    waiter = asyncio.ensure_future(pub.wait_for_subscription())
    await asyncio.sleep(0)
    assert not waiter.done()
    core.emit(room_ev("local_track_subscribed", track_sid="TR_mine"))
    await asyncio.wait_for(waiter, 2)
    assert rec.of("local_track_subscribed")[0] == (track,)

    # Unpublishing: the official core sends the room event before the callback.
    task2 = asyncio.ensure_future(room.local_participant.unpublish_track("TR_mine"))
    await settle(lambda: core.requests[-1].WhichOneof("message") == "unpublish_track")
    un = core.requests[-1].unpublish_track
    assert un.track_sid == "TR_mine" and un.stop_on_unpublish
    core.emit(room_ev("local_track_unpublished", publication_sid="TR_mine"))
    ucb = proto_ffi.FfiEvent()
    ucb.unpublish_track.async_id = un.request_async_id
    core.emit(ucb)
    await asyncio.wait_for(task2, 2)
    assert rec.of("local_track_unpublished")[0] == (pub,)
    assert pub.track is None and not room.local_participant.track_publications
    assert 700 in core.dropped
    await room.disconnect()
    await source.aclose()


async def test_local_events_that_beat_the_publish_callback_are_held(core: FakeCore) -> None:
    room = await connected(core)
    rec = Recorder(room, *EVENTS)
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    task = asyncio.ensure_future(room.local_participant.publish_track(track))
    await settle(lambda: core.requests[-1].WhichOneof("message") == "publish_track")
    async_id = core.requests[-1].publish_track.request_async_id
    core.emit(room_ev("local_track_published", track_sid="TR_m"))
    core.emit(room_ev("local_track_subscribed", track_sid="TR_m"))
    await asyncio.sleep(0.05)
    assert not rec.seen
    cb = proto_ffi.FfiEvent()
    cb.publish_track.async_id = async_id
    fill_publication(cb.publish_track.publication, 710, "TR_m", remote=False)
    core.emit(cb)
    pub = await asyncio.wait_for(task, 2)
    assert [n for n, _ in rec.seen] == ["local_track_published", "local_track_subscribed"]
    await asyncio.wait_for(pub.wait_for_subscription(), 1)
    await room.disconnect()
    assert 710 in core.dropped
    await source.aclose()


async def test_publish_errors(core: FakeCore) -> None:
    room = await connected(core)
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    task = asyncio.ensure_future(room.local_participant.publish_track(track))
    await settle(lambda: core.requests[-1].WhichOneof("message") == "publish_track")
    cb = proto_ffi.FfiEvent()
    cb.publish_track.async_id = core.requests[-1].publish_track.request_async_id
    cb.publish_track.error = "not allowed"
    core.emit(cb)
    with pytest.raises(rtc.PublishTrackError, match="not allowed"):
        await asyncio.wait_for(task, 2)
    await room.disconnect()
    with pytest.raises(rtc.PublishTrackError):
        await room.local_participant.publish_track(track)
    await source.aclose()


async def test_audio_stream_routing_bound_and_end(core: FakeCore) -> None:
    room = await connected(core)
    routes = FfiClient.instance().route_count()  # the room's own (RPC)
    buffers: List["ctypes.Array[ctypes.c_int16]"] = []

    def buf(value: int) -> "ctypes.Array[ctypes.c_int16]":
        b = (ctypes.c_int16 * 480)(*([value] * 480))
        buffers.append(b)
        return b

    # A frame that the core sends while the stream's request is still returning.
    early = buf(7)
    core.on_new_stream = lambda h: core.emit(frame_event(h, 800, early))
    track_owned = proto_track.OwnedTrack()
    track_owned.handle.id = 850
    fill_track(track_owned.info, "TR_r", "mic", remote=True)
    track = rtc.RemoteAudioTrack(track_owned)
    stream = rtc.AudioStream(track, capacity=5)
    core.on_new_stream = None
    req = core.requests[-1].new_audio_stream
    assert (req.track_handle, req.sample_rate, req.num_channels, req.queue_size_frames) == (
        850, 48000, 1, 5)
    handle = stream._handle
    assert handle is not None
    first = await asyncio.wait_for(stream.__anext__(), 2)
    assert first.frame.data[0] == 7 and 800 in core.dropped

    # A cancelled read takes nothing away.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stream.__anext__(), 0.05)
    for i in range(20):
        core.emit(frame_event(handle, 900 + i, buf(i)))
    await settle(lambda: stream._dropped == 15)
    assert len(stream._frames) == 5
    assert set(range(900, 920)) <= set(core.dropped)  # every frame's handle released
    core.emit(eos_event(handle))
    got = [ev.frame.data[0] async for ev in stream]
    assert got == [15, 16, 17, 18, 19]
    assert handle in core.dropped and FfiClient.instance().route_count() == routes

    # aclose: released at once; late frames are freed, reads stop.
    stream2 = rtc.AudioStream(track)
    h2 = stream2._handle
    assert h2 is not None and FfiClient.instance().route_count() == routes + 1
    await stream2.aclose()
    assert h2 in core.dropped and FfiClient.instance().route_count() == routes
    core.emit(frame_event(h2, 990, buf(1)))
    assert await settle(lambda: 990 in core.dropped)
    with pytest.raises(StopAsyncIteration):
        await stream2.__anext__()
    track._release()
    await room.disconnect()


async def test_audio_stream_from_participant_request(core: FakeCore) -> None:
    room = await connected(core)
    rp = room.remote_participants["p0"]
    stream = rtc.AudioStream.from_participant(
        participant=rp, track_source=rtc.TrackSource.SOURCE_MICROPHONE, sample_rate=16000,
        num_channels=2, frame_size_ms=20,
    )
    req = core.requests[-1].audio_stream_from_participant
    assert req.participant_handle == REMOTE and req.sample_rate == 16000
    assert req.num_channels == 2 and req.frame_size_ms == 20
    assert req.track_source == rtc.TrackSource.SOURCE_MICROPHONE
    assert not req.HasField("queue_size_frames")
    assert stream._capacity == 500  # about ten seconds of 20 ms frames
    await stream.aclose()
    await room.disconnect()


def test_video_is_refused_clearly() -> None:
    with pytest.raises(NotImplementedError):
        rtc.LocalVideoTrack.create_video_track("cam", object())


async def test_threads_deliver_frames_in_order(core: FakeCore) -> None:
    # Frames emitted from one core thread arrive in the order they were sent.
    room = await connected(core)
    owned = proto_track.OwnedTrack()
    owned.handle.id = 851
    fill_track(owned.info, "TR_r", "mic", remote=True)
    track = rtc.RemoteAudioTrack(owned)
    stream = rtc.AudioStream(track)
    handle = stream._handle
    assert handle is not None
    buffers = [(ctypes.c_int16 * 10)(*([i] * 10)) for i in range(50)]
    events: List[Tuple[int, Any]] = [
        (i, frame_event(handle, 1000 + i, b)) for i, b in enumerate(buffers)
    ]

    def pump() -> None:
        assert core.callback is not None
        for _, ev in events:
            core.callback(ev.SerializeToString())
        core.callback(eos_event(handle).SerializeToString())

    t = threading.Thread(target=pump)
    t.start()
    t.join()
    got = [ev.frame.data[0] async for ev in stream]
    assert got == list(range(50))
    track._release()
    await room.disconnect()


async def test_unpublish_callback_ahead_of_its_event_still_emits(core: FakeCore) -> None:
    room = await connected(core)
    rec = Recorder(room, *EVENTS)
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    task = asyncio.ensure_future(room.local_participant.publish_track(track))
    await settle(lambda: core.requests[-1].WhichOneof("message") == "publish_track")
    cb = proto_ffi.FfiEvent()
    cb.publish_track.async_id = core.requests[-1].publish_track.request_async_id
    fill_publication(cb.publish_track.publication, 720, "TR_u", remote=False)
    core.emit(cb)
    pub = await asyncio.wait_for(task, 2)
    task2 = asyncio.ensure_future(room.local_participant.unpublish_track("TR_u"))
    await settle(lambda: core.requests[-1].WhichOneof("message") == "unpublish_track")
    ucb = proto_ffi.FfiEvent()
    ucb.unpublish_track.async_id = core.requests[-1].unpublish_track.request_async_id
    core.emit(ucb)
    await asyncio.wait_for(task2, 2)
    assert pub.track is None and not room.local_participant.track_publications
    assert 720 in core.dropped
    core.emit(room_ev("local_track_unpublished", publication_sid="TR_u"))
    await settle(lambda: bool(rec.of("local_track_unpublished")))
    assert rec.of("local_track_unpublished")[0] == (pub,)
    await room.disconnect()
    await source.aclose()
