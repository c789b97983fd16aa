"""Proofs that no factor reads the future.

Two independent checks, both plain library functions (the Dagster layer wraps them as asset checks):

* :func:`verify_no_lookahead` -- dynamic: replace every input after *t - lag* (all price fields and
  NAV; values scaled at random, bars removed, bars added where a fund had none) and require every
  factor value at sessions ``<= t`` to stay exactly the same (NaN stays NaN, numbers bit-equal),
  for the full-panel and the one-session entry points, cross-sectional factors included.
* :func:`scan_source_for_lookahead` -- static: parse the factor package with :mod:`ast` and reject
  the patterns that read later rows: ``np.roll`` (wraps the end around to the start), negative
  ``shift``/``diff``/``pct_change``, centred windows (``center=...``), subscripts or ``range`` bounds
  that step past a loop's current row (``a[i + k]``, ``a[i + 1:]``, ``range(i + 1, ...)``) and
  assignments that align later rows with earlier ones (``out[:-k] = a[k:]``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.config.models import FactorConfig
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.factors.engine import compute_cross_section, compute_panel, resolve_config
from rotation_platform.factors.factor_panel import FactorPanel
from rotation_platform.factors.registry import FactorError

__all__ = [
    "LookaheadReport",
    "SourceFinding",
    "SourceScanReport",
    "perturb_after",
    "verify_no_lookahead",
    "scan_source",
    "scan_source_for_lookahead",
]


# --------------------------------------------------------------------------------------- dynamic proof
@dataclass(frozen=True)
class LookaheadReport:
    """Outcome of :func:`verify_no_lookahead`.

    ``violations``: factors whose full-panel values at some session ``<= t`` changed, with the
    largest absolute change (inf where NaN-ness changed); ``cross_section_violations``: factors whose
    one-session value at *t* changed or differs from the full panel's.
    """

    session: pd.Timestamp
    t: int
    lag: int
    seed: int
    n_factors: int
    checked_sessions: int
    perturbed_cells: int
    violations: Mapping[str, float] = field(default_factory=dict)
    cross_section_violations: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations and not self.cross_section_violations

    def raise_if_failed(self) -> None:
        if not self.passed:
            names = sorted(set(self.violations) | set(self.cross_section_violations))
            raise FactorError(f"lookahead at session {str(self.session)[:10]} (lag {self.lag}): "
                              f"{len(names)} factor(s) changed when only data after t - lag changed: "
                              f"{names[:20]}")

    def to_metadata(self) -> dict[str, object]:
        return {
            "session": str(self.session)[:10],
            "lag": self.lag,
            "seed": self.seed,
            "n_factors": self.n_factors,
            "checked_sessions": self.checked_sessions,
            "perturbed_cells": self.perturbed_cells,
            "violations": sorted(self.violations),
            "cross_section_violations": list(self.cross_section_violations),
            "passed": self.passed,
        }


def perturb_after(panel: PricePanel, cutoff: int, seed: int = 0,
                  nav: pd.DataFrame | None = None) -> tuple[PricePanel, pd.DataFrame | None, int]:
    """A copy of the panel (and NAV) with every session row ``> cutoff`` changed at random.

    Existing bars get every field scaled by an independent random factor; about 10 % of the cells
    lose their bar (a suspension) and about half of the cells without a bar get one (a listing).
    Rows ``<= cutoff`` are untouched. Returns the panel, the NAV and the number of changed cells.
    """
    rng = np.random.default_rng(seed)
    n_sessions, n_funds = panel.shape
    start = cutoff + 1
    if not 0 <= start < n_sessions:
        raise FactorError(f"no session after row {cutoff} to perturb (panel has {n_sessions} sessions)")
    tail = (n_sessions - start, n_funds)
    close = panel.array("close")
    past = close[:start]
    seen = np.isfinite(past)
    last_row = np.maximum(seen.shape[0] - 1 - np.argmax(seen[::-1], axis=0), 0)
    last = np.where(seen.any(axis=0), past[last_row, np.arange(n_funds)], np.nan)
    level = np.where(np.isfinite(last), last, 1.0)
    had = np.isfinite(close[start:])
    drop = rng.random(tail) < 0.10
    add = (~had) & (rng.random(tail) < 0.5)
    keep = (had & ~drop) | add
    frames = {}
    for name in PRICE_FIELDS:
        arr = panel.array(name)
        part = arr[start:]
        scale = np.exp(rng.normal(0.0, 0.3, size=tail))
        if name in ("volume", "amount"):
            fresh = np.exp(rng.normal(np.log(1e6), 1.0, size=tail))
        else:
            fresh = level * np.exp(rng.normal(0.0, 0.2, size=tail))
        new = np.where(had, part * scale, fresh)
        arr[start:] = np.where(keep, new, np.nan)
        frames[name] = pd.DataFrame(arr, index=panel.sessions, columns=panel.symbols)
    out_nav = None
    if nav is not None:
        out_nav = nav.copy()
        after = out_nav.index > panel.sessions[cutoff]
        vals = out_nav.to_numpy(dtype=np.float64, copy=True)
        vals[after] *= np.exp(rng.normal(0.0, 0.3, size=vals[after].shape))
        out_nav = pd.DataFrame(vals, index=out_nav.index, columns=out_nav.columns)
    changed = int((keep != had).sum() + (had & keep).sum())
    return PricePanel(frames, {**panel.meta, "perturbed_after": str(panel.sessions[cutoff])[:10]}), \
        out_nav, changed


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    """0 when equal (NaN == NaN); the largest absolute change otherwise (inf for NaN-ness)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    na, nb_ = np.isnan(a), np.isnan(b)
    if (na != nb_).any():
        return float("inf")
    both = ~na
    if not both.any():
        return 0.0
    d = np.abs(a[both] - b[both])
    same = a[both] == b[both]
    return 0.0 if same.all() else float(d.max())


