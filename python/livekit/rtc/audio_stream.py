"""`AudioStream`: the audio of a remote track (or of a participant's track of some
source) as an async iterator of `AudioFrameEvent`.

The core decodes the track, converts it to `sample_rate` and `num_channels`, and sends
each frame to the stream it belongs to (routed by the stream's handle, never
broadcast). Frames wait in a queue until read. The queue is always bounded: at most
`capacity` frames, or, with `capacity=0` (the default), about ten seconds of audio.
When a reader falls that far behind, the oldest frames are dropped to make room for
new ones (and the drops are counted and logged), so a stream nobody reads costs a
fixed amount of memory instead of growing without end.

A stream ends (the iterator stops) when its track ends or is unsubscribed, when the
room closes, or at `aclose()`, which also releases the native stream at once.
Cancelling a read loses no frame.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Deque, Dict, Optional, Union

from ._ffi_client import Delivered, FfiClient, ReceivedFrame
from ._proto import audio_frame_pb2 as proto_audio
from ._proto import ffi_pb2 as proto_ffi
from ._proto.track_pb2 import TrackSource
from .audio_frame import AudioFrame
from .frame_processor import FrameProcessor
from .log import logger
from .track import Track

if TYPE_CHECKING:
    from .participant import Participant

_EVENT_KIND = "audio_stream_event"
# With capacity=0: how much audio (in ms) may wait for the reader.
_DEFAULT_QUEUE_MS = 10_000
# Frames the core delivers when no frame size is asked for.
_CORE_FRAME_MS = 10


@dataclass
class AudioFrameEvent:
    """One received frame."""

    frame: AudioFrame


@dataclass
class NoiseCancellationOptions:
    """An audio filter module the core runs on the stream (its id and options)."""

    module_id: str
    options: Dict[str, Any]


def _close_native(handle: int) -> None:
    client = FfiClient.instance()
    client.remove_route(_EVENT_KIND, handle)
    client.drop_handle(handle)


def _deliver(ref: "weakref.ref[AudioStream]", event: Delivered) -> None:
    stream = ref()
    if isinstance(event, ReceivedFrame):
        if stream is not None:
            stream._on_frame(event)
    elif stream is not None:
        stream._on_event(event.audio_stream_event)
    elif event.audio_stream_event.HasField("frame_received"):
        # The stream was collected before its finalizer ran: free the frame.
        FfiClient.instance().drop_handle(event.audio_stream_event.frame_received.frame.handle.id)


def _current_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop_policy().get_event_loop()


class AudioStream:
    """Receives the audio of `track` (see the module doc); iterate with `async for`."""

    def __init__(
        self,
        track: Track,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        capacity: int = 0,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: Optional[int] = None,
        noise_cancellation: Optional[
            Union[NoiseCancellationOptions, FrameProcessor[AudioFrame]]
        ] = None,
        auto_close_noise_cancellation: bool = True,
        **kwargs: Any,
    ) -> None:
        """`capacity`: the most frames kept for the reader (0: about ten seconds of
        audio); older ones are dropped first. `frame_size_ms`: the length of each
        frame (None: as the core decodes them, 10 ms). `noise_cancellation`: a filter
        module for the core, or a `FrameProcessor` run here on every frame."""
        participant: Optional["Participant"] = kwargs.pop("participant", None)
        track_source: TrackSource.ValueType = kwargs.pop(
            "track_source", TrackSource.SOURCE_MICROPHONE
        )
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        self._track: Optional[Track] = track
        self._loop = loop or _current_loop()
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._frame_size_ms = frame_size_ms
        frame_ms = frame_size_ms if frame_size_ms and frame_size_ms > 0 else _CORE_FRAME_MS
        self._capacity = capacity if capacity > 0 else max(1, _DEFAULT_QUEUE_MS // frame_ms)
        self._frames: Deque[AudioFrameEvent] = collections.deque()
        self._dropped = 0
        self._ended = False
        self._closed = False
        self._ready = asyncio.Event()

        self._filter: Optional[NoiseCancellationOptions] = None
        self._processor: Optional[FrameProcessor[AudioFrame]] = None
        self._processor_auto_close = auto_close_noise_cancellation
        if isinstance(noise_cancellation, NoiseCancellationOptions):
            self._filter = noise_cancellation
        elif noise_cancellation is not None:
            self._processor = noise_cancellation

        if participant is not None:
            req = self._from_participant_request(participant, track_source, capacity)
            resp = FfiClient.instance().request(req)
            owned = resp.audio_stream_from_participant.stream
        else:
            if track is None:
                raise ValueError("an AudioStream needs a track (or a participant)")
            req = self._from_track_request(track, capacity)
            resp = FfiClient.instance().request(req)
            owned = resp.new_audio_stream.stream
        self._info = owned.info
        self._handle: Optional[int] = owned.handle.id
        self._finalizer = weakref.finalize(self, _close_native, owned.handle.id)
        FfiClient.instance().add_route(
            _EVENT_KIND,
            owned.handle.id,
            self._loop,
            functools.partial(_deliver, weakref.ref(self)),
        )
        if self._processor is not None and track is not None:
            self._describe_to_processor(track)

    @classmethod
    def from_participant(
        cls,
        *,
        participant: "Participant",
        track_source: TrackSource.ValueType,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        capacity: int = 0,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: Optional[int] = None,
        noise_cancellation: Optional[
            Union[NoiseCancellationOptions, FrameProcessor[AudioFrame]]
        ] = None,
        auto_close_noise_cancellation: bool = True,
    ) -> "AudioStream":
        """A stream of `participant`'s audio track of `track_source`, following it
        as it is subscribed, unsubscribed or republished."""
        return AudioStream(
            None,  # type: ignore[arg-type]
            loop=loop,
            capacity=capacity,
            sample_rate=sample_rate,
            num_channels=num_channels,
            frame_size_ms=frame_size_ms,
            noise_cancellation=noise_cancellation,
            auto_close_noise_cancellation=auto_close_noise_cancellation,
            participant=participant,
            track_source=track_source,
        )

    @classmethod
    def from_track(
        cls,
        *,
        track: Track,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        capacity: int = 0,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: Optional[int] = None,
        noise_cancellation: Optional[
            Union[NoiseCancellationOptions, FrameProcessor[AudioFrame]]
        ] = None,
        auto_close_noise_cancellation: bool = False,
    ) -> "AudioStream":
        """The same as `AudioStream(track, ...)`, except that a frame processor is
        left open at `aclose()` by default (to be reused)."""
        return AudioStream(
            track,
            loop=loop,
            capacity=capacity,
            sample_rate=sample_rate,
            num_channels=num_channels,
            frame_size_ms=frame_size_ms,
            noise_cancellation=noise_cancellation,
            auto_close_noise_cancellation=auto_close_noise_cancellation,
        )

    # ---- requests -------------------------------------------------------------------

    def _from_track_request(self, track: Track, capacity: int) -> proto_ffi.FfiRequest:
        req = proto_ffi.FfiRequest()
        ns = req.new_audio_stream
        ns.track_handle = track._require_handle()
        ns.type = proto_audio.AUDIO_STREAM_NATIVE
        ns.sample_rate = self._sample_rate
        ns.num_channels = self._num_channels
        if self._frame_size_ms:
            ns.frame_size_ms = self._frame_size_ms
        if capacity > 0:
            ns.queue_size_frames = capacity
        if self._filter is not None:
            ns.audio_filter_module_id = self._filter.module_id
            ns.audio_filter_options = json.dumps(self._filter.options)
        return req

    def _from_participant_request(
        self, participant: "Participant", track_source: TrackSource.ValueType, capacity: int
    ) -> proto_ffi.FfiRequest:
        if participant._handle is None:
            raise RuntimeError(f"{participant!r} is no longer in a connected room")
        req = proto_ffi.FfiRequest()
        sp = req.audio_stream_from_participant
        sp.participant_handle = participant._handle
        sp.type = proto_audio.AUDIO_STREAM_NATIVE
        sp.track_source = track_source
        sp.sample_rate = self._sample_rate
        sp.num_channels = self._num_channels
        if self._frame_size_ms:
            sp.frame_size_ms = self._frame_size_ms
        if capacity > 0:
            sp.queue_size_frames = capacity
        if self._filter is not None:
            sp.audio_filter_module_id = self._filter.module_id
            sp.audio_filter_options = json.dumps(self._filter.options)
        return req

    # ---- events (on the stream's loop) ----------------------------------------------

    def _on_event(self, event: proto_audio.AudioStreamEvent) -> None:
        which = event.WhichOneof("message")
        if which == "frame_received":
            owned = event.frame_received.frame
            if self._closed:
                FfiClient.instance().drop_handle(owned.handle.id)
                return
            self._push_frame(AudioFrame._from_owned_info(owned))  # copied, handle dropped
        elif which == "eos":
            self._ended = True
            self._handle = None
            self._finalizer()
            self._ready.set()

    def _on_frame(self, received: ReceivedFrame) -> None:
        if not self._closed:
            self._push_frame(AudioFrame._received(*received))

    def _push_frame(self, frame: AudioFrame) -> None:
        processor = self._processor
        if processor is not None and processor.enabled:
            try:
                frame = processor._process(frame)
            except Exception:
                logger.warning("audio frame processor failed; frame passed unchanged", exc_info=True)
        self._push(AudioFrameEvent(frame))

    def _push(self, item: AudioFrameEvent) -> None:
        if len(self._frames) >= self._capacity:
            self._frames.popleft()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 500 == 0:
                logger.warning(
                    "audio stream reader is behind: %d frame(s) dropped so far (queue of %d)",
                    self._dropped,
                    self._capacity,
                )
        self._frames.append(item)
        self._ready.set()

    # ---- reading --------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[AudioFrameEvent]:
        return self

    async def __anext__(self) -> AudioFrameEvent:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._frames:
                return self._frames.popleft()
            if self._ended:
                raise StopAsyncIteration
            self._ready.clear()
            # Event.wait() takes nothing when cancelled: no frame is lost.
            await self._ready.wait()

    async def aclose(self) -> None:
        """Ends the stream and releases it now; frames not read are dropped and a
        pending read stops. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._ended = True
        self._frames.clear()
        self._handle = None
        self._finalizer()
        self._ready.set()
        processor = self._processor
        if processor is not None:
            processor._on_stream_info_cleared()
            processor._on_credentials_cleared()
            if self._processor_auto_close:
                processor._close()

    # ---- frame processors -----------------------------------------------------------

    def _describe_to_processor(self, track: Track) -> None:
        """Tells the processor where its frames come from, as far as the room knows."""
        processor = self._processor
        room = track._room()
        if processor is None or room is None:
            return
        identity = ""
        publication_sid = ""
        for participant in [*room.remote_participants.values(), room._local]:
            if participant is None:
                continue
            publication = participant.track_publications.get(track.sid)
            if publication is not None:
                identity, publication_sid = participant.identity, publication.sid
                break
        processor._on_stream_info_updated(
            room_name=room.name,
            participant_identity=identity,
            publication_sid=publication_sid,
        )
        if room._token and room._server_url:
            processor._on_credentials_updated(token=room._token, url=room._server_url)
