"""The bridge to the native core: requests out, events routed back in O(1).

The core calls `FfiClient._on_event` on one of its own threads (GIL held) for every
`FfiEvent`. Nothing there touches asyncio objects directly and nothing calls back into
the core (a drop from inside its callback could re-enter it); each event is handed to
exactly one event loop with `call_soon_threadsafe`:

* a callback carrying an `async_id` goes to the waiter registered for that id;
* a room event goes to the room registered for its `room_handle`;
* an event keyed by another handle (an RPC invocation for a local participant, the
  chunks of a stream reader, the frames of an audio stream) goes to the route
  registered for that handle. Audio stream events that arrive before their route
  (the core may emit them while the request that created the stream returns) are
  held, boundedly, and handed over when the route is added.

Every event is delivered to one consumer, never broadcast to all rooms. An event that
nobody can take any more (its room was closed, its waiter gave up, its loop is closed)
still owns native handles; those are dropped by a short-lived janitor thread.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import functools
import importlib
import itertools
import logging
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

from ._proto import ffi_pb2 as proto_ffi
from .log import logger
from .version import __version__



class ReceivedFrame(NamedTuple):
    """An audio stream's received frame as the native module hands it over: its own
    samples, no handle (see `FfiClient._on_audio_frame`)."""

    data: bytearray
    sample_rate: int
    num_channels: int
    samples_per_channel: int


# What a route, a waiter or a room is handed: an event, or a frame out of one.
Delivered = Union[proto_ffi.FfiEvent, ReceivedFrame]
EventHandler = Callable[[Any], None]

# Room events seen before their room is routed (the connect callback and the room's
# first events race on different core threads). Bounded: a stray handle cannot grow it.
_MAX_EARLY_EVENTS = 4096
# Closed room handles remembered so their late events are dropped at once, not held.
_MAX_CLOSED_ROOMS = 4096

# Events that belong to a native object rather than to a request: the field of the
# event's message that names the object's handle.
_KEYED_EVENTS = {
    "rpc_method_invocation": "local_participant_handle",
    "text_stream_reader_event": "reader_handle",
    "byte_stream_reader_event": "reader_handle",
    "audio_stream_event": "stream_handle",
}

# Keyed events held while their route is not registered yet (see the module doc).
_HELD_KINDS = frozenset({"audio_stream_event"})

_LOG_LEVELS = {
    proto_ffi.LOG_ERROR: logging.ERROR,
    proto_ffi.LOG_WARN: logging.WARNING,
    proto_ffi.LOG_INFO: logging.INFO,
    proto_ffi.LOG_DEBUG: logging.DEBUG,
    proto_ffi.LOG_TRACE: 5,
}


class FfiRequestError(Exception):
    """The core refused a request (unknown handle, malformed or unsupported request)."""


class _Waiter:
    """Who gets the callback of one async request, and where its room events go."""

    __slots__ = ("loop", "handler", "room_sink")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: EventHandler,
        room_sink: Optional[EventHandler],
    ) -> None:
        self.loop = loop
        self.handler = handler
        self.room_sink = room_sink


def owned_handles(event: proto_ffi.FfiEvent) -> List[int]:
    """The native handles an event hands over to its receiver."""
    which = event.WhichOneof("message")
    if which == "text_stream_open" and event.text_stream_open.HasField("writer"):
        return [event.text_stream_open.writer.handle.id]
    if which == "byte_stream_open" and event.byte_stream_open.HasField("writer"):
        return [event.byte_stream_open.writer.handle.id]
    if which == "connect":
        if event.connect.WhichOneof("message") != "result":
            return []
        result = event.connect.result
        ids = [result.room.handle.id, result.local_participant.handle.id]
        ids.extend(p.participant.handle.id for p in result.participants)
        ids.extend(pub.handle.id for p in result.participants for pub in p.publications)
        return ids
    if which == "room_event":
        return room_event_handles(event.room_event)
    if which == "publish_track" and event.publish_track.HasField("publication"):
        return [event.publish_track.publication.handle.id]
    if which == "audio_stream_event" and event.audio_stream_event.HasField("frame_received"):
        return [event.audio_stream_event.frame_received.frame.handle.id]
    return []


def room_event_handles(event: Any) -> List[int]:
    """The native handles a `RoomEvent` hands over."""
    which = event.WhichOneof("message")
    if which == "participant_connected":
        return [event.participant_connected.info.handle.id]
    if which == "data_packet_received":
        packet = event.data_packet_received
        if packet.WhichOneof("value") == "user":
            return [packet.user.data.handle.id]
    if which == "text_stream_opened":
        return [event.text_stream_opened.reader.handle.id]
    if which == "byte_stream_opened":
        return [event.byte_stream_opened.reader.handle.id]
    if which == "track_published":
        return [event.track_published.publication.handle.id]
    if which == "track_subscribed":
        return [event.track_subscribed.track.handle.id]
    return []


def _resolve(
    fut: "asyncio.Future[proto_ffi.FfiEvent]",
    on_late: Optional[EventHandler],
    on_result: Optional[EventHandler],
    event: proto_ffi.FfiEvent,
) -> None:
    if not fut.done():
        if on_result is not None:
            try:
                on_result(event)
            except BaseException as e:
                fut.set_exception(e)
                return
        fut.set_result(event)
    elif on_late is not None:
        # The caller stopped waiting; whatever the event owns is theirs to release.
        on_late(event)


class FfiClient:
    """Process-wide connection to the native module; see the module doc."""

    _instance: Optional["FfiClient"] = None
    _instance_lock = threading.Lock()

    @classmethod
    def instance(cls) -> "FfiClient":
        inst = cls._instance
        if inst is None:
            with cls._instance_lock:
                inst = cls._instance
                if inst is None:
                    native = importlib.import_module(f"{__package__}._native")
                    inst = cls._instance = FfiClient(native)
        return inst

    def __init__(self, native: Any, *, register_atexit: bool = True) -> None:
        self._native = native
        self._pid = os.getpid()
        self._disposed = False
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiters: Dict[int, _Waiter] = {}
        self._rooms: Dict[int, Tuple[asyncio.AbstractEventLoop, EventHandler]] = {}
        self._routes: Dict[Tuple[str, int], Tuple[asyncio.AbstractEventLoop, EventHandler]] = {}
        self._early: Dict[int, List[proto_ffi.FfiEvent]] = {}
        self._early_count = 0
        self._closed_rooms: Dict[int, None] = {}
        self._held: Dict[Tuple[str, int], List[Delivered]] = {}
        self._held_count = 0
        self._ended_routes: Dict[Tuple[str, int], None] = {}
        self._doomed: List[int] = []
        self._janitor: Optional[threading.Thread] = None
        native.initialize(
            self._on_event, True, "python", __version__, frame_callback=self._on_audio_frame
        )
        if register_atexit:
            atexit.register(self.dispose)

    # ---- requests -------------------------------------------------------------------

    def request(self, req: proto_ffi.FfiRequest) -> proto_ffi.FfiResponse:
        """Sends one request and returns the core's immediate response."""
        if self._pid != os.getpid():
            raise RuntimeError("livekit.rtc cannot be used in a child process after fork()")
        if self._disposed:
            raise FfiRequestError("the native core has been disposed")
        try:
            raw = self._native.request(req.SerializeToString())
        except self._native.FfiError as e:
            raise FfiRequestError(str(e)) from None
        return proto_ffi.FfiResponse.FromString(raw)

    def next_async_id(self) -> int:
        return next(self._ids)

    async def call(
        self,
        req: proto_ffi.FfiRequest,
        *,
        room_sink: Optional[EventHandler] = None,
        on_late: Optional[EventHandler] = None,
        on_result: Optional[EventHandler] = None,
    ) -> proto_ffi.FfiEvent:
        """Sends an async request and waits for its callback.

        The async_id is chosen here and registered before the request goes out, so the
        callback cannot arrive unclaimed. With `room_sink`, a successful connect
        callback routes its room's events to `room_sink` (registered on the core's
        thread, before any of that room's events can be handed out). If the caller is
        cancelled, the core is told to abandon the work; a callback that had already
        reached this loop is passed to `on_late`, and one still in the core is dropped
        as an orphan (its handles released). `on_result` runs on the loop the moment
        the callback arrives, before any event the core sent after it is handled
        (the caller itself resumes later): the place to record what later events
        refer to, such as a new publication.
        """
        loop = asyncio.get_running_loop()
        which = req.WhichOneof("message")
        assert which is not None
        async_id = self.next_async_id()
        getattr(req, which).request_async_id = async_id
        fut: asyncio.Future[proto_ffi.FfiEvent] = loop.create_future()
        with self._lock:
            self._waiters[async_id] = _Waiter(
                loop, functools.partial(_resolve, fut, on_late, on_result), room_sink
            )
        try:
            self.request(req)
        except BaseException:
            self._forget(async_id)
            raise
        try:
            return await fut
        except asyncio.CancelledError:
            self._forget(async_id)
            self._cancel_quietly(async_id)
            if fut.done() and not fut.cancelled() and on_late is not None:
                on_late(fut.result())
            raise

    def _forget(self, async_id: int) -> None:
        with self._lock:
            self._waiters.pop(async_id, None)

    def _cancel_quietly(self, async_id: int) -> None:
        req = proto_ffi.FfiRequest()
        req.cancel.async_id = async_id
        try:
            self.request(req)
        except Exception as e:
            logger.debug("cancel of request %d failed: %s", async_id, e)

    # ---- handles and rooms ----------------------------------------------------------

    def drop_handle(self, handle: int) -> None:
        """Releases a handle now; call from an event loop thread, never the core's."""
        if handle and not self._disposed and self._pid == os.getpid():
            self._native.drop_handle(handle)

    def close_room(self, room_handle: int) -> None:
        """Stops routing a room's events; late ones only get their handles dropped."""
        with self._lock:
            self._rooms.pop(room_handle, None)
            self._remember_closed(room_handle)
            early = self._take_early(room_handle)
        for event in early:
            self._orphan(event)

    def _remember_closed(self, room_handle: int) -> None:
        self._closed_rooms[room_handle] = None
        while len(self._closed_rooms) > _MAX_CLOSED_ROOMS:
            del self._closed_rooms[next(iter(self._closed_rooms))]

    def _take_early(self, room_handle: int) -> List[proto_ffi.FfiEvent]:
        early = self._early.pop(room_handle, [])
        self._early_count -= len(early)
        return early

    def add_route(
        self, kind: str, handle: int, loop: asyncio.AbstractEventLoop, handler: EventHandler
    ) -> None:
        """Routes the `kind` events (see `_KEYED_EVENTS`) of one native object to
        `handler`, called on `loop`. Register before the core can emit them (audio
        stream events held until now are handed over first, in order)."""
        assert kind in _KEYED_EVENTS, kind
        key = (kind, handle)
        with self._lock:
            self._routes[key] = (loop, handler)
            self._ended_routes.pop(key, None)
            held = self._held.pop(key, [])
            self._held_count -= len(held)
            for event in held:
                _post(loop, handler, event)

    def remove_route(self, kind: str, handle: int) -> None:
        """Stops a route; its later events are dropped (their handles released)."""
        key = (kind, handle)
        with self._lock:
            self._routes.pop(key, None)
            if kind in _HELD_KINDS:
                self._ended_routes[key] = None
                while len(self._ended_routes) > _MAX_CLOSED_ROOMS:
                    del self._ended_routes[next(iter(self._ended_routes))]
            held = self._held.pop(key, [])
            self._held_count -= len(held)
        for event in held:
            self._orphan(event)

    def route_count(self) -> int:
        """Keyed routes currently registered (for tests)."""
        with self._lock:
            return len(self._routes)

    def room_count(self) -> int:
        """Rooms currently routed (for tests)."""
        with self._lock:
            return len(self._rooms)

    def waiter_count(self) -> int:
        """Requests currently awaiting their callback (for tests)."""
        with self._lock:
            return len(self._waiters)

    def dispose(self) -> None:
        """Tears the core down (at exit); later drops and requests become no-ops."""
        if self._disposed or self._pid != os.getpid():
            return
        self._disposed = True
        try:
            self._native.dispose()
        except Exception:
            logger.exception("disposing the native core failed")

    # ---- the core's thread ----------------------------------------------------------

    def _on_event(self, data: bytes) -> None:
        try:
            event = proto_ffi.FfiEvent.FromString(data)
            which = event.WhichOneof("message")
            if which == "room_event":
                self._on_room_event(event)
            elif which == "logs":
                _forward_logs(event.logs)
            elif which == "panic":
                logger.error("the livekit core panicked: %s", event.panic.message)
            elif which in _KEYED_EVENTS:
                message = getattr(event, which)
                self._on_keyed_event(which, getattr(message, _KEYED_EVENTS[which]), event)
            elif which is not None:
                self._on_callback(getattr(event, which).async_id, event)
        except Exception:
            # Never let an exception unwind into the core's thread.
            logger.exception("failed to handle an event from the livekit core")

    def _on_audio_frame(
        self,
        stream_handle: int,
        data: bytearray,
        sample_rate: int,
        num_channels: int,
        samples_per_channel: int,
    ) -> None:
        # The hot path of received audio (100 calls a second per stream): the native
        # module has already taken the samples out of their event and handle.
        try:
            frame = ReceivedFrame(data, sample_rate, num_channels, samples_per_channel)
            self._on_keyed_event("audio_stream_event", stream_handle, frame)
        except Exception:
            logger.exception("failed to handle an audio frame from the livekit core")

    def _on_callback(self, async_id: int, event: proto_ffi.FfiEvent) -> None:
        with self._lock:
            waiter = self._waiters.pop(async_id, None)
            if waiter is None:
                early: List[proto_ffi.FfiEvent] = []
                if event.WhichOneof("message") == "connect" and event.connect.HasField("result"):
                    room_handle = event.connect.result.room.handle.id
                    self._remember_closed(room_handle)
                    early = self._take_early(room_handle)
                orphans = [event, *early]
            else:
                orphans = self._deliver_callback(waiter, event)
        for orphan in orphans:
            self._orphan(orphan)

    def _deliver_callback(
        self, waiter: _Waiter, event: proto_ffi.FfiEvent
    ) -> List[proto_ffi.FfiEvent]:
        # Under the lock: the route, the callback and the room's early events are queued
        # in this order before any other thread can queue a later event of the room.
        room_handle = 0
        if (
            waiter.room_sink is not None
            and event.WhichOneof("message") == "connect"
            and event.connect.HasField("result")
        ):
            room_handle = event.connect.result.room.handle.id
        if not _post(waiter.loop, waiter.handler, event):
            if room_handle:
                self._remember_closed(room_handle)
                return [event, *self._take_early(room_handle)]
            return [event]
        if room_handle and waiter.room_sink is not None:
            self._rooms[room_handle] = (waiter.loop, waiter.room_sink)
            for early in self._take_early(room_handle):
                _post(waiter.loop, waiter.room_sink, early)
        return []

    def _on_keyed_event(self, kind: str, handle: int, event: Delivered) -> None:
        key = (kind, handle)
        with self._lock:
            route = self._routes.get(key)
            if route is not None:
                if _post(route[0], route[1], event):
                    return
                del self._routes[key]  # its loop is closed
            elif (
                kind in _HELD_KINDS
                and key not in self._ended_routes
                and self._held_count < _MAX_EARLY_EVENTS
            ):
                self._held.setdefault(key, []).append(event)
                self._held_count += 1
                return
        logger.debug("dropped a %s event for handle %d: nobody takes it", kind, handle)
        self._orphan(event)

    def _on_room_event(self, event: proto_ffi.FfiEvent) -> None:
        room_handle = event.room_event.room_handle
        is_eos = event.room_event.WhichOneof("message") == "eos"
        with self._lock:
            route = self._rooms.get(room_handle)
            if route is not None:
                if _post(route[0], route[1], event):
                    return
                # The room's loop is gone: nobody can use that room any more.
                del self._rooms[room_handle]
                self._remember_closed(room_handle)
                orphan_room = True
            elif room_handle in self._closed_rooms:
                if is_eos:
                    del self._closed_rooms[room_handle]
                orphan_room = False
            elif self._early_count < _MAX_EARLY_EVENTS:
                self._early.setdefault(room_handle, []).append(event)
                self._early_count += 1
                return
            else:
                orphan_room = False
        self._orphan(event)
        if orphan_room:
            self._drop_later([room_handle])

    def _orphan(self, event: Delivered) -> None:
        if isinstance(event, ReceivedFrame):
            return  # owns no handle
        handles = owned_handles(event)
        if handles:
            self._drop_later(handles)

    def _drop_later(self, handles: List[int]) -> None:
        with self._lock:
            self._doomed.extend(handles)
            if self._janitor is not None:
                return  # the running janitor takes these too
            janitor = self._janitor = threading.Thread(
                target=self._run_janitor, name="livekit-rtc-janitor", daemon=True
            )
        janitor.start()

    def _run_janitor(self) -> None:
        # Exits as soon as there is nothing left to drop: no thread lingers.
        while True:
            with self._lock:
                handles, self._doomed = self._doomed, []
                if not handles:
                    self._janitor = None
                    return
            for handle in handles:
                try:
                    self.drop_handle(handle)
                except Exception:
                    logger.exception("failed to drop native handle %d", handle)


