"""Track publications: a track as published in the room, whether or not this client
holds the track itself.

A publication wraps the `TrackPublicationInfo` the core reported and a native handle
owned by the room: the room releases it when the track is unpublished, when its
participant leaves or when the room closes. The object stays readable afterwards.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import List, Optional, cast

from ._ffi_client import FfiClient
from ._proto import ffi_pb2 as proto_ffi
from ._proto import track_pb2 as proto_track
from .track import LocalTrack, RemoteTrack, Track


def _drop(handle: int) -> None:
    FfiClient.instance().drop_handle(handle)


class TrackPublication:
    """What every publication has: the track's sid, name, kind, source and media
    description, and the track itself when this client holds it."""

    def __init__(self, owned_info: proto_track.OwnedTrackPublication) -> None:
        self._info = proto_track.TrackPublicationInfo()
        self._info.CopyFrom(owned_info.info)
        self._track: Optional[Track] = None
        self._handle: Optional[int] = owned_info.handle.id
        self._finalizer = weakref.finalize(self, _drop, owned_info.handle.id)

    @property
    def track(self) -> Optional[Track]:
        return self._track

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def kind(self) -> proto_track.TrackKind.ValueType:
        return self._info.kind

    @property
    def source(self) -> proto_track.TrackSource.ValueType:
        return self._info.source

    @property
    def simulcasted(self) -> bool:
        return self._info.simulcasted

    @property
    def width(self) -> int:
        return self._info.width

    @property
    def height(self) -> int:
        return self._info.height

    @property
    def mime_type(self) -> str:
        return self._info.mime_type

    @property
    def muted(self) -> bool:
        return self._info.muted

    @property
    def encryption_type(self) -> proto_track.EncryptionType.ValueType:
        return self._info.encryption_type

    @property
    def audio_features(self) -> List[proto_track.AudioTrackFeature.ValueType]:
        return list(self._info.audio_features)

    @property
    def frame_metadata_features(self) -> List[proto_track.FrameMetadataFeature.ValueType]:
        return list(self._info.frame_metadata_features)

    def _release(self) -> None:
        """Drops the native handle now (idempotent)."""
        self._handle = None
        self._finalizer()

    def __repr__(self) -> str:
        return (
            f"rtc.{type(self).__name__}(sid={self.sid}, name={self.name}, "
            f"kind={self.kind}, source={self.source})"
        )


class LocalTrackPublication(TrackPublication):
    """A track this client published."""

    def __init__(self, owned_info: proto_track.OwnedTrackPublication) -> None:
        super().__init__(owned_info)
        self._ever_subscribed = False
        self._first_subscription: Optional[asyncio.Future[None]] = None

    @property
    def track(self) -> Optional[LocalTrack]:
        return cast(Optional[LocalTrack], self._track)

    async def wait_for_subscription(self) -> None:
        """Returns once another participant has subscribed to the track (at once if
        one already did). Raises RuntimeError if the track is unpublished, or the room
        closes, before anyone subscribed."""
        if self._ever_subscribed:
            return
        fut = self._first_subscription
        if fut is None:
            if self._handle is None:
                raise RuntimeError("the track was unpublished before anyone subscribed")
            fut = self._first_subscription = asyncio.get_running_loop().create_future()
        await asyncio.shield(fut)

    def _mark_subscribed(self) -> None:
        self._ever_subscribed = True
        fut = self._first_subscription
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _release(self) -> None:
        super()._release()
        if self._track is not None:
            self._track._set_room(None)
        fut = self._first_subscription
        if fut is not None and not fut.done():
            fut.set_exception(RuntimeError("the track was unpublished before anyone subscribed"))
            # Retrieved here so a waiter that gave up leaves no "never retrieved" warning.
            fut.exception()


class RemoteTrackPublication(TrackPublication):
    """A track another participant published; `track` is set while this client is
    subscribed to it."""

    def __init__(self, owned_info: proto_track.OwnedTrackPublication) -> None:
        super().__init__(owned_info)
        self._subscribed = False

    @property
    def track(self) -> Optional[RemoteTrack]:
        return cast(Optional[RemoteTrack], self._track)

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    def set_subscribed(self, subscribed: bool) -> None:
        """Asks the server to (un)subscribe this client to the track; the room then
        emits `track_subscribed` or `track_unsubscribed`."""
        if self._handle is None:
            raise RuntimeError(f"{self!r} is no longer published in a connected room")
        req = proto_ffi.FfiRequest()
        req.set_subscribed.subscribe = subscribed
        req.set_subscribed.publication_handle = self._handle
        FfiClient.instance().request(req)

    def set_video_quality(self, quality: "proto_track.VideoQuality.ValueType") -> None:
        """Picks a simulcast layer of a video track (`VIDEO_QUALITY_LOW` 0, `MEDIUM`
        1, `HIGH` 2). Raises ValueError for audio and non-simulcasted publications, as
        the official SDK does; video itself is not supported yet."""
        if self.kind != proto_track.KIND_VIDEO:
            raise ValueError(
                f"set_video_quality applies to video publications only (sid={self.sid})"
            )
        if not self.simulcasted:
            raise ValueError(
                f"set_video_quality needs a simulcasted publication (sid={self.sid})"
            )
        raise NotImplementedError("video tracks are not supported by this SDK yet")

    def _release(self) -> None:
        super()._release()
        self._subscribed = False
        track, self._track = self._track, None
        if track is not None:
            track._set_room(None)
            track._release()
