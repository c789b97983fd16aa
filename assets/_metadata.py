"""Turn the library's plain summaries into Dagster metadata values."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg


def to_dagster_metadata(summary: Mapping[str, object], markdown_keys: tuple[str, ...] = ()) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in summary.items():
        if key in markdown_keys and isinstance(value, str):
            out[key] = dg.MetadataValue.md(value)
        elif isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[key] = dg.MetadataValue.float(value)
        elif isinstance(value, (dict, list)):
            out[key] = dg.MetadataValue.json(value)
        else:
            out[key] = dg.MetadataValue.text(str(value))
    return out
