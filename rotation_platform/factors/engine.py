"""The factor engine: a :class:`~rotation_platform.data.panel.PricePanel` in, a
:class:`~rotation_platform.factors.factor_panel.FactorPanel` out.

Steps, identical for both entry points:

1. **Bars.** A fund has a bar at a session when open, high, low, close, volume and amount are all
   finite -- without amount when the panel's metadata lists ``amount_factors_left_out`` (the load's
   ``data.amount: drop_factors`` for funds whose files have no amount): those factors
   (:data:`~rotation_platform.factors.registry.AMOUNT_FACTORS`) are then not computed and the output's
   metadata names them. Otherwise the output's ``meta["bars_without_amount"]`` counts, per fund, the
   sessions whose prices and volume are there but whose amount is not (bars lost to a missing amount, so
   that a coverage failure can name its cause). Each fund's bars are packed (gaps removed) so windows
   count the fund's own bars: a fund suspended for a day keeps its 250-bar momentum; a fund listed late
   has NaN until it has the factor's ``min_history`` bars.
2. **Raw values.** Every time-series factor is evaluated over the packed bars (numba kernels of
   :mod:`.nb` through the formulas of :mod:`.formulas`); the value at a bar uses that bar and earlier
   ones only. Non-finite results become NaN. Values are unpacked to sessions; a session without a bar
   has no raw value. Cross-sectional factors rank / z-score a base factor's raw values across the
   pool's funds at each session.
3. **Lag** -- the one place where timing is decided: :func:`apply_lag` shifts every factor's raw
   values down by ``lag`` sessions with NaN fill (never a wrap-around), so the value published at
   session *t* uses data through *t - lag*.

:func:`compute_panel` runs this over the full history (backfills), fund chunks on a few threads (the
kernels release the GIL); :func:`compute_cross_section` runs it for one session reading only each
fund's last ``lookback`` bars up to *t - lag* (the largest ``lookback`` of the selected factors, see
:mod:`.registry`) and returns the same numbers bit for bit.

NAV (optional): ``nav`` is a sessions x symbols frame of NAV per unit on the same price basis as the
panel (adjusted NAV when prices are adjusted). The NAV dated *d* is published ``nav_delay`` sessions
after *d* (1 for cross-border funds, whose NAV appears the evening after the next session), so the
premium ``close_d / nav_d - 1`` is an input of session ``d + nav_delay``; the premium factors are
computed from that input and then lagged like every other factor. Without ``nav`` the premium factors
are not part of the output.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError

from rotation_platform import ENGINE_VERSION
from rotation_platform.config.models import FactorConfig
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.factors import nb
from rotation_platform.factors.factor_panel import FactorPanel
from rotation_platform.factors.graph import Context
from rotation_platform.factors.registry import (
    AMOUNT_FACTORS,
    FACTOR_SET_VERSION,
    FactorError,
    FactorSpec,
    get,
    select_factors,
)

__all__ = [
    "apply_lag",
    "tune_allocator",
    "default_workers",
    "valid_bars",
    "amount_left_out",
    "AMOUNT_LEFT_OUT_META",
    "resolve_config",
    "required_lookback",
    "compute_panel",
    "compute_cross_section",
]

PriceField = Literal["close", "open"]

#: Target size in bytes of one packed array; funds are processed in column chunks of about this size.
CHUNK_BYTES = 1 << 21

_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """Keep freed temporaries of a few MB in the heap instead of unmapping them (glibc only).

    A computation allocates and frees thousands of arrays of ~1 MB. glibc maps large blocks
    freshly and trims the heap on free by default, so every allocation faults its pages in again
    (on virtual machines this doubles the engine's time). Raising ``M_MMAP_THRESHOLD`` to 32 MiB and
    ``M_TRIM_THRESHOLD`` to 256 MiB lets freed blocks be reused. Process-wide; called once by the
    entry points; set ``ROTATION_FACTORS_MALLOPT=0`` to leave the allocator alone. Returns whether
    the thresholds were set.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if os.environ.get("ROTATION_FACTORS_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _ALLOCATOR_TUNED = bool(mallopt(m_trim_threshold, 256 << 20)) and bool(mallopt(m_mmap_threshold, 32 << 20))
    return _ALLOCATOR_TUNED


def apply_lag(values: np.ndarray, lag: int, out: np.ndarray, rows: np.ndarray | None = None,
              counts: np.ndarray | None = None) -> None:
    """Write ``values`` into ``out`` (sessions x funds) ``lag`` sessions later -- the only place where
    factor timing is set.

    Without ``rows``, ``values`` is sessions x funds and ``out[t] = values[t - lag]``. With ``rows`` /
    ``counts`` (packed bars, see :func:`~rotation_platform.factors.nb.valid_rows_nb`), the value of a
    fund's bar at session ``s`` lands on ``s + lag``. Every other cell is NaN, non-finite values become
    NaN, values pushed past the last session are dropped: no wrap-around, no per-factor exception.
    """
    if lag < 0:
        raise FactorError(f"lag must be >= 0, got {lag}")
    if rows is None:
        n, m = values.shape
        rows = np.ascontiguousarray(np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, m)))
        counts = np.full(m, n, dtype=np.int64)
    elif counts is None:
        raise FactorError("apply_lag needs counts with rows")
    nb.lag_scatter_nb(np.ascontiguousarray(values, dtype=np.float64), rows, counts, int(lag), out)


