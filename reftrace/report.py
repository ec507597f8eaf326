"""The report of a watched block, and its JSON: written, and read back checked.

A ``Report`` is plain data made of the parts in :mod:`reftrace.model`: it
keeps no strong reference to any object of the watched program. Renderers
read it and nothing else. ``save``/``to_json`` write it; :func:`load` and
:func:`loads` read it back, checking every field (never unpickling), and
name the field that is wrong.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, get_args

from reftrace import views
from reftrace.files import atomic_file, path_argument, target_path
from reftrace.model import (
    Age,
    Allocation,
    EdgeKind,
    Finding,
    Frame,
    Leak,
    LeakGroup,
    Path,
    Proof,
    ProofStatus,
    Root,
    RootKind,
    Step,
    StoreSite,
    SurvivorGroup,
    group_leaks,
    json_text,
    resolve_mask,
)

#: The ``"format"`` field of a saved report, and the version this code writes and reads.
FORMAT_NAME = "reftrace-report"
FORMAT_VERSION = 1


class ReportFormatError(ValueError):
    """A file (or data) that is not a valid saved reftrace report.

    ``source`` names the file, ``field`` the part of the report that was wrong
    (``leaks[2].path.steps[0].status``; empty when the whole file was), and
    ``problem`` what was wrong with it.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{field}: " if field else ""
        super().__init__(f"{source}: not a valid reftrace report: {where}{problem}")


