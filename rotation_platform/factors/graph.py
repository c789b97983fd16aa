"""The vocabulary factor formulas are written in: terms over each fund's packed bars.

A factor formula is a plain function ``formula(ctx) -> Term`` that combines the operations of
:class:`Context` (fields, previous bars, element-wise maps and the rolling kernels of
:mod:`rotation_platform.factors.nb`). The same formula runs in two modes:

* *symbolic* (``Context(None)``): nothing is computed; each :class:`Term` only carries its
  ``min_history`` (bars a fund needs before the first value) and ``lookback`` (bars ending at a row
  that reproduce that row's value bit for bit, see the anchoring note of :mod:`.nb`). The registry
  derives every factor's declared history this way, so the numbers in the docs cannot drift from
  the code.
* *numeric* (``Context(fields, base)``): every operation is evaluated once per key and cached, so
  factors sharing an intermediate (a return series, a rolling sum) compute it once.

Arrays are packed bars x funds (float64, C order): row ``k`` of column ``j`` is fund ``j``'s ``k``-th
bar, so a gap in a fund's history (a suspension) is not a row at all. Element-wise maps see NaN
padding below each fund's last bar and must keep NaN as NaN (numpy arithmetic does).

History rules per operation (``mh`` = min_history, ``lb`` = lookback of the input):

* field: ``mh = 1``, ``lb = 1``;
* ``prev(x, k)``: ``mh + k``, ``lb + k``;
* ``map(fn, x, y, ...)``: the largest of the inputs;
* rolling sum / ewm / age sums / cov over ``w``: ``mh + w - 1``, ``lb + 2 w - 2`` (anchored accumulators);
* rolling max / min / maxdd over ``w``: ``mh + w - 1``, ``lb + w - 1`` (no accumulator);
* ``meandev(x, mean, w)``: the larger of ``x``'s ``mh + w - 1`` / ``lb + w - 1`` and ``mean``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from rotation_platform.factors import nb

__all__ = ["EWM_TOLERANCE", "Term", "Context", "ewm_window"]

#: The weight an exponentially weighted mean may ignore: its memory is cut where the weight beyond
#: the window, relative to TA-Lib's SMA-seeded recursion after its own warm-up, is below this.
EWM_TOLERANCE = 1e-11

ArrayFn = Callable[..., np.ndarray]


def ewm_window(alpha: float, span: int) -> int:
    """Rows kept by an EMA with smoothing ``alpha`` seeded, TA-Lib style, over ``span`` rows:
    ``span + ceil(log(EWM_TOLERANCE) / log(1 - alpha))``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"EMA smoothing must be in (0, 1), got {alpha}")
    return int(span + math.ceil(math.log(EWM_TOLERANCE) / math.log(1.0 - alpha)))


@dataclass(frozen=True)
class Term:
    """A node of a factor formula: its cache ``key`` and its history requirements (bars)."""

    key: tuple
    min_history: int
    lookback: int


def _fn_key(fn: ArrayFn) -> str:
    name = getattr(fn, "__qualname__", "")
    if not name or "<lambda>" in name or "<locals>" in name:
        raise ValueError("map() needs a named module-level function (its name is the cache key)")
    return f"{fn.__module__}.{name}"


