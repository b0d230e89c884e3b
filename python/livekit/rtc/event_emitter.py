"""A small synchronous event emitter: `on` / `once` / `off` / `emit`.

Handlers run on the event loop that delivers the event. A handler may declare fewer
positional parameters than the event carries (e.g. `def on_disconnected(): ...`); it
then receives only the leading arguments. An exception in a handler is logged and does
not reach the code that emitted the event, so one faulty handler cannot break a room.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Generic, Optional, TypeVar

from .log import logger

T = TypeVar("T")

# None means "pass every argument" (the handler takes *args or could not be inspected).
_Arity = Optional[int]


def _positional_arity(callback: Callable[..., Any]) -> _Arity:
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def _is_async(callback: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)
    )


class EventEmitter(Generic[T]):
    """Registers handlers per event name and calls them in registration order."""

    def __init__(self) -> None:
        self._handlers: Dict[T, Dict[Callable[..., Any], _Arity]] = {}

    def on(self, event: T, callback: Optional[Callable[..., Any]] = None) -> Callable[..., Any]:
        """Calls `callback` on every `event`; without a callback, returns a decorator."""
        if callback is None:

            def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
                self.on(event, fn)
                return fn

            return decorator
        if _is_async(callback):
            # A coroutine nobody awaits would silently do nothing.
            raise ValueError(
                "async callbacks cannot be registered with .on(); start a task from a "
                "synchronous callback instead (asyncio.create_task)"
            )
        self._handlers.setdefault(event, {})[callback] = _positional_arity(callback)
        return callback

    def once(self, event: T, callback: Optional[Callable[..., Any]] = None) -> Callable[..., Any]:
        """Like `on`, but the handler is removed before its first call."""
        if callback is None:

            def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
                self.once(event, fn)
                return fn

            return decorator
        fn = callback
        arity = _positional_arity(fn)

        def wrapper(*args: Any) -> None:
            self.off(event, wrapper)
            fn(*(args if arity is None else args[:arity]))

        self.on(event, wrapper)
        return callback

    def off(self, event: T, callback: Callable[..., Any]) -> None:
        """Removes a handler; unknown handlers are ignored."""
        handlers = self._handlers.get(event)
        if handlers is not None:
            handlers.pop(callback, None)
            if not handlers:
                del self._handlers[event]

    def emit(self, event: T, *args: Any) -> None:
        """Calls the handlers of `event` with `args`. Their exceptions are logged,
        except a `TypeError` (usually a handler with the wrong signature), which
        propagates, as the official SDK's emitter lets it."""
        handlers = self._handlers.get(event)
        if not handlers:
            return
        for callback, arity in list(handlers.items()):
            try:
                callback(*(args if arity is None else args[:arity]))
            except TypeError:
                raise
            except Exception:
                logger.exception("error in a handler of the %r event", event)
