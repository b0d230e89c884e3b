"""Data streams: text and bytes of any size sent to the room in chunks.

Sending: `LocalParticipant.send_text` / `send_bytes` / `send_file` send a whole
payload in one call; `stream_text` / `stream_bytes` open a writer for payloads
produced piece by piece. The core splits, numbers and reassembles the chunks.

Receiving: `Room.register_text_stream_handler(topic, handler)` (or the byte
variant) gets a reader for each incoming stream on that topic; read it with
`read_all()` or `async for chunk in reader`. A stream on a topic without a handler
is released at once. A reader holds at most `MAX_BUFFERED_BYTES` of unread data:
past that it ends with `StreamError` instead of growing without bound.

A reader takes the stream from the core only when it is first read (or right after
the handler returned): `read_all()` called first receives the whole payload in one
piece; otherwise chunks are forwarded as they arrive.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import datetime
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Dict,
    Generic,
    List,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from ._ffi_client import FfiClient, FfiRequestError
from ._proto import data_stream_pb2 as proto_data_stream
from ._proto import ffi_pb2 as proto_ffi
from .log import logger

if TYPE_CHECKING:
    from .participant import LocalParticipant

STREAM_CHUNK_SIZE = 15_000
"""Bytes per chunk on the wire (the core does the chunking; kept for compatibility)."""

MAX_BUFFERED_BYTES = 64 * 1024 * 1024
"""Unread bytes a reader keeps before it gives up on the stream with `StreamError`."""

_DISCONNECTED = "Disconnected while receiving"


class StreamError(ConnectionError):
    """A data stream failed: a send was refused, or an incoming stream ended
    abnormally (the sender went away or aborted it, it was too large, the room
    disconnected)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class _StreamClosedError(StreamError, RuntimeError):
    """A writer used after `aclose()` (a `RuntimeError` too, as in the official SDK)."""


@dataclass
class BaseStreamInfo:
    stream_id: str
    mime_type: str
    topic: str
    timestamp: int
    """Milliseconds since the epoch, when the stream was opened."""
    size: Optional[int]
    """Total length in bytes when the sender announced it, else 0."""
    attributes: Optional[Dict[str, str]]


@dataclass
class TextStreamInfo(BaseStreamInfo):
    attachments: List[str]
    """Ids of the byte streams attached to this text."""


@dataclass
class ByteStreamInfo(BaseStreamInfo):
    name: str


def _text_stream_info_from_proto(info: proto_data_stream.TextStreamInfo) -> TextStreamInfo:
    return TextStreamInfo(
        stream_id=info.stream_id,
        mime_type=info.mime_type,
        topic=info.topic,
        timestamp=info.timestamp,
        size=info.total_length if info.HasField("total_length") else 0,
        attributes=dict(info.attributes),
        attachments=list(info.attached_stream_ids),
    )


def _byte_stream_info_from_proto(info: proto_data_stream.ByteStreamInfo) -> ByteStreamInfo:
    return ByteStreamInfo(
        stream_id=info.stream_id,
        mime_type=info.mime_type,
        topic=info.topic,
        timestamp=info.timestamp,
        size=info.total_length if info.HasField("total_length") else 0,
        attributes=dict(info.attributes),
        name=info.name,
    )


# ---- readers ----------------------------------------------------------------------

_Chunk = TypeVar("_Chunk", str, bytes)

# A reader's life: "new" (we own the core's handle), then "incremental" (chunks are
# forwarded) or "read_all" (one callback with everything), then "done".
_NEW, _INCREMENTAL, _READ_ALL, _DONE = "new", "incremental", "read_all", "done"


