"""The canonical price panel: sessions x funds, one 2-D frame per field.

Contract
--------
* ``fields``: ``open, high, low, close`` (CNY per share, adjusted when ``meta["adjusted"]``),
  ``volume`` (shares, never lots) and ``amount`` (turnover in CNY).
* Every frame shares one index -- a tz-naive, sorted, unique ``DatetimeIndex`` named ``session``
  holding the sessions of the pool's calendar -- and one column index of symbols (``str``, named
  ``symbol``). A fund not yet listed, suspended or missing on a session has NaN in every field.
* Values are float64; sessions are ``datetime64[ns]``.
* ``meta`` is a plain JSON-able dict: at least ``source`` and ``synthetic``; sources add provenance
  (files, adjustment method, seed ...).

The long form (one row per session and symbol) is what stores write; :meth:`PricePanel.to_long` and
:meth:`PricePanel.from_long` convert losslessly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rotation_platform.errors import PriceDataError

__all__ = ["PRICE_FIELDS", "PricePanel"]

PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")


@dataclass(frozen=True, eq=False)
class PricePanel:
    frames: Mapping[str, pd.DataFrame]
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [f for f in PRICE_FIELDS if f not in self.frames]
        if missing:
            raise PriceDataError(f"price panel lacks fields {missing}")
        extra = [f for f in self.frames if f not in PRICE_FIELDS]
        if extra:
            raise PriceDataError(f"price panel has unknown fields {extra}; known: {list(PRICE_FIELDS)}")
        ref = self.frames["close"]
        if not isinstance(ref.index, pd.DatetimeIndex):
            raise PriceDataError("price panel index must be a DatetimeIndex of sessions")
        if not ref.index.is_monotonic_increasing or not ref.index.is_unique:
            dup = ref.index[ref.index.duplicated()]
            raise PriceDataError("price panel sessions must be sorted and unique",
                                 date=dup[0] if len(dup) else None)
        sessions = pd.DatetimeIndex(ref.index, name="session").as_unit("ns")
        if sessions.tz is not None:
            raise PriceDataError("price panel sessions must be tz-naive session labels")
        symbols = pd.Index([str(c) for c in ref.columns], name="symbol", dtype=object)
        frames = {}
        for name in PRICE_FIELDS:
            frame = self.frames[name]
            if not frame.index.equals(ref.index) or not frame.columns.equals(ref.columns):
                raise PriceDataError(f"field {name!r} is not aligned with 'close' (index or columns differ)")
            frames[name] = pd.DataFrame(frame.to_numpy(dtype=np.float64), index=sessions, columns=symbols)
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "meta", dict(self.meta))

    # ---------------------------------------------------------------------------------- access
    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]

    @property
    def sessions(self) -> pd.DatetimeIndex:
        return self.frames["close"].index

    @property
    def symbols(self) -> list[str]:
        return list(self.frames["close"].columns)

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames["close"].shape

    def array(self, name: str) -> np.ndarray:
        """The field as a C-contiguous float64 array (sessions x funds), for numba kernels."""
        return np.ascontiguousarray(self.frames[name].to_numpy(dtype=np.float64))

    def select(self, symbols: Iterable[str] | None = None, start=None, end=None) -> "PricePanel":
        """A sub-panel: some symbols and/or a session range (inclusive)."""
        cols = list(symbols) if symbols is not None else self.symbols
        unknown = [s for s in cols if s not in self.frames["close"].columns]
        if unknown:
            raise PriceDataError(f"symbols not in the panel: {unknown}")
        sl = slice(pd.Timestamp(start) if start is not None else None,
                   pd.Timestamp(end) if end is not None else None)
        return PricePanel({k: v.loc[sl, cols] for k, v in self.frames.items()}, self.meta)

    def with_meta(self, **meta: object) -> "PricePanel":
        return PricePanel(self.frames, {**self.meta, **meta})

    def first_valid(self) -> pd.Series:
        """First session with a close, per symbol (NaT where none)."""
        close = self.frames["close"]
        return close.apply(lambda s: s.first_valid_index())

    # ---------------------------------------------------------------------------------- long form
    def to_long(self) -> pd.DataFrame:
        """One row per (session, symbol) with a close; columns session, symbol and the fields."""
        close = self.frames["close"]
        stacked = {name: self.frames[name].to_numpy().ravel() for name in PRICE_FIELDS}
        n_s, n_f = close.shape
        out = pd.DataFrame({
            "session": np.repeat(close.index.to_numpy(), n_f),
            "symbol": np.tile(np.asarray(close.columns, dtype=object), n_s),
            **stacked,
        })
        out = out[~np.isnan(out["close"].to_numpy())].reset_index(drop=True)
        return out

    @classmethod
    def from_long(cls, long: pd.DataFrame, sessions: pd.DatetimeIndex | None = None,
                  symbols: Iterable[str] | None = None, meta: Mapping[str, object] | None = None) -> "PricePanel":
        need = {"session", "symbol", *PRICE_FIELDS}
        missing = need - set(long.columns)
        if missing:
            raise PriceDataError(f"long price table lacks columns {sorted(missing)}")
        dup = long.duplicated(["session", "symbol"])
        if dup.any():
            row = long[dup].iloc[0]
            raise PriceDataError("duplicate (session, symbol) rows", symbol=str(row["symbol"]), date=row["session"])
        idx = pd.DatetimeIndex(sorted(pd.to_datetime(long["session"]).unique()) if sessions is None else sessions,
                               name="session")
        cols = sorted(long["symbol"].astype(str).unique()) if symbols is None else [str(s) for s in symbols]
        frames = {}
        keyed = long.assign(session=pd.to_datetime(long["session"]), symbol=long["symbol"].astype(str))
        for name in PRICE_FIELDS:
            wide = keyed.pivot(index="session", columns="symbol", values=name)
            frames[name] = wide.reindex(index=idx, columns=cols)
        return cls(frames, dict(meta or {}))

    # ---------------------------------------------------------------------------------- identity
    def content_hash(self) -> str:
        """SHA-256 over sessions, symbols and every field's bytes (NaN-stable)."""
        h = hashlib.sha256()
        h.update(self.sessions.asi8.tobytes())
        h.update("\x1f".join(self.symbols).encode())
        for name in PRICE_FIELDS:
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.frames[name].to_numpy(dtype=np.float64)).tobytes())
        return h.hexdigest()

    def equals(self, other: "PricePanel") -> bool:
        return self.content_hash() == other.content_hash()
