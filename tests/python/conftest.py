"""Fixtures of the livekit.rtc tests.

One real LiveKit server serves the whole session (tests/lkserver.py); every test gets
its own room name, a token factory, and rooms that are closed at the end. After each
test, `no_leaks` checks that the native core holds no handle and the client routes no
room and awaits no callback: every test doubles as a leak test.
"""

from __future__ import annotations

import gc
import sys
import uuid
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Dict, Iterator, List, Optional

import pytest

from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lkserver import API_KEY, API_SECRET, LiveKitServer  # noqa: E402

from helpers import native_quiet, settle  # noqa: E402


@pytest.fixture(scope="session")
def server() -> Iterator[LiveKitServer]:
    with LiveKitServer() as s:
        yield s


@pytest.fixture
def room_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


TokenFactory = Callable[..., str]


@pytest.fixture
def token(room_name: str) -> TokenFactory:
    """token(identity, room=..., name=..., metadata=..., attributes=..., kind=..., secret=...)"""

    def make(
        identity: str,
        *,
        room: Optional[str] = None,
        name: Optional[str] = None,
        metadata: Optional[str] = None,
        attributes: Optional[Dict[str, str]] = None,
        can_update_own_metadata: bool = True,
        kind: Optional[str] = None,
        secret: str = API_SECRET,
    ) -> str:
        grants = api.VideoGrants(
            room_join=True,
            room=room or room_name,
            can_update_own_metadata=can_update_own_metadata,
        )
        t = api.AccessToken(API_KEY, secret).with_identity(identity).with_grants(grants)
        if name is not None:
            t = t.with_name(name)
        if metadata is not None:
            t = t.with_metadata(metadata)
        if attributes is not None:
            t = t.with_attributes(attributes)
        if kind is not None:
            t = t.with_kind(kind)
        return t.to_jwt()

    return make


@pytest.fixture
async def rooms() -> AsyncIterator[Callable[[], rtc.Room]]:
    """A Room factory; every room it made is closed when the test ends."""
    made: List[rtc.Room] = []

    def make() -> rtc.Room:
        room = rtc.Room()
        made.append(room)
        return room

    yield make
    for room in made:
        await room.aclose()
    # What the test's listeners kept (tracks, publications) goes with the rooms.
    made.clear()
    gc.collect()


@pytest.fixture
def join(
    server: LiveKitServer, token: TokenFactory, rooms: Callable[[], rtc.Room]
) -> Callable[..., Awaitable[rtc.Room]]:
    """await join(identity, **token_options) -> a connected Room (closed at the end)."""

    async def go(identity: str, **kw: object) -> rtc.Room:
        room = rooms()
        await room.connect(server.url, token(identity, **kw))
        return room

    return go


@pytest.fixture
async def lkapi(server: LiveKitServer) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(url=server.http_url, api_key=API_KEY, api_secret=API_SECRET)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    yield
    # Orphaned handles are dropped by a janitor thread: give it a moment.
    await settle(native_quiet, timeout=5.0)
    from livekit.rtc import _native
    from livekit.rtc._ffi_client import FfiClient

    client = FfiClient.instance()
    assert _native.handle_count() == 0, f"native handles left behind: {_native.handle_kinds()}"
    assert client.room_count() == 0, "rooms still routed"
    assert client.waiter_count() == 0, "requests still awaited"
