"""Partition definitions and key parsing, in one module.

Pools are static partitions named by the configuration's pool names (``configs/*.yaml``).
"""

from __future__ import annotations

import dagster as dg

from rotation_platform.config import load_config

POOL_NAMES: tuple[str, ...] = load_config().pool_names
pool_partitions = dg.StaticPartitionsDefinition(list(POOL_NAMES))


def pool_of(context: dg.AssetExecutionContext) -> str:
    """The pool a run materialises (the partition key)."""
    key = context.partition_key
    if key not in POOL_NAMES:
        raise dg.DagsterInvariantViolationError(f"partition {key!r} is not a configured pool {POOL_NAMES}")
    return key
