"""Backfills launched through the webserver compute every partition they report.

The webserver and ``dagster-daemon`` run on their own port and instance, on a small config whose pools
are not the demo's (EQUITY / OVERSEAS / OTHERS; ``ROTATION_CONFIG``, as ``dagster dev`` would be started).
Over GraphQL, as the UI does, the same five sessions are launched three ways, one pool each:

* EQUITY -- a job-page backfill (Jobs -> daily -> Materialize all -> a pool and a range: a partition-set
  ``selector`` with the job's assets), whose run Dagster tags with the range *and* the first partition's
  per-dimension tags;
* OVERSEAS -- a Catalog backfill (an asset selection and partition keys: an asset backfill);
* OTHERS -- a plain run of the daily job with the range tags (the launch dialog's "single run").

Before that, every pool's five sessions are run as daily runs in process; each path must store every
session, record a materialisation per asset and session, and store exactly the daily runs' bytes.
"""

from __future__ import annotations

import time

import dagster as dg
import pytest

from tests.orchestration.conftest import (
    SMALL_POOLS,
    SMALL_SESSIONS,
    fresh_defs,
    pool_files,
    run_daily,
    small_env,
    stored_files,
)
from tests.ui.services import LOCATION, REPOSITORY, dagster_services, graphql

ASSETS = ["prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
          "capacity_report", "target_portfolio"]
PATHS = {"job_page": "EQUITY", "catalog": "OVERSEAS", "range_run": "OTHERS"}
DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "FAILING")

LAUNCH_BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on PartitionSetNotFoundError { message } ... on UnauthorizedError { message } } }"""
LAUNCH_RUN = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status numPartitions partitionNames runs(limit: 20) { runId status tags { key value } } } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { runId status tags { key value } } } }"""
PARTITION_KEYS = """{ assetNodeOrError(assetKey: {path: ["prices"]}) { ... on AssetNode {
  partitionKeysByDimension { name partitionKeys } } } }"""


def _launched(result: dict, field: str) -> dict:
    assert result[field]["__typename"] in ("LaunchBackfillSuccess", "LaunchRunSuccess"), result
    return result[field]


