"""Research-core benchmarks: ``python -m benchmarks research``.

Cases (``ratio`` is always ``value / baseline``; times are warm -- numba kernels compiled and cached --
and the median of repeated runs):

* ``screen_real38`` -- the batch rank IC of 200 synthetic random factors x 3 horizons (1, 5, 20) on the
  real 38-fund panel of ``../shared/data/cn_etf`` (every session; prices back-adjusted with the hfq
  factors where a fund has them, unadjusted otherwise; a factor is NaN where its fund has no close),
  then one screen as of the last session. The factors are synthetic because this suite does not depend
  on the factor engine; the kernel's cost depends on the shape, not on the values. Baselines: pandas
  rank-then-correlate (``DataFrame.rank(axis=1)`` + ``corrwith(axis=1)`` per factor and horizon) and
  alphalens-reloaded (``get_clean_factor_and_forward_returns`` + ``factor_information_coefficient``),
  each timed on a few factors and scaled to 200. Targets: <= 0.25 s, ratio <= 1/40 vs pandas and
  <= 1/1000 vs alphalens.
* ``wfo_pool16`` -- walk-forward optimisation of 540 parameter sets on a 16-fund A-share pool over the
  last 10 years of the real data (rolling 504/63 sessions, embargo 20) with 16 lagged price factors:
  context build (ICs) plus the whole walk-forward (grid simulation, windows, stitched run, PBO over
  12,870 CSCV splits, deflated Sharpe). Target <= 60 s.
* ``backtest_pool16`` -- the 10-year backtest of that pool's stitched walk-forward plan (the independent
  ledger replay that verifies it included) with all metrics, extreme-month attribution, capacity and
  risk, next to the bare vectorbt ``Portfolio.from_orders`` call on the same orders (baseline; the
  panel is back-adjusted, so the plan has no corporate actions vectorbt could not book).
* ``ledger_pool16`` -- the plain-Python ledger replay of that plan alone, next to the numba kernel
  that simulated it (baseline): what the verification costs.
* ``wfo_default_ashare`` -- the production walk-forward of the real A_SHARE pool of
  ``configs/cn_etf.yaml`` with the shipped defaults (its grid, ``screening.selection_horizon: auto``, the
  portfolio construction of ``strategy:``) as of the data's last session: strategy context, every
  parameter set simulated over the whole history, the monthly re-optimisations and the live choice's
  record (windows, PBO, deflated Sharpe, the selected factors' IC in and out of sample); prices and
  factors loaded once beforehand. Target <= 10 s warm; the grid size is reported.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.config.models import BacktestConfig, CapitalConfig, ScreeningConfig, WFOConfig, WFOGrid
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cn_etf"
SUITE = "research"
N_FACTORS = 200
POOL16 = ("510050", "510180", "510300", "510500", "510880", "159928", "512010", "512200", "512400", "512480",
          "512690", "512800", "512890", "515000", "515050", "515220")

_SECOND = {"open_price": "open", "high_price": "high", "low_price": "low", "close_price": "close"}


def _read_fund(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path).rename(columns=_SECOND)
    df = raw[["trade_date", *PRICE_FIELDS]].copy()
    df["trade_date"] = pd.to_datetime(df["trade_date"])
    df = df.drop_duplicates("trade_date", keep="last").set_index("trade_date").sort_index().astype(float)
    factor_file = path.with_name(f"{path.stem}_hfq_factor.csv")
    factor = pd.Series(1.0, index=df.index)
    if factor_file.is_file():
        hfq = pd.read_csv(factor_file, parse_dates=["trade_date"]).drop_duplicates("trade_date", keep="last")
        hfq = hfq.set_index("trade_date")["hfq_factor"].sort_index()
        factor = hfq.reindex(df.index.union(hfq.index)).ffill().reindex(df.index)
        factor = factor.where(df.index <= hfq.index[-1])
    for col in ("open", "high", "low", "close"):
        df[col] = df[col] * factor
    df["volume"] = df["volume"] * 100.0 / factor
    return df.dropna(subset=["close"])


def load_panel(codes: list[str] | tuple[str, ...] | None = None, start: str | None = None) -> PricePanel:
    if not DATA.is_dir():
        raise SystemExit(f"the research benchmarks need the real data in {DATA}")
    if codes is None:
        codes = sorted(p.stem for p in DATA.glob("[0-9]*.csv") if "_" not in p.stem
                       and p.stem not in ("000300", "000015"))
    funds = {c: _read_fund(DATA / f"{c}.csv") for c in codes}
    end = min(f.index[-1] for f in funds.values()) if start is not None else None
    sessions = pd.DatetimeIndex(sorted(set().union(*(f.index for f in funds.values()))))
    if start is not None:
        sessions = sessions[(sessions >= pd.Timestamp(start)) & (sessions <= end)]
    frames = {name: pd.DataFrame({c: funds[c][name].reindex(sessions) for c in codes}) for name in PRICE_FIELDS}
    return PricePanel(frames, {"source": "cn_etf", "synthetic": False})


def price_factors(panel: PricePanel) -> tuple[np.ndarray, list[str]]:
    """16 simple price factors, lagged one row (row t uses data through t-1)."""
    close, amount = panel["close"], panel["amount"]
    ret = close.pct_change(fill_method=None)
    feats: dict[str, pd.DataFrame] = {}
    for n in (5, 10, 20, 60, 120, 250):
        feats[f"mom_{n}"] = close / close.shift(n) - 1.0
    for n in (10, 20, 60):
        feats[f"vol_{n}"] = ret.rolling(n, min_periods=int(n * 0.75)).std()
    feats["skew_60"] = ret.rolling(60, min_periods=45).skew()
    feats["high_dist_60"] = close / close.rolling(60, min_periods=40).max() - 1.0
    feats["low_dist_60"] = close / close.rolling(60, min_periods=40).min() - 1.0
    feats["amount_trend"] = np.log(amount.rolling(5, min_periods=3).mean() / amount.rolling(60, min_periods=40).mean())
    feats["amount_level"] = np.log(amount.rolling(20, min_periods=15).mean())
    feats["sharpe_60"] = ret.rolling(60, min_periods=45).mean() / ret.rolling(60, min_periods=45).std()
    feats["ma_gap_20"] = close / close.rolling(20, min_periods=15).mean() - 1.0
    names = list(feats)
    values = np.stack([feats[n].shift(1).to_numpy(dtype=np.float64) for n in names], axis=2)
    return np.ascontiguousarray(values), names


def _timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _figure(case: str, metric: str, value: float, unit: str, baseline: float | None = None, **extra) -> dict:
    fig = {"suite": SUITE, "case": case, "metric": metric, "value": float(value), "unit": unit}
    if baseline is not None:
        fig["baseline"] = float(baseline)
        fig["ratio"] = float(value) / float(baseline)
    fig.update(extra)
    return fig


def _pandas_ic(factor: pd.DataFrame, label: pd.DataFrame) -> pd.Series:
    ok = factor.notna() & label.notna()
    return factor.where(ok).rank(axis=1).corrwith(label.where(ok).rank(axis=1), axis=1)


def _screen_case() -> Iterator[dict]:
    from rotation_platform.research import FactorScreen, forward_returns
    from rotation_platform.research.inputs import trade_prices

    panel = load_panel()
    n_s, n_f = panel.shape
    rng = np.random.default_rng(20240101)
    values = rng.standard_normal((n_s, n_f, N_FACTORS))
    values[~np.isfinite(panel.array("close"))] = np.nan
    names = [f"synthetic_{k:03d}" for k in range(N_FACTORS)]
    cfg = ScreeningConfig(horizons=(1, 5, 20), ic_lookback=252, top_k=10)
    FactorScreen((values[:300], names), panel.select(end=panel.sessions[299]))  # compile / load the kernels

    def ours():
        fs = FactorScreen((values, names), panel, horizons=(1, 5, 20), trade_at="close")
        return fs.screen(n_s - 1, cfg)

    t_ours, _ = _timed(ours, 5)
    yield _figure("screen_real38", "shape", n_s * n_f * N_FACTORS, "sessions x funds x factors",
                  sessions=n_s, funds=n_f, factors=N_FACTORS, horizons=3)
    # pandas baseline: a few factors, scaled per factor
    labels = forward_returns(panel, (1, 5, 20), "close")
    universe = np.isfinite(trade_prices(panel, "close"))
    label_frames = [pd.DataFrame(np.where(universe, labels[j], np.nan), panel.sessions, panel.symbols)
                    for j in range(3)]
    few = 3

    def pandas_few():
        for k in range(few):
            f = pd.DataFrame(np.where(universe, values[:, :, k], np.nan), panel.sessions, panel.symbols)
            for lab in label_frames:
                _pandas_ic(f, lab)

    t_pd, _ = _timed(pandas_few, 1)
    pandas_total = t_pd / few * N_FACTORS
    yield _figure("screen_real38", "warm_time_vs_pandas", t_ours, "s", pandas_total, target_value_s=0.25,
                  target_ratio=1 / 40, pandas_factors_timed=few)
    # alphalens baseline: one factor, all three horizons, scaled per factor
    from alphalens.performance import factor_information_coefficient
    from alphalens.utils import get_clean_factor_and_forward_returns

    fac = pd.DataFrame(values[:, :, 0], panel.sessions, panel.symbols).stack().dropna()
    fac.index.names = ["date", "asset"]

    def alphalens_one():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = get_clean_factor_and_forward_returns(fac, panel["close"], periods=(1, 5, 20), quantiles=None,
                                                        bins=1, max_loss=1.0, filter_zscore=None)
            return factor_information_coefficient(data)

    t_al, _ = _timed(alphalens_one, 1)
    yield _figure("screen_real38", "warm_time_vs_alphalens", t_ours, "s", t_al * N_FACTORS, target_ratio=1 / 1000,
                  alphalens_factors_timed=1)


def _wfo_and_backtest_cases() -> Iterator[dict]:
    from rotation_platform.research import (
        StrategyContext,
        StrategySpec,
        backtest,
        capacity_report,
        extreme_months,
        grid_params,
        risk_report,
        vectorbt_orders,
        walk_forward,
    )

    full = load_panel(POOL16, start="2005-01-01")
    start = full.sessions[-1] - pd.DateOffset(years=10)
    panel = full.select(start=start)
    factors = price_factors(panel)
    capital = CapitalConfig(target_capital=7_000_000, max_single_weight=0.25, max_adv_pct=0.05)
    spec = StrategySpec(capital=capital, screening=ScreeningConfig(top_k=5), backtest=BacktestConfig(trade_at="open"),
                        selection_horizon=5)
    grid = WFOGrid(top_n=(1, 2, 3, 4, 5, 6), rebalance_sessions=(5, 10, 15, 20, 40), ic_lookback=(60, 120, 252),
                   weighting=("equal", "ic"), buffer=(0, 1, 2))
    config = WFOConfig(splitter="rolling", train_sessions=504, test_sessions=63, embargo_sessions=20, grid=grid)
    n_params = len(grid_params(grid))
    small = panel.select(end=panel.sessions[700])
    walk_forward(StrategyContext(price_factors(small), small, spec),
                 WFOConfig(train_sessions=252, test_sessions=63, embargo_sessions=5, grid=WFOGrid(
                     top_n=(2, 3), rebalance_sessions=(5,), ic_lookback=(60,), weighting=("equal",), buffer=(0,))))

    def run_wfo():
        ctx = StrategyContext(factors, panel, spec)
        return walk_forward(ctx, config)

    t_wfo, res = _timed(run_wfo, 2)
    yield _figure("wfo_pool16", "warm_time", t_wfo, "s", target_value_s=60.0, param_sets=n_params,
                  windows=len(res.windows), funds=panel.shape[1], sessions=panel.shape[0], factors=len(factors[1]),
                  start=str(panel.sessions[0].date()), end=str(panel.sessions[-1].date()))
    yield _figure("wfo_pool16", "oos_sharpe", res.oos_objective_stitched, "1", pbo=res.pbo.pbo, dsr=res.dsr.dsr,
                  efficiency=res.efficiency)

    import vectorbt as vbt

    def full_backtest():
        bt = backtest(res.plan, panel, benchmark="510300")
        extreme_months(bt)
        capacity_report(bt, panel, capital)
        risk_report(bt)
        return bt

    full_backtest()
    kwargs = vectorbt_orders(res.plan)

    def bare():
        pf = vbt.Portfolio.from_orders(**kwargs)
        return pf.value()

    t_full, bt = _timed(full_backtest, 5)
    t_bare, _ = _timed(bare, 5)
    yield _figure("backtest_pool16", "warm_time_vs_bare_vectorbt", t_full, "s", t_bare,
                  orders=len(bt.orders), sessions=panel.shape[0], annual_return=bt.metrics.annual_return,
                  sharpe=bt.metrics.sharpe, max_drawdown=bt.metrics.max_drawdown)
    from rotation_platform.research import replay_ledger

    ctx = StrategyContext(factors, panel, spec)
    ctx.simulate_plan(list(res.plan.params), res.plan.active)
    t_kernel, _ = _timed(lambda: ctx.simulate_plan(list(res.plan.params), res.plan.active), 5)
    t_ledger, _ = _timed(lambda: replay_ledger(res.plan), 5)
    yield _figure("ledger_pool16", "warm_time_vs_kernel", t_ledger, "s", t_kernel, orders=len(bt.orders),
                  sessions=panel.shape[0], funds=panel.shape[1])


def _default_grid_case() -> Iterator[dict]:
    from rotation_platform.config import CONFIG_DIR, load_config
    from rotation_platform.production.pool_run import PoolRun

    config = load_config(CONFIG_DIR / "cn_etf.yaml", env={})
    pool = "A_SHARE"
    probe = PoolRun(config, pool, ["2026-07-31"])
    last = probe.prices.panel["close"].dropna(how="all").index[-1]
    base = PoolRun(config, pool, [last])
    inputs = {"prices": base.prices, "factors": base.factors}  # loaded once: this case times the research

    def run_wfo():
        run = PoolRun(config, pool, [last])
        run.__dict__.update(inputs)
        record = run.wfo_record(last)
        return run, record

    run_wfo()  # compiles what the cache does not hold yet
    t_wfo, (run, record) = _timed(run_wfo, 3)
    sel = record.get("selection_ic") or {}
    yield _figure("wfo_default_ashare", "warm_time", t_wfo, "s", target_value_s=10.0, param_sets=len(run.params),
                  funds=len(run.pool.symbols), sessions=len(run.panel.sessions),
                  reoptimisations=len(run.live_choices), selection_horizon=str(config.screening.selection_horizon),
                  oos_objective=record.get("oos_objective"), pbo=(record.get("pbo") or {}).get("pbo"),
                  dsr=(record.get("dsr") or {}).get("dsr"),
                  selection_is_ic=sel.get("mean_is_ic"), selection_oos_ic=sel.get("mean_oos_ic"))


def run() -> Iterator[dict]:
    yield from _screen_case()
    yield from _wfo_and_backtest_cases()
    if DATA.is_dir():
        yield from _default_grid_case()
