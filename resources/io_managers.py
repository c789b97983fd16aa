"""IO managers over the platform's storage codecs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rotation_platform.storage.files import read_value, write_value


class LocalFilesIOManager(dg.ConfigurableIOManager):
    """Embedded default storage: one file per asset partition under ``base_dir``.

    Layout: ``<base_dir>/<asset key path>/<partition dimension values...>``, with a suffix from the
    value's type (``.panel.parquet``, ``.parquet``, ``.json``). Writes are atomic (temp file + rename).
    """

    base_dir: str

    def _stems(self, context: dg.OutputContext | dg.InputContext) -> list[Path]:
        base = Path(self.base_dir).joinpath(*context.asset_key.path)
        if not context.has_asset_partitions:
            return [base / "_all"]
        return [base.joinpath(*_key_parts(key)) for key in context.asset_partition_keys]

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        stems = self._stems(context)
        if len(stems) != 1:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()}: received {len(stems)} partitions in one output; "
                "this asset stores one partition per output")
        path = write_value(stems[0], obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> object:
        stems = self._stems(context)
        if len(stems) == 1:
            return read_value(stems[0])
        return {key: read_value(stem) for key, stem in zip(context.asset_partition_keys, stems)}


def _key_parts(key: str | dg.MultiPartitionKey) -> list[str]:
    if isinstance(key, dg.MultiPartitionKey):
        return [key.keys_by_dimension[d] for d in sorted(key.keys_by_dimension)]
    return [str(key)]
