"""Factor engine benchmarks: ``python -m benchmarks factors``.

Cases (``ratio`` is always ``value / baseline``):

* ``real_panel`` -- every factor on the real 38-fund panel of ``../shared/data/cn_etf`` (its last
  3,000 sessions; back-adjusted with the hfq factors where a fund has them, unadjusted otherwise):
  warm time (median of repeated runs), cold time (a fresh interpreter with an empty
  ``NUMBA_CACHE_DIR``: import, then the first call including compilation), and the plain pandas
  reference (:mod:`rotation_platform.factors.reference`) on the same panel as the baseline of the
  warm time. Targets: warm <= 0.3 s, ratio <= 0.05 (20x faster than pandas).
* ``talib_<indicator>`` -- the factor's own evaluation over the packed bars (every kernel and
  element-wise step of its formula) against TA-Lib called on each fund's bars. Target ratio <= 2.
* ``scale_1000x2500`` -- 1,000 synthetic funds x 2,500 sessions in a fresh interpreter (compiled
  kernels from the cache): time and peak resident memory. Targets <= 15 s and <= 8 GiB.
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cn_etf"
SUITE = "factors"
N_SESSIONS = 3000

_LAYOUTS = {
    "trade_date": ("trade_date", "open", "high", "low", "close", "volume", "amount"),
    "close_price": ("trade_date", "open_price", "high_price", "low_price", "close_price", "volume", "amount"),
}


def _read_fund(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    cols = _LAYOUTS["close_price"] if "close_price" in raw.columns else _LAYOUTS["trade_date"]
    df = raw[list(cols)].copy()
    df.columns = ["date", *PRICE_FIELDS]
    df["date"] = pd.to_datetime(df["date"])
    df = df.drop_duplicates("date", keep="last").set_index("date").sort_index()
    df["volume"] = df["volume"] * 100.0  # lots of 100 shares
    factor_file = path.with_name(f"{path.stem}_hfq_factor.csv")
    if factor_file.is_file():
        hfq = pd.read_csv(factor_file, parse_dates=["trade_date"]).drop_duplicates("trade_date", keep="last")
        hfq = hfq.set_index("trade_date")["hfq_factor"].sort_index()
        factor = hfq.reindex(df.index.union(hfq.index)).ffill().reindex(df.index).fillna(1.0)
        for col in ("open", "high", "low", "close"):
            df[col] = df[col] * factor
    return df


def load_real_panel(folder: Path = DATA, n_sessions: int = N_SESSIONS) -> PricePanel:
    """The shared funds as one panel over the union of their trade dates (last ``n_sessions``)."""
    files = sorted(p for p in folder.glob("*.csv") if p.stem.isdigit() and len(p.stem) == 6
                   and not p.stem.startswith(("000", "CBA")) and (folder / p.name).is_file())
    funds = {}
    for path in files:
        head = pd.read_csv(path, nrows=0).columns
        if "amount" in head and ("close" in head or "close_price" in head):
            funds[path.stem] = _read_fund(path)
    sessions = pd.DatetimeIndex(sorted(set().union(*(f.index for f in funds.values()))))[-n_sessions:]
    frames = {name: pd.DataFrame({code: f[name] for code, f in funds.items()}).reindex(sessions)
              for name in PRICE_FIELDS}
    return PricePanel(frames, {"source": "shared_csv", "synthetic": False})


def synthetic_panel(n_funds: int, n_sessions: int, seed: int = 0) -> PricePanel:
    """Seeded OHLCV random walks; a tenth of the funds list late."""
    rng = np.random.default_rng(seed)
    close = 2.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, (n_sessions, n_funds)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.005, close.shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.005, close.shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.005, close.shape)))
    volume = np.round(np.exp(rng.normal(15.0, 0.7, close.shape)), -2)
    arrays = dict(open=open_, high=high, low=low, close=close, volume=volume, amount=volume * close)
    listing = np.where(rng.random(n_funds) < 0.1, rng.integers(0, n_sessions // 2, n_funds), 0)
    late = np.arange(n_sessions)[:, None] < listing[None, :]
    sessions = pd.bdate_range("2015-01-05", periods=n_sessions, name="session")
    symbols = [f"F{j:04d}" for j in range(n_funds)]
    frames = {k: pd.DataFrame(np.where(late, np.nan, v), index=sessions, columns=symbols) for k, v in arrays.items()}
    return PricePanel(frames, {"source": "benchmark", "synthetic": True})


def _figure(case: str, metric: str, value: float, unit: str, baseline: float | None = None) -> dict[str, object]:
    out: dict[str, object] = {"suite": SUITE, "case": case, "metric": metric, "value": round(value, 6), "unit": unit}
    if baseline is not None:
        out["baseline"] = round(baseline, 6)
        out["ratio"] = round(value / baseline, 6) if baseline else None
    return out


def _times(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _child(script: str, env: dict[str, str], timeout: float = 240.0) -> dict[str, float]:
    """Run ``script`` in a fresh interpreter at the repository root; it prints one JSON line last."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    full_env = {**os.environ, **env, "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_COLD = """
import json, pickle, sys, time
t0 = time.perf_counter()
from rotation_platform.factors import compute_panel
t1 = time.perf_counter()
with open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, "rb") as fh:
    panel = pickle.load(fh)
t2 = time.perf_counter()
compute_panel(panel)
t3 = time.perf_counter()
compute_panel(panel)
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first_call": t3 - t2, "second_call": t4 - t3}}))
"""

_SCALE = """
import json, resource, time
from benchmarks.factors import synthetic_panel
from rotation_platform.factors import compute_panel
compute_panel(synthetic_panel(4, 300, seed=1))  # load the compiled kernels
panel = synthetic_panel({n_funds}, {n_sessions})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
fp = compute_panel(panel)
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"time": elapsed, "peak_kib": peak, "before_kib": before, "n_factors": fp.n_factors,
                  "output_bytes": fp.data.nbytes}}))
"""


