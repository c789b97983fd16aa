"""Fixtures of the factor tests: real fund data read straight from the shared CSV files, a seeded
synthetic panel with gaps and late listings, and comparison helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.factors import FactorPanel, compute_panel, valid_bars

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cn_etf"

#: Funds with back-adjustment factor files: broad A-share indices, a cross-border fund, gold, a fund
#: with a unit split (159928, June 2021) and a late listing (515050, 2019).
REAL_FUNDS = ("510300", "510500", "513100", "518880", "159928", "515050")


def _data_dir() -> Path:
    if not (DATA / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected the cn_etf folder at {DATA} "
                    "(../shared/data/cn_etf beside the repository)")
    return DATA


def read_fund(code: str) -> pd.DataFrame:
    """One fund's main-schema CSV, back-adjusted with its hfq factor (forward-filled); volume in
    shares (the files count lots of 100)."""
    folder = _data_dir()
    df = pd.read_csv(folder / f"{code}.csv", parse_dates=["trade_date"]).set_index("trade_date").sort_index()
    df = df[~df.index.duplicated(keep="last")]
    factor_file = folder / f"{code}_hfq_factor.csv"
    if not factor_file.is_file():
        pytest.fail(f"{factor_file} is missing; the factor fixtures use funds with hfq factors")
    hfq = pd.read_csv(factor_file, parse_dates=["trade_date"]).set_index("trade_date")["hfq_factor"].sort_index()
    hfq = hfq[~hfq.index.duplicated(keep="last")]
    factor = hfq.reindex(df.index.union(hfq.index)).ffill().reindex(df.index)
    out = pd.DataFrame(index=df.index)
    for col in ("open", "high", "low", "close"):
        out[col] = df[col] * factor
    out["volume"] = df["volume"] * 100.0
    out["amount"] = df["amount"]
    return out


def build_panel(codes: Sequence[str]) -> PricePanel:
    """A PricePanel over the union of the funds' trade dates (NaN where a fund has no row)."""
    funds = {code: read_fund(code) for code in codes}
    sessions = pd.DatetimeIndex(sorted(set().union(*(f.index for f in funds.values()))))
    frames = {name: pd.DataFrame({code: f[name] for code, f in funds.items()}).reindex(sessions)
              for name in PRICE_FIELDS}
    return PricePanel(frames, {"source": "shared_csv", "synthetic": False, "adjusted": True})


def read_nav(code: str, sessions: pd.DatetimeIndex) -> pd.Series:
    """Unit NAV of a cross-border fund on the price basis of :func:`read_fund` (times its hfq factor)."""
    folder = _data_dir()
    nav = pd.read_csv(folder / "etf_nav" / f"{code}.csv", parse_dates=["trade_date"]).set_index("trade_date")
    nav = nav[~nav.index.duplicated(keep="last")]["unit_nav"].sort_index()
    hfq = pd.read_csv(folder / f"{code}_hfq_factor.csv", parse_dates=["trade_date"]).set_index("trade_date")
    hfq = hfq[~hfq.index.duplicated(keep="last")]["hfq_factor"].sort_index()
    factor = hfq.reindex(hfq.index.union(nav.index)).ffill().reindex(nav.index)
    return (nav * factor).reindex(sessions)


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def real_panel() -> PricePanel:
    return build_panel(REAL_FUNDS)


@pytest.fixture(scope="session")
def real_factors(real_panel: PricePanel) -> FactorPanel:
    return compute_panel(real_panel, 1)


@pytest.fixture(scope="session")
def real_nav(real_panel: PricePanel) -> pd.DataFrame:
    """NAV for 513100, the panel's cross-border fund (the other funds have none)."""
    return pd.DataFrame({"513100": read_nav("513100", real_panel.sessions)})


