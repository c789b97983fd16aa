"""Copy historical prices from a MySQL table to InfluxDB: batched, resumable, validated.

* Source: a MySQL/MariaDB table with one row per fund and day (:class:`PriceTable` names the table,
  the symbol and date columns and the price columns; every name is checked against the table's real
  columns in ``information_schema`` before it is used in SQL).
* Target: one InfluxDB measurement (default ``prices_history``), tag ``symbol`` (plus ``pool`` when
  a symbol-to-pool map is given), float fields, timestamp = the day at 00:00 UTC. Points are
  deterministic (same row -> same series and time), so writing a batch twice overwrites it: a resumed
  or repeated migration never duplicates a point.
* Batches are read by keyset pagination on ``(symbol, date)`` and written as gzip-compressed line
  protocol; after each batch the server acknowledged, a JSON checkpoint (atomic write) records the
  last key. :func:`migrate_prices` resumes from it; a checkpoint of another source, table or
  target is refused.
* :func:`validate_migration` compares row counts and checksums per fund and year between the two
  servers and returns a :class:`ValidationReport`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from rotation_platform.data.panel import PRICE_FIELDS
from rotation_platform.storage.base import ProgressCallback, RetryPolicy, call_with_retries
from rotation_platform.storage.errors import StorageError, StorageInputError
from rotation_platform.storage.files import atomic_write_bytes
from rotation_platform.storage.influx import Column, InfluxTransport, escape_tag, influx_transient
from rotation_platform.storage.mysql import ident, mysql_transient

__all__ = ["PriceTable", "MigrationResult", "ValidationReport", "migrate_prices", "validate_migration",
           "row_digest"]

_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class PriceTable:
    """A MySQL table of daily prices: ``fields`` maps target field names to source columns."""

    table: str = "etf_daily"
    symbol: str = "symbol"
    date: str = "trade_date"
    fields: Mapping[str, str] = field(default_factory=lambda: {f: f for f in PRICE_FIELDS})

    def fingerprint(self) -> dict[str, Any]:
        return {"table": self.table, "symbol": self.symbol, "date": self.date, "fields": dict(self.fields)}


@dataclass(frozen=True)
class MigrationResult:
    rows_read: int
    points_written: int
    rows_without_values: int
    batches: int
    resumed_from: tuple[str, str] | None
    seconds: float
    finished: bool

    def as_dict(self) -> dict[str, Any]:
        return {"rows_read": self.rows_read, "points_written": self.points_written,
                "rows_without_values": self.rows_without_values, "batches": self.batches,
                "resumed_from": list(self.resumed_from) if self.resumed_from else None,
                "seconds": round(self.seconds, 3), "finished": self.finished}


@dataclass(frozen=True)
class ValidationReport:
    """Per fund and year: rows and checksums on both sides. ``ok`` when every line matches."""

    table: pd.DataFrame

    @property
    def ok(self) -> bool:
        return bool(len(self.table) and self.table["ok"].all())

    @property
    def mismatches(self) -> pd.DataFrame:
        return self.table[~self.table["ok"]]

    def summary(self) -> dict[str, Any]:
        t = self.table
        return {"ok": self.ok, "funds": int(t["symbol"].nunique()) if len(t) else 0, "fund_years": len(t),
                "source_rows": int(t["source_rows"].sum()) if len(t) else 0,
                "target_rows": int(t["target_rows"].sum()) if len(t) else 0,
                "mismatched_fund_years": int((~t["ok"]).sum()) if len(t) else 0}


# --------------------------------------------------------------------------------------- helpers
def row_digest(day: dt.date, values: Sequence[float | None]) -> bytes:
    """The bytes a row contributes to a fund-year checksum: ISO date and each value's ``repr``
    (``None`` for missing), so both sides hash the same text for the same numbers."""
    return (day.isoformat() + "|" + "|".join("None" if v is None or (isinstance(v, float) and np.isnan(v))
                                             else repr(float(v)) for v in values) + "\n").encode()


def _day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


class _Source:
    def __init__(self, url: str, password: str | None, table: PriceTable, retry: RetryPolicy, logger: Any):
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.password:
            raise StorageInputError("MySQL URL carries a password; pass it from the environment instead")
        self.url = parsed.set(drivername="mysql+pymysql", password=password or None)
        self.location = f"MySQL {parsed.host or 'localhost'}:{parsed.port or 3306}/{parsed.database}"
        self.database = parsed.database
        self.table = table
        self.retry = retry
        self.logger = logger
        self._engine = None

    def _call(self, fn, action: str):
        return call_with_retries(fn, policy=self.retry, transient=mysql_transient, server=self.location,
                                 action=action, logger=self.logger)

    @property
    def engine(self):
        if self._engine is None:
            import sqlalchemy as sa

            self._engine = sa.create_engine(self.url, pool_pre_ping=True,
                                            connect_args={"connect_timeout": 5, "charset": "utf8mb4"})
        return self._engine

    def _fetch(self, sql: str, params: tuple, action: str) -> list[tuple]:
        def run():
            conn = self.engine.raw_connection()
            try:
                cur = conn.cursor()
                cur.execute(sql, params)
                rows = cur.fetchall()
                conn.commit()
                conn.close()
                return rows
            except BaseException:
                try:
                    conn.invalidate()
                except Exception:  # noqa: BLE001 - the connection is being thrown away
                    pass
                raise

        return self._call(run, action)

    def check_columns(self) -> None:
        rows = self._fetch("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                           "AND TABLE_NAME = %s", (self.database, self.table.table), "read the table's columns")
        have = {r[0] for r in rows}
        if not have:
            raise StorageInputError(f"{self.location}: table {self.table.table!r} does not exist")
        wanted = [self.table.symbol, self.table.date, *self.table.fields.values()]
        missing = [c for c in wanted if c not in have]
        if missing:
            raise StorageInputError(f"{self.location}: table {self.table.table!r} has no columns {missing}; "
                                    f"it has {sorted(have)}")
        for name in [self.table.table, *wanted]:
            ident(name)  # plain identifiers only
        for target in self.table.fields:
            escape_tag(target)

    def page(self, after: tuple[str, dt.date] | None, limit: int) -> list[tuple]:
        t = self.table
        cols = ", ".join(ident(c) for c in [t.symbol, t.date, *t.fields.values()])
        order = f"ORDER BY {ident(t.symbol)}, {ident(t.date)} LIMIT %s"
        if after is None:
            return self._fetch(f"SELECT {cols} FROM {ident(t.table)} {order}", (limit,), "read a batch")
        sym, day = after
        where = f"WHERE {ident(t.symbol)} > %s OR ({ident(t.symbol)} = %s AND {ident(t.date)} > %s)"
        return self._fetch(f"SELECT {cols} FROM {ident(t.table)} {where} {order}", (sym, sym, day, limit),
                           "read a batch")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _lines(rows: list[tuple], measurement: str, fields: Sequence[str], static_tags: Mapping[str, str],
           pools: Mapping[str, str] | None) -> tuple[bytes, int, int]:
    """Line protocol for a batch of source rows; (body, points, rows without any value)."""
    out: list[str] = []
    empty = 0
    head = escape_tag(measurement)
    for row in rows:
        sym = str(row[0])
        values = row[2:]
        parts = []
        for name, v in zip(fields, values):
            if v is None:
                continue
            f = float(v)
            if not np.isfinite(f):
                continue
            parts.append(f"{name}={f!r}")
        if not parts:
            empty += 1
            continue
        tags = dict(static_tags)
        tags["symbol"] = sym
        if pools is not None:
            if sym not in pools:
                raise StorageInputError(f"symbol {sym!r} has no pool in the pool map")
            tags["pool"] = pools[sym]
        tag_text = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()))
        day = _day(row[1])
        stamp = (day - dt.date(1970, 1, 1)).days * _NS_PER_DAY
        out.append(f"{head}{tag_text} {','.join(parts)} {stamp}")
    return ("\n".join(out) + "\n").encode() if out else b"", len(out), empty


def _load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StorageError(f"checkpoint {path} is unreadable ({exc}); remove it to start over") from exc
    if state.get("fingerprint") != fingerprint:
        raise StorageInputError(f"checkpoint {path} belongs to another migration "
                                f"({state.get('fingerprint')}); remove it or pass another checkpoint path")
    return state


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(state, indent=2, default=str).encode())


# ----------------------------------------------------------------------------------------- public
def migrate_prices(source_url: str, target: InfluxTransport, checkpoint: str | Path, *,
                   source_password: str | None = None, table: PriceTable | None = None,
                   measurement: str = "prices_history", static_tags: Mapping[str, str] | None = None,
                   pools: Mapping[str, str] | None = None, batch_rows: int = 20_000, gzip_level: int = 1,
                   retry: RetryPolicy | None = None, progress: ProgressCallback | None = None,
                   logger: Any = None) -> MigrationResult:
    """Copy the table's rows into ``measurement``; resume from ``checkpoint`` when it exists."""
    import logging

    logger = logger or logging.getLogger("rotation_platform.storage.migration")
    table = table or PriceTable()
    retry = retry or RetryPolicy()
    static_tags = dict(static_tags or {})
    escape_tag(measurement)
    source = _Source(source_url, source_password, table, retry, logger)
    path = Path(checkpoint)
    fingerprint = {"source": source.location, "table": table.fingerprint(), "target": target.server,
                   "measurement": measurement, "tags": static_tags, "pools": bool(pools)}
    t0 = time.perf_counter()
    try:
        source.check_columns()
        call_with_retries(target.ensure_database, policy=retry, transient=influx_transient, server=target.server,
                          action="create database", logger=logger)
        state = _load_checkpoint(path, fingerprint) or {"fingerprint": fingerprint, "last_key": None,
                                                        "rows_read": 0, "points_written": 0,
                                                        "rows_without_values": 0, "batches": 0, "finished": False}
        resumed = tuple(state["last_key"]) if state["last_key"] else None
        if state["finished"]:
            return MigrationResult(state["rows_read"], state["points_written"], state["rows_without_values"],
                                   state["batches"], resumed, time.perf_counter() - t0, True)
        after = (state["last_key"][0], dt.date.fromisoformat(state["last_key"][1])) if state["last_key"] else None
        fields = list(table.fields)
        while True:
            rows = source.page(after, batch_rows)
            if not rows:
                break
            body, points, empty = _lines(rows, measurement, fields, static_tags, pools)
            if body:
                payload = body
                compressed = gzip_level > 0 and not target.gzip_inside
                if compressed:
                    gz = zlib.compressobj(gzip_level, zlib.DEFLATED, 31)
                    payload = gz.compress(body) + gz.flush()
                call_with_retries(lambda: target.write(payload, compressed), policy=retry,
                                  transient=influx_transient, server=target.server,
                                  action=f"write migration batch {state['batches'] + 1}", logger=logger)
            last = rows[-1]
            after = (str(last[0]), _day(last[1]))
            state.update(last_key=[after[0], after[1].isoformat()], rows_read=state["rows_read"] + len(rows),
                         points_written=state["points_written"] + points,
                         rows_without_values=state["rows_without_values"] + empty, batches=state["batches"] + 1)
            _save_checkpoint(path, state)
            if progress:
                progress(state["batches"], 0)
        state["finished"] = True
        _save_checkpoint(path, state)
        return MigrationResult(state["rows_read"], state["points_written"], state["rows_without_values"],
                               state["batches"], resumed, time.perf_counter() - t0, True)
    finally:
        source.close()


