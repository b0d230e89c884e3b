"""AudioSource: frames are played out in real time through a bounded queue; a fast
producer waits (backpressure) instead of piling audio up."""

from __future__ import annotations

import time

import pytest

from livekit import rtc


def frame(ms: int, rate: int = 48000, channels: int = 1, value: int = 1000) -> rtc.AudioFrame:
    n = rate * ms // 1000
    f = rtc.AudioFrame.create(rate, channels, n)
    data = f.data
    for i in range(n * channels):
        data[i] = value
    return f


async def test_a_fast_producer_waits_for_real_time_playout() -> None:
    source = rtc.AudioSource(48000, 1, queue_size_ms=200)
    assert (source.sample_rate, source.num_channels) == (48000, 1)
    t0 = time.monotonic()
    for _ in range(50):  # one second in 20 ms frames
        await source.capture_frame(frame(20))
    took = time.monotonic() - t0
    # The queue holds 200 ms: the rest had to play out first.
    assert took >= 0.7, took
    assert 0.0 < source.queued_duration <= 0.3
    await source.wait_for_playout()
    assert source.queued_duration == 0.0
    assert time.monotonic() - t0 >= 0.95
    await source.aclose()


async def test_clear_queue_drops_pending_audio_and_frees_room() -> None:
    source = rtc.AudioSource(16000, 2, queue_size_ms=500)
    await source.capture_frame(frame(400, rate=16000, channels=2))
    assert source.queued_duration > 0.3
    source.clear_queue()
    assert source.queued_duration == 0.0
    t0 = time.monotonic()
    await source.wait_for_playout()
    await source.capture_frame(frame(400, rate=16000, channels=2))
    assert time.monotonic() - t0 < 0.2
    await source.aclose()


async def test_frames_of_another_format_are_refused_and_a_closed_source_ignores_frames() -> None:
    source = rtc.AudioSource(48000, 1)
    with pytest.raises(Exception):
        await source.capture_frame(frame(10, rate=16000))
    with pytest.raises(Exception):
        await source.capture_frame(frame(10, channels=2))
    await source.aclose()
    await source.capture_frame(frame(10))  # nothing happens
    assert source.queued_duration == 0.0
