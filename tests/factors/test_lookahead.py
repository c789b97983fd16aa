"""Proof of no lookahead: the dynamic check on real data (and that it catches a real leak), and the
static source scan (clean on the factor package, catching each future-reading pattern)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.data.panel import PricePanel
from rotation_platform.factors import (
    REGISTRY,
    FactorError,
    FactorPanel,
    scan_source,
    scan_source_for_lookahead,
    verify_no_lookahead,
)
from rotation_platform.factors import nb
from rotation_platform.factors.lookahead import perturb_after


@pytest.mark.parametrize("t,lag", [(1200, 1), (2700, 1), (3300, 2), (600, 3)])
def test_no_factor_reads_after_t_minus_lag(real_panel: PricePanel, real_factors: FactorPanel, t: int,
                                           lag: int) -> None:
    baseline = real_factors if lag == 1 else None
    report = verify_no_lookahead(real_panel, t, lag, seed=t, baseline=baseline)
    assert report.passed, report.to_metadata()
    assert report.n_factors == len(REGISTRY) - 4 and report.checked_sessions == t + 1
    assert report.perturbed_cells > 0.9 * (real_panel.shape[0] - t + lag - 1) * real_panel.shape[1]
    report.raise_if_failed()


def test_no_lookahead_with_nav(real_panel: PricePanel, real_nav: pd.DataFrame) -> None:
    report = verify_no_lookahead(real_panel, real_panel.sessions[2900], 1, nav=real_nav, seed=3)
    assert report.passed and report.n_factors == len(REGISTRY)


def test_perturbation_changes_every_field_after_the_cutoff_only(real_panel: PricePanel) -> None:
    cutoff = 2000
    moved, _, changed = perturb_after(real_panel, cutoff, seed=1)
    for name, frame in real_panel.frames.items():
        before = frame.to_numpy()
        after = moved.frames[name].to_numpy()
        assert np.array_equal(before[: cutoff + 1], after[: cutoff + 1], equal_nan=True), name
        tail_changed = ~((before[cutoff + 1:] == after[cutoff + 1:]) | (np.isnan(before[cutoff + 1:])
                                                                       & np.isnan(after[cutoff + 1:])))
        assert tail_changed.mean() > 0.9, name
    assert changed > 0.9 * (real_panel.shape[0] - cutoff - 1) * real_panel.shape[1]
    with pytest.raises(FactorError):
        perturb_after(real_panel, real_panel.shape[0] - 1)


def test_the_check_catches_a_leak(real_panel: PricePanel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the rolling-sum kernel by a centred one: every factor built on it must be reported,
    and the others not."""
    honest = nb.rolling_sum_nb

    def centred(a: np.ndarray, window: int, base: np.ndarray) -> np.ndarray:
        out = honest(a, window, base)
        half = window // 2
        shifted = np.full_like(out, np.nan)
        shifted[: out.shape[0] - half] = out[half:]
        return shifted

    names = ["roc_20", "ma_dist_20", "vol_cc_20", "willr_14", "cs_rank_ma_dist_20", "cs_rank_roc_20"]
    monkeypatch.setattr(nb, "rolling_sum_nb", centred)
    report = verify_no_lookahead(real_panel, 2500, 1, names=names, seed=5)
    assert not report.passed
    assert set(report.violations) == {"ma_dist_20", "cs_rank_ma_dist_20"}
    assert set(report.cross_section_violations) >= {"ma_dist_20"}
    with pytest.raises(FactorError, match="lookahead"):
        report.raise_if_failed()


def test_the_factor_package_source_is_clean() -> None:
    report = scan_source_for_lookahead()
    assert len(report.files) >= 8
    assert report.passed, "\n".join(map(str, report.findings))
    assert report.to_metadata()["passed"] is True


BAD_SNIPPETS = {
    "roll": "import numpy as np\nprev = np.roll(close, 1)\n",
    "roll-import": "from numpy import roll\nx = roll(a, -1)\n",
    "negative-shift": "fwd = close.shift(-5) / close - 1\n",
    "negative-shift-kw": "fwd = df.pct_change(periods=-1)\n",
    "negative-diff": "d = s.diff(-1)\n",
    "centered-window": "m = close.rolling(20, center=True).mean()\n",
    "centered-window-var": "m = close.rolling(20, center=flag).mean()\n",
    "forward-index": "def f(a, out, k):\n    for i in range(len(a)):\n        out[i] = a[i + 1] - a[i]\n",
    "forward-index-name": "def f(a, out, k):\n    for i in range(len(a)):\n        out[i] = a[i + k]\n",
    "forward-index-2d": ("def f(a, out):\n    for i in range(10):\n        for j in range(3):\n"
                         "            out[i, j] = a[i + 2, j]\n"),
    "forward-slice": "def f(a, w):\n    for i in range(len(a)):\n        s = a[i - w + 1: i + 2].sum()\n",
    "forward-slice-start": "def f(a):\n    for i in range(len(a)):\n        s = a[i + 1:].sum()\n",
    "forward-range": ("def f(a, w):\n    for i in range(len(a)):\n        for k in range(i, i + w):\n"
                      "            s = a[k]\n"),
    "forward-range-start": ("def f(a):\n    for i in range(len(a)):\n        for k in range(i + 1, len(a)):\n"
                            "            s = a[k]\n"),
    "forward-augassign": "def f(a):\n    for i in range(len(a)):\n        a[i + 1] += 1\n",
    "forward-comprehension": "vals = [a[i + 1] for i in range(len(a) - 1)]\n",
    "forward-alignment": "out[:-h] = close[h:] / close[:-h] - 1\n",
    "forward-alignment-len": "out[: n - 5] = x[5:]\n",
}

EXPECTED_RULE = {
    "roll": "roll", "roll-import": "roll", "negative-shift": "negative-shift",
    "negative-shift-kw": "negative-shift", "negative-diff": "negative-shift",
    "centered-window": "centered-window", "centered-window-var": "centered-window",
    "forward-alignment": "forward-alignment", "forward-alignment-len": "forward-alignment",
}


@pytest.mark.parametrize("case", list(BAD_SNIPPETS))
def test_each_future_reading_pattern_is_caught(case: str) -> None:
    findings = scan_source(BAD_SNIPPETS[case], f"<{case}>")
    rules = {f.rule for f in findings}
    assert EXPECTED_RULE.get(case, "forward-index") in rules, (case, findings)
    assert all(f.line >= 1 and f.file == f"<{case}>" for f in findings)


GOOD_SNIPPET = '''
import numpy as np

def kernel(a, window, out):
    n = a.shape[0]
    for i in range(n):
        acc = 0.0
        for k in range(max(0, i - window + 1), i + 1):
            acc += a[k]
        if i >= window:
            acc -= a[i - window]
        out[i] = acc + a[i - 1] * 0.0
        s = a[i - window + 1: i + 1].sum()
    for k in range(n - 1, -1, -1):
        out[k] = out[k]

def shift_forward(raw, lag, out):
    out[:lag] = np.nan
    out[lag:] = raw[: raw.shape[0] - lag]

def pandas_things(df):
    a = df.shift(1) / df.shift(periods=5)
    b = df.rolling(20, center=False).mean()
    c = df.diff(1) + df.pct_change(3)
    d = df.iloc[-1]
    return a, b, c, d

def ring(ring, head, size, window):
    return ring[(head + size - 1) % window]
'''


def test_legitimate_patterns_are_not_flagged() -> None:
    assert scan_source(GOOD_SNIPPET) == []
