"""A runnable example of what reftrace is for: ``python -m reftrace.demo``.

:mod:`reftrace.demo.agent` is a tiny streaming-agent framework with the leaks of a
real incident, each behind a switch (:class:`reftrace.demo.agent.Bug`).  Its outputs
buffer every chunk by design; reftrace tells that buffer, which is freed with its
output, from the references that keep an output alive after its stream ended.
"""
