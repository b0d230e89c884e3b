"""Audio frames: interleaved signed 16-bit PCM with its rate and channel count.

A frame keeps the buffer it was given (bytes, bytearray or a whole contiguous
memoryview) without copying; `data` is an int16 view of it, so `numpy.frombuffer`
wraps the samples in place. Conversions that run in the core (`remix_and_resample`)
pass the frame's address for the duration of one synchronous request and copy the
result out of the buffer the core hands back before releasing its handle.
"""

from __future__ import annotations

import ctypes
import io
import wave
from typing import Any, Dict, Union

from ._ffi_client import FfiClient, FfiRequestError, address_of
from ._proto import audio_frame_pb2 as proto_audio
from ._proto import ffi_pb2 as proto_ffi

_SAMPLE_BYTES = 2  # int16

AudioBuffer = Union[bytes, bytearray, memoryview]


def _normalize_buffer(data: object) -> AudioBuffer:
    """The buffer a frame stores: as given when possible, else a copy.

    Slices of a larger buffer are copied (only their bytes are kept), and so are
    read-only buffers other than `bytes` (a read-only numpy array behind a
    memoryview): every stored buffer then has an address the core can read.
    """
    if isinstance(data, memoryview):
        view = data.cast("B")  # raises TypeError for views that are not C-contiguous
        owner = view.obj
        whole = owner is not None and memoryview(owner).nbytes == view.nbytes
        if view.readonly:
            return owner if whole and isinstance(owner, bytes) else bytes(view)
        return view if whole else bytearray(view)
    if isinstance(data, (bytes, bytearray)):
        return data
    raise TypeError(f"expected bytes, bytearray, or memoryview, got {type(data)}")


def _ffi_address(data: AudioBuffer) -> int:
    """The address of the first byte of a buffer `_normalize_buffer` returned."""
    if isinstance(data, bytes):
        return address_of(data)
    if len(data) == 0:
        return 0
    return ctypes.addressof(ctypes.c_char.from_buffer(data))


