"""Burst benchmark: memory and delivery of COUNT concurrent `publish_data` calls.

The sender pre-builds COUNT payloads of SIZE bytes (each starts with its index, u32),
measures its baseline RSS, then creates one `publish_data(payload, reliable=True)`
coroutine per payload, in index order, and awaits them all with `asyncio.gather`.
A background thread samples VmRSS from /proc/self/status every 50 ms; VmHWM is reset
at the baseline (clear_refs) as a cross-check of the sampled peak. The receiver, in
another process, records which indices arrive, in which order, and when.

    burst.py send URL KEY SECRET ROOM COUNT SIZE [RSS_CAP_MB]
    burst.py recv URL KEY SECRET ROOM COUNT
    burst.py floor COUNT SIZE    (no SDK: the Python/asyncio share of the growth)

send prints {"event": "t0", "t0": CLOCK_MONOTONIC at the start of the burst},
{"event": "published", ...} once every call returned, and {"event": "result", ...} on
"stop" (from its stdin thread, so a saturated event loop cannot hold the report back)
or, ending the process at once, when its RSS has grown by more than RSS_CAP_MB.
recv prints {"event": "ready"}, {"event": "complete"} once every index arrived, and on
"stop DEADLINE" {"event": "result", ...} about the packets that arrived by DEADLINE.
"""

from __future__ import annotations

import asyncio
import gc
import math
import struct
import sys
import threading
import time
from typing import Any, Callable, Coroutine, Dict, List, Optional

from livekit import rtc

from common import (
    emit,
    exit_now,
    leave,
    leave_and_exit,
    loop_commands,
    read_commands,
    token,
    wait_for_peer,
    watchdog,
)

TOPIC = "bench-burst"
INDEX = struct.Struct("!I")


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class RssSampler:
    """Peak VmRSS above a baseline, sampled on a background thread. Past `cap_kib` of
    growth it calls `on_cap` (on its thread) and stops sampling."""

    def __init__(self, period: float, cap_kib: int = 0, on_cap: Optional[Callable[[], None]] = None) -> None:
        self.period = period
        self.cap_kib = cap_kib
        self.on_cap = on_cap
        self.capped_at: Optional[float] = None
        self.baseline = status_kib("VmRSS")
        try:  # "5" resets VmHWM (the kernel's peak RSS) to the current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.peak = self.baseline
        self.peak_at = time.monotonic()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            rss = status_kib("VmRSS")
            self.samples += 1
            if rss > self.peak:
                self.peak, self.peak_at = rss, time.monotonic()
            if self.cap_kib and rss - self.baseline > self.cap_kib:
                self.capped_at = time.monotonic()
                if self.on_cap is not None:
                    self.on_cap()
                return

    def stop(self) -> Dict[str, Any]:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(2)
        now = status_kib("VmRSS")
        return {
            "baseline_mb": self.baseline / 1024,
            "peak_growth_mb": (self.peak - self.baseline) / 1024,
            "peak_at": self.peak_at,
            "hwm_growth_mb": (status_kib("VmHWM") - self.baseline) / 1024 if self.hwm_reset else None,
            "end_growth_mb": (now - self.baseline) / 1024,
            "samples": self.samples,
        }


class Burst:
    """COUNT pre-built payloads, the RSS sampler, and one gather over a coroutine per
    payload; `report()` may run on any thread, during or after the burst."""

    def __init__(self, count: int, size: int, cap_mb: int = 0) -> None:
        pad = b"." * (size - INDEX.size)
        self.payloads = [INDEX.pack(i) + pad for i in range(count)]
        gc.collect()
        self.lock = threading.Lock()
        self.reported = False
        # The baseline includes the payloads. Past the cap the process reports and
        # ends at once: a runaway stack must not take the machine's memory.
        self.sampler = RssSampler(0.05, cap_mb * 1024, self._capped)
        self.tasks: List["asyncio.Task[Any]"] = []
        self.t0: Optional[float] = None
        self.published: Optional[float] = None
        self.returned = 0
        self.failed = 0

    async def run(self, make: Callable[[bytes], Coroutine[Any, Any, Any]]) -> None:
        loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()
        emit("t0", t0=self.t0, baseline_mb=self.sampler.baseline / 1024)
        coros = [make(p) for p in self.payloads]
        with self.lock:
            # What gather(*coros) does, keeping the tasks to count those that returned.
            self.tasks.extend(loop.create_task(c) for c in coros)
        del coros
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        published = time.monotonic()
        errors = [r for r in results if isinstance(r, BaseException)]
        with self.lock:
            self.published, self.returned, self.failed = published, len(results), len(errors)
            self.tasks.clear()  # "after +MB" then shows what stays once Python let go
        del results
        gc.collect()
        emit(
            "published",
            seconds=published - self.t0,
            failed=len(errors),
            first_error=repr(errors[0])[:200] if errors else None,
        )

    def _capped(self) -> None:
        if self.report():
            exit_now()

    def report(self) -> bool:
        """Prints the result once; False if it was already printed."""
        with self.lock:
            if self.reported:
                return False
            self.reported = True
        memory = self.sampler.stop()
        capped_at = self.sampler.capped_at
        with self.lock:
            if self.published is None:
                done = [t for t in self.tasks if t.done()]
                self.returned = len(done)
                self.failed = sum(1 for t in done if t.cancelled() or t.exception() is not None)
            t0, published = self.t0, self.published
        peak_at = memory.pop("peak_at")
        emit(
            "result",
            count=len(self.payloads),
            returned=self.returned,
            failed=self.failed,
            publish_s=None if published is None or t0 is None else published - t0,
            peak_after_s=None if t0 is None else peak_at - t0,
            capped_after_s=None if capped_at is None or t0 is None else capped_at - t0,
            **memory,
        )
        return True


