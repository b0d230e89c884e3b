"""Audio sources: frames pushed in by the application, played out in real time.

The core keeps at most `queue_size_ms` of audio per source and plays it out 10 ms
at a time, like a microphone would produce it; `capture_frame` waits while the
queue is full, which is what keeps a fast producer from piling up audio.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Optional

from ._ffi_client import FfiClient
from ._proto import audio_frame_pb2 as proto_audio
from ._proto import ffi_pb2 as proto_ffi

if TYPE_CHECKING:
    from .audio_frame import AudioFrame


def _release(handle: int) -> None:
    FfiClient.instance().drop_handle(handle)


class AudioSource:
    """A real-time source of int16 audio at `sample_rate` Hz and `num_channels`."""

    def __init__(
        self,
        sample_rate: int,
        num_channels: int,
        queue_size_ms: int = 1000,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._loop = loop
        req = proto_ffi.FfiRequest()
        req.new_audio_source.type = proto_audio.AUDIO_SOURCE_NATIVE
        req.new_audio_source.sample_rate = sample_rate
        req.new_audio_source.num_channels = num_channels
        req.new_audio_source.queue_size_ms = queue_size_ms
        resp = FfiClient.instance().request(req)
        self._info = resp.new_audio_source.source
        self._handle: Optional[int] = self._info.handle.id
        self._finalizer = weakref.finalize(self, _release, self._handle)
        # When what was captured so far will have played out (monotonic clock).
        self._playout_end = 0.0

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def queued_duration(self) -> float:
        """Seconds of captured audio not played out yet."""
        return max(self._playout_end - time.monotonic(), 0.0)

    def clear_queue(self) -> None:
        """Drops the audio captured and not played out yet; waiting
        `wait_for_playout` calls return."""
        if self._handle is None:
            return
        req = proto_ffi.FfiRequest()
        req.clear_audio_buffer.source_handle = self._handle
        FfiClient.instance().request(req)
        self._playout_end = 0.0

    async def capture_frame(self, frame: "AudioFrame") -> None:
        """Queues `frame` for playout; waits while the queue is full. Raises if the
        frame's rate or channel count is not the source's."""
        if frame.samples_per_channel == 0 or self._handle is None:
            return
        req = proto_ffi.FfiRequest()
        req.capture_audio_frame.source_handle = self._handle
        req.capture_audio_frame.buffer.CopyFrom(frame._proto_info())
        # The frame's memory is read by the core during the request itself.
        event = await FfiClient.instance().call(req)
        if event.capture_audio_frame.HasField("error") and event.capture_audio_frame.error:
            raise Exception(event.capture_audio_frame.error)
        now = time.monotonic()
        self._playout_end = max(self._playout_end, now) + frame.duration

    async def wait_for_playout(self) -> None:
        """Returns once everything captured so far has played out (or was cleared)."""
        while True:
            left = self._playout_end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def aclose(self) -> None:
        """Releases the source; later captures do nothing."""
        if self._handle is not None:
            self._handle = None
            self._finalizer()
        self._playout_end = 0.0
