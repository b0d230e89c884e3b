"""Mixing several async streams of audio frames into one (needs numpy).

The mixer works in rounds. Each round reads every input until it holds one block
(`blocksize` samples per channel) or its read times out; the inputs' blocks, padded
with silence when short, are summed with saturation into one output frame. A read
that times out is not cancelled (that would end an async generator for good): the
next round waits on the same read. Inputs leave the mix when they end; once
`end_input()` was called, the output ends when no input is left.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, AsyncIterator, Dict, List, Optional, Tuple

from .audio_frame import AudioFrame
from .log import logger

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    _Samples = NDArray[np.int16]

_Stream = AsyncIterator[AudioFrame]

# After end_input(), an input whose reads time out this many rounds in a row is
# dropped, so that the output can end.
_MAX_STALLED_ROUNDS = 10


@dataclasses.dataclass
class _Input:
    buffer: "_Samples"  # shape (samples, channels)
    read: Optional["asyncio.Future[AudioFrame]"] = None
    stalled_rounds: int = 0


class AudioMixer:
    """An async iterator of mixed `AudioFrame`s of `blocksize` samples per channel
    (by default 100 ms) from the streams given to `add_stream`."""

    def __init__(
        self,
        sample_rate: int,
        num_channels: int,
        *,
        blocksize: int = 0,
        stream_timeout_ms: int = 100,
        capacity: int = 100,
    ) -> None:
        import numpy  # noqa: F401  (fail here, not in the mixing task)

        loop = asyncio.get_running_loop()
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._block = blocksize if blocksize > 0 else sample_rate // 10
        self._timeout = stream_timeout_ms / 1000
        self._inputs: Dict[_Stream, _Input] = {}
        self._output: asyncio.Queue[Optional[AudioFrame]] = asyncio.Queue(maxsize=capacity)
        self._ending = False
        self._ended = False  # the consumer has seen the end
        self._task = loop.create_task(self._run())

    def add_stream(self, stream: AsyncIterator[AudioFrame]) -> None:
        """Adds an input (adding one twice changes nothing)."""
        if self._ending:
            raise RuntimeError("Cannot add stream after mixer has been closed")
        if stream not in self._inputs:
            self._inputs[stream] = _Input(self._empty())

    def remove_stream(self, stream: AsyncIterator[AudioFrame]) -> None:
        """Takes an input out of the mix; its buffered samples and pending read are
        dropped (the read is cancelled)."""
        inp = self._inputs.pop(stream, None)
        if inp is not None and inp.read is not None:
            _abandon(inp.read)
            inp.read = None

    def __aiter__(self) -> "AudioMixer":
        return self

    async def __anext__(self) -> AudioFrame:
        if self._ended:
            raise StopAsyncIteration
        frame = await self._output.get()
        if frame is None:
            self._ended = True
            raise StopAsyncIteration
        return frame

    def end_input(self) -> None:
        """No more inputs will be added: the output ends once the current ones end."""
        self._ending = True

    async def aclose(self) -> None:
        """Stops mixing now. Output not consumed yet may be lost; pending reads are
        cancelled and awaited (a stream should let the cancellation through once it
        has cleaned up). Iteration then ends."""
        self._ending = True
        self._task.cancel()
        await asyncio.wait({self._task})
        reads = []
        for inp in self._inputs.values():
            if inp.read is not None:
                reads.append(inp.read)
                _abandon(inp.read)
                inp.read = None
        self._inputs.clear()
        await asyncio.gather(*reads, return_exceptions=True)
        # Make room for the end marker by dropping the oldest unconsumed frames.
        while True:
            try:
                self._output.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._output.get_nowait()

    # ---- mixing ----------------------------------------------------------------------

    def _empty(self) -> "_Samples":
        import numpy as np

        return np.empty((0, self._num_channels), dtype=np.int16)

    async def _run(self) -> None:
        try:
            await self._mix()
        except Exception:
            logger.exception("AudioMixer stopped on an error")
        await self._output.put(None)

    async def _mix(self) -> None:
        import numpy as np

        while self._inputs or not self._ending:
            if not self._inputs:
                await asyncio.sleep(0.01)
                continue
            round_inputs = list(self._inputs.items())
            results = await asyncio.gather(
                *(self._contribution(stream, inp) for stream, inp in round_inputs),
                return_exceptions=True,
            )
            blocks: List["_Samples"] = []
            any_data = False
            for (stream, inp), result in zip(round_inputs, results):
                if isinstance(result, BaseException):
                    logger.warning(
                        "AudioMixer: reading stream %r failed", stream, exc_info=result
                    )
                    continue
                block, had_data, exhausted = result
                blocks.append(block)
                any_data = any_data or had_data
                if exhausted and inp.buffer.shape[0] == 0 and self._inputs.get(stream) is inp:
                    self.remove_stream(stream)
            if not any_data:
                await asyncio.sleep(0.001)
                continue
            total = np.sum(np.stack(blocks).astype(np.int32), axis=0)
            mixed = np.clip(total, -32768, 32767).astype(np.int16)
            await self._output.put(
                AudioFrame(mixed.tobytes(), self._sample_rate, self._num_channels, self._block)
            )

    async def _contribution(self, stream: _Stream, inp: _Input) -> Tuple["_Samples", bool, bool]:
        """One block of `stream` for this round: (samples, had data, stream ended)."""
        import numpy as np

        had_data = inp.buffer.shape[0] > 0
        exhausted = False
        # An input removed during the round starts no new read.
        while inp.buffer.shape[0] < self._block and self._inputs.get(stream) is inp:
            if inp.read is None:
                inp.read = asyncio.ensure_future(stream.__anext__())
            read = inp.read
            done, _ = await asyncio.wait({read}, timeout=self._timeout)
            if not done:
                logger.warning("AudioMixer: stream %r timeout, ignoring", stream)
                inp.stalled_rounds += 1
                exhausted = self._ending and inp.stalled_rounds >= _MAX_STALLED_ROUNDS
                break
            if read.cancelled():
                break  # the input was removed (or the mixer closed) meanwhile
            inp.stalled_rounds = 0
            if inp.read is read:
                inp.read = None
            try:
                frame = read.result()
            except StopAsyncIteration:
                exhausted = True
                break
            except asyncio.TimeoutError:
                logger.warning("AudioMixer: stream %r timeout, ignoring", stream)
                break
            samples = self._samples_of(stream, frame)
            if samples is not None and samples.shape[0]:
                inp.buffer = np.concatenate((inp.buffer, samples))
                had_data = True
        if inp.buffer.shape[0] >= self._block:
            block, inp.buffer = inp.buffer[: self._block], inp.buffer[self._block :]
        else:
            block = np.zeros((self._block, self._num_channels), dtype=np.int16)
            block[: inp.buffer.shape[0]] = inp.buffer
            inp.buffer = self._empty()
        return block, had_data, exhausted

    def _samples_of(self, stream: _Stream, frame: AudioFrame) -> Optional["_Samples"]:
        import numpy as np

        if frame.num_channels != self._num_channels:
            logger.warning(
                "AudioMixer: dropped a frame of stream %r with %d channels (mixing %d)",
                stream,
                frame.num_channels,
                self._num_channels,
            )
            return None
        count = frame.samples_per_channel * frame.num_channels
        samples = np.frombuffer(frame.data, dtype=np.int16, count=count)
        return samples.reshape(-1, self._num_channels)


def _abandon(read: "asyncio.Future[AudioFrame]") -> None:
    """Cancels a read nobody waits for and marks whatever it ends with as handled."""
    read.cancel()
    read.add_done_callback(_consume)


def _consume(read: "asyncio.Future[AudioFrame]") -> None:
    if not read.cancelled():
        read.exception()
