"""The Dagster layer loads, and the whole graph materialises in-process for one session and all pools."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import pandas as pd

from rotation_platform.data.panel import PricePanel
from rotation_platform.production.fuses import FUSES
from rotation_platform.storage.files import read_value
from tests.orchestration.conftest import (
    ROOT,
    SESSION,
    check_outcomes,
    fresh_defs,
    materialised_assets,
    run_daily,
    run_summary,
)

POOL_ASSETS = ["prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
               "capacity_report", "target_portfolio"]


def test_definitions_validate_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_library_never_imports_dagster() -> None:
    offenders = [str(p) for p in (ROOT / "rotation_platform").rglob("*.py")
                 if any(line.strip().startswith(("import dagster", "from dagster"))
                        for line in p.read_text(encoding="utf-8").splitlines())]
    assert offenders == []


def test_graph_declares_every_fuse_as_a_check(demo_env) -> None:
    defs = fresh_defs()
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    names = {n for _, n in checks}
    assert set(FUSES) <= names and "quality_gate" in names
    assert {f"{m}_threshold" for m in ("annual_return", "max_drawdown", "sharpe", "monthly_win_rate",
                                       "annual_turnover")} <= names
    specs = {(s.asset_key.to_user_string(), s.name): s for a in defs.assets for s in getattr(a, "check_specs", [])}
    assert all(specs[k].blocking for k in specs if k[1] in FUSES or k[1] == "quality_gate")
    assert not any(specs[k].blocking for k in specs if k[1].endswith("_threshold"))
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(POOL_ASSETS) | {"pool_metrics_summary", "session_snapshot"} <= keys


def test_whole_graph_one_session_all_pools(demo_env) -> None:
    defs = fresh_defs()
    data = demo_env / "data"
    with dg.DagsterInstance.get() as instance:
        for pool in ("A_SHARE", "QDII", "OTHER"):
            result = run_daily(defs, instance, pool, [SESSION])
            assert result.success
            assert materialised_assets(result) == set(POOL_ASSETS)
            outcomes = check_outcomes(result)
            for fuse in FUSES:
                assert any(k.endswith(":" + fuse) and ok for k, ok in outcomes.items()), (pool, fuse, outcomes)
            assert outcomes["prices:quality_gate"]
            panel = read_value(data / "prices" / pool / SESSION)
            assert isinstance(panel, PricePanel) and list(panel.sessions) == [pd.Timestamp(SESSION)]
            factors = read_value(data / "factor_panel" / pool / SESSION)
            assert factors.index.names == ["session", "symbol"] and factors.shape[1] >= 200
            assert factors.notna().to_numpy().mean() > 0.8
            screen = read_value(data / "factor_screen" / pool / SESSION)
            assert 8 <= int(screen["selected"].sum()) <= 10
            wfo = json.loads((data / "wfo_result" / pool / f"{SESSION}.json").read_text())
            assert wfo["session"] == SESSION and wfo["live"]["params"] and wfo["reoptimised_at"] <= SESSION
            assert wfo["reoptimised_at"] == "2024-12-02"  # the first session of December
            bt = read_value(data / "backtest" / pool / SESSION)
            assert bt.index.equals(pd.DatetimeIndex([SESSION], name="session")) and bt["equity"].iloc[0] > 0
            target = read_value(data / "target_portfolio" / pool / SESSION)
            weights = target["target_weight"]
            assert 0.0 < weights.sum() <= 1.0 + 1e-9 and (weights >= 0).all()
            assert (target["target_shares"] % 100 == 0).all()
            assert (target["trade_session"] == pd.Timestamp("2025-01-02")).all()
            meta = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node(
                "pool_chain")}  # the chain is one step: one node materialises every asset
            for key in ("pools_used", "engine_version", "price_field", "generated_at", "config_hash", "data_hash"):
                assert key in meta["target_portfolio"]
            bt_meta = meta["backtest"]
            assert bt_meta["equity_curve"].value.startswith("![equity](data:image/png;base64,")
            assert isinstance(bt_meta[f"sharpe · {pool}"].value, float)  # numbers keyed by pool (one plot each)
        summary = run_summary(defs, instance, [SESSION])
        assert summary.success
    table = read_value(data / "pool_metrics_summary" / SESSION)
    assert list(table.index.get_level_values("pool")) == ["A_SHARE", "QDII", "OTHER", "COMBINED"]
    rows = table.droplevel("session")
    expected = 0.7 * rows.loc["A_SHARE", "annual_return"] + 0.3 * rows.loc["QDII", "annual_return"]
    assert abs(rows.loc["COMBINED", "annual_return"] - expected) < 1e-12
    manifest = json.loads((data / "snapshots" / SESSION / "manifest.json").read_text())
    assert set(manifest["assets"]) == set(POOL_ASSETS) | {"pool_metrics_summary"}
    assert all(len(v) == 3 for k, v in manifest["assets"].items() if k != "pool_metrics_summary")


def test_partitions_are_xshg_sessions(demo_env) -> None:
    fresh_defs()
    from assets.partitions import parse_key, pool_session_partitions, session_partitions
    from rotation_platform.calendars import get_calendar

    keys = session_partitions.get_partition_keys()
    sessions = get_calendar("XSHG").sessions(pd.Timestamp(keys[0]), pd.Timestamp(keys[-1]))
    assert keys == [str(d.date()) for d in sessions]
    assert keys[0] == "2019-01-02"
    assert not [k for k in keys if "2024-10-01" <= k <= "2024-10-07"]
    assert "2024-10-08" in keys and "2024-09-30" in keys
    assert parse_key("QDII|2024-10-08") == ("QDII", pd.Timestamp("2024-10-08"))
    assert len(pool_session_partitions.get_partition_keys()) == 3 * len(keys)
