"""The market store: raw daily bars and corporate actions kept once, as the system of record.

Pools can read their history from here instead of the vendor files (``data.history: store``): the
``market_data`` asset ingests what the configured source (``data.source``) returns, and
:class:`~rotation_platform.data.sources.stored.StoredSource` hands the stored bars to
:func:`~rotation_platform.data.pipeline.load_pool_prices` as the same :class:`RawPrices` and
:class:`CorporateActions` objects the file sources return, so a pool's prices are rebuilt with no raw
file present.

Data model
----------
* ``daily_bars``: one bar per ``(symbol, session)``: ``open, high, low, close`` (CNY per share, raw,
  unadjusted), ``volume`` (shares), ``amount`` (CNY), ``adj_factor`` (the fund's back-adjustment factor
  on that session when one is known, else NaN), tag ``exchange`` (the calendar code);
* ``adj_factors`` (``symbol, date, hfq_factor``), ``splits`` (``symbol, date, ratio``; the effective
  session) and ``dividends`` (``symbol, date, cash``; the ex-date): the corporate actions exactly as
  the source returned them (:class:`~rotation_platform.data.sources.base.CorporateActions`);
* ``restatements``: the log of every stored value a later ingest changed (``table, symbol, session,
  field, old, new, recorded_at``) -- nothing is lost;
* ``symbols``: per fund its exchange, where its bars were ingested from (file, layout, volume unit),
  the source's factor-file name and a ``revision`` token that changes with every write that changes the
  fund (the read cache keys on it).

Upserts are idempotent: a bar equal to the stored one (NaN equals NaN, floats compared exactly) is
counted ``unchanged`` and not written; a new key is ``new``; a stored bar whose values differ is a
RESTATEMENT: the new values replace it and each changed field is logged with its old and new value.
A row the source no longer returns stays stored (vendors do not withdraw sessions; a corporate action
that disappears is a decision for a person, not for an ingest).

Backends (``storage.backend``)
------------------------------
* ``local`` -- Parquet under ``<storage.data_dir>/market_data/``: ``<table>/<symbol>.parquet``, one
  file per table and fund, sorted by date and rewritten atomically (temporary file + ``os.replace``) on
  an upsert that changes it; ``symbols/<symbol>.json``. "All bars of these funds through D" is one Arrow
  scan over exactly those funds' files, cut at D while reading (figures and the alternatives measured:
  docs/market-data.md);
* ``influxdb`` -- measurement ``daily_bars`` (tags ``symbol``, ``exchange``; the fields above plus the
  transport's row number ``rp_n``, which keeps all-NaN bars; time = the session at 00:00 UTC), written
  through :class:`~rotation_platform.storage.influx.InfluxStore`'s batching and retries; the other
  tables in MySQL (the tables side of the ``influxdb`` backend, as for every other asset);
* ``mysql`` -- table ``daily_bars`` (primary key ``(symbol, session)``) and ``market_adj_factors``,
  ``market_splits``, ``market_dividends``, ``market_restatements``, ``market_symbols``, over the engine
  and URL handling of :class:`~rotation_platform.storage.mysql.MySQLStore`.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rotation_platform.data.sources.base import CorporateActions, RawPrices
from rotation_platform.errors import DataSourceError, PriceDataError

__all__ = [
    "BAR_FIELDS",
    "MARKET_FOLDER",
    "TABLES",
    "Restatement",
    "UpsertResult",
    "MarketStore",
    "ParquetBackend",
    "InfluxBackend",
    "MySQLBackend",
    "open_market_store",
    "bars_from_raw",
    "bars_hash",
    "session_versions",
    "calendar_symbols",
    "ingest_from_source",
]

BAR_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount", "adj_factor")
MARKET_FOLDER = "market_data"
BARS = "daily_bars"
#: table -> value columns; every table is keyed by (symbol, date)
TABLES: dict[str, tuple[str, ...]] = {
    BARS: BAR_FIELDS,
    "adj_factors": ("hfq_factor",),
    "splits": ("ratio",),
    "dividends": ("cash",),
}
LOG_COLUMNS = ("table", "symbol", "session", "field", "old", "new", "recorded_at")
_NS_PER_DAY = 86_400 * 10**9


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class Restatement:
    """One stored value a later ingest changed."""

    table: str
    symbol: str
    session: str     # ISO date
    field: str
    old: float
    new: float

    def to_dict(self) -> dict[str, object]:
        return {"table": self.table, "symbol": self.symbol, "session": self.session, "field": self.field,
                "old": None if np.isnan(self.old) else float(self.old),
                "new": None if np.isnan(self.new) else float(self.new)}


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did: rows new, unchanged and restated (per table summed), and each restated value."""

    new: int = 0
    unchanged: int = 0
    restated: int = 0
    restatements: tuple[Restatement, ...] = ()
    symbols: tuple[str, ...] = ()
    by_table: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: the session dates of the daily bars counted new, unchanged and restated
    bar_dates: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __add__(self, other: "UpsertResult") -> "UpsertResult":
        tables = {k: dict(v) for k, v in self.by_table.items()}
        for k, v in other.by_table.items():
            mine = tables.setdefault(k, {"new": 0, "unchanged": 0, "restated": 0})
            for c, n in v.items():
                mine[c] = mine.get(c, 0) + n
        dates = {k: np.concatenate([np.asarray(self.bar_dates.get(k, ()), dtype="datetime64[ns]"),
                                    np.asarray(other.bar_dates.get(k, ()), dtype="datetime64[ns]")])
                 for k in set(self.bar_dates) | set(other.bar_dates)}
        return UpsertResult(self.new + other.new, self.unchanged + other.unchanged, self.restated + other.restated,
                            self.restatements + other.restatements,
                            tuple(dict.fromkeys(self.symbols + other.symbols)), tables, dates)

    def bars_in(self, start: object, stop: object) -> dict[str, int]:
        """Daily bars counted new / unchanged / restated dated in ``(start, stop]`` (``start`` None: open)."""
        out = {}
        for k in ("new", "unchanged", "restated"):
            d = np.asarray(self.bar_dates.get(k, ()), dtype="datetime64[ns]")
            keep = d <= np.datetime64(pd.Timestamp(stop).normalize(), "ns")
            if start is not None:
                keep &= d > np.datetime64(pd.Timestamp(start).normalize(), "ns")
            out[k] = int(keep.sum())
        return out

    @property
    def earliest_restated(self) -> pd.Timestamp | None:
        """The earliest session whose stored value changed (None when nothing was restated)."""
        if not self.restatements:
            return None
        return min(pd.Timestamp(r.session) for r in self.restatements)

    def to_dict(self) -> dict[str, object]:
        return {"new": self.new, "unchanged": self.unchanged, "restated": self.restated,
                "symbols": list(self.symbols), "by_table": {k: dict(v) for k, v in self.by_table.items()},
                "restatements": [r.to_dict() for r in self.restatements]}


