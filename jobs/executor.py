"""The jobs' executors: in one process, one process per step, or on Celery workers -- each with the repair
of job-page range runs; chosen by ``orchestration.executor`` (:func:`executor_for`).

Range runs launched from a job's page
-------------------------------------
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
option carry the range tags only and are not affected. Every executor here removes the stray
per-dimension tags from the run its steps see when a run carries both and the range holds more than
that one partition (the run record keeps its tags); the steps then see the whole range, exactly like a
Catalog backfill. ``assets.partitions.run_groups`` refuses a run that reaches a step unrepaired. Where
the repair happens:

* in-process and multiprocess: at plan-orchestration time, on the plan context -- the multiprocess
  executor hands each child process the run object of that context;
* Celery: a worker loads the run from the instance by id, so the repair happens again in the worker's
  task (:func:`execute_step_task`), which is why the workers run this module's app
  (``-A jobs.executor:celery_app``), not ``dagster_celery.app``.

Executors
---------
``in_process`` (the default) runs every step in the run's process. ``multiprocess`` runs each step in a
process of its own (``orchestration.max_concurrent`` at a time); ``celery`` sends each step to the
queue ``orchestration.celery.queue`` of the broker ``orchestration.celery.broker`` (results in
``orchestration.celery.backend``), where workers started with ``celery -A jobs.executor:celery_app worker
-Q <queue>`` (or ``dagster-celery worker start -A jobs.executor:celery_app -q <queue>``) execute it.
Passwords come from ``ROTATION_ORCHESTRATION__CELERY__BROKER_PASSWORD`` /
``ROTATION_ORCHESTRATION__CELERY__BACKEND_PASSWORD`` and are never printed (Celery masks them).

The steps of a run on the multiprocess and Celery executors are loaded in another process: from
``definitions.defs``, built from the file ``ROTATION_CONFIG`` names there. :func:`reconstructable_job`
sets ``ROTATION_CONFIG`` to the absolute path of the run's file before children are started, and a
Celery step carries the hash of the orchestrating process's configuration: a worker whose configuration
differs (another file, another data folder, another ``ROTATION_*`` override) refuses the step with one
line instead of writing elsewhere.

A worker that dies while it executes a step (killed, out of memory, the machine gone) does not lose the
step: tasks are acknowledged only when they finish (``acks_late``; ``reject_on_worker_lost`` when only the
worker's pool process dies), so the broker hands the step to another worker, which executes it again from
its inputs; the orchestrating run waits for that result. Values are written by overwriting their
partitions, so the re-execution stores each partition once. No Dagster ``RetryPolicy`` is set: a step
that *fails* (a fuse, bad data) fails the same way when repeated.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
)
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.executor.multiprocess import MultiprocessExecutor

if TYPE_CHECKING:
    from rotation_platform.config import PlatformConfig
    from rotation_platform.config.models import CeleryConfig

ROOT = Path(__file__).resolve().parents[1]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
DIMENSION_TAG_PREFIX = "dagster/partition/"
#: the Celery task name the orchestrator sends and the workers execute (dagster-celery's)
EXECUTE_PLAN_TASK = "execute_plan"

__all__ = ["RangeRunExecutor", "RangeRunMultiprocessExecutor", "RangeRunCeleryExecutor", "range_run_tags",
           "range_run_executor", "multiprocess_range_run_executor", "celery_range_run_executor", "executor_for",
           "reconstructable_job", "execute_job", "make_celery_app", "celery_url"]


def range_run_tags(tags: Mapping[str, str]) -> dict[str, str] | None:
    """The tags a range run should carry when ``tags`` mix a range spanning several keys with the
    per-dimension tags of one partition; None when nothing needs repairing."""
    start, end = tags.get(RANGE_START), tags.get(RANGE_END)
    if not start or not end or start == end:
        return None
    if not any(t.startswith(DIMENSION_TAG_PREFIX) for t in tags):
        return None
    return {k: v for k, v in tags.items() if not k.startswith(DIMENSION_TAG_PREFIX)}


def _repair_message(tags: Mapping[str, str], fixed: Mapping[str, str]) -> str:
    dropped = sorted(set(tags) - set(fixed))
    return (f"range run {tags[RANGE_START]}..{tags[RANGE_END]}: executing the whole range; ignoring "
            f"{', '.join(f'{t}={tags[t]}' for t in dropped)} (the first partition's tags, which a job-page "
            f"backfill adds)")


class _RangeRunRepair:
    """Mixin for an executor: the plan is orchestrated with the repaired run (see the module)."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan) -> Iterator[DagsterEvent]:
        run = plan_context.dagster_run
        fixed = range_run_tags(dict(run.tags))
        if fixed is not None:
            plan_context = PlanOrchestrationContext(
                plan_data=plan_context.plan_data._replace(dagster_run=run.with_tags(fixed)),
                log_manager=plan_context.log, executor=plan_context.executor,
                output_capture=plan_context.output_capture, resume_from_failure=plan_context.resume_from_failure)
            yield DagsterEvent.engine_event(plan_context, _repair_message(run.tags, fixed),
                                            event_specific_data=EngineEventData())
        yield from super().execute(plan_context, execution_plan)  # type: ignore[misc]


