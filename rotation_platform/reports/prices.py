"""Plain summaries of a loaded pool's prices and quality report (for metadata, logs and the console)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rotation_platform.data.pipeline import PoolPrices
from rotation_platform.data.quality import QualityReport
from rotation_platform.reports.tables import markdown_table

__all__ = ["price_summary", "quality_check_summary", "markdown_table"]


def fund_table(result: PoolPrices) -> pd.DataFrame:
    """Per fund: first/last session with a close, sessions with data, missing sessions, adjustment, the last
    raw (tradable) close and the adjusted close the signals use."""
    panel = result.panel
    close = panel["close"]
    raw = getattr(result, "raw_panel", None)
    raw_close = raw["close"] if raw is not None else close
    rows = []
    for symbol in panel.symbols:
        series = close[symbol]
        valid = series.notna()
        first = series.first_valid_index()
        last = series.last_valid_index()
        span = valid.loc[first:last] if first is not None else valid.iloc[:0]
        rows.append({
            "fund": symbol,
            "first": "" if first is None else str(first.date()),
            "last": "" if last is None else str(last.date()),
            "sessions": int(valid.sum()),
            "missing": int((~span).sum()),
            "quarantined": int(result.report.stats.get(symbol, {}).get("quarantined", 0)),
            "adjustment": result.methods.get(symbol, "none"),
            "last_close": float(raw_close[symbol].loc[last]) if last is not None else float("nan"),
            "adjusted_close": float(series.loc[last]) if last is not None else float("nan"),
        })
    return pd.DataFrame(rows)


def price_summary(result: PoolPrices, config_hash: str) -> dict[str, object]:
    """Metadata for a stored pool panel: sizes, range, provenance, quality and hashes."""
    panel, report = result.panel, result.report
    sessions = panel.sessions
    counts = report.counts
    worst = report.worst_severity
    return {
        "funds": len(panel.symbols),
        "sessions": len(sessions),
        "first_session": str(sessions[0].date()) if len(sessions) else "",
        "last_session": str(sessions[-1].date()) if len(sessions) else "",
        "source": str(panel.meta.get("source", "")),
        "synthetic": bool(panel.meta.get("synthetic", False)),
        "coverage": float(panel["close"].notna().to_numpy().mean()) if panel.shape[0] else 0.0,
        "quarantined_rows": int(len(result.quarantine)),
        "quality_passed": bool(report.passed),
        "worst_severity": worst.name if worst is not None else "none",
        "findings": {k: int(v) for k, v in sorted(counts.items())},
        "data_hash": panel.content_hash(),
        "config_hash": config_hash,
        "funds_table": markdown_table(fund_table(result).set_index("fund")),
        "quality_table": quality_markdown(report),
    }


def quality_markdown(report: QualityReport, limit: int = 30) -> str:
    frame = report.to_frame()
    if frame.empty:
        return "_no findings_"
    cols = [c for c in ("severity", "check", "symbol", "count", "dates", "message") if c in frame.columns]
    shown = frame[cols].head(limit).copy()
    if "dates" in shown.columns:
        shown["dates"] = shown["dates"].map(lambda d: ", ".join(d[:3]) if isinstance(d, (list, tuple)) else d)
    more = f"\n\n… and {len(frame) - limit} more" if len(frame) > limit else ""
    return markdown_table(shown, index=False) + more


def quality_check_summary(report: QualityReport) -> dict[str, object]:
    """Metadata of the data-quality asset check."""
    worst = report.worst_severity
    return {
        "passed": bool(report.passed),
        "worst_severity": worst.name if worst is not None else "none",
        "severity_counts": report.severity_counts,
        "counts": {k: int(v) for k, v in sorted(report.counts.items())},
        "findings": quality_markdown(report),
    }
