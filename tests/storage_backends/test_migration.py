"""MySQL -> InfluxDB price migration: batches, resume from a checkpoint, validation per fund-year."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from rotation_platform.config import CONFIG_DIR
from rotation_platform.storage.errors import StorageInputError
from rotation_platform.storage.influx import InfluxV1Transport, quote_ident
from rotation_platform.storage.migration import PriceTable, main, migrate_prices, validate_migration

SYMBOLS = ["510300", "159915", "513100", "518880", "511010", "QD 01"]


class Crash(Exception):
    pass


@pytest.fixture()
def legacy(fresh_databases):
    """A legacy MySQL price table (``etf_daily``) with gaps, NULLs and one row without any value."""
    (influx_url, influx_db), mysql_url = fresh_databases
    engine = sa.create_engine(mysql_url.rsplit("/", 1)[0] + "/")
    database = mysql_url.rsplit("/", 1)[1]
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{database}`"))
    engine.dispose()
    rng = np.random.default_rng(11)
    rows = []
    for k, sym in enumerate(SYMBOLS):
        days = pd.bdate_range("2019-01-02", "2022-12-30")[k * 40:]
        close = 1.0 + np.cumsum(rng.normal(0, 0.01, len(days))) + k
        for i, day in enumerate(days):
            amount = None if i % 17 == 0 else float(rng.integers(10**6, 10**9))
            rows.append({"symbol": sym, "trade_date": day.date(), "open": close[i] * 0.99, "high": close[i] * 1.01,
                         "low": close[i] * 0.98, "close": float(close[i]), "volume": float(rng.integers(10**4, 10**7)),
                         "amount": amount})
    rows.append({"symbol": SYMBOLS[0], "trade_date": dt.date(2023, 1, 3), "open": None, "high": None, "low": None,
                 "close": None, "volume": None, "amount": None})
    engine = sa.create_engine(mysql_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE etf_daily (symbol VARCHAR(16) NOT NULL, trade_date DATE NOT NULL, `open` DOUBLE, "
            "high DOUBLE, low DOUBLE, `close` DOUBLE, volume DOUBLE, amount DECIMAL(20, 2), "
            "PRIMARY KEY (symbol, trade_date))"))
        conn.execute(sa.text("INSERT INTO etf_daily VALUES (:symbol, :trade_date, :open, :high, :low, :close, "
                             ":volume, :amount)"), rows)
    engine.dispose()
    return mysql_url, InfluxV1Transport(influx_url, influx_db), len(rows)


def _points(transport: InfluxV1Transport, measurement: str = "prices_history") -> int:
    series = transport._series(f"SELECT count(\"close\") FROM {quote_ident(measurement)}")
    return int(series[0]["values"][0][1]) if series else 0


def test_migration_resumes_from_checkpoint_and_validates(legacy, tmp_path) -> None:
    mysql_url, target, rows = legacy
    checkpoint = tmp_path / "migration.json"
    batches = []

    def crash_after_three(done: int, total: int) -> None:
        batches.append(done)
        if done == 3:
            raise Crash("process died")

    with pytest.raises(Crash):
        migrate_prices(mysql_url, target, checkpoint, batch_rows=1_000, progress=crash_after_three)
    state = json.loads(checkpoint.read_text())
    assert state["batches"] == 3 and state["rows_read"] == 3_000 and not state["finished"]
    assert _points(target) == state["points_written"] == 3_000 - state["rows_without_values"]

    result = migrate_prices(mysql_url, target, checkpoint, batch_rows=1_000)
    assert result.finished and result.resumed_from == tuple(state["last_key"])
    assert result.rows_read == rows and result.rows_without_values == 1
    assert result.points_written == rows - 1
    assert _points(target) == rows - 1  # nothing lost, nothing twice

    report = validate_migration(mysql_url, target)
    summary = report.summary()
    assert report.ok, report.mismatches
    assert summary["funds"] == len(SYMBOLS) and summary["source_rows"] == summary["target_rows"] == rows - 1
    assert set(report.table["year"]) == {2019, 2020, 2021, 2022}

    # a finished checkpoint is a no-op; a fresh full rerun overwrites the same points
    assert migrate_prices(mysql_url, target, checkpoint).points_written == rows - 1
    migrate_prices(mysql_url, target, tmp_path / "again.json", batch_rows=5_000)
    assert _points(target) == rows - 1
    assert validate_migration(mysql_url, target).ok


def test_validation_finds_a_changed_point(legacy, tmp_path) -> None:
    mysql_url, target, _ = legacy
    migrate_prices(mysql_url, target, tmp_path / "cp.json", batch_rows=2_000)
    stamp = int(pd.Timestamp("2021-06-01").value)
    target.write(f"prices_history,symbol=518880 close=99.5 {stamp}\n".encode(), False)
    report = validate_migration(mysql_url, target)
    assert not report.ok
    bad = report.mismatches
    assert list(zip(bad["symbol"], bad["year"])) == [("518880", 2021)]
    assert (bad["source_rows"] == bad["target_rows"]).all()  # same count, different checksum


def test_checkpoint_of_another_migration_is_refused(legacy, tmp_path) -> None:
    mysql_url, target, _ = legacy
    checkpoint = tmp_path / "cp.json"
    migrate_prices(mysql_url, target, checkpoint, batch_rows=5_000)
    with pytest.raises(StorageInputError, match="belongs to another migration"):
        migrate_prices(mysql_url, target, checkpoint, measurement="other_history")


def test_unknown_columns_are_refused_before_any_sql(legacy, tmp_path) -> None:
    mysql_url, target, _ = legacy
    table = PriceTable(fields={"close": "close`; DROP TABLE etf_daily; --"})
    with pytest.raises(StorageInputError, match="has no columns"):
        migrate_prices(mysql_url, target, tmp_path / "cp.json", table=table)
    with pytest.raises(StorageInputError, match="does not exist"):
        migrate_prices(mysql_url, target, tmp_path / "cp2.json", table=PriceTable(table="nope"))
    engine = sa.create_engine(mysql_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM etf_daily")).scalar() > 0
    engine.dispose()


def test_command_line_migrates_and_validates(legacy, tmp_path, monkeypatch, capsys) -> None:
    mysql_url, target, rows = legacy
    monkeypatch.setenv("ROTATION_STORAGE__INFLUX_URL", target.url)
    monkeypatch.setenv("ROTATION_STORAGE__INFLUX_DATABASE", target.database)
    code = main(["--source-url", mysql_url, "--checkpoint", str(tmp_path / "cli.json"), "--batch-rows", "3000",
                 "--config", str(CONFIG_DIR / "demo.yaml")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["validation"]["ok"] and out["migration"]["points_written"] == rows - 1