@pytest.fixture(scope="module")
def backfills(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backfills")
    env = small_env(tmp)
    t0 = time.perf_counter()
    # 1. the daily runs of every pool and session, in process, into the same data folder, then moved aside
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            if key.startswith("ROTATION_"):
                mp.setenv(key, value)
        defs = fresh_defs()
        instance = dg.DagsterInstance.ephemeral()
        for pool in SMALL_POOLS:
            for session in SMALL_SESSIONS:
                assert run_daily(defs, instance, pool, [session]).success, (pool, session)
    (tmp / "data").rename(tmp / "daily")
    t_daily = time.perf_counter() - t0

    # 2. the webserver and the daemon; the three launches at once
    out: dict[str, object] = {"tmp": tmp, "daily_seconds": t_daily}
    with dagster_services(env, tmp / "home", daemon=True) as port:
        out["partition_keys"] = {d["name"]: d["partitionKeys"] for d in
                                 graphql(port, PARTITION_KEYS)["assetNodeOrError"]["partitionKeysByDimension"]}
        assets = [{"path": [a]} for a in ASSETS]
        job_page = _launched(graphql(port, LAUNCH_BACKFILL, {"p": {
            "selector": {"partitionSetName": "daily_partition_set", "repositorySelector": {
                "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
            "partitionNames": [f"{PATHS['job_page']}|{s}" for s in SMALL_SESSIONS],
            "assetSelection": assets, "fromFailure": False, "tags": []}}), "launchPartitionBackfill")
        catalog = _launched(graphql(port, LAUNCH_BACKFILL, {"p": {
            "partitionNames": [f"{PATHS['catalog']}|{s}" for s in SMALL_SESSIONS],
            "assetSelection": assets, "fromFailure": False, "tags": []}}), "launchPartitionBackfill")
        pool = PATHS["range_run"]
        range_run = _launched(graphql(port, LAUNCH_RUN, {"p": {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": "daily"},
            "runConfigData": {}, "executionMetadata": {"tags": [
                {"key": "dagster/asset_partition_range_start", "value": f"{pool}|{SMALL_SESSIONS[0]}"},
                {"key": "dagster/asset_partition_range_end", "value": f"{pool}|{SMALL_SESSIONS[-1]}"}]}}}),
            "launchRun")
        deadline = time.time() + 420
        while True:
            state = {name: graphql(port, BACKFILL, {"id": b["backfillId"]})["partitionBackfillOrError"]
                     for name, b in (("job_page", job_page), ("catalog", catalog))}
            state["range_run"] = graphql(port, RUN, {"id": range_run["run"]["runId"]})["runOrError"]
            finished = [state["job_page"]["status"] in DONE, state["catalog"]["status"] in DONE,
                        state["range_run"]["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            if all(finished):
                break
            if time.time() > deadline:
                raise AssertionError(f"launches did not finish: {state}\n"
                                     + (tmp / "home" / "daemon.log").read_text()[-4000:])
            time.sleep(3)
    out["state"] = state
    out["seconds"] = time.perf_counter() - t0

    # 3. what the instance recorded, by run
    runs = {"job_page": [r["runId"] for r in state["job_page"]["runs"]],
            "catalog": [r["runId"] for r in state["catalog"]["runs"]],
            "range_run": [state["range_run"]["runId"]]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as instance:
            events = {}
            for name, ids in runs.items():
                events[name] = {t: sorted((r.event_log_entry.dagster_event.asset_key.to_user_string(),
                                           r.event_log_entry.dagster_event.partition)
                                          for run_id in ids for r in instance.get_records_for_run(
                                              run_id, of_type=t, limit=10_000).records)
                                for t in (dg.DagsterEventType.ASSET_MATERIALIZATION,
                                          dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)}
            out["events"] = events
            out["run_tags"] = {name: [dict(instance.get_run_by_id(i).tags) for i in ids] for name, ids in runs.items()}
            out["materialised"] = {a: {str(k) for k in instance.get_materialized_partitions(dg.AssetKey(a))}
                                   for a in ASSETS}
    yield out


def test_the_webserver_loads_the_configs_partitions(backfills) -> None:
    keys = backfills["partition_keys"]
    assert keys["pool"] == list(SMALL_POOLS)
    assert keys["session"][0] == "2025-06-03" and set(SMALL_SESSIONS) <= set(keys["session"])


@pytest.mark.parametrize("path", list(PATHS))
def test_every_reported_partition_is_computed_as_a_daily_run_would(backfills, path) -> None:
    pool = PATHS[path]
    keys = [f"{pool}|{s}" for s in SMALL_SESSIONS]
    state = backfills["state"][path]
    if path == "range_run":
        assert state["status"] == "SUCCESS"
    else:
        assert state["status"] == "COMPLETED_SUCCESS" and state["numPartitions"] == len(keys), state
        assert sorted(state["partitionNames"]) == keys
        assert len(state["runs"]) == 1 and state["runs"][0]["status"] == "SUCCESS"  # one single run
    tags = backfills["run_tags"][path][0]
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == \
        (keys[0], keys[-1])
    if path == "job_page":  # Dagster's job backfill: the first partition's per-dimension tags as well
        assert tags["dagster/partition/pool"] == pool and tags["dagster/partition/session"] == SMALL_SESSIONS[0]
    else:
        assert not [t for t in tags if t.startswith("dagster/partition/")]
    expected = sorted((a, k) for a in ASSETS for k in keys)
    events = backfills["events"][path]
    assert events[dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED] == expected
    assert events[dg.DagsterEventType.ASSET_MATERIALIZATION] == expected
    for asset in ASSETS:
        assert {k for k in backfills["materialised"][asset] if k.startswith(f"{pool}|")} == set(keys), asset
    stored = pool_files(stored_files(backfills["tmp"] / "data"), pool)
    daily = pool_files(stored_files(backfills["tmp"] / "daily"), pool)
    assert len(daily) == len(ASSETS) * len(SMALL_SESSIONS)
    assert sorted(stored) == sorted(daily)
    assert [name for name in stored if stored[name] != daily[name]] == []


def test_it_took_a_couple_of_minutes(backfills) -> None:
    assert backfills["seconds"] < 240, (backfills["daily_seconds"], backfills["seconds"])
