"""When the strategy is re-optimised: the first session of each day, week, month or quarter."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rotation_platform.errors import ResearchError

__all__ = ["CADENCES", "reoptimisation_flags", "reoptimisation_rows"]

CADENCES = ("daily", "weekly", "monthly", "quarterly")


def _period(sessions: pd.DatetimeIndex, cadence: str) -> np.ndarray:
    if cadence == "daily":
        return np.arange(len(sessions))
    if cadence == "weekly":
        return np.asarray(sessions.to_period("W-SUN").asi8)
    if cadence == "monthly":
        return np.asarray(sessions.year * 12 + sessions.month)
    if cadence == "quarterly":
        return np.asarray(sessions.year * 4 + (sessions.month - 1) // 3)
    raise ResearchError(f"unknown re-optimisation cadence {cadence!r}; use one of {CADENCES}")


def reoptimisation_flags(sessions: pd.DatetimeIndex, cadence: str) -> np.ndarray:
    """True on the sessions that start a new period of ``cadence`` (the first session is one)."""
    period = _period(pd.DatetimeIndex(sessions), cadence)
    flags = np.ones(len(period), dtype=bool)
    flags[1:] = period[1:] != period[:-1]
    return flags


def reoptimisation_rows(sessions: pd.DatetimeIndex, cadence: str) -> np.ndarray:
    """For each session row, the row of the latest re-optimisation session on or before it.

    A session's period is decided by its own date only, so the answer for a row never depends on
    later sessions (a panel cut after any row gives the same rows up to it).
    """
    flags = reoptimisation_flags(sessions, cadence)
    idx = np.where(flags, np.arange(len(flags)), 0)
    return np.maximum.accumulate(idx)