def synthetic_panel(n_sessions: int = 900, n_funds: int = 6, seed: int = 7) -> PricePanel:
    """Seeded OHLCV random walks with a late listing, suspensions and a fund that stops trading."""
    rng = np.random.default_rng(seed)
    sessions = pd.bdate_range("2018-01-02", periods=n_sessions, name="session")
    close = 3.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, (n_sessions, n_funds)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.006, close.shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, close.shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, close.shape)))
    volume = np.round(np.exp(rng.normal(15.0, 0.6, close.shape)), -2)
    amount = volume * (high + low) / 2
    arrays = dict(open=open_, high=high, low=low, close=close, volume=volume, amount=amount)
    mask = np.zeros(close.shape, dtype=bool)
    mask[:300, 1] = True                      # listed late
    mask[[400, 401, 650], 2] = True           # suspensions
    mask[n_sessions - 150:, 3] = True         # stops trading
    symbols = [f"S{j:02d}" for j in range(n_funds)]
    frames = {k: pd.DataFrame(np.where(mask, np.nan, v), index=sessions, columns=symbols)
              for k, v in arrays.items()}
    return PricePanel(frames, {"source": "synthetic_test", "synthetic": True})


@pytest.fixture(scope="session")
def synth_panel() -> PricePanel:
    return synthetic_panel()


@pytest.fixture(scope="session")
def synth_factors(synth_panel: PricePanel) -> FactorPanel:
    return compute_panel(synth_panel, 1)


# --------------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class Bars:
    """Helpers to look at one fund's own bars (the engine's unit of time)."""

    panel: PricePanel

    def rows(self, symbol: str) -> np.ndarray:
        """Session rows of the fund's bars."""
        j = self.panel.symbols.index(symbol)
        return np.flatnonzero(valid_bars(self.panel)[:, j])

    def field(self, symbol: str, name: str) -> np.ndarray:
        return self.panel.frames[name][symbol].to_numpy()[self.rows(symbol)]

    def raw(self, factors: FactorPanel, name: str, symbol: str) -> np.ndarray:
        """The factor's raw value at each bar (the published value ``lag`` sessions later); NaN for
        bars whose value falls past the panel's end."""
        lag = int(factors.meta["lag"])  # type: ignore[arg-type]
        rows = self.rows(symbol) + lag
        values = factors.factor(name)[symbol].to_numpy()
        out = np.full(len(rows), np.nan)
        inside = rows < len(values)
        out[inside] = values[rows[inside]]
        return out


@pytest.fixture(scope="session")
def real_bars(real_panel: PricePanel) -> Bars:
    return Bars(real_panel)


def assert_close(ours: np.ndarray, ref: np.ndarray, *, start: int, rtol: float = 1e-9,
                 scale: np.ndarray | float | None = None, what: str = "") -> int:
    """``|ours - ref| <= rtol * max(|ref|, scale)`` from index ``start`` on, where both are finite;
    ``scale`` defaults to the largest ``|ref|`` compared (a floor for values crossing zero). Also
    requires ``ours`` to be finite wherever ``ref`` is (from ``start``). Returns the values compared."""
    ours = np.asarray(ours, dtype=np.float64)[start:]
    ref = np.asarray(ref, dtype=np.float64)[start:]
    both = np.isfinite(ours) & np.isfinite(ref)
    missing = np.isfinite(ref) & ~np.isfinite(ours)
    assert not missing.any(), f"{what}: NaN where the reference has {int(missing.sum())} values"
    assert both.sum() > 0, f"{what}: nothing to compare"
    floor = np.nanmax(np.abs(ref[both])) if scale is None else scale
    if isinstance(floor, np.ndarray):
        floor = floor[start:][both]
    tol = rtol * np.maximum(np.abs(ref[both]), floor)
    err = np.abs(ours[both] - ref[both])
    worst = int(np.argmax(err / tol))
    assert (err <= tol).all(), (f"{what}: {int((err > tol).sum())} of {int(both.sum())} values differ; worst "
                                f"ours={ours[both][worst]!r} ref={ref[both][worst]!r}")
    return int(both.sum())


@pytest.fixture(scope="session")
def close_check() -> Callable[..., int]:
    return assert_close
