"""Workloads that keep memory by design, and workloads that leak: soak()'s test bench.

Each workload is a lifecycle a service would run many times: ``make()``
resets its state (the module globals below) and returns the function to
soak. A *bounded* workload keeps memory on purpose (a ring buffer, a full or
filling cache, a vocabulary, a buffer that flushes): soak() must never call
it leaking. A *leaking* workload keeps something of every call (or of every
few calls) for ever: soak() must call it leaking and, where a container holds
what leaks, name that container first (``holder``).

Used by ``tests/test_soak_corpus.py`` and by ``bench/bench_verdicts.py``,
which runs every workload as a new user would (``soak(fn)``, defaults) and
compares reftrace with its peers.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import functools
import itertools
import logging
import logging.handlers
import random
import re
import sys
import tracemalloc
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import reftrace
from reftrace.demo import agent as demo

Lifecycle = Callable[[], Any]


@dataclass(frozen=True)
class Workload:
    name: str
    kind: Literal["bounded", "leaking"]
    what: str
    make: Callable[[], Lifecycle]
    #: leaking: a substring of the first container's name (""): no container holds it)
    holder: str = ""
    #: a module the workload needs (its test skips without it)
    requires: str = ""
    #: run before the soak and after it (tracemalloc started mid-life)
    around: tuple[Callable[[], None], Callable[[], None]] | None = None
    options: dict[str, Any] = field(default_factory=dict)


# -- state the lifecycles keep, as a service would: module globals -------------------

RING: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
SESSIONS: collections.deque[list[int]] = collections.deque(maxlen=64)
VOCABULARY: dict[str, int] = {}
BATCH: dict[str, list[float]] = {}
LISTENERS: list[Callable[..., Any]] = []
RUNS: dict[str, dict[str, Any]] = {}
SEEN_IDS: list[int] = []
AUDIT: list[dict[str, int]] = []
SETTINGS: dict[str, list[int]] = {}
LOG_LINES: list[str] = []
ERRORS: list[BaseException] = []
CALLBACKS: dict[int, Callable[[], int]] = {}
PENDING: set[asyncio.Future[Any]] = set()
HISTORY: dict[str, list[dict[str, Any]]] = {}
EVENTS: collections.deque[dict[str, Any]] = collections.deque()
BUFFER = bytearray()


class Transcript:
    """A chat transcript whose text grows with every message (one string)."""

    def __init__(self) -> None:
        self.text = ""


TRANSCRIPT = Transcript()


class Node:
    __slots__ = ("previous", "payload")

    def __init__(self, previous: Node | None, payload: list[int]) -> None:
        self.previous = previous
        self.payload = payload


HEAD: Node | None = None

_STATE = (
    RING,
    SESSIONS,
    VOCABULARY,
    BATCH,
    LISTENERS,
    RUNS,
    SEEN_IDS,
    AUDIT,
    SETTINGS,
    LOG_LINES,
    ERRORS,
    CALLBACKS,
    PENDING,
    HISTORY,
    EVENTS,
)


def reset() -> None:
    """Empty every global a workload keeps things in."""
    global HEAD
    for container in _STATE:
        container.clear()
    del BUFFER[:]
    TRANSCRIPT.text = ""
    HEAD = None
    demo.reset()


# -- bounded by design ---------------------------------------------------------------


def ring_buffer() -> Lifecycle:
    counter = itertools.count()

    def record_requests() -> None:
        for _ in range(100):
            n = next(counter)
            RING.append({"id": n, "message": f"request {n} served"})

    return record_requests


def _lru(maxsize: int) -> Lifecycle:
    @functools.lru_cache(maxsize=maxsize)
    def render_page(page: int) -> list[str]:
        return [f"row {i} of page {page}" for i in range(20)]

    pages = itertools.count()
    return lambda: render_page(next(pages))


def lru_full() -> Lifecycle:
    return _lru(32)


def lru_filling() -> Lifecycle:
    return _lru(256)


def _cachetools(maxsize: int) -> Lifecycle:
    import cachetools

    @cachetools.cached(cachetools.LRUCache(maxsize=maxsize))
    def price(item: int) -> dict[str, Any]:
        return {"item": item, "history": [item * 1.5] * 10}

    items = itertools.count()
    return lambda: price(next(items))


def cachetools_full() -> Lifecycle:
    return _cachetools(8)


def cachetools_filling() -> Lifecycle:
    return _cachetools(150)


def re_cache() -> Lifecycle:
    re.purge()
    counter = itertools.count()

    def parse() -> None:
        n = next(counter)
        re.compile(rf"order-{n}-(\d+)").match(f"order-{n}-42")

    return parse


def memory_handler() -> Lifecycle:
    logger = logging.getLogger("soak_corpus.buffered")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(
        logging.handlers.MemoryHandler(
            capacity=64, flushLevel=logging.CRITICAL, target=logging.NullHandler()
        )
    )
    counter = itertools.count()

    def handle() -> None:
        for _ in range(10):
            logger.info("request %d done", next(counter))

    return handle


_WORDS = [f"word{i}" for i in range(300)]


def vocabulary() -> Lifecycle:
    rng = random.Random(7)
    weights = [1 / (rank + 1) for rank in range(len(_WORDS))]

    def tokenize() -> None:
        for word in rng.choices(_WORDS, weights, k=40):
            token = sys.intern("".join(word))
            VOCABULARY.setdefault(token, len(VOCABULARY))

    return tokenize


def free_lists() -> Lifecycle:
    def compute() -> float:
        values = [float(i) * 1.5 for i in range(2000)]
        pairs = [(i, i + 1) for i in range(500)]
        return sum(values) + sum(a for a, _ in pairs)

    return compute


def dict_sawtooth() -> Lifecycle:
    counter = itertools.count()

    def batch() -> None:
        for _ in range(37):
            n = next(counter)
            BATCH[f"key-{n}"] = [n * 0.5]
        if len(BATCH) >= 1000:
            BATCH.clear()

    return batch


def _start_tracing() -> None:
    tracemalloc.start()


def _stop_tracing() -> None:
    tracemalloc.stop()


def url_cache() -> Lifecycle:
    counter = itertools.count()

    def route() -> None:
        n = next(counter)
        urllib.parse.urlsplit(f"https://api.example.com/v1/items/{n}?page={n % 7}")

    return route


def jinja2_templates() -> Lifecycle:
    import jinja2

    names = [f"page{i}.html" for i in range(200)]
    loader = jinja2.DictLoader({name: "<p>{{ user }} on " + name + "</p>" for name in names})
    env = jinja2.Environment(loader=loader, cache_size=50, autoescape=True)
    counter = itertools.count()

    def render() -> None:
        env.get_template(names[next(counter) % len(names)]).render(user="ada")

    return render


def sessions_window() -> Lifecycle:
    counter = itertools.count()

    def serve() -> None:
        SESSIONS.append([next(counter)] * 50)

    return serve


def replay_buffer() -> Lifecycle:
    demo.install(demo.Bug.NONE)

    def stream() -> None:
        for _chunk in demo.AGENT.stream("replay every chunk to late readers", chunks=40):
            pass

    return stream


# -- leaking ---------------------------------------------------------------------


def listener() -> Lifecycle:
    demo.install(demo.Bug.LISTENER)

    def stream() -> None:
        for _chunk in demo.AGENT.stream("why is my service using 10 GB", chunks=20):
            pass

    return stream


def failed_runs() -> Lifecycle:
    counter = itertools.count()

    def run_workflow() -> None:
        run_id = f"run-{next(counter)}"
        RUNS[run_id] = {"steps": [{"step": i} for i in range(5)], "status": "running"}
        try:
            raise TimeoutError(run_id)
        except TimeoutError:
            RUNS[run_id]["status"] = "failed"  # never removed on failure

    return run_workflow


def one_int_per_call() -> Lifecycle:
    counter = itertools.count(10_000)
    return lambda: SEEN_IDS.append(next(counter))


def one_dict_every_fifth_call() -> Lifecycle:
    counter = itertools.count()

    def audit() -> None:
        n = next(counter)
        if n % 5 == 0:
            AUDIT.append({"call": n})

    return audit


def one_dict_every_fifth_call_and_a_setting_loaded_once() -> Lifecycle:
    counter = itertools.count()

    def audit() -> None:
        n = next(counter)
        if n == 8:
            SETTINGS["limits"] = [n]  # loaded on first use, kept by design
        if n % 5 == 0:
            AUDIT.append({"call": n})

    return audit


def string_grows() -> Lifecycle:
    counter = itertools.count()

    def chat() -> None:
        TRANSCRIPT.text += f"user: message {next(counter)} with some words in it\n"

    return chat


def log_lines() -> Lifecycle:
    counter = itertools.count()
    return lambda: LOG_LINES.append(f"GET /items/{next(counter)} 200 " + "x" * 48)


class Request:
    def __init__(self, path: str) -> None:
        self.path = path
        self.body = [0] * 20


@functools.cache
def authorize(request: Request) -> bool:
    """Cached on the request object itself: every request stays a key."""
    return request.path.startswith("/")


def lru_cache_keys() -> Lifecycle:
    authorize.cache_clear()
    counter = itertools.count()
    return lambda: authorize(Request(f"/items/{next(counter)}"))


@functools.cache
def record_type(name: str) -> type:
    """A class per record name, cached for ever."""
    return type(name, (), {"fields": list(range(10))})


_ABCS = (
    collections.abc.Mapping,
    collections.abc.Sequence,
    collections.abc.Set,
    collections.abc.Callable,
)


def weak_symptoms() -> Lifecycle:
    record_type.cache_clear()
    counter = itertools.count()

    def handle() -> None:
        instance = record_type(f"Record{next(counter)}")()
        for abc in _ABCS:
            isinstance(instance, abc)

    return handle


def stored_exceptions() -> Lifecycle:
    counter = itertools.count()

    def handle() -> None:
        payload = [next(counter)] * 100  # a local the traceback's frame keeps
        try:
            raise ValueError(f"bad request {payload[0]}")
        except ValueError as error:
            ERRORS.append(error)

    return handle


def callbacks() -> Lifecycle:
    counter = itertools.count()

    def subscribe() -> None:
        data = {"rows": list(range(30))}
        CALLBACKS[next(counter)] = lambda: len(data["rows"])

    return subscribe


def pending_futures() -> Lifecycle:
    async def request() -> None:
        future = asyncio.get_running_loop().create_future()
        PENDING.add(future)  # never discarded: nobody awaits it
        await asyncio.sleep(0)

    return request


def nested_history() -> Lifecycle:
    counter = itertools.count()

    def chat() -> None:
        n = next(counter)
        HISTORY.setdefault(f"user-{n % 3}", []).append({"turn": n, "text": f"turn {n}"})

    return chat


def unbounded_deque() -> Lifecycle:
    counter = itertools.count()
    return lambda: EVENTS.append({"event": next(counter), "tags": ["a", "b"]})


def buffer_grows() -> Lifecycle:
    return lambda: BUFFER.extend(b"frame-data" * 20)


def linked_chain() -> Lifecycle:
    def push() -> None:
        global HEAD
        HEAD = Node(HEAD, [1, 2, 3])

    return push


WORKLOADS: list[Workload] = [
    Workload("ring_buffer", "bounded", "deque(maxlen=500) fed 100 records per call", ring_buffer),
    Workload("lru_full", "bounded", "lru_cache(maxsize=32), a new key every call", lru_full),
    Workload(
        "lru_filling", "bounded", "lru_cache(maxsize=256) still filling at call 30", lru_filling
    ),
    Workload(
        "cachetools_full",
        "bounded",
        "cachetools.LRUCache(maxsize=8) behind @cached, full",
        cachetools_full,
        requires="cachetools",
    ),
    Workload(
        "cachetools_filling",
        "bounded",
        "cachetools.LRUCache(maxsize=150) still filling at call 30",
        cachetools_filling,
        requires="cachetools",
    ),
    Workload("re_cache", "bounded", "a new regular expression every call: re's cache", re_cache),
    Workload(
        "memory_handler",
        "bounded",
        "logging MemoryHandler(capacity=64): buffers 10 records per call, flushes",
        memory_handler,
    ),
    Workload("vocabulary", "bounded", "interned words of a 300-word vocabulary (Zipf)", vocabulary),
    Workload("free_lists", "bounded", "thousands of floats and tuples made and freed", free_lists),
    Workload(
        "dict_sawtooth", "bounded", "a dict that grows to 1,000 keys, then clears", dict_sawtooth
    ),
    Workload(
        "tracemalloc_midlife",
        "bounded",
        "the ring buffer with tracemalloc started by the program mid-life",
        ring_buffer,
        around=(_start_tracing, _stop_tracing),
    ),
    Workload(
        "url_cache", "bounded", "urllib.parse.urlsplit's cache, a new URL every call", url_cache
    ),
    Workload(
        "jinja2_templates",
        "bounded",
        "jinja2 Environment(cache_size=50) over 200 templates",
        jinja2_templates,
        requires="jinja2",
    ),
    Workload(
        "sessions_window", "bounded", "deque(maxlen=64) of per-request lists", sessions_window
    ),
    Workload(
        "replay_buffer",
        "bounded",
        "the fixed streaming agent: every output buffers its chunks for replay",
        replay_buffer,
    ),
    Workload(
        "listener",
        "leaking",
        "the streaming agent's listener that is never removed",
        listener,
        holder="AGENT.events._listeners['chunk']",
    ),
    Workload("failed_runs", "leaking", "failed workflow runs stay in RUNS", failed_runs, "RUNS"),
    Workload(
        "one_int_per_call",
        "leaking",
        "one int per call kept in a list",
        one_int_per_call,
        "SEEN_IDS",
    ),
    Workload(
        "one_dict_every_fifth_call",
        "leaking",
        "one small dict every fifth call",
        one_dict_every_fifth_call,
        "AUDIT",
    ),
    Workload(
        "string_grows", "leaking", "transcript.text += message: one string grows", string_grows
    ),
    Workload(
        "log_lines", "leaking", "a log line string per call in a list", log_lines, "LOG_LINES"
    ),
    Workload(
        "lru_cache_keys",
        "leaking",
        "lru_cache(maxsize=None) keyed by every request object",
        lru_cache_keys,
        holder="authorize",
    ),
    Workload(
        "weak_symptoms",
        "leaking",
        "a new class per call in lru_cache(maxsize=None); ABC caches grow as a symptom",
        weak_symptoms,
        holder="record_type",
    ),
    Workload(
        "stored_exceptions",
        "leaking",
        "every exception stored, with its traceback's frames and locals",
        stored_exceptions,
        "ERRORS",
    ),
    Workload("callbacks", "leaking", "a closure per call registered by id", callbacks, "CALLBACKS"),
    Workload(
        "pending_futures", "leaking", "asyncio futures never discarded", pending_futures, "PENDING"
    ),
    Workload(
        "nested_history",
        "leaking",
        "per-user lists in a dict, each growing",
        nested_history,
        "HISTORY",
    ),
    Workload("unbounded_deque", "leaking", "a deque with no maxlen", unbounded_deque, "EVENTS"),
    Workload("buffer_grows", "leaking", "a bytearray extended every call", buffer_grows),
    Workload(
        "linked_chain",
        "leaking",
        "each call's node links the previous one (no container)",
        linked_chain,
    ),
]


#: Workloads for one test each, outside the corpus that the benchmarks run.
VARIANTS = [
    Workload(
        "one_dict_every_fifth_call_and_a_setting_loaded_once",
        "leaking",
        "one small dict every fifth call, and a setting loaded on the ninth",
        one_dict_every_fifth_call_and_a_setting_loaded_once,
        "AUDIT",
    ),
]


def get(name: str) -> Workload:
    for workload in WORKLOADS + VARIANTS:
        if workload.name == name:
            return workload
    raise KeyError(name)


def run(name: str, **options: Any) -> reftrace.SoakReport:
    """Soak one workload from a clean state, as a new user would."""
    workload = get(name)
    reset()
    fn = workload.make()
    if workload.around is not None:
        workload.around[0]()
    try:
        return reftrace.soak(fn, **{**workload.options, **options})
    finally:
        if workload.around is not None:
            workload.around[1]()
        reset()


def main(argv: list[str]) -> int:
    """``python tests/soak_corpus.py NAME [--iterations N] [--max-iterations N]``:
    soak one workload in this fresh process; print its report as one JSON line
    (with the text report under ``"text"``)."""
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("name", choices=[w.name for w in WORKLOADS + VARIANTS])
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--max-iterations", type=int, default=None)
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.iterations is not None:
        options["iterations"] = args.iterations
    if args.max_iterations is not None:
        options["max_iterations"] = args.max_iterations
    started = time.perf_counter()
    sr = run(args.name, **options)
    seconds = time.perf_counter() - started
    data = sr.to_dict()
    data["seconds"] = seconds
    data["text"] = str(sr)
    data.pop("sample", None)
    print(json.dumps(data))
    return 0


if __name__ == "__main__":
    # Run as the module ``soak_corpus`` (not ``__main__``), so that paths read
    # ``soak_corpus.RUNS`` as they do when the tests import it.
    import soak_corpus

    raise SystemExit(soak_corpus.main(sys.argv[1:]))
