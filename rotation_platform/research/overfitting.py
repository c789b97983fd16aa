"""Backtest-overfitting statistics.

* :func:`pbo_cscv` -- probability of backtest overfitting by combinatorially symmetric cross-validation
  (Bailey, Borwein, Lopez de Prado and Zhu, "The Probability of Backtest Overfitting", 2017). The
  ``T x N`` matrix of per-session returns of ``N`` configurations is cut into ``S`` (even) blocks of
  consecutive sessions; for each of the ``C(S, S/2)`` ways to pick half the blocks as in-sample, the
  configuration with the best in-sample Sharpe ratio is found and its out-of-sample Sharpe ranked among
  all configurations (average ranks for ties, 1 = worst); with ``w = rank / (N + 1)`` the logit is
  ``lambda = ln(w / (1 - w))`` and PBO is the share of splits with ``lambda <= 0``.
* :func:`deflated_sharpe_ratio` -- (Bailey and Lopez de Prado, "The Deflated Sharpe Ratio", 2014): the
  probabilistic Sharpe ratio of the selected strategy against the expected maximum Sharpe ratio of
  ``N`` independent trials with variance ``V`` of their Sharpe ratios,
  ``SR0 = sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))`` (``g`` the Euler-Mascheroni constant),
  ``DSR = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2))`` with per-period Sharpe
  ratios and the (non-excess) kurtosis.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from rotation_platform.errors import ResearchError

__all__ = [
    "PBOResult",
    "DSRResult",
    "pbo_cscv",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "deflated_sharpe_ratio",
]

EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class PBOResult:
    pbo: float
    logits: np.ndarray
    n_splits: int
    n_blocks: int
    n_configs: int
    n_sessions: int
    is_best: np.ndarray
    oos_rank: np.ndarray


@dataclass(frozen=True)
class DSRResult:
    dsr: float
    sharpe: float
    sr0: float
    n_trials: int
    sharpe_variance: float
    n_obs: int
    skew: float
    kurtosis: float


def _block_sharpes(sums: np.ndarray, sqs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    n = counts[:, None]
    mean = sums / n
    var = (sqs - sums * sums / n) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sr = np.where(var > 0, mean / np.sqrt(np.maximum(var, 0.0)), np.nan)
    return sr


def pbo_cscv(returns: np.ndarray, n_blocks: int = 16) -> PBOResult:
    """PBO of ``returns`` (sessions x configurations) by CSCV with ``n_blocks`` blocks.

    Sessions beyond a multiple of ``n_blocks`` are dropped from the start. A configuration whose Sharpe
    ratio is undefined in a half (no variation) ranks lowest there.
    """
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ResearchError("PBO needs a (sessions, configurations) matrix with at least two configurations")
    if n_blocks < 2 or n_blocks % 2:
        raise ResearchError(f"CSCV needs an even number of blocks >= 2, got {n_blocks}")
    if not np.isfinite(m).all():
        raise ResearchError("the returns matrix for PBO holds NaN or infinite values")
    t, n = m.shape
    size = t // n_blocks
    if size < 2:
        raise ResearchError(f"{t} sessions are too few for {n_blocks} CSCV blocks")
    m = m[t - size * n_blocks:]
    blocks = m.reshape(n_blocks, size, n)
    b_sum = blocks.sum(axis=1)
    b_sq = (blocks * blocks).sum(axis=1)
    combos = np.array(list(combinations(range(n_blocks), n_blocks // 2)), dtype=np.int64)
    member = np.zeros((len(combos), n_blocks))
    member[np.arange(len(combos))[:, None], combos] = 1.0
    half = np.full(len(combos), float(size * n_blocks // 2))
    is_sr = _block_sharpes(member @ b_sum, member @ b_sq, half)
    oos_sr = _block_sharpes((1.0 - member) @ b_sum, (1.0 - member) @ b_sq, half)
    is_sr = np.where(np.isfinite(is_sr), is_sr, -np.inf)
    oos_sr = np.where(np.isfinite(oos_sr), oos_sr, -np.inf)
    best = np.argmax(is_sr, axis=1)
    chosen = oos_sr[np.arange(len(combos)), best][:, None]
    below = (oos_sr < chosen).sum(axis=1)
    ties = (oos_sr == chosen).sum(axis=1)
    rank = below + (ties + 1) / 2.0
    w = rank / (n + 1.0)
    logits = np.log(w / (1.0 - w))
    return PBOResult(float(np.mean(logits <= 0.0)), logits, len(combos), n_blocks, n, size * n_blocks, best, rank)


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` independent zero-skill trials (per-period units)."""
    if n_trials < 1:
        raise ResearchError(f"n_trials must be at least 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * np.e))
    return float(np.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def probabilistic_sharpe_ratio(sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """P(true Sharpe > ``benchmark``) given an observed per-period ``sharpe`` over ``n_obs`` returns."""
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if n_obs < 2 or denom <= 0:
        raise ResearchError(f"the probabilistic Sharpe ratio is undefined for n_obs={n_obs}, "
                            f"skew={skew:.3g}, kurtosis={kurtosis:.3g}, sharpe={sharpe:.3g}")
    return float(stats.norm.cdf((sharpe - benchmark) * np.sqrt(n_obs - 1) / np.sqrt(denom)))


def deflated_sharpe_ratio(returns: np.ndarray | None = None, *, n_trials: int, sharpe_variance: float,
                          sharpe: float | None = None, n_obs: int | None = None, skew: float | None = None,
                          kurtosis: float | None = None) -> DSRResult:
    """Deflated Sharpe ratio of a selected strategy.

    Pass its per-period ``returns`` (Sharpe ratio, length, skewness and kurtosis are measured from them)
    or the four statistics directly; ``sharpe_variance`` is the variance of the per-period Sharpe ratios
    of the ``n_trials`` configurations tried.
    """
    if returns is not None:
        r = np.asarray(returns, dtype=np.float64)
        r = r[np.isfinite(r)]
        if r.size < 3 or r.std(ddof=1) == 0:
            raise ResearchError("the deflated Sharpe ratio needs at least three varying returns")
        sharpe = float(r.mean() / r.std(ddof=1))
        n_obs = int(r.size)
        skew = float(stats.skew(r, bias=True))
        kurtosis = float(stats.kurtosis(r, fisher=False, bias=True))
    if sharpe is None or n_obs is None or skew is None or kurtosis is None:
        raise ResearchError("pass returns, or sharpe, n_obs, skew and kurtosis")
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    dsr = probabilistic_sharpe_ratio(sharpe, sr0, n_obs, skew, kurtosis)
    return DSRResult(dsr, float(sharpe), sr0, int(n_trials), float(sharpe_variance), int(n_obs), float(skew),
                     float(kurtosis))