@dataclass
class Report(views.Shown):
    """What a watched block left behind: leaks, survivors and allocations."""

    leaks: list[Leak] = field(default_factory=list)
    survivors: list[SurvivorGroup] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)
    tracked: int = 0
    collected: int = 0
    new_objects: int = 0
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: tracked objects held only by the watching function's own locals
    handles: int = 0
    #: the leaks grouped by signature (one per suspect reference), largest
    #: first; made from ``leaks`` when not given
    findings: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.leaks and not self.findings:
            self.findings = group_leaks(self.leaks)

    @property
    def leak_groups(self) -> list[Finding]:
        """The findings: leaks grouped by signature, largest first."""
        return self.findings

    def finding(self, signature: str) -> Finding | None:
        """The finding with this signature, or None."""
        return next((f for f in self.findings if f.signature == signature), None)

    @property
    def finding_sizes(self) -> dict[str, tuple[int, int]]:
        """Bytes and objects each finding keeps, by signature (those measured)."""
        return {
            f.signature: (f.retained, f.retained_objects)
            for f in self.findings
            if f.retained_objects
        }

    @property
    def proofs(self) -> dict[str, Proof]:
        """The proof of each proved finding's suspect reference, by signature."""
        return {f.signature: f.proof for f in self.findings if f.proof is not None}

    @property
    def stores(self) -> dict[str, StoreSite]:
        """Where each located finding's reference was stored, by signature."""
        return {f.signature: f.stored_at for f in self.findings if f.stored_at is not None}

    @property
    def survivor_count(self) -> int:
        """How many new objects outlived the block, in all survivor groups."""
        return sum(group.count for group in self.survivors)

    def to_html(self, *, mask: bool | None = None, graph: bool = True) -> str:
        """The report as an HTML fragment: traces as tables, the graph as inline SVG."""
        return views.html(self, mask=mask, graph=graph)

    def __bool__(self) -> bool:
        # A report is always a report, even when clean: never let `if report:`
        # mean "has leaks" by accident.
        return True

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready data: everything the report holds, with nothing left out.

        Every string that comes from the watched program is masked (unless
        ``mask=False``, or masking is off for the process) and cut to
        ``reftrace.redact.JSON_LIMIT`` characters. ``leak_groups`` and each
        path's ``expression`` are derived from the rest.
        """
        return {
            key: list(value) if isinstance(value, Iterator) else value
            for key, value in self._fields(resolve_mask(mask))
        }

    def _fields(self, m: bool) -> list[tuple[str, object]]:
        """The fields of ``to_dict`` in order; the long lists as iterators, made one
        item at a time (``save`` writes each item as it is made)."""
        return [
            ("format", FORMAT_NAME),
            ("version", FORMAT_VERSION),
            ("leaks", (leak.to_dict(mask=m) for leak in self.leaks)),
            ("leak_groups", [group.to_dict(mask=m) for group in self.leak_groups]),
            ("handles", self.handles),
            ("survivors", (group.to_dict(mask=m) for group in self.survivors)),
            ("allocations", (a.to_dict(mask=m) for a in self.allocations)),
            ("tracked", self.tracked),
            ("collected", self.collected),
            ("new_objects", self.new_objects),
            ("notes", [json_text(note, m) for note in self.notes]),
            ("timings", {json_text(name, m): value for name, value in self.timings.items()}),
            (
                "finding_sizes",
                {
                    json_text(signature, m): [size, objects]
                    for signature, (size, objects) in self.finding_sizes.items()
                },
            ),
            (
                "proofs",
                {
                    json_text(signature, m): p.to_dict(mask=m)
                    for signature, p in self.proofs.items()
                },
            ),
            (
                "stores",
                {
                    json_text(signature, m): s.to_dict(mask=m)
                    for signature, s in self.stores.items()
                },
            ),
        ]

    def to_json(self, *, mask: bool | None = None, **kwargs: Any) -> str:
        """``to_dict(mask=mask)`` as JSON text; ``kwargs`` go to ``json.dumps``.

        ``<``, ``>`` and ``&`` are written as ``\\u`` escapes, so the text can
        sit inside an HTML ``<script>`` element without closing it.
        """
        return _html_safe(json.dumps(self.to_dict(mask=mask), **kwargs))

    def save(self, path: str | os.PathLike[str], *, mask: bool | None = None) -> str:
        """Write the report to ``path`` as JSON (``to_dict``) and return the path.

        Masked by default, like every rendering. The file is UTF-8 (ASCII, in
        fact: other characters are JSON escapes, and ``<``, ``>``, ``&`` too)
        with one leak, survivor group or allocation per line, written as each
        is made; and it is written whole or not at all: to a temporary file
        beside ``path``, then renamed over it. ``reftrace.load`` reads it back.
        """
        name = target_path(path, "save()")
        fields = self._fields(resolve_mask(mask))
        with atomic_file(name) as handle:
            for i, (key, value) in enumerate(fields):
                chunk = ("{\n" if i == 0 else ",\n") + json.dumps(key) + ": "
                if isinstance(value, Iterator):
                    handle.write(chunk.encode("ascii"))
                    empty = True
                    for item in value:
                        lead = "[\n  " if empty else ",\n  "
                        handle.write((lead + _html_safe(json.dumps(item))).encode("ascii"))
                        empty = False
                    handle.write(b"[]" if empty else b"\n ]")
                else:
                    handle.write((chunk + _html_safe(json.dumps(value))).encode("ascii"))
            handle.write(b"\n}\n")
        return name

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Report:
        """The report saved at ``path`` (see :func:`load`)."""
        return load(path)

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<data>") -> Report:
        """A report rebuilt from ``to_dict()`` data; ``ReportFormatError`` when invalid."""
        return Reader(source).report(data)

    def render(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        *,
        mask: bool | None = None,
    ) -> str:
        """Draw the retention graph of the leaks (or survivors) to ``path``.

        The format comes from the file suffix (``.svg``, ``.png``, ``.dot``,
        or ``.html`` for the whole report as a page) unless given. Returns the
        path written. Raises ``TypeError`` for a path that is not a str or
        path-like, ``ValueError`` for an unknown format, ``OSError`` when the
        file cannot be written (nothing is half-written), and
        ``reftrace.renderers.graph.GraphvizNotFound`` (a ``RuntimeError``)
        when no Graphviz is installed: the DOT source is then written beside
        ``path``.
        """
        return views.write(self, path, format=format, mask=mask)


def load(path: str | os.PathLike[str]) -> Report:
    """Read a report written by ``Report.save`` (or ``to_json``): JSON only, never pickle.

    The report has everything the saved one had except the objects
    themselves: ``leak.object`` is None. A missing file raises
    ``FileNotFoundError``; a file that is not a valid report (not JSON,
    another format or version, a field missing or of the wrong type) raises
    ``ReportFormatError`` naming the file and the field.
    """
    name = path_argument(path, "load()")
    with open(name, "rb") as handle:
        raw = handle.read()
    return loads(raw, source=name)


def loads(text: str | bytes, *, source: str = "<string>") -> Report:
    """A report from JSON text (as ``to_json`` and ``save`` write it)."""
    reader = Reader(source)
    if isinstance(text, bytes):
        if text[:1] == b"\x80":
            reader.fail(
                "", "this looks like a Python pickle; reftrace reads JSON and never unpickles"
            )
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            reader.fail("", f"not UTF-8 text (invalid byte at offset {error.start})")
    if not isinstance(text, str):
        raise TypeError(f"loads() needs str or bytes, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        reader.fail("", f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})")
    except RecursionError:
        reader.fail("", "not valid JSON for a report: nested too deeply")
    except ValueError as error:
        reader.fail("", f"not valid JSON: {error}")
    return reader.report(data)


# -- reading saved reports ------------------------------------------------------------


def read_proof(data: object, source: str) -> Proof:
    """A proof from its ``to_dict()`` data; ``ReportFormatError`` naming ``source``."""
    return Reader(source).proof(data, "proof")


def _type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


class Reader:
    """Checks and converts saved data, naming the field of any mistake (no recursion).

    Each method reads one part from JSON-ready data (as ``json.loads`` makes
    it) at ``where``, a field name like ``leaks[2].path``, and raises
    ``ReportFormatError`` naming ``source`` and the field when it is wrong.
    ``reftrace.soak_report`` reads soak reports with the same checks.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    @staticmethod
    def at(where: str, key: str) -> str:
        """The name of field ``key`` inside ``where`` (``leaks[2].path``)."""
        return _at(where, key)

    def fail(self, where: str, problem: str) -> NoReturn:
        """Raise ``ReportFormatError``: the field ``where`` has ``problem``."""
        raise ReportFormatError(self.source, where, problem)

    def obj(self, value: object, where: str) -> dict[str, Any]:
        """``value``, which must be a JSON object."""
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {_type_of(value)}")
        return value

    def get(self, data: dict[str, Any], key: str, where: str) -> Any:
        """``data[key]``, which must be there."""
        if key not in data:
            self.fail(_at(where, key), "missing")
        return data[key]

    def str_(self, data: dict[str, Any], key: str, where: str) -> str:
        """``data[key]``, a str."""
        value = self.get(data, key, where)
        if not isinstance(value, str):
            self.fail(_at(where, key), f"expected str, got {_type_of(value)}")
        return value

    def choice(self, data: dict[str, Any], key: str, where: str, kind: Any) -> Any:
        """A str that must be one of the values of the ``Literal`` type ``kind``."""
        value = self.str_(data, key, where)
        allowed = get_args(kind)
        if value not in allowed:
            self.fail(_at(where, key), f"expected one of {', '.join(allowed)}, got {value!r:.80}")
        return value

    def opt_str(self, data: dict[str, Any], key: str, where: str) -> str | None:
        """``data[key]``, a str or null."""
        value = self.get(data, key, where)
        if value is not None and not isinstance(value, str):
            self.fail(_at(where, key), f"expected str or null, got {_type_of(value)}")
        return value

    def int_(self, data: dict[str, Any], key: str, where: str, *, signed: bool = False) -> int:
        """``data[key]``, an int: a count (0 or more) unless ``signed``."""
        value = self.get(data, key, where)
        return self.int_value(value, _at(where, key), signed=signed)

    def int_value(self, value: object, where: str, *, signed: bool = False) -> int:
        """``value`` (the field ``where``), an int: a count (0 or more) unless ``signed``."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected int, got {_type_of(value)}")
        if value < 0 and not signed:
            self.fail(where, f"expected a count (0 or more), got {value}")
        return value

    def opt_int(self, data: dict[str, Any], key: str, where: str) -> int | None:
        """``data[key]``, a count (0 or more) or null."""
        if self.get(data, key, where) is None:
            return None
        return self.int_(data, key, where)

    def float_(self, data: dict[str, Any], key: str, where: str) -> float:
        """``data[key]``, a number (int or float), as a float."""
        value = self.get(data, key, where)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(_at(where, key), f"expected a number, got {_type_of(value)}")
        return float(value)

    def bool_(self, data: dict[str, Any], key: str, where: str) -> bool:
        """``data[key]``, a bool."""
        value = self.get(data, key, where)
        if not isinstance(value, bool):
            self.fail(_at(where, key), f"expected bool, got {_type_of(value)}")
        return value

    def list_(self, data: dict[str, Any], key: str, where: str) -> list[Any]:
        """``data[key]``, a list."""
        value = self.get(data, key, where)
        if not isinstance(value, list):
            self.fail(_at(where, key), f"expected a list, got {_type_of(value)}")
        return value

    def ints(
        self, data: dict[str, Any], key: str, where: str, *, signed: bool = False
    ) -> list[int]:
        """``data[key]``, a list of counts (0 or more), or of any ints when ``signed``."""
        at = _at(where, key)
        values = self.list_(data, key, where)
        return [self.int_value(n, f"{at}[{i}]", signed=signed) for i, n in enumerate(values)]

    def strs(self, data: dict[str, Any], key: str, where: str) -> list[str]:
        """``data[key]``, a list of str."""
        values = self.list_(data, key, where)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(f"{_at(where, key)}[{i}]", f"expected str, got {_type_of(value)}")
        return list(values)

    def timings(self, data: dict[str, Any], key: str, where: str) -> dict[str, float]:
        """``data[key]``, an object of seconds by name."""
        timings: dict[str, float] = {}
        for name, seconds in self.dict_(data, key, where).items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                self.fail(
                    f"{_at(where, key)}[{name!r:.80}]",
                    f"expected a number, got {_type_of(seconds)}",
                )
            timings[name] = seconds
        return timings

    def dict_(self, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        """``data[key]``, a JSON object."""
        return self.obj(self.get(data, key, where), _at(where, key))

    def pair(self, value: object, where: str) -> tuple[str, int]:
        """``value``, a ``[name, count]`` pair."""
        if not isinstance(value, list) or len(value) != 2:
            self.fail(where, f"expected a [name, count] pair, got {_type_of(value)}")
        name, count = value
        if not isinstance(name, str):
            self.fail(f"{where}[0]", f"expected str, got {_type_of(name)}")
        if isinstance(count, bool) or not isinstance(count, int):
            self.fail(f"{where}[1]", f"expected int, got {_type_of(count)}")
        return name, count

    # -- the parts of a report --

    def root(self, value: object, where: str) -> Root:
        """A path's root."""
        data = self.obj(value, where)
        return Root(
            kind=self.choice(data, "kind", where, RootKind),
            name=self.str_(data, "name", where),
            function=self.str_(data, "function", where),
            filename=self.str_(data, "filename", where),
            lineno=self.int_(data, "lineno", where),
        )

    def step(self, value: object, where: str) -> Step:
        """One step of a path."""
        data = self.obj(value, where)
        status = self.choice(data, "status", where, Age)
        return Step(
            label=self.str_(data, "label", where),
            kind=self.choice(data, "kind", where, EdgeKind),
            code=self.str_(data, "code", where),
            type_name=self.str_(data, "type", where),
            status=status,
            is_suspect=self.bool_(data, "suspect", where),
            detail=self.str_(data, "detail", where),
            # absent from reports saved before it existed
            module=self.str_(data, "module", where) if "module" in data else "",
        )

    def store_site(self, value: object, where: str) -> StoreSite:
        """Where a reference was stored: frames, and the index of the user's."""
        data = self.obj(value, where)
        frames = []
        for i, item in enumerate(self.list_(data, "frames", where)):
            at = f"{_at(where, 'frames')}[{i}]"
            frame = self.obj(item, at)
            frames.append(
                Frame(
                    filename=self.str_(frame, "filename", at),
                    lineno=self.int_(frame, "lineno", at),
                    function=self.str_(frame, "function", at),
                    code=self.str_(frame, "code", at),
                )
            )
        user = self.int_(data, "user", where)
        if not frames or not 0 <= user < len(frames):
            self.fail(_at(where, "user"), f"expected an index into {len(frames)} frames")
        return StoreSite(tuple(frames), user)

    def proof(self, value: object, where: str) -> Proof:
        """The proof of a finding."""
        data = self.obj(value, where)
        types = self.list_(data, "freed_types", where)
        seconds = self.get(data, "seconds", where)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            self.fail(_at(where, "seconds"), f"expected a number, got {_type_of(seconds)}")
        return Proof(
            status=self.choice(data, "status", where, ProofStatus),
            cut=self.str_(data, "cut", where),
            reason=self.str_(data, "reason", where),
            freed_objects=self.int_(data, "freed_objects", where),
            freed_bytes=self.int_(data, "freed_bytes", where),
            freed_leaks=self.int_(data, "freed_leaks", where),
            leaks=self.int_(data, "leaks", where),
            freed_types=[
                self.pair(t, f"{_at(where, 'freed_types')}[{i}]") for i, t in enumerate(types)
            ],
            remaining=self.path({"path": data.get("remaining")}, _at(where, "remaining")),
            seconds=float(seconds),
        )

    def path(self, data: dict[str, Any], where: str) -> Path | None:
        """``data["path"]``: a path from a root, or None for null."""
        value = self.get(data, "path", where)
        if value is None:
            return None
        where = _at(where, "path")
        path = self.obj(value, where)
        root = self.root(self.get(path, "root", where), _at(where, "root"))
        steps = self.list_(path, "steps", where)
        at = _at(where, "steps")
        return Path(root, tuple([self.step(step, f"{at}[{i}]") for i, step in enumerate(steps)]))

    def leak(self, value: object, where: str) -> Leak:
        """One leak (without its object: ``leak.object`` is None)."""
        data = self.obj(value, where)
        return Leak(
            type_name=self.str_(data, "type", where),
            path=self.path(data, where),
            signature=self.str_(data, "signature", where),
            size=self.int_(data, "size", where),
            objects=self.int_(data, "objects", where),
            allocated_at=self.opt_str(data, "allocated_at", where),
            reason=self.str_(data, "reason", where),
        )

    def survivor(self, value: object, where: str) -> SurvivorGroup:
        """One survivor group."""
        data = self.obj(value, where)
        types = self.list_(data, "top_types", where)
        at = _at(where, "top_types")
        return SurvivorGroup(
            attachment=self.str_(data, "attachment", where),
            holder_type=self.str_(data, "holder_type", where),
            edge=self.str_(data, "edge", where),
            path=self.path(data, where),
            count=self.int_(data, "count", where),
            size=self.int_(data, "size", where),
            top_types=[self.pair(t, f"{at}[{i}]") for i, t in enumerate(types)],
            reason=self.str_(data, "reason", where),
            stored_at=(
                self.store_site(data["stored_at"], _at(where, "stored_at"))
                if data.get("stored_at") is not None
                else None
            ),
            holder_length=(
                self.int_(data, "holder_length", where)
                if data.get("holder_length") is not None
                else None
            ),
        )

    def allocation(self, value: object, where: str) -> Allocation:
        """One allocation site."""
        data = self.obj(value, where)
        frames = self.list_(data, "traceback", where)
        at = _at(where, "traceback")
        for i, frame in enumerate(frames):
            if not isinstance(frame, str):
                self.fail(f"{at}[{i}]", f"expected str, got {_type_of(frame)}")
        return Allocation(
            site=self.str_(data, "site", where),
            size=self.int_(data, "size", where),
            count=self.int_(data, "count", where),
            traceback=tuple(frames),
        )

    def report(self, value: object, where: str = "") -> Report:
        """A whole report, as ``Report.to_dict`` writes it (at ``where``, when nested)."""
        data = self.obj(value, where)
        at = functools.partial(_at, where)
        if "format" not in data:
            self.fail(at("format"), f"missing: not a reftrace report (expected {FORMAT_NAME!r})")
        if data["format"] != FORMAT_NAME:
            self.fail(at("format"), f"expected {FORMAT_NAME!r}, got {data['format']!r:.80}")
        version = self.get(data, "version", where)
        if isinstance(version, bool) or not isinstance(version, int):
            self.fail(at("version"), f"expected int, got {_type_of(version)}")
        if version != FORMAT_VERSION:
            self.fail(
                at("version"),
                f"unsupported version {version}: this reftrace reads {FORMAT_VERSION}",
            )
        notes = self.strs(data, "notes", where)
        timings = self.timings(data, "timings", where)
        finding_sizes: dict[str, tuple[int, int]] = {}
        for signature, sizes in self.dict_(data, "finding_sizes", where).items():
            field_name = at(f"finding_sizes[{signature!r:.80}]")
            if not isinstance(sizes, list) or len(sizes) != 2:
                self.fail(field_name, f"expected a [bytes, objects] pair, got {_type_of(sizes)}")
            if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
                self.fail(field_name, "expected two ints")
            finding_sizes[signature] = (sizes[0], sizes[1])
        proofs: dict[str, Proof] = {}
        # absent from reports saved before proofs existed
        saved = self.dict_(data, "proofs", where) if "proofs" in data else {}
        for signature, item in saved.items():
            proofs[signature] = self.proof(item, at(f"proofs[{signature!r:.80}]"))
        stores: dict[str, StoreSite] = {}
        saved = self.dict_(data, "stores", where) if "stores" in data else {}
        for signature, item in saved.items():
            stores[signature] = self.store_site(item, at(f"stores[{signature!r:.80}]"))
        leaks = self.list_(data, "leaks", where)
        survivors = self.list_(data, "survivors", where)
        allocations = self.list_(data, "allocations", where)
        read_leaks = [self.leak(leak, at(f"leaks[{i}]")) for i, leak in enumerate(leaks)]
        return Report(
            leaks=read_leaks,
            survivors=[self.survivor(s, at(f"survivors[{i}]")) for i, s in enumerate(survivors)],
            allocations=[
                self.allocation(a, at(f"allocations[{i}]")) for i, a in enumerate(allocations)
            ],
            tracked=self.int_(data, "tracked", where),
            collected=self.int_(data, "collected", where),
            new_objects=self.int_(data, "new_objects", where),
            notes=notes,
            timings=timings,
            handles=self.int_(data, "handles", where),
            findings=group_leaks(read_leaks, finding_sizes, proofs, stores),
        )


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _html_safe(text: str) -> str:
    # In JSON text these characters can only occur inside strings, where the
    # escapes mean the same characters.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Allocation",
    "Finding",
    "Frame",
    "Leak",
    "LeakGroup",
    "Path",
    "Proof",
    "Report",
    "Reader",
    "ReportFormatError",
    "Root",
    "Step",
    "StoreSite",
    "SurvivorGroup",
    "load",
    "loads",
    "read_proof",
]