class Context:
    """Evaluates (or, with ``fields=None``, only describes) factor formulas over packed bars.

    ``fields`` maps field names (``open, high, low, close, volume, amount`` and optional extras such
    as ``premium``) to packed arrays of one shape; ``base`` holds, per column, the number of the
    fund's bars cut off before row 0 (0 for a full history). ``price_field`` is the field
    :meth:`price` returns.
    """

    def __init__(self, fields: Mapping[str, np.ndarray] | None, base: np.ndarray | None = None,
                 price_field: str = "close"):
        self._fields = None if fields is None else dict(fields)
        self.price_field = price_field
        if self._fields is not None:
            shapes = {a.shape for a in self._fields.values()}
            if len(shapes) != 1:
                raise ValueError(f"packed fields differ in shape: {sorted(shapes)}")
            (shape,) = shapes
            self.shape: tuple[int, int] = shape
            self._base = (np.zeros(shape[1], dtype=np.int64) if base is None
                          else np.ascontiguousarray(base, dtype=np.int64))
            if self._base.shape != (shape[1],):
                raise ValueError("base needs one entry per column")
        self._values: dict[tuple, np.ndarray] = {}
        self.touched: set[tuple] = set()

    # ------------------------------------------------------------------------------- bookkeeping
    @property
    def symbolic(self) -> bool:
        return self._fields is None

    def value(self, term: Term) -> np.ndarray:
        """The packed array of an evaluated term."""
        return self._values[term.key]

    def release(self, keys: Iterable[tuple]) -> None:
        """Drop cached arrays no later formula needs."""
        for key in keys:
            self._values.pop(key, None)

    def _term(self, key: tuple, min_history: int, lookback: int,
              compute: Callable[[], np.ndarray]) -> Term:
        self.touched.add(key)
        if self._fields is not None and key not in self._values:
            self._values[key] = compute()
        return Term(key, min_history, lookback)

    def _multi(self, key: tuple, n_out: int, min_history: int, lookback: int,
               compute: Callable[[], tuple[np.ndarray, ...]]) -> tuple[Term, ...]:
        keys = tuple(key + (k,) for k in range(n_out))
        self.touched.update(keys)
        if self._fields is not None and keys[0] not in self._values:
            for k, arr in zip(keys, compute(), strict=True):
                self._values[k] = arr
        return tuple(Term(k, min_history, lookback) for k in keys)

    # ------------------------------------------------------------------------------- inputs
    def field(self, name: str) -> Term:
        """A packed input field."""
        if self._fields is not None and name not in self._fields:
            raise KeyError(f"field {name!r} is not an input of this evaluation")
        return self._term(("field", name), 1, 1, lambda: self._fields[name])  # type: ignore[index]

    def price(self) -> Term:
        """The price field the close-series factors use (``close`` unless configured)."""
        return self.field(self.price_field)

    def prev(self, x: Term, k: int = 1) -> Term:
        """The value ``k`` bars earlier (NaN for the first ``k`` bars)."""
        if k < 1:
            raise ValueError("prev() looks back at least one bar")

        def compute() -> np.ndarray:
            src = self._values[x.key]
            out = np.full(src.shape, np.nan)
            if k < src.shape[0]:
                out[k:] = src[: src.shape[0] - k]
            return out

        return self._term(("prev", x.key, k), x.min_history + k, x.lookback + k, compute)

    def map(self, fn: ArrayFn, *args: Term, consts: tuple[float, ...] = ()) -> Term:
        """Element-wise ``fn(*arrays, *consts)``."""
        key = ("map", _fn_key(fn), tuple(a.key for a in args), tuple(consts))

        def compute() -> np.ndarray:
            with np.errstate(all="ignore"):
                out = fn(*(self._values[a.key] for a in args), *consts)
            return np.ascontiguousarray(out, dtype=np.float64)

        return self._term(key, max(a.min_history for a in args), max(a.lookback for a in args), compute)

    # ------------------------------------------------------------------------------- rolling kernels
    def rsum(self, x: Term, window: int) -> Term:
        """Rolling sum over ``window`` bars."""
        _check_window(window)
        return self._term(("rsum", x.key, window), x.min_history + window - 1,
                          x.lookback + 2 * window - 2,
                          lambda: nb.rolling_sum_nb(self._values[x.key], window, self._base))

    def ewm(self, x: Term, alpha: float, span: int) -> Term:
        """Exponentially weighted mean with smoothing ``alpha``, memory :func:`ewm_window`."""
        window = ewm_window(alpha, span)
        beta = 1.0 - alpha
        return self._term(("ewm", x.key, float(alpha), window), x.min_history + window - 1,
                          x.lookback + 2 * window - 2,
                          lambda: nb.rolling_ewm_nb(self._values[x.key], beta, window, self._base))

    def agesum(self, x: Term, window: int) -> tuple[Term, Term, Term]:
        """Rolling ``sum(a)``, ``sum(age * a)``, ``sum(age**2 * a)`` (age 0 = newest bar)."""
        _check_window(window)
        s, lin, quad = self._multi(("agesum", x.key, window), 3, x.min_history + window - 1,
                                   x.lookback + 2 * window - 2,
                                   lambda: nb.rolling_agesum_nb(self._values[x.key], window, self._base))
        return s, lin, quad

    def cov(self, x: Term, y: Term, window: int) -> tuple[Term, Term, Term]:
        """Rolling means of ``x`` and ``y`` and their co-moment ``sum((x - mx) * (y - my))``."""
        _check_window(window)
        mx, my, c = self._multi(("cov", x.key, y.key, window), 3,
                                max(x.min_history, y.min_history) + window - 1,
                                max(x.lookback, y.lookback) + 2 * window - 2,
                                lambda: nb.rolling_cov_nb(self._values[x.key], self._values[y.key], window,
                                                          self._base))
        return mx, my, c

    def rmax(self, x: Term, window: int) -> tuple[Term, Term]:
        """Rolling maximum and its age in bars (most recent on ties)."""
        _check_window(window)
        mx, age = self._multi(("rmax", x.key, window), 2, x.min_history + window - 1,
                              x.lookback + window - 1,
                              lambda: nb.rolling_max_nb(self._values[x.key], window))
        return mx, age

    def rmin(self, x: Term, window: int) -> tuple[Term, Term]:
        """Rolling minimum and its age in bars (most recent on ties), as ``-max(-x)``."""
        _check_window(window)

        def compute() -> tuple[np.ndarray, np.ndarray]:
            mx, age = nb.rolling_max_nb(-self._values[x.key], window)
            return -mx, age

        mn, age = self._multi(("rmin", x.key, window), 2, x.min_history + window - 1,
                              x.lookback + window - 1, compute)
        return mn, age

    def meandev(self, x: Term, mean: Term, window: int) -> Term:
        """Rolling mean absolute deviation of ``x`` around ``mean`` (its rolling mean), from scratch."""
        _check_window(window)
        return self._term(("meandev", x.key, mean.key, window),
                          max(x.min_history + window - 1, mean.min_history),
                          max(x.lookback + window - 1, mean.lookback),
                          lambda: nb.rolling_meandev_nb(self._values[x.key], self._values[mean.key], window))

    def maxdd(self, x: Term, window: int) -> Term:
        """Largest fall from a running peak of ``x`` within the window (``<= 0``)."""
        _check_window(window)
        return self._term(("maxdd", x.key, window), x.min_history + window - 1, x.lookback + window - 1,
                          lambda: nb.rolling_maxdd_nb(self._values[x.key], window))


def _check_window(window: int) -> None:
    if not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