# --------------------------------------------------------------------------------------- TA-Lib
def _talib_cases() -> dict[str, tuple[str, Callable[..., object]]]:
    import talib

    return {
        "SMA": ("ma_dist_20", lambda o, h, lo, c, v: talib.SMA(c, 20)),
        "EMA": ("ema_dist_20", lambda o, h, lo, c, v: talib.EMA(c, 20)),
        "RSI": ("rsi_14", lambda o, h, lo, c, v: talib.RSI(c, 14)),
        "MACD": ("macd_hist_12_26_9", lambda o, h, lo, c, v: talib.MACD(c, 12, 26, 9)),
        "STOCH": ("stoch_d_14", lambda o, h, lo, c, v: talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)),
        "CCI": ("cci_20", lambda o, h, lo, c, v: talib.CCI(h, lo, c, 20)),
        "WILLR": ("willr_14", lambda o, h, lo, c, v: talib.WILLR(h, lo, c, 14)),
        "BBANDS": ("boll_pctb_20", lambda o, h, lo, c, v: talib.BBANDS(c, 20, 2.0, 2.0, 0)),
        "NATR": ("natr_14", lambda o, h, lo, c, v: talib.NATR(h, lo, c, 14)),
        "ROCP": ("roc_20", lambda o, h, lo, c, v: talib.ROCP(c, 20)),
        "AROONOSC": ("aroonosc_25", lambda o, h, lo, c, v: talib.AROONOSC(h, lo, 25)),
        "MAX": ("dist_high_60", lambda o, h, lo, c, v: talib.MAX(h, 60)),
        "LINEARREG_SLOPE": ("trend_slope_20", lambda o, h, lo, c, v: talib.LINEARREG_SLOPE(np.log(c), 20)),
        "CORREL": ("pv_corr_20", lambda o, h, lo, c, v: talib.CORREL(c, v, 20)),
        "STDDEV": ("vol_cc_20", lambda o, h, lo, c, v: talib.STDDEV(np.log(c[1:] / c[:-1]), 20)),
    }


def _talib_figures(panel: PricePanel, repeat: int = 30) -> Iterator[dict[str, object]]:
    from rotation_platform.factors import REGISTRY, nb, valid_bars
    from rotation_platform.factors.graph import Context

    valid = valid_bars(panel)
    rows, counts = nb.valid_rows_nb(valid)
    rows = np.ascontiguousarray(rows[: int(counts.max())])
    packed = {f: nb.pack_nb(panel.array(f), rows, counts) for f in PRICE_FIELDS}
    base = np.zeros(len(counts), dtype=np.int64)
    per_fund = [[np.ascontiguousarray(packed[f][: counts[j], j]) for f in ("open", "high", "low", "close", "volume")]
                for j in range(len(counts))]
    for indicator, (name, call) in _talib_cases().items():
        spec = REGISTRY[name]

        def ours(spec=spec) -> object:
            ctx = Context(packed, base)
            return ctx.value(spec.term(ctx))

        def theirs(call=call) -> object:
            return [call(*arrays) for arrays in per_fund]

        ours()
        theirs()
        t_ours = min(_times(ours, repeat))
        t_theirs = min(_times(theirs, repeat))
        yield _figure(f"talib_{indicator}", f"time_{name}", t_ours, "s", t_theirs)


# --------------------------------------------------------------------------------------- suite
def run() -> Iterable[dict[str, object]]:
    from rotation_platform.factors import compute_panel
    from rotation_platform.factors.reference import reference_factors

    panel = load_real_panel()
    case = "real_panel"
    n_sessions, n_funds = panel.shape
    yield _figure(case, "funds", n_funds, "count")
    yield _figure(case, "sessions", n_sessions, "count")

    first = compute_panel(panel)  # compiled kernels from the cache (or compiled now)
    yield _figure(case, "factors", first.n_factors, "count")
    warm = _times(lambda: compute_panel(panel), 7)
    t_warm = statistics.median(warm)
    yield _figure(case, "warm_time_min", min(warm), "s")

    t0 = time.perf_counter()
    reference_factors(panel)
    t_pandas = time.perf_counter() - t0
    yield _figure(case, "warm_time", t_warm, "s", t_pandas)

    with tempfile.TemporaryDirectory(prefix="factor-bench-") as tmp:
        path = Path(tmp) / "panel.pkl"
        with open(path, "wb") as fh:
            pickle.dump(panel, fh)
        cache = Path(tmp) / "numba-cache"
        cache.mkdir()
        cold = _child(_COLD.format(path=str(path)), {"NUMBA_CACHE_DIR": str(cache)})
    yield _figure(case, "cold_import_time", cold["import"], "s")
    yield _figure(case, "cold_first_call_time", cold["first_call"], "s")
    yield _figure(case, "cold_time", cold["import"] + cold["first_call"], "s", t_warm)
    yield _figure(case, "second_call_time_fresh_process", cold["second_call"], "s")

    yield from _talib_figures(panel)

    n_f, n_s = 1000, 2500
    scale = _child(_SCALE.format(n_funds=n_f, n_sessions=n_s), {}, timeout=600.0)
    scase = f"scale_{n_f}x{n_s}"
    yield _figure(scase, "factors", scale["n_factors"], "count")
    yield _figure(scase, "time", scale["time"], "s")
    yield _figure(scase, "peak_rss", scale["peak_kib"] / 2**20, "GiB")
    yield _figure(scase, "rss_before_compute", scale["before_kib"] / 2**20, "GiB")
    yield _figure(scase, "output_size", scale["output_bytes"] / 2**30, "GiB")
