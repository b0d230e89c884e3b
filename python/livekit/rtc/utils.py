"""Audio helpers: joining frames, and a sine-wave test source (needs numpy)."""

from __future__ import annotations

from typing import AsyncIterator, List, Union

from .audio_frame import AudioFrame

__all__ = ["combine_audio_frames", "sine_wave_generator"]


def combine_audio_frames(buffer: Union[AudioFrame, List[AudioFrame]]) -> AudioFrame:
    """One frame with the samples of `buffer`'s frames, in order.

    A single frame (not in a list) is returned as it is. All frames must share one
    sample rate and channel count (ValueError otherwise, and for an empty list).
    """
    if not isinstance(buffer, list):
        return buffer
    if not buffer:
        raise ValueError("buffer is empty")

    sample_rate = buffer[0].sample_rate
    num_channels = buffer[0].num_channels
    samples_per_channel = 0
    for frame in buffer:
        if frame.sample_rate != sample_rate:
            raise ValueError(
                f"Sample rate mismatch: expected {sample_rate}, got {frame.sample_rate}"
            )
        if frame.num_channels != num_channels:
            raise ValueError(
                f"Channel count mismatch: expected {num_channels}, got {frame.num_channels}"
            )
        samples_per_channel += frame.samples_per_channel

    data = bytearray()
    for frame in buffer:
        data += frame._pcm()
    return AudioFrame(
        data=data,
        sample_rate=sample_rate,
        num_channels=num_channels,
        samples_per_channel=samples_per_channel,
    )


async def sine_wave_generator(
    freq: float,
    duration: float,
    sample_rate: int = 48000,
    amplitude: float = 0.3,
) -> AsyncIterator[AudioFrame]:
    """Mono frames of 100 ms of a sine at `freq` Hz (`amplitude` of full scale) for
    `duration` seconds (whole frames only), produced as fast as they are consumed."""
    try:
        import numpy as np
    except ImportError:
        raise ImportError(
            "numpy is required for sine_wave_generator. Install it with: pip install numpy"
        ) from None

    block = sample_rate // 10
    frames = int((duration * sample_rate) // block)
    offsets = np.arange(block, dtype=np.float64)
    for index in range(frames):
        t = (offsets + index * block) / sample_rate
        wave = amplitude * np.sin(2 * np.pi * freq * t)
        # Truncated toward zero, like a plain int16 conversion.
        samples = (wave * 32767).astype(np.int16)
        yield AudioFrame(samples.tobytes(), sample_rate, 1, block)
