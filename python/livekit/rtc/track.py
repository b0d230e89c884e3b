"""Tracks: local audio tracks fed by an `AudioSource`, and the remote tracks the room
hands out when it subscribes.

A track wraps the `TrackInfo` the core reported and a native handle. A local track
belongs to the application: its handle is released when the object is collected. A
remote track belongs to the room: its handle is released when the room unsubscribes
from it, when its participant leaves or when the room closes; the object stays
readable afterwards. Video is not supported yet: the video classes exist so that
`isinstance` checks and annotations written for the official SDK keep working, but
none can be created.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, List, Optional, Union

from ._ffi_client import FfiClient
from ._proto import ffi_pb2 as proto_ffi
from ._proto import track_pb2 as proto_track

if TYPE_CHECKING:
    from .audio_source import AudioSource
    from .room import Room


def _drop(handle: int) -> None:
    FfiClient.instance().drop_handle(handle)


class Track:
    """What every track has: sid, name, kind, stream state and mute state."""

    def __init__(self, owned_info: proto_track.OwnedTrack) -> None:
        self._info = proto_track.TrackInfo()
        self._info.CopyFrom(owned_info.info)
        self._handle: Optional[int] = owned_info.handle.id
        self._finalizer = weakref.finalize(self, _drop, owned_info.handle.id)
        # The room the track is published in or received from (for frame processors).
        self._room_ref: Optional["weakref.ref[Room]"] = None

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
    def stream_state(self) -> proto_track.StreamState.ValueType:
        return self._info.stream_state

    @property
    def muted(self) -> bool:
        return self._info.muted

    async def get_stats(self) -> List[Any]:
        """Not supported yet: this SDK collects no WebRTC statistics."""
        raise NotImplementedError("track statistics are not supported by this SDK yet")

    def _require_handle(self) -> int:
        if self._handle is None:
            raise RuntimeError(f"{self!r} was released")
        return self._handle

    def _release(self) -> None:
        """Drops the native handle now (idempotent)."""
        self._handle = None
        self._finalizer()

    def _set_room(self, room: Optional["Room"]) -> None:
        self._room_ref = weakref.ref(room) if room is not None else None

    def _room(self) -> Optional["Room"]:
        return self._room_ref() if self._room_ref is not None else None

    def __repr__(self) -> str:
        return f"rtc.{type(self).__name__}(sid={self.sid}, name={self.name})"


def _set_local_mute(track: Track, mute: bool) -> None:
    req = proto_ffi.FfiRequest()
    req.local_track_mute.track_handle = track._require_handle()
    req.local_track_mute.mute = mute
    resp = FfiClient.instance().request(req)
    track._info.muted = resp.local_track_mute.muted


class LocalAudioTrack(Track):
    """An audio track this client publishes, fed by an `AudioSource`."""

    def __init__(self, info: proto_track.OwnedTrack) -> None:
        super().__init__(info)

    @staticmethod
    def create_audio_track(name: str, source: "AudioSource") -> "LocalAudioTrack":
        """A new track named `name` that carries what `source` plays out; publish it
        with `LocalParticipant.publish_track`. One source may feed several tracks."""
        handle = getattr(source, "_handle", None)
        if handle is None:
            raise ValueError("the audio source is closed (or is not an rtc.AudioSource)")
        req = proto_ffi.FfiRequest()
        req.create_audio_track.name = name
        req.create_audio_track.source_handle = handle
        resp = FfiClient.instance().request(req)
        return LocalAudioTrack(resp.create_audio_track.track)

    def mute(self) -> None:
        """Stops sending audio; the room sees `track_muted` until `unmute()`."""
        _set_local_mute(self, True)

    def unmute(self) -> None:
        _set_local_mute(self, False)


class LocalVideoTrack(Track):
    """Not supported yet: exists for type checks; `create_video_track` raises."""

    def __init__(self, info: proto_track.OwnedTrack) -> None:
        super().__init__(info)

    @staticmethod
    def create_video_track(name: str, source: Any) -> "LocalVideoTrack":
        raise NotImplementedError("video tracks are not supported by this SDK yet")

    def mute(self) -> None:
        _set_local_mute(self, True)

    def unmute(self) -> None:
        _set_local_mute(self, False)


class RemoteAudioTrack(Track):
    """Audio another participant publishes, as this client receives it; read it with
    `AudioStream`."""

    def __init__(self, info: proto_track.OwnedTrack) -> None:
        super().__init__(info)


class RemoteVideoTrack(Track):
    """A remote video track; the core does not subscribe to video yet, so the room
    never hands one out."""

    def __init__(self, info: proto_track.OwnedTrack) -> None:
        super().__init__(info)


LocalTrack = Union[LocalVideoTrack, LocalAudioTrack]
RemoteTrack = Union[RemoteVideoTrack, RemoteAudioTrack]
AudioTrack = Union[LocalAudioTrack, RemoteAudioTrack]
VideoTrack = Union[LocalVideoTrack, RemoteVideoTrack]

