"""``python -m benchmarks <suite> [<suite> ...]``: run suites, print one JSON line per figure.

``python -m benchmarks --list`` lists the suites (the modules of this package).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REQUIRED = ("suite", "case", "metric", "value", "unit")


def suites() -> list[str]:
    """Suite names: the package's modules."""
    return sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if not m.name.startswith("_"))


def _clean(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_suite(name: str) -> Iterable[dict[str, object]]:
    module = importlib.import_module(f"benchmarks.{name}")
    runner = getattr(module, "run", None)
    if runner is None:
        raise SystemExit(f"benchmarks.{name} has no run() function")
    for figure in runner():
        missing = [k for k in REQUIRED if k not in figure]
        if missing:
            raise SystemExit(f"benchmarks.{name} produced a figure without {missing}: {figure}")
        yield {k: _clean(v) for k, v in figure.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suites", nargs="*", help="suite names (modules of the benchmarks package)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)
    known = suites()
    if args.list or not args.suites:
        print("\n".join(known))
        return 0 if args.list else 2
    unknown = [s for s in args.suites if s not in known]
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; known: {known}")
    for name in args.suites:
        for figure in run_suite(name):
            print(json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
