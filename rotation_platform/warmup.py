"""Compile the numba kernels once, into the cache every later run loads them from.

``python -m rotation_platform.warmup [--config FILE] [--funds N] [--json FILE]``

``scripts/_env.sh`` runs it right after installing the project, so the first real run finds every kernel
compiled (:mod:`rotation_platform.numba_cache`: ``.venv/numba-cache`` for the scripts, or
``NUMBA_CACHE_DIR``) instead of spending a minute or two compiling before the first pool's result.

What it compiles is what the daily job compiles, because it runs the same code: for every pool of the
configuration (default ``configs/demo.yaml``, without ``ROTATION_*`` overrides) it builds the pool's
:class:`~rotation_platform.production.pool_run.PoolRun` for one session on a synthetic universe of the
pool's first ``funds`` funds (the same calendar, kind, factor set, strategy, grid and construction), and
calls every output and fuse the pool's assets call -- prices and the quality gate, the factor panel
and its fuses (the look-ahead proof included), the screen, the walk-forward record, the backtest and
its fuses, capacity, the baselines and the target portfolio. No file is written except the cache; no
source other than the synthetic generator is read, so it needs neither network nor market data.
Kernel signatures depend on argument types only, never on the number of funds or sessions, so the
small universe compiles exactly the signatures of a full run.

On success it prints one line: the cache folder, the seconds it took, the kernels compiled and those
already cached. A failure prints one line naming the pool and the step and exits non-zero; nothing is
lost -- the first run then compiles what it needs itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rotation_platform import numba_cache

__all__ = ["WarmUpReport", "warm_up", "main", "ESTIMATE_SECONDS"]

#: what a warm-up takes on a 2-core machine with an empty cache (announced before it starts)
ESTIMATE_SECONDS = 90
#: funds per pool in the synthetic warm-up universe
DEFAULT_FUNDS = 5


@dataclass
class WarmUpReport:
    """What a warm-up did."""

    cache_dir: str
    config: str
    seconds: float = 0.0
    pools: dict[str, float] = field(default_factory=dict)
    compiled: int = 0
    cached: int = 0
    kernels: int = 0
    index_files: int = 0

    def line(self) -> str:
        return (f"numba kernels ready in {self.seconds:.0f} s: {self.compiled} signature(s) compiled, "
                f"{self.cached} already cached, {self.index_files} kernel(s) in {self.cache_dir}")


def _warm_config(config: object, funds: int) -> object:
    """The configuration with every pool cut to its first ``funds`` funds (more if its benchmark,
    defensive fund or ``min_funds`` need them) and the synthetic source."""
    pools = []
    for pool in config.pools:  # type: ignore[attr-defined]
        keep = list(pool.symbols[: max(funds, pool.min_funds)])
        for extra in (getattr(pool, "benchmark", None), getattr(pool, "defensive", None)):
            if isinstance(extra, str) and extra in pool.symbols and extra not in keep:
                keep.append(extra)
        pools.append(pool.model_copy(update={"symbols": tuple(keep)}))
    data = config.data.model_copy(update={"source": "synthetic"})  # type: ignore[attr-defined]
    return config.model_copy(update={"pools": tuple(pools), "data": data})  # type: ignore[attr-defined]


def _run_pool(config: object, pool_name: str) -> None:
    """Every output and fuse of one pool's assets, for the last synthetic session."""
    from rotation_platform.data.sources.synthetic import SyntheticSource
    from rotation_platform.production import fuses
    from rotation_platform.production.pool_run import PoolRun

    pool = config.pool(pool_name)  # type: ignore[attr-defined]
    source = SyntheticSource([pool], config.data.synthetic)  # type: ignore[attr-defined]
    session = source.sessions[-1]
    run = PoolRun(config, pool_name, [session], source=source)  # type: ignore[arg-type]
    steps = [
        ("prices", lambda: (run.price_rows(), run.quarantine_by_session(), run.universe_at(session),
                            run.data_hash(session), fuses.quality_gate(run), fuses.index_normalisation(run))),
        ("factor_panel", lambda: (run.factor_frame(), fuses.t_plus_one(run), fuses.coverage(run),
                                  fuses.zero_variance(run))),
        ("factor_screen", lambda: (run.screen_frame(), fuses.effective_factors(run), run.fund_clusters(session))),
        ("wfo", lambda: run.wfo_record(session)),
        ("backtest", lambda: _backtest(run, fuses)),
        ("capacity", lambda: (run.capacity_frame(), run.capacity_sessions(), fuses.capacity(run))),
        ("target_portfolio", lambda: (fuses.target_vol_scaling(run, run.target_frame(None)),
                                      run.run_metadata(session))),
    ]
    for step, call in steps:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - re-raised with the pool and the step named
            from rotation_platform.errors import one_line

            raise RuntimeError(f"pool {pool_name}, step {step}: {type(exc).__name__}: {one_line(exc)}") from exc