# --------------------------------------------------------------------------------------- converting
def _keyed(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``symbol, date`` + the table's value columns (float64), dates as tz-naive midnights, sorted."""
    values = TABLES[table]
    out = pd.DataFrame({"symbol": frame["symbol"].astype(str).to_numpy(dtype=object),
                        "date": pd.DatetimeIndex(pd.to_datetime(frame["date"])).normalize()
                        .astype("datetime64[ns]")})
    for c in values:
        out[c] = (pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
                  if c in frame.columns else np.nan)
    return out.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({"symbol": pd.Series(dtype=object), "date": pd.Series(dtype="datetime64[ns]"),
                         **{c: pd.Series(dtype=np.float64) for c in TABLES[table]}})


def bars_from_raw(raw: Mapping[str, RawPrices], actions: CorporateActions | None = None) -> pd.DataFrame:
    """The long bars frame (``symbol, date`` + :data:`BAR_FIELDS`) of a source's records.

    Rows without a date cannot be keyed and two rows of one fund on one date cannot both be kept: either
    raises :class:`PriceDataError` naming the file, fund and row (fix the file, then ingest again).
    ``adj_factor`` is the fund's factor on the bar's date where ``actions`` has one."""
    parts = []
    for symbol, rec in raw.items():
        f = rec.frame
        dates = pd.to_datetime(f["date"])
        missing = np.flatnonzero(dates.isna().to_numpy())
        if len(missing):
            line = int(f["line"].iloc[missing[0]]) if "line" in f.columns else int(missing[0]) + 1
            raise PriceDataError(f"{len(missing)} row(s) without a date (first: data row {line}); the market store "
                                 f"keys bars by (symbol, session)", file=rec.file, symbol=symbol, line=line,
                                 hint="give the row its session date or delete it, then ingest again")
        dup = dates.duplicated(keep=False).to_numpy()
        if dup.any():
            first = np.flatnonzero(dup)[0]
            raise PriceDataError(f"{int(dup.sum())} rows share a session date (first: {dates.iloc[first].date()}); "
                                 f"the market store keeps one bar per (symbol, session)", file=rec.file,
                                 symbol=symbol, date=dates.iloc[first],
                                 hint="keep one row per session in the file, then ingest again")
        part = pd.DataFrame({"symbol": symbol, "date": dates.to_numpy()})
        for c in BAR_FIELDS[:-1]:
            part[c] = f[c].to_numpy(dtype=np.float64)
        factor = actions.factors.get(symbol) if actions is not None else None
        if factor is not None and len(factor):
            s = pd.Series(np.asarray(factor, dtype=np.float64), index=pd.DatetimeIndex(factor.index))
            s = s[~s.index.duplicated(keep="last")]
            part["adj_factor"] = s.reindex(pd.DatetimeIndex(part["date"])).to_numpy()
        else:
            part["adj_factor"] = np.nan
        parts.append(part)
    if not parts:
        return _empty(BARS)
    return _keyed(pd.concat(parts, ignore_index=True), BARS)


def _actions_tables(actions: CorporateActions, symbols: Sequence[str]) -> dict[str, pd.DataFrame]:
    wanted = set(symbols)
    factors = [pd.DataFrame({"symbol": s, "date": pd.DatetimeIndex(f.index), "hfq_factor": np.asarray(f, float)})
               for s, f in actions.factors.items() if s in wanted and len(f)]
    return {
        "adj_factors": _keyed(pd.concat(factors, ignore_index=True), "adj_factors") if factors else _empty("adj_factors"),
        "splits": _keyed(actions.splits[actions.splits["symbol"].isin(wanted)], "splits"),
        "dividends": _keyed(actions.dividends[actions.dividends["symbol"].isin(wanted)], "dividends"),
    }


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality with NaN equal to NaN."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _diff(table: str, existing: pd.DataFrame, incoming: pd.DataFrame
          ) -> tuple[pd.DataFrame, pd.DataFrame, int, list[Restatement]]:
    """(rows new, rows restated, count unchanged, restated values) of ``incoming`` against ``existing``."""
    values = list(TABLES[table])
    merged = incoming.merge(existing, on=["symbol", "date"], how="left", suffixes=("", "__old"), indicator=True)
    is_new = (merged["_merge"] == "left_only").to_numpy()
    old_rows = ~is_new
    changed = np.zeros(len(merged), dtype=bool)
    restatements: list[Restatement] = []
    per_field = {}
    for c in values:
        new_v = merged[c].to_numpy(dtype=np.float64)
        old_v = merged[c + "__old"].to_numpy(dtype=np.float64)
        diff = old_rows & ~_same(new_v, old_v)
        per_field[c] = (diff, old_v, new_v)
        changed |= diff
    for i in np.flatnonzero(changed):
        for c in values:
            diff, old_v, new_v = per_field[c]
            if diff[i]:
                restatements.append(Restatement(table, str(merged["symbol"].iloc[i]),
                                                str(pd.Timestamp(merged["date"].iloc[i]).date()), c,
                                                float(old_v[i]), float(new_v[i])))
    cols = ["symbol", "date", *values]
    same = old_rows & ~changed
    return (merged.loc[is_new, cols].reset_index(drop=True), merged.loc[changed, cols].reset_index(drop=True),
            merged.loc[same, "date"].to_numpy(dtype="datetime64[ns]"), restatements)