class _LoopInbox:
    """Events waiting to be handled on one loop. The core's thread appends; one
    scheduled drain hands them all over in order: a burst (the two frames of an
    audio packet, frames of several tracks) costs the loop one wake-up, not one each."""

    __slots__ = ("loop", "items", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: List[Tuple[EventHandler, Delivered]] = []
        self.scheduled = False

    def drain(self) -> None:
        with _inbox_lock:
            items, self.items = self.items, []
            self.scheduled = False
        for fn, event in items:
            try:
                fn(event)
            except Exception:
                logger.exception("an event handler failed")


_inbox_lock = threading.Lock()
_inboxes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopInbox]" = (
    weakref.WeakKeyDictionary()
)


def _post(loop: asyncio.AbstractEventLoop, fn: EventHandler, event: Delivered) -> bool:
    """Queues `fn(event)` on `loop`; `False` when the loop is closed."""
    with _inbox_lock:
        inbox = _inboxes.get(loop)
        if inbox is None:
            inbox = _inboxes[loop] = _LoopInbox(loop)
        if inbox.scheduled:
            inbox.items.append((fn, event))
            return True
        try:
            loop.call_soon_threadsafe(inbox.drain)
        except RuntimeError:  # the loop is closed
            del _inboxes[loop]
            return False
        inbox.items.append((fn, event))
        inbox.scheduled = True
        return True


def _forward_logs(batch: proto_ffi.LogBatch) -> None:
    for record in batch.records:
        level = _LOG_LEVELS.get(record.level, logging.DEBUG)
        if not logger.isEnabledFor(level):
            continue
        log_record = logger.makeRecord(
            logger.name,
            level,
            record.file or record.target,
            record.line,
            "%s: %s",
            (record.target, record.message),
            None,
            func=record.module_path or None,
        )
        logger.handle(log_record)


def read_buffer(data_ptr: int, data_len: int) -> bytes:
    """Copies `data_len` bytes the core lent us at `data_ptr`."""
    if data_len == 0:
        return b""
    return ctypes.string_at(data_ptr, data_len)


def address_of(data: bytes) -> int:
    """The address of a bytes object's contents (valid while `data` is alive)."""
    ptr = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    return int(ptr or 0)
