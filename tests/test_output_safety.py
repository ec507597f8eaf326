"""Safe output: every rendering masks secrets, escapes markup and control
characters, bounds what it prints, and saved reports load back (JSON only).

reftrace never calls a user ``__repr__``: user strings reach a report through
global names, dict keys, attribute names, type, function and thread names,
and the values of builtin objects. The hostile strings below are planted in
exactly those places.
"""

from __future__ import annotations

import html.parser
import json
import os
import pickle
import stat
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path as FilePath

import pytest

import reftrace
from reftrace import redact
from reftrace.renderers import graph
from reftrace.report import Allocation, Leak, Path, Report, Root, Step, SurvivorGroup

SCRIPT = "<script>alert(1)</script>"
QUOTES = "\"'><img src=x onerror=alert(2)>"
# Clears the screen, sets the title, rings the bell; then fakes a report line.
CONTROL = "\x1b[2J\x1b]0;pwned\x07\nnote: all clear\u202e"
API_KEY = "sk-proj-Zq81XvT4LpQ9wErT5yUi"
BEARER = "Authorization: Bearer Tk7hG2pQ9xLmN4vB8cD1"
AWS_KEY = "AKIAQX7TZ5EXAMPLEKEY"
PASSWORD = "db password=Hunter2Horse"
#: What must never show once masked: the secret part of each of the above.
SECRETS = ("Zq81XvT4LpQ9", "Tk7hG2pQ9xLm", "QX7TZ5EXAMPLEKEY", "Hunter2Horse")

# Module globals are roots, as an application's singletons would be. One dict
# per hostile key: leaks through one container's items are one finding.
HOSTILE_KEYS = (SCRIPT, QUOTES, API_KEY, BEARER, AWS_KEY, PASSWORD, CONTROL)
HOSTILE = [{} for _ in HOSTILE_KEYS]
for _i, _holder in enumerate(HOSTILE):
    globals()[f"HOSTILE_{_i}"] = _holder
del _i, _holder
LISTENERS: list[object] = []
BIG: list[object] = []
REGISTRY: list[object] = []
STRINGS: list[object] = []


class Payload:
    def __init__(self) -> None:
        self.data = list(range(10))

    def on_event(self, value: object) -> None:
        self.data.append(value)


# A class whose name is markup, quotes, control characters and a key.
Evil = type(f"Evil{SCRIPT}{QUOTES}{CONTROL}{API_KEY}", (Payload,), {})


def _hostile_listener(self: object) -> None:
    pass


# The detail column of a bound method shows its function's qualified name.
_hostile_listener.__qualname__ = f"{SCRIPT}.{AWS_KEY}.{CONTROL}"
Evil.listen = _hostile_listener  # type: ignore[attr-defined]

GLOBAL_NAME = f"leak{CONTROL}{BEARER}"


@pytest.fixture(autouse=True)
def _masking_restored():
    yield
    reftrace.set_masking(True)


@pytest.fixture(scope="module")
def hostile_report() -> reftrace.Report:
    """A real report whose labels carry every kind of hostile string."""
    holder = Payload()
    try:
        with reftrace.watch() as w:
            for holder_dict, key in zip(HOSTILE, HOSTILE_KEYS):
                holder_dict[key] = w.track(Evil())
            globals()[GLOBAL_NAME] = w.track(Evil())
            setattr(holder, f"attr{CONTROL}{PASSWORD}", w.track(Evil()))
            REGISTRY.append(holder)
            listener = w.track(Evil())
            LISTENERS.append(listener.listen)
            STRINGS.append(w.track("".join([API_KEY, " ", CONTROL, " a str value"])))
            del listener
        return w.report
    finally:
        for holder_dict in HOSTILE:
            holder_dict.clear()
        STRINGS.clear()
        LISTENERS.clear()
        REGISTRY.clear()
        globals().pop(GLOBAL_NAME, None)


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def _visible_only(text: str) -> None:
    """Every character but the line breaks is printable: no raw control character."""
    for line in text.split("\n"):
        assert line.isprintable(), repr(line)


