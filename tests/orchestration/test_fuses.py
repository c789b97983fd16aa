"""Each fuse fails on a crafted bad input and stops the pool's later steps in the same run."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

import rotation_platform.production.pool_run as pool_run_module
from rotation_platform.data.pipeline import PoolPrices
from rotation_platform.factors import FactorPanel, compute_panel
from tests.orchestration.conftest import SESSION, check_outcomes, fresh_defs, materialised_assets, run_daily

POOL = "QDII"
ORDER = ["prices", "factor_panel", "factor_screen", "wfo_result", "backtest", "capacity_report", "target_portfolio"]


def _replace_factors(fp: FactorPanel, data: np.ndarray) -> FactorPanel:
    return FactorPanel(data, fp.names, fp.sessions, fp.symbols, fp.available, fp.meta)


def _leaky(panel, config=None, **kwargs):
    """A factor that reads the next session's close: lookahead."""
    fp = compute_panel(panel, config, **kwargs)
    data = np.array(fp.data, copy=True)
    close = panel["close"].to_numpy(dtype=np.float64)
    nxt = np.full_like(close, np.nan)
    nxt[:-1] = close[1:] / close[:-1] - 1.0
    data[0] = nxt
    return _replace_factors(fp, data)


def _holes(panel, config=None, **kwargs):
    """Half the factors missing on the session (a broken input, the same however far the data goes)."""
    fp = compute_panel(panel, config, **kwargs)
    data = np.array(fp.data, copy=True)
    if pd.Timestamp(SESSION) in fp.sessions:
        data[: data.shape[0] // 2, fp.sessions.get_loc(pd.Timestamp(SESSION)), :] = np.nan
    return _replace_factors(fp, data)


def _constant(panel, config=None, **kwargs):
    fp = compute_panel(panel, config, **kwargs)
    data = np.array(fp.data, copy=True)
    data[5] = np.where(np.isfinite(data[5]), 1.0, np.nan)
    return _replace_factors(fp, data)


def _shuffled(source, pool, data_cfg, asof=None, **kwargs):
    res = pool_run_module_load(source, pool, data_cfg, asof=asof, **kwargs)
    panel = res.panel
    frames = {f: panel[f].iloc[:, ::-1] for f in ("open", "high", "low", "close", "volume", "amount")}
    from rotation_platform.data.panel import PricePanel

    return PoolPrices(PricePanel(frames, panel.meta), res.report, res.quarantine, res.raw, res.adjustments)


pool_run_module_load = pool_run_module.load_pool_prices


def _no_data_hash(self, session, generated_at=None):
    meta = ORIGINAL_META(self, session, generated_at)
    meta["data_hash"] = ""
    return meta


ORIGINAL_META = pool_run_module.PoolRun.run_metadata

CASES = {
    # fuse: (asset, how to break it, the first asset that must not run)
    "index_normalisation": ("prices", ("attr", "load_pool_prices", _shuffled), "factor_panel"),
    "t_plus_one": ("factor_panel", ("attr", "compute_panel", _leaky), "factor_screen"),
    "coverage": ("factor_panel", ("attr", "compute_panel", _holes), "factor_screen"),
    "zero_variance": ("factor_panel", ("attr", "compute_panel", _constant), "factor_screen"),
    "effective_factors": ("factor_screen", ("env", "ROTATION_FUSES__MIN_EFFECTIVE_FACTORS", "11"), "wfo_result"),
    "monthly_returns": ("backtest", ("env", "ROTATION_FUSES__MAX_ABS_MONTHLY_RETURN", "0.01"), "capacity_report"),
    "target_vol_scaling": ("target_portfolio", ("env", "ROTATION_FUSES__MAX_TARGET_VOLATILITY", "0.01"), None),
    "metadata_completeness": ("target_portfolio", ("method", "run_metadata", _no_data_hash), None),
}


@pytest.mark.parametrize("fuse", sorted(CASES))
def test_fuse_fails_and_blocks_downstream(fuse, demo_env, monkeypatch) -> None:
    asset, (how, name, value), first_blocked = CASES[fuse]
    if how == "env":
        monkeypatch.setenv(name, value)
    elif how == "attr":
        monkeypatch.setattr(pool_run_module, name, value)
    else:
        monkeypatch.setattr(pool_run_module.PoolRun, name, value)
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        result = run_daily(defs, instance, POOL, [SESSION], raise_on_error=False)
        assert not result.success
        outcomes = check_outcomes(result)
        assert outcomes[f"{asset}:{fuse}"] is False, outcomes
        # the WARN judgements of the strategy (thresholds, the value added over equal weight) may fail anywhere
        failed = [k for k, ok in outcomes.items()
                  if not ok and not k.endswith("_threshold") and k != "backtest:beats_equal_weight"]
        assert failed == [f"{asset}:{fuse}"], failed  # only the crafted fault trips
        done = materialised_assets(result)
        if first_blocked is not None:
            blocked = ORDER[ORDER.index(first_blocked):]
            assert not done & set(blocked), done  # the chain stopped after the asset whose fuse failed
            failure = next(e for e in result.all_events if e.is_step_failure)
            assert f"{asset}: {fuse}" in failure.event_specific_data.error.message, failure
        evaluation = next(c for c in result.get_asset_check_evaluations() if c.check_name == fuse)
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        head = evaluation.description.split(":")[0].split(" at ")[0]
        assert head.isupper() and len(head) > 5, evaluation.description  # e.g. "LOOKAHEAD: ..."
        # the summary sensor does not summarise a session whose pool run failed
        from jobs.schedules import _failed_partitions

        assert _failed_partitions(instance, [f"{POOL}|{SESSION}"]) == {f"{POOL}|{SESSION}"}


def test_quality_gate_blocks_everything_after_prices(demo_env, monkeypatch) -> None:
    """ERROR findings (too many missing sessions) on all funds but one leave fewer than pools[].min_funds
    tradeable funds: the gate fails; no factor is computed."""
    monkeypatch.setenv("ROTATION_DATA__QUALITY__MAX_MISSING_FRACTION", "0.0")
    original = pool_run_module.load_pool_prices

    def gappy(source, pool, data_cfg, asof=None, **kwargs):
        class Dropping:
            def __getattr__(self, attr):
                return getattr(source, attr)

            def read(self, symbols):
                out = dict(source.read(symbols))
                for symbol in symbols[:-1]:
                    raw = out[symbol]
                    frame = raw.frame.iloc[::2].reset_index(drop=True)  # every other row missing
                    out[symbol] = type(raw)(raw.symbol, frame, raw.file, raw.layout, raw.meta)
                return out

        return original(Dropping(), pool, data_cfg, asof=asof, **kwargs)

    monkeypatch.setattr(pool_run_module, "load_pool_prices", gappy)
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        result = run_daily(defs, instance, POOL, [SESSION], raise_on_error=False)
    assert not result.success
    errors = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    assert check_outcomes(result).get("prices:quality_gate") is False, errors
    assert materialised_assets(result) <= {"prices", "price_quarantine"}
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "prices: quality_gate" in failure.event_specific_data.error.message