class RangeRunExecutor(_RangeRunRepair, InProcessExecutor):
    """In-process execution; a job-page range run is executed over its whole range (see the module)."""


class RangeRunMultiprocessExecutor(_RangeRunRepair, MultiprocessExecutor):
    """One process per step; a job-page range run is executed over its whole range (each child process
    receives the repaired run)."""


def _rebase(base: object, cls: type) -> Any:
    """``base`` (an executor Dagster built from its config) as an instance of the subclass ``cls``."""
    obj = cls.__new__(cls)
    obj.__dict__.update(base.__dict__)
    return obj


@dg.executor(name="in_process", config_schema=IN_PROC_CONFIG)
def range_run_executor(init_context) -> RangeRunExecutor:
    """Executes every step in one process (as ``dagster.in_process_executor``); a run launched from a
    job's page over a partition range computes the whole range."""
    base = _core_in_process_executor_creation(init_context.executor_config)
    return RangeRunExecutor(retries=base.retries, step_dependency_config=base.step_dependency_config,
                            marker_to_close=base.marker_to_close)


@dg.executor(name="multiprocess", config_schema=MULTI_PROC_CONFIG,
             requirements=dg.multiple_process_executor_requirements())
def multiprocess_range_run_executor(init_context) -> RangeRunMultiprocessExecutor:
    """Executes each step in a process of its own (as ``dagster.multiprocess_executor``); a run launched
    from a job's page over a partition range computes the whole range."""
    return _rebase(_core_multiprocess_executor_creation(init_context.executor_config), RangeRunMultiprocessExecutor)


