"""Runs over a partition range carrying the first partition's per-dimension tags (a job-page backfill).

Dagster 1.13's job backfills of a multi-partitioned job with a single-run backfill policy create one run
per key range with the range tags *and* ``dagster/partition/<dim>`` of the range's first key
(``job_backfill.submit_backfill_runs``); inside such a run ``context.partition_keys``, the IO manager and
the materialisation events cover that first key only. These tests pin that behaviour on a tiny asset,
show that the project's executor (``jobs.executor``) executes the whole range, and that a step reached
by such a run unrepaired refuses it. The same launch through the webserver and daemon is tested in
``tests/ui/test_backfills.py``.
"""

from __future__ import annotations

import warnings

import dagster as dg
import pytest

from jobs.executor import range_run_executor, range_run_tags
from tests.orchestration.conftest import QUIET, fresh_defs, write_small_config

POOLS = dg.StaticPartitionsDefinition(["A", "B"])
DAYS = dg.DailyPartitionsDefinition("2025-01-01", end_date="2025-01-10")
MULTI = dg.MultiPartitionsDefinition({"pool": POOLS, "session": DAYS})
JOB_BACKFILL_TAGS = {  # what the backfill daemon gives the run of the range A|01-02 .. A|01-05
    "dagster/asset_partition_range_start": "A|2025-01-02",
    "dagster/asset_partition_range_end": "A|2025-01-05",
    "dagster/partition/pool": "A",
    "dagster/partition/session": "2025-01-02",
}


def _tiny(context) -> dict[str, int]:
    return {str(k): i for i, k in enumerate(context.partition_keys)}


with warnings.catch_warnings():  # single-run backfill policies are beta
    warnings.simplefilter("ignore", dg.BetaWarning)
    tiny = dg.asset(name="tiny", partitions_def=MULTI, backfill_policy=dg.BackfillPolicy.single_run())(_tiny)


@dg.io_manager
def _dict_io_manager():
    class Manager(dg.IOManager):
        def handle_output(self, context, obj):
            assert set(obj) == {str(k) for k in context.asset_partition_keys}

        def load_input(self, context):
            raise NotImplementedError

    return Manager()


def _job(executor):
    return dg.Definitions(assets=[tiny], resources={"io_manager": _dict_io_manager},
                          jobs=[dg.define_asset_job("tiny_job", executor_def=executor)]).resolve_job_def("tiny_job")


def dagster_in_process_job():
    return _job(dg.in_process_executor)


def project_executor_job():
    return _job(range_run_executor)


def _materialised(instance, run_id) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return sorted(r.event_log_entry.dagster_event.partition for r in records)


def test_tags_to_repair() -> None:
    assert range_run_tags(JOB_BACKFILL_TAGS) == {k: v for k, v in JOB_BACKFILL_TAGS.items()
                                                 if not k.startswith("dagster/partition/")}
    only_range = {k: v for k, v in JOB_BACKFILL_TAGS.items() if "range" in k}
    assert range_run_tags(only_range) is None  # a Catalog backfill or a single run of a range
    one = {"dagster/asset_partition_range_start": "A|2025-01-02", "dagster/asset_partition_range_end": "A|2025-01-02",
           "dagster/partition/pool": "A", "dagster/partition/session": "2025-01-02"}
    assert range_run_tags(one) is None
    assert range_run_tags({"dagster/partition": "A|2025-01-02", "dagster/partition/pool": "A"}) is None


def test_dagster_computes_the_first_partition_only_and_the_executor_the_whole_range(tmp_path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        plain = dg.execute_job(dg.reconstructable(dagster_in_process_job), instance, tags=JOB_BACKFILL_TAGS)
        assert plain.success
        assert _materialised(instance, plain.run_id) == ["A|2025-01-02"]  # Dagster's own executor: 1 of 4
        planned = instance.get_records_for_run(plain.run_id,
                                               of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
        # ... while the run planned all four (by its range tags): "4/4 done" with one computed
        assert sorted(r.event_log_entry.dagster_event.partition for r in planned) == [f"A|2025-01-0{d}"
                                                                                       for d in range(2, 6)]

        fixed = dg.execute_job(dg.reconstructable(project_executor_job), instance, tags=JOB_BACKFILL_TAGS)
        assert fixed.success
        assert _materialised(instance, fixed.run_id) == [f"A|2025-01-0{d}" for d in range(2, 6)]
        engine = [r.event_log_entry.dagster_event.message for r in instance.get_records_for_run(
            fixed.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records]
        assert any("executing the whole range" in (m or "") for m in engine), engine
        # the stored run keeps the tags the daemon gave it
        assert instance.get_run_by_id(fixed.run_id).tags["dagster/partition/session"] == "2025-01-02"


@pytest.fixture()
def small_defs(tmp_path, monkeypatch):
    path = write_small_config(tmp_path / "config", data_dir=tmp_path / "data")
    monkeypatch.setenv("ROTATION_CONFIG", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return fresh_defs()


def test_a_step_refuses_a_range_run_it_would_half_compute(small_defs, tmp_path) -> None:
    """``execute_in_process`` runs its own executor (no repair): the first step refuses the run in one line."""
    tags = {"dagster/asset_partition_range_start": "OVERSEAS|2025-09-22",
            "dagster/asset_partition_range_end": "OVERSEAS|2025-09-26",
            "dagster/partition/pool": "OVERSEAS", "dagster/partition/session": "2025-09-22"}
    result = small_defs.resolve_job_def("daily").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=tags, run_config=QUIET, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "pool_chain"
    error = failure.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    line = error.message.strip()
    assert "\n" not in line
    assert "OVERSEAS|2025-09-22..OVERSEAS|2025-09-26 (5 partitions)" in line and "compute 1 of them" in line
    assert "asset catalog" in line and "python -m jobs.main" in line
    assert not list((tmp_path / "data").rglob("*.parquet"))
