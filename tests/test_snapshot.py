"""reftrace.snapshot(): counts by type, diffs, live objects, paths, and the hand-offs."""

from __future__ import annotations

import gc
import sys
import types
import weakref

import pytest

import reftrace
from reftrace.snapshot import (
    ObjectList,
    ObjectPath,
    Snapshot,
    SnapshotDiff,
    asizeof,
    show_backrefs,
    snapshot,
    to_guppy,
    to_pympler,
)

MODULE = "reftrace_snapshot_planted"
N = 5000


class Planted:
    # Slots make it big enough (160 bytes) to be among the largest types.
    __slots__ = ("index", "payload", *(f"slot{i}" for i in range(14)))

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        raise RuntimeError("user code: a snapshot must never call this")


class Box:
    def __init__(self) -> None:
        self.payload: object = None


PLANTED = f"{Planted.__module__}.Planted"


@pytest.fixture
def planted():
    """A throwaway module, the way an application's module keeps its globals."""
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module
    try:
        yield module
    finally:
        del sys.modules[MODULE]
        module.__dict__.clear()


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    # The first snapshots fill process-wide caches once (ABC registries):
    # memory kept by design, not what these tests look at.
    (snapshot() - snapshot()).grown()


def own_names(names):
    return [n for n in names if n.startswith("reftrace.") and not n.startswith("reftrace.demo")]


# -- counts ------------------------------------------------------------------------


def test_top_shows_a_planted_population(planted):
    planted.ITEMS = [Planted(i) for i in range(N)]
    snap = snapshot()
    rows = {row.name: row for row in snap.top(20)}
    assert rows[PLANTED].count == N
    assert rows[PLANTED].size == N * sys.getsizeof(planted.ITEMS[0])
    name, count, size = rows[PLANTED]
    assert (name, count) == (PLANTED, N)
    assert snap.stats(Planted) == rows[PLANTED]
    assert snap.stats("Planted") == rows[PLANTED]
    assert snap.stats(PLANTED) == rows[PLANTED]
    assert snap.top(3) == snap.types[:3]
    assert [r.size for r in snap.types] == sorted((r.size for r in snap.types), reverse=True)
    assert snap.count == sum(r.count for r in snap.types)
    text = str(snap)
    assert text.startswith("heap snapshot: ")
    assert PLANTED in text and f"{N:,}" in text
    assert repr(snap).startswith("<Snapshot: ")


def test_reftrace_own_objects_are_not_counted(planted):
    first = snapshot()
    planted.LISTS = [first.objects("dict", limit=5), first.objects("list", limit=5)]
    second = snapshot()
    diff = second - first
    assert isinstance(diff, SnapshotDiff)
    assert own_names(second._counts) == []
    assert own_names(row.name for row in diff.changes) == []
    # The only growth: the one list the module now holds (and its module dict,
    # which holding a list made tracked); not the snapshot, its tables, nor
    # the object lists handed out.
    grown = {row.name: row.count for row in diff.grown()}
    assert grown.get("list", 0) <= 1
    assert sum(grown.values()) <= 2


def test_diff_shows_the_growth_of_the_planted_type(planted):
    before = snapshot()
    str(before), before.to_html()  # rendering between snapshots leaves nothing
    planted.ITEMS = [Planted(i) for i in range(N)]
    after = snapshot()
    diff = after - before
    top = diff.grown(1)[0]
    assert (top.name, top.count, top.count_before, top.count_after) == (PLANTED, N, 0, N)
    assert top.size == N * sys.getsizeof(planted.ITEMS[0])
    assert after.diff(before).changes == diff.changes
    # Nothing but the population and the list that holds it: no noise of reftrace's.
    others = [row for row in diff.grown(100) if row.name not in (PLANTED, "list", "dict")]
    assert own_names(row.name for row in diff.changes) == []
    assert sum(row.count for row in others) <= 50, others
    text = str(diff)
    assert text.startswith("heap diff over ")
    assert f"+{N:,}" in text and PLANTED in text
    with pytest.raises(TypeError):
        before.diff("not a snapshot")  # type: ignore[arg-type]


