"""Session snapshots: hashes, keep the last N, verify, restore into a store."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.storage.base import Partition
from rotation_platform.storage.errors import StorageIntegrityError, StorageNotFoundError
from rotation_platform.storage.files import FileStore, read_value
from rotation_platform.storage.snapshots import SnapshotStore, value_hash
from tests.orchestration.conftest import fresh_defs, run_daily, run_summary, sessions_between


def _values(i: int) -> dict[str, dict[str, object]]:
    frame = pd.DataFrame({"x": [float(i), 2.0]}, index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"], name="session"))
    return {"backtest": {"A_SHARE": frame, "QDII": frame * 2}, "wfo_result": {"A_SHARE": {"i": i}}}


def test_keeps_the_last_n_and_restores_verified_values(tmp_path) -> None:
    snaps = SnapshotStore(tmp_path / "snaps", keep=3)
    days = [f"2024-01-{d:02d}" for d in range(2, 8)]
    for i, day in enumerate(days):
        manifest = snaps.save(day, _values(i), "cfg")
        assert manifest["assets"]["backtest"]["A_SHARE"] == value_hash(_values(i)["backtest"]["A_SHARE"])
    assert snaps.sessions() == days[-3:]
    with pytest.raises(StorageNotFoundError, match="2024-01-02"):
        snaps.manifest("2024-01-02")
    store = FileStore(tmp_path / "store")
    restored = snaps.restore(days[-1], store)
    assert restored.values == 3
    back = store.read(("backtest",), Partition.multi({"pool": "QDII", "session": days[-1]}))
    pd.testing.assert_frame_equal(back, _values(5)["backtest"]["QDII"])
    assert store.read(("wfo_result",), Partition.multi({"pool": "A_SHARE", "session": days[-1]})) == {"i": 5}
    # a value changed on disk is refused before anything is written
    path = next((tmp_path / "snaps" / days[-2] / "wfo_result").iterdir())
    path.write_text(json.dumps({"i": 99}))
    with pytest.raises(StorageIntegrityError, match="wfo_result/A_SHARE"):
        snaps.restore(days[-2], FileStore(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_snapshot_asset_keeps_ten_and_restore_cli_brings_values_back(demo_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ROTATION_ORCHESTRATION__KEEP_SNAPSHOTS", "10")
    sessions = sessions_between("2024-12-13", "2024-12-31")
    assert len(sessions) == 13
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        assert run_daily(defs, instance, "QDII", sessions).success
        result = run_summary(defs, instance, sessions)
        assert result.success
    data = demo_env / "data"
    snaps = SnapshotStore(data / "snapshots", keep=10)
    assert snaps.sessions() == sessions[-10:]
    manifests = result.output_for_node("session_snapshot")
    assert sorted(manifests) == sessions
    day = sessions[-1]
    assert manifests[day] == snaps.manifest(day)
    want = read_value(data / "target_portfolio" / "QDII" / day)
    (data / "target_portfolio" / "QDII" / f"{day}.parquet").unlink()

    from jobs.snapshots import main

    assert main(["list"]) == 0
    assert day in capsys.readouterr().out
    assert main(["verify", day]) == 0
    assert main(["restore", day]) == 0
    assert "restored" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read_value(data / "target_portfolio" / "QDII" / day), want)
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("target_portfolio"))
        assert event.asset_materialization.metadata["restored_from_snapshot"].value == day
    assert main(["restore", "2024-12-02"]) == 4  # not kept: a data error (exit code 4)
