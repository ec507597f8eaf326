"""opentelemetry-instrumentation-sqlalchemy: every instrumented Engine stays alive.

0.37b0 made the instrumentation removable: ``EngineTracer._register_event_listener``
appends ``(engine, event name, listener)`` to the class attribute
``EngineTracer._remove_event_listener_params``, a plain list that only
``uninstrument()`` clears. Every engine created while instrumented, even after
``engine.dispose()``, stayed reachable from that list (and from the tracer's
``.engine``). Reported in
https://github.com/open-telemetry/opentelemetry-python-contrib/issues/1761,
fixed in 0.40b0 by keeping ``weakref.ref(engine)`` in the list and dropping
``EngineTracer.engine``
(https://github.com/open-telemetry/opentelemetry-python-contrib/pull/1771).

Lifecycle: with the instrumentation on (done once at start-up, outside the
watch), create an in-memory SQLite engine, run a query, dispose of the engine.
"""

from __future__ import annotations

import sqlalchemy
from _harness import run
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor


def setup():
    SQLAlchemyInstrumentor().instrument()


def lifecycle(track, keep):
    engine = track(sqlalchemy.create_engine("sqlite://"))
    with engine.connect() as connection:
        value = connection.execute(sqlalchemy.text("SELECT 1")).scalar()
    engine.dispose()
    return {"select": value}


if __name__ == "__main__":
    run("otel_sqlalchemy_engine", "opentelemetry-instrumentation-sqlalchemy", lifecycle, setup)
