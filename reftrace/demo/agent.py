"""A tiny streaming-agent framework with the seed incident's leaks, each behind a switch.

The seed incident is a TypeScript streaming-agent framework whose memory grew in
production.  Its investigators wrote replay tests that "failed in the buggy state"
(101 chunks could still be replayed after a stream ended) but that could not tell a
buffer kept *by design* from a buffer kept alive by a leak.  This module ports the
moving parts of that framework to plain Python so that both cases can be shown:

* :class:`ModelOutput` buffers every chunk for late consumers.  That is by design
  and not a leak: once nobody uses the output, it is freed with its buffer.
* Each :class:`Bug` is a real leak: some long-lived object (the module-level
  :data:`AGENT`, the :data:`CUSTOM_STATES` registry) keeps a reference to an object
  that should have been freed when its stream or run ended.

Usage::

    from reftrace.demo import agent as demo
    demo.install(demo.Bug.LISTENER)          # replaces the process-wide demo.AGENT
    out = demo.AGENT.stream("hi")
    for chunk in out:                        # "hi#0 ", "hi#1 ", ... then a finish dict
        ...
    list(out.replay())                       # every chunk again, for a late consumer

A stream must be consumed to its end (or closed with :meth:`ModelOutput.close`):
the cleanup runs when the stream ends.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

Chunk: TypeAlias = "str | dict[str, Any]"
"""A stream part: a text delta (``str``), or a small ``dict`` for the finish/error part."""

Listener: TypeAlias = "Callable[..., object]"


class Bug(enum.Flag):
    """The seed incident's retention bugs; an :class:`Agent` has any combination of them.

    ``LISTENER``
        :meth:`Agent.stream` registers the output's bound method ``_on_chunk`` on
        ``agent.events`` for ``'chunk'`` and never calls ``off()``: the agent's listener
        list keeps every :class:`ModelOutput` (and its buffer) alive forever.
    ``FAILED_RUN``
        A :class:`Run` removes itself from its workflow's ``_runs`` map with a cleanup
        callback, but only on the success path: a run whose step failed stays in
        ``_runs`` with every step's output.
    ``PROCESSOR_STATES``
        The agent appends each stream's :class:`ProcessorState` to
        ``agent.processor_states`` and never removes it, so every stream's parts stay.
    ``CUSTOM_STATE``
        Each stream's :class:`CustomState` is registered in the module-level
        :data:`CUSTOM_STATES` registry by run id and never unregistered.
    ``LAST_ERROR``
        The agent keeps the last model error itself (``agent.last_error = exc``).  Its
        ``__traceback__`` keeps the frame that caught it, and with the frame every local
        variable of that frame, including the failed :class:`ModelOutput`.  Fixed, the
        agent keeps an :class:`ErrorRecord` (type, message and traceback as text).
    """

    NONE = 0
    LISTENER = 1
    FAILED_RUN = 2
    PROCESSOR_STATES = 4
    CUSTOM_STATE = 8
    LAST_ERROR = 16
    ALL = LISTENER | FAILED_RUN | PROCESSOR_STATES | CUSTOM_STATE | LAST_ERROR


_run_ids = itertools.count(1)
"""Run ids are unique in the process, so that the :data:`CUSTOM_STATES` keys never clash."""


class EventEmitter:
    """A minimal Node-style event emitter: ``on``, ``off`` and ``emit``."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, fn: Listener) -> None:
        """Call ``fn(*args)`` on every ``emit(event, *args)`` until ``off(event, fn)``."""
        self._listeners.setdefault(event, []).append(fn)

    def off(self, event: str, fn: Listener) -> None:
        """Remove one registration of ``fn`` (compared with ``==``, as bound methods need)."""
        listeners = self._listeners.get(event)
        if listeners is not None and fn in listeners:
            listeners.remove(fn)

    def emit(self, event: str, *args: object) -> None:
        """Call every listener of ``event`` with ``args``, in registration order."""
        for fn in list(self._listeners.get(event, ())):
            fn(*args)

    def listener_count(self, event: str) -> int:
        """How many listeners ``event`` has (a function registered twice counts twice)."""
        return len(self._listeners.get(event, ()))