class _Markup(html.parser.HTMLParser):
    """Collects what a browser would see: tags, attributes, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


SAFE_TAGS = {
    "div", "style", "p", "strong", "h4", "table", "thead", "tbody", "tr", "th", "td",
    "br", "ul", "li", "code", "svg", "g", "title", "polygon", "ellipse", "path",
    "polyline", "text", "!doctype", "html", "head", "meta", "body",
}  # fmt: skip


def _safe_html(markup: str) -> _Markup:
    assert "<script" not in markup.lower()
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    assert parser.tags <= SAFE_TAGS, parser.tags - SAFE_TAGS
    assert not any(name.startswith("on") for name in parser.attributes), parser.attributes
    return parser


# -- the hostile strings really are in the report ------------------------------------------


def test_the_hostile_strings_reach_the_report_data(hostile_report):
    labels = [step.label for leak in hostile_report.leaks if leak.path for step in leak.path.steps]
    assert GLOBAL_NAME in labels  # a raw global name
    assert repr(API_KEY) in " ".join(labels)  # a dict key, as code
    assert any(Evil.__qualname__ == leak.type_name for leak in hostile_report.leaks)
    details = [
        step.detail for leak in hostile_report.leaks if leak.path for step in leak.path.steps
    ]
    assert _hostile_listener.__qualname__ in details
    assert repr(API_KEY + " " + CONTROL)[:40] in " ".join(details)  # a str value
    assert len(hostile_report.leak_groups) == 11  # every one shown in the text
    roots = {leak.path.steps[0].label for leak in hostile_report.leaks if leak.path}
    assert {f"HOSTILE_{i}" for i in range(len(HOSTILE_KEYS))} <= roots


# -- text ------------------------------------------------------------------------------


def test_text_masks_secrets_and_escapes_control_characters(hostile_report):
    for text in [
        str(hostile_report),
        *map(str, hostile_report.leaks),
        *map(str, hostile_report.leak_groups),
        *map(str, hostile_report.survivors),
    ]:
        _no_secret(text)
        _visible_only(text)
    text = str(hostile_report)
    assert "\\x1b[2J" in text and "\\u202e" in text  # shown, as escapes
    assert "sk-[masked]" in text and "AKIA[masked]" in text
    assert "Bearer [masked]" in text and "password=[masked]" in text
    # The faked line stays inside its label, never a line of its own.
    assert not any(line.startswith("note: all clear") for line in text.split("\n"))


# -- SVG ----------------------------------------------------------------------------------


def test_svg_escapes_every_label_and_masks_secrets(hostile_report, tmp_path):
    target = tmp_path / "leak.svg"
    hostile_report.render(target)
    raw = target.read_text(encoding="utf-8")
    assert "<script" not in raw.lower() and "<img" not in raw.lower()
    assert "\x1b" not in raw and "\x07" not in raw
    _no_secret(raw)
    tree = ET.fromstring(raw.encode("utf-8"))  # well-formed: no label broke out
    names = {element.tag.rsplit("}", 1)[-1] for element in tree.iter()}
    assert names <= SAFE_TAGS, names - SAFE_TAGS
    assert not any(a.startswith("on") for element in tree.iter() for a in element.attrib)
    shown = " ".join(element.text or "" for element in tree.iter())
    assert SCRIPT in shown  # drawn as text, not dropped
    assert "\\x1b[2J" in shown and "sk-[masked]" in shown


def test_dot_source_keeps_each_label_inside_its_quotes(hostile_report, tmp_path):
    target = tmp_path / "leak.dot"
    hostile_report.render(target)
    source = target.read_text(encoding="utf-8")
    assert "\x1b" not in source and "\n\x07" not in source
    assert "label=<" not in source  # never an HTML-like Graphviz label
    _no_secret(source)
    drawn = graph.layout(source, "svg")  # the layout program parses it
    assert drawn.lstrip().startswith(b"<?xml")


# -- HTML -----------------------------------------------------------------------------------


def test_html_escapes_markup_and_masks_secrets(hostile_report):
    for markup in [
        hostile_report._repr_html_(),
        *(leak._repr_html_() for leak in hostile_report.leaks[:3]),
        *(group._repr_html_() for group in hostile_report.leak_groups[:3]),
        *(group._repr_html_() for group in hostile_report.survivors[:3]),
    ]:
        parser = _safe_html(markup)
        _no_secret(markup)
        assert "\x1b" not in markup and "\x07" not in markup
        assert "svg" in parser.tags  # the graph is inline
    report_view = _safe_html(hostile_report._repr_html_())
    shown = "".join(report_view.text)
    assert SCRIPT in shown and "sk-[masked]" in shown and "\\x1b[2J" in shown
    assert "suspect" in shown


def test_html_has_the_trace_survivors_and_allocations_tables(hostile_report):
    markup = hostile_report._repr_html_()
    assert "class='trace'" in markup and "class='survivors'" in markup
    assert "class='allocations'" in markup and "class='suspect'" in markup
    assert "Retention graph" in markup and "<svg" in markup


# -- JSON ------------------------------------------------------------------------------------


def test_json_masks_secrets_and_is_safe_inside_html(hostile_report):
    text = hostile_report.to_json()
    _no_secret(text)
    assert "<" not in text and ">" not in text and "&" not in text
    data = json.loads(text)
    assert data == hostile_report.to_dict()
    keys = [step["label"] for leak in data["leaks"] for step in leak["path"]["steps"]]
    assert "['sk-[masked]']" in keys
    assert any(SCRIPT in key for key in keys)  # data keeps the text itself
    _no_secret(json.dumps(hostile_report.leaks[0].to_dict()))


# -- masking off, and per call -----------------------------------------------------------------


def test_with_masking_off_secrets_show_but_markup_stays_escaped(hostile_report, tmp_path):
    reftrace.set_masking(False)
    assert API_KEY in str(hostile_report)
    assert AWS_KEY in hostile_report.to_json()
    markup = hostile_report._repr_html_()
    _safe_html(markup)
    assert API_KEY in markup
    target = tmp_path / "leak.svg"
    hostile_report.render(target)
    raw = target.read_text(encoding="utf-8")
    assert "<script" not in raw.lower()
    assert API_KEY in " ".join(e.text or "" for e in ET.fromstring(raw.encode()).iter())
    _visible_only(str(hostile_report))


def test_mask_keyword_overrides_the_setting_for_one_call(hostile_report, tmp_path):
    assert API_KEY in hostile_report.to_json(mask=False)
    assert API_KEY in json.dumps(hostile_report.to_dict(mask=False))
    assert API_KEY in hostile_report.to_html(mask=False, graph=False)
    _no_secret(hostile_report.to_json())  # the setting itself did not change
    reftrace.set_masking(False)
    _no_secret(hostile_report.to_json(mask=True))
    _no_secret(hostile_report.to_html(mask=True))
    hostile_report.render(tmp_path / "masked.svg", mask=True)
    _no_secret((tmp_path / "masked.svg").read_text(encoding="utf-8"))
    with pytest.raises(TypeError, match="mask"):
        hostile_report.to_dict(mask="yes")


def test_extra_patterns_are_masked_everywhere():
    reftrace.set_masking(True, extra=[r"acme-[0-9a-f]{32}"])
    secret = "acme-" + "0123456789abcdef" * 2
    report = _chain_report(3, name=f"cfg {secret}")
    assert secret not in str(report) and secret not in report.to_json()
    assert secret not in report.to_html(graph=False)
    with pytest.raises(ValueError, match="invalid masking pattern"):
        reftrace.set_masking(True, extra=["("])


def test_mask_is_idempotent_for_every_kind_of_secret():
    samples = [
        API_KEY,
        BEARER,
        AWS_KEY,
        PASSWORD,
        "aws_secret_access_key=" + "A" * 40,
        "ghp_" + "a" * 36,
        "xoxb-1234567890-abcdef",
        "AIza" + "B" * 35,
        "sk_live_" + "c" * 24,
        "hf_" + "d" * 34,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        "postgres://admin:s3cretPass@db/x",
        "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY----- after",
        "SECRET_KEY: 'abcd1234'",
    ]
    for sample in samples:
        once = redact.mask(sample)
        assert once != sample and redact.MASK in once, sample
        assert redact.mask(once) == once, sample
    assert redact.mask("Authorization: Bearer abcdefghijk") == "Authorization: Bearer [masked]"
    for harmless in (".events", "['chunk']", "task-1234567890abcdef", "list", "[17]"):
        assert redact.mask(harmless) == harmless


def test_clean_escapes_truncates_and_never_cuts_an_escape():
    assert redact.clean("a\x1bb", 10) == "a\\x1bb"
    assert redact.clean("x" * 100, 10) == "x" * 9 + "…"
    assert redact.clean("abcdefgh\x1b", 10) == "abcdefgh…"  # not "abcdefgh\\…"
    assert redact.clean("\u202e\u200b\t", 40) == "\\u202e\\u200b\\t"
    assert redact.escape_controls("plain é ✓") == "plain é ✓"
    assert len(redact.bound("y" * 5000)) == redact.JSON_LIMIT


def test_mask_data_handles_any_depth_without_recursion():
    data: list[object] = [API_KEY]
    for _ in range(100_000):
        data = [data]
    masked = redact.mask_data(data)
    depth = 0
    while isinstance(masked, list) and masked and isinstance(masked[0], list):
        masked = masked[0]
        depth += 1
    assert depth == 100_000 and masked == ["sk-[masked]"]


# -- huge strings, long paths, big containers ---------------------------------------------------


def test_a_10_mb_string_is_truncated_in_every_output(tmp_path):
    huge_name = "k" * 10_000_000
    Huge = type("T" * 10_000_000, (), {})
    globals()[huge_name] = None
    try:
        with reftrace.watch() as w:
            globals()[huge_name] = w.track(Huge())
        report = w.report
    finally:
        globals().pop(huge_name, None)
    leak = report.leaks[0]
    assert leak.path is not None and leak.path.steps[0].label == huge_name
    started = time.perf_counter()
    assert len(str(report)) < 5_000
    assert len(report.to_json()) < 20_000
    assert len(report.to_html(graph=False)) < 20_000
    report.render(tmp_path / "huge.svg")
    assert (tmp_path / "huge.svg").stat().st_size < 20_000
    report.save(tmp_path / "huge.json")
    assert (tmp_path / "huge.json").stat().st_size < 20_000
    assert time.perf_counter() - started < 10


def _chain_report(steps: int, suspect: int | None = None, name: str = "app") -> Report:
    """A report built by hand with a path of ``steps`` steps (old, then new)."""
    suspect = steps - 1 if suspect is None else suspect
    chain = tuple(
        Step(
            label=".next",
            kind="attr",
            code=".next",
            type_name="Node",
            status="old" if i < suspect else "new",
            is_suspect=i == suspect,
            detail="",
        )
        for i in range(steps)
    )
    path = Path(Root("module", name), (Step("HEAD", "global", "HEAD", "Node", "old"), *chain))
    leak = Leak("Node", path, "sig", size=48, objects=1)
    survivor = SurvivorGroup("HEAD.next", "Node", ".next", path, 1, 48, [("Node", 1)])
    return Report(leaks=[leak], survivors=[survivor], tracked=1, new_objects=1)


def test_a_100000_step_path_renders_bounded_everywhere(tmp_path):
    report = _chain_report(99_999)  # with HEAD: 100,000 steps, the suspect last
    assert len(report.leaks[0].path.steps) == 100_000
    text = str(report)
    assert len(text) < 4_000
    assert "… 99,988 more steps …" in text
    assert text.count("\n├─ .next") + text.count("\n└─ .next") < 20
    markup = report._repr_html_()
    assert len(markup) < 60_000 and "… 99,988 more steps …" in markup
    _safe_html(markup)
    target = tmp_path / "chain.svg"
    report.render(target)
    svg = target.read_text(encoding="utf-8")
    assert svg.count("99,988 more steps") == 1  # one summary node
    assert svg.count('class="node"') < 20
    dot = graph.build_graph(report).source
    assert len(dot) < 10_000


def test_a_long_path_shows_its_suspect_reference_in_the_middle():
    report = _chain_report(99_999, suspect=50_000)
    text = str(report.leaks[0])
    assert "suspect: this reference was created inside the block" in text
    assert text.count("more steps …") == 2
    hidden = sum(
        int(line.split("… ")[1].split(" more")[0].replace(",", ""))
        for line in text.split("\n")
        if "more steps" in line
    )
    shown = sum(1 for line in text.split("\n") if line.startswith(("├─", "└─")))
    assert hidden + shown == 100_000


def test_json_keeps_every_step_of_a_100000_step_path(tmp_path):
    report = _chain_report(99_999)
    data = report.to_dict()
    assert len(data["leaks"][0]["path"]["steps"]) == 100_000
    loaded = reftrace.load(report.save(tmp_path / "chain.json"))
    assert len(loaded.leaks[0].path.steps) == 100_000
    assert loaded.to_dict() == data
    assert str(loaded) == str(report)


def test_a_million_item_list_gives_a_bounded_report():
    BIG[:] = [None] * 1_000_000
    try:
        with reftrace.watch() as w:
            BIG.append(w.track(Payload()))
            REGISTRY.append([None] * 999_999 + [w.track(Payload())])
        report = w.report
    finally:
        BIG.clear()
        REGISTRY.clear()
    expressions = sorted(leak.path.expression for leak in report.leaks)
    assert expressions == ["BIG[1000000]", "REGISTRY[0][999999]"]
    text = str(report)
    assert len(text) < 5_000
    assert "1000001 items" in text or "1000000 items" in text
    assert len(report.to_html(graph=False)) < 30_000


def test_many_findings_are_listed_up_to_a_limit():
    leaks = [
        Leak(f"T{i}", Path(Root("module", "m"), (Step(f"G{i}", "global", "g", "T", "new"),)),
             f"sig{i}", 10, 1)
        for i in range(500)
    ]  # fmt: skip
    report = Report(leaks=leaks, notes=[f"note {i}" for i in range(100)])
    text = str(report)
    assert "500 leaked objects in 500 findings" in text
    assert "… and 480 more findings (all in report.leak_groups)" in text
    assert "… and 80 more notes" in text
    assert len(text) < 10_000
    markup = report._repr_html_()
    assert "… and 480 more findings" in markup
    assert markup.count("<table class='trace'>") == 20


# -- roots named by the program: thread and function names --------------------------------------


def test_thread_and_function_names_are_cleaned():
    handed: list[object] = []
    holding, release = threading.Event(), threading.Event()

    def worker() -> None:
        while not handed:
            holding.wait(0.01)
        kept_here = handed.pop()
        holding.set()
        release.wait()
        del kept_here

    code = worker.__code__.replace(co_name=f"run{CONTROL}{PASSWORD}")
    if sys.version_info >= (3, 11):
        code = code.replace(co_qualname=f"run{CONTROL}{PASSWORD}")
    worker.__code__ = code
    thread = threading.Thread(target=worker, name=f"worker {SCRIPT} {CONTROL} {API_KEY}")
    thread.start()
    try:
        with reftrace.watch() as w:
            handed.append(w.track(Payload()))
            assert holding.wait(10)
    finally:
        release.set()
        thread.join()
    leak = w.report.leaks[0]
    assert leak.path is not None and leak.path.root.kind == "frame"
    assert API_KEY in leak.path.root.name and "\x1b" in leak.path.root.function
    text = str(w.report)
    _no_secret(text)
    _visible_only(text)
    assert "thread worker <script>" in text
    markup = w.report._repr_html_()
    _safe_html(markup)
    _no_secret(markup)


# -- save and load -------------------------------------------------------------------------------


def test_save_and_load_round_trip_a_real_report(tmp_path):
    with reftrace.watch() as w:
        out = w.track(Payload())  # a handle of this function: a note
        kept = w.track(Payload())
        LISTENERS.append(kept.on_event)
        del kept
    report = w.report
    try:
        assert report.leaks and report.survivors and report.allocations and report.notes
        target = tmp_path / "report.json"
        assert report.save(target) == str(target)
        assert os.listdir(tmp_path) == ["report.json"]  # no temporary file left
        data = json.loads(target.read_bytes().decode("utf-8"))
        assert data["format"] == "reftrace-report" and data["version"] == 1
        loaded = reftrace.load(target)
        assert loaded.to_dict() == report.to_dict()
        assert str(loaded) == str(report)
        assert reftrace.Report.load(str(target)).to_dict() == report.to_dict()
        assert report.leaks[0].object is not None
        assert loaded.leaks[0].object is None  # descriptions only: no object
        assert loaded.leaks[0].path == report.leaks[0].path
        assert loaded.survivors == report.survivors
        assert loaded.allocations == report.allocations
        assert loaded.finding_sizes == report.finding_sizes
    finally:
        LISTENERS.clear()
    assert out is not None


def test_save_masks_by_default_and_keeps_raw_data_when_asked(hostile_report, tmp_path):
    masked = tmp_path / "masked.json"
    hostile_report.save(masked)
    _no_secret(masked.read_text(encoding="utf-8"))
    raw = tmp_path / "raw.json"
    hostile_report.save(raw, mask=False)
    assert API_KEY in raw.read_text(encoding="utf-8")
    assert reftrace.load(raw).to_dict(mask=False) == hostile_report.to_dict(mask=False)
    assert reftrace.load(masked).to_dict() == hostile_report.to_dict()
    assert str(reftrace.load(masked)) == str(hostile_report)


def test_a_failed_save_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("previous", encoding="utf-8")
    report = _chain_report(3)
    report.allocations.append(Allocation("x.py:1", 64, 1))

    def broken(self: Allocation, **kwargs: object) -> None:
        raise OSError("disk full")  # after the leaks were written

    monkeypatch.setattr(Allocation, "to_dict", broken)
    with pytest.raises(OSError, match="disk full"):
        report.save(target)
    assert target.read_text(encoding="utf-8") == "previous"
    assert os.listdir(tmp_path) == ["report.json"]


def _saved(tmp_path: FilePath) -> tuple[FilePath, dict[str, object]]:
    report = _chain_report(3)
    report.leaks.append(Leak("Lost", None, "lost", 8, 1, "x.py:1", "no root found"))
    target = tmp_path / "report.json"
    report.save(target)
    return target, json.loads(target.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "edit, field, problem",
    [
        (lambda d: d["leaks"][0]["path"]["steps"][2].update(status=3),
         "leaks[0].path.steps[2].status", "expected str, got int"),
        (lambda d: d["leaks"][0]["path"]["steps"][1].update(status="stale"),
         "leaks[0].path.steps[1].status", "expected one of old, new, unknown"),
        (lambda d: d["leaks"][0]["path"]["steps"][1].update(kind="wormhole"),
         "leaks[0].path.steps[1].kind", "expected one of global, local, attr"),
        (lambda d: d["leaks"][0]["path"]["root"].update(kind="planet"),
         "leaks[0].path.root.kind", "expected one of module, frame, exception, hidden"),
        (lambda d: d["leaks"][1].pop("size"), "leaks[1].size", "missing"),
        (lambda d: d["leaks"][0].update(objects=True), "leaks[0].objects", "got bool"),
        (lambda d: d["leaks"][0].update(size=-5), "leaks[0].size", "0 or more"),
        (lambda d: d["leaks"][0]["path"].update(steps={}), "leaks[0].path.steps", "got object"),
        (lambda d: d["leaks"][0]["path"]["root"].pop("name"), "leaks[0].path.root.name",
         "missing"),
        (lambda d: d["survivors"][0]["top_types"].append(["x"]), "survivors[0].top_types[1]",
         "pair"),
        (lambda d: d.update(leaks="none"), "leaks", "expected a list, got str"),
        (lambda d: d.update(version=2), "version", "unsupported version 2"),
        (lambda d: d.update(version="1"), "version", "expected int, got str"),
        (lambda d: d.update(format="pytest-report"), "format", "expected 'reftrace-report'"),
        (lambda d: d.pop("format"), "format", "missing"),
        (lambda d: d["timings"].update(total="fast"), "timings['total']", "expected a number"),
        (lambda d: d["notes"].append(None), "notes[0]", "expected str, got null"),
    ],
)  # fmt: skip
def test_hand_edited_files_name_the_wrong_field(tmp_path, edit, field, problem):
    target, data = _saved(tmp_path)
    edit(data)
    target.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(reftrace.ReportFormatError) as info:
        reftrace.load(target)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.field == field
    assert str(target) in str(error) and f"{field}: " in str(error)
    assert problem in str(error)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "not valid JSON"),
        (b"[]", "expected an object, got list"),
        (b"\xff\xfe{", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"format": "reftrace-report", "version": 1, "leaks": [', "not valid JSON"),
    ],
)
def test_corrupt_files_give_a_clear_error(tmp_path, content, problem):
    target = tmp_path / "bad.json"
    target.write_bytes(content)
    with pytest.raises(reftrace.ReportFormatError, match=problem) as info:
        reftrace.load(target)
    assert str(target) in str(info.value)


def test_a_truncated_save_is_refused(tmp_path):
    target, _ = _saved(tmp_path)
    whole = target.read_bytes()
    target.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        reftrace.ReportFormatError, match=r"not valid JSON: .*\(line \d+, column \d+\)"
    ):
        reftrace.load(target)


class _Tripwire:
    """Unpickling this makes a directory: proof that a pickle was loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_is_never_loaded(tmp_path, protocol):
    marker = tmp_path / "unpickled"
    target = tmp_path / "report.json"
    target.write_bytes(pickle.dumps(_Tripwire(str(marker)), protocol=protocol))
    with pytest.raises(reftrace.ReportFormatError) as info:
        reftrace.load(target)
    assert not marker.exists()
    if protocol >= 2:
        assert "pickle" in str(info.value)


