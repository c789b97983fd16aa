"""Numba kernels of the research core: numpy in, numpy out.

Shapes and conventions
----------------------
* ``values``: factor values, ``(sessions, funds, factors)`` float64, C-contiguous. Row ``t`` is the
  value known *before* trading at session ``t`` (it uses data through ``t-1``).
* ``labels``: forward returns, ``(horizons, sessions, funds)`` float64. ``labels[j, s, i]`` is the return
  of fund ``i`` from its trade price at ``s`` to its trade price at ``s + horizons[j]``; it is fully
  realised only at session ``s + horizons[j]`` and is NaN when either price is missing.
* ``universe``: ``(sessions, funds)`` bool, the funds with a usable trade price at the session. A factor
  value outside the universe is ignored.
* NaN never propagates into a statistic: every rank, correlation or mean is taken over the finite,
  in-universe entries only. A rank correlation needs at least ``min_obs`` common entries and non-zero
  rank variance on both sides, else it is NaN.
* Ranks are average ranks of ties (``scipy.stats.rankdata(method="average")``), 1-based. The batch
  kernels rank a whole session slab (funds x factors) at once by pairwise counting along the factor
  axis, which vectorises; that is quadratic in the funds of a session, fine for fund pools (tens to a
  few hundred funds), not meant for thousands of stocks.
* Outputs are allocated first and filled. ``rank_ic_nb`` gives one IC per label row (row ``s`` of
  horizon ``h`` is realised at ``s + h``); the point-in-time choice of rows -- only those realised by
  the as-of session -- is made by ``window_stats_nb`` and ``selection_path_nb`` from their ``as_of``.

Simulation contract (:func:`simulate_path_nb`, :func:`simulate_grid_nb`)
----------------------------------------------------------------------
Money is in real units: raw (unadjusted) prices, real shares, CNY (see
:mod:`rotation_platform.research.market`).

* ``trade_price[t, i]``: the raw price orders at session ``t`` execute at before slippage (the open or
  the close of ``t``); NaN where fund ``i`` cannot trade at ``t``.
* ``mark[t, i]``: the raw close of ``t``, carried over a limited number of sessions without a bar (NaN
  before listing and once the data has ended); positions are marked to it at every close.
* ``split[t, i]`` / ``dividend[t, i]``: corporate actions effective at the open of ``t``: shares are
  multiplied by the ratio (floored to whole shares), then each share is paid ``dividend`` CNY (or, with
  ``reinvest``, whole shares are bought at the ex-dividend reference price and the rest is cash).
* ``ended[t, i]``: the fund's data ended by the close of ``t - 1``: a holding is sold at its last mark
  (commission, no slippage) at ``t`` and the fund cannot be bought.
* ``excluded[t, i]``: the fund is out of the universe of ``t`` (an ERROR finding on data through
  ``t - 1`` inside the exclusion window): on a rebalance it is not eligible -- it cannot be bought or
  added to and a holding gets weight 0, so it is sold like a fund leaving the selection; between
  rebalances nothing changes.
* ``adv_limit[t, i]``: the largest position (CNY) the liquidity rule allows (``max_adv_pct`` of the ADV
  before ``t``; ``inf`` without the rule, 0 without an ADV).
* ``lots[i]``: board lot of fund ``i``. On a rebalance session the portfolio is valued at the trade
  prices (the last mark for a fund that cannot trade), the top ``top_n`` tradeable funds whose
  ``adv_limit`` admits a position of the target weight at that value are chosen (a suspended holding
  keeps its shares but takes no slot), target weights become whole lots (floored;
  buys add whole lots to the holding), sells execute before buys, a buy that the cash left cannot pay
  is cut lot by lot, and every order pays ``max(commission_rate * value, min_commission)`` on its value
  at the slipped price (``price * (1 +/- slippage)``).
* Portfolio construction (:func:`construct_weights_nb`, the same call in the target portfolio): the
  cash policy (``pro_rata`` widens the selection up to the cap), the trend filter (``risk_on``), the
  volatility target on ``rets`` through ``t - 1`` and the defensive fund; ``blocked[t, i]`` (the
  de-duplication, :func:`correlation_clusters_nb`) removes a fund from the eligible ones.

Compilation
-----------
Every kernel is ``@njit(cache=True)``, cached in :func:`rotation_platform.numba_cache.cache_dir`, and
compiled for one signature: counters passed to a helper kernel start as ``np.int64(0)`` and flags as
``np.bool_(...)``, never as a bare literal (numba would compile the helper once more for the literal
type), and the callers hand in float64 / int64 / bool C-contiguous, writable arrays
(:class:`~rotation_platform.research.market.Market` normalises its arrays).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from rotation_platform import numba_cache

numba_cache.configure()  # before the first @njit(cache=True): the cache folder is read at decoration

__all__ = [
    "forward_returns_nb",
    "rank_ic_nb",
    "normalized_ranks_nb",
    "window_stats_nb",
    "select_factors_nb",
    "assign_clusters_nb",
    "selection_path_nb",
    "composite_scores_nb",
    "select_weights_nb",
    "ex_ante_vol_nb",
    "construct_weights_nb",
    "correlation_clusters_nb",
    "rebalance_targets_nb",
    "corporate_actions_nb",
    "simulate_path_nb",
    "simulate_grid_nb",
]

_COUNT_CUTOFF = 96  # pairwise-counting ranks below this many entries, a sort above


# ---------------------------------------------------------------------------------------------- labels
@njit(cache=True)
def forward_returns_nb(price: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """``out[j, s, i] = price[s + h_j, i] / price[s, i] - 1`` (NaN when a price is missing or ``<= 0``)."""
    n_s, n_f = price.shape
    n_h = horizons.shape[0]
    out = np.full((n_h, n_s, n_f), np.nan)
    for j in range(n_h):
        h = horizons[j]
        for s in range(n_s - h):
            for i in range(n_f):
                p0 = price[s, i]
                p1 = price[s + h, i]
                if p0 > 0.0 and p1 > 0.0:  # False for NaN
                    out[j, s, i] = p1 / p0 - 1.0
    return out


# ---------------------------------------------------------------------------------------------- sorting
@njit(cache=True)
def _stable_argsort(keys: np.ndarray, n: int) -> np.ndarray:
    """The permutation ``np.argsort(keys[:n], kind="mergesort")`` returns: ascending, ties in index order,
    NaN last. A bottom-up merge sort on the indices; numba's generic mergesort takes seconds to compile
    in every kernel that uses it."""
    order = np.arange(n)
    buf = np.empty(n, np.int64)
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            k = lo
            while i < mid and j < hi:
                a = keys[order[i]]
                b = keys[order[j]]
                if b < a or (a != a and b == b):  # the right one only when strictly first: stable
                    buf[k] = order[j]
                    j += 1
                else:
                    buf[k] = order[i]
                    i += 1
                k += 1
            while i < mid:
                buf[k] = order[i]
                i += 1
                k += 1
            while j < hi:
                buf[k] = order[j]
                j += 1
                k += 1
            lo = hi
        order, buf = buf, order
        width *= 2
    return order


# ---------------------------------------------------------------------------------------------- batch IC
@njit(cache=True)
def _count_ranks(v: np.ndarray, n: int, out: np.ndarray) -> None:
    """Average ranks (1-based) of ``v[:n]`` (finite values).

    Small cross-sections (the usual fund pool) are ranked by branch-free pairwise counting, larger ones
    by a stable sort.
    """
    if n <= _COUNT_CUTOFF:
        for a in range(n):
            x = v[a]
            lt = 0
            eq = 0
            for b in range(n):
                y = v[b]
                lt += y < x
                eq += y == x
            out[a] = 1.0 + lt + (eq - 1) * 0.5
        return
    order = _stable_argsort(v, n)
    k = 0
    while k < n:
        end = k + 1
        while end < n and v[order[end]] == v[order[k]]:
            end += 1
        avg = (k + 1 + end) / 2.0
        for q in range(k, end):
            out[order[q]] = avg
        k = end


@njit(cache=True)
def _centered_ss(r: np.ndarray, n: int) -> float:
    mu = (n + 1) / 2.0
    ss = 0.0
    for a in range(n):
        d = r[a] - mu
        ss += d * d
    return ss


@njit(cache=True)
def _subset_corr_cols(xa: np.ndarray, ya: np.ndarray, ok: np.ndarray, n_f: int, min_obs: int,
                      bx: np.ndarray, by: np.ndarray, rbx: np.ndarray, rby: np.ndarray) -> float:
    """Spearman correlation of ``xa`` and ``ya`` (indexed by fund) over the funds where both are finite."""
    m = np.int64(0)
    for i in range(n_f):
        if ok[i] and np.isfinite(xa[i]) and np.isfinite(ya[i]):
            bx[m] = xa[i]
            by[m] = ya[i]
            m += 1
    if m < min_obs:
        return np.nan
    _count_ranks(bx, m, rbx)
    _count_ranks(by, m, rby)
    mu = (m + 1) / 2.0
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for q in range(m):
        dx = rbx[q] - mu
        dy = rby[q] - mu
        sxy += dx * dy
        sxx += dx * dx
        syy += dy * dy
    if sxx <= 0.0 or syy <= 0.0:
        return np.nan
    return sxy / np.sqrt(sxx * syy)


@njit(cache=True)
def _pairwise_counts(x: np.ndarray, acc: np.ndarray, members: np.ndarray, m: int) -> None:
    """``acc[i, k] += 2 * #(lower) + #(equal, self excluded)`` over the funds ``members[:m]``, for every
    factor column at once; both orders of a pair in one step. Missing values must be +inf: a present
    value then counts them as neither lower nor equal (their own counts are meaningless)."""
    n_k = x.shape[1]
    for a in range(m):
        ia = members[a]
        xa = x[ia]
        aa = acc[ia]
        for b in range(a + 1, m):
            ib = members[b]
            xb = x[ib]
            ab = acc[ib]
            for k in range(n_k):
                lt = 1.0 if xb[k] < xa[k] else 0.0
                e = 1.0 if xb[k] == xa[k] else 0.0
                aa[k] += 2.0 * lt + e
                ab[k] += 2.0 - 2.0 * lt - e


@njit(cache=True)
def _subset_ranks(x: np.ndarray, members: np.ndarray, m: int, r_out: np.ndarray, v_out: np.ndarray,
                  cnt: np.ndarray, ss: np.ndarray) -> None:
    """Centred average ranks of every factor column of ``x`` (funds x factors, +inf where missing) over
    the funds ``members[:m]``, by pairwise counting across all factors at once; 0 where missing.

    Writes rows ``members[:m]`` of ``r_out`` / ``v_out`` (1.0 where present), the counts ``cnt`` and the
    sums of squares ``ss``.
    """
    n_k = x.shape[1]
    for k in range(n_k):
        cnt[k] = 0.0
        ss[k] = 0.0
    for a in range(m):
        ia = members[a]
        xa = x[ia]
        ra = r_out[ia]
        va = v_out[ia]
        for k in range(n_k):
            present = 1.0 if xa[k] < np.inf else 0.0
            va[k] = present
            ra[k] = 0.0
            cnt[k] += present
    _pairwise_counts(x, r_out, members, m)
    for a in range(m):
        ia = members[a]
        ra = r_out[ia]
        va = v_out[ia]
        for k in range(n_k):
            d = (0.5 * ra[k] + (1.0 - cnt[k]) / 2.0) * va[k]
            ra[k] = d
            ss[k] += d * d


@njit(cache=True)
def _count_true(mask: np.ndarray) -> int:
    n = 0
    for i in range(mask.shape[0]):
        if mask[i]:
            n += 1
    return n


@njit(cache=True)
def _rank_ic_block(values: np.ndarray, labels: np.ndarray, universe: np.ndarray, min_obs: int, s0: int, s1: int,
                   ic: np.ndarray, autocorr: np.ndarray, n_valid: np.ndarray, varying: np.ndarray) -> None:
    """Sessions ``s0:s1`` of :func:`rank_ic_nb`.

    Per session the factor slab (funds x factors) is ranked for all factors at once by pairwise counting
    along the factor axis (contiguous, SIMD-friendly) and centred (0 where a value is missing). Where a
    factor covers exactly the funds that have a label (or the funds it covered on the previous session),
    the correlation is a dot product of the two centred rank vectors, accumulated for every horizon in
    one branch-free pass; otherwise the pair is re-ranked on the common funds.
    """
    n_s, n_f, n_k = values.shape
    n_h = labels.shape[0]
    xs = np.full((2, n_f, n_k), np.inf)  # current / previous slab (rows valid where ``inu``), +inf: missing
    rs = np.zeros((2, n_f, n_k))  # centred average ranks, 0 where the value is missing
    vs = np.zeros((2, n_f, n_k))  # 1.0 where the value is present
    inu = np.zeros((2, n_f), np.bool_)
    both = np.zeros(n_f, np.bool_)
    cnts = np.zeros((2, n_k))
    sxxs = np.zeros((2, n_k))
    mu = np.empty(n_k)
    sxy_ac = np.empty(n_k)
    inter_ac = np.empty(n_k)
    sxy = np.empty((n_h, n_k))
    inter = np.empty((n_h, n_k))
    uidx = np.empty(n_f, np.int64)
    lab = np.full((n_h, n_f), np.nan)
    lab_d = np.zeros((n_h, n_f))
    lab_n = np.zeros(n_h, np.int64)
    lab_ss = np.zeros(n_h)
    lv = np.empty(n_f)
    lr = np.empty(n_f)
    li = np.empty(n_f, np.int64)
    col_x = np.empty(n_f)
    col_y = np.empty(n_f)
    bx = np.empty(n_f)
    by = np.empty(n_f)
    rbx = np.empty(n_f)
    rby = np.empty(n_f)
    members = np.empty(n_f, np.int64)
    sub_r = np.zeros((n_f, n_k))
    sub_v = np.zeros((n_f, n_k))
    sub_rp = np.zeros((n_f, n_k))
    sub_vp = np.zeros((n_f, n_k))
    sub_cnt = np.zeros((n_h, n_k))
    sub_ss = np.zeros((n_h, n_k))
    sub_sxy = np.zeros((n_h, n_k))
    ac_cnt = np.zeros(n_k)
    ac_cntp = np.zeros(n_k)
    ac_ss = np.zeros(n_k)
    ac_ssp = np.zeros(n_k)
    ac_sxy = np.zeros(n_k)
    ac_inter = np.zeros(n_k)
    first = max(s0 - 1, 0)
    for s in range(first, s1):
        c = s & 1
        pv = 1 - c
        x = xs[c]
        r = rs[c]
        vm = vs[c]
        cnt = cnts[c]
        for k in range(n_k):
            cnt[k] = 0.0
        # rows of funds outside the universe are stale: every reader checks ``inu`` first; a missing
        # value is stored as +inf, which never counts as lower than or equal to a present value
        n_u = np.int64(0)
        for i in range(n_f):
            inu[c, i] = universe[s, i]
            if universe[s, i]:
                uidx[n_u] = i
                n_u += 1
                xi_ = x[i]
                ri_ = r[i]
                vi_ = vm[i]
                for k in range(n_k):
                    v = values[s, i, k]
                    fin = np.isfinite(v)
                    xi_[k] = v if fin else np.inf
                    vi_[k] = 1.0 if fin else 0.0
                    ri_[k] = 0.0
                    cnt[k] += 1.0 if fin else 0.0
        _pairwise_counts(x, r, uidx, n_u)
        # average rank 1 + acc / 2, centred on (n + 1) / 2
        sxx = sxxs[c]
        for k in range(n_k):
            mu[k] = (1.0 - cnt[k]) / 2.0
            sxx[k] = 0.0
        for a in range(n_u):
            ia = uidx[a]
            ra = r[ia]
            va = vm[ia]
            for k in range(n_k):
                d = (0.5 * ra[k] + mu[k]) * va[k]
                ra[k] = d
                sxx[k] += d * d
        if s < s0:
            continue
        for k in range(n_k):
            n_valid[s, k] = np.int64(cnt[k])
            varying[s, k] = sxx[k] > 0.0  # some centred rank differs from 0: two distinct values
        # labels: centred average ranks per horizon
        for j in range(n_h):
            n = np.int64(0)
            for i in range(n_f):
                y = labels[j, s, i]
                if universe[s, i] and np.isfinite(y):
                    lab[j, i] = y
                    lv[n] = y
                    li[n] = i
                    n += 1
                else:
                    lab[j, i] = np.nan
                lab_d[j, i] = 0.0
            _count_ranks(lv, n, lr)
            ml = (n + 1.0) / 2.0
            for q in range(n):
                lab_d[j, li[q]] = lr[q] - ml
            lab_n[j] = n
            lab_ss[j] = _centered_ss(lr, n)
        # one pass: rank autocorrelation and the IC at every horizon
        has_prev = s > 0
        rp = rs[pv]
        vp = vs[pv]
        for k in range(n_k):
            sxy_ac[k] = 0.0
            inter_ac[k] = 0.0
        for j in range(n_h):
            for k in range(n_k):
                sxy[j, k] = 0.0
                inter[j, k] = 0.0
        for i in range(n_f):
            both[i] = has_prev and inu[c, i] and inu[pv, i]
        for a in range(n_u):
            ia = uidx[a]
            ra = r[ia]
            va = vm[ia]
            if both[ia]:
                rpa = rp[ia]
                vpa = vp[ia]
                for k in range(n_k):
                    sxy_ac[k] += ra[k] * rpa[k]
                    inter_ac[k] += va[k] * vpa[k]
            for j in range(n_h):
                if not lab[j, ia] == lab[j, ia]:
                    continue
                dy = lab_d[j, ia]
                sj = sxy[j]
                ij = inter[j]
                for k in range(n_k):
                    sj[k] += ra[k] * dy
                    ij[k] += va[k]
        # the universe changed since the previous session: re-rank both slabs on the common funds
        n_both = np.int64(0)
        for i in range(n_f):
            if both[i]:
                members[n_both] = i
                n_both += 1
        uni_changed = has_prev and (n_both != n_u or n_both != _count_true(inu[pv]))
        if uni_changed and n_both >= min_obs:
            _subset_ranks(x, members, n_both, sub_r, sub_v, ac_cnt, ac_ss)
            _subset_ranks(xs[pv], members, n_both, sub_rp, sub_vp, ac_cntp, ac_ssp)
            for k in range(n_k):
                ac_sxy[k] = 0.0
                ac_inter[k] = 0.0
            for a in range(n_both):
                ia = members[a]
                r1 = sub_r[ia]
                r2 = sub_rp[ia]
                v1 = sub_v[ia]
                v2 = sub_vp[ia]
                for k in range(n_k):
                    ac_sxy[k] += r1[k] * r2[k]
                    ac_inter[k] += v1[k] * v2[k]
        # horizons whose labels miss some funds of the universe: re-rank the slab on the labelled funds
        for j in range(n_h):
            nl = lab_n[j]
            if nl == n_u or nl < min_obs:
                continue
            m = np.int64(0)
            for i in range(n_f):
                if lab[j, i] == lab[j, i]:
                    members[m] = i
                    m += 1
            _subset_ranks(x, members, m, sub_r, sub_v, sub_cnt[j], sub_ss[j])
            for k in range(n_k):
                sub_sxy[j, k] = 0.0
            for a in range(m):
                ia = members[a]
                dy = lab_d[j, ia]
                ra = sub_r[ia]
                sj = sub_sxy[j]
                for k in range(n_k):
                    sj[k] += ra[k] * dy
        for k in range(n_k):
            n_c = cnt[k]
            if n_c < min_obs:
                continue
            if has_prev and cnts[pv, k] >= min_obs and inter_ac[k] >= min_obs:
                if inter_ac[k] == n_c and inter_ac[k] == cnts[pv, k]:
                    # the same funds on both sessions: both centred rank vectors are complete
                    if sxx[k] > 0.0 and sxxs[pv, k] > 0.0:
                        autocorr[s, k] = sxy_ac[k] / np.sqrt(sxx[k] * sxxs[pv, k])
                elif uni_changed and ac_inter[k] == ac_cnt[k] and ac_inter[k] == ac_cntp[k]:
                    if ac_ss[k] > 0.0 and ac_ssp[k] > 0.0:
                        autocorr[s, k] = ac_sxy[k] / np.sqrt(ac_ss[k] * ac_ssp[k])
                else:
                    for i in range(n_f):
                        col_x[i] = x[i, k]
                        col_y[i] = xs[pv, i, k]
                    autocorr[s, k] = _subset_corr_cols(col_x, col_y, both, n_f, min_obs, bx, by, rbx, rby)
            for j in range(n_h):
                nl = lab_n[j]
                if nl < min_obs or inter[j, k] < min_obs:
                    continue
                if inter[j, k] == n_c and n_c == nl:
                    if sxx[k] > 0.0 and lab_ss[j] > 0.0:
                        ic[s, k, j] = sxy[j, k] / np.sqrt(sxx[k] * lab_ss[j])
                elif nl < n_u and sub_cnt[j, k] == nl:
                    # the factor covers every labelled fund: ranks re-taken on those funds
                    if sub_ss[j, k] > 0.0 and lab_ss[j] > 0.0:
                        ic[s, k, j] = sub_sxy[j, k] / np.sqrt(sub_ss[j, k] * lab_ss[j])
                else:
                    for i in range(n_f):
                        col_x[i] = x[i, k]
                    ic[s, k, j] = _subset_corr_cols(col_x, lab[j], inu[c], n_f, min_obs, bx, by, rbx, rby)


@njit(cache=True, parallel=True)
def rank_ic_nb(values: np.ndarray, labels: np.ndarray, universe: np.ndarray, min_obs: int, n_blocks: int):
    """Rank IC of every factor against every label horizon on every session, in one pass.

    Returns ``(ic, autocorr, n_valid, varying)``:

    * ``ic[s, k, j]``: Spearman correlation across funds of ``values[s, :, k]`` and ``labels[j, s, :]``
      over the funds where both are finite and in the universe.
    * ``autocorr[s, k]``: Spearman correlation of the factor's values at ``s`` and ``s - 1`` over the funds
      valid on both sessions (rank autocorrelation; one minus it is the factor's rank turnover).
    * ``n_valid[s, k]``: in-universe funds with a finite value; ``varying[s, k]``: at least two distinct
      finite values.

    Sessions are processed in ``n_blocks`` contiguous blocks in parallel (each block re-reads the session
    before it for the autocorrelation); the result does not depend on ``n_blocks``.
    """
    n_s, n_f, n_k = values.shape
    n_h = labels.shape[0]
    ic = np.full((n_s, n_k, n_h), np.nan)
    autocorr = np.full((n_s, n_k), np.nan)
    n_valid = np.zeros((n_s, n_k), np.int64)
    varying = np.zeros((n_s, n_k), np.bool_)
    nb_ = max(1, min(n_blocks, n_s))
    step = (n_s + nb_ - 1) // nb_
    for b in prange(nb_):
        s0 = b * step
        s1 = min(n_s, s0 + step)
        if s0 < s1:
            _rank_ic_block(values, labels, universe, min_obs, s0, s1, ic, autocorr, n_valid, varying)
    return ic, autocorr, n_valid, varying


@njit(cache=True)
def normalized_ranks_nb(values: np.ndarray, universe: np.ndarray, start: int, stop: int):
    """Centred average ranks scaled to unit norm per (session, factor), rows ``start:stop``.

    Returns ``(ranks[K, R, N], ok[K, R])`` with ``R = stop - start``: ``ranks[k, r, i]`` is zero for a fund
    without a value, and a whole row is zero (``ok`` False) for a factor with fewer than two distinct
    values on the session. The dot product of two factors' rows is their Spearman correlation when both
    cover the same funds (funds missing for one of them contribute zero).
    """
    n_f = values.shape[1]
    n_k = values.shape[2]
    n_r = stop - start
    out = np.zeros((n_k, n_r, n_f))
    ok = np.zeros((n_k, n_r), np.bool_)
    x = np.full((n_f, n_k), np.nan)
    acc = np.zeros((n_f, n_k))
    cnt = np.zeros(n_k)
    lo = np.empty(n_k)
    hi = np.empty(n_k)
    ss = np.zeros(n_k)
    uidx = np.empty(n_f, np.int64)
    for s in range(start, stop):
        n_u = 0
        for i in range(n_f):
            if universe[s, i]:
                uidx[n_u] = i
                n_u += 1
        for a in range(n_u):
            ia = uidx[a]
            xa = x[ia]
            aa = acc[ia]
            for k in range(n_k):
                v = values[s, ia, k]
                xa[k] = v if np.isfinite(v) else np.nan
                aa[k] = 0.0
        # pairwise counting across all factors at once (see _rank_ic_block)
        for a in range(n_u):
            ia = uidx[a]
            xa = x[ia]
            aa = acc[ia]
            for b in range(a + 1, n_u):
                ib = uidx[b]
                xb = x[ib]
                ab = acc[ib]
                for k in range(n_k):
                    e = 1.0 if xb[k] == xa[k] else 0.0
                    aa[k] += (2.0 if xb[k] < xa[k] else 0.0) + e
                    ab[k] += (2.0 if xa[k] < xb[k] else 0.0) + e
        for k in range(n_k):
            cnt[k] = 0.0
            lo[k] = np.inf
            hi[k] = -np.inf
            ss[k] = 0.0
        for a in range(n_u):
            xa = x[uidx[a]]
            for k in range(n_k):
                v = xa[k]
                fin = v == v
                cnt[k] += 1.0 if fin else 0.0
                lo[k] = v if fin and v < lo[k] else lo[k]
                hi[k] = v if fin and v > hi[k] else hi[k]
        for a in range(n_u):
            ia = uidx[a]
            xa = x[ia]
            aa = acc[ia]
            for k in range(n_k):
                d = 1.0 + 0.5 * aa[k] - (cnt[k] + 1.0) / 2.0
                aa[k] = d if xa[k] == xa[k] else 0.0
                ss[k] += aa[k] * aa[k]
        r = s - start
        for k in range(n_k):
            if cnt[k] < 2.0 or not (lo[k] < hi[k]) or not (ss[k] > 0.0):
                continue
            scale = 1.0 / np.sqrt(ss[k])
            ok[k, r] = True
            for a in range(n_u):
                ia = uidx[a]
                out[k, r, ia] = acc[ia, k] * scale
    return out, ok


# ---------------------------------------------------------------------------------------------- screen
@njit(cache=True)
def _ic_window(ic: np.ndarray, k: int, j: int, lo: int, hi: int):
    """n, mean, std (ddof=1) and hit rate (share with the sign of the mean) of ``ic[lo:hi, k, j]``."""
    n = 0
    tot = 0.0
    for s in range(lo, hi):
        v = ic[s, k, j]
        if np.isfinite(v):
            n += 1
            tot += v
    if n == 0:
        return 0, np.nan, np.nan, np.nan
    mean = tot / n
    ss = 0.0
    hits = 0
    for s in range(lo, hi):
        v = ic[s, k, j]
        if np.isfinite(v):
            d = v - mean
            ss += d * d
            if (v > 0.0 and mean > 0.0) or (v < 0.0 and mean < 0.0):
                hits += 1
    std = np.sqrt(ss / (n - 1)) if n > 1 else np.nan
    return n, mean, std, hits / n


@njit(cache=True)
def window_stats_nb(ic: np.ndarray, autocorr: np.ndarray, n_valid: np.ndarray, varying: np.ndarray,
                    n_universe: np.ndarray, horizons: np.ndarray, as_of: int, lookback: int):
    """Window statistics of every factor as of session ``as_of``.

    IC rows for horizon ``h`` are ``s in [as_of - h - lookback + 1, as_of - h]``: the last ``lookback``
    labels fully realised by ``as_of``. Coverage, rank autocorrelation and variation use factor rows
    ``[as_of - lookback + 1, as_of]``.

    Returns ``(n_obs[K, H], mean[K, H], std[K, H], hit[K, H], coverage[K], autocorr_mean[K],
    varying_share[K])``.
    """
    n_s, n_k, n_h = ic.shape
    n_obs = np.zeros((n_k, n_h), np.int64)
    mean = np.full((n_k, n_h), np.nan)
    std = np.full((n_k, n_h), np.nan)
    hit = np.full((n_k, n_h), np.nan)
    coverage = np.zeros(n_k)
    ac_mean = np.full(n_k, np.nan)
    vary = np.zeros(n_k)
    f_lo = max(as_of - lookback + 1, 0)
    f_hi = min(as_of + 1, n_s)
    univ = 0
    for s in range(f_lo, f_hi):
        univ += n_universe[s]
    for k in range(n_k):
        for j in range(n_h):
            hi = min(as_of - horizons[j] + 1, n_s)
            lo = max(hi - lookback, 0)
            if hi <= lo:
                continue
            n, m, sd, ht = _ic_window(ic, k, j, lo, hi)
            n_obs[k, j] = n
            mean[k, j] = m
            std[k, j] = sd
            hit[k, j] = ht
        cov = 0
        na = 0
        acs = 0.0
        nv = 0
        for s in range(f_lo, f_hi):
            cov += n_valid[s, k]
            a = autocorr[s, k]
            if np.isfinite(a):
                na += 1
                acs += a
            if varying[s, k]:
                nv += 1
        coverage[k] = cov / univ if univ > 0 else 0.0
        if na > 0:
            ac_mean[k] = acs / na
        if f_hi > f_lo:
            vary[k] = nv / (f_hi - f_lo)
    return n_obs, mean, std, hit, coverage, ac_mean, vary


@njit(cache=True)
def _pair_corr(ranks: np.ndarray, ok: np.ndarray, r0: int, r1: int, a: int, b: int) -> float:
    """Mean over rows ``r0:r1`` (where both factors vary) of the dot product of their normalised ranks."""
    n_f = ranks.shape[2]
    n = 0
    for r in range(r0, r1):
        if ok[a, r] and ok[b, r]:
            n += 1
    if n == 0:
        return np.nan
    ra = ranks[a]
    rb = ranks[b]
    tot = 0.0
    for r in range(r0, r1):
        for i in range(n_f):
            tot += ra[r, i] * rb[r, i]
    return tot / n


@njit(cache=True)
def select_factors_nb(strength: np.ndarray, eligible: np.ndarray, ranks: np.ndarray, ranks_ok: np.ndarray, r0: int,
                      r1: int, top_k: int, threshold: float, corr: np.ndarray):
    """Greedy de-duplication by factor correlation, strongest first.

    Candidates are the eligible factors in decreasing ``strength`` (|ICIR|; ties by index). A candidate
    whose mean rank correlation (rows ``r0:r1`` of ``ranks``) with a stronger cluster leader has absolute
    value above ``threshold`` joins that factor's cluster; otherwise it leads a new cluster and is kept.
    Stops once ``top_k`` are kept.

    ``corr`` (K x K) may hold precomputed correlations; a NaN entry is computed from ``ranks`` when needed.

    Returns ``(kept[top_k] (-1 padded), leader[K], leader_corr[K])``; ``leader[k]`` is the kept factor
    whose cluster ``k`` belongs to (itself when kept, -1 when not eligible or never reached).
    """
    n_k = strength.shape[0]
    cand = np.empty(n_k, np.int64)
    keys = np.empty(n_k)
    nc = np.int64(0)
    for k in range(n_k):
        if eligible[k]:
            cand[nc] = k
            keys[nc] = -strength[k]
            nc += 1
    order = _stable_argsort(keys, nc)
    kept = np.full(top_k, -1, np.int64)
    if top_k <= 0:
        return kept, np.full(n_k, -1, np.int64), np.full(n_k, np.nan)
    leaders = np.empty(n_k, np.int64)
    leader = np.full(n_k, -1, np.int64)
    leader_corr = np.full(n_k, np.nan)
    n_lead = 0
    n_kept = 0
    for q in range(nc):
        k = cand[order[q]]
        dup = -1
        dup_c = 0.0
        for a in range(n_lead):
            c = corr[leaders[a], k]
            if not np.isfinite(c):
                c = _pair_corr(ranks, ranks_ok, r0, r1, leaders[a], k)
            if np.isfinite(c) and abs(c) > threshold:
                dup = leaders[a]
                dup_c = c
                break
        if dup >= 0:
            leader[k] = dup
            leader_corr[k] = dup_c
            continue
        leaders[n_lead] = k
        n_lead += 1
        leader[k] = k
        leader_corr[k] = 1.0
        kept[n_kept] = k
        n_kept += 1
        if n_kept == top_k:
            break
    return kept, leader, leader_corr


@njit(cache=True)
def assign_clusters_nb(eligible: np.ndarray, kept: np.ndarray, ranks: np.ndarray, ranks_ok: np.ndarray, r0: int,
                       r1: int, threshold: float):
    """Cluster of every eligible factor relative to the kept ones (for reports).

    ``leader[k]`` is the first kept factor (in selection order) whose mean rank correlation with ``k``
    exceeds ``threshold`` in absolute value, ``k`` itself when it is kept or duplicates none, -1 when
    ``k`` is not eligible; ``leader_corr`` is that correlation (1 for itself).
    """
    n_k = eligible.shape[0]
    leader = np.full(n_k, -1, np.int64)
    leader_corr = np.full(n_k, np.nan)
    is_kept = np.zeros(n_k, np.bool_)
    for q in range(kept.shape[0]):
        if kept[q] >= 0:
            is_kept[kept[q]] = True
    for k in range(n_k):
        if not eligible[k]:
            continue
        leader[k] = k
        leader_corr[k] = 1.0
        if is_kept[k]:
            continue
        for q in range(kept.shape[0]):
            a = kept[q]
            if a < 0:
                break
            c = _pair_corr(ranks, ranks_ok, r0, r1, a, k)
            if np.isfinite(c) and abs(c) > threshold:
                leader[k] = a
                leader_corr[k] = c
                break
    return leader, leader_corr


@njit(cache=True)
def _eligibility(n_obs: int, mean: float, std: float, coverage: float, vary_share: float,
                 min_n: int, min_coverage: float, min_abs_icir: float, ann: float):
    """(eligible, annualised ICIR) of one factor at the selection horizon."""
    if n_obs < min_n or not np.isfinite(mean) or not (std > 0.0):
        return False, np.nan
    icir = mean / std * ann
    ok = coverage >= min_coverage and vary_share > 0.0 and abs(icir) >= min_abs_icir and mean != 0.0
    return ok, icir


@njit(cache=True)
def selection_path_nb(ic: np.ndarray, n_valid: np.ndarray, varying: np.ndarray, n_universe: np.ndarray,
                      ranks: np.ndarray, ranks_ok: np.ndarray, ranks_offset: int, sel_horizon: int,
                      as_of: np.ndarray,
                      lookback: int, min_n: int, min_coverage: float, min_abs_icir: float,
                      ann: float, top_k: int, threshold: float, sel_col: int):
    """The selected factors as of each session in ``as_of`` (the screen of :func:`window_stats_nb`,
    selection horizon only).

    ``ranks, ranks_ok`` (:func:`normalized_ranks_nb`) cover rows ``ranks_offset:``. Returns ``(kept[A, top_k],
    sign[A, top_k], icir[A, top_k])`` with -1 / 0 / NaN padding.
    """
    n_s, n_k, _ = ic.shape
    n_a = as_of.shape[0]
    kept_all = np.full((n_a, top_k), -1, np.int64)
    sign_all = np.zeros((n_a, top_k))
    icir_all = np.full((n_a, top_k), np.nan)
    strength = np.zeros(n_k)
    eligible = np.zeros(n_k, np.bool_)
    icir_k = np.full(n_k, np.nan)
    lazy = np.full((n_k, n_k), np.nan)
    for a in range(n_a):
        t = as_of[a]
        if t < 0:
            continue
        hi = min(t - sel_horizon + 1, n_s)
        lo = max(hi - lookback, 0)
        f_lo = max(t - lookback + 1, 0)
        f_hi = min(t + 1, n_s)
        univ = 0
        for s in range(f_lo, f_hi):
            univ += n_universe[s]
        any_ok = False
        for k in range(n_k):
            eligible[k] = False
            if hi <= lo or univ == 0:
                continue
            n, m, sd, _ = _ic_window(ic, k, sel_col, lo, hi)
            cov = 0
            nv = 0
            for s in range(f_lo, f_hi):
                cov += n_valid[s, k]
                if varying[s, k]:
                    nv += 1
            ok, icir = _eligibility(n, m, sd, cov / univ, nv / (f_hi - f_lo), min_n, min_coverage,
                                    min_abs_icir, ann)
            eligible[k] = ok
            icir_k[k] = icir
            strength[k] = abs(icir) if ok else 0.0
            any_ok = any_ok or ok
        if not any_ok:
            continue
        kept, _, _ = select_factors_nb(strength, eligible, ranks, ranks_ok, f_lo - ranks_offset,
                                       f_hi - ranks_offset, top_k, threshold, lazy)
        for q in range(top_k):
            k = kept[q]
            if k < 0:
                break
            kept_all[a, q] = k
            sign_all[a, q] = 1.0 if icir_k[k] > 0 else -1.0
            icir_all[a, q] = icir_k[k]
    return kept_all, sign_all, icir_all


# ---------------------------------------------------------------------------------------------- scores
@njit(cache=True)
def composite_scores_nb(values: np.ndarray, universe: np.ndarray, rows: np.ndarray, sel_row: np.ndarray,
                        kept: np.ndarray, sign: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Composite scores on the sessions ``rows``; NaN on every other row.

    For row ``t = rows[q]`` the selection is row ``sel_row[q]`` of ``kept/sign/weight`` (-1: none). Each
    selected factor is z-scored across the in-universe funds with a value (population std; a factor
    without dispersion is skipped), multiplied by its sign, and the score of a fund is the
    ``weight``-weighted mean of the z-scores it has.
    """
    n_s, n_f, _ = values.shape
    top_k = kept.shape[1]
    out = np.full((n_s, n_f), np.nan)
    num = np.zeros(n_f)
    den = np.zeros(n_f)
    for q in range(rows.shape[0]):
        t = rows[q]
        a = sel_row[q]
        if a < 0:
            continue
        for i in range(n_f):
            num[i] = 0.0
            den[i] = 0.0
        for c in range(top_k):
            k = kept[a, c]
            if k < 0:
                break
            w = weight[a, c]
            sg = sign[a, c]
            n = 0
            tot = 0.0
            for i in range(n_f):
                v = values[t, i, k]
                if universe[t, i] and np.isfinite(v):
                    n += 1
                    tot += v
            if n < 2:
                continue
            mu = tot / n
            ss = 0.0
            for i in range(n_f):
                v = values[t, i, k]
                if universe[t, i] and np.isfinite(v):
                    ss += (v - mu) * (v - mu)
            sd = np.sqrt(ss / n)
            if not (sd > 0.0):
                continue
            for i in range(n_f):
                v = values[t, i, k]
                if universe[t, i] and np.isfinite(v):
                    num[i] += w * sg * (v - mu) / sd
                    den[i] += w
        for i in range(n_f):
            if den[i] > 0.0:
                out[t, i] = num[i] / den[i]
    return out


# ---------------------------------------------------------------------------------------------- trading
@njit(cache=True)
def select_weights_nb(score: np.ndarray, tradeable: np.ndarray, held: np.ndarray, n_pick: int, buffer: int,
                      weight: float, out: np.ndarray) -> int:
    """Top-N selection with a holding buffer; writes target weights into ``out``; returns the count.

    Candidates are tradeable funds with a finite score, ranked by score (descending, ties by column).
    A held candidate ranked within ``n_pick + buffer`` is kept (best first); free slots go to the best
    other candidates. Every chosen fund gets ``weight``; everything else 0 (held funds that cannot trade
    are the caller's business).
    """
    n_f = score.shape[0]
    keys = np.empty(n_f)
    idx = np.empty(n_f, np.int64)
    nc = np.int64(0)
    for i in range(n_f):
        out[i] = 0.0
        if tradeable[i] and np.isfinite(score[i]):
            idx[nc] = i
            keys[nc] = -score[i]
            nc += 1
    if nc == 0 or n_pick <= 0:
        return 0
    order = _stable_argsort(keys, nc)
    chosen = 0
    limit = min(nc, n_pick + buffer)
    for q in range(limit):
        i = idx[order[q]]
        if held[i] and chosen < n_pick:
            out[i] = weight
            chosen += 1
    for q in range(nc):
        if chosen >= n_pick:
            break
        i = idx[order[q]]
        if out[i] == 0.0:
            out[i] = weight
            chosen += 1
    return chosen


# ---------------------------------------------------------------------------------------------- construction
POLICY_CASH = 0
POLICY_PRO_RATA = 1
POLICY_DEFENSIVE = 2


@njit(cache=True)
def pick_count_nb(top_n: int, max_weight: float, policy: int) -> int:
    """Funds a rebalance picks: ``top_n``, or with ``pro_rata`` at least ``ceil(1 / max_weight)``."""
    n = top_n
    if policy == POLICY_PRO_RATA and max_weight > 0.0:
        need = int(np.ceil(1.0 / max_weight - 1e-9))
        if need > n:
            n = need
    return n


@njit(cache=True)
def ex_ante_vol_nb(rets: np.ndarray, t_end: int, window: int, min_obs: int, w: np.ndarray, ann: int) -> float:
    """Annualised ex-ante volatility ``sqrt(ann * w' C w)`` of the weights ``w`` (funds).

    ``C`` is the sample covariance (ddof 1) of the daily returns ``rets`` on rows
    ``t_end - window + 1 .. t_end``, pair by pair over the rows where both returns are finite (as
    ``pandas.DataFrame.cov(min_periods=min_obs)``). A pair with fewer than ``min_obs`` common rows is taken
    as perfectly correlated (``sd_i * sd_j``, an upper bound); a fund with fewer than ``min_obs`` returns
    makes the result NaN. Point-in-time when ``t_end`` is the last row known at the decision.
    """
    n_f = w.shape[0]
    lo = max(t_end - window + 1, 0)
    idx = np.empty(n_f, np.int64)
    m = 0
    for i in range(n_f):
        if w[i] != 0.0:
            idx[m] = i
            m += 1
    if m == 0:
        return 0.0
    sd = np.empty(m)
    for a in range(m):
        i = idx[a]
        n = 0
        s = 0.0
        for r in range(lo, t_end + 1):
            x = rets[r, i]
            if np.isfinite(x):
                n += 1
                s += x
        if n < min_obs or n < 2:
            return np.nan
        mu = s / n
        ss = 0.0
        for r in range(lo, t_end + 1):
            x = rets[r, i]
            if np.isfinite(x):
                ss += (x - mu) * (x - mu)
        sd[a] = np.sqrt(ss / (n - 1))
    var = 0.0
    for a in range(m):
        i = idx[a]
        var += w[i] * w[i] * sd[a] * sd[a]
        for b in range(a + 1, m):
            j = idx[b]
            n = 0
            sx = 0.0
            sy = 0.0
            for r in range(lo, t_end + 1):
                x = rets[r, i]
                y = rets[r, j]
                if np.isfinite(x) and np.isfinite(y):
                    n += 1
                    sx += x
                    sy += y
            if n < min_obs or n < 2:
                c = sd[a] * sd[b]
            else:
                mx = sx / n
                my = sy / n
                sxy = 0.0
                for r in range(lo, t_end + 1):
                    x = rets[r, i]
                    y = rets[r, j]
                    if np.isfinite(x) and np.isfinite(y):
                        sxy += (x - mx) * (y - my)
                c = sxy / (n - 1)
            var += 2.0 * w[i] * w[j] * c
    if var < 0.0:
        var = 0.0
    return np.sqrt(var * ann)


@njit(cache=True)
def _has_history(rets: np.ndarray, t_end: int, window: int, min_obs: int, i: int) -> bool:
    n = 0
    for r in range(max(t_end - window + 1, 0), t_end + 1):
        if np.isfinite(rets[r, i]):
            n += 1
    return n >= min_obs and n >= 2


@njit(cache=True)
def construct_weights_nb(score: np.ndarray, eligible: np.ndarray, held: np.ndarray, top_n: int, buffer: int,
                         max_weight: float, policy: int, book: float, limit: np.ndarray, rets: np.ndarray,
                         t_end: int, vol_window: int, target_vol: float, ann: int, risk_on: bool, defensive: int,
                         defensive_ok: bool, out: np.ndarray) -> float:
    """Target weights of one rebalance (written to ``out``); returns the exposure scale applied (0..1).

    1. **Picks.** ``n = top_n`` funds (``policy`` cash or defensive) or, with ``pro_rata``,
       ``n = max(top_n, ceil(1 / max_weight))`` -- the fewest funds that can be fully invested within the
       cap -- are chosen by :func:`select_weights_nb` among ``eligible`` (the caller's eligibility at the
       weight ``min(1 / n, max_weight)``; with a volatility target a fund also needs ``vol_window // 2``
       returns through ``t_end``). Each pick gets ``min(1 / n, max_weight)``; with ``pro_rata`` the ``k``
       picks share the whole book, ``min(1 / k, max_weight)`` each (so when fewer than ``n`` funds are
       eligible the picks grow up to the cap, never beyond it), and never more than the liquidity
       ``limit[i] / book``.
    2. **Trend filter.** ``risk_on`` False (the pool's trend signal is negative): no pick is held.
    3. **Volatility target.** ``target_vol > 0``: the picks are scaled by
       ``min(1, target_vol / ex_ante_vol)`` (:func:`ex_ante_vol_nb` on the returns through ``t_end``).
    4. **Remainder.** The defensive fund (``defensive >= 0``; never a pick) receives what the trend
       filter and the volatility target removed and, with ``policy`` defensive or pro_rata, everything
       not invested in picks; only when it can trade (``defensive_ok``) and within its own liquidity
       limit. The rest is cash.
    """
    n_f = score.shape[0]
    n = pick_count_nb(top_n, max_weight, policy)
    w0 = min(1.0 / n, max_weight)
    ok = np.empty(n_f, np.bool_)
    min_obs = max(vol_window // 2, 2)
    for i in range(n_f):
        ok[i] = eligible[i] and i != defensive
        if ok[i] and target_vol > 0.0:
            ok[i] = _has_history(rets, t_end, vol_window, min_obs, i)
    k = select_weights_nb(score, ok, held, n, buffer, w0, out)
    if k > 0 and policy == POLICY_PRO_RATA:
        w1 = min(1.0 / k, max_weight)
        for i in range(n_f):
            if out[i] > 0.0:
                cap_i = limit[i] / book if book > 0.0 else 0.0
                out[i] = min(w1, max(cap_i, w0))  # eligible at w0: never below it
    pre = 0.0
    for i in range(n_f):
        pre += out[i]
    scale = 1.0
    if not risk_on:
        scale = 0.0
    elif target_vol > 0.0 and pre > 0.0:
        vol = ex_ante_vol_nb(rets, t_end, vol_window, min_obs, out, ann)
        if vol > target_vol:
            scale = target_vol / vol
    if scale < 1.0:
        for i in range(n_f):
            out[i] *= scale
    if defensive >= 0:
        total = 0.0
        for i in range(n_f):
            total += out[i]
        rem = pre - total if policy == POLICY_CASH else 1.0 - total
        if defensive_ok and rem > 1e-12:
            cap_d = limit[defensive] / book if book > 0.0 else 0.0
            out[defensive] = min(rem, cap_d)
        else:
            out[defensive] = 0.0
    return scale


@njit(cache=True)
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def correlation_clusters_nb(rets: np.ndarray, ends: np.ndarray, window: int, threshold: float, min_obs: int,
                            group: np.ndarray) -> np.ndarray:
    """Fund clusters as of each row of ``ends``: ``out[q, i]`` is the lowest column of fund ``i``'s cluster.

    Two funds are linked when the Pearson correlation of their daily returns over rows
    ``ends[q] - window + 1 .. ends[q]`` (the rows where both are finite, at least ``min_obs``) exceeds
    ``threshold``, or when they declare the same tracked index (``group[i] == group[j] >= 0``); clusters
    are the connected components of the links. Uses returns through ``ends[q]`` only.
    """
    n_s, n_f = rets.shape
    n_q = ends.shape[0]
    out = np.empty((n_q, n_f), np.int64)
    for q in prange(n_q):
        e = ends[q]
        lo = max(e - window + 1, 0)
        parent = np.arange(n_f)
        for a in range(n_f):
            for b in range(a + 1, n_f):
                linked = group[a] >= 0 and group[a] == group[b]
                if not linked and threshold <= 1.0 and e >= 0:
                    n = 0
                    sx = 0.0
                    sy = 0.0
                    for r in range(lo, e + 1):
                        x = rets[r, a]
                        y = rets[r, b]
                        if np.isfinite(x) and np.isfinite(y):
                            n += 1
                            sx += x
                            sy += y
                    if n >= min_obs and n >= 3:
                        mx = sx / n
                        my = sy / n
                        sxy = 0.0
                        sxx = 0.0
                        syy = 0.0
                        for r in range(lo, e + 1):
                            x = rets[r, a]
                            y = rets[r, b]
                            if np.isfinite(x) and np.isfinite(y):
                                sxy += (x - mx) * (y - my)
                                sxx += (x - mx) * (x - mx)
                                syy += (y - my) * (y - my)
                        if sxx > 0.0 and syy > 0.0 and sxy / np.sqrt(sxx * syy) > threshold:
                            linked = True
                if linked:
                    ra = _find(parent, a)
                    rb = _find(parent, b)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
        for i in range(n_f):
            out[q, i] = _find(parent, i)
    return out


@njit(cache=True)
def _fee(value: float, rate: float, min_fee: float) -> float:
    f = value * rate
    return f if f > min_fee else min_fee


@njit(cache=True)
def rebalance_targets_nb(weights: np.ndarray, shares: np.ndarray, cash: float, price: np.ndarray,
                         value_price: np.ndarray, tradeable: np.ndarray, lots: np.ndarray, rate: float,
                         min_fee: float, slippage: float, target: np.ndarray) -> None:
    """Target shares for ``weights`` that the cash can pay for; writes ``target``.

    The portfolio value is ``cash + sum(shares * value_price)``. Funds that cannot trade keep their
    shares. A fund's target is its weight of the value in whole board lots (``lots[i]`` shares,
    floored); a sale goes down to that target (an odd remainder, e.g. after a share conversion, is sold
    with it), a buy adds whole lots to the holding. Sells free cash first (net of slippage and
    commission); buys are then cut one lot at a time, largest order value first, until their cost with
    commission fits the cash.
    """
    n_f = shares.shape[0]
    value = cash
    for i in range(n_f):
        if shares[i] != 0.0:
            value += shares[i] * value_price[i]
    free = cash
    for i in range(n_f):
        if not tradeable[i]:
            target[i] = shares[i]
            continue
        lot = lots[i]
        tgt = np.floor(weights[i] * value / (price[i] * lot) + 1e-9) * lot if weights[i] > 0.0 else 0.0
        if tgt > shares[i]:
            tgt = shares[i] + np.floor((tgt - shares[i]) / lot + 1e-9) * lot
        if tgt < shares[i]:
            proceeds = (shares[i] - tgt) * price[i] * (1.0 - slippage)
            fee = _fee(proceeds, rate, min_fee)
            if proceeds - fee < 0.0:
                tgt = shares[i]
            else:
                free += proceeds - fee
        target[i] = tgt
    while True:
        need = 0.0
        big = -1
        big_v = 0.0
        for i in range(n_f):
            if tradeable[i] and target[i] > shares[i]:
                v = (target[i] - shares[i]) * price[i] * (1.0 + slippage)
                need += v + _fee(v, rate, min_fee)
                if v > big_v:
                    big_v = v
                    big = i
        if need <= free or big < 0:
            break
        target[big] -= lots[big]


@njit(cache=True)
def corporate_actions_nb(t: int, shares: np.ndarray, cash: float, split: np.ndarray, dividend: np.ndarray,
                         mark: np.ndarray, reinvest: bool, received: np.ndarray) -> float:
    """Apply session ``t``'s splits and dividends to the holdings entering it; returns the new cash.

    A split multiplies the shares by its ratio, floored to whole shares (the remainder of a fund share
    conversion goes to the fund). A dividend pays ``shares * dividend[t, i]`` CNY (written to
    ``received[i]``); with ``reinvest`` it buys whole shares at the ex-dividend reference price
    (previous close in new units minus the dividend) and only the remainder stays cash.
    """
    n_f = shares.shape[0]
    for i in range(n_f):
        received[i] = 0.0
        if shares[i] == 0.0:
            continue
        s = split[t, i]
        if s != 1.0:
            shares[i] = np.floor(shares[i] * s + 1e-9)
        d = dividend[t, i]
        if d > 0.0:
            pay = shares[i] * d
            received[i] = pay
            if reinvest and t > 0:
                ref = mark[t - 1, i] / s - d
                if ref > 0.0:
                    extra = np.floor(pay / ref + 1e-9)
                    shares[i] += extra
                    pay -= extra * ref
            cash += pay
    return cash


@njit(cache=True)
def sell_ended_nb(t: int, shares: np.ndarray, cash: float, mark: np.ndarray, ended: np.ndarray, rate: float,
                  min_fee: float, sold: np.ndarray, fee: np.ndarray, price: np.ndarray) -> float:
    """Sell every holding whose data ended at session ``t`` at its last mark (no slippage: there is no
    market); ``sold``/``fee``/``price`` get each fund's shares sold, commission and price (0 where nothing
    was sold). Returns the cash after the sales."""
    for i in range(shares.shape[0]):
        sold[i] = 0.0
        fee[i] = 0.0
        price[i] = 0.0
        if ended[t, i] and shares[i] > 0.0:
            p_last = mark[t - 1, i] if t > 0 else np.nan
            if not p_last > 0.0:
                p_last = 0.0
            v = shares[i] * p_last
            f = _fee(v, rate, min_fee) if v > 0.0 else 0.0
            cash += v - f
            sold[i] = shares[i]
            fee[i] = f
            price[i] = p_last
            shares[i] = 0.0
    return cash


@njit(cache=True)
def _simulate(trade_price: np.ndarray, mark: np.ndarray, split: np.ndarray, dividend: np.ndarray,
              ended: np.ndarray, excluded: np.ndarray, lots: np.ndarray, adv_limit: np.ndarray, reinvest: bool,
              scores: np.ndarray, active: np.ndarray,
              variant: np.ndarray, top_n: np.ndarray, buffer: np.ndarray, cadence: np.ndarray,
              max_weight: float, init_cash: float, rate: float, min_fee: float,
              slippage: float, record: bool, equity: np.ndarray, shares_out: np.ndarray,
              order_out: np.ndarray, fee_out: np.ndarray, slip_out: np.ndarray, weight_out: np.ndarray,
              cash_out: np.ndarray, price_out: np.ndarray, div_out: np.ndarray, liq_out: np.ndarray,
              rets: np.ndarray, blocked: np.ndarray, risk_on: np.ndarray, trend: np.ndarray, policy: int,
              defensive: int, target_vol: float, vol_window: int, ann: int) -> None:
    n_s, n_f = trade_price.shape
    shares = np.zeros(n_f)
    cash = init_cash
    w = np.zeros(n_f)
    target = np.zeros(n_f)
    tradeable = np.zeros(n_f, np.bool_)
    eligible = np.zeros(n_f, np.bool_)
    held = np.zeros(n_f, np.bool_)
    vprice = np.zeros(n_f)
    received = np.zeros(n_f)
    sold = np.zeros(n_f)
    sold_fee = np.zeros(n_f)
    sold_price = np.zeros(n_f)
    for t in range(n_s):
        # 1. corporate actions effective at the open of t
        cash = corporate_actions_nb(t, shares, cash, split, dividend, mark, reinvest, received)
        if record:
            for i in range(n_f):
                div_out[t, i] = received[i]
        # 2. funds whose data ended: liquidated at their last price
        cash = sell_ended_nb(t, shares, cash, mark, ended, rate, min_fee, sold, sold_fee, sold_price)
        if record:
            for i in range(n_f):
                if sold[i] > 0.0:
                    order_out[t, i] = -sold[i]
                    fee_out[t, i] = sold_fee[i]
                    price_out[t, i] = sold_price[i]
                    liq_out[t, i] = True
        # 3. rebalance
        p = active[t]
        rebalance = False
        if p >= 0:
            rebalance = t % cadence[p] == 0 or (t > 0 and active[t - 1] != p)
        if rebalance:
            sc = scores[variant[p], t]
            any_score = False
            for i in range(n_f):
                if np.isfinite(sc[i]):
                    any_score = True
                    break
            if any_score:
                for i in range(n_f):
                    tp = trade_price[t, i]
                    tradeable[i] = tp > 0.0 and not ended[t, i]
                    held[i] = shares[i] > 0.0
                    if tradeable[i]:
                        vprice[i] = tp
                    else:
                        vprice[i] = mark[t - 1, i] if t > 0 and mark[t - 1, i] > 0.0 else 0.0
                # liquidity: a fund is eligible when a position of the target weight at the book's value
                # fits its ADV limit; a suspended holding keeps its shares but takes no slot
                w_each = min(1.0 / pick_count_nb(top_n[p], max_weight, policy), max_weight)
                book = cash
                for i in range(n_f):
                    if shares[i] != 0.0:
                        book += shares[i] * vprice[i]
                for i in range(n_f):
                    eligible[i] = (tradeable[i] and not excluded[t, i] and adv_limit[t, i] >= w_each * book
                                   and not blocked[t, i])
                d_ok = defensive >= 0 and tradeable[defensive] and not excluded[t, defensive]
                construct_weights_nb(sc, eligible, held, top_n[p], buffer[p], max_weight, policy, book, adv_limit[t],
                                     rets, t - 1, vol_window, target_vol, ann, risk_on[trend[p], t], defensive, d_ok,
                                     w)
                rebalance_targets_nb(w, shares, cash, trade_price[t], vprice, tradeable, lots, rate, min_fee,
                                     slippage, target)
                for i in range(n_f):
                    d = target[i] - shares[i]
                    if d < 0.0:
                        v = -d * trade_price[t, i] * (1.0 - slippage)
                        f = _fee(v, rate, min_fee)
                        cash += v - f
                        shares[i] = target[i]
                        if record:
                            order_out[t, i] = d
                            fee_out[t, i] = f
                            slip_out[t, i] = -d * trade_price[t, i] * slippage
                            price_out[t, i] = trade_price[t, i]
                for i in range(n_f):
                    d = target[i] - shares[i]
                    if d > 0.0:
                        v = d * trade_price[t, i] * (1.0 + slippage)
                        f = _fee(v, rate, min_fee)
                        cash -= v + f
                        shares[i] = target[i]
                        if record:
                            order_out[t, i] = d
                            fee_out[t, i] = f
                            slip_out[t, i] = d * trade_price[t, i] * slippage
                            price_out[t, i] = trade_price[t, i]
                if record:
                    for i in range(n_f):
                        weight_out[t, i] = w[i]
        # 4. mark to the close
        val = cash
        for i in range(n_f):
            if shares[i] != 0.0:
                val += shares[i] * mark[t, i]
        equity[t] = val
        if record:
            cash_out[t] = cash
            for i in range(n_f):
                shares_out[t, i] = shares[i]


@njit(cache=True)
def simulate_path_nb(trade_price: np.ndarray, mark: np.ndarray, split: np.ndarray, dividend: np.ndarray,
                     ended: np.ndarray, excluded: np.ndarray, lots: np.ndarray, adv_limit: np.ndarray,
                     reinvest: bool, scores: np.ndarray, active: np.ndarray,
                     variant: np.ndarray, top_n: np.ndarray, buffer: np.ndarray, cadence: np.ndarray,
                     max_weight: float, init_cash: float, rate: float, min_fee: float, slippage: float,
                     rets=None, blocked=None, risk_on=None, trend=None, policy: int = 0, defensive: int = -1,
                     target_vol: float = 0.0, vol_window: int = 60, ann: int = 252):
    """One portfolio whose parameter set may change by session (``active[t]``; -1: no trading).

    The portfolio construction options (:func:`construct_weights_nb`; omitted: the plain top-N with the
    rest in cash): ``rets`` daily returns (sessions x funds, for the volatility target), ``blocked``
    (sessions x funds) funds a more liquid fund of their cluster keeps out of the selection, ``risk_on``
    (filters x sessions) the trend filters' signals and ``trend[p]`` the filter row of set ``p``,
    ``policy`` (0 cash, 1 pro_rata, 2 defensive), ``defensive`` the defensive fund's column (-1: none),
    ``target_vol`` (0: off), ``vol_window`` and ``ann`` (sessions a year).

    A session rebalances when ``t % cadence == 0`` for the active set or when the active set changes.
    ``scores[variant[p], t]`` are the composite scores the set ``p`` trades on at ``t``.

    Returns ``(equity[S], shares[S, N], orders[S, N], commission[S, N], slippage_cost[S, N],
    weights[S, N], cash[S], order_price[S, N], dividends[S, N], liquidated[S, N])``; ``orders`` is the
    signed share change (0: none) at ``order_price`` before slippage (NaN where none), ``weights`` the
    target weights on rebalance sessions (NaN elsewhere), ``dividends`` the cash paid on the holdings
    and ``liquidated`` marks the sales of funds whose data ended.
    """
    n_s, n_f = trade_price.shape
    equity = np.empty(n_s)
    shares = np.zeros((n_s, n_f))
    orders = np.zeros((n_s, n_f))
    fees = np.zeros((n_s, n_f))
    slip = np.zeros((n_s, n_f))
    weights = np.full((n_s, n_f), np.nan)
    cash = np.empty(n_s)
    price = np.full((n_s, n_f), np.nan)
    divs = np.zeros((n_s, n_f))
    liq = np.zeros((n_s, n_f), np.bool_)
    if rets is None:
        rets_ = np.zeros((1, 1))
    else:
        rets_ = rets
    if blocked is None:
        blocked_ = np.zeros((n_s, n_f), np.bool_)
    else:
        blocked_ = blocked
    if risk_on is None:
        risk_ = np.ones((1, n_s), np.bool_)
    else:
        risk_ = risk_on
    if trend is None:
        trend_ = np.zeros(top_n.shape[0], np.int64)
    else:
        trend_ = trend
    _simulate(trade_price, mark, split, dividend, ended, excluded, lots, adv_limit, reinvest, scores, active, variant,
              top_n, buffer, cadence, max_weight, init_cash, rate, min_fee, slippage, np.bool_(True), equity, shares,
              orders, fees, slip,
              weights, cash, price, divs, liq, rets_, blocked_, risk_, trend_, policy, defensive, target_vol,
              vol_window, ann)
    return equity, shares, orders, fees, slip, weights, cash, price, divs, liq


@njit(cache=True, parallel=True)
def simulate_grid_nb(trade_price: np.ndarray, mark: np.ndarray, split: np.ndarray, dividend: np.ndarray,
                     ended: np.ndarray, excluded: np.ndarray, lots: np.ndarray, adv_limit: np.ndarray,
                     reinvest: bool, scores: np.ndarray, variant: np.ndarray,
                     top_n: np.ndarray, buffer: np.ndarray, cadence: np.ndarray, max_weight: float,
                     init_cash: float, rate: float, min_fee: float, slippage: float, start: int,
                     rets=None, blocked=None, risk_on=None, trend=None, policy: int = 0, defensive: int = -1,
                     target_vol: float = 0.0, vol_window: int = 60, ann: int = 252) -> np.ndarray:
    """Equity curves ``(P, S)`` of every parameter set, each traded from session ``start`` on (construction
    options as in :func:`simulate_path_nb`)."""
    n_s, n_f = trade_price.shape
    n_p = variant.shape[0]
    if rets is None:
        rets_ = np.zeros((1, 1))
    else:
        rets_ = rets
    if blocked is None:
        blocked_ = np.zeros((n_s, n_f), np.bool_)
    else:
        blocked_ = blocked
    if risk_on is None:
        risk_ = np.ones((1, n_s), np.bool_)
    else:
        risk_ = risk_on
    if trend is None:
        trend_ = np.zeros(n_p, np.int64)
    else:
        trend_ = trend
    out = np.empty((n_p, n_s))
    dummy2 = np.zeros((1, 1))
    dummy1 = np.zeros(1)
    dummyb = np.zeros((1, 1), np.bool_)
    for p in prange(n_p):
        active = np.full(n_s, -1, np.int64)
        for t in range(start, n_s):
            active[t] = p
        eq = np.empty(n_s)
        _simulate(trade_price, mark, split, dividend, ended, excluded, lots, adv_limit, reinvest, scores, active,
                  variant, top_n, buffer, cadence, max_weight, init_cash, rate, min_fee, slippage, np.bool_(False), eq,
                  dummy2, dummy2, dummy2, dummy2,
                  dummy2, dummy1, dummy2, dummy2, dummyb, rets_, blocked_, risk_, trend_, policy, defensive,
                  target_vol, vol_window, ann)
        out[p] = eq
    return out