class _StreamReader(abc.ABC, Generic[_Chunk]):
    _event_kind: str  # the FfiEvent field of this reader's chunk events

    def __init__(
        self, handle: int, on_close: Optional[Callable[[], None]]
    ) -> None:
        self._handle: Optional[int] = handle
        self._reader_handle = handle
        self._on_close = on_close
        self._mode = _NEW
        self._chunks: Deque[_Chunk] = collections.deque()
        self._buffered = 0
        self._received = 0
        self._ended = False  # no more chunks will come
        self._closed = False  # the reader was closed or read to its end
        self._error: Optional[StreamError] = None
        self._waiters: Set["asyncio.Future[None]"] = set()
        self._read_all_task: Optional["asyncio.Future[_Chunk]"] = None
        # Set by the room: the most a stream may carry (DataStreamOptions).
        self._max_payload: Optional[int] = None

    # -- what subclasses provide

    # The FfiRequest fields of this reader's requests, and the FfiEvent field of its
    # read-all callback (text_* or byte_*).
    _incremental_field: str
    _read_all_field: str
    _read_all_event: str
    _info: BaseStreamInfo

    @abc.abstractmethod
    def _join(self, chunks: List[_Chunk]) -> _Chunk:
        """The chunks as one piece."""

    @abc.abstractmethod
    def _size(self, chunk: _Chunk) -> int:
        """A chunk's size in bytes."""

    # -- the same for text and bytes, by field name

    def _chunk_or_eos(self, event: proto_ffi.FfiEvent) -> Tuple[Optional[_Chunk], Any]:
        """The chunk an event carries, or its end of stream (a `*ReaderEOS`)."""
        ev = getattr(event, self._event_kind)
        detail = ev.WhichOneof("detail")
        if detail == "chunk_received":
            return ev.chunk_received.content, None
        return None, (ev.eos if detail == "eos" else None)

    def _set_incremental(self, req: proto_ffi.FfiRequest, handle: int) -> None:
        getattr(req, self._incremental_field).reader_handle = handle

    async def _read_all_request(self, handle: int) -> _Chunk:
        req = proto_ffi.FfiRequest()
        getattr(req, self._read_all_field).reader_handle = handle
        try:
            event = await FfiClient.instance().call(req)
        except FfiRequestError as e:
            FfiClient.instance().drop_handle(handle)
            raise StreamError(f"cannot read the stream: {e}") from None
        cb = getattr(event, self._read_all_event)
        if cb.WhichOneof("result") == "error":
            raise StreamError(cb.error.description)
        content: _Chunk = cb.content
        self._check_payload_size(self._size(content))
        return content

    def _update_attributes(self, attributes: Dict[str, str]) -> None:
        if attributes:
            self._info.attributes = {**(self._info.attributes or {}), **attributes}

    # -- reading

    def __aiter__(self) -> AsyncIterator[_Chunk]:
        return self

    async def __anext__(self) -> _Chunk:
        if self._mode == _NEW:
            self._start_incremental()
        elif self._mode == _READ_ALL:
            raise StreamError("read_all() is already reading this stream")
        while True:
            if self._chunks and not self._closed:
                chunk = self._chunks.popleft()
                self._buffered -= self._size(chunk)
                return chunk
            if self._ended or self._closed:
                self._finish()
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)

    async def _read_everything(self) -> _Chunk:
        if self._mode != _NEW:
            if self._mode == _READ_ALL:
                raise StreamError("read_all() is already reading this stream")
            return self._join([chunk async for chunk in self])
        handle, self._handle = self._handle, None
        assert handle is not None
        self._mode = _READ_ALL
        task = self._read_all_task = asyncio.ensure_future(self._read_all_request(handle))
        try:
            # wait() leaves the task alone when this call is cancelled; it is
            # cancelled below, explicitly.
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            self._error = self._error or StreamError("read_all() was cancelled")
            self._finish()
            raise
        finally:
            self._read_all_task = None
        self._finish()
        if task.cancelled():
            raise self._error or StreamError("the reader was closed")
        exc = task.exception()
        if isinstance(exc, StreamError):
            self._error = exc
        return task.result()

    def _check_payload_size(self, size: int) -> None:
        if self._max_payload is not None and size > self._max_payload:
            raise StreamError(
                f"the stream exceeded the maximum payload length of {self._max_payload} bytes"
            )

    # -- closing

    def close(self) -> None:
        """Stops reading: the rest of the stream is dropped, and reading a closed
        reader ends at once (with its `StreamError` if the stream had failed)."""
        if self._mode == _NEW:
            handle, self._handle = self._handle, None
            if handle is not None:
                FfiClient.instance().drop_handle(handle)
        elif self._mode == _INCREMENTAL:
            FfiClient.instance().remove_route(self._event_kind, self._reader_handle)
        elif self._mode == _READ_ALL and self._read_all_task is not None:
            self._read_all_task.cancel()
        self._chunks.clear()
        self._buffered = 0
        self._ended = True
        self._finish()

    async def aclose(self) -> None:
        self.close()

    def _finish(self) -> None:
        """Marks the reader closed, once, and wakes whoever waits on it."""
        self._wake()
        if self._closed:
            return
        self._closed = True
        if self._mode == _INCREMENTAL and not self._ended:
            FfiClient.instance().remove_route(self._event_kind, self._reader_handle)
        self._mode = _DONE
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- driven by the core and the room

    def _start_if_idle(self) -> None:
        """Called once the handler had its turn: a reader nobody has started yet
        receives its chunks from now on (bounded here, not in the core)."""
        if self._mode == _NEW:
            self._start_incremental()

    def _start_incremental(self) -> None:
        handle, self._handle = self._handle, None
        assert handle is not None
        self._mode = _INCREMENTAL
        client = FfiClient.instance()
        # The route exists before the core can send the first chunk.
        client.add_route(
            self._event_kind, handle, asyncio.get_running_loop(), self._on_event
        )
        req = proto_ffi.FfiRequest()
        self._set_incremental(req, handle)
        try:
            client.request(req)
        except FfiRequestError as e:
            client.remove_route(self._event_kind, handle)
            client.drop_handle(handle)
            self._end(StreamError(f"cannot read the stream: {e}"))

    def _on_event(self, event: proto_ffi.FfiEvent) -> None:
        if self._ended:
            return
        chunk, eos = self._chunk_or_eos(event)
        if eos is not None:
            self._update_attributes(dict(eos.attributes))
            error = None
            if eos.HasField("error"):
                error = StreamError(eos.error.description)
            self._end(error)
            return
        if not chunk:
            return
        size = self._size(chunk)
        self._received += size
        if self._max_payload is not None and self._received > self._max_payload:
            self._overflow(
                f"the stream exceeded the maximum payload length of {self._max_payload} bytes"
            )
        elif self._buffered + size > MAX_BUFFERED_BYTES:
            self._overflow(
                f"more than {MAX_BUFFERED_BYTES} bytes of the stream were left unread"
            )
        else:
            self._chunks.append(chunk)
            self._buffered += size
            self._wake()

    def _overflow(self, description: str) -> None:
        logger.warning("data stream %s dropped: %s", self._reader_handle, description)
        self._chunks.clear()
        self._buffered = 0
        self._end(StreamError(description))

    def _end(self, error: Optional[StreamError]) -> None:
        """No more chunks will come; what was buffered can still be read."""
        if self._ended:
            return
        self._ended = True
        if error is not None and self._error is None:
            self._error = error
        if self._mode == _INCREMENTAL:
            FfiClient.instance().remove_route(self._event_kind, self._reader_handle)
        self._wake()

    def _signal_disconnect(self) -> None:
        """The room is gone: a stream still under way ends with `StreamError`
        after the chunks that had arrived."""
        if self._closed or self._ended:
            return
        if self._mode == _NEW:
            handle, self._handle = self._handle, None
            if handle is not None:
                FfiClient.instance().drop_handle(handle)
            self._mode = _INCREMENTAL  # nothing to start any more
            self._ended = True
            self._error = StreamError(_DISCONNECTED)
            return
        if self._mode == _READ_ALL:
            self._error = StreamError(_DISCONNECTED)
            if self._read_all_task is not None:
                self._read_all_task.cancel()
            return
        self._end(StreamError(_DISCONNECTED))


