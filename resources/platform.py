"""The platform configuration as a Dagster resource."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
from pydantic import Field

from rotation_platform.config import PlatformConfig, config_hash, default_config_path, load_config


class PlatformResource(dg.ConfigurableResource):
    """Loads and validates the platform configuration once per run.

    ``config_path`` is the file the definitions were built from (``build_resources`` sets its absolute
    path and keeps it out of the run config schema, so the launchpad cannot pick another file); left
    empty, the file ``ROTATION_CONFIG`` names when the run loads it (default
    ``configs/demo.yaml``). ``ROTATION_*`` environment overrides and secrets are applied by the loader.

    The resource holds no run state: the pool chain computes its values in its own step
    (:mod:`assets.chain`), so a run gives the same values on any executor.
    """

    config_path: str = Field(default="", description="absolute path of the configuration file the definitions "
                                                      "were built from")

    @cached_property
    def config(self) -> PlatformConfig:
        return load_config(self.config_path or default_config_path())

    @cached_property
    def config_hash(self) -> str:
        return config_hash(self.config)
