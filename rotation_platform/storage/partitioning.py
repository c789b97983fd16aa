"""Split a value over the partitions it covers, and combine partitions back into one value.

A single-run backfill hands an asset many partition keys at once; its value then covers all of them.
:func:`split_value` cuts it per partition before a store writes it, :func:`combine_values` rebuilds
one value when a consumer loads several partitions.

Rules
-----
* One partition: the value as it is.
* A ``dict`` whose keys are exactly the partition keys: one entry per partition.
* Time-windowed partitions (a session date, or the time dimension of a multi-partition): price
  panels by session; frames by their time axis (a ``DatetimeIndex`` or the datetime level of a
  ``MultiIndex``, see :func:`~.codec.time_axis`), each row to the partition whose window
  ``[start, end)`` holds it.
* Static dimensions (``pool``...) that differ between the partitions: frames by the index level or
  column named like the dimension.
* Anything else, or a row that falls in none of the partitions, is a
  :class:`~.errors.StorageInputError` naming the asset and partitions: nothing is written.

Combining: price panels are joined over sessions and funds, frames concatenated in partition order,
other values returned as ``{partition key: value}``.

Provenance (:mod:`.provenance`): a frame or panel covering several partitions carries every partition's
record; each part written carries only its own, and a combined frame or panel carries the records of
the partitions it was combined from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.storage.base import Partition
from rotation_platform.storage.codec import time_axis
from rotation_platform.storage.errors import StorageInputError
from rotation_platform.storage.provenance import PROVENANCE_KEY, provenance_of, with_provenance

__all__ = ["PartitionSlice", "split_value", "combine_values"]


@dataclass(frozen=True)
class PartitionSlice:
    """One partition and what selects its rows: a time window ``[start, end)`` (tz-aware
    timestamps) and the values of static dimensions by name."""

    partition: Partition
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None
    static: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.partition.key


def _bounds(window: tuple[pd.Timestamp, pd.Timestamp], index_tz: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, end = (pd.Timestamp(t) for t in window)
    if index_tz is None:
        # naive session labels are wall-clock dates in the partitions' own timezone
        return (start.tz_localize(None) if start.tzinfo else start), (end.tz_localize(None) if end.tzinfo else end)
    return (start.tz_convert(index_tz) if start.tzinfo else start.tz_localize(index_tz),
            end.tz_convert(index_tz) if end.tzinfo else end.tz_localize(index_tz))


def _assign_time(times: pd.DatetimeIndex, slices: Sequence[PartitionSlice], what: str) -> np.ndarray:
    """For each timestamp, the position of the slice whose window holds it; -1 for none.

    Windows that do not overlap (time partitions) are looked up by binary search, so a range of
    thousands of partitions costs O(rows log partitions); overlapping ones take the first that holds.
    """
    out = np.full(len(times), -1, dtype=np.int64)
    if not len(slices) or not len(times):
        return out
    bounds = [_bounds(s.window, times.tz) for s in slices]  # type: ignore[arg-type]
    starts = pd.DatetimeIndex([b[0] for b in bounds]).as_unit("ns").asi8
    ends = pd.DatetimeIndex([b[1] for b in bounds]).as_unit("ns").asi8
    order = np.argsort(starts, kind="stable")
    s_sorted, e_sorted = starts[order], ends[order]
    if len(order) > 1 and not (s_sorted[1:] >= e_sorted[:-1]).all():
        for j, (start, end) in enumerate(bounds):
            inside = (times >= start) & (times < end)
            out[np.asarray(inside) & (out == -1)] = j
        return out
    t = times.as_unit("ns").asi8
    pos = np.searchsorted(s_sorted, t, side="right") - 1
    ok = (pos >= 0) & (t < e_sorted[np.clip(pos, 0, None)])
    out[ok] = order[pos[ok]]
    return out


def _groups(owner: np.ndarray, n: int) -> list[np.ndarray]:
    """Row positions per owner ``0..n-1`` (in row order), in one sort."""
    order = np.argsort(owner, kind="stable")
    cuts = np.searchsorted(owner[order], np.arange(n + 1))
    return [order[cuts[j]: cuts[j + 1]] for j in range(n)]


def _labels(frame: pd.DataFrame, name: str) -> np.ndarray | None:
    if isinstance(frame.index, pd.MultiIndex) and name in frame.index.names:
        return np.asarray(frame.index.get_level_values(name).astype(str), dtype=object)
    if not isinstance(frame.index, pd.MultiIndex) and frame.index.name == name:
        return np.asarray(frame.index.astype(str), dtype=object)
    if name in frame.columns:
        return np.asarray(frame[name].astype(str), dtype=object)
    return None


def split_value(value: Any, slices: Sequence[PartitionSlice], what: str) -> list[tuple[PartitionSlice, Any]]:
    """``(slice, part)`` for each partition; see the module docstring."""
    records = _partition_records(value)
    if records is None:
        return _split(value, slices, what)
    # cut the value without the records (pandas would copy them into every part), then give each part its own
    bare = with_provenance(value, None)
    return [(s, with_provenance(part, records.get(s.key))) for s, part in _split(bare, slices, what)]


def _partition_records(value: Any) -> Mapping[str, Any] | None:
    """``{partition key: provenance record}`` of a frame or panel covering several partitions, else None."""
    prov = value.attrs.get(PROVENANCE_KEY) if isinstance(value, pd.DataFrame) else \
        value.meta.get(PROVENANCE_KEY) if isinstance(value, PricePanel) else None
    parts = prov.get("partitions") if isinstance(prov, Mapping) else None
    return parts if isinstance(parts, Mapping) else None


def _split(value: Any, slices: Sequence[PartitionSlice], what: str) -> list[tuple[PartitionSlice, Any]]:
    if len(slices) == 1:
        return [(slices[0], value)]
    keys = [s.key for s in slices]
    if isinstance(value, Mapping) and set(map(str, value.keys())) == set(keys):
        by_key = {str(k): v for k, v in value.items()}
        return [(s, by_key[s.key]) for s in slices]
    timed = all(s.window is not None for s in slices)
    static_dims = sorted({d for s in slices for d in s.static})
    varying = [d for d in static_dims if len({s.static.get(d) for s in slices}) > 1]
    names = ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")

    if isinstance(value, PricePanel):
        if varying or not timed:
            raise StorageInputError(f"{what}: a price panel covers partitions [{names}] that differ in "
                                    f"{varying or 'a non-time key'}; return a dict keyed by partition key")
        owner = _assign_time(value.sessions, slices, what)
        _check_assigned(owner, value.sessions, what, names)
        groups = _groups(owner, len(slices))
        return [(s, PricePanel({f: value[f].iloc[groups[j]] for f in PRICE_FIELDS}, value.meta))
                for j, s in enumerate(slices)]

    if isinstance(value, pd.DataFrame):
        components: list[np.ndarray] = []
        slice_keys: list[list[Any]] = [[] for _ in slices]
        windows = sorted({s.window for s in slices if s.window is not None}, key=lambda w: w[0])
        if timed and len(windows) > 1:
            axis = time_axis(value)
            if axis is None:
                raise StorageInputError(f"{what}: the frame covers time partitions [{names}] but has no "
                                        "DatetimeIndex or datetime index level to split it by")
            times = pd.DatetimeIndex(value.index if axis == 0 and not isinstance(value.index, pd.MultiIndex)
                                     else value.index.get_level_values(axis))
            position = _assign_time(times, [PartitionSlice(slices[0].partition, w) for w in windows], what)
            _check_assigned(position, times, what, names)
            components.append(position)
            window_position = {w: i for i, w in enumerate(windows)}
            for j, sl in enumerate(slices):
                slice_keys[j].append(window_position[sl.window])
        for dim in varying:
            labels = _labels(value, dim) if dim else None
            if labels is None:
                detail = (f"different {dim!r} values but has no index level or column {dim!r} to split it by"
                          if dim else "no time axis to split it by")
                raise StorageInputError(f"{what}: the frame covers partitions [{names}] with {detail}; return a "
                                        "dict keyed by partition key")
            components.append(labels)
            for j, sl in enumerate(slices):
                slice_keys[j].append(sl.static.get(dim))
        if not components:
            raise StorageInputError(f"{what}: the frame covers partitions [{names}] and nothing in it tells them "
                                    "apart; return a dict keyed by partition key")
        lookup = {tuple(k): j for j, k in enumerate(slice_keys)}
        if len(components) == 1 and not varying:
            # time only: map window positions to slices without building Python tuples per row
            by_window = np.full(len(windows) + 1, -1, dtype=np.int64)
            for k, j in lookup.items():
                by_window[k[0]] = j
            owner = by_window[components[0]]
            rows = None
        else:
            rows = list(zip(*components))
            owner = np.asarray([lookup.get(r, -1) for r in rows], dtype=np.int64)
        if len(owner) and (owner < 0).any():
            first = int(np.argmax(owner < 0))
            bad = rows[first] if rows is not None else (components[0][first],)
            raise StorageInputError(f"{what}: a row ({', '.join(map(str, bad))}) belongs to none of the "
                                    f"partitions [{names}] being written; nothing was stored")
        groups = _groups(owner, len(slices))
        return [(sl, value.iloc[groups[j]]) for j, sl in enumerate(slices)]

    raise StorageInputError(f"{what}: one {type(value).__name__} covers partitions [{names}]; return a dict "
                            "keyed by partition key, or a frame/price panel indexed by session")


def _check_assigned(owner: np.ndarray, times: pd.DatetimeIndex, what: str, names: str) -> None:
    if (owner < 0).any():
        first = times[int(np.argmax(owner < 0))]
        raise StorageInputError(f"{what}: session {first} lies outside the partitions [{names}] being "
                                "written; nothing was stored")


def combine_values(parts: Sequence[tuple[PartitionSlice, Any]]) -> Any:
    """One value from several partitions; see the module docstring."""
    if len(parts) == 1:
        return parts[0][1]
    values = [v for _, v in parts]
    if all(isinstance(v, PricePanel) for v in values):
        frames = {}
        for f in PRICE_FIELDS:
            joined = pd.concat([v[f] for v in values], axis=0, sort=False)
            if joined.index.has_duplicates:
                dup = joined.index[joined.index.duplicated()][0]
                raise StorageInputError(f"partitions {[s.key for s, _ in parts]} overlap on session {dup}")
            frames[f] = joined.sort_index()
        records = _combined_records(parts)
        metas = [{k: x for k, x in v.meta.items() if k != PROVENANCE_KEY} for v in values]
        meta = metas[0] if all(m == metas[0] for m in metas) else {**metas[-1],
                                                                   "partitions": [s.key for s, _ in parts]}
        return with_provenance(PricePanel(frames, meta), records)
    if all(isinstance(v, pd.DataFrame) for v in values):
        records = _combined_records(parts)
        combined = pd.concat([with_provenance(v, None) if PROVENANCE_KEY in v.attrs else v for v in values], axis=0)
        return with_provenance(combined, records) if records is not None else combined
    return {s.key: v for s, v in parts}


def _combined_records(parts: Sequence[tuple[PartitionSlice, Any]]) -> dict[str, Any] | None:
    records = {s.key: provenance_of(v) for s, v in parts}
    if all(r is None for r in records.values()):
        return None
    return {"partitions": records}
