"""Real-data helpers of the research-core tests: the A-share funds and simple lagged price factors.

The real data is read straight from ``../shared/data/cn_etf`` (never copied into the repository):
main-schema CSVs (``trade_date,open,high,low,close,volume,amount,...``; 510050 and 510180 use the
``code,trade_date,open_price,...`` schema), volumes in lots of 100 shares, back-adjusted with
``<code>_hfq_factor.csv`` (adjusted price = price x hfq_factor, the factor forward-filled). The panel
ends on the last session every fund's factor file covers, so no factor is carried past its file.
The fixtures (conftest.py) fail -- they do not skip -- when the folder is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.data.panel import PricePanel

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cn_etf"

#: A-share equity funds that have an hfq factor file
A_SHARE_WITH_FACTORS = (
    "510050", "510180", "510300", "510310", "510500", "510880", "159928", "512010", "512200", "512400",
    "512480", "512690", "512800", "512890", "515000", "515050", "515210", "515220",
)

_SECOND_SCHEMA = {"open_price": "open", "high_price": "high", "low_price": "low", "close_price": "close"}


def read_fund(folder: Path, code: str) -> pd.DataFrame:
    """Back-adjusted daily prices of one fund (index: session; volume in shares)."""
    raw = pd.read_csv(folder / f"{code}.csv", dtype={"code": str})
    raw = raw.rename(columns=_SECOND_SCHEMA)
    raw["trade_date"] = pd.to_datetime(raw["trade_date"])
    raw = raw.drop_duplicates("trade_date", keep="last").set_index("trade_date").sort_index()
    factor = pd.read_csv(folder / f"{code}_hfq_factor.csv")
    factor["trade_date"] = pd.to_datetime(factor["trade_date"])
    factor = factor.drop_duplicates("trade_date", keep="last").set_index("trade_date")["hfq_factor"].sort_index()
    union = factor.index.union(raw.index)
    f = factor.reindex(union).ffill().reindex(raw.index)
    f = f.where(raw.index <= factor.index[-1])  # never carry a factor past its file
    out = pd.DataFrame(index=raw.index)
    for col in ("open", "high", "low", "close"):
        out[col] = raw[col].astype(float) * f
    out["volume"] = raw["volume"].astype(float) * 100.0 / f
    out["amount"] = raw["amount"].astype(float)
    return out.dropna(subset=["close"])


def build_panel(folder: Path, codes: tuple[str, ...], start: str | None = None) -> PricePanel:
    frames = {code: read_fund(folder, code) for code in codes}
    end = min(frame.index[-1] for frame in frames.values())
    sessions = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in frames.values()))))
    sessions = sessions[sessions <= end]
    if start is not None:
        sessions = sessions[sessions >= pd.Timestamp(start)]
    fields = {}
    for name in ("open", "high", "low", "close", "volume", "amount"):
        fields[name] = pd.DataFrame({code: frames[code][name].reindex(sessions) for code in codes})
    return PricePanel(fields, {"source": "cn_etf", "synthetic": False, "adjusted": True})


def price_factors(panel: PricePanel) -> tuple[np.ndarray, list[str]]:
    """Simple price factors, lagged one row: row t uses closes and amounts through t-1 only."""
    close = panel["close"]
    amount = panel["amount"]
    ret = close.pct_change(fill_method=None)
    feats = {
        "mom_20": close / close.shift(20) - 1.0,
        "mom_60": close / close.shift(60) - 1.0,
        "mom_120": close / close.shift(120) - 1.0,
        "rev_5": -(close / close.shift(5) - 1.0),
        "vol_20": ret.rolling(20, min_periods=15).std(),
        "vol_60": ret.rolling(60, min_periods=45).std(),
        "amount_trend": np.log(amount.rolling(5, min_periods=3).mean() / amount.rolling(60, min_periods=40).mean()),
        "high_dist_60": close / close.rolling(60, min_periods=40).max() - 1.0,
    }
    names = list(feats)
    values = np.stack([feats[n].shift(1).to_numpy(dtype=np.float64) for n in names], axis=2)
    return np.ascontiguousarray(values), names


def perturb_after(panel: PricePanel, row: int, seed: int = 7) -> PricePanel:
    """The panel with every fund's prices from row ``row + 1`` on scaled by a random walk: returns after
    session ``row`` change, everything up to it stays bit for bit."""
    rng = np.random.default_rng(seed)
    n_s, n_f = panel.shape
    walk = np.ones((n_s, n_f))
    walk[row + 1:] = np.exp(np.cumsum(rng.normal(0.0, 0.03, (n_s - row - 1, n_f)), axis=0))
    frames = {}
    for name in ("open", "high", "low", "close", "volume", "amount"):
        frame = panel[name].copy()
        if name in ("open", "high", "low", "close"):
            frame = frame * walk
        elif name == "amount":
            frame = frame * walk[:, ::-1]
        frames[name] = frame
    return PricePanel(frames, panel.meta)
