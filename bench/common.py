"""What the bench workers (hold.py, burst.py) share: access tokens, the JSON-line
protocol with bench.py, bench.py's commands on stdin, and a last-resort watchdog.

Workers print one JSON object per line on stdout, each with an "event" key; logs go
to stderr. bench.py drives them with one-line commands on stdin ("stop ..."); end of
input (bench.py gone) counts as a stop. Only the documented `livekit.rtc` API is used,
so the same code runs on the official SDK and on our package.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Optional

from livekit import api, rtc


def token(key: str, secret: str, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return api.AccessToken(key, secret).with_identity(identity).with_grants(grants).to_jwt()


_emit_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """One protocol line on stdout (safe from any thread)."""
    line = json.dumps({"event": event, **fields})
    with _emit_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def read_commands(on_line: Callable[[str], object]) -> None:
    """Calls `on_line` on a background thread for every stdin line; "eof" at the end."""

    def reader() -> None:
        for line in sys.stdin:
            if line.strip():
                on_line(line.strip())
        on_line("eof")

    threading.Thread(target=reader, name="bench-stdin", daemon=True).start()


def loop_commands(loop: asyncio.AbstractEventLoop) -> "asyncio.Queue[str]":
    """bench.py's commands as an asyncio queue on `loop`."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    read_commands(lambda line: loop.call_soon_threadsafe(queue.put_nowait, line))
    return queue


def watchdog(seconds: float) -> None:
    """Ends the process after `seconds` whatever happens (bench.py also has timeouts)."""

    def fire() -> None:
        time.sleep(seconds)
        print(f"watchdog: still running after {seconds:.0f} s, exiting", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=fire, name="bench-watchdog", daemon=True).start()


async def wait_for_peer(room: rtc.Room, identity: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while identity not in room.remote_participants:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{identity} did not join within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def leave(room: rtc.Room) -> None:
    """Disconnects, bounded to 5 s; failures are only logged."""
    try:
        await asyncio.wait_for(room.disconnect(), 5)
    except Exception as e:  # noqa: BLE001 - best effort, reported only
        print(f"disconnect: {e!r}", file=sys.stderr, flush=True)


def exit_now(code: int = 0) -> None:
    """Ends the process without the interpreter's shutdown, which can wait on a
    stack's native threads."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def leave_and_exit(room: Optional[rtc.Room], loop: asyncio.AbstractEventLoop, code: int = 0) -> None:
    """`leave` then `exit_now`, from a thread other than the loop's."""
    if room is not None:
        try:
            asyncio.run_coroutine_threadsafe(leave(room), loop).result(6)
        except Exception as e:  # noqa: BLE001 - best effort, reported only
            print(f"disconnect: {e!r}", file=sys.stderr, flush=True)
    exit_now(code)
