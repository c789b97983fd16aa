"""Price sources behind one interface, and the factory that picks one from the configuration."""

from __future__ import annotations

from rotation_platform.config.models import PlatformConfig
from rotation_platform.data.sources.base import RAW_COLUMNS, CorporateActions, PriceSource, RawPrices

__all__ = ["RAW_COLUMNS", "CorporateActions", "PriceSource", "RawPrices", "make_source"]


def make_source(config: PlatformConfig, end=None) -> PriceSource:
    """The price source the configuration selects (``data.source``)."""
    if config.data.source == "synthetic":
        from rotation_platform.data.sources.synthetic import SyntheticSource

        return SyntheticSource(config.pools, config.data.synthetic, end=end)
    if config.data.source == "akshare":
        from rotation_platform.data.sources.akshare_em import akshare_source

        return akshare_source(config, end=end)
    from rotation_platform.data.sources.directory import DirectorySource

    return DirectorySource.from_config(config.data, calendars={s: p.calendar for p in config.pools for s in p.symbols})
