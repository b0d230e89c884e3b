"""Two participants exchange data streams: a chat message, a text written piece by
piece, and a file.

Bob registers a handler per topic; each incoming stream comes with a reader that
bob reads whole (`read_all()`) or chunk by chunk (`async for`). Alice sends with
`send_text`, `stream_text` and `send_file`.

Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, e.g. a local server:

    python3 tests/lkserver.py -- python examples/data_streams.py

Optional: LIVEKIT_ROOM (room name, default "streams-demo").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import tempfile
from typing import Any, Coroutine, Set

from livekit import api, rtc


def make_token(identity: str, room: str) -> str:
    return (
        api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


class Bob:
    """Reads every stream on the topics "chat", "live" and "files"."""

    def __init__(self, room: rtc.Room) -> None:
        self.file_hashes: "asyncio.Queue[str]" = asyncio.Queue()
        self.done = asyncio.Event()
        self.pending = 3
        self.tasks: Set["asyncio.Task[None]"] = set()
        room.register_text_stream_handler("chat", self.on_chat)
        room.register_text_stream_handler("live", self.on_live)
        room.register_byte_stream_handler("files", self.on_file)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Handlers are plain functions: the reading happens in a task.
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.finished)

    def finished(self, task: "asyncio.Task[None]") -> None:
        self.tasks.discard(task)
        self.pending -= 1
        if self.pending == 0:
            self.done.set()

    def on_chat(self, reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            print(f"[bob] chat from {sender}: {text!r}")

        self.spawn(read())

    def on_live(self, reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            text = ""
            async for chunk in reader:
                text += chunk
            print(f"[bob] streamed from {sender}: {text!r}")

        self.spawn(read())

    def on_file(self, reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            h = hashlib.sha256()
            size = 0
            async for chunk in reader:
                h.update(chunk)
                size += len(chunk)
            info = reader.info
            expected = await self.file_hashes.get()
            verdict = "sha256 matches" if h.hexdigest() == expected else "sha256 DIFFERS"
            print(
                f"[bob] file {info.name} ({info.mime_type}, {size} bytes) from {sender}: {verdict}"
            )

        self.spawn(read())


async def main() -> int:
    url = os.environ["LIVEKIT_URL"]
    room_name = os.environ.get("LIVEKIT_ROOM", "streams-demo")
    async with rtc.Room() as alice, rtc.Room() as bob_room:
        bob = Bob(bob_room)  # handlers first: streams on other topics are dropped
        await bob_room.connect(url, make_token("bob", room_name))
        await alice.connect(url, make_token("alice", room_name))
        while "alice" not in bob_room.remote_participants:
            await asyncio.sleep(0.05)
        lp = alice.local_participant

        info = await lp.send_text("Hello Bob! ✓", topic="chat")
        print(f"[alice] sent chat message {info.stream_id}")

        writer = await lp.stream_text(topic="live")
        for word in ("one ", "two ", "three "):
            await writer.write(word)
        await writer.aclose()

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "report.txt")
            data = os.urandom(256 * 1024)
            with open(path, "wb") as f:
                f.write(data)
            bob.file_hashes.put_nowait(hashlib.sha256(data).hexdigest())
            file_info = await lp.send_file(path, topic="files")
            print(f"[alice] sent {file_info.name} ({file_info.size} bytes)")

        await asyncio.wait_for(bob.done.wait(), 20)
    print("done")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
