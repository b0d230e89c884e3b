"""Raw video frames: a buffer of one of the official `VideoBufferType`s, its planes
as zero-copy views (`numpy.frombuffer(frame.data, ...)` works on them), and
conversions between types, made by the core (SIMD, BT.601 limited range as
libwebrtc converts)."""

from __future__ import annotations

import ctypes
from typing import List, Optional, Tuple, Union

from ._ffi_client import FfiClient, FfiRequestError
from ._proto import ffi_pb2 as proto_ffi
from ._proto import video_frame_pb2 as proto_video

_PACKED_BYTES = {
    proto_video.RGBA: 4,
    proto_video.ABGR: 4,
    proto_video.ARGB: 4,
    proto_video.BGRA: 4,
    proto_video.RGB24: 3,
}


def _plane_sizes(
    type: proto_video.VideoBufferType.ValueType, width: int, height: int
) -> List[Tuple[int, int]]:
    """(bytes per row, rows) of each plane of a frame, packed one after the other;
    chroma planes round up (5x5 I420 has 3x3 chroma)."""
    if type in _PACKED_BYTES:
        return [(width * _PACKED_BYTES[type], height)]
    cw, ch = (width + 1) // 2, (height + 1) // 2
    if type == proto_video.I420:
        return [(width, height), (cw, ch), (cw, ch)]
    if type == proto_video.I420A:
        return [(width, height), (cw, ch), (cw, ch), (width, height)]
    if type == proto_video.I422:
        return [(width, height), (cw, height), (cw, height)]
    if type == proto_video.I444:
        return [(width, height)] * 3
    if type == proto_video.I010:
        return [(width * 2, height), (cw * 2, ch), (cw * 2, ch)]
    if type == proto_video.NV12:
        return [(width, height), (cw * 2, ch)]
    raise ValueError(f"unknown video buffer type {type}")


def _frame_size(type: proto_video.VideoBufferType.ValueType, width: int, height: int) -> int:
    return sum(stride * rows for stride, rows in _plane_sizes(type, width, height))


class VideoFrame:
    """A video frame: `width` x `height` pixels of buffer type `type` in `data`.

    `data` is kept as given when it is writable (a `bytearray`, or a memoryview of
    one, e.g. of a numpy array), so writing to `frame.data` or a plane writes the
    frame; `bytes` are copied once so that it can be.
    """

    def __init__(
        self,
        width: int,
        height: int,
        type: proto_video.VideoBufferType.ValueType,
        data: Union[bytes, bytearray, memoryview],
    ) -> None:
        self._width = width
        self._height = height
        self._type = type
        self._data = _writable(data)

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def type(self) -> proto_video.VideoBufferType.ValueType:
        return self._type

    @property
    def data(self) -> memoryview:
        """The frame's bytes, without a copy."""
        return memoryview(self._data)

    def get_plane(self, plane_nth: int) -> Optional[memoryview]:
        """Plane `plane_nth` (Y, U, V, then A for I420A; Y then UV for NV12; the
        whole frame for packed types) as a view of the frame's bytes; None past the
        last plane."""
        offset = 0
        for n, (stride, rows) in enumerate(_plane_sizes(self._type, self._width, self._height)):
            size = stride * rows
            if n == plane_nth:
                return self.data.cast("B")[offset : offset + size]
            offset += size
        return None

    def convert(
        self, type: proto_video.VideoBufferType.ValueType, *, flip_y: bool = False
    ) -> "VideoFrame":
        """The frame as buffer type `type` (a new frame; upside down with `flip_y`)."""
        need = _frame_size(self._type, self._width, self._height)
        have = self.data.nbytes
        if have < need:
            raise ValueError(
                f"a {self._width}x{self._height} {proto_video.VideoBufferType.Name(self._type)}"
                f" frame needs {need} bytes, its data has {have}"
            )
        req = proto_ffi.FfiRequest()
        req.video_convert.flip_y = flip_y
        req.video_convert.dst_type = type
        req.video_convert.buffer.CopyFrom(self._proto_info())
        try:
            resp = FfiClient.instance().request(req)
        except FfiRequestError as e:
            raise ValueError(str(e)) from None
        if resp.video_convert.HasField("error"):
            raise ValueError(resp.video_convert.error)
        return VideoFrame._from_owned_info(resp.video_convert.buffer)

    # ---- the core's view of frames ---------------------------------------------------

    def _proto_info(self) -> proto_video.VideoBufferInfo:
        """The frame as the core sees it; the address is valid while the frame lives."""
        info = proto_video.VideoBufferInfo()
        info.type = self._type
        info.width = self._width
        info.height = self._height
        info.data_ptr = _address(self._data)
        return info

    @staticmethod
    def _from_owned_info(owned: proto_video.OwnedVideoBuffer) -> "VideoFrame":
        """Copies a frame the core handed over, then releases its handle."""
        info = owned.info
        try:
            size = _frame_size(info.type, info.width, info.height)
            data = bytearray((ctypes.c_char * size).from_address(info.data_ptr))
        finally:
            FfiClient.instance().drop_handle(owned.handle.id)
        return VideoFrame(info.width, info.height, info.type, data)

    def __repr__(self) -> str:
        name = proto_video.VideoBufferType.Name(self._type)
        return f"rtc.VideoFrame(width={self._width}, height={self._height}, type={name})"


def _writable(data: object) -> Union[bytearray, memoryview]:
    if isinstance(data, memoryview):
        view = data.cast("B")  # raises TypeError for views that are not C-contiguous
        return bytearray(view) if view.readonly else view
    if isinstance(data, bytearray):
        return data
    if isinstance(data, bytes):
        return bytearray(data)
    raise TypeError(f"expected bytes, bytearray, or memoryview, got {type(data)}")


def _address(data: Union[bytearray, memoryview]) -> int:
    """The address of a writable buffer `_writable` returned."""
    if len(data) == 0:
        return 0
    return ctypes.addressof(ctypes.c_char.from_buffer(data))

