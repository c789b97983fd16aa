"""Turn the library's plain summaries and fuse results into Dagster metadata and check results."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import dagster as dg
import numpy as np

from rotation_platform.production.fuses import FuseResult
from rotation_platform.storage.errors import StorageUnavailableError

#: every per-pool, per-session asset computes a whole partition range in one pass
SINGLE_RUN = dg.BackfillPolicy.single_run()


def to_dagster_metadata(summary: Mapping[str, object], markdown_keys: tuple[str, ...] = ()) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in summary.items():
        if key in markdown_keys and isinstance(value, str):
            out[key] = dg.MetadataValue.md(value)
        elif isinstance(value, bool | np.bool_):
            out[key] = dg.MetadataValue.bool(bool(value))
        elif isinstance(value, int | np.integer):
            out[key] = dg.MetadataValue.int(int(value))
        elif isinstance(value, float | np.floating):
            out[key] = dg.MetadataValue.float(float(value))
        elif isinstance(value, (dict, list)):
            out[key] = dg.MetadataValue.json(value)
        elif value is None:
            out[key] = dg.MetadataValue.text("")
        else:
            out[key] = dg.MetadataValue.text(str(value))
    return out


def check_spec(name: str, asset: str, description: str, *, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description)


def check_result(fuse: FuseResult, asset: str) -> dg.AssetCheckResult:
    """A fuse as an asset check result; WARN fuses never block."""
    metadata: dict[str, object] = {"summary": dg.MetadataValue.text(fuse.summary),
                                   "details": dg.MetadataValue.json(_jsonable(fuse.details))}
    if fuse.table:
        metadata["table"] = dg.MetadataValue.md(fuse.table)
    for key, value in fuse.details.items():
        if isinstance(value, float) and np.isfinite(value):
            metadata[key] = dg.MetadataValue.float(value)
    severity = dg.AssetCheckSeverity.ERROR if fuse.severity == "ERROR" else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(check_name=fuse.name, asset_key=asset, passed=bool(fuse.passed), severity=severity,
                               metadata=metadata, description=fuse.summary)


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


#: per-partition metadata is recorded for at most this many sessions of a run (the latest): Dagster
#: checks each call against every key of the run's range, so a long backfill would pay that squared
PER_PARTITION_METADATA = 60


def metadata_tail(keys: Sequence[str], sessions: Sequence[object]) -> list[tuple[str, object]]:
    """The (partition key, session) pairs of the run that get their own metadata: the latest ones."""
    pairs = list(zip(keys, sessions))
    return pairs[-PER_PARTITION_METADATA:]


def per_partition(context: dg.AssetExecutionContext, asset: str, pairs: Sequence[tuple[str, object]],
                  row: Callable[[object], Mapping[str, object]],
                  last_extra: Mapping[str, object] | None = None) -> None:
    """Numeric metadata for each of ``pairs`` (Dagster plots them over time), plus markdown and pictures
    on the last one. A single-partition run records everything through ``add_output_metadata``."""
    for i, (key, session) in enumerate(pairs):
        meta = to_dagster_metadata(row(session))
        if last_extra and i == len(pairs) - 1:
            meta.update(last_extra)
        context.add_asset_metadata(meta, asset_key=asset, partition_key=key)


@contextlib.contextmanager
def retry_on_service_errors(attempts: int = 3, wait_s: float = 10.0) -> Iterator[None]:
    """Turn a server that is down (after the store's own retries) into a step retry; everything else
    fails at once."""
    try:
        yield
    except (StorageUnavailableError, ConnectionError, TimeoutError) as exc:
        raise dg.RetryRequested(max_retries=attempts, seconds_to_wait=wait_s) from exc


def pool_value(groups: Sequence[tuple[str, object, Sequence[object], Sequence[str]]], values: Sequence[object]) -> object:
    """The output of a run: one pool's value as it is (the IO manager splits it by session), or, for a
    run over several pools, a dict of each partition's own value."""
    if len(values) == 1:
        return values[0]
    out: dict[str, object] = {}
    for (_, _, sessions, keys), value in zip(groups, values):
        out.update(split_by_session(value, sessions, keys))
    return out


def split_by_session(value: object, sessions: Sequence[object], keys: Sequence[str]) -> dict[str, object]:
    """``{partition key: the value's part for that session}`` for a frame indexed by session (or with a
    ``session`` level), a price panel, or a dict already keyed by partition."""
    import pandas as pd

    from rotation_platform.data.panel import PRICE_FIELDS, PricePanel

    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if len(keys) == 1 and not isinstance(value, PricePanel):
        return {keys[0]: value}
    if isinstance(value, PricePanel):
        return {key: PricePanel({f: value[f].loc[[pd.Timestamp(t)]] for f in PRICE_FIELDS}, value.meta)
                for key, t in zip(keys, sessions)}
    if isinstance(value, pd.DataFrame):
        level = value.index.get_level_values("session") if isinstance(value.index, pd.MultiIndex) else value.index
        groups = pd.Series(range(len(value)), index=pd.DatetimeIndex(level)).groupby(level=0).indices
        return {key: value.iloc[groups[pd.Timestamp(t)]] for key, t in zip(keys, sessions)}
    raise TypeError(f"cannot split a {type(value).__name__} by session")
