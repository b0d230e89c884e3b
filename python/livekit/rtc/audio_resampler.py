"""Streaming sample-rate conversion in the core.

An `AudioResampler` owns a native resampler handle, released when the object is
garbage collected (a resampler's handle owns nothing but memory, so releasing it from
any thread is safe). `push` hands the core interleaved int16 samples for the length
of one synchronous request; what comes back is lent by the core until the next
request on the same resampler, so it is copied at once, under a per-resampler lock
(the request itself runs without the GIL).
"""

from __future__ import annotations

import ctypes
import enum
import threading
import weakref
from typing import List, Union

from ._ffi_client import FfiClient, FfiRequestError
from ._proto import audio_frame_pb2 as proto_audio
from ._proto import ffi_pb2 as proto_ffi
from .audio_frame import AudioFrame, _ffi_address, _normalize_buffer
from .log import logger

_SAMPLE_BYTES = 2  # int16


@enum.unique
class AudioResamplerQuality(str, enum.Enum):
    QUICK = "quick"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"


_RECIPES = {
    AudioResamplerQuality.QUICK: proto_audio.SOXR_QUALITY_QUICK,
    AudioResamplerQuality.LOW: proto_audio.SOXR_QUALITY_LOW,
    AudioResamplerQuality.MEDIUM: proto_audio.SOXR_QUALITY_MEDIUM,
    AudioResamplerQuality.HIGH: proto_audio.SOXR_QUALITY_HIGH,
    AudioResamplerQuality.VERY_HIGH: proto_audio.SOXR_QUALITY_VERYHIGH,
}


def _release(handle: int) -> None:
    FfiClient.instance().drop_handle(handle)


class AudioResampler:
    """Converts a stream of int16 audio from `input_rate` to `output_rate` Hz.

    Push the stream in chunks of any size, then `flush` once at its end for the
    samples the resampler still holds.
    """

    def __init__(
        self,
        input_rate: int,
        output_rate: int,
        *,
        num_channels: int = 1,
        quality: AudioResamplerQuality = AudioResamplerQuality.MEDIUM,
    ) -> None:
        self._input_rate = input_rate
        self._output_rate = output_rate
        self._num_channels = num_channels
        self._frame_bytes = max(num_channels, 1) * _SAMPLE_BYTES
        self._carry = b""  # the start of an incomplete frame, from the last push
        self._lock = threading.Lock()
        recipe = _RECIPES[AudioResamplerQuality(quality)]

        req = proto_ffi.FfiRequest()
        new = req.new_sox_resampler
        new.input_rate = input_rate
        new.output_rate = output_rate
        new.num_channels = num_channels
        new.input_data_type = proto_audio.SOXR_DATATYPE_INT16I
        new.output_data_type = proto_audio.SOXR_DATATYPE_INT16I
        new.quality_recipe = recipe
        new.flags = 0
        resp = FfiClient.instance().request(req).new_sox_resampler
        if resp.WhichOneof("message") != "resampler":
            raise FfiRequestError(resp.error or "the core created no resampler")
        self._handle = resp.resampler.handle.id
        self._finalizer = weakref.finalize(self, _release, self._handle)

    def push(self, data: Union[bytearray, AudioFrame]) -> List[AudioFrame]:
        """Resamples a chunk: `data` is interleaved int16 (little-endian) bytes or a
        frame. Returns the output available so far (possibly none).

        Chunks need not hold whole frames (one sample per channel): an incomplete
        frame at the end of a chunk waits for the rest in the next one.
        """
        if isinstance(data, AudioFrame):
            pcm = data._pcm()
            buffer = data._data  # `pcm` starts at its first byte
        else:
            buffer = _normalize_buffer(data)
            pcm = memoryview(buffer).cast("B")
        with self._lock:
            if self._carry or len(pcm) % self._frame_bytes:
                joined = self._carry + bytes(pcm)
                whole = len(joined) - len(joined) % self._frame_bytes
                self._carry = joined[whole:]
                buffer = joined[:whole]
                pcm = memoryview(buffer)
            if not len(pcm):
                return []
            req = proto_ffi.FfiRequest()
            push = req.push_sox_resampler
            push.resampler_handle = self._handle
            # The core copies the samples during this synchronous request.
            push.data_ptr = _ffi_address(buffer)
            push.size = len(pcm)
            resp = FfiClient.instance().request(req).push_sox_resampler
            if resp.HasField("error") and resp.error:
                raise FfiRequestError(resp.error)
            return self._output(resp.output_ptr, resp.size)

    def flush(self) -> List[AudioFrame]:
        """Ends the stream: returns the samples still inside the resampler."""
        req = proto_ffi.FfiRequest()
        req.flush_sox_resampler.resampler_handle = self._handle
        with self._lock:
            if self._carry:
                logger.debug(
                    "AudioResampler: dropped %d bytes of an incomplete frame at flush",
                    len(self._carry),
                )
                self._carry = b""
            resp = FfiClient.instance().request(req).flush_sox_resampler
            if resp.HasField("error") and resp.error:
                raise FfiRequestError(resp.error)
            return self._output(resp.output_ptr, resp.size)

    def _output(self, ptr: int, size: int) -> List[AudioFrame]:
        """Copies the output the core lent us (called with the lock held)."""
        if not ptr or not size:
            return []
        data = bytearray((ctypes.c_char * size).from_address(ptr))
        return [
            AudioFrame(data, self._output_rate, self._num_channels, size // self._frame_bytes)
        ]
