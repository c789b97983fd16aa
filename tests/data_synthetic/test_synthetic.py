"""The embedded default source: deterministic, realistic, marked synthetic, passes the quality gate."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.config.models import SyntheticConfig
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources import make_source
from rotation_platform.data.sources.synthetic import SyntheticSource
from rotation_platform.errors import DataSourceError

END = "2026-06-30"


@pytest.fixture(scope="module")
def config():
    return load_config(CONFIG_DIR / "demo.yaml", env={})


def _digest(raw: dict) -> str:
    h = hashlib.sha256()
    for symbol in sorted(raw):
        frame = raw[symbol].frame
        h.update(symbol.encode())
        h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        h.update(frame.to_numpy(dtype=object).astype(str).tobytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(config) -> None:
    symbols = [s for p in config.pools for s in p.symbols]
    a = SyntheticSource(config.pools, config.data.synthetic, end=END).read(symbols)
    b = SyntheticSource(config.pools, config.data.synthetic, end=END).read(symbols)
    assert _digest(a) == _digest(b)
    other = SyntheticSource(config.pools, SyntheticConfig(seed=7, start=config.data.synthetic.start), end=END)
    assert _digest(other.read(symbols)) != _digest(a)


def test_same_seed_same_panel_bytes_through_pipeline(config) -> None:
    pool = config.pool("A_SHARE")
    one = load_pool_prices(SyntheticSource(config.pools, config.data.synthetic, end=END), pool, config.data).panel
    two = load_pool_prices(SyntheticSource(config.pools, config.data.synthetic, end=END), pool, config.data).panel
    assert one.content_hash() == two.content_hash()
    for field in ("open", "close", "volume"):
        assert one[field].to_numpy().tobytes() == two[field].to_numpy().tobytes()


def test_longer_range_only_appends(config) -> None:
    short = SyntheticSource(config.pools, config.data.synthetic, end="2020-06-30").read(["DA03", "DQ02", "DO02"])
    long = SyntheticSource(config.pools, config.data.synthetic, end=END).read(["DA03", "DQ02", "DO02"])
    for symbol, raw in short.items():
        head = long[symbol].frame.iloc[: len(raw.frame)].reset_index(drop=True)
        pd.testing.assert_frame_equal(head, raw.frame)


def test_realistic_universe(config) -> None:
    source = SyntheticSource(config.pools, config.data.synthetic, end=END)
    raw = source.read(list(source.kinds))
    xshg = get_calendar("XSHG")
    closes = pd.DataFrame({s: r.frame.set_index("date")["close"] for s, r in raw.items()})
    rets = np.log(closes).diff()
    # XSHG sessions only, from the configured start
    assert all(xshg.is_session(d) for d in closes.index[::50])
    assert closes.index[0] == pd.Timestamp(config.data.synthetic.start)
    # some funds list late
    first = closes.apply(lambda s: s.first_valid_index())
    assert (first > closes.index[0]).sum() >= 2
    # equity-like vol, fat tails, price limits, correlation within the A-share pool
    a_share = list(config.pool("A_SHARE").symbols)
    vol = rets[a_share].std() * np.sqrt(252)
    assert ((vol > 0.12) & (vol < 0.45)).all()
    assert (rets[a_share].kurt() > 1.0).mean() > 0.8
    assert rets.abs().max().max() <= np.log(1.1)
    corr = rets[a_share].corr().to_numpy()[np.triu_indices(len(a_share), 1)]
    assert 0.25 < np.nanmean(corr) < 0.9
    # OHLC consistent, whole lots, CNY turnover consistent with volume x price
    for r in raw.values():
        f = r.frame
        assert (f["low"] <= f[["open", "close"]].min(axis=1)).all()
        assert (f["high"] >= f[["open", "close"]].max(axis=1)).all()
        assert (f["volume"] % 100 == 0).all() and (f["volume"] > 0).all()
        ratio = f["amount"] / (f["volume"] * f["close"])
        assert ratio.between(0.8, 1.25).all()
        assert 1e6 < f["amount"].median() < 2e10
    # realistic levels: equity 0.1..50 CNY, bond-like funds near 100
    assert closes[a_share].stack().dropna().between(0.1, 50).all()


def test_marked_synthetic_everywhere(config) -> None:
    source = make_source(config, end=END)
    assert source.synthetic and source.describe()["synthetic"] is True
    panel = load_pool_prices(source, config.pool("QDII"), config.data).panel
    assert panel.meta["synthetic"] is True


def test_passes_the_quality_gate(config) -> None:
    source = SyntheticSource(config.pools, config.data.synthetic, end=END)
    for pool in config.pools:
        result = load_pool_prices(source, pool, config.data)
        assert result.report.passed, result.report.summary()
        assert len(result.quarantine) == 0
        assert result.panel.symbols == sorted(pool.symbols) or set(result.panel.symbols) == set(pool.symbols)


def test_unknown_symbol_is_a_clear_error(config) -> None:
    source = SyntheticSource(config.pools, config.data.synthetic, end=END)
    with pytest.raises(DataSourceError, match="no fund \\['ZZ99'\\]"):
        source.read(["ZZ99"])