async def send(url: str, key: str, secret: str, name: str, count: int, size: int, cap_mb: int) -> None:
    loop = asyncio.get_running_loop()
    room = rtc.Room()
    await room.connect(url, token(key, secret, name, "tx"))
    await wait_for_peer(room, "rx", 30)
    await asyncio.sleep(0.5)
    burst = Burst(count, size, cap_mb)

    def on_command(line: str) -> None:
        if line.split()[0] in ("stop", "eof") and burst.report():
            leave_and_exit(room, loop)

    read_commands(on_command)
    local = room.local_participant
    await burst.run(lambda p: local.publish_data(p, reliable=True, topic=TOPIC))
    await asyncio.Event().wait()  # the stdin thread reports and ends the process


async def floor(count: int, size: int) -> None:
    """The same burst with no SDK: each coroutine awaits a future the loop resolves
    at once. What 50,000 pending tasks cost in Python alone."""
    loop = asyncio.get_running_loop()
    burst = Burst(count, size)

    async def nothing(payload: bytes) -> None:
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut

    await burst.run(nothing)
    await asyncio.sleep(0.2)
    burst.report()
    exit_now()


async def receive(url: str, key: str, secret: str, name: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    commands = loop_commands(loop)
    room = rtc.Room()
    indices: List[int] = []
    arrived: List[float] = []
    sizes: List[int] = []
    seen: set[int] = set()
    announced = False

    def on_data(packet: rtc.DataPacket) -> None:
        nonlocal announced
        if packet.topic != TOPIC:
            return
        index = INDEX.unpack_from(packet.data)[0]
        arrived.append(time.monotonic())
        indices.append(index)
        sizes.append(len(packet.data))
        seen.add(index)
        if len(seen) >= count and not announced:
            announced = True
            emit("complete", at=arrived[-1])

    room.on("data_received", on_data)
    await room.connect(url, token(key, secret, name, "rx"))
    emit("ready")
    deadline = math.inf
    while True:
        words = (await commands.get()).split()
        if words[0] == "eof":
            break
        if words[0] == "stop":
            deadline = float(words[1]) if len(words) > 1 else math.inf
            break

    unique: set[int] = set()
    duplicates = 0
    in_order = True
    last = -1
    nbytes = 0
    first_at = last_at = None
    for index, at, n in zip(indices, arrived, sizes):
        if at > deadline:
            break
        if index in unique:
            duplicates += 1
            continue
        unique.add(index)
        nbytes += n
        in_order = in_order and index > last
        last = max(last, index)
        first_at = at if first_at is None else first_at
        last_at = at
    emit(
        "result",
        received=len(unique),
        duplicates=duplicates,
        in_order=in_order,
        bytes=nbytes,
        first_at=first_at,
        last_at=last_at,
        late=sum(1 for at in arrived if at > deadline),
    )
    await leave(room)
    exit_now()


def main() -> None:
    watchdog(1800)
    if sys.argv[1:2] == ["floor"]:
        asyncio.run(floor(int(sys.argv[2]), int(sys.argv[3])))
        return
    role, url, key, secret, name = sys.argv[1:6]
    count = int(sys.argv[6])
    if role == "send":
        cap_mb = int(sys.argv[8]) if len(sys.argv) > 8 else 0
        asyncio.run(send(url, key, secret, name, count, int(sys.argv[7]), cap_mb))
    elif role == "recv":
        asyncio.run(receive(url, key, secret, name, count))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
