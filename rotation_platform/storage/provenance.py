"""What a stored value was computed from, kept with the value itself, and the pools' run records.

Provenance
----------
Every per-pool value records the data hash (the pool's price rows through the session) and the config
hash it was computed from, inside the value, so any reader of any store can check it without Dagster:

* a :class:`pandas.DataFrame` in ``frame.attrs["provenance"]`` (the pandas metadata of the stored
  Arrow schema, which every backend and the cache keep; see :mod:`.codec`);
* a :class:`~rotation_platform.data.panel.PricePanel` in ``panel.meta["provenance"]``;
* a JSON record (``dict``) under its key ``"provenance"``.

The record is ``{"data_hash": ..., "config_hash": ...}``, the config hash being :func:`results_config_hash`:
the configuration without the sections no computed value depends on (``storage``, ``notifications``),
so moving the data to another backend or folder leaves every value current. A value covering several
partitions (a run over a session range, before the IO manager splits it) carries ``{"partitions": {partition key: record}}``
and each stored partition gets its own record (:func:`narrow`). The record holds nothing that changes
from one run to the next, so a rerun on the same inputs stores the same bytes.

Run records
-----------
A pool's chain of assets runs from ``prices`` to ``target_portfolio``. The IO manager writes a record
per pool-session partition under :data:`RUN_RECORD_ASSET`: ``state: started`` (with the hashes) before
it stores a run's prices, ``state: complete`` after it stores the run's target portfolio.
A record still ``started`` means the latest run of that partition stopped before its target: whatever
the store holds after prices is from an earlier run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from rotation_platform.data.panel import PricePanel
from rotation_platform.storage.base import Partition, Store
from rotation_platform.storage.errors import StorageNotFoundError

__all__ = ["PROVENANCE_KEY", "RUN_RECORD_ASSET", "RUN_START_ASSET", "RUN_END_ASSET", "RESULT_FREE_SECTIONS",
           "results_config_hash", "record", "provenance_of",
           "with_provenance", "narrow", "stamp_partitions", "run_record", "read_run_record", "write_run_record"]

PROVENANCE_KEY = "provenance"
#: where the pools' run records are kept (not a Dagster asset; two segments, so no pool's folder)
RUN_RECORD_ASSET = ("_records", "pool_run")
RUN_START_ASSET = "prices"
RUN_END_ASSET = "target_portfolio"


#: sections of the configuration no computed value depends on
RESULT_FREE_SECTIONS = ("storage", "notifications")


def results_config_hash(config: Any) -> str:
    """SHA-256 of the resolved configuration without :data:`RESULT_FREE_SECTIONS` (and without secrets):
    the config hash a computed value records and is checked against."""
    from rotation_platform.config.loader import config_hash

    return config_hash(config, without=tuple(RESULT_FREE_SECTIONS))


def record(data_hash: str | None, config_hash: str | None) -> dict[str, str | None]:
    return {"data_hash": data_hash or None, "config_hash": config_hash or None}


def provenance_of(value: Any, key: str | None = None) -> dict[str, Any] | None:
    """The provenance a value carries (for ``key`` when it covers several partitions); None when none."""
    if isinstance(value, pd.DataFrame):
        prov = value.attrs.get(PROVENANCE_KEY)
    elif isinstance(value, PricePanel):
        prov = value.meta.get(PROVENANCE_KEY)
    elif isinstance(value, Mapping):
        prov = value.get(PROVENANCE_KEY)
    else:
        prov = None
    if not isinstance(prov, Mapping):
        return None
    if "partitions" in prov:
        parts = prov["partitions"]
        if key is not None:
            found = parts.get(key) if isinstance(parts, Mapping) else None
            return dict(found) if isinstance(found, Mapping) else None
        return None
    return dict(prov)


def with_provenance(value: Any, prov: Mapping[str, Any] | None) -> Any:
    """``value`` carrying ``prov`` (a frame or panel is a shallow copy; the caller's value is left as it is)."""
    if isinstance(value, pd.DataFrame):
        out = value.copy(deep=False)
        attrs = {k: v for k, v in value.attrs.items() if k != PROVENANCE_KEY}
        if prov is not None:
            attrs[PROVENANCE_KEY] = dict(prov)
        out.attrs = attrs
        return out
    if isinstance(value, PricePanel):
        meta = {k: v for k, v in value.meta.items() if k != PROVENANCE_KEY}
        if prov is not None:
            meta[PROVENANCE_KEY] = dict(prov)
        return PricePanel(value.frames, meta)
    if isinstance(value, dict):
        out = {k: v for k, v in value.items() if k != PROVENANCE_KEY}
        if prov is not None:
            out[PROVENANCE_KEY] = dict(prov)
        return out
    return value


def narrow(value: Any, key: str) -> Any:
    """A partition's piece of a value: its own provenance record instead of every partition's."""
    if isinstance(value, pd.DataFrame):
        prov = value.attrs.get(PROVENANCE_KEY)
    elif isinstance(value, PricePanel):
        prov = value.meta.get(PROVENANCE_KEY)
    else:
        return value
    if isinstance(prov, Mapping) and "partitions" in prov:
        return with_provenance(value, provenance_of(value, key))
    return value


def stamp_partitions(value: Any, records: Mapping[str, Mapping[str, Any]]) -> Any:
    """``value`` (one partition's value, a value covering the partitions ``records`` names, or a dict of
    each partition's value keyed like ``records``) carrying each partition's record."""
    if not records:
        return value
    if isinstance(value, Mapping) and set(map(str, value)) == set(records):
        return {k: with_provenance(v, records.get(str(k))) for k, v in value.items()}
    if len(records) == 1:
        return with_provenance(value, next(iter(records.values())))
    if isinstance(value, dict):  # a JSON record covering several partitions: no per-partition slot
        return value
    return with_provenance(value, {"partitions": {k: dict(v) for k, v in records.items()}})


# ------------------------------------------------------------------------------------- run records
def run_record(state: str, prov: Mapping[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """``{"state", "data_hash", "config_hash", ...}``. Nothing in it changes from one run to the next on the
    same inputs (no run id, no time: the orchestrator keeps those), so a rerun stores the same bytes."""
    return {"state": state, "data_hash": (prov or {}).get("data_hash"), "config_hash": (prov or {}).get("config_hash"),
            **extra}


def write_run_record(store: Store, partition: Partition, rec: Mapping[str, Any]) -> None:
    store.write(RUN_RECORD_ASSET, partition, dict(rec))


def read_run_record(store: Store, partition: Partition) -> dict[str, Any] | None:
    try:
        value = store.read(RUN_RECORD_ASSET, partition)
    except StorageNotFoundError:
        return None
    return dict(value) if isinstance(value, Mapping) else None
