"""The ``rerun_one_asset`` case of ``python -m benchmarks orchestration``.

In one process (definitions loaded, numba cache warm, a first run not timed): the daily job of one
pool and session (the whole chain) and then ``target_portfolio`` alone for the same stored session,
which reads the stored ``wfo_result``, ``backtest`` and ``capacity_report`` instead of simulating the
walk-forward grid and the backtest (:mod:`assets.chain`). Each is timed ``ROTATION_BENCH_REPEATS``
times (default 3) on sessions of its own; the figures are the medians. Target: the rerun takes at most
20% of the full chain's time (``baseline`` 0.2, ``ratio`` = rerun / chain / 0.2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

RUNNER = r"""
import json, statistics, sys, time
import dagster as dg
import pandas as pd
from definitions import defs
from assets.partitions import pool_session_key
from rotation_platform.calendars import get_calendar

spec = json.loads(sys.argv[1])
quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
pool = spec["pool"]
cal = get_calendar("XSHG")
sessions = [str(d.date()) for d in cal.sessions(cal.session_offset(spec["end"], -spec["n"]), spec["end"])]
instance = dg.DagsterInstance.get()
daily = defs.resolve_job_def("daily")
glob = defs.resolve_implicit_global_asset_job_def()
chain, rerun, notes = [], [], []
for i, s in enumerate(sessions):
    key = pool_session_key(pool, s)
    t0 = time.perf_counter()
    assert daily.execute_in_process(partition_key=key, instance=instance, run_config=quiet).success
    t1 = time.perf_counter()
    r = glob.execute_in_process(partition_key=key, instance=instance, run_config=quiet,
                                asset_selection=[dg.AssetKey("target_portfolio")])
    t2 = time.perf_counter()
    assert r.success
    notes.append(r.get_asset_materialization_events()[-1].materialization.metadata["upstream"].value)
    if i:  # the first session warms the process up
        chain.append(t1 - t0)
        rerun.append(t2 - t1)
print("RESULT " + json.dumps({"chain": statistics.median(chain), "rerun": statistics.median(rerun),
                              "upstream": sorted(set(notes)), "n": len(chain)}))
"""


def rerun_one_asset(tmp: Path, env_for: Callable[..., dict[str, str]], run: Callable[..., tuple[float, str]],
                    fig: Callable[..., dict[str, object]], last: str) -> Iterator[dict[str, object]]:
    repeats = int(os.environ.get("ROTATION_BENCH_REPEATS", "3"))
    pool = "A_SHARE"
    _, out = run(["-c", RUNNER, json.dumps({"pool": pool, "end": last, "n": repeats})], env_for(tmp / "rerun"))
    res = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    share = res["rerun"] / res["chain"]
    yield fig("rerun_one_asset", "target_portfolio_rerun_seconds", res["rerun"], "s", pool=pool,
              sessions=res["n"], baseline=round(res["chain"], 3), ratio=round(share, 3),
              peer="the full chain (daily job) of the same session", upstream=res["upstream"])
    yield fig("rerun_one_asset", "rerun_share_of_chain", share, "ratio", pool=pool, baseline=0.2,
              ratio=round(share / 0.2, 3))
