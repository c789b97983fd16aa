"""The numba kernels against slow, obvious references on seeded data with NaN, and their anchoring
property (a column cut from a longer history reproduces the values bit for bit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.factors import nb

RNG = np.random.default_rng(20240101)


def _data(n: int = 400, m: int = 5, nan_at: tuple[tuple[int, int], ...] = ((50, 1), (51, 1), (300, 3))) -> np.ndarray:
    a = 10.0 + np.cumsum(RNG.normal(0.0, 0.3, (n, m)), axis=0)
    for i, j in nan_at:
        a[i, j] = np.nan
    if m > 2:
        a[120, 2] = np.inf
    return np.ascontiguousarray(a)


def _windows(a: np.ndarray, w: int):
    """(row, window values) for every row with a complete window."""
    for i in range(w - 1, a.shape[0]):
        yield i, a[i - w + 1: i + 1]


def _slow(a: np.ndarray, w: int, fn) -> np.ndarray:
    out = np.full(a.shape, np.nan)
    for j in range(a.shape[1]):
        for i, win in _windows(a[:, j], w):
            if np.isfinite(win).all():
                out[i, j] = fn(win)
    return out


BASE0 = np.zeros(5, dtype=np.int64)


@pytest.mark.parametrize("w", [1, 3, 20, 61])
def test_rolling_sum_matches_window_sums(w: int) -> None:
    a = _data()
    got = nb.rolling_sum_nb(a, w, BASE0)
    np.testing.assert_allclose(got, _slow(a, w, np.sum), rtol=1e-12, atol=1e-12)
    assert np.isnan(got[: w - 1]).all()


@pytest.mark.parametrize("w", [2, 20, 61])
def test_rolling_cov_matches_two_pass(w: int) -> None:
    a = _data()
    b = np.ascontiguousarray(a[::-1] * 1e6)
    mx, my, c = nb.rolling_cov_nb(a, b, w, BASE0)
    both = np.where(np.isfinite(a) & np.isfinite(b), a, np.nan)
    np.testing.assert_allclose(mx, _slow(both, w, np.mean), rtol=1e-12)
    ref = np.full(a.shape, np.nan)
    for j in range(a.shape[1]):
        for i in range(w - 1, a.shape[0]):
            x, y = a[i - w + 1: i + 1, j], b[i - w + 1: i + 1, j]
            if np.isfinite(x).all() and np.isfinite(y).all():
                ref[i, j] = ((x - x.mean()) * (y - y.mean())).sum()
    np.testing.assert_allclose(c, ref, rtol=1e-9, atol=1e-9 * np.nanmax(np.abs(ref)))
    assert np.isnan(my[: w - 1]).all()


@pytest.mark.parametrize("beta,w", [(0.5, 40), (0.9, 150)])
def test_rolling_ewm_is_normalised_geometric_mean(beta: float, w: int) -> None:
    a = _data()
    weights = beta ** np.arange(w)[::-1]
    got = nb.rolling_ewm_nb(a, beta, w, BASE0)
    np.testing.assert_allclose(got, _slow(a, w, lambda x: (weights * x).sum() / weights.sum()), rtol=1e-12)


def test_rolling_agesum_matches_weighted_sums() -> None:
    a = _data()
    w = 17
    age = np.arange(w)[::-1].astype(float)
    s, lin, quad = nb.rolling_agesum_nb(a, w, BASE0)
    np.testing.assert_allclose(s, _slow(a, w, np.sum), rtol=1e-12)
    np.testing.assert_allclose(lin, _slow(a, w, lambda x: (age * x).sum()), rtol=1e-11)
    np.testing.assert_allclose(quad, _slow(a, w, lambda x: (age * age * x).sum()), rtol=1e-11)


@pytest.mark.parametrize("w", [1, 2, 7, 30])
def test_rolling_max_and_age_with_ties(w: int) -> None:
    a = np.round(_data(), 0)  # many ties
    mx, age = nb.rolling_max_nb(a, w)
    np.testing.assert_array_equal(mx, _slow(a, w, np.max))
    newest_argmax = _slow(a, w, lambda x: float(np.argmax(x[::-1])))
    np.testing.assert_array_equal(age, newest_argmax)


def test_rolling_meandev_and_maxdd() -> None:
    a = _data()
    w = 12
    mean = nb.rolling_sum_nb(a, w, BASE0) / w
    mad = nb.rolling_meandev_nb(a, mean, w)
    np.testing.assert_allclose(mad, _slow(a, w, lambda x: np.abs(x - x.mean()).mean()), rtol=1e-12)
    dd = nb.rolling_maxdd_nb(a, w)
    np.testing.assert_array_equal(dd, _slow(a, w, lambda x: float(np.min(x - np.maximum.accumulate(x)))))


@pytest.mark.parametrize("kernel", ["sum", "ewm", "agesum", "cov", "max", "maxdd"])
def test_cut_columns_reproduce_values_bit_for_bit(kernel: str) -> None:
    """A column cut after ``base`` rows gives the same bits as the full column once it holds the
    documented lookback (2w - 1 rows for anchored accumulators, w for the others), for every cut."""
    a = _data(n=300, m=1, nan_at=((60, 0),))
    a[120, 0] = a[119, 0]  # a tie for the extremes
    w = 13
    full_base = np.zeros(1, dtype=np.int64)

    def run(x: np.ndarray, base: np.ndarray) -> np.ndarray:
        if kernel == "sum":
            return nb.rolling_sum_nb(x, w, base)
        if kernel == "ewm":
            return nb.rolling_ewm_nb(x, 0.8, w, base)
        if kernel == "agesum":
            return np.stack(nb.rolling_agesum_nb(x, w, base))
        if kernel == "cov":
            return np.stack(nb.rolling_cov_nb(x, np.ascontiguousarray(x[:, ::-1] ** 2), w, base))
        if kernel == "max":
            return np.stack(nb.rolling_max_nb(x, w))
        return nb.rolling_maxdd_nb(x, w)

    full = run(a, full_base)
    need = w if kernel in ("max", "maxdd") else 2 * w - 1
    for cut in range(0, 150):
        part = run(np.ascontiguousarray(a[cut:]), np.array([cut], dtype=np.int64))
        rows = np.arange(cut + need - 1, a.shape[0])
        assert np.array_equal(full[..., rows, :], part[..., rows - cut, :], equal_nan=True), (kernel, cut)


def test_running_sums_stay_accurate_over_long_columns() -> None:
    """Re-anchoring bounds rounding: after 200,000 rows the running sum is still exact to 1e-12."""
    a = np.ascontiguousarray(RNG.normal(1e6, 1.0, (200_000, 1)))
    got = nb.rolling_sum_nb(a, 10, np.zeros(1, dtype=np.int64))[-1, 0]
    assert abs(got - a[-10:, 0].sum()) <= 1e-12 * abs(got)


def test_pack_and_lag_scatter() -> None:
    valid = np.array([[1, 0], [0, 1], [1, 1], [1, 0]], dtype=bool)
    a = np.arange(8, dtype=float).reshape(4, 2)
    rows, counts = nb.valid_rows_nb(valid)
    np.testing.assert_array_equal(counts, [3, 2])
    np.testing.assert_array_equal(rows[:3, 0], [0, 2, 3])
    packed = nb.pack_nb(a, rows, counts)
    np.testing.assert_array_equal(packed[:, 0], [0.0, 4.0, 6.0, np.nan])
    np.testing.assert_array_equal(packed[:2, 1], [3.0, 5.0])
    packed[1, 1] = np.inf
    out = np.empty((4, 2))
    nb.lag_scatter_nb(packed, rows, counts, 1, out)
    # bar at session s lands at s + 1; the last bar (session 3) falls off the end; inf becomes NaN
    expected = np.array([[np.nan, np.nan], [0.0, np.nan], [np.nan, 3.0], [4.0, np.nan]])
    np.testing.assert_array_equal(out, expected)
    nb.lag_scatter_nb(packed, rows, counts, 0, out)
    np.testing.assert_array_equal(out[:, 0], [0.0, np.nan, 4.0, 6.0])


def test_cross_sectional_rank_and_zscore_match_pandas() -> None:
    a = np.round(RNG.normal(0.0, 1.0, (300, 70)), 1)  # ties, and rows wider than the insertion-sort limit
    a[RNG.random(a.shape) < 0.1] = np.nan
    a[5, :] = np.nan
    a[6, 1:] = np.nan
    frame = pd.DataFrame(a)
    for width in (7, 70):
        sub = np.ascontiguousarray(a[:, :width])
        df = frame.iloc[:, :width]
        count = df.notna().sum(axis=1).to_numpy()[:, None]
        rank = np.array(df.rank(axis=1, pct=True), dtype=float)
        rank[np.broadcast_to(count < 2, rank.shape)] = np.nan
        np.testing.assert_allclose(nb.cs_rank_nb(sub), rank, rtol=1e-15, atol=0)
        z = np.array(df.sub(df.mean(axis=1), axis=0).div(df.std(axis=1), axis=0), dtype=float)
        z[np.broadcast_to(count < 2, z.shape)] = np.nan
        np.testing.assert_allclose(nb.cs_zscore_nb(sub), z, rtol=1e-12, atol=1e-12)
