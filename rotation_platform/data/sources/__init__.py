"""Price sources behind one interface, and the factory that picks one from the configuration."""

from __future__ import annotations

from rotation_platform.config.models import PlatformConfig
from rotation_platform.data.sources.base import RAW_COLUMNS, CorporateActions, PriceSource, RawPrices

__all__ = ["RAW_COLUMNS", "CorporateActions", "PriceSource", "RawPrices", "make_source", "pool_source"]


def pool_source(config: PlatformConfig, end=None, *, cache=None) -> PriceSource:
    """The source a pool reads its history from: the market store (``data.history: store``, a
    :class:`~rotation_platform.data.sources.stored.StoredSource`, behind the Redis cache when
    ``storage.redis_cache`` is on or ``cache`` is given) or, by default, :func:`make_source`.

    The stored source reads as the configured one does, so both give the same pool prices: through
    ``end`` for the synthetic source (it generates through ``end``), everything stored for the file
    sources (they read whole files; rows after the as-of date are quarantined ``after_asof``)."""
    if config.data.history != "store":
        return make_source(config, end=end)
    from rotation_platform.data.market_store import open_market_store
    from rotation_platform.data.sources.stored import StoredSource

    storage = config.storage
    if cache is None and storage.redis_cache:
        from rotation_platform.storage.cache import RedisCache

        password = storage.redis_password.get_secret_value() if storage.redis_password is not None else None
        cache = RedisCache(storage.redis_url, password, namespace=config.name)
    synthetic = config.data.source == "synthetic"
    return StoredSource(open_market_store(storage), end=end if synthetic else None, cache=cache, synthetic=synthetic)


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
