"""A store that keeps time series in one store and everything else in another.

The ``influxdb`` backend is a :class:`RoutedStore`: price panels and frames indexed by time
(:func:`~.codec.is_timeseries`) go to InfluxDB, tables without a time axis and JSON documents go to
MySQL. A partition lives in exactly one of the two: a write removes it from the other one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rotation_platform.storage import codec
from rotation_platform.storage.base import (
    HealthStatus,
    Partition,
    StoredCounts,
    Store,
    WriteReceipt,
    unique_partitions,
)
from rotation_platform.storage.errors import StorageNotFoundError

__all__ = ["RoutedStore"]


class RoutedStore(Store):
    delegates = True  # the two stores count their own calls

    def __init__(self, timeseries: Store, tables: Store, logger: Any = None):
        self.timeseries = timeseries
        self.tables = tables
        self.backend = timeseries.backend  # type: ignore[misc]
        self.logger = logger

    def _children(self) -> list[Store]:
        return [self.timeseries, self.tables]

    @property
    def location(self) -> str:
        return f"{self.timeseries.location} (time series) + {self.tables.location} (tables)"

    def servers(self) -> list[str]:
        return [*self.timeseries.servers(), *self.tables.servers()]

    def route(self, value: Any) -> Store:
        return self.timeseries if codec.is_timeseries(value) else self.tables

    def _holder(self, asset: Sequence[str], partition: Partition) -> Store | None:
        if self.timeseries.exists(asset, partition):
            return self.timeseries
        if self.tables.exists(asset, partition):
            return self.tables
        return None

    def write(self, asset: Sequence[str], partition: Partition, value: Any) -> WriteReceipt:
        target = self.route(value)
        other = self.tables if target is self.timeseries else self.timeseries
        receipt = target.write(asset, partition, value)
        if other.exists(asset, partition):
            other.delete(asset, partition)
        return receipt

    def read(self, asset: Sequence[str], partition: Partition) -> Any:
        holder = self._holder(asset, partition)
        if holder is None:
            raise StorageNotFoundError(f"nothing stored for {self.describe(asset, partition)} in "
                                       f"{self.timeseries.location} or {self.tables.location}; materialise it first")
        return holder.read(asset, partition)

    def read_many(self, asset: Sequence[str], partitions: Sequence[Partition], *,
                  strict: bool = False) -> dict[str, Any]:
        """The window from the time-series store in one call, what it lacks from the table store in
        one more (a partition lives in one of the two)."""
        wanted = unique_partitions(partitions)
        if not wanted:
            return {}
        found = self.timeseries.read_many(asset, wanted)
        rest = [p for p in wanted if p.key not in found]
        if rest:
            found.update(self.tables.read_many(asset, rest))
        return self._window_answer(asset, wanted, found, strict)

    def exists(self, asset: Sequence[str], partition: Partition) -> bool:
        return self._holder(asset, partition) is not None

    def delete(self, asset: Sequence[str], partition: Partition) -> None:
        self.timeseries.delete(asset, partition)
        self.tables.delete(asset, partition)

    def partitions(self, asset: Sequence[str]) -> list[str]:
        return sorted(set(self.timeseries.partitions(asset)) | set(self.tables.partitions(asset)))

    def counts(self, asset: Sequence[str], partition: Partition) -> StoredCounts:
        holder = self._holder(asset, partition) or self.timeseries
        return holder.counts(asset, partition)

    def checksum(self, asset: Sequence[str], partition: Partition) -> str | None:
        holder = self._holder(asset, partition)
        return None if holder is None else holder.checksum(asset, partition)

    def health(self) -> list[HealthStatus]:
        return [*self.timeseries.health(), *self.tables.health()]

    def close(self) -> None:
        self.timeseries.close()
        self.tables.close()