class ProcessorState:
    """The per-stream state of the output processors: every part the stream produced.

    Each stream has one (``output.processor_state``); keeping its parts while the
    stream is in use is by design.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.parts: list[Chunk] = []


class CustomState(dict[str, Any]):
    """Per-run scratch space for tools and processors (the seed's ``customState``).

    While its stream runs it is registered in :data:`CUSTOM_STATES` under the run id,
    so that tools given only a run id can find it.
    """

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


CUSTOM_STATES: dict[int, CustomState] = {}
"""Module-level registry of the custom state of each running stream, by run id."""


class ModelError(RuntimeError):
    """The model failed in the middle of a stream."""


class StepFailed(RuntimeError):
    """A workflow step's stream ended with an error."""


@dataclass(frozen=True)
class ErrorRecord:
    """What a fixed agent keeps of its last error: text only, no frames."""

    type: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorRecord:
        """The record of ``exc``: its type name, message and formatted traceback, as text."""
        return cls(type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)))


class EchoModel:
    """A deterministic stand-in for a language model: it streams the prompt's words back."""

    def _token(self, prompt: str, i: int) -> str:
        words = prompt.split() or ["..."]
        return f"{words[i % len(words)]}#{i} "

    def generate(self, prompt: str, chunks: int, fail_at: int | None = None) -> Iterator[str]:
        """Yield ``chunks`` text deltas; raise :class:`ModelError` before delta ``fail_at``."""
        for i in range(chunks):
            if i == fail_at:
                raise ModelError(f"model connection reset after {i} chunks")
            yield self._token(prompt, i)

    async def agenerate(
        self, prompt: str, chunks: int, fail_at: int | None = None
    ) -> AsyncIterator[str]:
        """The asynchronous :meth:`generate`: it gives the event loop a turn between deltas."""
        for i in range(chunks):
            await asyncio.sleep(0)
            if i == fail_at:
                raise ModelError(f"model connection reset after {i} chunks")
            yield self._token(prompt, i)


class ModelOutput:
    """What :meth:`Agent.stream` returns: a stream of chunks that is also a replay buffer.

    Every chunk the model produces reaches the output through the agent's event
    emitter (``_on_chunk`` is the listener) and is appended to :attr:`buffer`, **by
    design**: a consumer that comes late, or a second consumer, can :meth:`replay`
    the whole stream.  Iterating the output (``for`` or ``async for``) drives the
    model and yields the chunks; iterating it again after the end replays them.

    The last chunk is a ``dict``: ``{"type": "finish", ...}`` or, when the model
    failed, ``{"type": "error", ...}`` (then :attr:`error` holds the exception).
    """

    def __init__(self, run_id: int, prompt: str) -> None:
        self.run_id = run_id
        self.prompt = prompt
        self.buffer: list[Chunk] = []
        self.done = False
        self.error: BaseException | None = None
        self.processor_state = ProcessorState(run_id)
        self.custom_state = CustomState(run_id)
        self._source: Generator[None, None, None] | AsyncGenerator[None, None] | None = None

    def _on_chunk(self, run_id: int, chunk: Chunk) -> None:
        """Listener for the agent's ``'chunk'`` event: buffer the chunks of this run."""
        if run_id == self.run_id:
            self.buffer.append(chunk)

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(chunk for chunk in self.buffer if isinstance(chunk, str))

    def replay(self) -> Iterator[Chunk]:
        """Every chunk buffered so far, from the first."""
        return iter(list(self.buffer))

    def __iter__(self) -> Iterator[Chunk]:
        seen = 0
        while True:
            while seen < len(self.buffer):
                yield self.buffer[seen]
                seen += 1
            if self.done:
                return
            self._advance()

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        seen = 0
        while True:
            while seen < len(self.buffer):
                yield self.buffer[seen]
                seen += 1
            if self.done:
                return
            await self._advance_async()

    def close(self) -> None:
        """Stop an unfinished stream; its cleanup runs as if it had ended."""
        source, self._source = self._source, None
        self.done = True
        if isinstance(source, Generator):
            source.close()

    async def aclose(self) -> None:
        """Stop an unfinished asynchronous stream; its cleanup runs as if it had ended."""
        source, self._source = self._source, None
        self.done = True
        if isinstance(source, Generator):
            source.close()
        elif source is not None:
            await source.aclose()

    def _advance(self) -> None:
        source = self._source
        if not isinstance(source, Generator):
            raise TypeError("this output streams asynchronously: use `async for`")
        try:
            next(source)
        except StopIteration:
            self.done = True
            self._source = None

    async def _advance_async(self) -> None:
        source = self._source
        if isinstance(source, Generator):
            self._advance()
            return
        assert source is not None
        try:
            await source.__anext__()
        except StopAsyncIteration:
            self.done = True
            self._source = None

    def __repr__(self) -> str:
        state = "done" if self.done else "streaming"
        return f"<ModelOutput run {self.run_id} {state}, {len(self.buffer)} chunks buffered>"


