"""A price source over the market store (:mod:`rotation_platform.data.market_store`), optionally behind Redis.

Contract
--------
* :meth:`StoredSource.read` returns, per symbol, the stored bars through ``end`` (inclusive; None: all)
  sorted by session, ``line`` the 1-based row, in the units the source ingested them in (raw prices,
  shares, CNY). ``RawPrices.file`` and ``layout`` are those of the file the bars were ingested from
  (recorded by the ``market_data`` asset), so the quality findings of a stored history name the same
  file as those of the files themselves: that is where a bad row is to be fixed. A fund the store does not
  hold raises :class:`~rotation_platform.errors.DataSourceError` naming it.
* :meth:`StoredSource.corporate_actions` returns the stored factors, splits and dividends, exactly as the
  file source returned them at ingest.
* With a :class:`~rotation_platform.storage.cache.RedisCache`, one read of a set of funds is one ``GET``;
  the key carries the funds' store revisions (a token every changing write renews) and ``end``, so a new
  ingest never serves an older history. A miss reads the store and fills the cache. Redis unreachable is
  never a failure: the cache counts the error, warns once and the store is read directly. Hits and misses
  are counted in ``cache.stats`` and in :attr:`StoredSource.stats`.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rotation_platform.data.market_store import MarketStore, records_from_bars
from rotation_platform.data.sources.base import CorporateActions, PriceSource, RawPrices

__all__ = ["StoredSource", "CACHE_TTL_S"]

#: seconds a cached history is kept (the revision in the key makes a stale entry unreachable anyway)
CACHE_TTL_S = 30 * 60
_CACHE_FORMAT = "m1"


def _encode(frames: dict[str, pd.DataFrame]) -> bytes:
    """Frames as one blob: Arrow IPC streams behind a small length-prefixed header."""
    import pyarrow as pa

    parts = []
    for name, frame in frames.items():
        sink = io.BytesIO()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        parts.append((name.encode(), sink.getvalue()))
    head = b"".join(len(n).to_bytes(2, "big") + n + len(d).to_bytes(8, "big") for n, d in parts)
    return len(parts).to_bytes(2, "big") + head + b"".join(d for _, d in parts)


def _decode(blob: bytes) -> dict[str, pd.DataFrame]:
    import pyarrow as pa

    count = int.from_bytes(blob[:2], "big")
    at, sizes = 2, []
    for _ in range(count):
        n = int.from_bytes(blob[at:at + 2], "big")
        name = blob[at + 2:at + 2 + n].decode()
        size = int.from_bytes(blob[at + 2 + n:at + 10 + n], "big")
        sizes.append((name, size))
        at += 10 + n
    out = {}
    for name, size in sizes:
        with pa.ipc.open_stream(blob[at:at + size]) as reader:
            out[name] = reader.read_all().to_pandas()
        at += size
    return out


class StoredSource(PriceSource):
    """The market store as a :class:`PriceSource` (see the module contract)."""

    name = "store"
    synthetic = False

    def __init__(self, store: MarketStore, *, end: object = None, cache: Any = None, synthetic: bool = False):
        self.store = store
        self.end = None if end is None else pd.Timestamp(end).normalize()
        self.cache = cache
        self.synthetic = synthetic
        self.stats = {"hits": 0, "misses": 0, "store_reads": 0}
        self._loaded: dict[tuple[str, ...], tuple[dict[str, RawPrices], CorporateActions]] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"StoredSource({self.store.location!r}, end={None if self.end is None else str(self.end.date())})"

    # ------------------------------------------------------------------------------------ loading
    def _key(self, symbols: Sequence[str], info: dict[str, dict[str, Any]]) -> str:
        text = "|".join(f"{s}={info.get(s, {}).get('revision', '-')}" for s in symbols)
        digest = hashlib.sha256(f"{self.store.location}#{text}".encode()).hexdigest()[:32]
        end = "all" if self.end is None else str(self.end.date())
        return ":".join(["rp", _CACHE_FORMAT, self.cache.namespace or "-", "market_data", end, digest])

    def _load(self, symbols: Sequence[str]) -> tuple[dict[str, RawPrices], CorporateActions]:
        wanted = tuple(str(s) for s in symbols)
        if wanted in self._loaded:
            return self._loaded[wanted]
        info = self.store.info(wanted)
        self._info.update(info)
        frames = None
        key = None
        if self.cache is not None:
            key = self._key(wanted, info)
            blob = self.cache.get(key)
            if blob is not None:
                try:
                    frames = _decode(blob)
                    self.stats["hits"] += 1
                except Exception:  # noqa: BLE001 - an unreadable entry is a miss
                    frames = None
            if frames is None:
                self.stats["misses"] += 1
        if frames is None:
            self.stats["store_reads"] += 1
            actions = self.store.corporate_actions(wanted, self.end)
            frames = {"bars": self.store.bars(wanted, self.end),
                      "factors": pd.DataFrame({
                          "symbol": [s for s, f in actions.factors.items() for _ in range(len(f))],
                          "date": pd.DatetimeIndex([d for f in actions.factors.values() for d in f.index]),
                          "value": [float(v) for f in actions.factors.values() for v in f.to_numpy()]}),
                      "splits": actions.splits.reset_index(drop=True),
                      "dividends": actions.dividends.reset_index(drop=True)}
            if self.cache is not None and key is not None:
                self.cache.set(key, _encode(frames), CACHE_TTL_S)
        raw = records_from_bars(frames["bars"], wanted, info, self.store.location)
        result = (raw, self._actions(frames, wanted))
        self._loaded[wanted] = result
        return result

    @staticmethod
    def _actions(frames: dict[str, pd.DataFrame], symbols: Sequence[str]) -> CorporateActions:
        f = frames["factors"]
        factors = {}
        for s in symbols:
            part = f[f["symbol"] == s]
            if len(part):
                factors[s] = pd.Series(part["value"].to_numpy(dtype="float64"),
                                       index=pd.DatetimeIndex(part["date"].to_numpy(dtype="datetime64[ns]"),
                                                              name="date"), name=s)
        kwargs: dict[str, object] = {"factors": factors}
        for name, column in (("splits", "ratio"), ("dividends", "cash")):
            t = frames[name]
            if len(t):
                out = pd.DataFrame({"symbol": t["symbol"].to_numpy(),
                                    "date": t["date"].to_numpy(dtype="datetime64[ns]"),
                                    column: t[column].to_numpy(dtype="float64")})
                out["symbol"] = out["symbol"].astype(object)    # as the file sources give it
                kwargs[name] = out
        return CorporateActions(**kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------ the protocol
    def read(self, symbols: Sequence[str]) -> dict[str, RawPrices]:
        return dict(self._load(symbols)[0])

    def corporate_actions(self, symbols: Sequence[str]) -> CorporateActions:
        wanted = tuple(str(s) for s in symbols)
        for loaded, (_, actions) in self._loaded.items():
            if set(wanted) <= set(loaded):
                keep = set(wanted)
                return CorporateActions(
                    factors={s: v for s, v in actions.factors.items() if s in keep},
                    splits=actions.splits[actions.splits["symbol"].isin(keep)].reset_index(drop=True),
                    dividends=actions.dividends[actions.dividends["symbol"].isin(keep)].reset_index(drop=True))
        return self._load(wanted)[1]

    def describe(self) -> dict[str, object]:
        origins = {s: dict(i.get("origin") or {}) for s, i in sorted(self._info.items())}
        return {
            "source": self.name,
            "synthetic": self.synthetic or any(o.get("source") == "synthetic" for o in origins.values()),
            "store": self.store.location,
            "backend": self.store.kind,
            "end": None if self.end is None else str(self.end.date()),
            "ingested_from": sorted({str(o.get("source")) for o in origins.values() if o.get("source")}),
            "factor_files": sorted(o["factor_file"] for o in origins.values() if o.get("factor_file")),
            "revisions": {s: i.get("revision") for s, i in sorted(self._info.items())},
            "cache": None if self.cache is None else {**self.stats},
        }
