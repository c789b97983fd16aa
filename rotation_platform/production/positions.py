"""Actual positions of a pool: what a fund team really holds, so orders are target minus actual.

Layout (one table per pool and session, the holdings after the close of that session)
-----------------------------------------------------------------------------------
A CSV or Parquet file ``<positions.directory>/<POOL>/<YYYY-MM-DD>.csv`` (or ``.parquet``), or the same
table stored in the configured store under the asset ``positions`` and the partition
``pool=<POOL>, session=<YYYY-MM-DD>`` (``python -m jobs.positions put`` writes it there):

========  =====================================================================================
column    meaning
========  =====================================================================================
symbol    a fund of the pool (as in the configuration), or ``CASH`` for the cash line
shares    shares held (whole shares, >= 0); for ``CASH``: leave empty or 0
cash      only on the ``CASH`` row: the cash balance in the pool's currency (>= 0); empty elsewhere
========  =====================================================================================

Example::

    symbol,shares,cash
    510300,120000,
    512800,300000,
    CASH,,845210.37

Every fund of the pool not listed is held at 0 shares. A file without a ``CASH`` row is refused (cash
is half of the book). Errors name the file, the row's symbol and what to do.

Only the table of the decided session itself is used: positions of an earlier session are stale, and
the run then sizes its orders on the simulated book and says so (the latest file found is named).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.errors import PositionsError

__all__ = ["CASH_SYMBOL", "POSITIONS_ASSET", "ActualPositions", "parse_positions", "read_positions_file",
           "DirectoryPositions", "StorePositions", "positions_path", "positions_provider"]

CASH_SYMBOL = "CASH"
POSITIONS_ASSET = ("positions",)
_COLUMNS = ("symbol", "shares", "cash")


@dataclass(frozen=True)
class ActualPositions:
    """Shares per fund and cash of one pool after the close of ``session``; ``source`` says where from."""

    pool: str
    session: pd.Timestamp
    shares: dict[str, float]
    cash: float
    source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def shares_array(self, symbols: tuple[str, ...] | list[str]) -> np.ndarray:
        return np.array([float(self.shares.get(s, 0.0)) for s in symbols], dtype=np.float64)

    def to_frame(self) -> pd.DataFrame:
        """The table in the documented layout (for storing)."""
        rows = [{"symbol": s, "shares": float(q), "cash": np.nan} for s, q in self.shares.items()]
        rows.append({"symbol": CASH_SYMBOL, "shares": np.nan, "cash": float(self.cash)})
        return pd.DataFrame(rows, columns=list(_COLUMNS))


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if not text:
            return None
        value = text
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    return None if math.isnan(out) else out


def parse_positions(frame: pd.DataFrame, *, pool: str, session: object, symbols: tuple[str, ...] | list[str],
                    source: str) -> ActualPositions:
    """Validate a positions table (see the module docstring) against the pool's funds."""
    where = f"positions {source}"
    cols = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("symbol", "shares") if c not in cols]
    if missing:
        raise PositionsError(f"{where}: missing column(s) {missing}; the layout is symbol,shares,cash "
                             f"(see docs/orders.md)")
    extra = [c for c in cols if c not in _COLUMNS]
    if extra:
        raise PositionsError(f"{where}: unknown column(s) {extra}; the layout is symbol,shares,cash")
    table = frame.copy()
    table.columns = cols
    if "cash" not in table.columns:
        table["cash"] = np.nan
    known = set(str(s) for s in symbols)
    shares: dict[str, float] = {}
    cash: float | None = None
    for n, rec in enumerate(table.to_dict(orient="records"), start=2):
        symbol = str(rec["symbol"]).strip() if rec["symbol"] is not None else ""
        if symbol.endswith(".0") and symbol[:-2].isdigit():
            symbol = symbol[:-2]
        if symbol.isdigit() and len(symbol) < 6 and any(len(s) == 6 and s.isdigit() for s in known):
            symbol = symbol.zfill(6)  # a spreadsheet dropped the leading zeros of a fund code
        try:
            q = _number(rec["shares"])
            c = _number(rec["cash"])
        except ValueError as exc:
            raise PositionsError(f"{where}, row {n} ({symbol or 'no symbol'}): {exc}; give whole shares and "
                                 f"cash in the pool's currency") from None
        if symbol.upper() == CASH_SYMBOL:
            if cash is not None:
                raise PositionsError(f"{where}: more than one {CASH_SYMBOL} row; give the cash balance once")
            if c is None or c < 0:
                raise PositionsError(f"{where}, row {n}: the {CASH_SYMBOL} row needs the cash balance (the pool's currency, >= 0) "
                                     f"in the cash column")
            cash = c
            continue
        if not symbol:
            raise PositionsError(f"{where}, row {n}: empty symbol; every row names a fund of pool {pool} or "
                                 f"{CASH_SYMBOL}")
        if symbol not in known:
            raise PositionsError(f"{where}, row {n}: {symbol} is not a fund of pool {pool}; remove the row or "
                                 f"add the fund to the pool's symbols")
        if symbol in shares:
            raise PositionsError(f"{where}, row {n}: {symbol} is listed twice; give one row per fund")
        if c is not None and c != 0:
            raise PositionsError(f"{where}, row {n} ({symbol}): cash belongs on the {CASH_SYMBOL} row only")
        if q is None or q < 0 or q != math.floor(q):
            raise PositionsError(f"{where}, row {n} ({symbol}): shares must be a whole number >= 0, got "
                                 f"{rec['shares']!r}")
        shares[symbol] = float(q)
    if cash is None:
        raise PositionsError(f"{where}: no {CASH_SYMBOL} row; add 'CASH,,<cash in the pool's currency>' (0 when fully invested)")
    return ActualPositions(pool, pd.Timestamp(session).normalize(), shares, float(cash), source)


