"""Production: one pool's outputs for a run of sessions (:class:`PoolRun`), the fuses, the cross-pool
summary and the re-optimisation cadence. Pure library code: no Dagster here."""

from __future__ import annotations

import pandas as pd

from rotation_platform.calendars import get_calendar
from rotation_platform.config.models import PlatformConfig
from rotation_platform.production.cadence import reoptimisation_flags, reoptimisation_rows
from rotation_platform.production.pool_run import PoolRun, data_hash_chain

__all__ = ["PoolRun", "data_hash_chain", "latest_session", "reoptimisation_flags", "reoptimisation_rows"]


def latest_session(config: PlatformConfig, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest session every pool can be run for: the last completed XSHG session, or earlier when
    the data ends earlier (the synthetic end, or the last row of the directory's files)."""
    calendar = get_calendar("XSHG")
    last = pd.Timestamp(calendar.last_completed_session(now))
    if config.data.source == "synthetic":
        if config.data.synthetic.end is not None:
            last = min(last, pd.Timestamp(config.data.synthetic.end))
    else:
        from rotation_platform.data.sources import make_source

        source = make_source(config)
        ends = []
        for pool in config.pools:
            for symbol, raw in source.read(list(pool.symbols)).items():
                dates = pd.to_datetime(raw.frame["date"], errors="coerce") if hasattr(raw, "frame") else None
                if dates is not None and dates.notna().any():
                    ends.append(dates.max())
        if ends:
            last = min(last, max(ends))
    return pd.Timestamp(calendar.session_on_or_before(last))
