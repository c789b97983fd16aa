"""Numba kernels of the factor engine: a few generic rolling kernels parameterised by window.

Contract
--------
* Shapes: time-series kernels take a float64 2-D C-contiguous array, rows = bars of a fund in time
  order (row 0 the oldest), columns = funds, plus ``int`` windows and an ``int64`` 1-D ``base`` array
  (one entry per column, see *Anchoring*). ``<name>_nb`` allocates its outputs (input's shape), then
  fills them column by column with ``<name>_1d_nb(column, ..., out_column)`` on contiguous 1-D
  arrays (columns are moved in blocks of :data:`BLOCK` through contiguous buffers, so memory is read
  and written sequentially); a ``_1d_nb`` kernel writes every element of its output.
* Causality: the value at row ``i`` reads rows ``<= i`` only.
* NaN rule: a value is NaN when its window is incomplete (fewer than ``window`` rows from row 0 of
  the column) or holds a non-finite number (NaN or +-inf). There is no ``min_periods`` and nothing is
  filled or skipped: gaps in a fund's history are removed *before* the kernels run (the engine packs
  each fund's bars, :func:`valid_rows_nb` / :func:`pack_nb`).
* Anchoring: kernels with a running accumulator (:func:`rolling_sum_nb`, :func:`rolling_ewm_nb`,
  :func:`rolling_agesum_nb`, :func:`rolling_cov_nb`) recompute it from scratch whenever the
  absolute row ``base[col] + i`` is a multiple of the window, and update it incrementally in
  between. The value at row ``i`` is thus a fixed sequence of floating-point operations on rows
  ``i - 2 * window + 2 .. i``: a column cut from a longer history (``base`` = number of rows cut off
  in front) reproduces it bit for bit once it holds ``2 * window - 1`` rows, and rounding errors
  never accumulate over more than two windows. Kernels that use no running accumulator (maximum,
  mean deviation, drawdown) give the same bits from ``window`` rows.
* Cross-sectional kernels (``cs_*``) work along the rows of a sessions x funds array: each row is one
  session, values compared across the funds with a finite value.
* Every kernel is ``@njit(cache=True, nogil=True)``: compiled once to the on-disk cache
  (:func:`rotation_platform.numba_cache.cache_dir`), and releasing the GIL so the engine can run fund
  chunks on several threads.
* :func:`lag_scatter_nb` is the one kernel that moves values in time: bar values to their session
  plus the lag (see :func:`rotation_platform.factors.engine.apply_lag`). Its output is a whole panel
  or the strided view of a fund chunk, and its inputs may be read-only, so it is compiled for one
  explicit signature per output dtype (:data:`LAG_SCATTER_SIGNATURE`: read-only C inputs, a float64
  output of any layout; :data:`LAG_SCATTER_SIGNATURE_F32` for float32 panels) that takes every such
  call; the other kernels are compiled lazily, for the float64 / int64 C arrays the engine passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

from rotation_platform import numba_cache

numba_cache.configure()  # before the first @njit(cache=True): the cache folder is read at decoration

__all__ = [
    "valid_rows_nb",
    "pack_nb",
    "lag_scatter_nb",
    "LAG_SCATTER_SIGNATURE",
    "LAG_SCATTER_SIGNATURE_F32",
    "rolling_sum_1d_nb",
    "rolling_sum_nb",
    "rolling_ewm_1d_nb",
    "rolling_ewm_nb",
    "rolling_agesum_1d_nb",
    "rolling_agesum_nb",
    "rolling_cov_1d_nb",
    "rolling_cov_nb",
    "rolling_max_1d_nb",
    "rolling_max_nb",
    "rolling_meandev_1d_nb",
    "rolling_meandev_nb",
    "rolling_maxdd_1d_nb",
    "rolling_maxdd_nb",
    "cs_rank_1d_nb",
    "cs_rank_nb",
    "cs_zscore_1d_nb",
    "cs_zscore_nb",
]


# --------------------------------------------------------------------------------------- packing
@njit(cache=True, nogil=True)
def valid_rows_nb(valid):
    """Per column, the rows where ``valid`` is true, packed to the top.

    Returns ``rows`` (int64, same shape; ``rows[k, j]`` is the session row of fund ``j``'s ``k``-th bar,
    ``-1`` past the last bar) and ``counts`` (int64, bars per column).
    """
    n, m = valid.shape
    rows = np.full((n, m), -1, dtype=np.int64)
    counts = np.zeros(m, dtype=np.int64)
    for j in range(m):
        k = 0
        for i in range(n):
            if valid[i, j]:
                rows[k, j] = i
                k += 1
        counts[j] = k
    return rows, counts


@njit(cache=True, nogil=True)
def pack_nb(a, rows, counts):
    """``out[k, j] = a[rows[k, j], j]`` for the first ``counts[j]`` rows, NaN below."""
    n_out = rows.shape[0]
    m = a.shape[1]
    out = np.full((n_out, m), np.nan)
    for j in range(m):
        for k in range(counts[j]):
            out[k, j] = a[rows[k, j], j]
    return out


def _lag_scatter_signature(out_dtype: types.Type) -> types.Type:
    return types.void(types.Array(types.float64, 2, "C", readonly=True),
                      types.Array(types.int64, 2, "C", readonly=True),
                      types.Array(types.int64, 1, "C", readonly=True), types.int64,
                      types.Array(out_dtype, 2, "A"))


#: the signature of :func:`lag_scatter_nb`: C-contiguous inputs (read-only accepted: a writable array
#: converts to it), a float64 output of any layout (a whole panel or a fund chunk's strided view)
LAG_SCATTER_SIGNATURE = _lag_scatter_signature(types.float64)
#: the same for the float32 factor panels (``factors.dtype: float32``)
LAG_SCATTER_SIGNATURE_F32 = _lag_scatter_signature(types.float32)


@njit([LAG_SCATTER_SIGNATURE, LAG_SCATTER_SIGNATURE_F32], cache=True, nogil=True)
def lag_scatter_nb(values, rows, counts, lag, out):
    """Fill ``out`` (sessions x funds): the value of bar ``k`` of column ``j`` (session
    ``rows[k, j]``) lands on session ``rows[k, j] + lag``; every other cell, and every non-finite
    value, is NaN. Bars whose session plus the lag is past the end are dropped (never wrapped).
    Each output cell is written once, session by session.
    """
    n_out, m = out.shape
    ptr = np.zeros(m, dtype=np.int64)
    for t in range(n_out):
        for j in range(m):
            k = ptr[j]
            v = np.nan
            if k < counts[j] and rows[k, j] + lag == t:
                x = values[k, j]
                if np.isfinite(x):
                    v = x
                ptr[j] = k + 1
            out[t, j] = v


# --------------------------------------------------------------------------------------- running sums
#: Columns moved together between the sessions x funds layout and contiguous per-fund rows: one
#: 64-byte cache line of float64 per row, so the 2-D kernels read and write memory sequentially.
BLOCK = 8


@njit(cache=True, nogil=True)
def _load_block(a, j0, width, buf):
    """``buf[c] = a[:, j0 + c]`` for ``c < width`` (contiguous copies of a block of columns)."""
    for i in range(a.shape[0]):
        for c in range(width):
            col = j0 + c
            buf[c, i] = a[i, col]


@njit(cache=True, nogil=True)
def _store_block(buf, out, j0, width):
    """``out[:, j0 + c] = buf[c]`` for ``c < width``."""
    for i in range(out.shape[0]):
        for c in range(width):
            col = j0 + c
            out[i, col] = buf[c, i]


@njit(cache=True, nogil=True)
def _first_anchor(base, window):
    """Row of the first anchor: the first ``i >= 0`` with ``(base + i) % window == 0``."""
    return (window - base % window) % window


@njit(cache=True, nogil=True)
def rolling_sum_1d_nb(a, window, base, out):
    """Sum of the last ``window`` values (anchored running sum, see the module docstring)."""
    n = a.shape[0]
    acc = 0.0
    bad = 0
    anchor = _first_anchor(base, window)
    for i in range(n):
        if i == 0 or i == anchor:
            if i == anchor:
                anchor += window
            acc = 0.0
            bad = 0
            for k in range(max(0, i - window + 1), i + 1):
                v = a[k]
                if np.isfinite(v):
                    acc += v
                else:
                    bad += 1
        else:
            v = a[i]
            if np.isfinite(v):
                acc += v
            else:
                bad += 1
            if i >= window:
                u = a[i - window]
                if np.isfinite(u):
                    acc -= u
                else:
                    bad -= 1
        out[i] = acc if i >= window - 1 and bad == 0 else np.nan


@njit(cache=True, nogil=True)
def rolling_sum_nb(a, window, base):
    """:func:`rolling_sum_1d_nb` on every column."""
    n, m = a.shape
    out = np.empty((n, m))
    src = np.empty((BLOCK, n))
    dst = np.empty((BLOCK, n))
    for j0 in range(0, m, BLOCK):
        width = min(BLOCK, m - j0)
        _load_block(a, j0, width, src)
        for c in range(width):
            col = j0 + c
            rolling_sum_1d_nb(src[c], window, base[col], dst[c])
        _store_block(dst, out, j0, width)
    return out

@njit(cache=True, nogil=True)
def rolling_ewm_1d_nb(a, beta, window, base, out):
    """Exponentially weighted mean over the last ``window`` values, weights ``beta ** age``.

    ``sum(beta**j * a[i - j] for j < window) * (1 - beta) / (1 - beta**window)``: an EMA with smoothing
    ``alpha = 1 - beta`` whose memory is cut at ``window`` rows (finite memory, so every value has a
    bounded lookback). With ``window`` long enough that ``beta**window`` is negligible it equals the
    recursive EMA of TA-Lib after its warm-up.
    """
    n = a.shape[0]
    tail = beta ** window
    scale = (1.0 - beta) / (1.0 - tail)
    acc = 0.0
    bad = 0
    anchor = _first_anchor(base, window)
    for i in range(n):
        if i == 0 or i == anchor:
            if i == anchor:
                anchor += window
            acc = 0.0
            bad = 0
            for k in range(max(0, i - window + 1), i + 1):
                v = a[k]
                if np.isfinite(v):
                    acc = acc * beta + v
                else:
                    acc = acc * beta
                    bad += 1
        else:
            v = a[i]
            if np.isfinite(v):
                acc = acc * beta + v
            else:
                acc = acc * beta
                bad += 1
            if i >= window:
                u = a[i - window]
                if np.isfinite(u):
                    acc -= tail * u
                else:
                    bad -= 1
        out[i] = acc * scale if i >= window - 1 and bad == 0 else np.nan


@njit(cache=True, nogil=True)
def rolling_ewm_nb(a, beta, window, base):
    """:func:`rolling_ewm_1d_nb` on every column."""
    n, m = a.shape
    out = np.empty((n, m))
    src = np.empty((BLOCK, n))
    dst = np.empty((BLOCK, n))
    for j0 in range(0, m, BLOCK):
        width = min(BLOCK, m - j0)
        _load_block(a, j0, width, src)
        for c in range(width):
            col = j0 + c
            rolling_ewm_1d_nb(src[c], beta, window, base[col], dst[c])
        _store_block(dst, out, j0, width)
    return out

@njit(cache=True, nogil=True)
def rolling_agesum_1d_nb(a, window, base, out_s, out_l, out_q):
    """Age-weighted sums over the last ``window`` values: ``S = sum(a)``, ``L = sum(age * a)``,
    ``Q = sum(age**2 * a)`` with ``age = 0`` for the newest row. They give rolling least squares on a
    time trend (TA-Lib's ``LINEARREG`` family) in O(1) per row.
    """
    n = a.shape[0]
    w = float(window)
    s = 0.0
    lin = 0.0
    quad = 0.0
    bad = 0
    anchor = _first_anchor(base, window)
    for i in range(n):
        if i == 0 or i == anchor:
            if i == anchor:
                anchor += window
            s = 0.0
            lin = 0.0
            quad = 0.0
            bad = 0
            for k in range(max(0, i - window + 1), i + 1):
                v = a[k]
                if np.isfinite(v):
                    age = float(i - k)
                    s += v
                    lin += age * v
                    quad += age * age * v
                else:
                    bad += 1
        else:
            v = a[i]
            if not np.isfinite(v):
                bad += 1
                v = 0.0
            u = 0.0
            if i >= window:
                u = a[i - window]
                if not np.isfinite(u):
                    bad -= 1
                    u = 0.0
            quad = quad + 2.0 * lin + s - w * w * u
            lin = lin + s - w * u
            s = s + v - u
        if i >= window - 1 and bad == 0:
            out_s[i] = s
            out_l[i] = lin
            out_q[i] = quad
        else:
            out_s[i] = np.nan
            out_l[i] = np.nan
            out_q[i] = np.nan


@njit(cache=True, nogil=True)
def rolling_agesum_nb(a, window, base):
    """:func:`rolling_agesum_1d_nb` on every column; returns ``(S, L, Q)``."""
    n, m = a.shape
    out_s = np.empty((n, m))
    out_l = np.empty((n, m))
    out_q = np.empty((n, m))
    src = np.empty((BLOCK, n))
    d_s = np.empty((BLOCK, n))
    d_l = np.empty((BLOCK, n))
    d_q = np.empty((BLOCK, n))
    for j0 in range(0, m, BLOCK):
        width = min(BLOCK, m - j0)
        _load_block(a, j0, width, src)
        for c in range(width):
            col = j0 + c
            rolling_agesum_1d_nb(src[c], window, base[col], d_s[c], d_l[c], d_q[c])
        _store_block(d_s, out_s, j0, width)
        _store_block(d_l, out_l, j0, width)
        _store_block(d_q, out_q, j0, width)
    return out_s, out_l, out_q

@njit(cache=True, nogil=True)
def rolling_cov_1d_nb(x, y, window, base, out_mx, out_my, out_c):
    """Rolling means of ``x`` and ``y`` and their co-moment ``sum((x - mean_x) * (y - mean_y))`` over
    the last ``window`` rows (pairs with a non-finite member make the window NaN). ``x`` may be ``y``
    (the co-moment is then the sum of squared deviations).

    The running sums are kept around shift constants -- the values at the latest anchor row -- so
    they stay of the size of the window's deviations: no cancellation between ``sum(x^2)`` and
    ``sum(x)^2 / n`` for price or volume levels. Shift constants and sums are reset at each anchor.
    """
    n = x.shape[0]
    w = float(window)
    kx = 0.0
    ky = 0.0
    sx = 0.0
    sy = 0.0
    sxy = 0.0
    bad = 0
    anchor = _first_anchor(base, window)
    for i in range(n):
        if i == 0 or i == anchor:
            if i == anchor:
                anchor += window
            kx = x[i] if np.isfinite(x[i]) else 0.0
            ky = y[i] if np.isfinite(y[i]) else 0.0
            sx = 0.0
            sy = 0.0
            sxy = 0.0
            bad = 0
            for k in range(max(0, i - window + 1), i + 1):
                u = x[k]
                v = y[k]
                if np.isfinite(u) and np.isfinite(v):
                    du = u - kx
                    dv = v - ky
                    sx += du
                    sy += dv
                    sxy += du * dv
                else:
                    bad += 1
        else:
            u = x[i]
            v = y[i]
            if np.isfinite(u) and np.isfinite(v):
                du = u - kx
                dv = v - ky
                sx += du
                sy += dv
                sxy += du * dv
            else:
                bad += 1
            if i >= window:
                u = x[i - window]
                v = y[i - window]
                if np.isfinite(u) and np.isfinite(v):
                    du = u - kx
                    dv = v - ky
                    sx -= du
                    sy -= dv
                    sxy -= du * dv
                else:
                    bad -= 1
        if i >= window - 1 and bad == 0:
            out_mx[i] = kx + sx / w
            out_my[i] = ky + sy / w
            out_c[i] = sxy - sx * sy / w
        else:
            out_mx[i] = np.nan
            out_my[i] = np.nan
            out_c[i] = np.nan


@njit(cache=True, nogil=True)
def rolling_cov_nb(x, y, window, base):
    """:func:`rolling_cov_1d_nb` on every column; returns ``(mean_x, mean_y, comoment)``."""
    n, m = x.shape
    out_mx = np.empty((n, m))
    out_my = np.empty((n, m))
    out_c = np.empty((n, m))
    src_x = np.empty((BLOCK, n))
    src_y = np.empty((BLOCK, n))
    d_mx = np.empty((BLOCK, n))
    d_my = np.empty((BLOCK, n))
    d_c = np.empty((BLOCK, n))
    for j0 in range(0, m, BLOCK):
        width = min(BLOCK, m - j0)
        _load_block(x, j0, width, src_x)
        _load_block(y, j0, width, src_y)
        for c in range(width):
            col = j0 + c
            rolling_cov_1d_nb(src_x[c], src_y[c], window, base[col], d_mx[c], d_my[c], d_c[c])
        _store_block(d_mx, out_mx, j0, width)
        _store_block(d_my, out_my, j0, width)
        _store_block(d_c, out_c, j0, width)
    return out_mx, out_my, out_c

@njit(cache=True, nogil=True)
def _incomplete(a, window, out):
    """``out[i]``: True when the window ending at row ``i`` is incomplete or holds a non-finite value."""
    last_bad = -window
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]):
            last_bad = i
        out[i] = i < window - 1 or i - last_bad < window

@njit(cache=True, nogil=True)
def rolling_max_1d_nb(a, window, out_max, out_age):
    """Maximum of the last ``window`` values and its age (rows since it occurred; the most recent
    occurrence on ties). Blocks of ``window`` rows (van Herk / Gil-Werman): the window ending at row
    ``i`` is a suffix of the previous block plus a prefix of the current one; a block's suffix maxima
    are computed once the block is complete. O(1) per row and no arithmetic on the values, so the
    result does not depend on where the column starts. The minimum is ``-max(-a)``.
    """
    n = a.shape[0]
    suf_val = np.empty(window)
    suf_idx = np.empty(window, dtype=np.int64)
    pre_val = 0.0
    pre_idx = 0
    block = 0
    last_bad = -window
    for i in range(n):
        if i - block == window:
            # the previous block [block, i) is complete: suffix maxima, newest index on ties
            best = a[i - 1]
            best_idx = i - 1
            for k in range(i - 1, block - 1, -1):
                v = a[k]
                if v > best:
                    best = v
                    best_idx = k
                suf_val[k - block] = best
                suf_idx[k - block] = best_idx
            block = i
        v = a[i]
        if not np.isfinite(v):
            last_bad = i
        if i == block or v >= pre_val:
            pre_val = v
            pre_idx = i
        if i < window - 1 or i - last_bad < window:
            out_max[i] = np.nan
            out_age[i] = np.nan
            continue
        start = i - window + 1
        top_val = pre_val
        top_idx = pre_idx
        if start < block:
            k = start - block + window
            if suf_val[k] > pre_val:
                top_val = suf_val[k]
                top_idx = suf_idx[k]
        out_max[i] = top_val
        out_age[i] = float(i - top_idx)

@njit(cache=True, nogil=True)
def rolling_max_nb(a, window):
    """:func:`rolling_max_1d_nb` on every column; returns ``(max, age)``."""
    n, m = a.shape
    out_max = np.empty((n, m))
    out_age = np.empty((n, m))
    src = np.empty((BLOCK, n))
    d_max = np.empty((BLOCK, n))
    d_age = np.empty((BLOCK, n))
    for j0 in range(0, m, BLOCK):
        width = min(BLOCK, m - j0)
        _load_block(a, j0, width, src)
        for c in range(width):
            rolling_max_1d_nb(src[c], window, d_max[c], d_age[c])
        _store_block(d_max, out_max, j0, width)
        _store_block(d_age, out_age, j0, width)
    return out_max, out_age

@njit(cache=True, nogil=True)
def rolling_meandev_1d_nb(a, mean, window, out):
    """Mean absolute deviation of the last ``window`` values of ``a`` around ``mean[i]`` (their
    rolling mean, given), recomputed from scratch every row: the CCI denominator as TA-Lib computes it.
    """
    last_bad = -window
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]):
            last_bad = i
        m = mean[i]
        if i < window - 1 or i - last_bad < window or not np.isfinite(m):
            out[i] = np.nan
            continue
        dev = 0.0
        for k in range(i - window + 1, i + 1):
            dev += abs(a[k] - m)
        out[i] = dev / window

@njit(cache=True, nogil=True)
def rolling_meandev_nb(a, mean, window):
    """:func:`rolling_meandev_1d_nb` on every column."""
    n, m = a.shape
    out = np.empty((n, m))
    src = np.empty((BLOCK, n))
    src_mean = np.empty((BLOCK, n))
    dst = np.empty((BLOCK, n))
    for j0 in range(0, m, BLOCK):
        width = min(BLOCK, m - j0)
        _load_block(a, j0, width, src)
        _load_block(mean, j0, width, src_mean)
        for c in range(width):
            rolling_meandev_1d_nb(src[c], src_mean[c], window, dst[c])
        _store_block(dst, out, j0, width)
    return out

@njit(cache=True, nogil=True)
def rolling_maxdd_1d_nb(a, window, out):
    """Largest fall from a running peak within the last ``window`` values of ``a`` (``<= 0``):
    ``min over i <= j in the window of (a[j] - a[i])``. Fed log prices it is the log of one plus the
    window's maximum drawdown.

    A segment's (max, min, largest fall) combine associatively -- ``fall(L + R) = min(fall(L),
    fall(R), min(R) - max(L))`` -- so the window is a suffix of the previous block of ``window`` rows
    plus a prefix of the current one, as in :func:`rolling_max_1d_nb`: O(1) per row. Every candidate
    is one subtraction ``a[j] - a[i]`` and rounding is monotone, so the result is the exact minimum
    over all pairs whatever the decomposition (independent of where the column starts).
    """
    n = a.shape[0]
    skip = np.empty(n, dtype=np.bool_)
    _incomplete(a, window, skip)
    suf_max = np.empty(window)
    suf_min = np.empty(window)
    suf_dd = np.empty(window)
    pre_max = 0.0
    pre_min = 0.0
    pre_dd = 0.0
    block = 0
    for i in range(n):
        if i - block == window:
            hi = a[i - 1]
            lo = a[i - 1]
            dd = 0.0
            for k in range(i - 1, block - 1, -1):
                v = a[k]
                # prepend v to the suffix [k + 1, i): new falls start at v
                if lo - v < dd:
                    dd = lo - v
                if v > hi:
                    hi = v
                if v < lo:
                    lo = v
                suf_max[k - block] = hi
                suf_min[k - block] = lo
                suf_dd[k - block] = dd
            block = i
        v = a[i]
        if i == block:
            pre_max = v
            pre_min = v
            pre_dd = 0.0
        else:
            if v - pre_max < pre_dd:
                pre_dd = v - pre_max
            if v > pre_max:
                pre_max = v
            if v < pre_min:
                pre_min = v
        if skip[i]:
            out[i] = np.nan
            continue
        start = i - window + 1
        worst = pre_dd
        if start < block:
            k = start - block + window
            if suf_dd[k] < worst:
                worst = suf_dd[k]
            cross = pre_min - suf_max[k]
            if cross < worst:
                worst = cross
        out[i] = worst


@njit(cache=True, nogil=True)
def rolling_maxdd_nb(a, window):
    """:func:`rolling_maxdd_1d_nb` on every column."""
    n, m = a.shape
    out = np.empty((n, m))
    src = np.empty((BLOCK, n))
    dst = np.empty((BLOCK, n))
    for j0 in range(0, m, BLOCK):
        width = min(BLOCK, m - j0)
        _load_block(a, j0, width, src)
        for c in range(width):
            rolling_maxdd_1d_nb(src[c], window, dst[c])
        _store_block(dst, out, j0, width)
    return out

@njit(cache=True, nogil=True)
def cs_rank_1d_nb(x, out, order, vals, idx, rest):
    """Percentile rank of each finite value of ``x`` among the finite values: ``rank / count`` with
    ranks 1..count and ties given their average rank (pandas ``rank(pct=True)``). NaN where the value
    is not finite or fewer than two values are.

    ``order`` (int64, a permutation of the columns) holds the columns sorted by the previous row's
    values: sorting starts from it, which makes sorting consecutive sessions of a pool nearly linear.
    It is updated in place; the ranks do not depend on it. ``vals`` (float64), ``idx`` and ``rest``
    (int64) are work buffers of ``x``'s length.
    """
    m = x.shape[0]
    count = 0
    n_rest = 0
    for r in range(m):
        j = order[r]
        out[j] = np.nan
        if np.isfinite(x[j]):
            idx[count] = j
            vals[count] = x[j]
            count += 1
        else:
            rest[n_rest] = j
            n_rest += 1
    # shell sort of (value, column) pairs; the last gap is an insertion sort, linear on the
    # nearly sorted rows that consecutive sessions give
    gap = 1
    while gap < count // 3:
        gap = 3 * gap + 1
    while gap >= 1:
        for k in range(gap, count):
            v = vals[k]
            j = idx[k]
            r = k
            while r >= gap and vals[r - gap] > v:
                vals[r] = vals[r - gap]
                idx[r] = idx[r - gap]
                r -= gap
            vals[r] = v
            idx[r] = j
        gap //= 3
    for r in range(count):
        order[r] = idx[r]
    for r in range(n_rest):
        order[count + r] = rest[r]
    if count < 2:
        return
    k = 0
    while k < count:
        stop = k + 1
        while stop < count and vals[stop] == vals[k]:
            stop += 1
        pct = 0.5 * (k + 1 + stop) / count
        for r in range(k, stop):
            out[idx[r]] = pct
        k = stop


@njit(cache=True, nogil=True)
def cs_rank_nb(a):
    """:func:`cs_rank_1d_nb` on every row (session)."""
    n, m = a.shape
    out = np.empty((n, m))
    order = np.arange(m)
    vals = np.empty(m)
    idx = np.empty(m, dtype=np.int64)
    rest = np.empty(m, dtype=np.int64)
    for i in range(n):
        cs_rank_1d_nb(a[i], out[i], order, vals, idx, rest)
    return out


@njit(cache=True, nogil=True)
def cs_zscore_1d_nb(x, out):
    """``(x - mean) / std`` over the finite values of ``x`` (sample std, ``ddof=1``). NaN where the
    value is not finite, fewer than two values are, or the std is zero.
    """
    m = x.shape[0]
    count = 0
    acc = 0.0
    for j in range(m):
        out[j] = np.nan
        if np.isfinite(x[j]):
            acc += x[j]
            count += 1
    if count < 2:
        return
    mean = acc / count
    ss = 0.0
    for j in range(m):
        if np.isfinite(x[j]):
            ss += (x[j] - mean) * (x[j] - mean)
    std = np.sqrt(ss / (count - 1))
    if not std > 0.0:
        return
    for j in range(m):
        if np.isfinite(x[j]):
            out[j] = (x[j] - mean) / std


@njit(cache=True, nogil=True)
def cs_zscore_nb(a):
    """:func:`cs_zscore_1d_nb` on every row (session)."""
    n, m = a.shape
    out = np.empty((n, m))
    for i in range(n):
        cs_zscore_1d_nb(a[i], out[i])
    return out