def validate_migration(source_url: str, target: InfluxTransport, *, source_password: str | None = None,
                       table: PriceTable | None = None, measurement: str = "prices_history",
                       static_tags: Mapping[str, str] | None = None, batch_rows: int = 50_000,
                       retry: RetryPolicy | None = None, logger: Any = None) -> ValidationReport:
    """Row counts and SHA-256 checksums per fund and year, source against target."""
    import logging

    logger = logger or logging.getLogger("rotation_platform.storage.migration")
    table = table or PriceTable()
    retry = retry or RetryPolicy()
    fields = list(table.fields)
    source = _Source(source_url, source_password, table, retry, logger)
    src: dict[tuple[str, int], list] = {}
    try:
        source.check_columns()
        after = None
        while True:
            rows = source.page(after, batch_rows)
            if not rows:
                break
            for row in rows:
                values = [None if v is None or not np.isfinite(float(v)) else float(v) for v in row[2:]]
                if all(v is None for v in values):
                    continue  # not migrated: no value to carry
                day = _day(row[1])
                entry = src.setdefault((str(row[0]), day.year), [0, hashlib.sha256()])
                entry[0] += 1
                entry[1].update(row_digest(day, values))
            after = (str(rows[-1][0]), _day(rows[-1][1]))
    finally:
        source.close()

    columns = [Column(f, "field", pa.float64()) for f in fields]
    symbols = sorted({s for s, _ in src} | set(call_with_retries(
        lambda: target.tag_values(measurement, "symbol", dict(static_tags or {})), policy=retry,
        transient=influx_transient, server=target.server, action="list symbols", logger=logger)))
    dst: dict[tuple[str, int], list] = {}
    for sym in symbols:
        where = {**(static_tags or {}), "symbol": sym}
        got = call_with_retries(lambda: target.select(measurement, where, columns, False), policy=retry,
                                transient=influx_transient, server=target.server,
                                action=f"read {measurement} symbol {sym}", logger=logger)
        stamps = got.column("time").to_numpy()
        order = np.argsort(stamps, kind="stable")
        data = [got.column(f).to_numpy(zero_copy_only=False) for f in fields]
        for i in order:
            day = (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(stamps[i]) // 1000)).date()
            values = [None if v is None or np.isnan(v) else float(v) for v in (d[i] for d in data)]
            entry = dst.setdefault((sym, day.year), [0, hashlib.sha256()])
            entry[0] += 1
            entry[1].update(row_digest(day, values))

    records = []
    for key in sorted(set(src) | set(dst)):
        s_rows, s_hash = src.get(key, [0, None])
        d_rows, d_hash = dst.get(key, [0, None])
        s_sum = s_hash.hexdigest() if s_hash is not None else ""
        d_sum = d_hash.hexdigest() if d_hash is not None else ""
        records.append({"symbol": key[0], "year": key[1], "source_rows": s_rows, "target_rows": d_rows,
                        "source_checksum": s_sum, "target_checksum": d_sum,
                        "ok": s_rows == d_rows and s_sum == d_sum})
    frame = pd.DataFrame.from_records(records, columns=["symbol", "year", "source_rows", "target_rows",
                                                        "source_checksum", "target_checksum", "ok"])
    return ValidationReport(frame)


# -------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rotation_platform.storage.migration``: migrate, then validate; prints JSON.

    The target is the configured InfluxDB (``storage.influx_*`` of ``$ROTATION_CONFIG``; token or
    password from the environment); the source password comes from ``--source-password-env``.
    """
    import argparse
    import logging
    import os
    import sys

    from rotation_platform.config import load_config

    parser = argparse.ArgumentParser(prog="python -m rotation_platform.storage.migration",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--source-url", required=True, help="SQLAlchemy URL of the source, without password")
    parser.add_argument("--source-password-env", default="ROTATION_MIGRATION_SOURCE_PASSWORD",
                        help="environment variable holding the source password")
    parser.add_argument("--table", default="etf_daily")
    parser.add_argument("--symbol-column", default="symbol")
    parser.add_argument("--date-column", default="trade_date")
    parser.add_argument("--field", action="append", default=[], metavar="TARGET=SOURCE",
                        help="a price column (repeatable); default: open high low close volume amount")
    parser.add_argument("--measurement", default="prices_history")
    parser.add_argument("--checkpoint", required=True, help="JSON checkpoint file (resumed when present)")
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--config", help="platform config (default: $ROTATION_CONFIG or configs/demo.yaml)")
    parser.add_argument("--skip-validation", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    fields = dict(f.split("=", 1) for f in args.field) if args.field else {f: f for f in PRICE_FIELDS}
    table = PriceTable(args.table, args.symbol_column, args.date_column, fields)
    storage = load_config(args.config).storage
    token = storage.influx_token.get_secret_value() if storage.influx_token else None
    if token:
        from rotation_platform.storage.influx_v2 import InfluxV2Transport

        target: InfluxTransport = InfluxV2Transport(storage.influx_url, storage.influx_database, token=token,
                                                    org=storage.influx_database)
    else:
        from rotation_platform.storage.influx import InfluxV1Transport

        target = InfluxV1Transport(storage.influx_url, storage.influx_database, username=storage.influx_username,
                                   password=storage.influx_password.get_secret_value()
                                   if storage.influx_password else None)
    password = os.environ.get(args.source_password_env)

    def progress(done: int, _total: int) -> None:
        print(f"batch {done} committed", file=sys.stderr, flush=True)

    result = migrate_prices(args.source_url, target, args.checkpoint, source_password=password, table=table,
                            measurement=args.measurement, batch_rows=args.batch_rows, progress=progress)
    out: dict[str, Any] = {"migration": result.as_dict()}
    if not args.skip_validation:
        report = validate_migration(args.source_url, target, source_password=password, table=table,
                                    measurement=args.measurement)
        out["validation"] = report.summary()
        out["mismatches"] = report.mismatches.to_dict(orient="records")
    print(json.dumps(out, indent=2, default=str))
    return 0 if out.get("validation", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