def verify_no_lookahead(panel: PricePanel, t: int | object, config: FactorConfig | int | None = None, *,
                        nav: pd.DataFrame | None = None, nav_delay: int = 1, price_field: str = "close",
                        names: Sequence[str] | None = None, seed: int = 0,
                        baseline: FactorPanel | None = None, check_cross_section: bool = True) -> LookaheadReport:
    """Change every input after *t - lag* and prove no factor value at sessions ``<= t`` moves.

    ``t`` is a row number or a session of the panel; ``config`` a :class:`FactorConfig` or a lag.
    ``baseline`` may pass an already computed ``compute_panel`` result for the same arguments.
    """
    cfg = resolve_config(config)
    if isinstance(t, int | np.integer) and not isinstance(t, bool):
        row = int(t)
    else:
        ts = pd.Timestamp(t)  # type: ignore[arg-type]
        if ts not in panel.sessions:
            raise FactorError(f"session {str(ts)[:10]} is not in the panel")
        row = int(panel.sessions.get_loc(ts))
    if not 0 <= row < len(panel.sessions):
        raise FactorError(f"row {row} is outside the panel ({len(panel.sessions)} sessions)")
    cutoff = row - cfg.lag
    if cutoff < 0:
        raise FactorError(f"session row {row} has no data through t - lag (lag {cfg.lag})")
    kwargs = dict(nav_delay=nav_delay, price_field=price_field, names=names)
    base = baseline if baseline is not None else compute_panel(panel, cfg, nav=nav, **kwargs)  # type: ignore[arg-type]
    moved, moved_nav, n_changed = perturb_after(panel, cutoff, seed, nav)
    other = compute_panel(moved, cfg, nav=moved_nav, **kwargs)  # type: ignore[arg-type]
    if other.names != base.names:
        raise FactorError("the baseline factor panel was computed with other arguments")
    violations: dict[str, float] = {}
    for k, name in enumerate(base.names):
        d = _diff(base.data[k, : row + 1], other.data[k, : row + 1])
        if d != 0.0:
            violations[name] = d
    cs_bad: list[str] = []
    if check_cross_section:
        cs = compute_cross_section(moved, row, cfg, nav=moved_nav, **kwargs)  # type: ignore[arg-type]
        for k, name in enumerate(base.names):
            if _diff(base.data[k, row], cs.data[k, 0]) != 0.0:
                cs_bad.append(name)
    return LookaheadReport(panel.sessions[row], row, cfg.lag, seed, len(base.names), row + 1, n_changed,
                           violations, tuple(cs_bad))