def test_load_bad_arguments(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        reftrace.load(missing)
    with pytest.raises(TypeError, match="file path"):
        reftrace.load(42)  # type: ignore[arg-type]


# -- render and save: bad input --------------------------------------------------------------------


@pytest.fixture
def live_leak():
    with reftrace.watch() as w:
        REGISTRY.append(w.track(Payload()))
    yield w.report
    REGISTRY.clear()


def test_render_rejects_bad_arguments_before_writing_anything(live_leak, tmp_path):
    report = live_leak
    before = report.to_dict()
    held = REGISTRY[0]
    with pytest.raises(ValueError, match=r"unknown format 'gif'.*svg, png, dot, html"):
        report.render(tmp_path / "leak.gif")
    with pytest.raises(ValueError, match=r"unknown format 'jpeg'"):
        report.render(tmp_path / "leak.svg", format="jpeg")
    with pytest.raises(TypeError, match="file path"):
        report.render(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="file path"):
        report.render(b"leak.svg")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="format"):
        report.render(tmp_path / "leak.svg", format=3)  # type: ignore[arg-type]
    missing = tmp_path / "missing" / "leak.svg"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        report.render(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(IsADirectoryError, match="is a directory") as info:
        report.render(tmp_path, format="svg")
    assert str(tmp_path) in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        report.render(tmp_path / "file" / "leak.svg")
    with pytest.raises(IsADirectoryError):
        report.save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["file"]  # nothing half-written
    assert report.to_dict() == before  # the report and the program are untouched
    assert len(REGISTRY) == 1 and REGISTRY[0] is held and report.leaks[0].object is held


def test_render_writes_html_and_formats_from_the_suffix(live_leak, tmp_path):
    page = FilePath(live_leak.render(tmp_path / "report.html"))
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    _safe_html(text)
    dot = FilePath(live_leak.render(tmp_path / "graph", format="DOT"))
    assert dot.read_text(encoding="utf-8").startswith("digraph")


def test_without_graphviz_the_dot_source_is_written_and_the_error_says_how(
    live_leak, tmp_path, monkeypatch
):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv(graph.DOT_ENV, "dot")  # looked up on PATH only: not found
    assert graph.find_dot() is None
    target = tmp_path / "leak.svg"
    with pytest.raises(graph.GraphvizNotFound) as info:
        live_leak.render(target)
    message = str(info.value)
    assert "install Graphviz" in message and "graphviz-pure" in message
    assert str(tmp_path / "leak.dot") in message
    assert (tmp_path / "leak.dot").read_text(encoding="utf-8").startswith("digraph")
    assert not target.exists()
    assert isinstance(info.value, RuntimeError)
    markup = live_leak._repr_html_()  # a notebook view never raises
    assert "Retention graph not shown" in markup and "install Graphviz" in markup
    assert "<svg" not in markup and "class='trace'" in markup


def test_a_failing_layout_program_leaves_no_file(live_leak, tmp_path, monkeypatch):
    fake = tmp_path / "fake-dot"
    fake.write_text("#!/bin/sh\nprintf '<svg partial'\necho 'layout exploded' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(graph.DOT_ENV, str(fake))
    target = tmp_path / "out" / "leak.svg"
    target.parent.mkdir()
    with pytest.raises(RuntimeError, match="layout exploded"):
        live_leak.render(target)
    assert os.listdir(target.parent) == []
    markup = live_leak._repr_html_()
    assert "Retention graph not shown" in markup and "layout exploded" in markup


def test_from_dict_rebuilds_and_checks_data():
    report = _chain_report(5)
    assert Report.from_dict(report.to_dict()).to_dict() == report.to_dict()
    data = report.to_dict()
    data["survivors"][0]["count"] = "one"
    with pytest.raises(reftrace.ReportFormatError, match=r"<data>: .*survivors\[0\]\.count"):
        Report.from_dict(data)
