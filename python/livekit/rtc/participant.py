"""Participants of a room: the local one (who can act) and the remote ones (observed).

A participant wraps the `ParticipantInfo` the core reported and the native handle that
keeps it alive in the core. The room updates the info from its events and releases
the handle when the participant leaves or the room closes; participant objects stay
readable afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import enum
from typing import Deque, Dict, List, Mapping, Optional, Tuple, Union

from ._ffi_client import FfiClient, FfiRequestError, address_of
from ._proto import ffi_pb2 as proto_ffi
from ._proto import participant_pb2 as proto_participant
from ._proto import room_pb2 as proto_room
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


def _connection_quality(value: int) -> ConnectionQuality:
    try:
        return ConnectionQuality(value)
    except ValueError:
        return ConnectionQuality.QUALITY_UNKNOWN


class Participant:
    """What every participant has: identity, names, metadata, attributes."""

    def __init__(self, owned: proto_participant.OwnedParticipant) -> None:
        self._info = proto_participant.ParticipantInfo()
        self._info.CopyFrom(owned.info)
        self._handle: Optional[int] = owned.handle.id
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
    def track_publications(self) -> Mapping[str, object]:
        """Published tracks by sid (always empty: this SDK has no media yet)."""
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


class LocalParticipant(Participant):
    """This client in the room: publishes data and updates its own info."""

    def __init__(self, owned: proto_participant.OwnedParticipant) -> None:
        super().__init__(owned)
        self._send_window = _SendWindow(_SEND_WINDOW_BYTES)

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

    def _require_handle(
        self,
        error: "type[PublishDataError] | type[ParticipantUpdateError] | type[PublishDTMFError] | type[PublishTranscriptionError]",
    ) -> int:
        if self._handle is None:
            raise error("the room is not connected")
        return self._handle
