"""Calling a lifecycle that may be async: one way for watch, locate, soak and the CLI.

A coroutine function (or a callable whose ``__call__`` is one) runs to
completion on an event loop: the one given, else a fresh loop the
``Lifecycle`` owns and closes. A plain function that returns an awaitable
gets the same. A fresh loop cannot be started inside a running one, and
saying so beats a deadlock.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from reftrace.objects import class_attribute

T = TypeVar("T")


def is_awaitable(obj: object) -> bool:
    """``inspect.isawaitable`` without its ``isinstance(obj, Awaitable)``, which
    fills ABC caches (new objects) the first time it meets a type."""
    cls = type(obj)
    if cls is types.CoroutineType:
        return True
    if cls is types.GeneratorType:
        return bool(obj.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE)  # type: ignore[attr-defined]
    return class_attribute(cls, "__await__") is not None


def is_coroutine_function(fn: object) -> bool:
    """True for a coroutine function, and for an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        class_attribute(type(fn), "__call__")
    )


class Lifecycle:
    """Calls ``fn`` with no arguments, awaiting what it returns when awaitable.

    ``what`` names the caller in errors (``"soak()"``). Close it when done:
    a loop it made is shut down then.
    """

    def __init__(
        self,
        fn: Callable[[], Any],
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        what: str = "reftrace",
    ) -> None:
        self.fn = fn
        self.what = what
        self.loop = loop
        self.own_loop = False
        if loop is None and is_coroutine_function(fn):
            self.loop = self._fresh_loop()

    def _fresh_loop(self) -> asyncio.AbstractEventLoop:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                f"{self.what} runs coroutines to completion on an event loop of its own and "
                "cannot do that inside a running loop; call it from synchronous code"
            )
        self.own_loop = True
        return asyncio.new_event_loop()

    def __call__(self) -> Any:
        """One call; the result, awaited when it is awaitable."""
        result = self.fn()
        if is_awaitable(result):
            return self.run(result)
        return result

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` to completion on the lifecycle's loop."""
        if self.loop is None:
            self.loop = self._fresh_loop()
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        """Shut down and close the loop this lifecycle made, if it made one."""
        loop, self.loop = self.loop, None
        if self.own_loop and loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
