"""The main job's console summary: what was produced, how good it is, and where it is stored."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from rotation_platform.config import PlatformConfig
from rotation_platform.data.panel import PricePanel

__all__ = ["render_run_summary"]


def _fmt_table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False) if not frame.empty else "(nothing)"


def render_run_summary(config: PlatformConfig, outputs: Mapping[str, Mapping[str, object]]) -> str:
    """``outputs``: pool -> {"prices": PricePanel, "price_quarantine": DataFrame}."""
    data_dir = Path(config.storage.data_dir)
    rows = []
    for pool, out in outputs.items():
        panel = out["prices"]
        assert isinstance(panel, PricePanel)
        quarantine = out.get("price_quarantine")
        quality = panel.meta.get("quality", {}) or {}
        counts = quality.get("counts", {}) or {}
        close = panel["close"]
        rows.append({
            "pool": pool,
            "funds": len(panel.symbols),
            "sessions": len(panel.sessions),
            "from": str(panel.sessions[0].date()) if len(panel.sessions) else "",
            "to": str(panel.sessions[-1].date()) if len(panel.sessions) else "",
            "coverage": f"{close.notna().to_numpy().mean():.1%}" if panel.shape[0] else "",
            "quality": "passed" if quality.get("passed", True) else "FAILED",
            "findings": ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none",
            "quarantined": 0 if quarantine is None else len(quarantine),
        })
    lines = ["Prices per pool", _fmt_table(pd.DataFrame(rows))]
    if outputs:
        first = next(iter(outputs.values()))["prices"]
        synthetic = bool(first.meta.get("synthetic"))
        lines.append("")
        lines.append(f"source: {first.meta.get('source')}" + (" (SYNTHETIC data, not market data)" if synthetic else ""))
    lines.append("")
    lines.append("Stored under " + str(data_dir) + ":")
    for pool in outputs:
        for asset in ("prices", "price_quarantine"):
            matches = sorted((data_dir / asset).glob(f"{pool}.*"))
            for path in matches:
                lines.append(f"  {path}  ({path.stat().st_size / 1024:.0f} KiB)")
    for pool, out in outputs.items():
        panel = out["prices"]
        last = panel["close"].iloc[-1].dropna() if panel.shape[0] else pd.Series(dtype=float)
        if len(last):
            lines.append("")
            lines.append(f"{pool} last closes on {panel.sessions[-1].date()}: " +
                         ", ".join(f"{s} {v:.3f}" for s, v in last.items()))
    return "\n".join(lines)