# ------------------------------------------------------------------------------------------------- Celery
def celery_url(url: str, password: Any = None) -> str:
    """``url`` with ``password`` (a ``SecretStr`` or None) as its password; the result is a secret."""
    if password is None:
        return url
    secret = password.get_secret_value() if hasattr(password, "get_secret_value") else str(password)
    if not secret:
        return url
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(secret, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def make_celery_app(celery: CeleryConfig, *, expected_hash: str | None = None):
    """The Celery app of ``orchestration.celery``: the orchestrator sends steps with it, the workers
    (``-A jobs.executor:celery_app``) execute them; ``expected_hash`` is the workers' configuration's, which each step must carry."""
    from celery import Celery
    from kombu import Exchange, Queue

    app = Celery("rotation", broker=celery_url(celery.broker, celery.broker_password),
                 backend=celery_url(celery.backend, celery.backend_password))
    queue = celery.queue
    app.conf.update(
        task_queues=[Queue(queue, Exchange(queue, type="direct"), routing_key=queue)],
        task_default_queue=queue, task_default_exchange=queue, task_default_routing_key=queue,
        task_create_missing_queues=False,
        # a step is acknowledged when it has finished: a worker lost mid-step leaves it to another worker
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a busy worker does not hold steps another could start
        task_track_started=True, task_serializer="json", result_serializer="json", accept_content=["json"],
        broker_connection_retry_on_startup=True,
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
    )

    @app.task(bind=True, name=EXECUTE_PLAN_TASK, acks_late=True, reject_on_worker_lost=True)
    def execute_plan(task, execute_step_args_packed, executable_dict, config_hash=None):
        return execute_step_task(task, execute_step_args_packed, executable_dict, config_hash,
                                 expected_hash=expected_hash)

    return app


def execute_step_task(task, execute_step_args_packed, executable_dict, config_hash: str | None = None, *,
                      expected_hash: str | None = None) -> list[str]:
    """A worker's task: execute one step of a run (dagster-celery's ``execute_plan``, plus the range-run
    repair and the configuration check); returns the serialised events."""
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from dagster._core.execution.api import create_execution_plan, execute_plan_iterator
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import serialize_value, unpack_value

    from rotation_platform.errors import ConfigError

    if config_hash and expected_hash and config_hash != expected_hash:
        raise ConfigError(os.environ.get("ROTATION_CONFIG", "ROTATION_CONFIG"), [(
            "ROTATION_CONFIG", f"this worker's configuration (hash {expected_hash[:12]}) is not the run's "
                               f"({config_hash[:12]}); start the worker with the run's ROTATION_CONFIG and "
                               "ROTATION_* settings")])
    args = unpack_value(execute_step_args_packed, as_type=ExecuteStepArgs)
    recon_job = ReconstructableJob.from_dict(executable_dict)
    with dg.DagsterInstance.from_ref(args.instance_ref) as instance:
        run = instance.get_run_by_id(args.run_id)
        if run is None:
            raise RuntimeError(f"run {args.run_id} is not in the instance this worker sees "
                               f"({args.instance_ref.local_artifact_storage_data!r}); give it the run's DAGSTER_HOME")
        fixed = range_run_tags(dict(run.tags))
        if fixed is not None:
            run = run.with_tags(fixed)
        steps = ", ".join(args.step_keys_to_execute or [])
        plan = create_execution_plan(recon_job, run.run_config, step_keys_to_execute=args.step_keys_to_execute,
                                     known_state=args.known_state)
        from dagster_celery.core_execution_loop import DELEGATE_MARKER
        from dagster_celery.executor import CeleryExecutor

        events = [instance.report_engine_event(
            f"Executing steps {steps} in celery worker", run,
            EngineEventData({"step_keys": steps, "Celery worker": task.request.hostname,
                             "pid": str(os.getpid()), "redelivered": str(bool(
                                 (task.request.delivery_info or {}).get("redelivered")))},
                            marker_end=DELEGATE_MARKER),
            CeleryExecutor, step_key=plan.step_handle_for_single_step_plans().to_key())]
        events.extend(execute_plan_iterator(execution_plan=plan, job=recon_job, dagster_run=run, instance=instance,
                                            retry_mode=args.retry_mode, run_config=run.run_config))
        return [serialize_value(event) for event in events]


def _celery_executor_class():
    from dagster_celery.executor import CeleryExecutor

    class RangeRunCeleryExecutor(_RangeRunRepair, CeleryExecutor):
        """Each step on a Celery worker (``orchestration.celery``); a job-page range run is executed over
        its whole range (repaired here and in the worker's task)."""

        def __init__(self, retries: RetryMode, celery: CeleryConfig, config_hash: str):
            super().__init__(retries=retries, broker=celery_url(celery.broker, celery.broker_password),
                             backend=celery_url(celery.backend, celery.backend_password),
                             config_source={"task_default_queue": celery.queue})
            self.celery = celery
            self.config_hash = config_hash

        @functools.cached_property
        def app(self):
            return make_celery_app(self.celery)

        def _submit(self, _app, plan_context, step, queue, priority, known_state):
            from dagster._grpc.types import ExecuteStepArgs
            from dagster._serdes import pack_value

            args = ExecuteStepArgs(
                job_origin=plan_context.reconstructable_job.get_python_origin(),
                run_id=plan_context.dagster_run.run_id, step_keys_to_execute=[step.key],
                instance_ref=plan_context.instance.get_ref(), retry_mode=self.retries.for_inner_plan(),
                known_state=known_state, print_serialized_events=True)
            return self.app.send_task(EXECUTE_PLAN_TASK, kwargs={
                "execute_step_args_packed": pack_value(args),
                "executable_dict": plan_context.reconstructable_job.to_dict(),
                "config_hash": self.config_hash}, queue=queue)

        def execute(self, plan_context, execution_plan):
            from dagster_celery.core_execution_loop import core_celery_execution_loop

            return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=self._submit)

    return RangeRunCeleryExecutor


