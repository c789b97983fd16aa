"""Embedded file storage: exact round trips and atomic writes."""

from __future__ import annotations

import os
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