class TextStreamReader(_StreamReader[str]):
    """An incoming text stream: `await reader.read_all()`, or `async for chunk in
    reader`. Ends with `StreamError` if the stream does not complete."""

    _event_kind = "text_stream_reader_event"
    _incremental_field = "text_read_incremental"
    _read_all_field = "text_read_all"
    _read_all_event = "text_stream_reader_read_all"
    _info: TextStreamInfo

    def __init__(
        self,
        owned_info: proto_data_stream.OwnedTextStreamReader,
        *,
        on_close: Optional[Callable[[], None]] = None,
    ) -> None:
        super().__init__(owned_info.handle.id, on_close)
        self._info = _text_stream_info_from_proto(owned_info.info)

    @property
    def info(self) -> TextStreamInfo:
        return self._info

    async def read_all(self) -> str:
        """The whole text (what is left of it, if chunks were already read)."""
        return await self._read_everything()

    def _join(self, chunks: List[str]) -> str:
        return "".join(chunks)

    def _size(self, chunk: str) -> int:
        return len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))


class ByteStreamReader(_StreamReader[bytes]):
    """An incoming byte stream: `async for chunk in reader` (or `await
    reader.read_all()`). Ends with `StreamError` if the stream does not complete."""

    _event_kind = "byte_stream_reader_event"
    _incremental_field = "byte_read_incremental"
    _read_all_field = "byte_read_all"
    _read_all_event = "byte_stream_reader_read_all"
    _info: ByteStreamInfo

    def __init__(
        self,
        owned_info: proto_data_stream.OwnedByteStreamReader,
        capacity: int = 0,
        *,
        on_close: Optional[Callable[[], None]] = None,
    ) -> None:
        # `capacity` is accepted for compatibility; the bound is MAX_BUFFERED_BYTES.
        super().__init__(owned_info.handle.id, on_close)
        self._info = _byte_stream_info_from_proto(owned_info.info)

    @property
    def info(self) -> ByteStreamInfo:
        return self._info

    async def read_all(self) -> bytes:
        """The whole payload (what is left of it, if chunks were already read).
        Not in the official SDK."""
        return await self._read_everything()

    def _join(self, chunks: List[bytes]) -> bytes:
        return b"".join(chunks)

    def _size(self, chunk: bytes) -> int:
        return len(chunk)


