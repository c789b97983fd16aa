"""ETF rotation research and production platform: the domain library (no Dagster here)."""

__version__ = "0.1.0"
ENGINE_VERSION = __version__

