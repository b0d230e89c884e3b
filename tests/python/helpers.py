"""Helpers shared by the tests: waiting for conditions and recording room events."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

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


class SignalProxy:
    """A TCP proxy in front of the server's signal port whose connections can be cut:
    the signal connection is lost while the peer connections (UDP) stay up, which
    makes a room resume its session."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self._pipes: List["asyncio.Task[None]"] = []

    async def start(self) -> "SignalProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            self._pipes.append(asyncio.ensure_future(task))

    def sever(self) -> None:
        """Cuts every connection made so far (new ones still go through)."""
        for task in self._pipes:
            task.cancel()
        self._pipes.clear()

    async def aclose(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
