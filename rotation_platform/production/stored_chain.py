"""A pool's target portfolio from the stored values upstream of it, without the walk-forward grid or the backtest.

The target decided at the close of ``t`` (:meth:`PoolRun.target_frame`) takes from upstream only:

* the live parameter set in force after ``t`` and the re-optimisation that chose it -- the stored
  ``wfo_result`` of ``t`` (``live.params``, ``live.chosen_at``);
* the parameter set the book traded at ``t`` (whether the next session brings a new set) and the
  simulated cash at ``t`` -- the stored ``backtest`` row of ``t`` (``params``, ``cash``);
* the simulated holdings at ``t`` -- the stored ``capacity_report`` of ``t`` (``shares`` per fund).

Everything else it needs (the adjusted panel and the factor context for the scores, the raw prices and
lots for the orders, the universe) is the same cheap part of the chain a full run computes first. So
rerunning ``target_portfolio`` for a stored session rebuilds that part and reads the three stored
values instead of simulating the walk-forward grid and the backtest again, and produces the value a
full run produces byte for byte (``tests/orchestration/test_stored_upstream.py``).

The stored values are used only when they are current: each carries the data and config hash it was
computed from (:mod:`rotation_platform.storage.provenance`), and a value computed from other data or
another configuration -- or a session with none stored -- makes :func:`stored_upstream` say which, so the
caller computes the chain instead (:class:`StaleUpstream`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from rotation_platform.production.pool_run import PoolRun
from rotation_platform.storage.provenance import provenance_of, results_config_hash

__all__ = ["UPSTREAM_ASSETS", "StaleUpstream", "StoredUpstream", "TargetFromStored", "stored_upstream"]

#: the stored assets a target rerun reads, per (pool, session)
UPSTREAM_ASSETS = ("wfo_result", "backtest", "capacity_report")


class StaleUpstream(Exception):
    """A stored upstream value is missing or was computed from other data or configuration."""


@dataclass(frozen=True)
class StoredUpstream:
    """What the target of one session takes from the stored upstream values."""

    live_params: str | None  # label of the live parameter set in force after the session (None: none yet)
    chosen_at: pd.Timestamp | None  # the re-optimisation session that chose it
    traded_params: str  # label of the set the book traded at the session ("" before the first)
    cash: float
    shares: dict[str, float]


def stored_upstream(run: PoolRun, sessions: Sequence[pd.Timestamp], read: Callable[[str, pd.Timestamp], Any]
                    ) -> dict[pd.Timestamp, StoredUpstream]:
    """The stored upstream values of ``run``'s pool for ``sessions``; ``read(asset, session)`` returns a stored
    value or None. Raises :class:`StaleUpstream` naming the asset and session when one is missing or not
    computed from the run's data and configuration."""
    config_hash = results_config_hash(run.config)
    out: dict[pd.Timestamp, StoredUpstream] = {}
    for t in sessions:
        t = pd.Timestamp(t)
        values = {}
        for asset in UPSTREAM_ASSETS:
            value = read(asset, t)
            day = t.date()
            if value is None:
                raise StaleUpstream(f"{asset} of {run.pool.name} {day} is not stored")
            prov = provenance_of(value)
            if prov is None:
                raise StaleUpstream(f"{asset} of {run.pool.name} {day} records no data or config hash")
            if prov.get("data_hash") != run.data_hash(t):
                raise StaleUpstream(f"{asset} of {run.pool.name} {day} was computed from other data "
                                    f"(data hash {prov.get('data_hash')}, now {run.data_hash(t)})")
            if prov.get("config_hash") != config_hash:
                raise StaleUpstream(f"{asset} of {run.pool.name} {day} was computed with another configuration")
            values[asset] = value
        live = values["wfo_result"].get("live") or None
        bt = values["backtest"]
        row = bt.loc[t] if t in bt.index else None
        if row is None:
            raise StaleUpstream(f"backtest of {run.pool.name} {t.date()} has no row for the session")
        cap = values["capacity_report"]
        held = cap.xs(t, level="session")["shares"] if t in cap.index.get_level_values("session") else None
        if held is None or set(held.index) != set(run.panel.symbols):
            raise StaleUpstream(f"capacity_report of {run.pool.name} {t.date()} does not list the pool's funds")
        out[t] = StoredUpstream(
            live_params=str(live["params"]) if live else None,
            chosen_at=pd.Timestamp(live["chosen_at"]) if live else None,
            traded_params=str(row["params"]), cash=float(row["cash"]),
            shares={str(s): float(v) for s, v in held.items()})
    return out


class _Plan:
    """The two arrays of the backtest's plan the target reads (``shares``, ``cash``: one row per panel
    session, known at the run's sessions only, NaN elsewhere)."""

    def __init__(self, shares: np.ndarray, cash: np.ndarray):
        self.shares = shares
        self.cash = cash


class _StoredBook:
    def __init__(self, plan: _Plan):
        self.plan = plan


class TargetFromStored(PoolRun):
    """A :class:`PoolRun` whose live choices, traded parameter sets and simulated book at the run's sessions
    come from the stored upstream values (:func:`stored_upstream`) instead of the walk-forward grid and
    the backtest; :meth:`target_frame` is the full run's."""

    def __init__(self, config, pool, sessions, *, upstream: Mapping[pd.Timestamp, StoredUpstream] | None = None,
                 read: Callable[[str, pd.Timestamp], Any] | None = None, **kwargs):
        super().__init__(config, pool, sessions, **kwargs)
        self._upstream = dict(upstream) if upstream is not None else None
        self._read = read

    @cached_property
    def upstream(self) -> dict[pd.Timestamp, StoredUpstream]:
        if self._upstream is not None:
            return self._upstream
        if self._read is None:
            raise StaleUpstream("no stored upstream values given")
        return stored_upstream(self, self.sessions, self._read)

    def _label_index(self, label: str) -> int:
        for i, p in enumerate(self.params):
            if p.label == label:
                return i
        raise StaleUpstream(f"parameter set {label!r} is not in the configured grid (wfo.grid changed?)")

    @cached_property
    def live_choices(self) -> dict[int, int]:  # type: ignore[override]
        out: dict[int, int] = {}
        for up in self.upstream.values():
            if up.live_params is not None and up.chosen_at is not None:
                out[int(self.panel.sessions.get_loc(up.chosen_at))] = self._label_index(up.live_params)
        return out

    @cached_property
    def _live_rows(self) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for t, up in self.upstream.items():
            row = int(self.panel.sessions.get_loc(t))
            out[row] = int(self.panel.sessions.get_loc(up.chosen_at)) if up.chosen_at is not None else None
        return out

    def live_row(self, row: int) -> int | None:
        return self._live_rows[int(row)]

    @cached_property
    def active(self) -> np.ndarray:  # type: ignore[override]
        active = np.full(len(self.panel.sessions), -1, np.int64)
        for t, up in self.upstream.items():
            active[int(self.panel.sessions.get_loc(t))] = self._label_index(up.traded_params) if up.traded_params else -1
        return active

    @cached_property
    def backtest(self):  # type: ignore[override]
        symbols = list(self.panel.symbols)
        n = len(self.panel.sessions)
        shares, cash = np.full((n, len(symbols)), np.nan), np.full(n, np.nan)
        for t, up in self.upstream.items():
            row = int(self.panel.sessions.get_loc(t))
            shares[row] = [up.shares[s] for s in symbols]
            cash[row] = up.cash
        return _StoredBook(_Plan(shares, cash))

    @property
    def grid_equity(self) -> np.ndarray:  # type: ignore[override]
        raise StaleUpstream("a target from stored values does not simulate the walk-forward grid")
