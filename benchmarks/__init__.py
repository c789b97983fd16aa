"""Benchmark suites, run with ``python -m benchmarks <suite> [<suite> ...]``.

A suite is a module ``benchmarks/<suite>.py`` exposing ``run() -> Iterable[dict]``; each dict is one
figure ``{"suite", "case", "metric", "value", "unit"}`` plus ``"baseline"`` and ``"ratio"`` (value /
baseline) where the figure is compared with something. ``__main__`` prints one JSON line per figure.
Benchmarks are separate from the tests: they measure, they do not assert.
"""