class Agent:
    """Streams model output to callers; its bookkeeping has the leaks chosen by ``bugs``.

    ``Agent(bugs=Bug.LISTENER | Bug.LAST_ERROR)`` has those two leaks;
    ``Agent()`` has none.  See :class:`Bug` for what each one does.
    """

    def __init__(self, bugs: Bug = Bug.NONE, *, model: EchoModel | None = None) -> None:
        self.bugs = bugs
        self.model = model if model is not None else EchoModel()
        self.events = EventEmitter()
        # The processor state of every running stream (with PROCESSOR_STATES: of every stream).
        self.processor_states: list[ProcessorState] = []
        self.workflows: dict[str, Workflow] = {}
        self.last_error: BaseException | ErrorRecord | None = None

    def create_workflow(self, name: str, *, steps: int = 3, chunks_per_step: int = 100) -> Workflow:
        """Create the workflow ``name`` (kept in :attr:`workflows`): one stream per step."""
        workflow = Workflow(self, name, steps=steps, chunks_per_step=chunks_per_step)
        self.workflows[name] = workflow
        return workflow

    def stream(self, prompt: str, *, chunks: int = 100, fail_at: int | None = None) -> ModelOutput:
        """Start streaming the model's answer to ``prompt``; iterate the result to read it.

        The output gets ``chunks`` text deltas and then a finish chunk, unless the model
        fails before delta ``fail_at``: then it gets an error chunk instead.
        """
        output = self._open(prompt)
        output._source = self._produce(output, chunks, fail_at)
        return output

    async def stream_async(
        self, prompt: str, *, chunks: int = 100, fail_at: int | None = None
    ) -> ModelOutput:
        """The asynchronous :meth:`stream`: read the result with ``async for``."""
        await asyncio.sleep(0)  # connecting to the model
        output = self._open(prompt)
        output._source = self._produce_async(output, chunks, fail_at)
        return output

    # -- one stream's lifecycle: _open, then _publish per chunk, _fail, and _finish --

    def _open(self, prompt: str) -> ModelOutput:
        output = ModelOutput(next(_run_ids), prompt)
        self.events.on("chunk", output._on_chunk)
        self.processor_states.append(output.processor_state)
        CUSTOM_STATES[output.run_id] = output.custom_state
        return output

    def _produce(
        self, output: ModelOutput, chunks: int, fail_at: int | None
    ) -> Generator[None, None, None]:
        """Drive the model, one chunk per step; errors become an error chunk."""
        try:
            for chunk in self.model.generate(output.prompt, chunks, fail_at):
                self._publish(output, chunk)
                yield
            self._publish(output, {"type": "finish", "reason": "stop", "chunks": chunks})
        except Exception as exc:  # a stream reports a model error, it does not raise it
            self._fail(output, exc)
        finally:
            self._finish(output)

    async def _produce_async(
        self, output: ModelOutput, chunks: int, fail_at: int | None
    ) -> AsyncGenerator[None, None]:
        """The asynchronous :meth:`_produce`."""
        try:
            async for chunk in self.model.agenerate(output.prompt, chunks, fail_at):
                self._publish(output, chunk)
                yield
            self._publish(output, {"type": "finish", "reason": "stop", "chunks": chunks})
        except Exception as exc:  # a stream reports a model error, it does not raise it
            self._fail(output, exc)
        finally:
            self._finish(output)

    def _publish(self, output: ModelOutput, chunk: Chunk) -> None:
        output.processor_state.parts.append(chunk)
        self.events.emit("chunk", output.run_id, chunk)

    def _fail(self, output: ModelOutput, exc: Exception) -> None:
        output.error = exc
        self._publish(output, {"type": "error", "message": str(exc)})
        if Bug.LAST_ERROR in self.bugs:
            self.last_error = exc  # the traceback keeps the caller's frame and its locals
        else:
            self.last_error = ErrorRecord.from_exception(exc)

    def _finish(self, output: ModelOutput) -> None:
        if Bug.LISTENER not in self.bugs:
            self.events.off("chunk", output._on_chunk)
        if Bug.PROCESSOR_STATES not in self.bugs:
            states = self.processor_states
            states[:] = [state for state in states if state is not output.processor_state]
        if Bug.CUSTOM_STATE not in self.bugs:
            CUSTOM_STATES.pop(output.run_id, None)
        self.events.emit("finish", output.run_id)


