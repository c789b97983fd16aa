"""Pictures for the UI as PNG bytes (matplotlib, headless): equity against the benchmark, drawdown,
IC decay, a monthly-returns heatmap and the research tear sheet (:func:`tear_sheet_png`: cumulative
returns against the baselines, rolling Sharpe, drawdown, invested fraction and the monthly heatmap in one
picture; :func:`tear_sheet_markdown` its figures). :func:`markdown_image` embeds one in markdown."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

__all__ = ["equity_png", "drawdown_png", "ic_decay_png", "monthly_heatmap_png", "markdown_image", "tear_sheet_png",
           "tear_sheet_markdown", "rolling_sharpe", "pool_tear_sheet", "monthly_returns_of"]

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


def _month_grid(monthly: pd.Series) -> pd.DataFrame:
    table = pd.DataFrame({"year": monthly.index.year, "month": monthly.index.month, "r": monthly.to_numpy()})
    return table.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))


def monthly_heatmap_png(monthly: pd.Series, title: str) -> bytes:
    """Years x months grid of monthly returns."""
    grid = _month_grid(monthly)
    fig, ax = _figure(12.0, 0.45 * len(grid) + 1.4)
    _heatmap(fig, ax, grid, title)
    return _png(fig)


def _heatmap(fig, ax, grid: pd.DataFrame, title: str) -> None:
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


def rolling_sharpe(returns: pd.Series, window: int = 126, annualisation: int = 252) -> pd.Series:
    """Annualised Sharpe ratio of the trailing ``window`` sessions (NaN until the window is full)."""
    roll = returns.rolling(window, min_periods=window)
    sd = roll.std(ddof=1)
    return (roll.mean() / sd.where(sd > 0) * np.sqrt(annualisation)).rename(returns.name)


_COLOURS = {"strategy": "black", "equal_weight": "tab:blue", "benchmark": "tab:orange", "momentum": "tab:green"}


def tear_sheet_png(strategy: pd.Series, baselines: dict[str, tuple[str, pd.Series]], title: str, *,
                   invested: pd.Series | None = None, window: int = 126, annualisation: int = 252) -> bytes:
    """One picture of a backtest against its baselines.

    ``strategy``: the strategy's equity over its live sessions; ``baselines``: name -> (label, equity)
    over the same sessions; ``invested``: the fraction of equity in funds (left out when None). Panels:
    cumulative return of each (rebased at the first session), the rolling ``window``-session Sharpe
    ratio, drawdowns, the invested fraction and the strategy's monthly returns by year and month.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    curves = {"strategy": ("strategy", strategy), **baselines}
    months = monthly_returns_of(strategy)
    grid = _month_grid(months)
    has_inv = invested is not None and invested.notna().any()
    heights = [3.2, 2.0, 2.0] + ([1.4] if has_inv else []) + [0.42 * max(len(grid), 1) + 0.9]
    fig, axes = plt.subplots(len(heights), 1, figsize=(12.0, sum(heights) + 1.2), dpi=_DPI,
                             gridspec_kw={"height_ratios": heights})
    ax_cum, ax_rs, ax_dd = axes[0], axes[1], axes[2]
    for name, (label, eq) in curves.items():
        eq = eq.dropna()
        if eq.empty:
            continue
        rel = eq / eq.iloc[0] - 1.0
        rets = eq.pct_change().fillna(0.0)
        annual = (eq.iloc[-1] / eq.iloc[0]) ** (annualisation / max(len(eq) - 1, 1)) - 1.0
        style = dict(color=_COLOURS.get(name), lw=1.6 if name == "strategy" else 1.1,
                     alpha=1.0 if name == "strategy" else 0.85)
        ax_cum.plot(rel.index, rel.to_numpy(), label=f"{label} ({annual:+.1%}/yr)", **style)
        rs = rolling_sharpe(rets, window, annualisation)
        ax_rs.plot(rs.index, rs.to_numpy(), label=label, **style)
        dd = eq / eq.cummax() - 1.0
        if name == "strategy":
            ax_dd.fill_between(dd.index, dd.to_numpy(), 0.0, color="tab:red", alpha=0.35, label=f"{label}")
        else:
            ax_dd.plot(dd.index, dd.to_numpy(), label=label, **{**style, "lw": 0.9})
    ax_cum.set_title(f"{title}: cumulative return vs baselines (same costs and lots)", fontsize=12)
    ax_cum.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax_cum.legend(fontsize=9, loc="upper left")
    ax_rs.axhline(0.0, color="grey", lw=0.8)
    ax_rs.set_title(f"rolling {window}-session Sharpe ratio (annualised)", fontsize=11)
    ax_rs.legend(fontsize=8, ncol=4, loc="upper left")
    ax_dd.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax_dd.set_title("drawdown", fontsize=11)
    ax_dd.legend(fontsize=8, ncol=4, loc="lower left")
    for ax in (ax_cum, ax_rs, ax_dd):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=9)
    k = 3
    if has_inv:
        ax_inv = axes[k]
        inv = invested.reindex(strategy.index)
        ax_inv.fill_between(inv.index, inv.to_numpy(dtype=float), 0.0, color="tab:purple", alpha=0.35)
        ax_inv.set_ylim(0.0, max(1.05, float(np.nanmax(inv.to_numpy(dtype=float))) + 0.05))
        ax_inv.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax_inv.set_title(f"invested fraction (mean {float(inv.mean()):.0%})", fontsize=11)
        ax_inv.grid(alpha=0.3)
        ax_inv.tick_params(labelsize=9)
        k += 1
    for ax in axes[1:k]:
        ax.sharex(ax_cum)
    _heatmap(fig, axes[k], grid, "strategy: monthly returns")
    return _png(fig)