# --------------------------------------------------------------------------------------- static scan
@dataclass(frozen=True)
class SourceFinding:
    """One future-reading pattern in source code."""

    file: str
    line: int
    col: int
    rule: str
    message: str
    code: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: [{self.rule}] {self.message}: {self.code}"


@dataclass(frozen=True)
class SourceScanReport:
    """Outcome of :func:`scan_source_for_lookahead`."""

    files: tuple[str, ...]
    findings: tuple[SourceFinding, ...]

    @property
    def passed(self) -> bool:
        return not self.findings

    def raise_if_failed(self) -> None:
        if self.findings:
            raise FactorError("future-reading patterns in factor code:\n" +
                              "\n".join(str(f) for f in self.findings))

    def to_metadata(self) -> dict[str, object]:
        return {"files": len(self.files), "findings": [str(f) for f in self.findings], "passed": self.passed}


_SHIFT_LIKE = frozenset({"shift", "diff", "pct_change"})


def _terms(node: ast.AST, sign: int = 1) -> list[tuple[int, ast.AST]]:
    """Flatten a chain of ``+``/``-`` into signed terms."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        right_sign = sign if isinstance(node.op, ast.Add) else -sign
        return _terms(node.left, sign) + _terms(node.right, right_sign)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _terms(node.operand, -sign)
    return [(sign, node)]


def _is_negative(node: ast.AST | None) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return not (isinstance(node.operand, ast.Constant) and node.operand.value == 0)
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float) and node.value < 0


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str, source: str):
        self.file = file
        self.lines = source.splitlines()
        self.loop_vars: list[set[str]] = []
        self.findings: list[SourceFinding] = []

    # -- helpers
    def _add(self, node: ast.AST, rule: str, message: str) -> None:
        line = getattr(node, "lineno", 0)
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.findings.append(SourceFinding(self.file, line, getattr(node, "col_offset", 0), rule, message, code))

    def _loop_names(self) -> set[str]:
        return set().union(*self.loop_vars) if self.loop_vars else set()

    def _ahead(self, node: ast.AST | None, exclusive: bool = False) -> bool:
        """True when ``node`` is ``loopvar + (something non-negative and non-zero)``; for an exclusive
        slice end ``loopvar + 1`` is still the current row."""
        if node is None:
            return False
        loops = self._loop_names()
        terms = _terms(node)
        if not any(s > 0 and isinstance(t, ast.Name) and t.id in loops for s, t in terms):
            return False
        rest = list(terms)
        for i, (s, t) in enumerate(rest):
            if s > 0 and isinstance(t, ast.Name) and t.id in loops:
                del rest[i]
                break
        const = 0.0
        named = False
        for s, t in rest:
            if isinstance(t, ast.Constant) and isinstance(t.value, int | float):
                const += s * t.value
            elif s > 0:
                named = True
            else:
                return False  # a subtracted unknown (a window) keeps it at or before the row
        return named or const > (1 if exclusive else 0)

    def _walk_index(self, node: ast.AST) -> Iterable[ast.AST]:
        """Index sub-expressions, not descending into nested subscripts or calls."""
        stack = [node]
        while stack:
            cur = stack.pop()
            yield cur
            for child in ast.iter_child_nodes(cur):
                if not isinstance(child, ast.Subscript | ast.Call):
                    stack.append(child)

    def _check_subscript(self, node: ast.Subscript) -> None:
        sl = node.slice
        if isinstance(sl, ast.Slice):
            if self._ahead(sl.lower) or self._ahead(sl.upper, exclusive=True):
                self._add(node, "forward-index", "slice reaches past the loop's current row")
            return
        for sub in self._walk_index(sl):
            if isinstance(sub, ast.BinOp) and self._ahead(sub):
                self._add(node, "forward-index", "index reads a row after the loop's current row")
                return

    # -- loops
    def _visit_loop(self, target: ast.AST, iter_node: ast.AST, body: Sequence[ast.AST]) -> None:
        if isinstance(iter_node, ast.Call) and isinstance(iter_node.func, ast.Name) and \
                iter_node.func.id in ("range", "prange") and iter_node.args:
            args = iter_node.args
            start, stop = (None, args[0]) if len(args) == 1 else (args[0], args[1])
            if self._ahead(start) or self._ahead(stop, exclusive=True):
                self._add(iter_node, "forward-index", "loop range runs past the enclosing loop's current row")
        self.visit(iter_node)
        names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        self.loop_vars.append(names)
        for stmt in body:
            self.visit(stmt)
        self.loop_vars.pop()

    def visit_For(self, node: ast.For) -> None:
        self._visit_loop(node.target, node.iter, node.body)
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_comprehension_like(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        names = set()
        for gen in node.generators:
            self.visit(gen.iter)
            names |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
        self.loop_vars.append(names)
        for gen in node.generators:
            for cond in gen.ifs:
                self.visit(cond)
        for child in ("elt", "key", "value"):
            if hasattr(node, child):
                self.visit(getattr(node, child))
        self.loop_vars.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = visit_comprehension_like

    # -- patterns
    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] == "numpy" and any(a.name == "roll" for a in node.names):
            self._add(node, "roll", "numpy.roll wraps the last rows around to the first")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if fname == "roll":
            self._add(node, "roll", "roll wraps the last rows around to the first")
        if fname in _SHIFT_LIKE:
            periods = node.args[0] if node.args else None
            for kw in node.keywords:
                if kw.arg == "periods":
                    periods = kw.value
            if _is_negative(periods):
                self._add(node, "negative-shift", f"{fname} with a negative period reads later rows")
        for kw in node.keywords:
            if kw.arg == "center" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                self._add(node, "centered-window", "a centred window reads later rows")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Load):
            self._check_subscript(node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Subscript):
            self._check_subscript(node.target)
        self._check_alignment([node.target], node.value, node)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._check_alignment(node.targets, node.value, node)
        self.generic_visit(node)

    def _check_alignment(self, targets: Sequence[ast.AST], value: ast.AST, node: ast.AST) -> None:
        """``out[:-k] = x[k:]`` (or ``out[:n - k] = ...``): later rows written onto earlier ones."""
        def head(sl: ast.AST) -> bool:
            return isinstance(sl, ast.Slice) and sl.lower is None and sl.step is None and (
                _is_negative(sl.upper) or (isinstance(sl.upper, ast.BinOp) and isinstance(sl.upper.op, ast.Sub)))

        def tail(sl: ast.AST) -> bool:
            return isinstance(sl, ast.Slice) and sl.upper is None and sl.lower is not None and \
                not _is_negative(sl.lower) and not (isinstance(sl.lower, ast.Constant) and sl.lower.value == 0)

        if not any(isinstance(t, ast.Subscript) and head(t.slice) for t in targets):
            return
        if any(isinstance(n, ast.Subscript) and tail(n.slice) for n in ast.walk(value)):
            self._add(node, "forward-alignment", "later rows are written onto earlier rows")


def scan_source(source: str, file: str = "<string>") -> list[SourceFinding]:
    """Findings in one piece of Python source."""
    tree = ast.parse(source, filename=file)
    scanner = _Scanner(file, source)
    scanner.visit(tree)
    return sorted(scanner.findings, key=lambda f: (f.line, f.col, f.rule))


def scan_source_for_lookahead(paths: Iterable[str | Path] | None = None) -> SourceScanReport:
    """Scan Python files (default: every module of :mod:`rotation_platform.factors`)."""
    if paths is None:
        files = sorted(Path(__file__).resolve().parent.glob("*.py"))
    else:
        files = []
        for p in map(Path, paths):
            files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    findings: list[SourceFinding] = []
    for f in files:
        findings.extend(scan_source(f.read_text(encoding="utf-8"), str(f)))
    return SourceScanReport(tuple(str(f) for f in files), tuple(findings))
