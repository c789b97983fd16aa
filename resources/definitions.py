"""Pick resource implementations for the environment, in one place.

``ROTATION_ENV``: ``local`` (default; embedded files under the configured data folder) or ``test``.
"""

from __future__ import annotations

import os
from pathlib import Path

from rotation_platform.config import load_config, default_config_path
from resources.io_managers import LocalFilesIOManager
from resources.platform import PlatformResource

ENVIRONMENTS = ("local", "test")


def build_resources(env: str | None = None, config_path: str | None = None) -> dict[str, object]:
    env = env or os.environ.get("ROTATION_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"ROTATION_ENV={env!r} is not one of {ENVIRONMENTS}")
    path = str(config_path or default_config_path())
    config = load_config(path)
    data_dir = Path(config.storage.data_dir)
    return {
        "platform": PlatformResource(config_path=path),
        "io_manager": LocalFilesIOManager(base_dir=str(data_dir)),
    }
