"""The platform configuration as a Dagster resource."""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from rotation_platform.config import PlatformConfig, config_hash, default_config_path, load_config


class PlatformResource(dg.ConfigurableResource):
    """Loads and validates the platform configuration once per run.

    ``config_path`` defaults to ``$ROTATION_CONFIG`` or ``configs/demo.yaml``; ``ROTATION_*``
    environment overrides and secrets are applied by the loader.
    """

    config_path: str = ""

    @cached_property
    def config(self) -> PlatformConfig:
        return load_config(self.config_path or default_config_path())

    @cached_property
    def config_hash(self) -> str:
        return config_hash(self.config)
