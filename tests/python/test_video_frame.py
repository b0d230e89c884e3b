"""VideoFrame: buffer types, planes, and conversions by the core, checked against
BT.601 limited-range arithmetic and against the official SDK's own conversions
(libyuv) on the same frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from livekit import rtc

ROOT = Path(__file__).resolve().parents[2]
T = rtc.VideoBufferType
ALL = [T.RGBA, T.ABGR, T.ARGB, T.BGRA, T.RGB24, T.I420, T.I420A, T.I422, T.I444, T.I010, T.NV12]
COLOURS = [(200, 30, 40), (20, 180, 60), (30, 60, 220), (255, 255, 255), (0, 0, 0), (128, 128, 128)]


def solid(w: int, h: int, rgb: Tuple[int, int, int]) -> rtc.VideoFrame:
    return rtc.VideoFrame(w, h, T.RGBA, bytearray([*rgb, 255] * (w * h)))


def bt601(rgb: Tuple[int, int, int]) -> Tuple[float, float, float]:
    """Y, U, V of a colour in BT.601 limited range."""
    r, g, b = (c / 255 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return y, u, v


def test_planes_are_views_of_the_frame_and_sizes_match_the_types() -> None:
    frame = solid(5, 5, (1, 2, 3)).convert(T.I420)
    assert frame.width == 5 and frame.height == 5 and frame.type == T.I420
    assert [len(frame.get_plane(n) or b"") for n in range(3)] == [25, 9, 9]
    assert frame.get_plane(3) is None
    # Zero copy both ways: numpy sees the bytes, and writing a plane writes the frame.
    y = np.frombuffer(frame.get_plane(0) or b"", dtype=np.uint8)
    assert y.shape == (25,)
    plane = frame.get_plane(2)
    assert plane is not None
    plane[0] = 77
    assert frame.data[25 + 9] == 77
    sizes = {t: len(solid(6, 4, (0, 0, 0)).convert(t).data) for t in ALL}
    assert sizes == {
        T.RGBA: 96, T.ABGR: 96, T.ARGB: 96, T.BGRA: 96, T.RGB24: 72, T.I420: 36,
        T.I420A: 60, T.I422: 48, T.I444: 72, T.I010: 72, T.NV12: 36,
    }  # fmt: skip
    assert "VideoFrame(width=5, height=5, type=I420)" in repr(frame)


@pytest.mark.parametrize("rgb", COLOURS)
def test_yuv_values_are_bt601_limited_range(rgb: Tuple[int, int, int]) -> None:
    frame = solid(16, 8, rgb).convert(T.I420)
    y, u, v = (np.frombuffer(frame.get_plane(n) or b"", dtype=np.uint8) for n in range(3))
    want = bt601(rgb)
    for got, expect in zip((y, u, v), want):
        assert abs(float(got.mean()) - expect) <= 1.5, (rgb, got[:4], want)
    back = np.frombuffer(frame.convert(T.RGBA).data, dtype=np.uint8).reshape(-1, 4)
    assert np.abs(back[:, :3].astype(int) - np.array(rgb)).max() <= 3


def test_every_type_converts_to_every_other_and_back() -> None:
    source = solid(32, 18, (200, 30, 40))
    reference = np.frombuffer(source.data, dtype=np.uint8).astype(int)
    for a in ALL:
        first = source.convert(a)
        for b in ALL:
            back = first.convert(b).convert(T.RGBA)
            got = np.frombuffer(back.data, dtype=np.uint8).astype(int)
            assert np.abs(got - reference).max() <= 6, (a, b)


def test_flip_y_and_bad_frames() -> None:
    top, bottom = [200, 0, 0, 255] * 4, [0, 0, 200, 255] * 4
    frame = rtc.VideoFrame(4, 2, T.RGBA, bytes(top + bottom))
    flipped = frame.convert(T.RGBA, flip_y=True)
    assert list(flipped.data[:16]) == bottom and list(flipped.data[16:]) == top
    with pytest.raises(ValueError, match="needs 24 bytes"):
        rtc.VideoFrame(4, 4, T.I420, b"short").convert(T.RGBA)
    with pytest.raises(ValueError, match="width and height"):
        rtc.VideoFrame(0, 4, T.RGBA, b"").convert(T.I420)
    with pytest.raises(TypeError):
        rtc.VideoFrame(1, 1, T.RGBA, "text")  # type: ignore[arg-type]


OFFICIAL = """
import json, sys
from livekit import rtc
T = rtc.VideoBufferType
out = {}
for rgb in json.loads(sys.argv[1]):
    f = rtc.VideoFrame(8, 4, T.RGBA, bytearray([*rgb, 255] * 32))
    i420 = f.convert(T.I420)
    out[str(rgb)] = {"i420": list(i420.data), "bgra": list(i420.convert(T.BGRA).data)}
print(json.dumps(out))
"""


def test_conversions_match_the_official_sdk() -> None:
    python = subprocess.run(
        ["bash", str(ROOT / "scripts" / "official-sdk.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout.strip()  # fmt: skip
    done = subprocess.run(
        [python, "-c", OFFICIAL, json.dumps(COLOURS)],
        check=True, stdout=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    theirs: Dict[str, Dict[str, List[int]]] = json.loads(done.stdout)
    for rgb in COLOURS:
        i420 = solid(8, 4, rgb).convert(T.I420)
        ours = {"i420": list(i420.data), "bgra": list(i420.convert(T.BGRA).data)}
        # libyuv rounds with less precision on the way back (blue 220 comes back
        # 217 there, 220 here): a little more room for BGRA.
        for kind, tolerance in (("i420", 2), ("bgra", 4)):
            a = np.array(ours[kind])
            b = np.array(theirs[str(list(rgb))][kind])
            assert a.shape == b.shape, (rgb, kind)
            assert np.abs(a - b).max() <= tolerance, (rgb, kind, a[:8], b[:8])
    print(f"\n{len(COLOURS)} colours: I420 within 2 and BGRA within 4 of the official SDK",
          file=sys.stderr)  # fmt: skip
