"""``watch()``: the context manager around one lifecycle.

Example (a script; it prints ``['CACHE[0]']``)::

    import reftrace

    CACHE = []
    with reftrace.watch() as w:
        CACHE.append(w.track({"payload": [1, 2, 3]}))
    print([leak.path.expression for leak in w.report.leaks])
"""

from __future__ import annotations

import gc
import sys
import time
import weakref
from types import FrameType, TracebackType
from typing import Any, Generic, TypeVar

from reftrace.analysis import Ignore, Options, SlotKey, build_report
from reftrace.capture import ANALYSIS_LOCK, Capture
from reftrace.objects import loop_refcounts, type_name, untrackable_reason
from reftrace.paths import DEFAULT_MAX_DEPTH
from reftrace.report import Report
from reftrace.stores import Slot

T = TypeVar("T")

#: Non-weakrefable tracked objects are checked for other holders this often.
_SWEEP_EVERY = 64
#: A threshold the oldest generation's count of collections never reaches.
_NEVER = 2**31 - 1


class Watch:
    """Watches one block: what it tracked, what it created, and what outlived it.

    Use it through :func:`reftrace.watch`. ``track()`` and ``track_stream()``
    are valid only inside the block; ``report`` is ready once the block exits.
    """

    def __init__(
        self,
        *,
        frames: int = 1,
        max_depth: int | None = DEFAULT_MAX_DEPTH,
        survivors: bool = True,
        prove: bool = False,
        ignore: Ignore | None = None,
        allocations: int = 30,
        trace: bool = True,
    ) -> None:
        if ignore is not None and not callable(ignore):
            raise TypeError(f"ignore must be callable, got {type(ignore).__name__}")
        if isinstance(allocations, bool) or not isinstance(allocations, int) or allocations < 0:
            raise TypeError(f"allocations must be an int >= 0, got {allocations!r}")
        if max_depth is not None:
            if not isinstance(max_depth, int) or isinstance(max_depth, bool):
                raise TypeError(f"max_depth must be None or an int, got {type(max_depth).__name__}")
            if max_depth < 1:
                raise ValueError(f"max_depth must be positive, got {max_depth}")
        if not isinstance(survivors, bool):
            raise TypeError(f"survivors must be a bool, got {type(survivors).__name__}")
        if not isinstance(prove, bool):
            raise TypeError(f"prove must be a bool, got {type(prove).__name__}")
        if not isinstance(trace, bool):
            raise TypeError(f"trace must be a bool, got {type(trace).__name__}")
        self._capture = Capture(frames=frames, allocations=allocations, trace=trace)
        self._options = Options(
            max_depth=max_depth, survivors=survivors, prove=prove, ignore=ignore
        )
        self._weak: list[weakref.ref[Any]] = []
        self._held: list[Any] = []
        self._held_since_sweep = 0
        self._streams: list[weakref.ref[Any]] = []
        self._tracked = 0
        self._state = "new"  # new -> active -> done
        self._report: Report | None = None

    # -- context manager ------------------------------------------------------

    def __enter__(self) -> Watch:
        if self._state != "new":
            raise RuntimeError("a Watch can be entered only once; call reftrace.watch() again")
        self._state = "active"
        self._capture.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(exc, sys._getframe(1))

    async def __aenter__(self) -> Watch:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(exc, sys._getframe(1))

    def record_store_slots(self, slots: dict[SlotKey, list[Slot]]) -> None:
        """Have the analysis put into ``slots`` the places along each finding's
        path (and each survivor group's attachment), keyed ``("leak",
        signature)`` or ``("survivor", attachment)``.

        They are live objects: the caller traces a second run with them
        (``reftrace.locate()``) and clears the dict when done. Call before
        the block ends.
        """
        if self._state == "done":
            raise RuntimeError("record_store_slots() must be called before the block ends")
        self._options.store_slots = slots

    # -- tracking ---------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """Whether the heap from before the block is still frozen (``gc.freeze()``).

        While it is, ``gc.get_objects()`` lists only the block's new objects,
        cheaply. It stops being frozen when another watch starts inside this
        one (the block's new objects are then told apart by id), and when the
        block ends.
        """
        return self._state == "active" and self._capture.freeze_mode

    def track(self, obj: T) -> T:
        """Mark ``obj`` as something that must be collectable once the block ends.

        Returns ``obj``. The watch holds it only weakly; objects that cannot be
        weakly referenced (``dict``, ``list``, ``tuple``, ``str``) are held
        until nothing else holds them, checked every few calls and at the end
        of the block, so they never outlive what the program itself keeps.
        """
        self._require_active("track")
        reason = untrackable_reason(obj)
        if reason is not None:
            raise TypeError(f"cannot track an object of type {type_name(obj)}: {reason}")
        self._tracked += 1
        try:
            self._weak.append(weakref.ref(obj))
            return obj
        except TypeError:
            pass
        self._held.append(obj)
        self._held_since_sweep += 1
        if self._held_since_sweep >= _SWEEP_EVERY:
            self._sweep()
        return obj

    def track_stream(self, iterable: Any) -> Any:
        """Wrap a sync or async iterable; every item it yields is tracked.

        The wrapper passes items through unchanged and forwards ``close()`` /
        ``aclose()``. Items that cannot leak on their own (ints, ``None``,
        interned strings) pass through untracked.
        """
        self._require_active("track_stream")
        if not (hasattr(type(iterable), "__aiter__") or hasattr(type(iterable), "__iter__")):
            raise TypeError(
                f"track_stream() needs an iterable or async iterable, got {type_name(iterable)}"
            )
        stream: TrackedStream[Any] = TrackedStream(self, iterable)
        self._streams.append(weakref.ref(stream))
        return stream

    def _track_item(self, item: Any) -> None:
        if untrackable_reason(item) is None:
            self.track(item)

    def _sweep(self) -> int:
        """Keep only the held objects something else refers to; how many went."""
        # An object only `_held` refers to has a count of 1.
        counts = loop_refcounts(self._held)
        kept = [obj for obj, count in zip(self._held, counts) if count > 1]
        del counts
        dropped = len(self._held) - len(kept)
        # In place: a new list made in the block would be a new object of it.
        self._held[:] = kept
        self._held_since_sweep = 0
        return dropped

    def abandon(self) -> None:
        """End the watch without a report (the run was interrupted): gc and
        tracemalloc are restored and nothing tracked is held any more. Does
        nothing unless the block is running."""
        if self._state != "active":
            return
        self._state = "done"
        for stream in [ref() for ref in self._streams]:
            if stream is not None:
                stream._detach()
        self._streams = []
        self._weak = []
        self._held = []
        self._capture.abort()

    def _require_active(self, what: str) -> None:
        if self._state != "active":
            raise RuntimeError(f"{what}() is only valid inside the watch() block")

    # -- report -------------------------------------------------------------------

    @property
    def report(self) -> Report:
        """The report of the block; available once the block has exited."""
        if self._report is None:
            raise RuntimeError("the report is ready only after the watch() block exits")
        return self._report

    def _finish(self, exc: BaseException | None, caller: FrameType | None) -> None:
        self._state = "done"
        t0 = time.perf_counter()
        for stream in [ref() for ref in self._streams]:
            if stream is not None:
                stream._detach()
        self._streams.clear()
        # Reports are built one at a time: an analysis lists the whole heap,
        # and another one running meanwhile would see its working lists as
        # new objects and holders, and could catch its tuples half-built.
        # (acquire/release, not `with`: on 3.10 the bound __exit__ it keeps on
        # the stack would be a new object of the block, held out of sight)
        ANALYSIS_LOCK.acquire()
        # The exit collection (of the block's objects only) leaves CPython
        # counting few long-lived objects, so its next automatic collection
        # of the oldest generation is a full one, a pass over the whole heap
        # (5 s at 10M objects) that would otherwise land in the middle of the
        # report: the oldest generation waits for the analysis, and runs once
        # the program goes on. The young ones go on being collected, for
        # every thread (disabling the collector left other threads' garbage,
        # and tuples it would have untracked, piling up meanwhile).
        thresholds = gc.get_threshold()
        gc.set_threshold(thresholds[0], thresholds[1], _NEVER)
        try:
            report = self._analyse(exc, caller)
        finally:
            gc.set_threshold(*thresholds)
            ANALYSIS_LOCK.release()
        del caller
        report.timings["total"] = time.perf_counter() - t0 + report.timings.get("enter", 0.0)
        self._report = report

    def _analyse(self, exc: BaseException | None, caller: FrameType | None) -> Report:
        self._sweep()
        try:
            self._capture.collect()
        except BaseException:
            self._capture.abort()
            raise
        # The collection may have freed the last other holder of a held object
        # (a garbage cycle holding a tuple, say): let those go too, and what
        # only they held, until nothing more goes.
        while self._sweep():
            pass
        targets = [obj for obj in (ref() for ref in self._weak) if obj is not None]
        targets += self._held
        self._held.clear()
        own = {id(self), id(self.__dict__), id(self._weak), id(targets)}
        own.add(id(own))
        own.update(map(id, self._weak))
        try:
            state = self._capture.stop(own, targets)
        except BaseException:
            self._capture.abort()
            raise
        own.add(id(state.young))
        report = build_report(state, targets, self._tracked, own, exc, caller, self._options)
        del caller
        self._weak.clear()
        state.young.clear()
        del state, targets
        return report


class TrackedStream(Generic[T]):
    """Wraps an iterable, sync or async, and tracks every item it yields.

    It is iterated the way the wrapped object is: ``for`` uses its
    ``__iter__``, ``async for`` its ``__aiter__`` (an object with both, like
    an ORM query set, works either way). ``close()`` and ``aclose()`` are
    forwarded. After the watch block the wrapper lets go of the iterable.
    """

    def __init__(self, watch: Watch, iterable: Any) -> None:
        self._watch: Watch | None = watch
        self._iterable: Any = iterable
        self._iterator: Any = None

    def __iter__(self) -> TrackedStream[T]:
        if self._iterator is None and self._iterable is not None:
            self._iterator = iter(self._iterable)
        return self

    def __next__(self) -> T:
        if self._iterator is None:
            self.__iter__()
            if self._iterator is None:
                raise StopIteration
        item: T = next(self._iterator)
        self._track(item)
        return item

    def __aiter__(self) -> TrackedStream[T]:
        if self._iterator is None and self._iterable is not None:
            self._iterator = self._iterable.__aiter__()
        return self

    async def __anext__(self) -> T:
        if self._iterator is None:
            self.__aiter__()
            if self._iterator is None:
                raise StopAsyncIteration
        item: T = await self._iterator.__anext__()
        self._track(item)
        return item

    def _track(self, item: object) -> None:
        if self._watch is not None and self._watch._state == "active":
            self._watch._track_item(item)

    def close(self) -> None:
        """Close the wrapped generator (``generator.close()``) and let go of it."""
        target = self._iterator if self._iterator is not None else self._iterable
        self._iterator = self._iterable = None
        close = getattr(target, "close", None)
        if close is not None:
            close()

    async def aclose(self) -> None:
        """Close the wrapped async generator (``await agen.aclose()``) and let go of it."""
        target = self._iterator if self._iterator is not None else self._iterable
        self._iterator = self._iterable = None
        aclose = getattr(target, "aclose", None)
        if aclose is not None:
            await aclose()

    def _detach(self) -> None:
        # Never keep the program's iterator alive past the block.
        self._iterator = self._iterable = None
        self._watch = None


def watch(
    *,
    frames: int = 1,
    max_depth: int | None = DEFAULT_MAX_DEPTH,
    survivors: bool = True,
    prove: bool = False,
    ignore: Ignore | None = None,
    allocations: int = 30,
    trace: bool = True,
) -> Watch:
    """Watch a block: ``with reftrace.watch() as w:`` (or ``async with``).

    ``frames`` is how many frames tracemalloc records per allocation (1 is
    cheapest; more gives ``Allocation.traceback``). ``max_depth`` bounds the
    length of a root path (default: no bound; chains of any length are
    followed). ``survivors=False`` skips grouping the block's new objects
    when only tracked leaks matter. ``prove=True`` tests each finding's
    suspect reference by cutting it in a forked copy of the process
    (``report.leak_groups[i].proof``; see :mod:`reftrace.proof`).

    ``ignore(holder, objects)`` leaves survivors out before their paths are
    searched: it is given each old object the block attached new objects to
    (``None`` for a root: a frame's local, the exception; ``HIDDEN`` for
    objects no holder was found for, asked before the count of references
    from C that tells them from garbage) and those new objects, and returns
    True to leave them out of ``report.survivors``. It must not keep what it
    is given. The pytest plugin uses it for pytest's own machinery: a holder
    whose type is pytest's costs no search at all. ``allocations`` is how
    many allocation sites the report lists (0: none, and no ``tracemalloc``
    snapshot at the exit). ``trace=False`` does not start ``tracemalloc`` for
    the block (the block runs at full speed): no allocation sites, and an old
    dict the gc did not track, that the block made tracked (by storing a
    container in it), counts as new.

    >>> with reftrace.watch(ignore=lambda holder, objects: holder is LOG) as w:  # doctest: +SKIP
    ...     handle_request()
    """
    return Watch(
        frames=frames,
        max_depth=max_depth,
        survivors=survivors,
        prove=prove,
        ignore=ignore,
        allocations=allocations,
        trace=trace,
    )
