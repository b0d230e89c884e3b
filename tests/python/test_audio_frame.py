"""Audio frames and DSP: AudioFrame, AudioResampler, remixing, combining, AudioMixer.

No server is needed: the resamplers run in the core through synchronous requests,
and the mixer is plain Python on numpy. Signals are checked by what matters to a
listener: the frequency (FFT peak), the level (RMS) and the length.
"""

from __future__ import annotations

import asyncio
import gc
import io
import itertools
import logging
import wave
from typing import AsyncIterator, List, Tuple

import numpy as np
import pytest

from livekit import rtc
from livekit.rtc import _native


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def peaks_hz(samples: np.ndarray, rate: int, count: int) -> List[float]:
    """The `count` strongest spectral peaks (local maxima), lowest frequency first."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    local = [
        i for i in range(1, len(spectrum) - 1) if spectrum[i - 1] < spectrum[i] >= spectrum[i + 1]
    ]
    best = sorted(local, key=lambda i: spectrum[i], reverse=True)[:count]
    return sorted(float(freqs[i]) for i in best)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def samples_of(frames: List[rtc.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])


def resample_in_pieces(
    resampler: rtc.AudioResampler, samples: np.ndarray, rate: int, channels: int = 1
) -> List[rtc.AudioFrame]:
    """Pushes `samples` in uneven pieces (frames and raw bytes alternately), then flushes."""
    out: List[rtc.AudioFrame] = []
    sizes = itertools.cycle([137, 480, 1000, 7, 2400, 1])
    pos = 0
    total = len(samples) // channels
    for i, size in enumerate(sizes):
        if pos >= total:
            break
        piece = samples[pos * channels : (pos + size) * channels]
        n = len(piece) // channels
        if i % 2:
            out += resampler.push(rtc.AudioFrame(piece.tobytes(), rate, channels, n))
        else:
            out += resampler.push(bytearray(piece.tobytes()))
        pos += size
    out += resampler.flush()
    return out


# ---- AudioFrame ----------------------------------------------------------------------


def test_frame_properties_and_numpy_view() -> None:
    data = bytearray(np.arange(960, dtype=np.int16).tobytes())
    frame = rtc.AudioFrame(data, 48000, 2, 480)
    assert (frame.sample_rate, frame.num_channels, frame.samples_per_channel) == (48000, 2, 480)
    assert frame.duration == pytest.approx(0.01)
    assert frame.userdata == {}
    assert isinstance(frame.data, memoryview)
    assert frame.data.format == "h" and len(frame.data) == 960
    assert repr(frame) == (
        "rtc.AudioFrame(sample_rate=48000, num_channels=2, samples_per_channel=480, duration=0.010)"
    )
    # numpy wraps the frame's own memory: no copy either way.
    arr = np.frombuffer(frame.data, dtype=np.int16)
    assert arr[5] == 5
    data[10:12] = (1234).to_bytes(2, "little", signed=True)
    assert arr[5] == 1234 and frame.data[5] == 1234
    arr[6] = -7
    assert frame.data[6] == -7

    tagged = rtc.AudioFrame(b"\x00\x00", 8000, 1, 1, userdata={"id": 3})
    assert tagged.userdata == {"id": 3}
    tagged.userdata["more"] = True
    assert tagged.userdata["more"] is True


def test_frame_from_memoryviews() -> None:
    arr = np.arange(8, dtype=np.int16)
    whole = rtc.AudioFrame(memoryview(arr), 16000, 1, 8)
    arr[0] = 99  # a whole view is kept, not copied
    assert whole.data[0] == 99
    assert list(whole.data) == [99, 1, 2, 3, 4, 5, 6, 7]

    sliced = rtc.AudioFrame(memoryview(arr)[2:6], 16000, 1, 4)
    arr[2] = -1  # a slice is copied
    assert list(sliced.data) == [2, 3, 4, 5]

    readonly = np.arange(4, dtype=np.int16)
    readonly.flags.writeable = False
    frame = rtc.AudioFrame(memoryview(readonly), 16000, 1, 4)
    assert list(frame.data) == [0, 1, 2, 3]

    # Bigger than needed is allowed; the extra samples stay in `data`.
    roomy = rtc.AudioFrame(bytes(20), 16000, 1, 4)
    assert len(roomy.data) == 10 and roomy.samples_per_channel == 4


def test_frame_create_is_silent() -> None:
    frame = rtc.AudioFrame.create(24000, 2, 240)
    assert (frame.sample_rate, frame.num_channels, frame.samples_per_channel) == (24000, 2, 240)
    assert len(frame.data) == 480 and not any(frame.data)
    frame.data[0] = 42  # writable
    assert frame.data[0] == 42


def test_frame_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="data length must be >="):
        rtc.AudioFrame(bytes(10), 48000, 2, 3)
    with pytest.raises(ValueError, match="multiple of sizeof"):
        rtc.AudioFrame(bytes(7), 48000, 1, 3)
    with pytest.raises(TypeError):
        rtc.AudioFrame([0, 0], 48000, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rtc.AudioFrame("ab", 48000, 1, 1)  # type: ignore[arg-type]
    strided = memoryview(np.zeros(8, dtype=np.int16))[::2]
    with pytest.raises(TypeError):
        rtc.AudioFrame(strided, 48000, 1, 4)


def test_to_wav_bytes_round_trip() -> None:
    stereo = np.stack([tone(440, 0.05, 16000), tone(880, 0.05, 16000)], axis=1).reshape(-1)
    frame = rtc.AudioFrame(stereo.tobytes(), 16000, 2, 800)
    with wave.open(io.BytesIO(frame.to_wav_bytes()), "rb") as wav:
        assert wav.getnchannels() == 2
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 16000
        assert wav.getnframes() == 800
        back = np.frombuffer(wav.readframes(800), dtype="<i2")
    assert np.array_equal(back, stereo)


def test_combine_audio_frames() -> None:
    a = rtc.AudioFrame(np.array([1, 2, 3, 4], dtype=np.int16).tobytes(), 48000, 2, 2)
    b = rtc.AudioFrame(np.array([5, 6], dtype=np.int16).tobytes(), 48000, 2, 1)
    combined = rtc.combine_audio_frames([a, b])
    assert (combined.sample_rate, combined.num_channels, combined.samples_per_channel) == (
        48000,
        2,
        3,
    )
    assert list(combined.data) == [1, 2, 3, 4, 5, 6]
    assert rtc.combine_audio_frames(a) is a
    assert rtc.utils.combine_audio_frames([a]).samples_per_channel == 2
    with pytest.raises(ValueError, match="empty"):
        rtc.combine_audio_frames([])
    with pytest.raises(ValueError, match="Sample rate mismatch"):
        rtc.combine_audio_frames([a, rtc.AudioFrame.create(16000, 2, 1)])
    with pytest.raises(ValueError, match="Channel count mismatch"):
        rtc.combine_audio_frames([a, rtc.AudioFrame.create(48000, 1, 1)])


async def test_sine_wave_generator() -> None:
    frames = [f async for f in rtc.utils.sine_wave_generator(440, 0.5, sample_rate=16000)]
    assert len(frames) == 5
    assert all(f.samples_per_channel == 1600 and f.num_channels == 1 for f in frames)
    samples = samples_of(frames)
    assert abs(peak_hz(samples, 16000) - 440) < 3
    assert rms(samples) == pytest.approx(0.3 * 32767 / np.sqrt(2), rel=0.02)


def test_pydantic_round_trip() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Model(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        frame: rtc.AudioFrame

    frame = rtc.AudioFrame(np.array([1, -2, 3], dtype=np.int16).tobytes(), 8000, 1, 3)
    back = Model.model_validate_json(Model(frame=frame).model_dump_json()).frame
    assert list(back.data) == [1, -2, 3] and back.sample_rate == 8000


# ---- AudioResampler ------------------------------------------------------------------


@pytest.mark.parametrize("output_rate", [16000, 24000])
def test_resampler_keeps_frequency_level_and_length(output_rate: int) -> None:
    source = tone(440, 1.0, 48000)
    resampler = rtc.AudioResampler(48000, output_rate)
    frames = resample_in_pieces(resampler, source, 48000)
    assert all(f.sample_rate == output_rate and f.num_channels == 1 for f in frames)
    assert all(f.samples_per_channel > 0 for f in frames)
    out = samples_of(frames)
    assert abs(len(out) - output_rate) <= 3
    assert abs(peak_hz(out, output_rate) - 440) < 3
    assert rms(out) == pytest.approx(rms(source), rel=0.03)


@pytest.mark.parametrize("quality", list(rtc.AudioResamplerQuality))
def test_resampler_every_quality(quality: rtc.AudioResamplerQuality) -> None:
    source = tone(1000, 0.5, 48000)
    resampler = rtc.AudioResampler(48000, 16000, num_channels=1, quality=quality)
    out = samples_of(resample_in_pieces(resampler, source, 48000))
    assert abs(len(out) - 8000) <= 3
    assert abs(peak_hz(out, 16000) - 1000) < 4
    assert rms(out) == pytest.approx(rms(source), rel=0.05)


def test_resampler_quality_as_string_and_upsampling_stereo() -> None:
    left, right = tone(300, 0.5, 16000), tone(1200, 0.5, 16000, amplitude=0.25)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    high: rtc.AudioResamplerQuality = "high"  # type: ignore[assignment]
    resampler = rtc.AudioResampler(16000, 48000, num_channels=2, quality=high)
    frames = resample_in_pieces(resampler, stereo, 16000, channels=2)
    assert all(f.num_channels == 2 and f.sample_rate == 48000 for f in frames)
    out = samples_of(frames).reshape(-1, 2)
    assert abs(out.shape[0] - 24000) <= 3
    assert abs(peak_hz(out[:, 0], 48000) - 300) < 3
    assert abs(peak_hz(out[:, 1], 48000) - 1200) < 3
    assert rms(out[:, 1]) == pytest.approx(rms(right), rel=0.03)


def test_resampler_same_rate_and_empty_input() -> None:
    resampler = rtc.AudioResampler(16000, 16000)
    assert resampler.push(bytearray()) == []
    assert resampler.push(rtc.AudioFrame(b"", 16000, 1, 0)) == []
    source = tone(440, 0.1, 16000)
    out = samples_of(resampler.push(bytearray(source.tobytes())) + resampler.flush())
    assert np.array_equal(out, source)


def test_resampler_errors() -> None:
    with pytest.raises(Exception):
        rtc.AudioResampler(0, 16000)
    with pytest.raises(Exception):
        rtc.AudioResampler(48000, 16000, num_channels=0)
    with pytest.raises(ValueError):
        rtc.AudioResampler(48000, 16000, quality="best")  # type: ignore[arg-type]


def test_resampler_takes_chunks_cut_anywhere() -> None:
    """Chunks may end inside a sample or a frame: the rest waits for the next chunk
    (the official SDK drops such bytes silently; nothing is refused either way)."""
    left, right = tone(440, 0.5, 48000), tone(660, 0.5, 48000)
    stereo = np.stack([left, right], axis=1).tobytes()
    whole = rtc.AudioResampler(48000, 16000, num_channels=2)
    expected = samples_of(whole.push(bytearray(stereo)) + whole.flush())
    cut = rtc.AudioResampler(48000, 16000, num_channels=2)
    frames: List[rtc.AudioFrame] = []
    for start in range(0, len(stereo), 1001):
        frames += cut.push(bytearray(stereo[start : start + 1001]))
    frames += cut.flush()
    assert all(f.num_channels == 2 for f in frames)
    assert np.array_equal(samples_of(frames), expected)
    assert cut.push(bytearray(3)) == []  # one sample and a half: waits
    assert cut.flush() == []  # ... and is dropped at the end


def test_resampler_can_be_reused_after_flush() -> None:
    def run(resampler: rtc.AudioResampler, samples: np.ndarray) -> np.ndarray:
        return samples_of(resampler.push(bytearray(samples.tobytes())) + resampler.flush())

    def reused_and_fresh() -> Tuple[np.ndarray, np.ndarray]:
        # Resamplers live only in here: a failed assertion must not keep them alive.
        quality = rtc.AudioResamplerQuality.HIGH
        reused = rtc.AudioResampler(48000, 16000, quality=quality)
        run(reused, tone(440, 0.1, 48000))
        second = run(reused, tone(1000, 0.1, 48000))
        fresh = run(rtc.AudioResampler(48000, 16000, quality=quality), tone(1000, 0.1, 48000))
        return second, fresh

    second, fresh = reused_and_fresh()
    assert len(second) == len(fresh)
    assert np.max(np.abs(second.astype(np.int32) - fresh.astype(np.int32))) <= 4


def test_resampler_handle_is_released_with_the_object() -> None:
    gc.collect()
    before = _native.handle_count()
    resampler = rtc.AudioResampler(48000, 16000)
    assert _native.handle_count() == before + 1
    resampler.push(bytearray(tone(440, 0.1, 48000).tobytes()))
    del resampler
    gc.collect()
    assert _native.handle_count() == before


# ---- remix_and_resample --------------------------------------------------------------


def test_remix_stereo_to_mono_averages() -> None:
    stereo = np.array([1000, 3000, -500, 1500, 0, 0, 32767, 32767], dtype=np.int16)
    frame = rtc.AudioFrame(stereo.tobytes(), 48000, 2, 4)
    mono = frame.remix_and_resample(48000, 1)
    assert (mono.sample_rate, mono.num_channels, mono.samples_per_channel) == (48000, 1, 4)
    assert list(mono.data) == [2000, 500, 0, 32767]


def test_remix_mono_to_stereo_duplicates() -> None:
    mono = np.array([1, -2, 300, -32768], dtype=np.int16)
    frame = rtc.AudioFrame(mono.tobytes(), 16000, 1, 4)
    stereo = frame.remix_and_resample(16000, 2)
    assert (stereo.num_channels, stereo.samples_per_channel) == (2, 4)
    assert list(stereo.data) == [1, 1, -2, -2, 300, 300, -32768, -32768]


def test_remix_and_resample_together() -> None:
    left, right = tone(440, 0.2, 48000), tone(440, 0.2, 48000)
    frame = rtc.AudioFrame(np.stack([left, right], axis=1).tobytes(), 48000, 2, len(left))
    out = frame.remix_and_resample(16000, 1)
    assert (out.sample_rate, out.num_channels) == (16000, 1)
    assert abs(out.samples_per_channel - 3200) <= 1
    samples = np.frombuffer(out.data, dtype=np.int16)
    assert abs(peak_hz(samples, 16000) - 440) < 6
    assert rms(samples[200:-200]) == pytest.approx(rms(left), rel=0.03)
    # The source frame is untouched.
    assert np.array_equal(np.frombuffer(frame.data, dtype=np.int16)[::2], left)


def test_remix_and_resample_refuses_nonsense() -> None:
    frame = rtc.AudioFrame.create(48000, 1, 480)
    with pytest.raises(Exception):
        frame.remix_and_resample(0, 1)
    with pytest.raises(Exception):
        frame.remix_and_resample(16000, 0)


# ---- AudioMixer ----------------------------------------------------------------------


async def test_mixer_mixes_two_tones_and_ends_with_its_inputs() -> None:
    mixer = rtc.AudioMixer(48000, 1, blocksize=4800)
    mixer.add_stream(rtc.utils.sine_wave_generator(440, 1.0))
    mixer.add_stream(rtc.utils.sine_wave_generator(1000, 1.0))
    mixer.end_input()
    frames = [f async for f in mixer]
    assert all(f.samples_per_channel == 4800 and f.sample_rate == 48000 for f in frames)
    out = samples_of(frames)
    assert len(out) == 48000
    a, b = peaks_hz(out, 48000, 2)
    assert abs(a - 440) < 3 and abs(b - 1000) < 3
    expected = rms(samples_of([f async for f in rtc.utils.sine_wave_generator(440, 1.0)]))
    assert rms(out) == pytest.approx(expected * np.sqrt(2), rel=0.02)
    with pytest.raises(RuntimeError):
        mixer.add_stream(rtc.utils.sine_wave_generator(440, 0.1))
    with pytest.raises(StopAsyncIteration):
        await mixer.__anext__()  # stays ended
    await mixer.aclose()


async def test_mixer_saturates_and_pads_short_streams() -> None:
    async def constant(value: int, blocks: int) -> AsyncIterator[rtc.AudioFrame]:
        for _ in range(blocks):
            yield rtc.AudioFrame(np.full(480, value, dtype=np.int16).tobytes(), 48000, 2, 240)

    mixer = rtc.AudioMixer(48000, 2, blocksize=480)
    mixer.add_stream(constant(30000, 4))  # 960 samples per channel
    mixer.add_stream(constant(20000, 3))  # 720: the second block is padded
    mixer.end_input()
    frames = [f async for f in mixer]
    assert [f.num_channels for f in frames] == [2, 2]
    out = samples_of(frames).reshape(-1, 2)
    assert (out[:720] == 32767).all()
    assert (out[720:] == 30000).all()
    await mixer.aclose()


async def test_mixer_waits_for_slow_streams_without_losing_frames() -> None:
    async def slow() -> AsyncIterator[rtc.AudioFrame]:
        for i in range(3):
            await asyncio.sleep(0.12)
            yield rtc.AudioFrame(np.full(100, i + 1, dtype=np.int16).tobytes(), 1000, 1, 100)

    mixer = rtc.AudioMixer(1000, 1, blocksize=100, stream_timeout_ms=40)
    mixer.add_stream(slow())
    mixer.end_input()
    out = samples_of([f async for f in mixer])
    assert list(np.unique(out)) == [1, 2, 3]
    assert len(out) == 300


async def test_mixer_drops_a_stalled_stream_after_end_input() -> None:
    cancelled = asyncio.Event()

    async def stalled() -> AsyncIterator[rtc.AudioFrame]:
        try:
            await asyncio.sleep(3600)
            yield rtc.AudioFrame.create(1000, 1, 100)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    mixer = rtc.AudioMixer(1000, 1, blocksize=100, stream_timeout_ms=10)
    mixer.add_stream(stalled())
    mixer.add_stream(rtc.utils.sine_wave_generator(100, 0.5, sample_rate=1000))
    mixer.end_input()
    frames = await asyncio.wait_for(_collect(mixer), 5)
    assert len(frames) == 5
    assert cancelled.is_set()
    await mixer.aclose()


async def test_mixer_aclose_ends_iteration_and_cancels_reads() -> None:
    cancelled = asyncio.Event()

    async def then_silent() -> AsyncIterator[rtc.AudioFrame]:
        try:
            for _ in range(4):
                await asyncio.sleep(0.01)
                yield rtc.AudioFrame(np.full(160, 100, dtype=np.int16).tobytes(), 16000, 1, 160)
            await asyncio.sleep(3600)  # a read stays pending here
        except asyncio.CancelledError:
            cancelled.set()
            raise

    mixer = rtc.AudioMixer(16000, 1, blocksize=320, stream_timeout_ms=20)
    stream = then_silent()
    mixer.add_stream(stream)
    first = await asyncio.wait_for(mixer.__anext__(), 5)
    assert first.samples_per_channel == 320 and first.data[0] == 100
    consumer = asyncio.ensure_future(_collect(mixer))
    await asyncio.sleep(0.2)
    await mixer.aclose()
    frames = await asyncio.wait_for(consumer, 5)  # iteration ends
    assert 1 <= len(frames) <= 2 and all(f.data[0] == 100 for f in frames)
    assert cancelled.is_set() and not stream.ag_running
    with pytest.raises(RuntimeError):
        mixer.add_stream(then_silent())


async def test_mixer_remove_stream_and_idle_mixer() -> None:
    mixer = rtc.AudioMixer(8000, 1, blocksize=80)
    gen = rtc.utils.sine_wave_generator(200, 10.0, sample_rate=8000)
    mixer.add_stream(gen)
    mixer.add_stream(gen)  # twice: still one input
    first = await asyncio.wait_for(mixer.__anext__(), 5)
    assert first.samples_per_channel == 80
    mixer.remove_stream(gen)
    mixer.remove_stream(gen)  # unknown now: nothing happens
    await asyncio.sleep(0.05)  # no inputs: the mixer idles, it does not end
    mixer.end_input()
    frames = await asyncio.wait_for(_collect(mixer), 5)
    # Whatever was mixed before the removal, then the end.
    assert all(f.samples_per_channel == 80 for f in frames)
    await mixer.aclose()
    await gen.aclose()


async def test_mixer_remove_stream_while_its_read_is_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = asyncio.Event()

    async def stalled() -> AsyncIterator[rtc.AudioFrame]:
        try:
            await asyncio.sleep(3600)
            yield rtc.AudioFrame.create(1000, 1, 100)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    mixer = rtc.AudioMixer(1000, 1, blocksize=100, stream_timeout_ms=1000)
    stream = stalled()
    mixer.add_stream(stream)
    await asyncio.sleep(0.05)  # the mixer waits on the read
    mixer.remove_stream(stream)
    await asyncio.wait_for(cancelled.wait(), 5)
    mixer.end_input()
    assert await asyncio.wait_for(_collect(mixer), 5) == []
    await mixer.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_mixer_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        rtc.AudioMixer(48000, 1)


async def _collect(mixer: rtc.AudioMixer) -> List[rtc.AudioFrame]:
    return [f async for f in mixer]