RunStatus: TypeAlias = Literal["created", "running", "success", "failed"]


class Workflow:
    """Runs a fixed number of steps, each streaming one agent answer.

    Every run is kept in ``_runs`` while it runs; the run's cleanup callback removes it.
    """

    def __init__(self, agent: Agent, name: str, *, steps: int, chunks_per_step: int) -> None:
        self.agent = agent
        self.name = name
        self.steps = steps
        self.chunks_per_step = chunks_per_step
        self._runs: dict[int, Run] = {}

    def create_run(self) -> Run:
        """A new ``Run``, kept in ``_runs`` until its cleanup callback removes it."""
        run_id = next(_run_ids)
        run = Run(run_id, self, cleanup=lambda: self._runs.pop(run_id, None))
        self._runs[run_id] = run
        return run

    @property
    def active_runs(self) -> list[Run]:
        """The runs kept in ``_runs`` (not yet cleaned up), as a new list."""
        return list(self._runs.values())


class Run:
    """One execution of a :class:`Workflow`; :meth:`stream` runs it.

    ``outputs`` holds each step's :class:`ModelOutput`.  When the run ends it calls
    its cleanup callback, which removes it from the workflow's ``_runs`` -- with the
    ``FAILED_RUN`` bug, only when every step succeeded.
    """

    def __init__(self, run_id: int, workflow: Workflow, cleanup: Callable[[], object]) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.outputs: list[ModelOutput] = []
        self.status: RunStatus = "created"
        self.error: StepFailed | None = None
        self._cleanup = cleanup

    def stream(self, prompt: str, *, fail_at_step: int | None = None) -> Iterator[Chunk]:
        """Run every step and yield its chunks.

        The step numbered ``fail_at_step`` (from 0) gets a model error halfway through;
        then the run stops there with status ``"failed"`` (it does not raise).
        """
        agent = self.workflow.agent
        per_step = self.workflow.chunks_per_step
        self.status = "running"
        try:
            for step in range(self.workflow.steps):
                fail_at = per_step // 2 if step == fail_at_step else None
                output = agent.stream(f"{prompt} step{step}", chunks=per_step, fail_at=fail_at)
                self.outputs.append(output)
                yield from output
                if output.error is not None:
                    raise StepFailed(f"step {step} failed: {output.error}") from output.error
            self.status = "success"
        except StepFailed as exc:
            self.status = "failed"
            self.error = exc
        finally:
            if self.status == "success" or Bug.FAILED_RUN not in agent.bugs:
                self._cleanup()


AGENT: Agent = Agent()
"""The process-wide agent, as a service would keep it in a module global; see :func:`install`."""


def install(bugs: Bug = Bug.NONE) -> Agent:
    """Replace the process-wide :data:`AGENT` with a new ``Agent(bugs)`` and return it."""
    global AGENT
    AGENT = Agent(bugs)
    return AGENT


def reset() -> None:
    """Back to a fresh, bug-free :data:`AGENT` and an empty :data:`CUSTOM_STATES`."""
    install(Bug.NONE)
    CUSTOM_STATES.clear()
