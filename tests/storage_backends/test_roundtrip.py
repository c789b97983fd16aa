"""Every stored type through every backend reads back exactly as the embedded default does."""

from __future__ import annotations

import pandas as pd
import pytest

from rotation_platform.data.panel import PricePanel
from rotation_platform.storage import codec
from rotation_platform.storage.base import Partition
from rotation_platform.storage.errors import StorageNotFoundError
from rotation_platform.storage.files import FileStore

from .conftest import BACKENDS, frame_cases  # noqa: F401 - resolved by the importlib test layout

CASES = frame_cases()


def assert_same(got, want) -> None:
    if isinstance(want, PricePanel):
        assert isinstance(got, PricePanel)
        assert got.content_hash() == want.content_hash()
        assert got.meta == want.meta and got.symbols == want.symbols and got.sessions.equals(want.sessions)
    elif isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert list(got.dtypes) == list(want.dtypes)
        assert codec.table_checksum(codec.encode(got).table) == codec.table_checksum(codec.encode(want).table)
    else:
        assert got == want


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_equals_embedded_default(backend, case, make_store, asset_key, tmp_path) -> None:
    value = CASES[case]
    reference = FileStore(tmp_path / "reference")
    partition = Partition.single("2024-01-02")
    reference.write(asset_key, partition, value)
    want = reference.read(asset_key, partition)

    store = make_store(backend)
    receipt = store.write(asset_key, partition, value)
    assert receipt.rows == codec.value_rows(value)
    assert_same(store.read(asset_key, partition), want)
    assert store.exists(asset_key, partition)
    assert store.partitions(asset_key) == ["2024-01-02"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_price_panel_round_trip_and_rewrite(backend, make_store, asset_key, panel, tmp_path) -> None:
    reference = FileStore(tmp_path / "reference")
    partition = Partition.multi({"pool": "A_SHARE", "session": "2016-12-30"})
    store = make_store(backend)
    for version in (panel, panel.select(end="2016-06-30").with_meta(version=2)):
        reference.write(asset_key, partition, version)
        store.write(asset_key, partition, version)
        assert_same(store.read(asset_key, partition), reference.read(asset_key, partition))
    counts = store.counts(asset_key, partition)
    rows = codec.value_rows(panel.select(end="2016-06-30"))
    assert (counts.visible, counts.physical, counts.distinct) == ((rows, rows, rows) if backend != "local"
                                                                  else (counts.visible,) * 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kind_change_and_delete(backend, make_store, asset_key) -> None:
    """A partition rewritten with another type (frame -> JSON) and deleted leaves nothing behind."""
    store = make_store(backend)
    partition = Partition.single("P1")
    store.write(asset_key, partition, CASES["wide_datetime_index"])
    store.write(asset_key, partition, CASES["json_dict"])
    assert store.read(asset_key, partition) == CASES["json_dict"]
    store.delete(asset_key, partition)
    assert not store.exists(asset_key, partition)
    with pytest.raises(StorageNotFoundError, match="P1"):
        store.read(asset_key, partition)