def test_diff_of_a_shrinking_type(planted):
    planted.ITEMS = [Planted(i) for i in range(100)]
    before = snapshot()
    del planted.ITEMS[:60]
    diff = snapshot() - before
    row = diff.shrunk(1)[0]
    assert (row.name, row.count, row.count_after) == (PLANTED, -60, 40)
    assert PLANTED not in [r.name for r in diff.grown(100)]


# -- the live heap -----------------------------------------------------------------


def test_objects_returns_the_live_instances(planted):
    planted.ITEMS = [Planted(i) for i in range(N)]
    snap = snapshot()
    found = snap.objects(Planted)
    assert isinstance(found, ObjectList) and len(found) == N
    assert {id(obj) for obj in found} == {id(obj) for obj in planted.ITEMS}
    assert len(snap.objects("Planted")) == N
    assert len(snap.objects(PLANTED)) == N
    assert snap.objects("NoSuchTypeAnywhere") == []
    assert len(snap.objects(Planted, limit=10)) == 10
    assert snap.objects(Planted, limit=0) == []
    # No user repr runs: Planted.__repr__ raises.
    assert repr(found) == f"<ObjectList: {N:,} objects of {PLANTED}>"
    assert found.types[0].count == N
    assert "<table" in found._repr_html_()
    del planted.ITEMS[:]
    assert len(found) == N  # the list holds what it handed out ...
    del found
    assert snap.objects(Planted) == []  # ... and only it did
    with pytest.raises(ValueError):
        snap.objects(Planted, limit=-1)
    with pytest.raises(TypeError):
        snap.objects(42)  # type: ignore[arg-type]


def test_new_objects_are_those_made_between_the_snapshots(planted):
    planted.OLD = [Planted(i) for i in range(100)]
    before = snapshot()
    planted.NEW = [Planted(i) for i in range(N)]
    diff = snapshot() - before
    planted.LATER = [Planted(i) for i in range(10)]  # after both snapshots: not new
    new = diff.new_objects(Planted)
    # (One made at the address of an object that died in between would be missed.)
    assert {id(obj) for obj in new} <= {id(obj) for obj in planted.NEW}
    assert len(new) >= N - 10
    everything = diff.new_objects()  # every type that grew
    assert {id(obj) for obj in planted.NEW} <= {id(obj) for obj in everything}
    assert any(obj is planted.NEW for obj in everything)  # the new list
    assert not any(obj is planted.OLD for obj in everything)


def test_path_names_the_module_global(planted):
    before = snapshot()
    planted.STORE = {"items": [Planted(i) for i in range(N)]}
    # reftrace's own list is never a link, though it would make a shorter path.
    planted.HANDED = before.objects(Planted)
    target = planted.STORE["items"][123]
    found = before.path(target)
    assert isinstance(found, ObjectPath)
    assert found.path is not None and not found.garbage
    assert (found.path.root.kind, found.path.root.name) == ("module", MODULE)
    assert found.expression == "STORE['items'][123]"
    # Relative to the snapshot all links are new; the first is where they attach.
    assert [s.status for s in found.path.steps] == ["new", "new", "new"]
    assert found.path.suspect is found.path.steps[0]
    text = str(found)
    assert "root: module " + MODULE in text
    assert "suspect: this reference was made after the snapshot" in text
    assert "inside the block" not in text
    html = found.to_html(graph=False)
    assert "made after the snapshot" in html and "inside the block" not in html
    assert "<svg" in found._repr_html_()  # the retention graph, inline
    # From a snapshot taken after, everything on the path is old: no suspect.
    later = snapshot().path(target)
    assert later.expression == "STORE['items'][123]"
    assert {s.status for s in later.path.steps} == {"old"}
    assert later.path.suspect is None


def test_path_through_attributes_and_the_diff(planted):
    before = snapshot()
    planted.HOLDER = Box()
    planted.HOLDER.payload = {"cache": [Planted(0)]}
    diff = snapshot() - before
    target = diff.new_objects(Planted)[0]
    found = diff.path(target)
    assert found.expression == "HOLDER.payload['cache'][0]"
    assert found.path.suspect is found.path.steps[0]