TextStreamHandler = Callable[[TextStreamReader, str], None]
"""Called with each incoming text stream on a topic and its sender's identity."""
ByteStreamHandler = Callable[[ByteStreamReader, str], None]
"""Called with each incoming byte stream on a topic and its sender's identity."""


# ---- writers ----------------------------------------------------------------------


class BaseStreamWriter:
    """A stream being sent. Writes go out in call order; `aclose()` ends the stream
    (a non-empty `reason` ends it as failed at the readers)."""

    def __init__(
        self,
        local_participant: "LocalParticipant",
        topic: str = "",
        attributes: Optional[Dict[str, str]] = None,
        stream_id: Optional[str] = None,
        total_size: Optional[int] = None,
        mime_type: str = "",
        destination_identities: Optional[List[str]] = None,
        sender_identity: Optional[str] = None,
    ) -> None:
        self._local_participant = local_participant
        self._total_size = total_size
        self._sender_identity = sender_identity or local_participant.identity
        self._handle: Optional[int] = None
        self._closed = False
        self._detached = False  # the room released the writer
        self._lock = asyncio.Lock()

    async def aclose(
        self, *, reason: str = "", attributes: Optional[Dict[str, str]] = None
    ) -> None:
        """Ends the stream; `attributes` are added to the stream's at the readers."""
        async with self._lock:
            handle = self._usable_handle("close")
            self._closed = True
            self._handle = None  # the close request takes the handle
            self._local_participant._stream_writers.discard(self)
            req = proto_ffi.FfiRequest()
            self._set_close(req, handle, reason, attributes or {})
            await self._call(req)

    def _usable_handle(self, what: str) -> int:
        if self._closed:
            raise _StreamClosedError(f"cannot {what} the stream: it is already closed")
        if self._detached:
            raise StreamError(f"cannot {what} the stream: the room is disconnected")
        if self._handle is None:
            raise _StreamClosedError(f"cannot {what} the stream: it is not open")
        return self._handle

    _close_field: str  # the FfiRequest field of this writer's close

    def _set_close(
        self, req: proto_ffi.FfiRequest, handle: int, reason: str, attributes: Dict[str, str]
    ) -> None:
        close = getattr(req, self._close_field)
        close.writer_handle = handle
        if reason:
            close.reason = reason
        close.attributes.update(attributes)

    def _adopt(self, handle: int) -> None:
        self._handle = handle
        self._local_participant._stream_writers.add(self)

    def _detach(self) -> None:
        """The room is gone: release the native writer (no end of stream to send)."""
        handle, self._handle = self._handle, None
        self._detached = True
        if handle is not None:
            FfiClient.instance().drop_handle(handle)

    @staticmethod
    async def _call(
        req: proto_ffi.FfiRequest,
        on_late: Optional[Callable[[proto_ffi.FfiEvent], None]] = None,
    ) -> proto_ffi.FfiEvent:
        try:
            event = await FfiClient.instance().call(req, on_late=on_late)
        except FfiRequestError as e:
            raise StreamError(str(e)) from None
        which = event.WhichOneof("message")
        assert which is not None
        cb = getattr(event, which)
        if cb.HasField("error"):
            raise StreamError(cb.error.description)
        return event


def _drop_late_writer(event: proto_ffi.FfiEvent) -> None:
    """An opened writer whose opener gave up: release it."""
    client = FfiClient.instance()
    for field in ("text_stream_open", "byte_stream_open"):
        if event.WhichOneof("message") == field:
            cb = getattr(event, field)
            if cb.HasField("writer"):
                client.drop_handle(cb.writer.handle.id)


