"""Embedded file storage: exact round trips and atomic writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.data.panel import PricePanel
from rotation_platform.data.sources.synthetic import SyntheticSource
from rotation_platform.storage.files import StorageError, read_value, write_value


@pytest.fixture(scope="module")
def panel() -> PricePanel:
    config = load_config(CONFIG_DIR / "demo.yaml", env={})
    raw = SyntheticSource(config.pools, config.data.synthetic, end="2019-12-31").read(["DA01", "DA02", "DO02"])
    long = pd.concat([r.frame.assign(symbol=s).rename(columns={"date": "session"}) for s, r in raw.items()])
    return PricePanel.from_long(long.drop(columns="line"), meta={"source": "synthetic", "synthetic": True})


def test_panel_round_trip_is_exact(tmp_path: Path, panel: PricePanel) -> None:
    path = write_value(tmp_path / "prices" / "A_SHARE", panel)
    assert path.name == "A_SHARE.panel.parquet"
    back = read_value(tmp_path / "prices" / "A_SHARE")
    assert back.content_hash() == panel.content_hash()
    assert back.meta == panel.meta and back.symbols == panel.symbols
    assert np.isnan(back["close"].iloc[0]).sum() == np.isnan(panel["close"].iloc[0]).sum()


def test_frame_and_json_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", "y"]}, index=pd.Index([3, 4], name="k"))
    write_value(tmp_path / "f", frame)
    pd.testing.assert_frame_equal(read_value(tmp_path / "f"), frame)
    write_value(tmp_path / "j", {"x": [1, 2], "y": "z"})
    assert read_value(tmp_path / "j") == {"x": [1, 2], "y": "z"}


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, panel: PricePanel, monkeypatch) -> None:
    stem = tmp_path / "prices" / "A_SHARE"
    write_value(stem, panel)
    before = (tmp_path / "prices" / "A_SHARE.panel.parquet").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_value(stem, panel.with_meta(extra=1))
    monkeypatch.undo()
    assert (tmp_path / "prices" / "A_SHARE.panel.parquet").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "prices").iterdir()) == ["A_SHARE.panel.parquet"]


def test_missing_and_unsupported(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="nothing stored at"):
        read_value(tmp_path / "nope")
    with pytest.raises(StorageError, match="cannot store a value of type set"):
        write_value(tmp_path / "s", {1, 2})


def test_one_pools_partition_keys_are_kept_while_its_folder_is_unchanged(tmp_path: Path, monkeypatch) -> None:
    from rotation_platform.storage import files
    from rotation_platform.storage.base import Partition

    store = files.FileStore(tmp_path)
    part = lambda pool, day: Partition.multi({"pool": pool, "session": day})  # noqa: E731
    value = pd.DataFrame({"x": [1.0]})
    for pool, day in (("A", "2024-12-30"), ("A", "2024-12-31"), ("B", "2024-12-31")):
        store.write(("target_portfolio",), part(pool, day), value)
    settled = time.time_ns() - 10 * files.LISTING_SETTLE_NS  # the folders as if written a while ago
    for folder in (tmp_path / "target_portfolio", tmp_path / "target_portfolio" / "A", tmp_path / "target_portfolio" / "B"):
        os.utime(folder, ns=(settled, settled))
    keys = store.partition_keys(("target_portfolio",), ("A",))
    assert keys == ("A|2024-12-30", "A|2024-12-31")
    assert store.partition_keys(("target_portfolio",), ("A",)) is keys  # the same object while unchanged
    assert store.partition_keys(("target_portfolio",), ("B",)) == ("B|2024-12-31",)
    assert store.partition_keys(("target_portfolio",), ("C",)) == ()  # no such pool folder
    assert store.partition_keys(("target_portfolio",), ("..",)) == ()  # never outside the asset's folder
    store.write(("target_portfolio",), part("B", "2025-01-02"), value)  # another pool's folder changes
    assert store.partition_keys(("target_portfolio",), ("A",)) is keys
    store.write(("target_portfolio",), part("A", "2025-01-02"), value)
    assert store.partition_keys(("target_portfolio",), ("A",)) == ("A|2024-12-30", "A|2024-12-31", "A|2025-01-02")
    assert store.partitions(("target_portfolio",)) == [
        "A|2024-12-30", "A|2024-12-31", "A|2025-01-02", "B|2024-12-31", "B|2025-01-02"]


def test_partition_listing_is_reused_only_while_its_folders_are_unchanged(tmp_path: Path, monkeypatch) -> None:
    from rotation_platform.storage import files
    from rotation_platform.storage.base import Partition

    store = files.FileStore(tmp_path)
    part = lambda pool, day: Partition.multi({"pool": pool, "session": day})  # noqa: E731
    value = pd.DataFrame({"x": [1.0]})
    store.write(("target_portfolio",), part("A", "2024-12-30"), value)
    assert store.partitions(("target_portfolio",)) == ["A|2024-12-30"]
    # written right after the listing: seen at once (a folder changed within the settle time is walked again)
    store.write(("target_portfolio",), part("A", "2024-12-31"), value)
    assert store.partitions(("target_portfolio",)) == ["A|2024-12-30", "A|2024-12-31"]

    walks = []
    real_walk = os.walk
    monkeypatch.setattr(files.os, "walk", lambda *a, **k: walks.append(a) or real_walk(*a, **k))
    monkeypatch.setattr(files, "LISTING_SETTLE_NS", 0)  # every folder's time counts as settled
    assert store.partitions(("target_portfolio",)) == ["A|2024-12-30", "A|2024-12-31"]
    assert store.partitions(("target_portfolio",)) == ["A|2024-12-30", "A|2024-12-31"]
    assert walks == []  # the kept listing of the folders as they were
    store.write(("target_portfolio",), part("B", "2024-12-31"), value)  # a new pool folder
    assert store.partitions(("target_portfolio",)) == ["A|2024-12-30", "A|2024-12-31", "B|2024-12-31"]
    assert len(walks) == 1
    old_time = os.stat(tmp_path / "target_portfolio" / "A").st_mtime_ns
    store.delete(("target_portfolio",), part("A", "2024-12-30"))
    if os.stat(tmp_path / "target_portfolio" / "A").st_mtime_ns != old_time:  # the folder's time moved (not
        assert store.partitions(("target_portfolio",)) == ["A|2024-12-31", "B|2024-12-31"]  # in the same tick)
        assert len(walks) == 2
