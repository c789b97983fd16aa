"""The configuration chosen when the definitions load decides pools, partitions and messages.

A config whose pools are not the demo's (EQUITY / OVERSEAS / OTHERS) runs end to end through the command
line alone, is what `dagster definitions validate` loads from ``ROTATION_CONFIG``, and is what
``build_defs`` builds from a path, whatever the environment names.
"""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import jsonschema
import pandas as pd

from rotation_platform.config import load_config
from rotation_platform.data.sources import make_source

from rotation_platform.storage.files import read_value
from tests.orchestration.conftest import (
    ROOT,
    SMALL_END,
    SMALL_POOLS,
    fresh_defs,
    small_env,
    write_small_config,
)

POOL_ASSETS = ["prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
               "capacity_report", "target_portfolio"]


def _cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_runs_a_config_with_other_pool_names_end_to_end(tmp_path, monkeypatch) -> None:
    env = small_env(tmp_path)
    config = env.pop("ROTATION_CONFIG")  # the command line alone chooses the file
    result_file = tmp_path / "out" / "orders.json"
    result_file.parent.mkdir()
    proc = _cli(["--config", config, "--json", str(result_file)], env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "DagsterUnknownPartitionError" not in out and "demo.yaml" not in out
    assert f"session {SMALL_END}" in out  # the latest session of the config's data
    for pool in SMALL_POOLS:
        assert f"{pool} target for" in out
    data = tmp_path / "data"
    for pool in SMALL_POOLS:
        for asset in POOL_ASSETS:
            assert list((data / asset / pool).glob(f"{SMALL_END}.*")), (asset, pool)
    table = read_value(data / "pool_metrics_summary" / SMALL_END)
    assert list(table.index.get_level_values("pool")) == [*SMALL_POOLS, "COMBINED"]
    # the Dagster instance of that run holds the config's partition keys
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        for asset in ("prices", "target_portfolio"):
            keys = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey(asset))}
            assert keys == {f"{p}|{SMALL_END}" for p in SMALL_POOLS}, keys
        assert {str(k) for k in instance.get_materialized_partitions(dg.AssetKey("session_snapshot"))} == {SMALL_END}
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="daily"))
        assert sorted(r.tags["dagster/partition/pool"] for r in runs) == sorted(SMALL_POOLS)
    check_result_file(result_file, config, out)


def check_result_file(path, config: str, console: str) -> None:
    """The --json file: valid against its schema, the same numbers as the console, prices at the source's
    raw closes, whole lots, orders = target - current."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "run-result.schema.json").read_text(encoding="utf-8")))
    assert doc["session"] == SMALL_END and [p["pool"] for p in doc["pools"]] == list(SMALL_POOLS)
    cfg = load_config(config, env={})
    source = make_source(cfg)
    for pool in doc["pools"]:
        assert pool["status"] == "ok", pool["reason"]
        assert f"{pool['pool']} target for {pool['trade_session']}: " in console
        assert f"equity {pool['equity']:,.0f} CNY, cash {pool['cash']:,.0f} -> {pool['cash_after']:,.0f} CNY" in console
        assert ("no rebalance" in console) or pool["rebalance"]
        raw = source.read([t["symbol"] for t in pool["targets"]])
        for t in pool["targets"]:
            frame = raw[t["symbol"]].frame.set_index("date")
            assert t["price"] == float(frame.loc[pd.Timestamp(SMALL_END), "close"])
            assert t["order_shares"] == t["target_shares"] - t["current_shares"]
            if t["order_shares"] > 0:
                assert t["order_shares"] % t["lot"] == 0
            if not pool["rebalance"]:
                assert t["order_shares"] == 0
        assert sum(o["shares"] for o in pool["orders"]) == sum(abs(t["order_shares"]) for t in pool["targets"])
        names = {(f["asset"], f["check"]) for f in pool["fuses"]}
        assert ("target_portfolio", "target_vol_scaling") in names and ("prices", "quality_gate") in names
        assert pool["metrics"]["capacity_cny"] is None or pool["metrics"]["capacity_cny"] > 0


def test_cli_messages_name_the_chosen_config(tmp_path) -> None:
    env = small_env(tmp_path)
    config = env.pop("ROTATION_CONFIG")
    proc = _cli(["--config", config, "--pools", "QDII"], env, timeout=120)
    assert proc.returncode == 3  # a configuration error
    assert "unknown pools ['QDII']; configured: ['EQUITY', 'OVERSEAS', 'OTHERS'] (config small)" in proc.stderr
    # a broken file is reported as that file, not as the demo
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"extends: {config}\nfactors:\n  lag: zero\n", encoding="utf-8")
    proc = _cli(["--config", str(broken)], env, timeout=120)
    assert proc.returncode == 3 and str(broken) in proc.stderr and "factors.lag" in proc.stderr
    assert "demo.yaml" not in proc.stdout + proc.stderr


def test_definitions_validate_loads_the_environments_config(tmp_path) -> None:
    """`dagster definitions validate -w workspace.yaml` loads the code location as the webserver, daemon
    and code server do: from ROTATION_CONFIG."""
    env = small_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Validation successful" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    env["ROTATION_CONFIG"] = str(tmp_path / "missing.yaml")
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "missing.yaml" in proc.stdout + proc.stderr and "demo.yaml" not in proc.stdout + proc.stderr


def test_build_defs_uses_the_given_file_whatever_the_environment_names(demo_env, monkeypatch) -> None:
    """ROTATION_CONFIG names the demo; build_defs(path) builds the small config's pools, partitions,
    resources, schedule and sensors all the same."""
    path = write_small_config(demo_env / "config", data_dir=demo_env / "small-data")
    fresh_defs()  # the module-level definitions: the demo of the environment
    from definitions import build_defs

    monkeypatch.delenv("ROTATION_STORAGE__DATA_DIR")  # the file's storage, not the demo fixture's override
    defs = build_defs(path)
    job = defs.resolve_job_def("daily")
    pdef = job.partitions_def
    assert pdef.get_partitions_def_for_dimension("pool").get_partition_keys() == list(SMALL_POOLS)
    assert pdef.get_partitions_def_for_dimension("session").get_partition_keys()[0] == "2025-06-03"
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if key.to_user_string() in POOL_ASSETS:
            assert node.partitions_def is pdef
        else:
            assert node.partitions_def == pdef.get_partitions_def_for_dimension("session")
    assert defs.resolve_job_def("session_summary").partitions_def.get_partition_keys()[0] == "2025-06-03"
    platform = defs.resources["platform"]
    assert platform.config_path == str(path.resolve()) and platform.config.pool_names == tuple(SMALL_POOLS)
    assert defs.resources["io_manager"].base_dir == str(demo_env / "small-data")
    schedule = defs.resolve_schedule_def("daily_after_close")
    when = pd.Timestamp("2025-09-26 18:00", tz="Asia/Shanghai").to_pydatetime()
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as ctx:
        result = schedule.evaluate_tick(ctx)
    assert sorted(str(r.partition_key) for r in result.run_requests) == sorted(f"{p}|2025-09-26" for p in SMALL_POOLS)
    # a key of the demo's pools is not a partition of these definitions
    assert not pdef.has_partition_key("QDII|2025-09-26") and pdef.has_partition_key("OVERSEAS|2025-09-26")
    # the environment's definitions are still the demo's
    import definitions

    assert definitions.defs.resolve_job_def("daily").partitions_def.get_partitions_def_for_dimension(
        "pool").get_partition_keys() == ["A_SHARE", "QDII", "OTHER"]