def _backtest(run: object, fuses: object) -> None:
    from rotation_platform.reports.plots import pool_tear_sheet

    frame = run.backtest_frame()  # type: ignore[attr-defined]
    fuses.backtest_thresholds(run, frame)  # type: ignore[attr-defined]
    value_added = fuses.beats_equal_weight(run, frame)  # type: ignore[attr-defined]
    fuses.monthly_returns(run, frame)  # type: ignore[attr-defined]
    pool_tear_sheet(run.pool.name, run, frame, value_added.summary)  # type: ignore[attr-defined]


def warm_up(config_path: str | Path | None = None, *, funds: int = DEFAULT_FUNDS,
            pools: Sequence[str] | None = None) -> WarmUpReport:
    """Compile (or load) every kernel signature the daily job of ``config_path``'s pools uses."""
    folder = numba_cache.configure()
    from rotation_platform.config.loader import DEFAULT_CONFIG, load_config

    path = Path(config_path) if config_path is not None else DEFAULT_CONFIG
    report = WarmUpReport(cache_dir=str(folder), config=str(path))
    t0 = time.perf_counter()
    config = _warm_config(load_config(path, env={}), int(funds))
    known = [p.name for p in config.pools]  # type: ignore[attr-defined]
    names = list(pools) if pools else known
    unknown = [n for n in names if n not in known]
    if unknown:
        from rotation_platform.errors import UsageError

        raise UsageError(f"unknown pool(s) {unknown} in {path}", hint=f"choose from {known}")
    for name in names:
        t_pool = time.perf_counter()
        _run_pool(config, name)
        report.pools[name] = round(time.perf_counter() - t_pool, 3)
    report.seconds = round(time.perf_counter() - t0, 3)
    stats = numba_cache.kernel_stats()
    report.compiled = sum(int(s["misses"]) for s in stats.values())
    report.cached = sum(int(s["hits"]) for s in stats.values())
    report.kernels = sum(1 for s in stats.values() if s["signatures"])
    report.index_files = len(numba_cache.index_files(folder))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rotation_platform.warmup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="config file whose pools are warmed up (default: configs/demo.yaml)")
    parser.add_argument("--funds", type=int, default=DEFAULT_FUNDS, help="funds per pool (default: %(default)s)")
    parser.add_argument("--pools", nargs="*", help="only these pools")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    if args.funds < 1:
        parser.error(f"--funds must be at least 1, got {args.funds}")
    if not args.quiet:
        print(f"compiling the numba kernels once (about {ESTIMATE_SECONDS} s; cached in "
              f"{numba_cache.cache_dir()})", flush=True)
    from rotation_platform.errors import RotationError

    try:
        report = warm_up(args.config, funds=args.funds, pools=args.pools)
    except RotationError as exc:
        print(f"error: numba warm-up: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except RuntimeError as exc:
        print(f"error: numba warm-up: {exc}; the first run will compile the kernels itself", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, as every command of the platform
        from rotation_platform.errors import one_line

        print(f"internal error: numba warm-up: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=1), encoding="utf-8")
    if not args.quiet:
        print(report.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
