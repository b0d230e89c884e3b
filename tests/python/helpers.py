"""Helpers shared by the tests: waiting for conditions and recording room events."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Callable, List, Tuple

from livekit import rtc


async def settle(cond: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Waits until `cond()` holds; returns its last value."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return cond()
        await asyncio.sleep(interval)
    return True


def native_quiet() -> bool:
    from livekit.rtc import _native
    from livekit.rtc._ffi_client import FfiClient

    client = FfiClient.instance()
    return _native.handle_count() == 0 and client.room_count() == 0 and client.waiter_count() == 0


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    """OS threads of this process (Python's and the core's)."""
    return len(os.listdir("/proc/self/task"))


def python_thread_count() -> int:
    return threading.active_count()


class Recorder:
    """Records the events of a room, in order, for tests to wait on."""

    def __init__(self, room: rtc.Room, *names: str) -> None:
        self.seen: List[Tuple[str, Tuple[Any, ...]]] = []
        for name in names:
            room.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.seen.append((name, args))

        return record

    def of(self, name: str) -> List[Tuple[Any, ...]]:
        return [args for n, args in self.seen if n == name]

    async def wait(
        self,
        name: str,
        pred: Callable[..., bool] = lambda *a: True,
        timeout: float = 10.0,
    ) -> Tuple[Any, ...]:
        """The first recorded `name` event whose args satisfy `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            for args in self.of(name):
                if pred(*args):
                    return args
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching {name!r} event; saw {self.seen!r}")
            await asyncio.sleep(0.02)
