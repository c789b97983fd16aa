"""Does the strategy beat a baseline? The Sharpe-ratio difference test of Jobson and Korkie (1981) with
Memmel's (2003) correction.

For two return series over the same ``T`` periods with per-period Sharpe ratios ``SR1``, ``SR2``
(mean excess return over its standard deviation, ``ddof=1``) and correlation ``rho``, the difference
``SR1 - SR2`` is asymptotically normal with variance

    var = (1 / T) * [2 (1 - rho) + 1/2 (SR1^2 + SR2^2 - 2 SR1 SR2 rho^2)]

(independent normal returns assumed; serial correlation and fat tails make it optimistic). ``z`` is the
difference over its standard error; ``p_value`` is one-sided, for "the strategy's Sharpe ratio is
larger" (``1 - Phi(z)``), and ``p_two_sided`` tests equality. The verdict :attr:`ValueAdded.beats` is
``p_value < alpha``. Differences are also given annualised (times ``sqrt(annualisation)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rotation_platform.errors import ResearchError

__all__ = ["ValueAdded", "sharpe_difference", "memmel_variance"]


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def memmel_variance(sr1: float, sr2: float, rho: float, n: int) -> float:
    """Variance of the per-period Sharpe-ratio difference (the module docstring's formula)."""
    return (2.0 * (1.0 - rho) + 0.5 * (sr1 * sr1 + sr2 * sr2 - 2.0 * sr1 * sr2 * rho * rho)) / n


@dataclass(frozen=True)
class ValueAdded:
    against: str
    n: int
    sharpe: float  # per period
    sharpe_baseline: float
    correlation: float
    difference: float  # per period
    difference_annualised: float
    std_error: float
    z: float
    p_value: float  # one-sided: strategy better
    p_two_sided: float
    alpha: float

    @property
    def beats(self) -> bool:
        return bool(np.isfinite(self.p_value) and self.p_value < self.alpha)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "beats": self.beats}

    def line(self) -> str:
        """One line for a report."""
        if not np.isfinite(self.z):
            return f"value added vs {self.against}: not testable ({self.n} common sessions)"
        worse = bool(np.isfinite(self.p_value) and self.p_value > 1.0 - self.alpha)
        verdict = ("significantly better" if self.beats else "significantly worse" if worse
                   else "not significantly better")
        return (f"Sharpe difference vs {self.against} {self.difference_annualised:+.2f} a year "
                f"(z {self.z:.2f}, one-sided p {self.p_value:.3f}, {self.n} sessions): {verdict} at "
                f"{self.alpha:.0%}")


def sharpe_difference(strategy: pd.Series | np.ndarray, baseline: pd.Series | np.ndarray, *, against: str = "baseline",
                      annualisation: int = 252, risk_free_rate: float = 0.0, alpha: float = 0.05) -> ValueAdded:
    """The Jobson-Korkie-Memmel test of ``strategy`` against ``baseline`` (daily returns over the same
    sessions; a session where either is NaN is dropped)."""
    a = np.asarray(strategy, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ResearchError(f"the Sharpe-difference test needs two return series of the same length, got "
                            f"{a.shape} and {b.shape}")
    if not 0.0 < alpha < 1.0:
        raise ResearchError(f"the test's alpha must be in (0, 1), got {alpha}")
    ok = np.isfinite(a) & np.isfinite(b)
    a = a[ok] - risk_free_rate / annualisation
    b = b[ok] - risk_free_rate / annualisation
    n = int(a.size)
    nan = float("nan")
    if n < 3:
        return ValueAdded(against, n, nan, nan, nan, nan, nan, nan, nan, nan, nan, alpha)
    sa, sb = float(a.std(ddof=1)), float(b.std(ddof=1))
    if not (sa > 0 and sb > 0):
        return ValueAdded(against, n, nan, nan, nan, nan, nan, nan, nan, nan, nan, alpha)
    sr1, sr2 = float(a.mean() / sa), float(b.mean() / sb)
    rho = float(np.corrcoef(a, b)[0, 1])
    var = memmel_variance(sr1, sr2, rho, n)
    diff = sr1 - sr2
    se = math.sqrt(var) if var > 0 else nan
    z = diff / se if se > 0 else nan
    p = 1.0 - _phi(z) if np.isfinite(z) else nan
    p2 = 2.0 * (1.0 - _phi(abs(z))) if np.isfinite(z) else nan
    return ValueAdded(against, n, sr1, sr2, rho, diff, diff * math.sqrt(annualisation), se, z, p, p2, alpha)