#: panel metadata key: a non-empty list means bars count without amount and the amount factors are left out
AMOUNT_LEFT_OUT_META = "amount_factors_left_out"


def amount_left_out(panel: PricePanel) -> bool:
    """Whether the panel's metadata asks for the amount-based factors to be left out (and bars to count
    without amount): ``meta["amount_factors_left_out"]`` is a non-empty list."""
    return bool(panel.meta.get(AMOUNT_LEFT_OUT_META))


def valid_bars(panel: PricePanel) -> np.ndarray:
    """Sessions x funds: True where the fund has a bar (every price field finite; ``amount`` is not needed
    when :func:`amount_left_out`)."""
    valid = np.ones(panel.shape, dtype=bool)
    skip = ("amount",) if amount_left_out(panel) else ()
    for name in PRICE_FIELDS:
        if name not in skip:
            valid &= np.isfinite(panel.frames[name].to_numpy(dtype=np.float64))
    return valid


def _bars_without_amount(panel: PricePanel) -> dict[str, int]:
    """Per fund with any: sessions whose prices and volume are finite but whose amount is not."""
    if amount_left_out(panel):
        return {}
    rest = np.ones(panel.shape, dtype=bool)
    for name in PRICE_FIELDS:
        if name != "amount":
            rest &= np.isfinite(panel.frames[name].to_numpy(dtype=np.float64))
    lost = (rest & ~np.isfinite(panel.frames["amount"].to_numpy(dtype=np.float64))).sum(axis=0)
    return {str(s): int(n) for s, n in zip(panel.symbols, lost) if n}


def resolve_config(config: FactorConfig | int | None) -> FactorConfig:
    """A :class:`FactorConfig` from a config, a lag, or ``None`` (defaults, lag 1)."""
    if config is None:
        cfg = FactorConfig()
    elif isinstance(config, FactorConfig):
        cfg = config
    elif isinstance(config, int | np.integer) and not isinstance(config, bool):
        try:
            cfg = FactorConfig(lag=int(config))
        except ValidationError:
            raise FactorError(f"lag must be an integer >= 1, got {config}") from None
    else:
        raise FactorError(f"expected a FactorConfig or an integer lag, got {type(config).__name__}")
    if cfg.set_version != FACTOR_SET_VERSION:
        raise FactorError(f"factors.set_version {cfg.set_version!r} is not served by this engine "
                          f"(it computes set {FACTOR_SET_VERSION!r})")
    return cfg


# --------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Plan:
    emitted: tuple[FactorSpec, ...]          # output factors, in order
    series: tuple[FactorSpec, ...]           # time-series factors to evaluate (emitted + cs bases)
    release_after: tuple[tuple[tuple, ...], ...]  # cache keys last used by series[i]
    cs_bases: frozenset[str]
    lookback: int                            # bars per fund that reproduce every value


def _plan(cfg: FactorConfig, nav: bool, names: Iterable[str] | None, price_field: str,
          without_amount: bool = False) -> _Plan:
    families = cfg.families if cfg.families == "all" else tuple(cfg.families)
    return _cached_plan(families, nav, None if names is None else tuple(names), price_field, without_amount)