class AudioFrame:
    """A block of interleaved int16 PCM samples.

    `data` may be longer than `num_channels * samples_per_channel` samples; the extra
    samples are kept but belong to no channel.
    """

    def __init__(
        self,
        data: Union[bytes, bytearray, memoryview],
        sample_rate: int,
        num_channels: int,
        samples_per_channel: int,
        *,
        userdata: Union[Dict[str, Any], None] = None,
    ) -> None:
        buffer = _normalize_buffer(data)
        size = len(buffer)
        if size < num_channels * samples_per_channel * _SAMPLE_BYTES:
            raise ValueError(
                "data length must be >= num_channels * samples_per_channel * sizeof(int16)"
            )
        if size % _SAMPLE_BYTES:
            raise ValueError("data length must be a multiple of sizeof(int16)")
        self._data: AudioBuffer = buffer
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._samples_per_channel = samples_per_channel
        self._userdata: Dict[str, Any] = {} if userdata is None else userdata

    @staticmethod
    def create(sample_rate: int, num_channels: int, samples_per_channel: int) -> "AudioFrame":
        """A frame of silence (all samples zero)."""
        data = bytearray(num_channels * samples_per_channel * _SAMPLE_BYTES)
        return AudioFrame(data, sample_rate, num_channels, samples_per_channel)

    @property
    def userdata(self) -> Dict[str, Any]:
        """Free-form values that travel with the frame (a fresh dict by default)."""
        return self._userdata

    @property
    def data(self) -> memoryview:
        """The samples as an int16 memoryview of the frame's buffer (no copy)."""
        return memoryview(self._data).cast("B").cast("h")

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def samples_per_channel(self) -> int:
        return self._samples_per_channel

    @property
    def duration(self) -> float:
        """Length of the frame in seconds."""
        return self._samples_per_channel / self._sample_rate

    def _pcm(self) -> memoryview:
        """Exactly the frame's samples, as bytes (without any extra tail of `data`)."""
        size = self._num_channels * self._samples_per_channel * _SAMPLE_BYTES
        return memoryview(self._data).cast("B")[:size]

    def to_wav_bytes(self) -> bytes:
        """The frame as a complete WAV file (16-bit PCM)."""
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(self._num_channels)
            wav.setsampwidth(_SAMPLE_BYTES)
            wav.setframerate(self._sample_rate)
            wav.writeframes(self._pcm())
        return out.getvalue()

    def remix_and_resample(self, sample_rate: int, num_channels: int) -> "AudioFrame":
        """A new frame with this audio at `sample_rate` Hz and `num_channels` channels.

        One frame at a time (the resampler does not carry state from one call to the
        next); use `AudioResampler` for a continuous stream.
        """
        client = FfiClient.instance()
        req = proto_ffi.FfiRequest()
        req.new_audio_resampler.SetInParent()
        resampler = client.request(req).new_audio_resampler.resampler.handle.id
        try:
            req = proto_ffi.FfiRequest()
            rr = req.remix_and_resample
            rr.resampler_handle = resampler
            # The core reads the samples during this synchronous request only.
            rr.buffer.CopyFrom(self._proto_info())
            rr.sample_rate = sample_rate
            rr.num_channels = num_channels
            resp = client.request(req)
        finally:
            client.drop_handle(resampler)
        if not resp.remix_and_resample.HasField("buffer"):
            raise FfiRequestError("remix_and_resample returned no buffer")
        return AudioFrame._from_owned_info(resp.remix_and_resample.buffer)

    # ---- the core's view of frames ---------------------------------------------------

    def _proto_info(self) -> proto_audio.AudioFrameBufferInfo:
        """The frame as the core sees it; the address is valid while the frame lives."""
        info = proto_audio.AudioFrameBufferInfo()
        info.data_ptr = _ffi_address(self._data)
        info.sample_rate = self._sample_rate
        info.num_channels = self._num_channels
        info.samples_per_channel = self._samples_per_channel
        return info

    @classmethod
    def _received(
        cls, data: bytearray, sample_rate: int, num_channels: int, samples_per_channel: int
    ) -> "AudioFrame":
        """A frame around samples the native module copied for it (trusted: their size
        matches, so the checks of `__init__` are skipped on this hot path)."""
        frame = cls.__new__(cls)
        frame._data = data
        frame._sample_rate = sample_rate
        frame._num_channels = num_channels
        frame._samples_per_channel = samples_per_channel
        frame._userdata = {}
        return frame

    @staticmethod
    def _from_owned_info(owned: proto_audio.OwnedAudioFrameBuffer) -> "AudioFrame":
        """Copies a buffer the core handed over, then releases its handle."""
        info = owned.info
        try:
            size = info.num_channels * info.samples_per_channel * _SAMPLE_BYTES
            if size and info.data_ptr:
                data = bytearray((ctypes.c_char * size).from_address(info.data_ptr))
            else:
                data = bytearray(size)
        finally:
            FfiClient.instance().drop_handle(owned.handle.id)
        return AudioFrame(data, info.sample_rate, info.num_channels, info.samples_per_channel)

    def __repr__(self) -> str:
        return (
            f"rtc.AudioFrame(sample_rate={self._sample_rate}, "
            f"num_channels={self._num_channels}, "
            f"samples_per_channel={self._samples_per_channel}, "
            f"duration={self.duration:.3f})"
        )

    # ---- pydantic --------------------------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(cls, *_: Any) -> Any:
        """Lets pydantic models hold frames; JSON carries the samples in base64."""
        import base64
        import importlib

        # Imported by name: pydantic is optional, and only its users get here.
        core_schema: Any = importlib.import_module("pydantic_core.core_schema")

        def from_value(value: Any) -> "AudioFrame":
            if isinstance(value, AudioFrame):
                return value
            if isinstance(value, tuple):
                value = value[0]
            if isinstance(value, dict):
                return AudioFrame(
                    data=base64.b64decode(value["data"]),
                    sample_rate=value["sample_rate"],
                    num_channels=value["num_channels"],
                    samples_per_channel=value["samples_per_channel"],
                )
            raise TypeError("Invalid type for AudioFrame")

        def to_value(frame: "AudioFrame") -> Dict[str, Any]:
            return {
                "data": base64.b64encode(frame.data).decode("utf-8"),
                "sample_rate": frame.sample_rate,
                "num_channels": frame.num_channels,
                "samples_per_channel": frame.samples_per_channel,
            }

        fields = {
            name: core_schema.model_field(
                core_schema.str_schema() if name == "data" else core_schema.int_schema()
            )
            for name in ("data", "sample_rate", "num_channels", "samples_per_channel")
        }
        validator = core_schema.no_info_plain_validator_function(from_value)
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema(
                [core_schema.model_fields_schema(fields), validator]
            ),
            python_schema=validator,
            serialization=core_schema.plain_serializer_function_ser_schema(to_value),
        )