def test_path_of_a_garbage_cycle_says_why(planted):
    snap = snapshot()
    enabled = gc.isenabled()
    gc.disable()  # keep the cycle uncollected while it is looked at
    try:
        node = Box()
        node.payload = node
        ref = weakref.ref(node)
        del node
        found = snap.path(ref())
        assert found.path is None and found.garbage
        assert "garbage" in found.reason
        assert "no path from a root" in str(found)
        assert "garbage" in found.to_html()
    finally:
        if enabled:
            gc.enable()
        gc.collect()
    assert ref() is None


def test_path_from_module_level_code_skips_its_own_handle(planted):
    # A script or a notebook cell: its globals are roots, but `x = ...`
    # bound to the object itself is the asker's handle, not what holds it.
    code = (
        "KEEP = [Box()]\n"
        "x = KEEP[0]\n"
        "held = snap.path(x).expression\n"
        "y = Box()\n"
        "only = snap.path(y).expression\n"
    )
    vars(planted).update(snap=snapshot(), Box=Box)
    exec(code, vars(planted))
    assert (planted.held, planted.only) == ("KEEP[0]", "y")


def test_path_of_an_object_only_the_caller_holds(planted):
    snap = snapshot()
    mine = Box()
    found = snap.path(mine)
    assert found.path is None and found.garbage
    assert "test_path_of_an_object_only_the_caller_holds" in found.reason


def test_referrers_name_each_holder(planted):
    planted.ITEMS = [Planted(i) for i in range(10)]
    planted.HOLDER = Box()
    target = planted.ITEMS[7]
    planted.HOLDER.payload = target
    items = planted.ITEMS  # the caller's own local: not listed
    snap = snapshot()
    refs = snap.referrers(target)
    labels = {ref.label: ref for ref in refs}
    assert labels["[7]"].holder is items and labels["[7]"].kind == "index"
    assert ".payload" in labels or "['payload']" in labels  # 3.10: the instance's __dict__
    held = snap.referrers(items)
    assert [(r.label, r.kind) for r in held] == [(f"{MODULE}.ITEMS", "global")]
    assert held[0].holder is vars(planted)
    assert repr(held[0]) == f"Referrer(label='{MODULE}.ITEMS', kind='global', holder=<dict>)"
    assert len(snap.referrers(Planted, limit=3)) <= 3


# -- hand-offs ------------------------------------------------------------------------


def test_to_guppy_gives_an_identity_set(planted):
    pytest.importorskip("guppy")
    planted.ITEMS = [Planted(i) for i in range(N)]
    snap = snapshot()
    found = snap.objects(Planted)
    ids = found.to_guppy()
    assert type(ids).__name__.startswith("IdentitySet")
    assert ids.count == N
    assert ids.size == N * sys.getsizeof(planted.ITEMS[0])
    assert to_guppy(found[:10]).count == 10
    # Sets from the shared session combine.
    assert (to_guppy(found[:10]) | to_guppy(found[5:20])).count == 20


@pytest.mark.skipif(sys.version_info < (3, 15), reason="guppy3 builds before 3.15")
def test_to_guppy_on_3_15_says_guppy3_does_not_build_there(planted):
    planted.ITEMS = [Planted(i) for i in range(3)]
    with pytest.raises(ImportError, match="does not build on CPython 3.15.*to_pympler"):
        snapshot().objects(Planted).to_guppy()


def test_diff_to_guppy_is_the_new_objects(planted):
    pytest.importorskip("guppy")
    planted.OLD = [Planted(i) for i in range(50)]
    before = snapshot()
    planted.NEW = [Planted(i) for i in range(300)]
    diff = snapshot() - before
    assert 290 <= diff.to_guppy(Planted).count <= 300


def test_pympler_sizes_and_summary(planted):
    pytest.importorskip("pympler")
    planted.ITEMS = [Planted(i) for i in range(200)]
    for item in planted.ITEMS:
        item.payload = "x" * 1000 + str(item.index)  # a string of its own
    found = snapshot().objects(Planted)
    deep = found.asizeof()
    assert deep > 200 * 1000  # the payload strings count: a deep size
    assert asizeof(found[:1]) > 1000
    rows = to_pympler(found)
    assert [row[1] for row in rows] == [200] and rows == found.to_pympler()


