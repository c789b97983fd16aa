"""Dagster resources and IO managers; the environment picks implementations in one place."""

from resources.definitions import build_resources
from resources.io_managers import LocalFilesIOManager
from resources.platform import PlatformResource

__all__ = ["build_resources", "LocalFilesIOManager", "PlatformResource"]
