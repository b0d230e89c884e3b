"""Participants of a room: the local one (who can act) and the remote ones (observed).

A participant wraps the `ParticipantInfo` the core reported and the native handle that
keeps it alive in the core, and holds its track publications by sid. The room updates
both from its events and releases the handles (the participant's, its publications'
and its remote tracks') when the participant leaves or the room closes; participant
objects stay readable afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import enum
import functools
import inspect
import mimetypes
import os
from typing import (
    Awaitable,
    Callable,
    Deque,
    Dict,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from ._ffi_client import FfiClient, FfiRequestError, address_of
from ._proto import data_stream_pb2 as proto_data_stream
from ._proto import ffi_pb2 as proto_ffi
from ._proto import participant_pb2 as proto_participant
from ._proto import room_pb2 as proto_room
from ._proto import rpc_pb2 as proto_rpc
from ._proto.room_pb2 import TrackPublishOptions
from ._proto.track_pb2 import ParticipantTrackPermission
from .data_stream import (
    BaseStreamWriter,
    ByteStreamInfo,
    ByteStreamWriter,
    StreamError,
    TextStreamInfo,
    TextStreamWriter,
    _byte_stream_info_from_proto,
    _text_stream_info_from_proto,
)
from .log import logger
from .rpc import (
    RpcCallInfo,
    RpcError,
    RpcInterceptor,
    RpcInvocationData,
    _chain_incoming,
    _chain_outgoing,
)
from .track import LocalTrack
from .track_publication import LocalTrackPublication, RemoteTrackPublication, TrackPublication
from .transcription import Transcription


class PublishDataError(Exception):
    """`LocalParticipant.publish_data` failed (too large, not connected, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PublishDTMFError(Exception):
    """`LocalParticipant.publish_dtmf` failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PublishTranscriptionError(Exception):
    """`LocalParticipant.publish_transcription` failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PublishTrackError(Exception):
    """`LocalParticipant.publish_track` failed (refused by the server, not connected,
    ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnpublishTrackError(Exception):
    """`LocalParticipant.unpublish_track` failed (unknown sid, not connected, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParticipantUpdateError(Exception):
    """`set_metadata`, `set_name` or `set_attributes` was refused or failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Bytes of data handed to the core and not yet taken by its data channel. Calls past
# it wait here, in call order, so a burst of publishes never piles up in the core.
_SEND_WINDOW_BYTES = 1024 * 1024


class _SendWindow:
    """A byte budget granted strictly first come, first served."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._waiters: Deque[Tuple[int, "asyncio.Future[None]"]] = collections.deque()

    async def acquire(self, size: int) -> int:
        """Waits for `size` bytes (capped at the whole window); returns what to release."""
        size = max(1, min(size, self._limit))
        if not self._waiters and self._used + size <= self._limit:
            self._used += size
            return size
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(size)  # granted just as the caller gave up
            else:
                fut.cancel()
                self._grant()
            raise
        return size

    def release(self, size: int) -> None:
        self._used -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            size, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self._used + size > self._limit:
                return
            self._waiters.popleft()
            self._used += size
            fut.set_result(None)


class ConnectionQuality(enum.IntEnum):
    """A participant's connection quality as the server rates it."""

    QUALITY_UNKNOWN = -1
    """Nothing reported yet."""
    QUALITY_POOR = proto_room.QUALITY_POOR
    QUALITY_GOOD = proto_room.QUALITY_GOOD
    QUALITY_EXCELLENT = proto_room.QUALITY_EXCELLENT
    QUALITY_LOST = proto_room.QUALITY_LOST


class DegradationPreference(enum.IntEnum):
    """What a video encoder gives up first when bandwidth runs short (carried in
    `TrackPublishOptions.degradation_preference`; video is not supported yet)."""

    BALANCED = proto_room.DEGRADATION_PREFERENCE_BALANCED
    MAINTAIN_FRAMERATE = proto_room.DEGRADATION_PREFERENCE_MAINTAIN_FRAMERATE
    MAINTAIN_RESOLUTION = proto_room.DEGRADATION_PREFERENCE_MAINTAIN_RESOLUTION
    MAINTAIN_FRAMERATE_AND_RESOLUTION = (
        proto_room.DEGRADATION_PREFERENCE_MAINTAIN_FRAMERATE_AND_RESOLUTION
    )


def _connection_quality(value: int) -> ConnectionQuality:
    try:
        return ConnectionQuality(value)
    except ValueError:
        return ConnectionQuality.QUALITY_UNKNOWN


class Participant:
    """What every participant has: identity, names, metadata, attributes."""

    def __init__(self, owned_info: proto_participant.OwnedParticipant) -> None:
        self._info = proto_participant.ParticipantInfo()
        self._info.CopyFrom(owned_info.info)
        self._handle: Optional[int] = owned_info.handle.id
        self._connection_quality = ConnectionQuality.QUALITY_UNKNOWN

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def identity(self) -> str:
        return self._info.identity

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def metadata(self) -> str:
        return self._info.metadata

    @property
    def attributes(self) -> Dict[str, str]:
        """A copy of the participant's attributes."""
        return dict(self._info.attributes)

    @property
    def kind(self) -> proto_participant.ParticipantKind.ValueType:
        return self._info.kind

    @property
    def kind_details(self) -> List[proto_participant.ParticipantKindDetail.ValueType]:
        return list(self._info.kind_details)

    @property
    def state(self) -> proto_participant.ParticipantState.ValueType:
        return self._info.state

    @property
    def permissions(self) -> proto_participant.ParticipantPermission:
        """What the participant may do (as the server granted it)."""
        return self._info.permission

    @property
    def connection_quality(self) -> ConnectionQuality:
        """`QUALITY_UNKNOWN` until the server's first report for this participant."""
        return self._connection_quality

    @property
    def joined_at(self) -> Optional[datetime.datetime]:
        """When the participant joined (None when the server did not say)."""
        if not self._info.joined_at:
            return None
        # milliseconds on the wire, as in the official FFI protocol
        return datetime.datetime.fromtimestamp(
            self._info.joined_at / 1000, tz=datetime.timezone.utc
        )

    @property
    def disconnect_reason(self) -> Optional[proto_participant.DisconnectReason.ValueType]:
        """Why the participant left; None while it is still in the room."""
        reason = self._info.disconnect_reason
        if reason == proto_participant.UNKNOWN_REASON:
            return None
        return reason

    @property
    def track_publications(self) -> Mapping[str, TrackPublication]:
        """The participant's published tracks, by sid."""
        return {}

    def _release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            FfiClient.instance().drop_handle(handle)

    def __repr__(self) -> str:
        return (
            f"rtc.{type(self).__name__}(sid={self.sid}, identity={self.identity}, "
            f"name={self.name})"
        )


class RemoteParticipant(Participant):
    """Another participant of the room."""

    def __init__(self, owned_info: proto_participant.OwnedParticipant) -> None:
        super().__init__(owned_info)
        self._track_publications: Dict[str, RemoteTrackPublication] = {}

    @property
    def track_publications(self) -> Mapping[str, RemoteTrackPublication]:
        """The participant's published tracks, by sid (with their tracks while this
        client is subscribed)."""
        return self._track_publications

    def _release(self) -> None:
        # The publications stay listed (readable); their handles and tracks go.
        for publication in self._track_publications.values():
            publication._release()
        super()._release()


RpcHandler = Callable[[RpcInvocationData], Union[Awaitable[Optional[str]], Optional[str]]]
F = TypeVar(
    "F", bound=Callable[[RpcInvocationData], Union[Awaitable[Optional[str]], Optional[str]]]
)

# Publications unpublished ahead of their room event, kept for it (at most).
_MAX_UNPUBLISHED_KEPT = 64

# How long a cancelled incoming call's handler gets to unwind before its caller is
# answered without it (disconnect() waits for this).
_RPC_UNWIND_TIMEOUT = 2.0


class LocalParticipant(Participant):
    """This client in the room: publishes data, streams and RPCs, and updates its
    own info."""

    def __init__(self, owned_info: proto_participant.OwnedParticipant) -> None:
        super().__init__(owned_info)
        self._send_window = _SendWindow(_SEND_WINDOW_BYTES)
        self._rpc_handlers: Dict[str, RpcHandler] = {}
        self._rpc_interceptors: List[RpcInterceptor] = []
        self._rpc_tasks: Set["asyncio.Task[None]"] = set()
        self._stream_writers: Set[BaseStreamWriter] = set()
        self._track_publications: Dict[str, LocalTrackPublication] = {}
        # Unpublished by unpublish_track before the room's local_track_unpublished
        # came (kept for that event, which then still names them).
        self._unpublished: Dict[str, LocalTrackPublication] = {}
        # Set by the room: told of each publication the moment it is known.
        self._on_publication: Optional[Callable[[LocalTrackPublication], None]] = None

    @property
    def track_publications(self) -> Mapping[str, LocalTrackPublication]:
        """The tracks this client published, by sid."""
        return self._track_publications

    # ---- tracks ---------------------------------------------------------------------

    async def publish_track(
        self, track: LocalTrack, options: TrackPublishOptions = TrackPublishOptions()
    ) -> LocalTrackPublication:
        """Publishes `track` to the room; returns its publication once the server
        accepted it (the room then emits `local_track_published`). Raises
        `PublishTrackError`."""
        req = proto_ffi.FfiRequest()
        pt = req.publish_track
        pt.local_participant_handle = self._require_handle(PublishTrackError)
        if track._handle is None:
            raise PublishTrackError(f"{track!r} was released")
        pt.track_handle = track._handle
        pt.options.CopyFrom(options)
        created: List[LocalTrackPublication] = []

        def on_result(event: proto_ffi.FfiEvent) -> None:
            # Runs before the room handles the events that follow the callback
            # (local_track_published, local_track_subscribed): they find it.
            cb = event.publish_track
            if cb.WhichOneof("message") != "publication":
                return
            publication = LocalTrackPublication(cb.publication)
            publication._track = track
            track._info.sid = publication.sid
            if self._handle is None:  # the room closed meanwhile
                publication._release()
                return
            self._track_publications[publication.sid] = publication
            created.append(publication)
            if self._on_publication is not None:
                self._on_publication(publication)

        def on_late(event: proto_ffi.FfiEvent) -> None:
            # The caller gave up. A publication already recorded stays (the track is
            # published and listed); one that never was is released.
            if not created:
                _release_publication(event)

        try:
            event = await FfiClient.instance().call(req, on_result=on_result, on_late=on_late)
        except FfiRequestError as e:
            raise PublishTrackError(str(e)) from None
        cb = event.publish_track
        if cb.WhichOneof("message") != "publication":
            raise PublishTrackError(cb.error or "publish_track failed")
        if not created:
            raise PublishTrackError("the room closed while the track was being published")
        return created[0]

    async def unpublish_track(self, track_sid: str) -> None:
        """Unpublishes the track `track_sid` (and stops it); the room emits
        `local_track_unpublished`. Raises `UnpublishTrackError`."""
        publication = self._track_publications.get(track_sid)
        req = proto_ffi.FfiRequest()
        ut = req.unpublish_track
        ut.local_participant_handle = self._require_handle(UnpublishTrackError)
        ut.track_sid = track_sid
        ut.stop_on_unpublish = True
        try:
            event = await FfiClient.instance().call(req)
        except FfiRequestError as e:
            raise UnpublishTrackError(str(e)) from None
        if event.unpublish_track.HasField("error") and event.unpublish_track.error:
            raise UnpublishTrackError(event.unpublish_track.error)
        # Usually done already by the room's local_track_unpublished, which comes first.
        if publication is not None and self._track_publications.get(track_sid) is publication:
            del self._track_publications[track_sid]
            self._unpublished[track_sid] = publication
            while len(self._unpublished) > _MAX_UNPUBLISHED_KEPT:
                del self._unpublished[next(iter(self._unpublished))]
        if publication is not None:
            track = publication._track
            if track is not None:
                track._set_room(None)
            publication._release()
            publication._track = None

    async def publish_data(
        self,
        payload: Union[bytes, str],
        *,
        reliable: bool = True,
        destination_identities: List[str] = [],
        topic: str = "",
    ) -> None:
        """Sends `payload` to the room (or only to `destination_identities`).

        Reliable packets arrive in order, lossy ones may be dropped; keep reliable
        payloads under about 15 KiB and lossy ones under about 1300 bytes. Calls made
        concurrently go out in the order they were made; when the core's send queue
        is full they wait here. Raises `PublishDataError` when the packet cannot be
        sent.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        granted = await self._send_window.acquire(len(data))
        try:
            await self._publish(data, reliable, destination_identities, topic)
        finally:
            self._send_window.release(granted)

    async def _publish(
        self, data: bytes, reliable: bool, destination_identities: List[str], topic: str
    ) -> None:
        req = proto_ffi.FfiRequest()
        pd = req.publish_data
        pd.local_participant_handle = self._require_handle(PublishDataError)
        # The core copies the bytes during the synchronous request; `data` outlives it.
        pd.data_ptr = address_of(data)
        pd.data_len = len(data)
        pd.reliable = reliable
        pd.topic = topic
        pd.destination_identities.extend(destination_identities)
        try:
            event = await FfiClient.instance().call(req)
        except FfiRequestError as e:
            raise PublishDataError(str(e)) from None
        if event.publish_data.HasField("error"):
            raise PublishDataError(event.publish_data.error)

    def set_track_subscription_permissions(
        self,
        *,
        allow_all_participants: bool,
        participant_permissions: Optional[List[ParticipantTrackPermission]] = None,
    ) -> None:
        """Sets who may subscribe to this participant's tracks: everyone
        (`allow_all_participants`), or the participants listed in
        `participant_permissions` (each to all its tracks or to the sids given)."""
        if self._handle is None:
            raise RuntimeError("the room is not connected")
        req = proto_ffi.FfiRequest()
        req.set_track_subscription_permissions.local_participant_handle = self._handle
        req.set_track_subscription_permissions.all_participants_allowed = allow_all_participants
        req.set_track_subscription_permissions.permissions.extend(participant_permissions or [])
        FfiClient.instance().request(req)

    async def publish_dtmf(self, *, code: int, digit: str) -> None:
        """Sends a SIP DTMF tone to the room (reliable, in call order with data)."""
        req = proto_ffi.FfiRequest()
        req.publish_sip_dtmf.local_participant_handle = self._require_handle(PublishDTMFError)
        req.publish_sip_dtmf.code = code
        req.publish_sip_dtmf.digit = digit
        try:
            event = await FfiClient.instance().call(req)
        except FfiRequestError as e:
            raise PublishDTMFError(str(e)) from None
        if event.publish_sip_dtmf.HasField("error"):
            raise PublishDTMFError(event.publish_sip_dtmf.error)

    async def publish_transcription(self, transcription: Transcription) -> None:
        """Sends transcription segments for a participant's track to the room."""
        req = proto_ffi.FfiRequest()
        pt = req.publish_transcription
        pt.local_participant_handle = self._require_handle(PublishTranscriptionError)
        pt.participant_identity = transcription.participant_identity
        pt.track_id = transcription.track_sid
        for s in transcription.segments:
            seg = pt.segments.add()
            seg.id = s.id
            seg.text = s.text
            seg.start_time = s.start_time
            seg.end_time = s.end_time
            seg.final = s.final
            seg.language = s.language
        try:
            event = await FfiClient.instance().call(req)
        except FfiRequestError as e:
            raise PublishTranscriptionError(str(e)) from None
        if event.publish_transcription.HasField("error"):
            raise PublishTranscriptionError(event.publish_transcription.error)

    # ---- RPC ------------------------------------------------------------------------

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: Optional[float] = None,
        max_round_trip_latency: Optional[float] = None,
    ) -> str:
        """Calls `method` at the participant `destination_identity` and returns its
        answer.

        `response_timeout` (default 15 s) bounds the wait for the answer once the
        call was acknowledged; `max_round_trip_latency` (default 7 s) bounds the wait
        for that acknowledgement. Payloads are limited to 15 KiB. Raises `RpcError`
        (see `RpcError.ErrorCode`, or the handler's own code).
        """
        call = RpcCallInfo(
            destination_identity=destination_identity,
            method=method,
            payload=payload,
            response_timeout=response_timeout,
            max_round_trip_latency=max_round_trip_latency,
        )
        # A snapshot: interceptors added during the call do not join it.
        perform = _chain_outgoing(list(self._rpc_interceptors), self._perform_rpc_ffi)
        return await perform(call)

    async def _perform_rpc_ffi(self, call: RpcCallInfo) -> str:
        if self._handle is None:
            raise RpcError._built_in(RpcError.ErrorCode.SEND_FAILED, "the room is not connected")
        req = proto_ffi.FfiRequest()
        pr = req.perform_rpc
        pr.local_participant_handle = self._handle
        pr.destination_identity = call.destination_identity
        pr.method = call.method
        pr.payload = call.payload
        if call.response_timeout is not None:
            pr.response_timeout_ms = max(0, int(call.response_timeout * 1000))
        if call.max_round_trip_latency is not None:
            pr.max_round_trip_latency_ms = max(0, int(call.max_round_trip_latency * 1000))
        try:
            event = await FfiClient.instance().call(req)
        except FfiRequestError as e:
            raise RpcError._built_in(RpcError.ErrorCode.SEND_FAILED, str(e)) from None
        cb = event.perform_rpc
        if cb.HasField("error"):
            raise RpcError._from_proto(cb.error)
        return cb.payload

    def add_rpc_interceptor(self, interceptor: RpcInterceptor) -> None:
        """Wraps every later call made or served by this participant with
        `interceptor` (the first added is the outermost); adding it twice does
        nothing."""
        if all(existing is not interceptor for existing in self._rpc_interceptors):
            self._rpc_interceptors.append(interceptor)

    def remove_rpc_interceptor(self, interceptor: RpcInterceptor) -> None:
        """Removes `interceptor`; calls under way keep the chain they started with."""
        self._rpc_interceptors = [i for i in self._rpc_interceptors if i is not interceptor]

    @overload
    def register_rpc_method(self, method_name: str, handler: F) -> F: ...

    @overload
    def register_rpc_method(
        self, method_name: str, handler: None = None
    ) -> Callable[[F], F]: ...

    def register_rpc_method(
        self, method_name: str, handler: Optional[F] = None
    ) -> Union[F, Callable[[F], F]]:
        """Serves calls of `method_name` with `handler`; without a handler, returns
        a decorator.

        The handler gets an `RpcInvocationData` and returns the answer (a string),
        directly or as a coroutine. It is cancelled when the caller's response
        timeout passes. An `RpcError` it raises reaches the caller as is; any other
        exception reaches it as `APPLICATION_ERROR` (1500). Registering a method
        again replaces its handler.
        """

        def register(handler_func: F) -> F:
            self._rpc_handlers[method_name] = handler_func
            if self._handle is not None:
                req = proto_ffi.FfiRequest()
                req.register_rpc_method.local_participant_handle = self._handle
                req.register_rpc_method.method = method_name
                FfiClient.instance().request(req)
            return handler_func

        if handler is not None:
            return register(handler)
        return register

    def unregister_rpc_method(self, method: str) -> None:
        """Stops serving `method`: later calls get `UNSUPPORTED_METHOD` (1400)."""
        self._rpc_handlers.pop(method, None)
        if self._handle is not None:
            req = proto_ffi.FfiRequest()
            req.unregister_rpc_method.local_participant_handle = self._handle
            req.unregister_rpc_method.method = method
            FfiClient.instance().request(req)

    def _on_rpc_invocation(self, ev: proto_rpc.RpcMethodInvocationEvent) -> None:
        """An incoming call (on the room's loop): served in a task of its own."""
        invocation = RpcInvocationData(
            request_id=ev.request_id,
            caller_identity=ev.caller_identity,
            payload=ev.payload,
            response_timeout=ev.response_timeout_ms / 1000.0,
            method=ev.method,
        )
        task = asyncio.get_running_loop().create_task(
            self._serve_rpc(ev.invocation_id, invocation)
        )
        self._rpc_tasks.add(task)
        task.add_done_callback(self._rpc_tasks.discard)

    async def _serve_rpc(self, invocation_id: int, invocation: RpcInvocationData) -> None:
        payload: Optional[str] = None
        error: Optional[RpcError] = None
        try:
            payload = await self._run_rpc_chain(invocation)
            if payload is not None and not isinstance(payload, str):
                logger.error(
                    "RPC handler for %r returned a %s, not a str; answering APPLICATION_ERROR",
                    invocation.method,
                    type(payload).__name__,
                )
                payload, error = None, RpcError._built_in(RpcError.ErrorCode.APPLICATION_ERROR)
        except RpcError as e:
            error = e
        except Exception:
            logger.exception(
                "RPC handler for %r raised; answering APPLICATION_ERROR", invocation.method
            )
            error = RpcError._built_in(RpcError.ErrorCode.APPLICATION_ERROR)
        handle = self._handle
        if handle is None:
            return  # the room is gone, and the core answered the caller
        req = proto_ffi.FfiRequest()
        res = req.rpc_method_invocation_response
        res.local_participant_handle = handle
        res.invocation_id = invocation_id
        if error is not None:
            res.error.CopyFrom(error._to_proto())
        elif payload is not None:
            res.payload = payload
        try:
            resp = FfiClient.instance().request(req)
        except FfiRequestError as e:
            logger.debug("the answer to RPC %s was not taken: %s", invocation.request_id, e)
            return
        if resp.rpc_method_invocation_response.HasField("error"):
            logger.error(
                "failed to answer RPC %s: %s",
                invocation.request_id,
                resp.rpc_method_invocation_response.error,
            )

    async def _run_rpc_chain(self, invocation: RpcInvocationData) -> Optional[str]:
        """Runs the interceptors and the handler under the caller's deadline.

        The deadline cancels the chain and answers `RESPONSE_TIMEOUT`; a cancel from
        outside (the room disconnecting) answers `RECIPIENT_DISCONNECTED`. Whatever
        the chain raises while unwinding from either is not the caller's business.
        """
        chain = _chain_incoming(list(self._rpc_interceptors), self._invoke_rpc_handler)
        task: asyncio.Future[Optional[str]] = asyncio.ensure_future(chain(invocation))
        timed_out = False

        def on_deadline() -> None:
            nonlocal timed_out
            invocation.cancel_reason = RpcError.ErrorCode.RESPONSE_TIMEOUT
            timed_out = task.cancel()  # False when the chain finished just now
            if not timed_out:
                invocation.cancel_reason = None

        timer = asyncio.get_running_loop().call_later(
            max(0.0, invocation.response_timeout), on_deadline
        )
        try:
            # wait() does not pass a cancel of this task on to the chain: it is
            # handled below, with a bounded unwind.
            await asyncio.wait([task])
        except asyncio.CancelledError:
            timer.cancel()
            if not timed_out:
                invocation.cancel_reason = RpcError.ErrorCode.RECIPIENT_DISCONNECTED
                task.cancel()
            _, pending = await asyncio.wait([task], timeout=_RPC_UNWIND_TIMEOUT)
            if pending:
                logger.warning(
                    "RPC handler for %r did not stop within %.1f s of its cancellation",
                    invocation.method,
                    _RPC_UNWIND_TIMEOUT,
                )
                task.add_done_callback(functools.partial(_unwound, invocation.method))
            else:
                _unwound(invocation.method, task)
            code = (
                RpcError.ErrorCode.RESPONSE_TIMEOUT
                if timed_out
                else RpcError.ErrorCode.RECIPIENT_DISCONNECTED
            )
            raise RpcError._built_in(code) from None
        finally:
            timer.cancel()
        if timed_out:
            _unwound(invocation.method, task)
            raise RpcError._built_in(RpcError.ErrorCode.RESPONSE_TIMEOUT)
        if task.cancelled():
            # The chain raised CancelledError of its own accord: a failure.
            logger.warning(
                "RPC handler for %r raised CancelledError; answering APPLICATION_ERROR",
                invocation.method,
            )
            raise RpcError._built_in(RpcError.ErrorCode.APPLICATION_ERROR)
        return task.result()

    async def _invoke_rpc_handler(self, invocation: RpcInvocationData) -> Optional[str]:
        handler = self._rpc_handlers.get(invocation.method)
        if handler is None:
            raise RpcError._built_in(RpcError.ErrorCode.UNSUPPORTED_METHOD)
        result = handler(invocation)
        if inspect.isawaitable(result):
            return await result
        return result

    async def _cancel_rpc_invocations(self) -> None:
        """Cancels the calls being served; each answers RECIPIENT_DISCONNECTED."""
        tasks = list(self._rpc_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- data streams ---------------------------------------------------------------

    def _stream_handle(self) -> int:
        if self._handle is None:
            raise StreamError("the room is not connected")
        return self._handle

    async def send_text(
        self,
        text: str,
        *,
        destination_identities: Optional[List[str]] = None,
        topic: str = "",
        attributes: Optional[Dict[str, str]] = None,
        reply_to_id: Optional[str] = None,
        compress: bool = True,
    ) -> TextStreamInfo:
        """Sends `text` as one text stream; returns its info once it is sent."""
        req = proto_ffi.FfiRequest()
        st = req.send_text
        st.local_participant_handle = self._stream_handle()
        st.text = text
        _text_options(st.options, topic, attributes, destination_identities)
        if reply_to_id:
            st.options.reply_to_stream_id = reply_to_id
        st.options.compress = compress
        st.options.sender_identity = self.identity
        event = await _stream_call(req)
        return _text_stream_info_from_proto(event.send_text.info)

    async def stream_text(
        self,
        *,
        destination_identities: Optional[List[str]] = None,
        topic: str = "",
        attributes: Optional[Dict[str, str]] = None,
        stream_id: Optional[str] = None,
        reply_to_id: Optional[str] = None,
        total_size: Optional[int] = None,
        sender_identity: Optional[str] = None,
    ) -> TextStreamWriter:
        """Opens a text stream to write piece by piece; end it with `aclose()`."""
        writer = TextStreamWriter(
            self,
            topic=topic,
            attributes=attributes,
            stream_id=stream_id,
            total_size=total_size,
            reply_to_id=reply_to_id,
            destination_identities=destination_identities,
            sender_identity=sender_identity,
        )
        await writer._send_header()
        return writer

    async def send_bytes(
        self,
        data: bytes,
        *,
        topic: str = "",
        name: Optional[str] = None,
        mime_type: Optional[str] = None,
        destination_identities: Optional[List[str]] = None,
        attributes: Optional[Dict[str, str]] = None,
        stream_id: Optional[str] = None,
        compress: bool = True,
    ) -> ByteStreamInfo:
        """Sends `data` as one byte stream; returns its info once it is sent."""
        req = proto_ffi.FfiRequest()
        sb = req.send_bytes
        sb.local_participant_handle = self._stream_handle()
        sb.bytes = bytes(data)
        _byte_options(sb.options, topic, attributes, destination_identities, stream_id)
        if name is not None:
            sb.options.name = name
        if mime_type is not None:
            sb.options.mime_type = mime_type
        sb.options.compress = compress
        sb.options.sender_identity = self.identity
        event = await _stream_call(req)
        return _byte_stream_info_from_proto(event.send_bytes.info)

    async def send_file(
        self,
        file_path: str,
        *,
        topic: str = "",
        destination_identities: Optional[List[str]] = None,
        attributes: Optional[Dict[str, str]] = None,
        stream_id: Optional[str] = None,
        compress: bool = True,
    ) -> ByteStreamInfo:
        """Sends the file at `file_path` as one byte stream named after it (its MIME
        type guessed from the name); returns its info once it is sent."""
        req = proto_ffi.FfiRequest()
        sf = req.send_file
        sf.local_participant_handle = self._stream_handle()
        sf.file_path = os.fspath(file_path)
        _byte_options(sf.options, topic, attributes, destination_identities, stream_id)
        sf.options.name = os.path.basename(file_path)
        sf.options.mime_type = mimetypes.guess_type(file_path)[0] or "application/octet-stream"
        sf.options.compress = compress
        sf.options.sender_identity = self.identity
        event = await _stream_call(req)
        return _byte_stream_info_from_proto(event.send_file.info)

    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: Optional[int] = None,
        mime_type: str = "application/octet-stream",
        attributes: Optional[Dict[str, str]] = None,
        stream_id: Optional[str] = None,
        destination_identities: Optional[List[str]] = None,
        topic: str = "",
    ) -> ByteStreamWriter:
        """Opens a byte stream to write piece by piece; end it with `aclose()`."""
        writer = ByteStreamWriter(
            self,
            name=name,
            topic=topic,
            attributes=attributes,
            stream_id=stream_id,
            total_size=total_size,
            mime_type=mime_type,
            destination_identities=destination_identities,
        )
        await writer._send_header()
        return writer

    async def set_metadata(self, metadata: str) -> None:
        """Replaces this participant's metadata (needs canUpdateOwnMetadata)."""
        req = proto_ffi.FfiRequest()
        req.set_local_metadata.local_participant_handle = self._require_handle(
            ParticipantUpdateError
        )
        req.set_local_metadata.metadata = metadata
        event = await self._update(req)
        if event.set_local_metadata.HasField("error"):
            raise ParticipantUpdateError(event.set_local_metadata.error)

    async def set_name(self, name: str) -> None:
        """Replaces this participant's display name (needs canUpdateOwnMetadata)."""
        req = proto_ffi.FfiRequest()
        req.set_local_name.local_participant_handle = self._require_handle(ParticipantUpdateError)
        req.set_local_name.name = name
        event = await self._update(req)
        if event.set_local_name.HasField("error"):
            raise ParticipantUpdateError(event.set_local_name.error)

    async def set_attributes(self, attributes: Dict[str, str]) -> None:
        """Sets the given attributes, keeping the others; an empty value deletes a key
        (needs canUpdateOwnMetadata)."""
        req = proto_ffi.FfiRequest()
        sa = req.set_local_attributes
        sa.local_participant_handle = self._require_handle(ParticipantUpdateError)
        for key, value in attributes.items():
            entry = sa.attributes.add()
            entry.key = key
            entry.value = value
        event = await self._update(req)
        if event.set_local_attributes.HasField("error"):
            raise ParticipantUpdateError(event.set_local_attributes.error)

    async def _update(self, req: proto_ffi.FfiRequest) -> proto_ffi.FfiEvent:
        try:
            return await FfiClient.instance().call(req)
        except FfiRequestError as e:
            raise ParticipantUpdateError(str(e)) from None

    def _release(self) -> None:
        for task in list(self._rpc_tasks):
            task.cancel()
        writers, self._stream_writers = self._stream_writers, set()
        for writer in writers:
            writer._detach()
        for publication in self._track_publications.values():
            publication._release()
            publication._track = None  # the application's track is not the room's to keep
        self._unpublished.clear()
        self._on_publication = None
        super()._release()

    def _require_handle(
        self,
        error: "type[Exception]",
    ) -> int:
        if self._handle is None:
            raise error("the room is not connected")
        return self._handle


def _release_publication(event: proto_ffi.FfiEvent) -> None:
    """A publish_track callback nobody waits for any more: free its publication."""
    if event.publish_track.HasField("publication"):
        FfiClient.instance().drop_handle(event.publish_track.publication.handle.id)


def _unwound(method: str, task: "asyncio.Future[Optional[str]]") -> None:
    """Retrieves what a cancelled handler chain raised while unwinding (nobody else
    will: its caller was answered without it)."""
    if not task.cancelled() and task.exception() is not None:
        logger.warning(
            "RPC handler for %r raised while being cancelled", method, exc_info=task.exception()
        )


def _text_options(
    options: proto_data_stream.StreamTextOptions,
    topic: str,
    attributes: Optional[Dict[str, str]],
    destination_identities: Optional[List[str]],
) -> None:
    options.topic = topic
    options.attributes.update(attributes or {})
    options.destination_identities.extend(destination_identities or [])


def _byte_options(
    options: proto_data_stream.StreamByteOptions,
    topic: str,
    attributes: Optional[Dict[str, str]],
    destination_identities: Optional[List[str]],
    stream_id: Optional[str],
) -> None:
    options.topic = topic
    options.attributes.update(attributes or {})
    options.destination_identities.extend(destination_identities or [])
    if stream_id is not None:
        options.id = stream_id


async def _stream_call(req: proto_ffi.FfiRequest) -> proto_ffi.FfiEvent:
    """Sends a one-shot stream request; its callback's error becomes StreamError."""
    try:
        event = await FfiClient.instance().call(req)
    except FfiRequestError as e:
        raise StreamError(str(e)) from None
    which = event.WhichOneof("message")
    assert which is not None
    cb = getattr(event, which)
    if cb.WhichOneof("result") == "error":
        raise StreamError(cb.error.description)
    return event
