"""Pictures for the UI as PNG bytes (matplotlib, headless): equity against the benchmark, drawdown,
IC decay and a monthly-returns heatmap. :func:`markdown_image` embeds one in markdown."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

__all__ = ["equity_png", "drawdown_png", "ic_decay_png", "monthly_heatmap_png", "markdown_image"]

_DPI = 100  # with the sizes below: about 1000 px wide, readable at the UI's width


def _figure(width: float = 10.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=_DPI)
    return fig, ax


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def equity_png(equity: pd.Series, benchmark: pd.Series, title: str) -> bytes:
    """Strategy and benchmark equity, both rebased to 1 at the first session shown."""
    fig, ax = _figure()
    ax.plot(equity.index, equity / equity.iloc[0], label="strategy", lw=1.2)
    ax.plot(benchmark.index, benchmark / benchmark.iloc[0], label="benchmark", lw=1.0, alpha=0.8)
    ax.set_title(title, fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10)
    return _png(fig)


def drawdown_png(equity: pd.Series, title: str) -> bytes:
    dd = equity / equity.cummax() - 1.0
    fig, ax = _figure(10.0, 3.0)
    ax.fill_between(dd.index, dd.to_numpy(), 0.0, color="tab:red", alpha=0.4)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_title(title, fontsize=12)
    ax.grid(alpha=0.3)
    return _png(fig)


def ic_decay_png(decay: pd.DataFrame, title: str) -> bytes:
    """Mean rank IC by horizon for the given factors (rows: factors, columns: horizons)."""
    fig, ax = _figure(10.0, 4.5)
    for name, row in decay.iterrows():
        ax.plot([str(h) for h in decay.columns], row.to_numpy(dtype=float), marker="o", lw=1.0, label=str(name))
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("horizon (sessions)", fontsize=10)
    ax.set_ylabel("mean rank IC", fontsize=10)
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=9, ncol=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def monthly_heatmap_png(monthly: pd.Series, title: str) -> bytes:
    """Years x months grid of monthly returns."""
    table = pd.DataFrame({"year": monthly.index.year, "month": monthly.index.month, "r": monthly.to_numpy()})
    grid = table.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))
    fig, ax = _figure(12.0, 0.45 * len(grid) + 1.4)
    lim = float(np.nanmax(np.abs(grid.to_numpy()))) if np.isfinite(grid.to_numpy()).any() else 0.01
    im = ax.imshow(grid.to_numpy(), cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
                  fontsize=10)
    ax.set_yticks(range(len(grid)), [str(y) for y in grid.index], fontsize=10)
    for i in range(grid.shape[0]):
        for j in range(12):
            v = grid.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1%}", ha="center", va="center", fontsize=9)
    ax.set_title(title, fontsize=12)
    bar = fig.colorbar(im, ax=ax, fraction=0.03)
    bar.ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
