"""The price-source interface.

A source reads per-fund raw records in canonical units (shares, CNY) but *unadjusted*, together
with the corporate actions it knows about. Quality checks, adjustment and alignment to the pool's
calendar happen afterwards, in :func:`rotation_platform.data.pipeline.load_pool_prices`, identically
for every source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["RAW_COLUMNS", "RawPrices", "CorporateActions", "PriceSource"]

#: Columns of a raw per-fund frame: ``date`` (datetime64, tz-naive), prices in CNY per share,
#: ``volume`` in shares, ``amount`` in CNY. Rows are in file order; nothing is dropped or fixed.
RAW_COLUMNS: tuple[str, ...] = ("date", "open", "high", "low", "close", "volume", "amount")


@dataclass(frozen=True, eq=False)
class RawPrices:
    """One fund's records as read, before any check or adjustment."""

    symbol: str
    frame: pd.DataFrame                     # RAW_COLUMNS, plus ``line``: 1-based line/row in the file
    file: str | None = None                 # where it came from (None for generated data)
    layout: str = "unknown"                 # the detected layout name
    meta: Mapping[str, object] = field(default_factory=dict)
    #: corporate actions the file itself carries (an ``Adj Close`` column as factors, Alpha Vantage's
    #: dividend and split columns as tables); None when it carries none
    actions: "CorporateActions | None" = None


@dataclass(frozen=True, eq=False)
class CorporateActions:
    """What is known about corporate actions, per symbol.

    * ``factors``: multiplicative back-adjustment factors, ``symbol -> Series(date -> hfq_factor)``
      (adjusted_close = close * factor);
    * ``splits``: columns ``symbol, date, ratio`` (one old share becomes ``ratio`` new shares);
    * ``dividends``: columns ``symbol, date, cash`` (ex-date, CNY per share).
    """

    factors: Mapping[str, pd.Series] = field(default_factory=dict)
    splits: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"symbol": pd.Series(dtype=object), "date": pd.Series(dtype="datetime64[ns]"),
         "ratio": pd.Series(dtype=float)}))
    dividends: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"symbol": pd.Series(dtype=object), "date": pd.Series(dtype="datetime64[ns]"),
         "cash": pd.Series(dtype=float)}))


class PriceSource(ABC):
    """A provider of raw daily prices and corporate actions."""

    #: short name recorded in the panel metadata
    name: str = "source"
    #: True for generated data; recorded in every output's metadata
    synthetic: bool = False

    @abstractmethod
    def read(self, symbols: Sequence[str]) -> dict[str, RawPrices]:
        """Raw records for each requested symbol; a symbol the source lacks raises DataSourceError."""

    @abstractmethod
    def corporate_actions(self, symbols: Sequence[str]) -> CorporateActions:
        """Corporate actions known for the symbols (empty when the prices need no adjustment)."""

    def describe(self) -> dict[str, object]:
        """Provenance for metadata (JSON-able)."""
        return {"source": self.name, "synthetic": self.synthetic}