def test_objgraph_writes_the_backrefs_graph(planted, tmp_path):
    pytest.importorskip("objgraph")
    planted.ITEMS = [Planted(i) for i in range(3)]
    found = snapshot().objects(Planted)
    dot = show_backrefs(found[:1], tmp_path / "backrefs.dot", max_depth=2)
    with open(dot, encoding="utf-8") as handle:
        source = handle.read()
    assert source.startswith("digraph") and "Planted" in source
    assert "ObjectList" not in source  # reftrace's own list is filtered out
    svg = found.show_backrefs(tmp_path / "backrefs.svg", max_depth=2)
    with open(svg, encoding="utf-8") as handle:
        drawing = handle.read()
    assert "<svg" in drawing and "Planted" in drawing
    with pytest.raises(ValueError, match="writes"):
        found.show_backrefs(tmp_path / "backrefs.txt")


def test_hand_offs_name_the_extra_when_a_tool_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pympler.asizeof", None)
    with pytest.raises(ImportError, match=r"reftrace\[tools\]"):
        asizeof([1, 2])
    monkeypatch.setitem(sys.modules, "objgraph", None)
    with pytest.raises(ImportError, match="pip install objgraph"):
        show_backrefs([[]], "graph.dot")


def test_hand_offs_want_an_iterable_of_objects():
    with pytest.raises(TypeError, match="wrap a single object"):
        asizeof(Box())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable of objects"):
        to_pympler({"a": 1})


# -- rendering -------------------------------------------------------------------------


def test_html_escapes_type_names_and_labels(planted):
    slots = {"__slots__": tuple(f"slot{i}" for i in range(30))}  # big: a top type
    hostile = type("<script>alert(1)</script>", (), slots)
    before = snapshot()
    planted.ITEMS = [hostile() for _ in range(3000)]
    planted.KEYED = {"<script>k</script>": Planted(0)}
    after = snapshot()
    diff = after - before
    found = after.path(planted.KEYED["<script>k</script>"])
    for page in (after._repr_html_(), diff._repr_html_(), found.to_html(graph=False)):
        assert "<script>" not in page
        assert "&lt;script&gt;" in page
    assert "<script>" not in after.objects(hostile)._repr_html_()


def test_secrets_in_type_names_are_masked(planted):
    secret = type("token=hunter2hunter2", (), {"__slots__": tuple(f"s{i}" for i in range(30))})
    planted.ITEMS = [secret() for _ in range(4000)]
    snap = snapshot()
    assert any(row.name.endswith("hunter2hunter2") for row in snap.types)
    for text in (str(snap), snap.to_html()):
        assert "hunter2" not in text
        assert "[masked]" in text
    assert "hunter2" in snap.to_html(mask=False)


def test_inside_a_watch_block_the_frozen_heap_is_noted():
    with reftrace.watch():
        inside = snapshot()
    assert any("gc.freeze()" in note for note in inside.notes)
    assert "gc.freeze()" in str(inside)
    outside = snapshot()
    assert not any("gc.freeze()" in note for note in outside.notes)


def test_traced_memory_is_recorded_when_tracemalloc_runs(planted):
    import tracemalloc

    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc already runs")
    assert snapshot().traced is None
    tracemalloc.start()
    try:
        before = snapshot()
        planted.ITEMS = [bytearray(1000) for _ in range(1000)]
        diff = snapshot() - before
        # Not counting the address array of `before`, about 8 bytes per object.
        assert 1_000_000 <= diff.traced < 1_000_000 + 200_000
        assert "tracemalloc traces" in str(diff)
    finally:
        tracemalloc.stop()


def test_a_snapshot_keeps_no_object_alive(planted):
    planted.ITEMS = [Planted(i) for i in range(10)]
    boxes = [Box() for _ in range(3)]
    refs = [weakref.ref(box) for box in boxes]
    planted.BOXES = boxes
    del boxes
    snap = snapshot()
    assert isinstance(snap, Snapshot)
    del planted.BOXES
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]
    assert snap.stats(Box).count == 3
