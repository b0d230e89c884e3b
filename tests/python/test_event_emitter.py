"""EventEmitter: registration forms, argument trimming, once/off, error isolation."""

from __future__ import annotations

import logging
from typing import Any, List

import pytest

from livekit.rtc import EventEmitter


def test_on_decorator_and_direct_forms() -> None:
    em: EventEmitter[str] = EventEmitter()
    calls: List[Any] = []

    @em.on("x")
    def a(v: int) -> None:
        calls.append(("a", v))

    em.on("x", lambda v: calls.append(("b", v)))
    em.emit("x", 1)
    assert calls == [("a", 1), ("b", 1)]
    em.emit("unknown", 1)  # nobody listens: fine


def test_handlers_may_take_fewer_arguments() -> None:
    em: EventEmitter[str] = EventEmitter()
    calls: List[Any] = []
    em.on("e", lambda: calls.append("none"))
    em.on("e", lambda a: calls.append(a))
    em.on("e", lambda *args: calls.append(args))
    em.emit("e", 1, 2)
    assert calls == ["none", 1, (1, 2)]


def test_once_and_off() -> None:
    em: EventEmitter[str] = EventEmitter()
    calls: List[int] = []
    em.once("e", lambda v: calls.append(v))

    def keep(v: int) -> None:
        calls.append(-v)

    em.on("e", keep)
    em.emit("e", 1)
    em.emit("e", 2)
    em.off("e", keep)
    em.off("e", keep)  # twice is harmless
    em.emit("e", 3)
    assert calls == [1, -1, -2]


def test_async_handlers_are_refused() -> None:
    em: EventEmitter[str] = EventEmitter()

    async def handler() -> None:
        pass

    with pytest.raises(ValueError):
        em.on("e", handler)


def test_handler_errors_are_logged_and_isolated(caplog: pytest.LogCaptureFixture) -> None:
    em: EventEmitter[str] = EventEmitter()
    calls: List[str] = []

    def bad() -> None:
        raise KeyError("oops")

    em.on("e", bad)
    em.on("e", lambda: calls.append("after"))
    with caplog.at_level(logging.ERROR, logger="livekit"):
        em.emit("e")
    assert calls == ["after"]
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


def test_a_type_error_in_a_handler_propagates_as_in_the_official_sdk() -> None:
    emitter: EventEmitter[str] = EventEmitter()
    calls: List[int] = []

    def wrong(a: int) -> None:
        calls.append(a)
        raise TypeError("bad handler")

    emitter.on("e", wrong)
    with pytest.raises(TypeError):
        emitter.emit("e", 1)
    assert calls == [1]
