"""The jobs' executor: Dagster's in-process executor, plus the repair of job-page range runs.

What Dagster 1.13 does with a backfill launched from a job's page (``launchPartitionBackfill`` with a
partition-set ``selector``): for a single-run backfill policy the backfill daemon
(``dagster._core.execution.job_backfill.submit_backfill_runs``) turns the selected keys into key ranges
(one per pool for a session range) and creates one run per range with the tags of the range's *first*
partition minus ``dagster/partition`` -- that is ``dagster/partition/pool`` and
``dagster/partition/session`` of the first key -- plus ``dagster/asset_partition_range_start/end``.
The planned materialisations and the backfill's progress use the range tags (all sessions), but inside
the run ``StepExecutionContext.partition_key_range`` prefers the per-dimension tags, so
``context.partition_keys``, the IO manager's keys and the materialisation events cover the first
partition only: the backfill reports N/N done with one partition computed.

Runs of the Catalog (asset backfills), of ``python -m jobs.main`` and of the launch dialog's "single run"
option carry the range tags only and are not affected. :class:`RangeRunExecutor` removes the stray
per-dimension tags from the run its steps see when a run carries both and the range holds more than
that one partition (the run record keeps its tags); the steps then see the whole range, exactly like a
Catalog backfill. ``assets.partitions.run_groups`` refuses a run that reaches a step unrepaired.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
from dagster._core.definitions.executor_definition import IN_PROC_CONFIG, _core_in_process_executor_creation
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.executor.in_process import InProcessExecutor

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
DIMENSION_TAG_PREFIX = "dagster/partition/"


def range_run_tags(tags: dict[str, str]) -> dict[str, str] | None:
    """The tags a range run should carry when ``tags`` mix a range spanning several keys with the
    per-dimension tags of one partition; None when nothing needs repairing."""
    start, end = tags.get(RANGE_START), tags.get(RANGE_END)
    if not start or not end or start == end:
        return None
    if not any(t.startswith(DIMENSION_TAG_PREFIX) for t in tags):
        return None
    return {k: v for k, v in tags.items() if not k.startswith(DIMENSION_TAG_PREFIX)}


class RangeRunExecutor(InProcessExecutor):
    """In-process execution; a job-page range run is executed over its whole range (see the module)."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan) -> Iterator[DagsterEvent]:
        run = plan_context.dagster_run
        fixed = range_run_tags(dict(run.tags))
        if fixed is not None:
            dropped = sorted(set(run.tags) - set(fixed))
            plan_context = PlanOrchestrationContext(
                plan_data=plan_context.plan_data._replace(dagster_run=run.with_tags(fixed)),
                log_manager=plan_context.log, executor=plan_context.executor,
                output_capture=plan_context.output_capture, resume_from_failure=plan_context.resume_from_failure)
            yield DagsterEvent.engine_event(
                plan_context,
                f"range run {run.tags[RANGE_START]}..{run.tags[RANGE_END]}: executing the whole range; ignoring "
                f"{', '.join(f'{t}={run.tags[t]}' for t in dropped)} (the first partition's tags, which a job-page "
                f"backfill adds)",
                event_specific_data=EngineEventData(),
            )
        yield from super().execute(plan_context, execution_plan)


@dg.executor(name="in_process", config_schema=IN_PROC_CONFIG)
def range_run_executor(init_context) -> RangeRunExecutor:
    """Executes every step in one process (as ``dagster.in_process_executor``); a run launched from a
    job's page over a partition range computes the whole range."""
    base = _core_in_process_executor_creation(init_context.executor_config)
    return RangeRunExecutor(retries=base.retries, step_dependency_config=base.step_dependency_config,
                            marker_to_close=base.marker_to_close)
