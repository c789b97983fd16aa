"""A deterministic synthetic ETF universe -- the embedded default source.

Nothing here is market data; every output is marked ``synthetic`` in its metadata.

Model (daily, on the pool calendar's sessions)
----------------------------------------------
* A domestic equity market and an overseas market factor, each with a three-state Markov regime
  (bull / range / bear: drift and volatility per state) and GARCH(1,1)-style volatility clustering,
  driven by Student-t(4) shocks (fat tails). The overseas factor is correlated with the domestic one.
* Sector factors (six, Student-t) for A-share funds; each fund loads on the market (beta 0.7..1.3),
  on one sector, and carries idiosyncratic Student-t noise.
* QDII funds follow the overseas factor; OTHER funds are gold-, bond- or commodity-like with their own
  low-correlation factors (bond funds trade near 100 CNY with very low volatility).
* Prices on the 0.001 CNY tick; open from an overnight gap, high/low from intraday excursions, so
  ``low <= open, close <= high`` always holds; daily moves stay within the exchange's +-10% limit. Volume in whole board lots, turnover (``amount``) =
  volume x average price, with a turnover level per fund (log-uniform 30M..3B CNY a day) that rises
  with the size of the day's move.
* A configurable fraction of funds list late (their rows start at a drawn session).
* No bar for a session that has not closed yet (the exchange calendar's close time): the range ends
  at the last closed session, whatever ``end`` (or ``synthetic.end``) asks for.

Determinism: every random stream is seeded from ``(seed, stream name)`` and drawn session by session,
so the same seed gives identical bytes, and a longer date range only appends rows -- the history up to
any session does not depend on where the range ends.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rotation_platform.calendars import TradingCalendar, get_calendar
from rotation_platform.config.models import PoolConfig, PoolKind, SyntheticConfig
from rotation_platform.data.sources.base import CorporateActions, PriceSource, RawPrices
from rotation_platform.errors import DataSourceError

__all__ = ["SyntheticSource", "GENERATOR_VERSION"]

GENERATOR_VERSION = "1"
TICK = 0.001
LOT = 100
N_SECTORS = 6
OTHER_FLAVOURS = ("gold", "bond", "commodity")
PRICE_LIMIT = float(np.log(1.095))  # exchange daily price limit of +-10%, less rounding room
TRADING_DAYS = 252

# regime: (annual drift, annual vol) for bull / range / bear, and the daily transition matrix
_REGIMES = np.array([[0.25, 0.18], [0.02, 0.16], [-0.30, 0.30]])
_TRANSITION = np.array([[0.992, 0.006, 0.002],
                        [0.004, 0.993, 0.003],
                        [0.004, 0.008, 0.988]])


def _rng(seed: int, *stream: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join((str(seed),) + stream).encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def _student_t(rng: np.random.Generator, n: int, df: float = 4.0) -> np.ndarray:
    """Unit-variance Student-t draws (fat tails)."""
    return rng.standard_t(df, size=n) / np.sqrt(df / (df - 2.0))


def _regime_path(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.random(n)
    state = np.empty(n, dtype=np.int64)
    s = 1
    cum = np.cumsum(_TRANSITION, axis=1)
    for i in range(n):  # a three-state chain: tiny loop, one pass
        s = int(np.searchsorted(cum[s], u[i], side="right"))
        s = min(s, 2)
        state[i] = s
    return state


def _garch_factor(seed: int, name: str, n: int, drift_scale: float = 1.0, vol_scale: float = 1.0) -> np.ndarray:
    """Daily log returns of a regime-switching, volatility-clustering factor."""
    rng = _rng(seed, "factor", name)
    regime = _regime_path(_rng(seed, "regime", name), n)
    z = _student_t(rng, n)
    drift = _REGIMES[regime, 0] * drift_scale / TRADING_DAYS
    target_var = (_REGIMES[regime, 1] * vol_scale) ** 2 / TRADING_DAYS
    alpha, beta = 0.08, 0.90
    out = np.empty(n)
    var = target_var[0] if n else 0.0
    prev = 0.0
    for i in range(n):
        var = (1.0 - alpha - beta) * target_var[i] + alpha * prev * prev + beta * var
        prev = np.sqrt(var) * z[i]
        out[i] = drift[i] + prev
    return out


def _round_tick(x: np.ndarray) -> np.ndarray:
    return np.round(x, 3)  # the 0.001 CNY tick


class SyntheticSource(PriceSource):
    """Generates a realistic, deterministic universe for the configured pools."""

    name = "synthetic"
    synthetic = True

    def __init__(self, pools: Sequence[PoolConfig], config: SyntheticConfig | None = None,
                 end: dt.date | str | None = None, calendar: TradingCalendar | None = None,
                 now: pd.Timestamp | str | None = None):
        self.config = config or SyntheticConfig()
        self.kinds: dict[str, PoolKind] = {s: p.kind for p in pools for s in p.symbols}
        codes = {p.calendar for p in pools}
        if calendar is None:
            if len(codes) > 1:
                raise DataSourceError(f"synthetic source generates one calendar; pools use {sorted(codes)}")
            calendar = get_calendar(codes.pop() if codes else "XSHG")
        self.calendar = calendar
        last = end if end is not None else (self.config.end or calendar.last_completed_session(now))
        # no bar for a session that has not closed (``now``: default the current time), whatever end is asked
        # for: a bar exists once the exchange has closed, as a vendor's would
        closed = calendar.last_completed_session(now, close_buffer_minutes=0)
        last = min(pd.Timestamp(last), closed)
        self.sessions = calendar.sessions(self.config.start, last)
        if len(self.sessions) < 2:
            raise DataSourceError(f"synthetic range {self.config.start}..{last} has fewer than two "
                                  f"{calendar.code} sessions")
        self._cache: dict[str, pd.DataFrame] = {}
        self._common: dict[str, object] | None = None

    # ------------------------------------------------------------------------------------ generation
    def _factors(self) -> dict[str, object]:
        """The common factors every fund loads on (computed once per source)."""
        if self._common is None:
            seed, n = self.config.seed, len(self.sessions)
            market = _garch_factor(seed, "cn_market", n)
            overseas_own = _garch_factor(seed, "overseas_market", n, drift_scale=0.9, vol_scale=0.85)
            self._common = {
                "market": market,
                "overseas": 0.35 * market + np.sqrt(1 - 0.35 ** 2) * overseas_own,
                "sectors": [_garch_factor(seed, f"sector{k}", n, drift_scale=0.3, vol_scale=0.55)
                            for k in range(N_SECTORS)],
                "gold": _garch_factor(seed, "gold", n, drift_scale=0.3, vol_scale=0.7),
                "bond": _garch_factor(seed, "bond", n, drift_scale=0.05, vol_scale=0.12) * 0.25 + 0.03 / TRADING_DAYS,
                "commodity": _garch_factor(seed, "commodity", n, drift_scale=0.2, vol_scale=1.1),
            }
        return self._common

    def _generate(self, symbol: str) -> pd.DataFrame:
        """One fund's bars. A-share funds take sectors, OTHER funds gold/bond/commodity flavours in turn,
        by their position among the configured funds of their kind (sorted by code)."""
        seed, n = self.config.seed, len(self.sessions)
        common = self._factors()
        kind = self.kinds[symbol]
        position = sorted(s for s, k in self.kinds.items() if k is kind).index(symbol)
        rng = _rng(seed, "fund", symbol)
        beta = rng.uniform(0.7, 1.3)
        idio_vol = rng.uniform(0.06, 0.16) / np.sqrt(TRADING_DAYS)
        if kind is PoolKind.A_SHARE:
            base = beta * common["market"] + 0.9 * common["sectors"][position % N_SECTORS]
            level = rng.uniform(0.8, 5.0)
        elif kind is PoolKind.QDII:
            base = beta * common["overseas"]
            level = rng.uniform(0.9, 4.0)
        else:
            flavour = OTHER_FLAVOURS[position % len(OTHER_FLAVOURS)]
            base = common[flavour]
            if flavour == "bond":
                idio_vol *= 0.05
                level = rng.uniform(95.0, 125.0)
            else:
                level = rng.uniform(1.0, 6.0)
        ret = base + idio_vol * _student_t(_rng(seed, "idio", symbol), n)
        ret = np.clip(ret, -PRICE_LIMIT, PRICE_LIMIT)
        return self._ohlcv(symbol, ret, level, kind)

    def _ohlcv(self, symbol: str, ret: np.ndarray, level: float, kind: PoolKind) -> pd.DataFrame:
        seed, n = self.config.seed, len(ret)
        rng = _rng(seed, "bars", symbol)
        gap_share = rng.uniform(0.15, 0.35)
        adv_cny = float(np.exp(rng.uniform(np.log(3e7), np.log(3e9))))
        # one stream per variable, so that a longer range only appends draws
        z_gap, z_hi, z_lo, z_vol = (_rng(seed, part, symbol).standard_normal(n) for part in ("gap", "hi", "lo", "vol"))
        # causal EWMA volatility (RiskMetrics lambda), seeded at a typical level
        var = pd.Series(ret * ret).ewm(alpha=0.06, adjust=False).mean().to_numpy()
        daily_vol = np.sqrt(np.maximum(var, (0.02 / np.sqrt(TRADING_DAYS)) ** 2))
        close = _round_tick(level * np.exp(np.cumsum(ret)))
        close = np.maximum(close, TICK)
        prev_close = np.concatenate([[level], close[:-1]])
        open_ = _round_tick(prev_close * np.exp(gap_share * ret + 0.15 * daily_vol * z_gap))
        open_ = np.maximum(open_, TICK)
        span = np.abs(np.log(close / open_))
        high = _round_tick(np.maximum(open_, close) * np.exp(np.abs(z_hi) * 0.45 * daily_vol + 0.1 * span))
        low = _round_tick(np.minimum(open_, close) * np.exp(-np.abs(z_lo) * 0.45 * daily_vol - 0.1 * span))
        high = np.maximum(high, np.maximum(open_, close))
        low = np.maximum(np.minimum(low, np.minimum(open_, close)), TICK)
        if kind is PoolKind.QDII:
            adv_cny *= 0.5
        surprise = np.minimum(np.abs(ret) / daily_vol, 6.0)
        turnover_cny = adv_cny * np.exp(0.35 * surprise - 0.3 + 0.3 * z_vol)
        avg_price = (open_ + high + low + close) / 4.0
        volume = np.maximum(np.round(turnover_cny / avg_price / LOT), 1.0) * LOT
        amount = np.round(volume * avg_price, 2)
        first = self._listing_index(symbol, n)
        frame = pd.DataFrame({
            "date": self.sessions[first:].to_numpy(),
            "open": open_[first:], "high": high[first:], "low": low[first:], "close": close[first:],
            "volume": volume[first:], "amount": amount[first:],
        })
        frame["line"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        return frame

    def _listing_index(self, symbol: str, n: int) -> int:
        rng = _rng(self.config.seed, "listing", symbol)
        late = rng.random() < self.config.late_listing_fraction
        position = rng.uniform(0.1, 0.6)
        if not late:
            return 0
        # listing sessions depend on the calendar from ``start`` only, so they do not move with ``end``
        full = self.calendar.sessions(self.config.start, self.calendar.last_session)
        idx = int(position * min(len(full), 10 * TRADING_DAYS))
        return min(idx, max(n - 1, 0))

    # ------------------------------------------------------------------------------------ interface
    def read(self, symbols: Sequence[str]) -> dict[str, RawPrices]:
        unknown = [s for s in symbols if s not in self.kinds]
        if unknown:
            raise DataSourceError(f"synthetic source has no fund {unknown}; it generates the configured "
                                  f"pools' symbols: {sorted(self.kinds)}")
        for symbol in symbols:
            if symbol not in self._cache:
                self._cache[symbol] = self._generate(symbol)
        return {s: RawPrices(symbol=s, frame=self._cache[s].copy(), file=None, layout="synthetic",
                             meta={"synthetic": True, "seed": self.config.seed}) for s in symbols}

    def corporate_actions(self, symbols: Sequence[str]) -> CorporateActions:
        return CorporateActions()

    def describe(self) -> Mapping[str, object]:
        return {
            "source": self.name,
            "synthetic": True,
            "generator_version": GENERATOR_VERSION,
            "seed": self.config.seed,
            "start": str(self.sessions[0].date()),
            "end": str(self.sessions[-1].date()),
            "calendar": self.calendar.code,
            "note": "synthetic data generated by the platform; not market data",
        }
