"""Window reads on the embedded store: ``read_many`` / ``read_window`` equal N single reads.

The data are the real A_SHARE prices of ``configs/cn_etf.yaml`` (the shared ``cn_etf`` folder), cut
into pool x session partitions the way the IO managers store them, and a factor-shaped frame per
session with the provenance a stored value carries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rotation_platform.config import load_config
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource
from rotation_platform.storage import codec
from rotation_platform.storage.base import Partition, missing_keys
from rotation_platform.storage.errors import StorageNotFoundError
from rotation_platform.storage.files import FileStore, write_value
from rotation_platform.storage.partitioning import PartitionSlice, combine_values, split_value
from rotation_platform.storage.provenance import with_provenance

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data" / "cn_etf"
POOL = "A_SHARE"
N_SESSIONS = 40


@pytest.fixture(scope="module")
def real_panel() -> PricePanel:
    """The last sessions of the real A_SHARE pool (late listings leave NaN blocks)."""
    if not (SHARED_DATA / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected the cn_etf folder at {SHARED_DATA}")
    config = load_config(REPO / "configs" / "cn_etf.yaml", env={})
    pool = next(p for p in config.pools if p.name == POOL)
    panel = load_pool_prices(DirectorySource(SHARED_DATA), pool, config.data).panel
    return panel.select(start=panel.sessions[-N_SESSIONS])


def _slices(sessions: pd.DatetimeIndex) -> list[PartitionSlice]:
    return [PartitionSlice(Partition.multi({"pool": POOL, "session": str(t.date())}),
                           (pd.Timestamp(t, tz="UTC"), pd.Timestamp(t, tz="UTC") + pd.Timedelta(days=1)),
                           {"pool": POOL})
            for t in sessions]


def _store_pieces(store: FileStore, asset: tuple[str, ...], value, slices) -> list[Partition]:
    for piece_slice, piece in split_value(value, slices, "test"):
        store.write(asset, piece_slice.partition, piece)
    return [s.partition for s in slices]


def _factor_frame(sessions: pd.DatetimeIndex, symbols: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    index = pd.MultiIndex.from_product([sessions, symbols], names=["session", "symbol"])
    values = rng.standard_normal((len(index), 24))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[0, 0] = np.inf
    frame = pd.DataFrame(values, index=index, columns=[f"mom_{k}" for k in range(24)])
    frame["rank"] = rng.integers(0, 50, len(frame))
    return frame


def _assert_same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, PricePanel):
        assert a.content_hash() == b.content_hash() and a.meta == b.meta
        for f in PRICE_FIELDS:
            pd.testing.assert_frame_equal(a[f], b[f], check_exact=True)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert a.attrs == b.attrs
        assert codec.table_checksum(codec.encode(a).table) == codec.table_checksum(codec.encode(b).table)
    else:
        assert a == b


def test_price_window_equals_single_reads(tmp_path: Path, real_panel: PricePanel) -> None:
    store = FileStore(tmp_path)
    panel = with_provenance(real_panel.with_meta(config_hash="abc"), {"run_id": "r1", "inputs": ["raw"]})
    partitions = _store_pieces(store, ("prices",), panel, _slices(panel.sessions))
    singles = {p.key: store.read(("prices",), p) for p in partitions}
    window = store.read_many(("prices",), partitions)
    assert list(window) == [p.key for p in partitions]
    for key, value in singles.items():
        _assert_same(window[key], value)
    combined = store.read_window(("prices",), partitions)
    _assert_same(combined, combine_values([(PartitionSlice(p), singles[p.key]) for p in partitions]))
    assert combined.content_hash() == real_panel.content_hash()


def test_factor_window_equals_single_reads(tmp_path: Path, real_panel: PricePanel) -> None:
    store = FileStore(tmp_path)
    frame = _factor_frame(real_panel.sessions, real_panel.symbols)
    slices = _slices(real_panel.sessions)
    for piece_slice, piece in split_value(frame, slices, "test"):
        store.write(("factor_panel",), piece_slice.partition,
                    with_provenance(piece, {"run_id": "r1", "partition": piece_slice.key}))
    partitions = [s.partition for s in slices]
    singles = {p.key: store.read(("factor_panel",), p) for p in partitions}
    window = store.read_many(("factor_panel",), partitions)
    for key, value in singles.items():
        _assert_same(window[key], value)
        assert value["rank"].dtype == np.int64 and value.index.names == ["session", "symbol"]
    combined = store.read_window(("factor_panel",), partitions)
    _assert_same(combined, combine_values([(PartitionSlice(p), singles[p.key]) for p in partitions]))
    pd.testing.assert_frame_equal(combined, frame, check_exact=True)


def test_missing_partitions_are_left_out_or_named(tmp_path: Path, real_panel: PricePanel) -> None:
    store = FileStore(tmp_path)
    head = real_panel.select(end=real_panel.sessions[4])
    partitions = _store_pieces(store, ("prices",), head, _slices(head.sessions))
    absent = Partition.multi({"pool": POOL, "session": "1999-01-04"})
    store.delete(("prices",), partitions[2])
    asked = [partitions[0], absent, partitions[1], partitions[2], partitions[3], partitions[0]]
    window = store.read_many(("prices",), asked)
    assert list(window) == [partitions[0].key, partitions[1].key, partitions[3].key]
    assert missing_keys(asked, window) == [absent.key, partitions[2].key]
    with pytest.raises(StorageNotFoundError) as err:
        store.read_many(("prices",), asked, strict=True)
    message = str(err.value)
    assert "\n" not in message and absent.key in message and partitions[2].key in message
    assert partitions[0].key not in message and "prices" in message and str(tmp_path) in message
    with pytest.raises(StorageNotFoundError, match="1999-01-04"):
        store.read_window(("prices",), asked)
    assert store.read_many(("prices",), []) == {}
    assert store.read_many(("never_written",), partitions) == {}


def test_each_file_is_read_once(tmp_path: Path, real_panel: PricePanel, monkeypatch) -> None:
    store = FileStore(tmp_path)
    head = real_panel.select(end=real_panel.sessions[11])
    partitions = _store_pieces(store, ("prices",), head, _slices(head.sessions))
    reads: list[str] = []
    original = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    store.read_many(("prices",), partitions)
    assert sorted(reads) == sorted(f"{p.parts[-1]}.panel.parquet" for p in partitions)


def test_json_window_and_folders_written_before(tmp_path: Path) -> None:
    """JSON partitions come back as written; a folder written file by file (the layout of earlier
    versions, ``write_value``) reads through the window read unchanged."""
    store = FileStore(tmp_path)
    docs = {f"2024-01-0{d}": {"session": f"2024-01-0{d}", "orders": [{"symbol": "510300", "lots": d}]}
            for d in range(2, 6)}
    for key, doc in docs.items():
        write_value(tmp_path / "orders" / POOL / key, doc)
    partitions = [Partition.multi({"pool": POOL, "session": k}) for k in docs]
    window = store.read_many(("orders",), partitions)
    assert [window[p.key] for p in partitions] == list(docs.values())
    assert store.read_window(("orders",), partitions) == {p.key: docs[p.parts[-1]] for p in partitions}


def test_panel_decoding_equals_from_long(real_panel: PricePanel) -> None:
    """The positional decoder of stored panels gives exactly what PricePanel.from_long gives."""
    panel = real_panel.with_meta(note="quotes ' \" and unicode 基金")
    _, data = codec.encode_file(panel)
    table = pq.read_table(pa.BufferReader(data))
    meta = json.loads(table.schema.metadata[b"rotation_platform"])
    fast = codec.decode_file(".panel.parquet", data)
    slow = PricePanel.from_long(table.to_pandas(), sessions=pd.DatetimeIndex(pd.to_datetime(meta["sessions"])),
                                symbols=meta["symbols"], meta=meta["meta"])
    _assert_same(fast, slow)
    _assert_same(fast, panel)
    assert int(np.isnan(fast["close"].to_numpy()).sum()) == int(np.isnan(panel["close"].to_numpy()).sum())


def _window_cases(panel: PricePanel) -> dict[str, list]:
    """Partition values whose combination takes each branch of the window read (one ``to_pandas`` for
    alike frames and panels, the general path for the rest)."""
    sessions = panel.sessions[:6]
    slices = _slices(sessions)
    frame = _factor_frame(sessions, panel.symbols[:4])
    frames = [v for _, v in split_value(frame, slices, "test")]
    prices = [v for _, v in split_value(panel.select(end=sessions[-1]), slices, "test")]
    flat = [pd.DataFrame({"symbol": panel.symbols[:3], "w": [0.1 * i, 0.2, 0.3]}) for i in range(6)]
    with_attrs = [f.copy() for f in frames]
    for i, f in enumerate(with_attrs):
        f.attrs = {"model": "m1", "session": i % 2}
    same_attrs = [f.copy() for f in frames]
    for f in same_attrs:
        f.attrs = {"model": "m1"}
    categorical = [f.assign(sector=pd.Categorical(["a", "b"] * (len(f) // 2))) for f in frames]
    return {
        "frames_with_provenance": [with_provenance(f, {"partition": i}) for i, f in enumerate(frames)],
        "frames_differing_attrs": with_attrs,
        "frames_same_attrs": same_attrs,
        "frames_range_index": flat,
        "frames_categorical": categorical,
        "frames_columns_differ": [f if i % 2 else f.drop(columns=["rank"]) for i, f in enumerate(frames)],
        "panels_same_meta": prices,
        "panels_differing_meta": [p.with_meta(step=i) for i, p in enumerate(prices)],
        "panels_with_provenance": [with_provenance(p, {"run_id": f"r{i % 2}"}) for i, p in enumerate(prices)],
        "panels_funds_differ": [p if i % 2 else p.select(symbols=p.symbols[:-1]) for i, p in enumerate(prices)],
    }


WINDOW_CASES = ["frames_with_provenance", "frames_differing_attrs", "frames_same_attrs", "frames_range_index",
                "frames_categorical", "frames_columns_differ", "panels_same_meta", "panels_differing_meta",
                "panels_with_provenance", "panels_funds_differ"]


@pytest.mark.parametrize("case", WINDOW_CASES)
def test_window_read_equals_combined_single_reads(tmp_path: Path, real_panel: PricePanel, case: str) -> None:
    values = _window_cases(real_panel)[case]
    store = FileStore(tmp_path)
    partitions = [s.partition for s in _slices(real_panel.sessions[: len(values)])]
    for partition, value in zip(partitions, values):
        store.write(("window",), partition, value)
    singles = [store.read(("window",), p) for p in partitions]
    _assert_same(store.read_window(("window",), partitions),
                 combine_values([(PartitionSlice(p), v) for p, v in zip(partitions, singles)]))