def monthly_returns_of(equity: pd.Series) -> pd.Series:
    """Compounded monthly returns of an equity curve (the first session is the base)."""
    rets = equity.dropna().pct_change().iloc[1:]
    if rets.empty:
        return rets
    out = (1.0 + rets).groupby(rets.index.to_period("M")).prod() - 1.0
    out.index = out.index.to_timestamp(how="end").normalize()
    return out


def tear_sheet_markdown(pool: str, session: object, rows: pd.DataFrame, *, value_added: str,
                        pbo: object = None, dsr: object = None, invested: object = None) -> str:
    """The tear sheet's figures: ``rows`` (index: strategy and baselines; columns annual_return,
    sharpe, max_drawdown, ...), the validation (PBO, deflated Sharpe) and the value-added line."""
    from rotation_platform.reports.tables import markdown_table, number_text as num

    head = (f"**{pool} research tear sheet as of {pd.Timestamp(session).date()}**\n\n"
            f"- value added: {value_added}\n"
            f"- PBO (probability of backtest overfitting): {num(pbo, '{:.2f}')}; deflated Sharpe ratio "
            f"(probability): {num(dsr, '{:.2f}')}\n"
            + (f"- invested fraction: {num(invested, '{:.0%}')}\n" if invested is not None else "") + "\n")
    return head + markdown_table(rows)


def pool_tear_sheet(pool: str, run, frame: pd.DataFrame, value_added: str) -> str:
    """The tear sheet of a pool run's last session (a
    :class:`~rotation_platform.production.pool_run.PoolRun` and its backtest frame): the picture and
    the figures' block, in markdown. The invested fraction is the frame's ``invested`` column where it
    has one for the session, the book's (funds at their marks over equity) for the curve."""
    from rotation_platform.research.baselines import BASELINES, PREFIX

    bt = run.backtest
    t = frame.index[-1]
    upto = int(run.panel.sessions.get_loc(t))
    first = bt.plan.first_trade_row or 0
    span = slice(first, upto + 1)
    base = run.baselines
    curves = {name: (base[name].label, base[name].equity.iloc[span]) for name in BASELINES}
    invested = (bt.position_values.sum(axis=1) / bt.equity.where(bt.equity > 0)).iloc[span]
    ann = int(run.config.backtest.annualisation)
    png = tear_sheet_png(bt.equity.iloc[span], curves, f"{pool} as of {t.date()}", invested=invested,
                         annualisation=ann)
    last = frame.iloc[-1]
    cols = ("annual_return", "sharpe", "max_drawdown", "volatility", "annual_turnover")
    rows = {"strategy": {c: float(last.get(c, np.nan)) for c in cols}}
    for name in BASELINES:
        rows[base[name].label] = {c: float(last.get(f"{PREFIX[name]}_{c}", np.nan)) for c in cols}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("portfolio")
    record = run.wfo_record(t)
    inv_now = last.get("invested", last.get("invested_weight"))
    block = tear_sheet_markdown(pool, t, table, value_added=value_added, pbo=(record.get("pbo") or {}).get("pbo"),
                                dsr=(record.get("dsr") or {}).get("dsr"), invested=inv_now)
    mean_inv = float(invested.mean()) if len(invested) else float("nan")
    sel = record.get("selection_ic") or {}
    ic_line = ""
    if sel.get("n_reoptimisations"):
        live = sel.get("live") or {}
        ic_line = ("\n\nselected factors' rank IC at their holding horizon, in sample vs the next window "
                   f"(the selection bias): mean over {sel['n_reoptimisations']} re-optimisations "
                   f"{_fmt(sel.get('mean_is_ic'))} vs {_fmt(sel.get('mean_oos_ic'))}"
                   + (f"; live choice (horizon {live.get('selection_horizon')}) {_fmt(live.get('is_ic'))} in sample"
                      if live else ""))
    return (markdown_image(png, f"{pool} tear sheet") + "\n\n" + block
            + (f"\n\nmean invested fraction over the backtest: {mean_inv:.0%}" if np.isfinite(mean_inv) else "")
            + ic_line)


def _fmt(x: object) -> str:
    from rotation_platform.reports.tables import number_text

    return number_text(x, "{:+.3f}")


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