@lru_cache(maxsize=64)
def _cached_plan(families: tuple[str, ...] | str, nav: bool, names: tuple[str, ...] | None,
                 price_field: str, without_amount: bool = False) -> _Plan:
    emitted = select_factors(families, nav=nav, names=names)  # type: ignore[arg-type]
    if without_amount:
        emitted = tuple(s for s in emitted if s.name not in AMOUNT_FACTORS)
        if not emitted:
            raise FactorError("every requested factor reads amount (turnover), and the panel has funds without "
                              "an amount column (data.amount: drop_factors leaves those factors out); request "
                              "other factors or set data.amount: estimate")
    bases = [get(s.base) for s in emitted if s.cross_sectional]  # type: ignore[arg-type]
    seen: dict[str, FactorSpec] = {}
    for spec in [s for s in emitted if not s.cross_sectional] + bases:
        seen.setdefault(spec.name, spec)
    series = tuple(seen.values())
    ctx = Context(None, price_field=price_field)
    last_use: dict[tuple, int] = {}
    for i, spec in enumerate(series):
        ctx.touched = set()
        spec.term(ctx)
        for key in ctx.touched:
            last_use[key] = i
    release: list[list[tuple]] = [[] for _ in series]
    for key, i in last_use.items():
        release[i].append(key)
    lookback = max(s.lookback for s in series) if series else 1
    return _Plan(emitted, series, tuple(tuple(r) for r in release),
                 frozenset(s.base for s in emitted if s.cross_sectional),  # type: ignore[misc]
                 lookback)


def required_lookback(config: FactorConfig | int | None = None, *, nav: bool = False,
                      names: Iterable[str] | None = None) -> int:
    """Sessions of history :func:`compute_cross_section` needs at most: the largest factor
    lookback plus the lag (more only where a fund has gaps)."""
    cfg = resolve_config(config)
    return _plan(cfg, nav, names, "close").lookback + cfg.lag


# --------------------------------------------------------------------------------------- inputs
def _check_price_field(price_field: str) -> None:
    if price_field not in ("close", "open"):
        raise FactorError(f"price_field must be 'close' or 'open', got {price_field!r}")


def _premium_input(panel: PricePanel, nav: pd.DataFrame, nav_delay: int) -> np.ndarray:
    """Sessions x funds premium known at each session: ``close_d / nav_d - 1`` moved to
    ``d + nav_delay``."""
    if not isinstance(nav, pd.DataFrame):
        raise FactorError("nav must be a DataFrame of NAV per unit (sessions x symbols)")
    if not isinstance(nav.index, pd.DatetimeIndex):
        raise FactorError("nav must be indexed by session dates (DatetimeIndex)")
    if nav_delay < 0:
        raise FactorError(f"nav_delay must be >= 0, got {nav_delay}")
    frame = nav.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.reindex(index=panel.sessions, columns=panel.symbols)
    nav_arr = frame.to_numpy(dtype=np.float64)
    close = panel.array("close")
    with np.errstate(all="ignore"):
        prem = close / nav_arr - 1.0
    out = np.empty_like(prem)
    apply_lag(prem, nav_delay, out)
    return out


def _inputs(panel: PricePanel, nav: pd.DataFrame | None, nav_delay: int) -> dict[str, np.ndarray]:
    arrays = {name: panel.array(name) for name in PRICE_FIELDS}
    if nav is not None:
        arrays["premium"] = _premium_input(panel, nav, nav_delay)
    return arrays


def _meta(panel: PricePanel, cfg: FactorConfig, plan: _Plan, price_field: str, nav: bool,
          nav_delay: int, mode: str, dtype: np.dtype) -> dict[str, object]:
    left_out = [n for n in AMOUNT_FACTORS if amount_left_out(panel)]
    return {
        AMOUNT_LEFT_OUT_META: left_out,
        "bars_without_amount": _bars_without_amount(panel),
        "set_version": FACTOR_SET_VERSION,
        "lag": cfg.lag,
        "price_field": price_field,
        "n_factors": len(plan.emitted),
        "dtype": str(dtype),
        "nav": nav,
        "nav_delay": nav_delay if nav else None,
        "lookback": plan.lookback,
        "mode": mode,
        "families": "all" if cfg.families == "all" else list(cfg.families),
        "min_coverage": cfg.min_coverage,
        "source": panel.meta.get("source"),
        "synthetic": panel.meta.get("synthetic"),
        "engine_version": ENGINE_VERSION,
    }


