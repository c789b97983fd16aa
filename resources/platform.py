"""The platform configuration as a Dagster resource, and the run's shared pool computations."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from rotation_platform.config import PlatformConfig, config_hash, default_config_path, load_config
from rotation_platform.production.pool_run import PoolRun


class PlatformResource(dg.ConfigurableResource):
    """Loads and validates the platform configuration once per run.

    ``config_path`` is the file the definitions were built from (``build_resources`` sets its absolute
    path and keeps it out of the run config schema, so the launchpad cannot pick another file); left
    empty, the file ``ROTATION_CONFIG`` names when the run loads it (default
    ``configs/demo.yaml``). ``ROTATION_*`` environment overrides and secrets are applied by the loader.

    :meth:`pool_run` hands every step of a run the same :class:`PoolRun` for a pool and its sessions,
    so prices, factors, the walk-forward grid and the backtest are computed once per run (the jobs run
    their steps in one process). A step run on its own computes what it needs itself, with the same
    result.
    """

    config_path: str = Field(default="", description="absolute path of the configuration file the definitions "
                                                      "were built from")
    _runs: dict = PrivateAttr(default_factory=dict)

    @cached_property
    def config(self) -> PlatformConfig:
        return load_config(self.config_path or default_config_path())

    @cached_property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def pool_run(self, pool: str, sessions: pd.DatetimeIndex) -> PoolRun:
        key = tuple(pd.DatetimeIndex(sessions).asi8)
        cached = self._runs.get(pool)
        if cached is None or cached[0] != key:
            cached = (key, PoolRun(self.config, pool, sessions))  # one run of sessions per pool is kept
            self._runs[pool] = cached
        return cached[1]