def __getattr__(name: str):
    # ``RangeRunCeleryExecutor`` needs dagster-celery (the ``celery`` extra); ``celery_app`` is the workers'
    # app (``celery -A jobs.executor:celery_app worker``), built from the environment's configuration
    if name == "RangeRunCeleryExecutor":
        return _celery_executor_class()
    if name == "celery_app":
        return _worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _worker_app():
    import sys

    from rotation_platform.config import config_hash, default_config_path, load_config

    # celery puts the working directory on the path only while it imports the app; the steps import the
    # repository's modules (definitions, the instance's event log storage) later
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    config = load_config(default_config_path())
    return make_celery_app(config.orchestration.celery, expected_hash=config_hash(config))


def celery_range_run_executor(celery: CeleryConfig, config_hash: str) -> dg.ExecutorDefinition:
    """The Celery executor for ``orchestration.celery``; ``config_hash`` is checked by the workers."""

    @dg.executor(name="celery", config_schema={"retries": get_retries_config()},
                 requirements=dg.multiple_process_executor_requirements())
    def celery_executor(init_context):
        return _celery_executor_class()(retries=RetryMode.from_config(init_context.executor_config["retries"]),
                                        celery=celery, config_hash=config_hash)

    return celery_executor


def executor_for(config: PlatformConfig) -> dg.ExecutorDefinition:
    """The executor ``orchestration.executor`` names, with the range-run repair."""
    orchestration = config.orchestration
    if orchestration.executor == "multiprocess":
        if orchestration.max_concurrent:
            return multiprocess_range_run_executor.configured({"max_concurrent": orchestration.max_concurrent},
                                                              name="multiprocess")
        return multiprocess_range_run_executor
    if orchestration.executor == "celery":
        try:
            import dagster_celery  # noqa: F401
        except ImportError:
            from rotation_platform.errors import ConfigError

            raise ConfigError("orchestration.executor", [(
                "orchestration.executor", "celery needs dagster-celery; install the project with the 'celery' "
                                          "extra (pip install -e '.[celery]') or choose in_process/multiprocess")]
            ) from None
        from rotation_platform.config import config_hash

        return celery_range_run_executor(orchestration.celery, config_hash(config))
    return range_run_executor


# ------------------------------------------------------------------------------- runs in other processes
def reconstructable_job(job_name: str, config_path: str | os.PathLike | None = None):
    """``job_name`` of ``definitions.defs`` as a job other processes can load: ``ROTATION_CONFIG`` is set to
    the absolute path of ``config_path`` (default: the environment's file) for this process and the ones
    it starts, so the steps' processes build the same definitions."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from rotation_platform.config import default_config_path

    os.environ["ROTATION_CONFIG"] = str(Path(config_path or default_config_path()).resolve())
    repository = ReconstructableRepository.for_module("definitions", "defs", working_directory=str(ROOT))
    job = repository.get_reconstructable_job(job_name)
    # Dagster keeps the last loaded job per process (lru_cache on equal ReconstructableJob values): drop it,
    # so this process uses the definitions loaded now (an earlier run may have loaded other ones)
    type(job).get_definition.cache_clear()
    type(job).get_repository_definition.cache_clear()
    return job


def execute_job(job_name: str, instance: dg.DagsterInstance, *, config_path: str | os.PathLike | None = None,
                partition_key: str | None = None, tags: Mapping[str, str] | None = None,
                run_config: Mapping[str, Any] | None = None, raise_on_error: bool = False):
    """Execute ``job_name`` on its configured executor (any of them) in a persistent ``instance``: one
    partition (``partition_key``) or the range the ``tags`` give; returns Dagster's result (its run id,
    ``success``; read the events from the instance)."""
    import sys

    recon = reconstructable_job(job_name, config_path)
    loaded = sys.modules.get("definitions")
    built_from = getattr(getattr(getattr(loaded, "defs", None), "resources", {}).get("platform"), "config_path", None)
    if built_from is not None and built_from != os.environ["ROTATION_CONFIG"]:
        from rotation_platform.errors import ConfigError

        raise ConfigError(os.environ["ROTATION_CONFIG"], [("ROTATION_CONFIG", (
            f"this process's definitions were built from {built_from}; the steps would load "
            f"{os.environ['ROTATION_CONFIG']}: run the job with the file the definitions were built from "
            "(or import definitions after setting ROTATION_CONFIG)"))])
    run_tags = dict(tags or {})
    if partition_key is not None:
        job_def = recon.get_definition()
        run_tags.update(job_def.get_tags_for_partition_key(partition_key, None))
    return dg.execute_job(recon, instance=instance, tags=run_tags, run_config=dict(run_config or {}),
                          raise_on_error=raise_on_error)