def _evaluate(ctx: Context, plan: _Plan) -> Iterable[tuple[FactorSpec, np.ndarray]]:
    """Yield each time-series factor's packed raw values, freeing cache entries no later factor uses.
    (Non-finite values become NaN when :func:`apply_lag` places them.)"""
    for spec, release in zip(plan.series, plan.release_after, strict=True):
        vals = ctx.value(spec.term(ctx))
        ctx.release(release)
        yield spec, vals


def _cs_transform(spec: FactorSpec, raw: np.ndarray) -> np.ndarray:
    if spec.transform == "rank":
        return nb.cs_rank_nb(raw)
    return nb.cs_zscore_nb(raw)


# --------------------------------------------------------------------------------------- full panel
def default_workers() -> int:
    """Threads :func:`compute_panel` uses by default: ``ROTATION_FACTORS_WORKERS`` or the CPU count."""
    env = os.environ.get("ROTATION_FACTORS_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, os.cpu_count() or 1)


def compute_panel(panel: PricePanel, config: FactorConfig | int | None = None, *,
                  nav: pd.DataFrame | None = None, nav_delay: int = 1, price_field: PriceField = "close",
                  names: Sequence[str] | None = None, chunk_funds: int | None = None,
                  workers: int | None = None) -> FactorPanel:
    """Every selected factor at every session of the panel.

    ``config``: a :class:`FactorConfig` (lag, dtype, families, set version), an integer lag, or None
    (lag 1). ``names`` restricts the output to these factors. Funds are evaluated in chunks of
    ``chunk_funds`` (default: about :data:`CHUNK_BYTES` per packed array, and at least one chunk per
    worker) on ``workers`` threads (default :func:`default_workers`; the kernels release the GIL).
    Neither changes a single bit of the result: funds are independent until the cross-sectional
    step, which runs after every chunk is done.
    """
    cfg = resolve_config(config)
    _check_price_field(price_field)
    tune_allocator()
    plan = _plan(cfg, nav is not None, names, price_field, amount_left_out(panel))
    dtype = np.dtype(cfg.dtype)
    n_sessions, n_funds = panel.shape
    valid = valid_bars(panel)
    arrays = _inputs(panel, nav, nav_delay)

    position = {s.name: k for k, s in enumerate(plan.emitted)}
    data = np.empty((len(plan.emitted), n_sessions, n_funds), dtype=dtype)
    cs_raw = {name: np.full((n_sessions, n_funds), np.nan) for name in plan.cs_bases}
    lagged_valid = np.empty((n_sessions, n_funds))
    apply_lag(np.where(valid, 1.0, np.nan), cfg.lag, lagged_valid)
    available = np.isfinite(lagged_valid)

    n_workers = default_workers() if workers is None else max(1, int(workers))
    if chunk_funds is None:
        by_size = max(1, CHUNK_BYTES // (8 * max(1, n_sessions)))
        chunk_funds = max(1, min(by_size, -(-n_funds // n_workers)))

    def run_chunk(j0: int) -> None:
        j1 = min(n_funds, j0 + chunk_funds)
        rows, counts = nb.valid_rows_nb(np.ascontiguousarray(valid[:, j0:j1]))
        n_bars = int(counts.max()) if len(counts) else 0
        rows = np.ascontiguousarray(rows[: max(n_bars, 1)])
        packed = {name: nb.pack_nb(np.ascontiguousarray(arr[:, j0:j1]), rows, counts)
                  for name, arr in arrays.items()}
        ctx = Context(packed, np.zeros(j1 - j0, dtype=np.int64), price_field)
        for spec, vals in _evaluate(ctx, plan):
            if spec.name in cs_raw:
                apply_lag(vals, 0, cs_raw[spec.name][:, j0:j1], rows, counts)
            k = position.get(spec.name)
            if k is not None:
                apply_lag(vals, cfg.lag, data[k, :, j0:j1], rows, counts)

    def run_cross_section(spec: FactorSpec) -> None:
        apply_lag(_cs_transform(spec, cs_raw[spec.base]), cfg.lag, data[position[spec.name]])  # type: ignore[index]

    starts = list(range(0, n_funds, chunk_funds))
    cs_specs = [spec for spec in plan.emitted if spec.cross_sectional]
    if n_workers == 1 or len(starts) == 1 and len(cs_specs) < 2:
        for j0 in starts:
            run_chunk(j0)
        for spec in cs_specs:
            run_cross_section(spec)
    else:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="factors") as pool:
            list(pool.map(run_chunk, starts))
            list(pool.map(run_cross_section, cs_specs))

    return FactorPanel(data, tuple(position), panel.sessions, tuple(panel.symbols), available,
                       _meta(panel, cfg, plan, price_field, nav is not None, nav_delay, "panel", dtype))


# --------------------------------------------------------------------------------------- one session
def _session_row(panel: PricePanel, session: object) -> int:
    if isinstance(session, int | np.integer) and not isinstance(session, bool):
        t = int(session)
        if not -len(panel.sessions) <= t < len(panel.sessions):
            raise FactorError(f"session index {t} is outside the panel ({len(panel.sessions)} sessions)")
        return t % len(panel.sessions)
    ts = pd.Timestamp(session)  # type: ignore[arg-type]
    if ts not in panel.sessions:
        raise FactorError(f"session {str(ts)[:10]} is not a session of the panel "
                          f"({str(panel.sessions[0])[:10]} .. {str(panel.sessions[-1])[:10]})")
    return int(panel.sessions.get_loc(ts))


def compute_cross_section(panel: PricePanel, session: object, config: FactorConfig | int | None = None, *,
                          nav: pd.DataFrame | None = None, nav_delay: int = 1,
                          price_field: PriceField = "close", names: Sequence[str] | None = None) -> FactorPanel:
    """The factors at one session (a date of the panel or a row number), equal bit for bit to
    ``compute_panel(...)`` at that session, reading each fund's last ``lookback`` bars up to
    *t - lag* only. Returns a one-session :class:`FactorPanel`.
    """
    cfg = resolve_config(config)
    _check_price_field(price_field)
    plan = _plan(cfg, nav is not None, names, price_field, amount_left_out(panel))
    dtype = np.dtype(cfg.dtype)
    t = _session_row(panel, session)
    n_funds = panel.shape[1]
    s = t - cfg.lag
    data = np.full((len(plan.emitted), 1, n_funds), np.nan, dtype=dtype)
    available = np.zeros((1, n_funds), dtype=bool)
    position = {spec.name: k for k, spec in enumerate(plan.emitted)}
    meta = _meta(panel, cfg, plan, price_field, nav is not None, nav_delay, "cross_section", dtype)
    sessions = panel.sessions[t: t + 1]
    if s < 0:
        return FactorPanel(data, tuple(position), sessions, tuple(panel.symbols), available, meta)

    valid = valid_bars(panel.select(end=panel.sessions[s]))
    available[0] = valid[s]
    full_rows, counts = nb.valid_rows_nb(valid)
    base = np.maximum(counts - plan.lookback, 0)
    kept = counts - base
    n_rows = max(int(kept.max()) if n_funds else 0, 1)
    rows = np.full((n_rows, n_funds), -1, dtype=np.int64)
    for j in range(n_funds):
        rows[: kept[j], j] = full_rows[base[j]: counts[j], j]
    arrays = _inputs(panel, nav, nav_delay)
    packed = {name: nb.pack_nb(arr, rows, kept) for name, arr in arrays.items()}
    ctx = Context(packed, base.astype(np.int64), price_field)

    # raw values at s = t - lag for the funds with a bar at s, then the common lag onto t
    last = np.maximum(kept - 1, 0)
    cols = np.arange(n_funds)
    span = np.full((cfg.lag + 1, n_funds), np.nan)
    placed = np.empty_like(span)
    cs_raw: dict[str, np.ndarray] = {}
    for spec, vals in _evaluate(ctx, plan):
        raw = vals[last, cols]
        raw = np.where(valid[s] & np.isfinite(raw), raw, np.nan)
        if spec.name in plan.cs_bases:
            cs_raw[spec.name] = raw
        k = position.get(spec.name)
        if k is not None:
            span[0] = raw
            apply_lag(span, cfg.lag, placed)
            data[k, 0] = placed[cfg.lag]
    for spec in plan.emitted:
        if spec.cross_sectional:
            span[0] = _cs_transform(spec, cs_raw[spec.base][None, :])[0]  # type: ignore[index]
            apply_lag(span, cfg.lag, placed)
            data[position[spec.name], 0] = placed[cfg.lag]
    return FactorPanel(data, tuple(position), sessions, tuple(panel.symbols), available, meta)
