"""Bad input to a store is handled, never corrupted: odd tags and names, NaN keys, huge batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests

from rotation_platform.storage import codec
from rotation_platform.storage.base import Partition, physical_names
from rotation_platform.storage.errors import StorageInputError
from rotation_platform.storage.files import FileStore
from rotation_platform.storage.influx import InfluxV1Transport, TAG_GEN, TAG_PART, plan_layout
from rotation_platform.storage.mysql import ident, table_name

from .conftest import BACKENDS  # noqa: F401


def _reference(tmp_path, asset, partition, value):
    ref = FileStore(tmp_path / "reference")
    ref.write(asset, partition, value)
    return ref.read(asset, partition)


ODD_SYMBOLS = ["DA 01", "QD'01", 'OT"01', "A,B=C", " lead", "trail ", "基金1", "x" * 200]


@pytest.mark.parametrize("backend", BACKENDS)
def test_symbols_with_spaces_quotes_and_separators(backend, make_store, asset_key, tmp_path) -> None:
    sessions = pd.bdate_range("2024-01-01", periods=5, name="session")
    index = pd.MultiIndex.from_product([sessions, ODD_SYMBOLS], names=["session", "symbol"])
    frame = pd.DataFrame({"close": np.arange(len(index), dtype=float)}, index=index)
    partition = Partition.single("pool 'A'")
    store = make_store(backend)
    store.write(asset_key, partition, frame)
    pd.testing.assert_frame_equal(store.read(asset_key, partition), _reference(tmp_path, asset_key, partition, frame),
                                  check_exact=True)


def test_odd_symbols_are_influx_tags_verbatim(make_store, influx_server, asset_key) -> None:
    sessions = pd.bdate_range("2024-01-01", periods=3, name="session")
    index = pd.MultiIndex.from_product([sessions, ODD_SYMBOLS], names=["session", "symbol"])
    frame = pd.DataFrame({"close": np.arange(len(index), dtype=float)}, index=index)
    store = make_store("influxdb")
    store.write(asset_key, Partition.single("P"), frame)
    transport = InfluxV1Transport(*influx_server)
    assert transport.tag_values(asset_key[0], "symbol", {TAG_PART: "P"}) == sorted(ODD_SYMBOLS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_backslash_in_a_tag_level(backend, make_store, asset_key, tmp_path) -> None:
    """A NaN (or a backslash, or a newline) in what would be a tag is stored as a field instead."""
    sessions = pd.bdate_range("2024-01-01", periods=4, name="session")
    symbols = ["DA01", np.nan, "back\\slash", "new\nline"]
    index = pd.MultiIndex.from_arrays([sessions.repeat(4), symbols * 4], names=["session", "symbol"])
    frame = pd.DataFrame({"value": np.linspace(0, 1, 16)}, index=index)
    partition = Partition.single("2024-01-01")
    enc = codec.encode(frame)
    layout = plan_layout(enc, "m", partition)
    assert layout.tag_columns == ()  # the symbol level is not clean: it becomes a field
    store = make_store(backend)
    store.write(asset_key, partition, frame)
    got = store.read(asset_key, partition)
    pd.testing.assert_frame_equal(got, _reference(tmp_path, asset_key, partition, frame), check_exact=True)
    assert got.index.get_level_values("symbol").isna().sum() == 4


@pytest.mark.parametrize("backend", ["influxdb", "mysql"])
def test_duplicate_time_and_tags_keep_every_row(backend, make_store, asset_key, tmp_path) -> None:
    """Rows repeating (session, symbol) would overwrite each other as points: they are numbered."""
    sessions = pd.DatetimeIndex(["2024-01-02", "2024-01-02", "2024-01-03"], name="session")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=sessions)
    partition = Partition.single("dup")
    store = make_store(backend)
    store.write(asset_key, partition, frame)
    pd.testing.assert_frame_equal(store.read(asset_key, partition),
                                  _reference(tmp_path, asset_key, partition, frame), check_exact=True)
    assert store.counts(asset_key, partition).visible == 3


HOSTILE_COLUMNS = ["a`; DROP TABLE rp_catalog; --", "select", "rp_n", "rp_part", "time", "Time", "TIME",
                   "x" * 100, "quote'\"", "space name", "back\\slash", "", "名字", "_field"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_column_names_never_reach_sql_or_influxql(backend, make_store, asset_key, tmp_path,
                                                         mysql_server) -> None:
    frame = pd.DataFrame(np.arange(3 * len(HOSTILE_COLUMNS), dtype=float).reshape(3, -1), columns=HOSTILE_COLUMNS)
    partition = Partition.single("P")
    store = make_store(backend)
    store.write(asset_key, partition, frame)
    pd.testing.assert_frame_equal(store.read(asset_key, partition),
                                  _reference(tmp_path, asset_key, partition, frame), check_exact=True)
    names = physical_names(HOSTILE_COLUMNS)
    assert all(n.replace("_", "").isalnum() and n.isascii() for n in names)
    assert len({n.lower() for n in names}) == len(names)
    if backend in ("mysql", "routed", "cached"):
        import sqlalchemy as sa

        with sa.create_engine(mysql_server).connect() as conn:
            tables = {r[0] for r in conn.execute(sa.text("SHOW TABLES"))}
        assert "rp_catalog" in tables


def test_identifiers_are_checked() -> None:
    for bad in ["a`b", "a b", "", "x" * 65, "a;b", "a-b"]:
        with pytest.raises(StorageInputError):
            ident(bad)
    assert table_name(("prices",)) == "a_prices"
    long = table_name(("x" * 64, "y" * 64))
    assert len(long) <= 64 and ident(long)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_asset_and_partition_keys_are_refused(backend, make_store) -> None:
    store = make_store(backend)
    frame = pd.DataFrame({"a": [1.0]})
    with pytest.raises(StorageInputError, match="asset key"):
        store.write(("bad asset'",), Partition.single("P"), frame)
    for key in ["back\\slash", "new\nline", "", "_all", "x" * 300]:
        with pytest.raises(StorageInputError, match="partition key"):
            store.write(("ok",), Partition.single(key), frame)


def test_file_store_refuses_path_like_keys(tmp_path) -> None:
    store = FileStore(tmp_path)
    for key in ["../escape", "a/b", ".hidden"]:
        with pytest.raises(StorageInputError, match="cannot name a file"):
            store.write(("ok",), Partition.single(key), pd.DataFrame({"a": [1.0]}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_unsupported_values_are_refused_before_writing(backend, make_store, asset_key) -> None:
    store = make_store(backend)
    with pytest.raises(StorageInputError, match="cannot store a value of type set"):
        store.write(asset_key, Partition.single("P"), {1, 2})
    with pytest.raises(StorageInputError):
        store.write(asset_key, Partition.single("P"), pd.DataFrame({"a": [[1, 2], "x"]}))
    assert not store.exists(asset_key, Partition.single("P"))


def test_influx_refuses_oversized_strings_and_keeps_previous_value(make_store, asset_key) -> None:
    store = make_store("influxdb")
    partition = Partition.single("P")
    good = pd.DataFrame({"text": ["short"]})
    store.write(asset_key, partition, good)
    with pytest.raises(StorageInputError, match="64000 bytes"):
        store.write(asset_key, partition, pd.DataFrame({"text": ["x" * 70_000]}))
    assert store.read(asset_key, partition)["text"].tolist() == ["short"]


@pytest.mark.parametrize("backend", ["influxdb", "mysql"])
def test_huge_batch_is_split_and_complete(backend, make_store, asset_key, influx_server) -> None:
    """300,000 rows go out in many batches; every row arrives once."""
    rows = 300_000
    frame = pd.DataFrame({"session": pd.date_range("1990-01-01", periods=rows, freq="min"),
                          "a": np.arange(rows, dtype=float), "b": np.arange(rows) % 97},
                         ).set_index("session")
    options = {"batch_lines": 20_000} if backend == "influxdb" else {"batch_bytes": 1 << 20}
    store = make_store(backend, **options)
    partition = Partition.single("huge")
    receipt = store.write(asset_key, partition, frame)
    assert receipt.batches >= 10
    counts = store.counts(asset_key, partition)
    assert (counts.visible, counts.physical, counts.distinct) == (rows, rows, rows)
    got = store.read(asset_key, partition)
    pd.testing.assert_frame_equal(got, frame, check_exact=True, check_freq=False)
    if backend == "influxdb":
        series = requests.get(influx_server[0] + "/query", params={
            "db": influx_server[1], "q": f'SHOW SERIES FROM "{asset_key[0]}"'}, timeout=30).json()
        keys = [v[0] for s in series["results"][0].get("series", []) for v in s["values"]]
        assert len(keys) == 1 and TAG_GEN in keys[0]  # one series: no tag per row
