"""The log context of a Dagster step: what :func:`step_logs` binds, and Dagster's own records as JSON.

Every asset function of the platform runs its body inside ``with step_logs(context):``. For the block:

* logging is configured in the step's process if nothing configured it (``json`` on standard error; a run
  inside ``python -m jobs.main`` keeps the command line's configuration);
* ``run_id``, ``step`` (the step key), ``asset`` (the step's asset when it has one), ``pool`` and
  ``session`` (from the step's partition keys) are bound on every record. A run over several sessions has
  ``session`` ``first..last``; over several pools, ``pool`` lists them (``A_SHARE,QDII``);
* the step's Dagster log (``context.log``: its messages and the events Dagster logs while the body runs)
  is also written by the platform's JSON handlers, with ``logger`` ``dagster`` and the event type in
  ``dagster_event`` (events at level info or above: Dagster logs them as debug). Dagster's own handling
  (event log, the UI's step logs, its console logger) is unchanged: the records are copied, not taken.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from rotation_platform.observability.logs import ensure_configured, installed_handlers, log_context

__all__ = ["DagsterRecordCopier", "step_fields", "step_logs"]


def _pool_session(key: object) -> tuple[str | None, str | None]:
    dims = getattr(key, "keys_by_dimension", None)
    if isinstance(dims, dict):
        return dims.get("pool"), dims.get("session")
    return None, str(key)


def _joined(values: list[str], range_: bool) -> str | None:
    values = sorted(set(v for v in values if v))
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return f"{values[0]}..{values[-1]}" if range_ else ",".join(values)


def step_fields(context: Any) -> dict[str, object]:
    """``run_id``, ``step``, ``asset``, ``pool``, ``session`` of an asset step's ``context``."""
    fields: dict[str, object] = {"run_id": context.run.run_id}
    try:
        fields["step"] = context.get_step_execution_context().step.key
    except Exception:  # noqa: BLE001 - a context built by hand (direct invocation) has no step
        fields["step"] = str(getattr(context, "op_handle", "")) or None
    try:
        keys = sorted(context.selected_asset_keys, key=str)
    except Exception:  # noqa: BLE001
        keys = []
    fields["asset"] = keys[0].to_user_string() if len(keys) == 1 else None
    pools: list[str] = []
    sessions: list[str] = []
    try:
        partition_keys = context.partition_keys if context.has_partition_key or context.has_partition_key_range else []
    except Exception:  # noqa: BLE001 - not partitioned
        partition_keys = []
    for key in partition_keys:
        pool, session = _pool_session(key)
        pools.append(pool)
        sessions.append(session)
    fields["pool"] = _joined(pools, range_=False)
    fields["session"] = _joined(sessions, range_=True)
    return fields


class DagsterRecordCopier(logging.Handler):
    """Added to a step's ``context.log``: copies each of its records, as its original message, to the
    platform's handlers other than the command line's bare messages (that console stays as it was)."""

    def __init__(self, assets_by_output: dict[str, str] | None = None) -> None:
        super().__init__()
        self.assets_by_output = assets_by_output or {}

    def _asset_of(self, event: Any) -> str | None:
        if event.asset_key is not None:
            return event.asset_key.to_user_string()
        data = event.event_specific_data
        output = getattr(data, "output_name", None) or getattr(getattr(data, "step_output_handle", None),
                                                               "output_name", None)
        return self.assets_by_output.get(output)

    def emit(self, record: logging.LogRecord) -> None:
        meta = record.__dict__.get("dagster_meta") or {}
        event = meta.get("dagster_event") or record.__dict__.get("dagster_event")
        level = max(record.levelno, logging.INFO) if event is not None else record.levelno  # events are DEBUG
        copy = logging.LogRecord("dagster", level, record.pathname, record.lineno,
                                 meta.get("orig_message", record.getMessage()), None, record.exc_info,
                                 record.funcName)
        fields: dict[str, object] = {}
        if event is not None:
            copy.dagster_event = getattr(event, "event_type_value", None)
            with contextlib.suppress(Exception):
                asset = self._asset_of(event)
                if asset is not None:
                    fields["asset"] = asset
        with log_context(**fields):
            for handler in installed_handlers():
                if getattr(handler, "_rotation_log_format", None) != "message" and level >= handler.level:
                    handler.handle(copy)


@contextlib.contextmanager
def step_logs(context: Any, **fields: object) -> Iterator[None]:
    """Bind the step's fields (and ``fields``) for the block and copy its Dagster log to the JSON logs."""
    ensure_configured("json")
    try:
        outputs = {name: key.to_user_string() for name, key in context.assets_def.keys_by_output_name.items()}
    except Exception:  # noqa: BLE001 - not an asset step
        outputs = {}
    copier = DagsterRecordCopier(outputs)
    log = getattr(context, "log", None)
    if isinstance(log, logging.Logger):
        log.addHandler(copier)
    try:
        with log_context(**{**step_fields(context), **fields}):
            yield
    finally:
        if isinstance(log, logging.Logger):
            log.removeHandler(copier)
