"""Validated configuration: pydantic models and the YAML/environment loader."""

from rotation_platform.config.loader import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    config_hash,
    default_config_path,
    load_config,
    secret_paths,
)
from rotation_platform.config.models import *  # noqa: F403
from rotation_platform.config.models import __all__ as _models_all

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "config_hash",
    "default_config_path",
    "load_config",
    "secret_paths",
    *_models_all,
]
