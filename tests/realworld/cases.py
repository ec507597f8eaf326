"""The real-world cases: real libraries, real releases, real leaks (and non-leaks).

Each ``Case`` names a script in ``cases/`` that runs one lifecycle of the
library. A *leak* case has a release that leaked (a tracked object stays
reachable after the lifecycle) and a later release that fixed it; both are
installed from PyPI and judged. A *bounded* case is memory a library keeps on
purpose (a bounded cache): reftrace must raise no alarm for it.

Every leak here was reproduced by hand with a plain ``weakref`` + ``gc.collect()``
in both releases before it was added; ``run.py`` re-checks that ground truth on
every run, so a case that stops reproducing fails loudly instead of passing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    name: str
    """Script name: ``cases/<name>.py``."""
    package: str
    """The PyPI distribution under test."""
    kind: str
    """``"leak"`` (a leaking and a fixed release) or ``"bounded"`` (kept on purpose)."""
    source: str
    """Issue / pull request / docs the case comes from."""
    what: str
    """One line: which reference holds what."""
    leaking: str | None = None
    fixed: str | None = None
    bounded: str | None = None
    holder: str = ""
    """For the leaking release: a substring the leak trace must contain (the holding reference)."""
    root: str = ""
    """For the leaking release: the root kind the leak path must start from."""
    requires: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Extra pins per version (dependencies the release needs to run at all)."""
    python_below: dict[str, tuple[tuple[int, int], str]] = field(default_factory=dict)
    """Per version: the first Python it does not run on, and why (the pair is skipped there)."""

    def versions(self) -> list[tuple[str, str]]:
        """``(version, role)`` pairs, role being ``leaking``, ``fixed`` or ``bounded``."""
        pairs = []
        for role in ("leaking", "fixed", "bounded"):
            version = getattr(self, role)
            if version is not None:
                pairs.append((version, role))
        return pairs

    def requirements(self, version: str) -> list[str]:
        return [f"{self.package}=={version}", *self.requires.get(version, ())]

    def unsupported(self, version: str, python: tuple[int, int]) -> str | None:
        """Why ``version`` cannot run on ``python`` (``None`` when it can)."""
        limit = self.python_below.get(version)
        if limit is not None and python >= limit[0]:
            (major, minor), why = limit
            return f"{self.package} {version} does not run on Python >= {major}.{minor}: {why}"
        return None


CASES: list[Case] = [
    Case(
        name="structlog_write_locks",
        package="structlog",
        kind="leak",
        leaking="25.5.0",
        fixed="26.1.0",
        source="https://github.com/hynek/structlog/issues/806 (fix: https://github.com/hynek/structlog/pull/807)",
        what=(
            "the module-level dict structlog._output.WRITE_LOCKS is keyed by every file object "
            "ever given to a BytesLogger/WriteLogger, so closed log files never die "
            "(26.1.0: WeakKeyDictionary)"
        ),
        holder="WRITE_LOCKS",
        root="module",
    ),
    Case(
        name="flake8_style_guide_cache",
        package="flake8",
        kind="leak",
        leaking="4.0.1",
        fixed="5.0.0",
        source="https://github.com/PyCQA/flake8/pull/1573",
        what=(
            "functools.lru_cache(maxsize=None) on the method StyleGuideManager.style_guide_for: "
            "the class-level cache keys (self, filename) keep every StyleGuideManager alive "
            "(5.0.0: per-instance cache, a collectable self-cycle)"
        ),
        holder="style_guide_for",
        root="module",
        # flake8 4.0.1 caps pycodestyle<2.9 and pyflakes<2.5 itself; nothing to add.
        python_below={
            "4.0.1": ((3, 12), "it calls importlib.metadata.entry_points().get(), removed in 3.12"),
        },
    ),
    Case(
        name="otel_sqlalchemy_engine",
        package="opentelemetry-instrumentation-sqlalchemy",
        kind="leak",
        leaking="0.37b0",
        fixed="0.40b0",
        source=(
            "https://github.com/open-telemetry/opentelemetry-python-contrib/issues/1761 "
            "(fix: https://github.com/open-telemetry/opentelemetry-python-contrib/pull/1771)"
        ),
        what=(
            "the class attribute EngineTracer._remove_event_listener_params (a list) holds "
            "(engine, event, listener) for every instrumented Engine, even after dispose() "
            "(0.40b0: weakref.ref(engine), no EngineTracer.engine)"
        ),
        holder="_remove_event_listener_params",
        root="module",
        requires={
            # The API and SQLAlchemy pinned to what these releases were built against;
            # setuptools<81 because opentelemetry-instrumentation imports pkg_resources.
            "0.37b0": ("opentelemetry-api==1.16.0", "sqlalchemy==2.0.36", "setuptools<81"),
            "0.40b0": ("opentelemetry-api==1.19.0", "sqlalchemy==2.0.36", "setuptools<81"),
        },
    ),
    Case(
        name="tqdm_monitor_thread",
        package="tqdm",
        kind="leak",
        leaking="4.48.0",
        fixed="4.48.1",
        source=(
            "https://github.com/tqdm/tqdm/commit/3bf905184f8ad83a39d10596aba06589de30a899 and "
            "https://github.com/tqdm/tqdm/commit/9d6a07c9783ad83ffe3ed245c546f4ba7e502ba3 "
            '("remove accidental strong reference to tqdm instance", released in 4.48.1)'
        ),
        what=(
            "the locals 'instances' and 'instance' of TMonitor.run, in the sleeping monitor "
            "thread's frame, keep the bars of its last pass alive after they are closed "
            "(4.48.1: del instance / del instances)"
        ),
        holder="local 'instance",
        root="frame",
    ),
    Case(
        name="jinja2_spontaneous_env",
        package="jinja2",
        kind="bounded",
        bounded="3.1.6",
        source=(
            "https://github.com/pallets/jinja/blob/3.1.6/src/jinja2/environment.py "
            "(get_spontaneous_environment)"
        ),
        what=(
            "functools.lru_cache(maxsize=10) on jinja2.environment.get_spontaneous_environment "
            "keeps the Environments of the ten newest option sets alive on purpose"
        ),
    ),
    Case(
        name="cachetools_lru",
        package="cachetools",
        kind="bounded",
        bounded="5.5.2",
        source="https://cachetools.readthedocs.io/en/stable/#cachetools.LRUCache",
        what=(
            "a cachetools.LRUCache(maxsize=8) behind @cached keeps the eight newest results "
            "alive on purpose; evicted results and the requests must die"
        ),
    ),
]


def get(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(name)


def pairs() -> list[tuple[Case, str, str]]:
    """Every ``(case, version, role)`` to run."""
    return [(case, version, role) for case in CASES for version, role in case.versions()]