def read_positions_file(path: str | Path, *, pool: str, session: object,
                        symbols: tuple[str, ...] | list[str]) -> ActualPositions:
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except FileNotFoundError:
        raise PositionsError(f"positions file {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise PositionsError(f"positions file {path} cannot be read ({type(exc).__name__}: {exc}); it must be "
                             f"a CSV or Parquet table with columns symbol,shares,cash") from None
    return parse_positions(frame, pool=pool, session=session, symbols=symbols, source=str(path))


def positions_path(directory: Path, pool: str, session: object) -> list[Path]:
    """The candidate files of a pool and session (CSV, then Parquet)."""
    day = pd.Timestamp(session).strftime("%Y-%m-%d")
    return [Path(directory) / pool / f"{day}.csv", Path(directory) / pool / f"{day}.parquet"]


@dataclass(frozen=True)
class DirectoryPositions:
    """Positions files under ``directory`` (see the module docstring)."""

    directory: Path

    def __call__(self, pool: str, session: object, symbols: tuple[str, ...] | list[str]) -> ActualPositions | None:
        for path in positions_path(self.directory, pool, session):
            if path.exists():
                return read_positions_file(path, pool=pool, session=session, symbols=symbols)
        return None

    def latest_before(self, pool: str, session: object) -> str | None:
        """The latest positions file dated before ``session`` (to name a stale book), or None."""
        folder = Path(self.directory) / pool
        if not folder.is_dir():
            return None
        t = pd.Timestamp(session)
        dated = []
        for p in folder.iterdir():
            try:
                day = dt.date.fromisoformat(p.stem)
            except ValueError:
                continue
            if p.suffix.lower() in (".csv", ".parquet") and pd.Timestamp(day) < t:
                dated.append((day, p))
        return str(max(dated)[1]) if dated else None


@dataclass(frozen=True)
class StorePositions:
    """Positions tables kept in a store under ``positions`` / ``pool=<POOL>, session=<YYYY-MM-DD>``."""

    store: object  # rotation_platform.storage.base.Store

    def __call__(self, pool: str, session: object, symbols: tuple[str, ...] | list[str]) -> ActualPositions | None:
        from rotation_platform.storage.base import Partition
        from rotation_platform.storage.errors import StorageNotFoundError

        day = pd.Timestamp(session).strftime("%Y-%m-%d")
        try:
            frame = self.store.read(POSITIONS_ASSET, Partition.multi({"pool": pool, "session": day}))  # type: ignore[attr-defined]
        except StorageNotFoundError:
            return None
        if not isinstance(frame, pd.DataFrame):
            raise PositionsError(f"positions {pool}|{day} in the store is a {type(frame).__name__}, not a table "
                                 f"symbol,shares,cash; write it again with python -m jobs.positions put")
        return parse_positions(frame, pool=pool, session=session, symbols=symbols,
                               source=f"store positions {pool}|{day}")

    def put(self, positions: ActualPositions) -> None:
        from rotation_platform.storage.base import Partition

        day = positions.session.strftime("%Y-%m-%d")
        self.store.write(POSITIONS_ASSET, Partition.multi({"pool": positions.pool, "session": day}),  # type: ignore[attr-defined]
                         positions.to_frame())


def positions_provider(config: object, store: object | None = None):
    """The configured source of actual positions (``positions.source``), or None for the simulated book."""
    cfg = config.positions  # type: ignore[attr-defined]
    if cfg.source == "directory":
        return DirectoryPositions(Path(cfg.directory))
    if cfg.source == "store":
        if store is None:
            raise PositionsError("positions.source is 'store' but no store was given to read them from")
        return StorePositions(store)
    return None

