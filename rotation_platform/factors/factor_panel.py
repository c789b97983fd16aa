"""FactorPanel: the engine's output for one pool, sessions x funds x factors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rotation_platform.factors.registry import REGISTRY, FactorError

__all__ = ["FactorPanel"]


@dataclass(frozen=True, eq=False)
class FactorPanel:
    """Factor values of one pool.

    * ``data``: ``(n_factors, n_sessions, n_funds)`` array, C order (one contiguous sessions x funds
      block per factor); :attr:`values` is the same memory seen as sessions x funds x factors.
      Values at session *t* use data through *t - lag* (``meta["lag"]``); NaN where not available.
    * ``names`` (factors), ``sessions`` (``DatetimeIndex`` named ``session``), ``symbols``.
    * ``available``: sessions x funds, True where the fund had a bar at *t - lag*, i.e. where a value
      could exist; coverage is measured against it.
    * ``meta``: JSON-able -- ``set_version``, ``lag``, ``price_field``, ``n_factors``, ``dtype``,
      ``nav``, ``nav_delay``, ``lookback``, ``mode`` (``panel`` or ``cross_section``), ``source``,
      ``synthetic``, ``engine_version``, ``min_coverage``.
    """

    data: np.ndarray
    names: tuple[str, ...]
    sessions: pd.DatetimeIndex
    symbols: tuple[str, ...]
    available: np.ndarray
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k, s, f = self.data.shape
        if k != len(self.names) or s != len(self.sessions) or f != len(self.symbols):
            raise FactorError(f"factor data of shape {self.data.shape} does not match "
                              f"{len(self.names)} names x {len(self.sessions)} sessions x "
                              f"{len(self.symbols)} symbols")
        if self.available.shape != (s, f):
            raise FactorError("availability mask must be sessions x funds")
        object.__setattr__(self, "sessions", pd.DatetimeIndex(self.sessions, name="session"))
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "symbols", tuple(str(x) for x in self.symbols))
        object.__setattr__(self, "meta", dict(self.meta))
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.names)})

    # ------------------------------------------------------------------------------- access
    @property
    def values(self) -> np.ndarray:
        """Sessions x funds x factors (a view of :attr:`data`)."""
        return self.data.transpose(1, 2, 0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_sessions, n_funds, n_factors)``."""
        k, s, f = self.data.shape
        return s, f, k

    @property
    def n_factors(self) -> int:
        return len(self.names)

    def _position(self, name: str) -> int:
        try:
            return self._index[name]  # type: ignore[attr-defined]
        except KeyError:
            raise FactorError(f"factor {name!r} is not in this panel ({self.n_factors} factors)") from None

    def factor(self, name: str) -> pd.DataFrame:
        """One factor as a wide frame (sessions x symbols)."""
        return pd.DataFrame(self.data[self._position(name)], index=self.sessions,
                            columns=pd.Index(self.symbols, name="symbol"))

    def to_frames(self) -> dict[str, pd.DataFrame]:
        """Every factor as a wide frame, by name."""
        return {name: self.factor(name) for name in self.names}

    def to_long(self, dropna: bool = True) -> pd.DataFrame:
        """One row per (session, symbol), one column per factor; ``dropna`` drops rows where every
        factor is NaN."""
        k, s, f = self.data.shape
        flat = self.data.reshape(k, s * f).T
        out = pd.DataFrame(flat, columns=list(self.names))
        out.insert(0, "symbol", np.tile(np.asarray(self.symbols, dtype=object), s))
        out.insert(0, "session", np.repeat(self.sessions.to_numpy(), f))
        if dropna:
            keep = ~np.isnan(flat).all(axis=1)
            out = out[keep].reset_index(drop=True)
        return out

    def to_tidy(self) -> pd.DataFrame:
        """One row per finite value: ``session, symbol, factor, value``."""
        k, s, f = self.data.shape
        kk, ss, ff = np.nonzero(~np.isnan(self.data))
        return pd.DataFrame({
            "session": self.sessions.to_numpy()[ss],
            "symbol": np.asarray(self.symbols, dtype=object)[ff],
            "factor": np.asarray(self.names, dtype=object)[kk],
            "value": self.data[kk, ss, ff].astype(np.float64),
        })

    def cross_section(self, session: object) -> pd.DataFrame:
        """Funds x factors at one session."""
        ts = pd.Timestamp(session)  # type: ignore[arg-type]
        if ts not in self.sessions:
            raise FactorError(f"session {str(ts)[:10]} is not in this factor panel")
        i = self.sessions.get_loc(ts)
        return pd.DataFrame(self.data[:, i, :].T, index=pd.Index(self.symbols, name="symbol"),
                            columns=list(self.names))

    def select(self, names: Sequence[str] | None = None, start: object = None, end: object = None) -> "FactorPanel":
        """A sub-panel: some factors and/or a session range (inclusive)."""
        pos = list(range(self.n_factors)) if names is None else [self._position(n) for n in names]
        mask = np.ones(len(self.sessions), dtype=bool)
        if start is not None:
            mask &= self.sessions >= pd.Timestamp(start)  # type: ignore[arg-type]
        if end is not None:
            mask &= self.sessions <= pd.Timestamp(end)  # type: ignore[arg-type]
        data = np.ascontiguousarray(self.data[pos][:, mask, :])
        meta = {**self.meta, "n_factors": len(pos)}
        return FactorPanel(data, tuple(self.names[i] for i in pos), self.sessions[mask], self.symbols,
                           self.available[mask], meta)

    # ------------------------------------------------------------------------------- statistics
    def stats(self) -> pd.DataFrame:
        """Per factor: coverage and dispersion.

        ``coverage`` = finite values / cells where the fund had a bar at *t - lag*;
        ``std`` = standard deviation of all finite values; ``cs_std`` = mean over sessions (with at
        least two finite values) of the cross-sectional standard deviation; ``zero_variance`` is
        True when either is not positive (a constant factor or one that never separates funds);
        ``meets_min_coverage`` compares coverage with ``meta["min_coverage"]``.
        """
        avail = self.available
        n_avail = int(avail.sum())
        rows = []
        min_cov = float(self.meta.get("min_coverage", 0.0))  # type: ignore[arg-type]
        for k, name in enumerate(self.names):
            x = self.data[k].astype(np.float64, copy=False)
            finite = np.isfinite(x)
            n = int(finite.sum())
            vals = x[finite]
            with np.errstate(all="ignore"):
                mean = float(vals.mean()) if n else np.nan
                std = float(vals.std()) if n > 1 else np.nan
                per_row = finite.sum(axis=1)
                ok = per_row >= 2
                if ok.any():
                    sub = np.where(finite[ok], x[ok], np.nan)
                    cs_std = float(np.nanmean(np.nanstd(sub, axis=1)))
                else:
                    cs_std = np.nan
            spec = REGISTRY.get(name)
            coverage = float((finite & avail).sum() / n_avail) if n_avail else np.nan
            rows.append({
                "factor": name,
                "family": spec.family if spec else None,
                "direction": spec.direction if spec else None,
                "min_history": spec.min_history if spec else None,
                "n_values": n,
                "coverage": coverage,
                "mean": mean,
                "std": std,
                "min": float(vals.min()) if n else np.nan,
                "max": float(vals.max()) if n else np.nan,
                "cs_std": cs_std,
                "zero_variance": not (std > 0.0 and cs_std > 0.0),
                "meets_min_coverage": bool(coverage >= min_cov) if n_avail else False,
            })
        return pd.DataFrame(rows).set_index("factor")

    # ------------------------------------------------------------------------------- comparison
    def equals(self, other: "FactorPanel") -> bool:
        """Same names, sessions, symbols and values (NaN equal to NaN, otherwise exact)."""
        return (self.names == other.names and self.symbols == other.symbols
                and self.sessions.equals(other.sessions) and self.data.shape == other.data.shape
                and bool(np.array_equal(self.data, other.data, equal_nan=True)))