def _log_frame(restatements: Sequence[Restatement], recorded_at: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame({
        "table": [r.table for r in restatements], "symbol": [r.symbol for r in restatements],
        "session": pd.DatetimeIndex([r.session for r in restatements]).astype("datetime64[ns]"),
        "field": [r.field for r in restatements], "old": np.array([r.old for r in restatements], dtype=np.float64),
        "new": np.array([r.new for r in restatements], dtype=np.float64),
        "recorded_at": pd.DatetimeIndex([recorded_at] * len(restatements)).astype("datetime64[ns]")})


def _empty_log() -> pd.DataFrame:
    return _log_frame([], pd.Timestamp.now(tz="UTC").tz_localize(None))


def bars_hash(bars: pd.DataFrame) -> str:
    """SHA-256 of a bars frame's keys and values (the data version of a stored history)."""
    h = hashlib.sha256()
    frame = bars.sort_values(["symbol", "date"], kind="stable")
    h.update("\x1f".join(frame["symbol"].astype(str)).encode())
    h.update(frame["date"].to_numpy(dtype="datetime64[ns]").astype(np.int64).tobytes())
    for c in BAR_FIELDS:
        values = frame[c].to_numpy(dtype=np.float64).copy()
        values[np.isnan(values)] = np.nan       # one NaN bit pattern
        h.update(values.tobytes())
    return h.hexdigest()


def _rows_digest(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One 16-byte digest per row of ``frame`` (symbol, date and ``columns``), as an (n, 2) uint64 array."""
    keys = pd.util.hash_pandas_object(frame[["symbol"]], index=False).to_numpy(dtype=np.uint64)
    parts = [keys, frame["date"].to_numpy(dtype="datetime64[ns]").astype(np.int64).view(np.uint64)]
    for c in columns:
        v = frame[c].to_numpy(dtype=np.float64).copy()
        v[np.isnan(v)] = np.nan
        parts.append(v.view(np.uint64))
    return np.column_stack(parts) if len(frame) else np.zeros((0, len(parts)), dtype=np.uint64)


def session_versions(tables: Mapping[str, pd.DataFrame], sessions: Sequence[object]) -> dict[str, str]:
    """Per session (ISO date) the data version of everything stored through it: a hash chain,
    ``v(s_i) = sha256(v(s_(i-1)) | rows dated in (s_(i-1), s_i])`` over the bars and corporate-action
    tables (rows before the first session belong to it, rows after the last to none). A changed value
    dated ``d`` therefore changes the version of the session holding ``d`` and of every later one, and of
    no earlier one -- what makes exactly the dependent downstream partitions stale."""
    index = pd.DatetimeIndex([pd.Timestamp(s) for s in sessions]).normalize().astype("datetime64[ns]")
    buckets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in sorted(tables):
        frame = tables[name].sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
        at = np.searchsorted(index.to_numpy(), frame["date"].to_numpy(dtype="datetime64[ns]"), side="left")
        buckets[name] = (at, _rows_digest(frame, TABLES[name]))
    out: dict[str, str] = {}
    previous = b"market_data/1"
    for i, session in enumerate(index):
        h = hashlib.sha256(previous)
        for name, (at, digest) in buckets.items():
            lo, hi = np.searchsorted(at, i, side="left"), np.searchsorted(at, i, side="right")
            h.update(name.encode())
            h.update(np.ascontiguousarray(digest[lo:hi]).tobytes())
        previous = h.digest()
        out[str(session.date())] = h.hexdigest()
    return out


# ------------------------------------------------------------------------------------------ backends
class _Backend(ABC):
    """What :class:`MarketStore` needs from a storage technology."""

    kind: str = "?"
    location: str = "?"

    @abstractmethod
    def load(self, table: str, symbols: Sequence[str], through: pd.Timestamp | None) -> pd.DataFrame:
        ...

    @abstractmethod
    def write(self, table: str, rows: pd.DataFrame, exchanges: Mapping[str, str], replaced: pd.DataFrame) -> None:
        """Store ``rows`` (new and restated ones; ``replaced`` are the restated keys)."""

    @abstractmethod
    def append_log(self, log: pd.DataFrame) -> None:
        ...

    @abstractmethod
    def load_log(self, symbols: Sequence[str] | None) -> pd.DataFrame:
        ...

    @abstractmethod
    def load_info(self, symbols: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        ...

    @abstractmethod
    def put_info(self, info: Mapping[str, Mapping[str, Any]]) -> None:
        ...

    def close(self) -> None:  # a backend with connections closes them
        pass


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _safe_name(symbol: str) -> str:
    if not symbol or any(c in symbol for c in "/\\\x00") or symbol in (".", ".."):
        raise DataSourceError(f"symbol {symbol!r} cannot name a file of the market store; use a plain fund code")
    return symbol


class ParquetBackend(_Backend):
    """``<root>/<table>/<symbol>.parquet`` (sorted by date), ``<root>/symbols/<symbol>.json``,
    ``<root>/restatements/<symbol>.parquet``; every file rewritten atomically."""

    kind = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.location = f"Parquet files under {self.root}"

    def _file(self, table: str, symbol: str) -> Path:
        return self.root / table / f"{_safe_name(symbol)}.parquet"

    def _read(self, path: Path, what: str) -> pd.DataFrame | None:
        if not path.is_file():
            return None
        try:
            return pd.read_parquet(path, engine="pyarrow")
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types for corrupt files
            raise DataSourceError(f"market store file {path} ({what}) is unreadable: {exc}; restore it from a "
                                  f"snapshot or ingest the fund again after deleting it") from None

    def load(self, table: str, symbols: Sequence[str], through: pd.Timestamp | None) -> pd.DataFrame:
        """The funds' files scanned as one Arrow dataset (read concurrently, cut at ``through`` while
        reading), converted to pandas once and sorted by (symbol, date)."""
        import pyarrow as pa
        import pyarrow.dataset as pads

        schema = pa.schema([("symbol", pa.string()), ("date", pa.timestamp("ns")),
                            *[(c, pa.float64()) for c in TABLES[table]]])
        paths = [str(p) for p in (self._file(table, s) for s in sorted(set(symbols))) if p.is_file()]
        if not paths:
            return _empty(table)
        stop = None if through is None else pa.scalar(pd.Timestamp(through).value, pa.int64()).cast(pa.timestamp("ns"))
        try:
            # one scan over the funds' files (read concurrently), cut at ``through`` while reading
            joined = pads.dataset(paths, schema=schema, format="parquet").to_table(
                columns=list(schema.names), filter=None if stop is None else pads.field("date") <= stop)
        except (OSError, pa.ArrowException) as exc:
            raise DataSourceError(f"the market store files of {table} under {self.root} cannot be read ({exc}); "
                                  f"restore the file it names from a snapshot, or delete it and ingest the fund "
                                  f"again") from None
        frame = joined.sort_by([("symbol", "ascending"), ("date", "ascending")]).to_pandas()
        frame["symbol"] = frame["symbol"].astype(object)
        frame["date"] = frame["date"].astype("datetime64[ns]")
        return frame

    def write(self, table: str, rows: pd.DataFrame, exchanges: Mapping[str, str], replaced: pd.DataFrame) -> None:
        for symbol, part in rows.groupby("symbol", sort=True):
            path = self._file(table, str(symbol))
            current = self._read(path, f"{table} of {symbol}")
            frame = part if current is None else pd.concat([current, part], ignore_index=True)
            frame = _keyed(frame, table).drop_duplicates(["symbol", "date"], keep="last").reset_index(drop=True)
            _atomic_parquet(frame, path)

    def append_log(self, log: pd.DataFrame) -> None:
        for symbol, part in log.groupby("symbol", sort=True):
            path = self.root / "restatements" / f"{_safe_name(str(symbol))}.parquet"
            current = self._read(path, f"restatements of {symbol}")
            _atomic_parquet(part if current is None else pd.concat([current, part], ignore_index=True), path)

    def load_log(self, symbols: Sequence[str] | None) -> pd.DataFrame:
        folder = self.root / "restatements"
        paths = ([folder / f"{_safe_name(s)}.parquet" for s in symbols] if symbols is not None
                 else sorted(folder.glob("*.parquet")) if folder.is_dir() else [])
        parts = [f for f in (self._read(p, "restatements") for p in paths) if f is not None]
        return pd.concat(parts, ignore_index=True) if parts else _empty_log()

    def load_info(self, symbols: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        folder = self.root / "symbols"
        paths = ([folder / f"{_safe_name(s)}.json" for s in symbols] if symbols is not None
                 else sorted(folder.glob("*.json")) if folder.is_dir() else [])
        out = {}
        for p in paths:
            if p.is_file():
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
        return out

    def put_info(self, info: Mapping[str, Mapping[str, Any]]) -> None:
        for symbol, entry in info.items():
            _atomic_text(json.dumps(entry, sort_keys=True, default=str), self.root / "symbols" / f"{_safe_name(symbol)}.json")


_MYSQL_TABLES = {BARS: BARS, "adj_factors": "market_adj_factors", "splits": "market_splits",
                 "dividends": "market_dividends"}
_LOG_TABLE = "market_restatements"
_INFO_TABLE = "market_symbols"


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if v != v else float(v) for v in values]


class MySQLBackend(_Backend):
    """Tables in MySQL/MariaDB through :class:`~rotation_platform.storage.mysql.MySQLStore`'s engine,
    transactions and retries."""

    kind = "mysql"

    def __init__(self, url: str, password: str | None = None, *, retry=None):
        from rotation_platform.storage.mysql import MySQLStore

        self.sql = MySQLStore(url, password, retry=retry)
        self.location = f"{self.sql.location} (tables {', '.join(_MYSQL_TABLES.values())})"
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        if self.sql.create_database:
            self.sql._call(self.sql._create_database, "market store: create database")

        def create(cur):
            for table, name in _MYSQL_TABLES.items():
                date_col = "session" if table == BARS else "date"
                extra = "`exchange` VARCHAR(16) NOT NULL, " if table == BARS else ""
                cols = ", ".join(f"`{c}` DOUBLE NULL" for c in TABLES[table])
                cur.execute(f"CREATE TABLE IF NOT EXISTS `{name}` (`symbol` VARCHAR(32) NOT NULL, "
                            f"`{date_col}` DATE NOT NULL, {extra}{cols}, PRIMARY KEY (`symbol`, `{date_col}`)"
                            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{_LOG_TABLE}` (`id` BIGINT NOT NULL AUTO_INCREMENT, "
                        "`table_name` VARCHAR(32) NOT NULL, `symbol` VARCHAR(32) NOT NULL, `session` DATE NOT NULL, "
                        "`field` VARCHAR(32) NOT NULL, `old` DOUBLE NULL, `new` DOUBLE NULL, "
                        "`recorded_at` DATETIME(6) NOT NULL, PRIMARY KEY (`id`), KEY (`symbol`, `session`)"
                        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{_INFO_TABLE}` (`symbol` VARCHAR(32) NOT NULL, "
                        "`info` LONGTEXT NOT NULL, PRIMARY KEY (`symbol`)"
                        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")

        self.sql._run(create, "market store: create tables")
        self._ready = True

    @staticmethod
    def _in(symbols: Sequence[str]) -> str:
        return ", ".join(["%s"] * len(symbols))

    def load(self, table: str, symbols: Sequence[str], through: pd.Timestamp | None) -> pd.DataFrame:
        if not symbols:
            return _empty(table)
        self._ensure()
        name = _MYSQL_TABLES[table]
        date_col = "session" if table == BARS else "date"
        cols = ", ".join(f"`{c}`" for c in TABLES[table])
        q = f"SELECT `symbol`, `{date_col}`, {cols} FROM `{name}` WHERE `symbol` IN ({self._in(symbols)})"
        args: list[Any] = list(symbols)
        if through is not None:
            q += f" AND `{date_col}` <= %s"
            args.append(pd.Timestamp(through).date())
        q += f" ORDER BY `symbol`, `{date_col}`"

        def fetch(cur):
            cur.execute(q, args)
            return cur.fetchall()

        rows = self.sql._run(fetch, f"market store: read {table}")
        if not rows:
            return _empty(table)
        frame = pd.DataFrame(list(rows), columns=["symbol", "date", *TABLES[table]])
        for c in TABLES[table]:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(np.float64)
        return _keyed(frame, table)

    def write(self, table: str, rows: pd.DataFrame, exchanges: Mapping[str, str], replaced: pd.DataFrame) -> None:
        if rows.empty:
            return
        self._ensure()
        name = _MYSQL_TABLES[table]
        date_col = "session" if table == BARS else "date"
        values = list(TABLES[table])
        cols = ["symbol", date_col, *(["exchange"] if table == BARS else []), *values]
        update = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in cols[2:])
        q = (f"INSERT INTO `{name}` ({', '.join(f'`{c}`' for c in cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
             f"ON DUPLICATE KEY UPDATE {update}")
        dates = [d.date() for d in pd.DatetimeIndex(rows["date"])]
        columns = [_nan_to_none(rows[c].to_numpy(dtype=np.float64)) for c in values]
        symbols = rows["symbol"].astype(str).tolist()
        args = [(s, d, *([exchanges.get(s, "")] if table == BARS else []), *(col[i] for col in columns))
                for i, (s, d) in enumerate(zip(symbols, dates))]

        def insert(cur):
            for i in range(0, len(args), 5000):
                cur.executemany(q, args[i:i + 5000])

        self.sql._run(insert, f"market store: write {len(args)} rows of {table}")

    def append_log(self, log: pd.DataFrame) -> None:
        if log.empty:
            return
        self._ensure()
        q = (f"INSERT INTO `{_LOG_TABLE}` (`table_name`, `symbol`, `session`, `field`, `old`, `new`, `recorded_at`) "
             "VALUES (%s, %s, %s, %s, %s, %s, %s)")
        args = [(r.table, r.symbol, pd.Timestamp(r.session).date(), r.field, None if r.old != r.old else float(r.old),
                 None if r.new != r.new else float(r.new), pd.Timestamp(r.recorded_at).to_pydatetime())
                for r in log.itertuples(index=False)]
        self.sql._run(lambda cur: cur.executemany(q, args), "market store: log restatements")

    def load_log(self, symbols: Sequence[str] | None) -> pd.DataFrame:
        self._ensure()
        q = f"SELECT `table_name`, `symbol`, `session`, `field`, `old`, `new`, `recorded_at` FROM `{_LOG_TABLE}`"
        args: list[Any] = []
        if symbols is not None:
            if not symbols:
                return _empty_log()
            q += f" WHERE `symbol` IN ({self._in(symbols)})"
            args = list(symbols)
        q += " ORDER BY `id`"

        def fetch(cur):
            cur.execute(q, args)
            return cur.fetchall()

        rows = self.sql._run(fetch, "market store: read restatements")
        if not rows:
            return _empty_log()
        frame = pd.DataFrame(list(rows), columns=list(LOG_COLUMNS))
        frame["session"] = pd.to_datetime(frame["session"]).astype("datetime64[ns]")
        frame["recorded_at"] = pd.to_datetime(frame["recorded_at"]).astype("datetime64[ns]")
        for c in ("old", "new"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(np.float64)
        return frame

    def load_info(self, symbols: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        self._ensure()
        q = f"SELECT `symbol`, `info` FROM `{_INFO_TABLE}`"
        args: list[Any] = []
        if symbols is not None:
            if not symbols:
                return {}
            q += f" WHERE `symbol` IN ({self._in(symbols)})"
            args = list(symbols)

        def fetch(cur):
            cur.execute(q, args)
            return cur.fetchall()

        return {str(s): json.loads(text) for s, text in self.sql._run(fetch, "market store: read symbols")}

    def put_info(self, info: Mapping[str, Mapping[str, Any]]) -> None:
        if not info:
            return
        self._ensure()
        q = f"INSERT INTO `{_INFO_TABLE}` (`symbol`, `info`) VALUES (%s, %s) ON DUPLICATE KEY UPDATE `info` = VALUES(`info`)"
        args = [(s, json.dumps(v, sort_keys=True, default=str)) for s, v in info.items()]
        self.sql._run(lambda cur: cur.executemany(q, args), "market store: write symbols")

    def close(self) -> None:
        self.sql.close()


class InfluxBackend(_Backend):
    """Bars as points of measurement ``daily_bars`` in InfluxDB (the transport, batching and retries of
    :class:`~rotation_platform.storage.influx.InfluxStore`); corporate actions, the restatement log and
    the symbols in ``tables`` (a :class:`MySQLBackend`)."""

    kind = "influxdb"

    def __init__(self, transport, tables: MySQLBackend, *, retry=None):
        from rotation_platform.storage.influx import InfluxStore

        self.influx = InfluxStore(transport, retry=retry)
        self.transport = transport
        self.tables = tables
        self.location = f"{self.influx.location} measurement {BARS} + {tables.sql.location} (tables)"

    def load(self, table: str, symbols: Sequence[str], through: pd.Timestamp | None) -> pd.DataFrame:
        if table != BARS:
            return self.tables.load(table, symbols, through)
        import pyarrow as pa

        from rotation_platform.storage.influx import FIELD_N, Column

        if not symbols:
            return _empty(BARS)
        columns = [Column("symbol", "tag", pa.string()), Column(FIELD_N, "field", pa.int64()),
                   *[Column(c, "field", pa.float64()) for c in BAR_FIELDS]]
        stop = (pd.Timestamp(through).normalize().value + _NS_PER_DAY) if through is not None else 2**62
        answer = self.influx._call(
            lambda: self.transport.select(BARS, {}, columns, False, time_range=(-2**62, stop),
                                          any_of=("symbol", list(symbols))), f"read {BARS}")
        if answer.num_rows == 0:
            return _empty(BARS)
        frame = pd.DataFrame({"symbol": answer.column("symbol").to_pylist(),
                              "date": pd.to_datetime(answer.column("time").to_numpy(), unit="ns")})
        for c in BAR_FIELDS:
            frame[c] = answer.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        return _keyed(frame, BARS)

    def write(self, table: str, rows: pd.DataFrame, exchanges: Mapping[str, str], replaced: pd.DataFrame) -> None:
        if table != BARS:
            self.tables.write(table, rows, exchanges, replaced)
            return
        if rows.empty:
            return
        import pyarrow as pa

        from rotation_platform.storage.influx import InfluxLayout, quote_ident, quote_literal

        action = f"write {len(rows)} bars to {BARS}"
        self.influx._ensure_database(action)
        # a restated bar whose new value is missing: InfluxDB cannot remove one field of a point, so the
        # point goes first (v1 DELETE by series and time), then the new one is written
        gone = replaced[replaced[list(BAR_FIELDS)].isna().any(axis=1)] if len(replaced) else replaced
        if len(gone) and not hasattr(self.transport, "_series"):
            r = gone.iloc[0]
            raise DataSourceError(f"{self.location}: a restated bar of {r['symbol']} on {pd.Timestamp(r['date']).date()} "
                                  f"loses a value, which needs InfluxQL DELETE (the v1 HTTP API); connect with "
                                  f"InfluxV1Transport")
        for r in gone.itertuples(index=False):
            q = (f"DELETE FROM {quote_ident(BARS)} WHERE {quote_ident('symbol')} = {quote_literal(str(r.symbol))} "
                 f"AND time = {pd.Timestamp(r.date).value}")
            self.influx._call(lambda q=q: self.transport._series(q, post=True), f"{action}: delete restated point")
        table_ = pa.table({
            "time": pa.array(pd.DatetimeIndex(rows["date"]).astype("datetime64[ns]").to_numpy(), pa.timestamp("ns")),
            "symbol": pa.array(rows["symbol"].astype(str).tolist(), pa.string()),
            "exchange": pa.array([exchanges.get(s, "") or "-" for s in rows["symbol"].astype(str)], pa.string()),
            **{c: pa.array(rows[c].to_numpy(dtype=np.float64), pa.float64()) for c in BAR_FIELDS}})
        n = len(BAR_FIELDS)
        layout = InfluxLayout(BARS, 0, (1, 2), tuple(range(3, 3 + n)), ("time", "symbol", "exchange", *BAR_FIELDS),
                              ("integer", "string", "string", *["float"] * n), False)
        self.influx._send(table_, layout, {}, action)

    def append_log(self, log: pd.DataFrame) -> None:
        self.tables.append_log(log)

    def load_log(self, symbols: Sequence[str] | None) -> pd.DataFrame:
        return self.tables.load_log(symbols)

    def load_info(self, symbols: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        return self.tables.load_info(symbols)

    def put_info(self, info: Mapping[str, Mapping[str, Any]]) -> None:
        self.tables.put_info(info)

    def close(self) -> None:
        self.influx.close()
        self.tables.close()


# -------------------------------------------------------------------------------------------- store
class MarketStore:
    """Bars and corporate actions behind one interface (see the module docstring)."""

    def __init__(self, backend: _Backend):
        self.backend = backend

    def __repr__(self) -> str:
        return f"MarketStore({self.location!r})"

    @property
    def location(self) -> str:
        """Where the data lives (no secret: URLs are stored without passwords)."""
        return self.backend.location

    @property
    def kind(self) -> str:
        return self.backend.kind

    # ---------------------------------------------------------------------------------- writes
    def _upsert_table(self, table: str, incoming: pd.DataFrame, exchanges: Mapping[str, str]) -> UpsertResult:
        symbols = sorted(set(incoming["symbol"].astype(str)))
        if incoming.empty:
            return UpsertResult(symbols=tuple(symbols), by_table={table: {"new": 0, "unchanged": 0, "restated": 0}})
        existing = self.backend.load(table, symbols, None)
        new, restated, same_dates, values = _diff(table, existing, incoming)
        unchanged = len(same_dates)
        rows = pd.concat([new, restated], ignore_index=True)
        if len(rows):
            self.backend.write(table, rows, exchanges, restated)
        if values:
            self.backend.append_log(_log_frame(values, pd.Timestamp.now(tz="UTC").tz_localize(None)))
        dates = ({"new": new["date"].to_numpy(dtype="datetime64[ns]"), "unchanged": same_dates,
                  "restated": restated["date"].to_numpy(dtype="datetime64[ns]")} if table == BARS else {})
        return UpsertResult(len(new), unchanged, len(restated), tuple(values), tuple(symbols),
                            {table: {"new": len(new), "unchanged": unchanged, "restated": len(restated)}}, dates)

    def upsert(self, exchange: str, bars: pd.DataFrame) -> UpsertResult:
        """Store ``bars`` (long: ``symbol, date`` or ``session``, :data:`BAR_FIELDS`; ``adj_factor`` may be
        absent) of funds listed on ``exchange`` (a calendar code). Idempotent; see the module docstring."""
        frame = bars.rename(columns={"session": "date"}) if "session" in bars.columns else bars
        lacking = [c for c in ("symbol", "date", *BAR_FIELDS[:-1]) if c not in frame.columns]
        if lacking:
            raise DataSourceError(f"bars to store lack the column(s) {lacking}; give symbol, date and {list(BAR_FIELDS)}")
        if frame["symbol"].isna().any():
            i = int(np.flatnonzero(frame["symbol"].isna().to_numpy())[0])
            raise PriceDataError(f"bar {i + 1} of the batch has no symbol", date=frame["date"].iloc[i],
                                 hint="give every bar the fund code it belongs to")
        incoming = _keyed(frame, BARS)
        if incoming["date"].isna().any():
            s = incoming.loc[incoming["date"].isna(), "symbol"].iloc[0]
            raise PriceDataError("a bar without a session date cannot be stored", symbol=str(s),
                                 hint="give every bar its session date")
        dup = incoming.duplicated(["symbol", "date"], keep=False)
        if dup.any():
            r = incoming[dup].iloc[0]
            raise PriceDataError(f"{int(dup.sum())} bars share a (symbol, session) key", symbol=str(r["symbol"]),
                                 date=r["date"], hint="keep one bar per fund and session")
        values = incoming[list(BAR_FIELDS)].to_numpy(dtype=np.float64)
        if np.isinf(values).any():
            i = int(np.flatnonzero(np.isinf(values).any(axis=1))[0])
            raise PriceDataError("an infinite value cannot be a price, volume or amount", symbol=str(incoming["symbol"].iloc[i]),
                                 date=incoming["date"].iloc[i], hint="blank or correct the value")
        symbols = sorted(set(incoming["symbol"]))
        info = self.backend.load_info(symbols)
        for s in symbols:
            known = info.get(s, {}).get("exchange")
            if known and known != exchange:
                raise DataSourceError(f"symbol {s} is stored as listed on {known}, these bars say {exchange}; a fund "
                                      f"has one exchange in the market store (pools[].calendar)")
        result = self._upsert_table(BARS, incoming, {s: exchange for s in symbols})
        self._touch(symbols, exchange, result, info)
        return result

    def upsert_actions(self, actions: CorporateActions, symbols: Sequence[str]) -> UpsertResult:
        """Store the corporate actions of ``symbols`` (factors, splits, dividends) the same idempotent way."""
        result = UpsertResult(symbols=tuple(symbols))
        info = self.backend.load_info(list(symbols))
        for table, frame in _actions_tables(actions, symbols).items():
            result = result + self._upsert_table(table, frame, {})
        self._touch(list(symbols), None, result, info)
        return result

    def _touch(self, symbols: Sequence[str], exchange: str | None, result: UpsertResult,
               info: Mapping[str, Mapping[str, Any]]) -> None:
        """New revision tokens for the funds a write changed (the read cache keys on them)."""
        changed = {r.symbol for r in result.restatements}
        if result.new:
            changed |= set(symbols)
        updates = {}
        for s in symbols:
            entry = dict(info.get(s, {}))
            if exchange is not None and not entry.get("exchange"):
                entry["exchange"] = exchange
                changed.add(s)
            if s in changed:
                entry["revision"] = uuid.uuid4().hex
                updates[s] = entry
        self.backend.put_info(updates)

    def put_provenance(self, provenance: Mapping[str, Mapping[str, Any]]) -> None:
        """Record per fund where its bars came from (file, layout, volume unit, factor file); the
        revision and exchange stay."""
        info = self.backend.load_info(list(provenance))
        updates = {}
        for s, p in provenance.items():
            entry = dict(info.get(s, {}))
            if entry.get("origin") != dict(p):
                entry["origin"] = dict(p)
                updates[s] = entry
        self.backend.put_info(updates)

    def ingest(self, exchange: str, raw: Mapping[str, RawPrices], actions: CorporateActions,
               provenance: Mapping[str, object] | None = None) -> UpsertResult:
        """Store what a source returned: its bars, its corporate actions and where they came from."""
        symbols = list(raw)
        result = self.upsert(exchange, bars_from_raw(raw, actions))
        result = result + self.upsert_actions(actions, symbols)
        provenance = dict(provenance or {})
        factor_files = set(provenance.get("factor_files") or ())
        origin = {}
        for s, rec in raw.items():
            meta = dict(rec.meta or {})
            origin[s] = {"source": provenance.get("source"), "file": rec.file, "layout": rec.layout,
                         "amount_present": meta.get("amount_present"),
                         "volume_unit_shares": meta.get("volume_unit_shares"),
                         "factor_file": f"{s}_hfq_factor.csv" if f"{s}_hfq_factor.csv" in factor_files else None}
        self.put_provenance(origin)
        return result

    # ----------------------------------------------------------------------------------- reads
    def bars(self, symbols: Sequence[str], through: object = None) -> pd.DataFrame:
        """The stored bars of ``symbols`` through ``through`` (inclusive; None: all), long and sorted."""
        return self.backend.load(BARS, list(symbols), None if through is None else pd.Timestamp(through).normalize())

    def info(self, symbols: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        return self.backend.load_info(None if symbols is None else list(symbols))

    def symbols(self) -> list[str]:
        return sorted(self.backend.load_info(None))

    def restatements(self, symbols: Sequence[str] | None = None) -> pd.DataFrame:
        """The restatement log (``table, symbol, session, field, old, new, recorded_at``)."""
        return self.backend.load_log(None if symbols is None else list(symbols))

    def version(self, symbols: Sequence[str], through: object = None) -> str:
        """Hash of the stored bars of ``symbols`` through ``through``: changes exactly when a bar does."""
        return bars_hash(self.bars(symbols, through))

    def tables(self, symbols: Sequence[str], through: object = None) -> dict[str, pd.DataFrame]:
        """Every stored table (bars and corporate actions) of ``symbols`` through ``through``, long."""
        stop = None if through is None else pd.Timestamp(through).normalize()
        return {name: self.backend.load(name, list(symbols), stop) for name in TABLES}

    def session_versions(self, symbols: Sequence[str], sessions: Sequence[object]) -> dict[str, str]:
        """The data version of each session (see :func:`session_versions`) of the stored ``symbols``."""
        if not len(sessions):
            return {}
        return session_versions(self.tables(symbols, max(pd.Timestamp(s) for s in sessions)), sessions)

    def corporate_actions(self, symbols: Sequence[str], through: object = None) -> CorporateActions:
        symbols = [str(s) for s in symbols]
        stop = None if through is None else pd.Timestamp(through).normalize()
        factors_long = self.backend.load("adj_factors", symbols, stop)
        factors = {}
        for s in symbols:
            part = factors_long[factors_long["symbol"] == s]
            if len(part):
                factors[s] = pd.Series(part["hfq_factor"].to_numpy(dtype=np.float64),
                                       index=pd.DatetimeIndex(part["date"].to_numpy(), name="date"), name=s)
        kwargs: dict[str, object] = {"factors": factors}
        for table, column in (("splits", "ratio"), ("dividends", "cash")):
            frame = self.backend.load(table, symbols, stop)
            if len(frame):
                out = pd.DataFrame({"symbol": frame["symbol"].to_numpy(),
                                    "date": frame["date"].to_numpy(dtype="datetime64[ns]"),
                                    column: frame[column].to_numpy(dtype=np.float64)})
                out["symbol"] = out["symbol"].astype(object)    # as the file sources give it
                kwargs[table] = out
        return CorporateActions(**kwargs)  # type: ignore[arg-type]

    def read(self, symbols: Sequence[str], through: object = None) -> tuple[dict[str, RawPrices], CorporateActions]:
        """The stored history of ``symbols`` as a source returns it: raw records per fund (sorted by
        session, ``line`` the 1-based row) and the corporate actions. A fund with no stored bar raises
        :class:`DataSourceError` naming it."""
        symbols = [str(s) for s in symbols]
        bars = self.bars(symbols, through)
        info = self.info(symbols)
        return records_from_bars(bars, symbols, info, self.location), self.corporate_actions(symbols, through)

    def close(self) -> None:
        self.backend.close()


def records_from_bars(bars: pd.DataFrame, symbols: Sequence[str], info: Mapping[str, Mapping[str, Any]],
                      location: str) -> dict[str, RawPrices]:
    """Per-fund :class:`RawPrices` of a long bars frame (see :meth:`MarketStore.read`)."""
    out: dict[str, RawPrices] = {}
    groups = {str(s): g for s, g in bars.groupby("symbol", sort=False)}
    lacking = [s for s in symbols if s not in groups]
    if lacking:
        raise DataSourceError(f"the market store ({location}) holds no bar for {lacking}; materialise the "
                              f"market_data asset for a session (or set data.history: source)")
    for s in symbols:
        g = groups[s]
        frame = pd.DataFrame({"date": g["date"].to_numpy(dtype="datetime64[ns]")})
        for c in BAR_FIELDS[:-1]:
            frame[c] = g[c].to_numpy(dtype=np.float64)
        frame["line"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        origin = dict(info.get(s, {}).get("origin") or {})
        meta = {"layout": origin.get("layout") or "market_store", "rows": int(len(frame)),
                "sha256": bars_hash(g), "amount_present": origin.get("amount_present"),
                "volume_unit_shares": origin.get("volume_unit_shares"), "order": "oldest_first",
                "first": str(frame["date"].iloc[0].date()), "last": str(frame["date"].iloc[-1].date()),
                "stored_in": location, "revision": info.get(s, {}).get("revision"), "origin": origin}
        out[s] = RawPrices(symbol=s, frame=frame, file=origin.get("file"), layout=meta["layout"], meta=meta)
    return out


def open_market_store(storage: Any, *, retry=None) -> MarketStore:
    """The market store of a ``StorageConfig``: Parquet under ``<data_dir>/market_data`` (``local``),
    MySQL tables (``mysql``), or InfluxDB bars with MySQL tables (``influxdb``). Secrets come from the
    configuration's secret fields, which the loader fills from the environment only."""
    def secret(v):
        return None if v is None else v.get_secret_value()

    if storage.backend == "local":
        return MarketStore(ParquetBackend(Path(storage.data_dir) / MARKET_FOLDER))
    tables = MySQLBackend(storage.mysql_url, secret(storage.mysql_password), retry=retry)
    if storage.backend == "mysql":
        return MarketStore(tables)
    if storage.backend == "influxdb":
        from rotation_platform.storage.influx import InfluxV1Transport

        transport = InfluxV1Transport(storage.influx_url, storage.influx_database, username=storage.influx_username,
                                      password=secret(storage.influx_password), token=secret(storage.influx_token))
        return MarketStore(InfluxBackend(transport, tables, retry=retry))
    raise DataSourceError(f"unknown storage.backend {storage.backend!r} for the market store; use local, influxdb or mysql")


def calendar_symbols(config: Any, calendar: str) -> list[str]:
    """Every configured fund of the pools on ``calendar``, in configuration order, once each."""
    return list(dict.fromkeys(s for p in config.pools if p.calendar == calendar for s in p.symbols))


def _through(raw: Mapping[str, RawPrices], actions: CorporateActions, through: pd.Timestamp
             ) -> tuple[dict[str, RawPrices], CorporateActions]:
    """The records and actions dated on or before ``through`` (a session's partition stores nothing of later
    sessions)."""
    cut = {}
    for s, rec in raw.items():
        keep = (pd.to_datetime(rec.frame["date"]) <= through).to_numpy()
        cut[s] = RawPrices(symbol=rec.symbol, frame=rec.frame[keep].reset_index(drop=True), file=rec.file,
                           layout=rec.layout, meta=rec.meta, actions=rec.actions)
    factors = {s: f[pd.DatetimeIndex(f.index) <= through] for s, f in actions.factors.items()}
    return cut, CorporateActions(factors=factors,
                                 splits=actions.splits[actions.splits["date"] <= through].reset_index(drop=True),
                                 dividends=actions.dividends[actions.dividends["date"] <= through]
                                 .reset_index(drop=True))


def ingest_from_source(store: MarketStore, config: Any, calendar: str, through: object,
                       source: Any = None) -> UpsertResult:
    """Read every configured fund of ``calendar`` from the configured source (``data.source``; or
    ``source``) and upsert its bars and corporate actions dated through ``through`` into ``store``."""
    from rotation_platform.data.sources import make_source

    stop = pd.Timestamp(through).normalize()
    symbols = calendar_symbols(config, calendar)
    if not symbols:
        raise DataSourceError(f"no configured pool is on calendar {calendar}; nothing to ingest")
    source = source if source is not None else make_source(config, end=stop.date())
    raw = dict(source.read(symbols))
    lacking = [s for s in symbols if s not in raw]
    if lacking:
        raise DataSourceError(f"source {source.name!r} returned no records for {lacking}")
    actions = source.corporate_actions(symbols)
    raw, actions = _through(raw, actions, stop)
    return store.ingest(calendar, raw, actions, source.describe())