class TextStreamWriter(BaseStreamWriter):
    """A text stream being sent (`LocalParticipant.stream_text`)."""

    _close_field = "text_stream_close"

    def __init__(
        self,
        local_participant: "LocalParticipant",
        *,
        topic: str = "",
        attributes: Optional[Dict[str, str]] = None,
        stream_id: Optional[str] = None,
        total_size: Optional[int] = None,
        reply_to_id: Optional[str] = None,
        destination_identities: Optional[List[str]] = None,
        sender_identity: Optional[str] = None,
    ) -> None:
        super().__init__(
            local_participant,
            topic,
            attributes,
            stream_id,
            total_size,
            "text/plain",
            destination_identities,
            sender_identity,
        )
        options = proto_data_stream.StreamTextOptions(topic=topic)
        options.attributes.update(attributes or {})
        options.destination_identities.extend(destination_identities or [])
        if stream_id is not None:
            options.id = stream_id
        if reply_to_id:
            options.reply_to_stream_id = reply_to_id
        options.sender_identity = self._sender_identity
        self._options = options
        self._info = TextStreamInfo(
            stream_id=stream_id or "",
            mime_type="text/plain",
            topic=topic,
            timestamp=_now_ms(),
            size=total_size,
            attributes=dict(attributes or {}),
            attachments=[],
        )

    @property
    def info(self) -> TextStreamInfo:
        return self._info

    async def _send_header(self) -> None:
        req = proto_ffi.FfiRequest()
        req.text_stream_open.local_participant_handle = self._local_participant._stream_handle()
        req.text_stream_open.options.CopyFrom(self._options)
        event = await self._call(req, on_late=_drop_late_writer)
        writer = event.text_stream_open.writer
        self._adopt(writer.handle.id)
        self._info = _text_stream_info_from_proto(writer.info)
        if not self._info.size and self._total_size is not None:
            self._info.size = self._total_size

    async def write(self, text: str) -> None:
        """Sends `text` (split into chunks on character boundaries by the core)."""
        async with self._lock:
            handle = self._usable_handle("write to")
            req = proto_ffi.FfiRequest()
            req.text_stream_write.writer_handle = handle
            req.text_stream_write.text = text
            await self._call(req)


class ByteStreamWriter(BaseStreamWriter):
    """A byte stream being sent (`LocalParticipant.stream_bytes`)."""

    _close_field = "byte_stream_close"

    def __init__(
        self,
        local_participant: "LocalParticipant",
        *,
        name: str,
        topic: str = "",
        attributes: Optional[Dict[str, str]] = None,
        stream_id: Optional[str] = None,
        total_size: Optional[int] = None,
        mime_type: str = "application/octet-stream",
        destination_identities: Optional[List[str]] = None,
    ) -> None:
        super().__init__(
            local_participant,
            topic,
            attributes,
            stream_id,
            total_size,
            mime_type,
            destination_identities,
        )
        options = proto_data_stream.StreamByteOptions(topic=topic, name=name, mime_type=mime_type)
        options.attributes.update(attributes or {})
        options.destination_identities.extend(destination_identities or [])
        if stream_id is not None:
            options.id = stream_id
        if total_size is not None:
            options.total_length = total_size
        options.sender_identity = self._sender_identity
        self._options = options
        self._info = ByteStreamInfo(
            stream_id=stream_id or "",
            mime_type=mime_type,
            topic=topic,
            timestamp=_now_ms(),
            size=total_size,
            attributes=dict(attributes or {}),
            name=name,
        )

    @property
    def info(self) -> ByteStreamInfo:
        return self._info

    async def _send_header(self) -> None:
        req = proto_ffi.FfiRequest()
        req.byte_stream_open.local_participant_handle = self._local_participant._stream_handle()
        req.byte_stream_open.options.CopyFrom(self._options)
        event = await self._call(req, on_late=_drop_late_writer)
        writer = event.byte_stream_open.writer
        self._adopt(writer.handle.id)
        self._info = _byte_stream_info_from_proto(writer.info)

    async def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Sends `data` (split into chunks by the core)."""
        async with self._lock:
            handle = self._usable_handle("write to")
            req = proto_ffi.FfiRequest()
            req.byte_stream_write.writer_handle = handle
            req.byte_stream_write.bytes = bytes(data)
            await self._call(req)


def _now_ms() -> int:
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)
