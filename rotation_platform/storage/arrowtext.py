"""Column-wise text building with Arrow, shared by the line-protocol and SQL encoders.

Servers take text (InfluxDB line protocol, SQL ``VALUES`` lists); building it value by value in
Python is the slow part of a bulk write. These helpers build it a column at a time in Arrow.

Special floats: neither line protocol nor SQL ``DOUBLE`` carries ``+inf``, ``-inf`` or (through
every client) ``-0.0``. Encoders leave those cells empty and record them per row in a side column as
``"<column position>:<mark>"`` items joined by ``;`` (mark ``+``, ``-`` or ``z``);
:func:`apply_special` puts them back on read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rotation_platform.storage.errors import StorageError

__all__ = ["join", "decoded", "floats", "negative_zero", "special_marks", "has_special", "special_column",
           "apply_special", "SPECIAL_VALUES"]

SPECIAL_VALUES = {"+": math.inf, "-": -math.inf, "z": -0.0}
_NULL_TEXT = pa.scalar(None, pa.large_string())


def join(*parts: pa.Array | pa.Scalar | str, sep: str = "", skip_nulls: bool = False) -> pa.Array:
    """Element-wise concatenation as ``large_string``: null where any part is null, or with
    ``skip_nulls`` the non-null parts joined by ``sep``. With ``skip_nulls`` the first part must be
    non-null in every row: Arrow drops rows whose parts are all null in that mode."""
    cast = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p.cast(pa.large_string()) for p in parts]
    lengths = {len(p) for p in cast if isinstance(p, pa.Array)}
    out = pc.binary_join_element_wise(*cast, pa.scalar(sep, pa.large_string()),
                                      null_handling="skip" if skip_nulls else "emit_null")
    if lengths and {len(out)} != lengths:
        raise StorageError(f"string join produced {len(out)} rows from inputs of {sorted(lengths)} rows")
    return out


def decoded(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array, dictionary-decoded."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def floats(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return decoded(col).cast(pa.float64())


def negative_zero(arr: pa.Array) -> pa.Array:
    """True where a float is -0.0 (1 / -0.0 is -inf)."""
    return pc.fill_null(pc.and_(pc.equal(arr, 0.0), pc.less(pc.divide(1.0, arr), 0.0)), False)


def special_marks(arr: pa.Array) -> pa.Array:
    """Per row: ``+`` for +inf, ``-`` for -inf, ``z`` for -0.0, null otherwise."""
    inf = pc.fill_null(pc.is_inf(arr), False)
    positive = pc.fill_null(pc.greater(arr, 0.0), False)
    sign = pc.if_else(positive, pa.scalar("+", pa.large_string()), pa.scalar("-", pa.large_string()))
    return pc.if_else(inf, sign, pc.if_else(negative_zero(arr), pa.scalar("z", pa.large_string()), _NULL_TEXT))


def has_special(col: pa.Array | pa.ChunkedArray) -> bool:
    arr = floats(col)
    return bool(pc.any(pc.fill_null(pc.is_inf(arr), False)).as_py() or pc.any(negative_zero(arr)).as_py())


def special_column(columns: Sequence[tuple[int, pa.Array]], n: int) -> pa.Array:
    """The side column for ``n`` rows from ``(position, float column)`` pairs: ``"3:+;7:z"`` or null."""
    pieces: list[pa.Array | str] = [pa.array([""] * n, pa.large_string())]  # never null: keeps every row
    for position, col in columns:
        marks = special_marks(floats(col))
        if marks.null_count == len(marks):
            continue
        pieces.append(join(f"{position}:", marks))
    joined = pc.utf8_slice_codeunits(join(*pieces, sep=";", skip_nulls=True), 1)  # drop the leading ';'
    return pc.if_else(pc.equal(pc.binary_length(joined), 0), _NULL_TEXT, joined)


def apply_special(columns: dict[int, pa.Array], special: Sequence[str | None]) -> dict[int, pa.Array]:
    """Put back the values a side column records (``columns`` by position)."""
    patches: dict[int, dict[int, float]] = {}
    for row, text in enumerate(special):
        if not text:
            continue
        for item in text.split(";"):
            position, mark = item.split(":")
            patches.setdefault(int(position), {})[row] = SPECIAL_VALUES[mark]
    out = dict(columns)
    for position, rows in patches.items():
        values = out[position].cast(pa.float64()).to_numpy(zero_copy_only=False).copy()
        mask = np.asarray(out[position].is_null().to_numpy(zero_copy_only=False), dtype=bool).copy()
        for row, value in rows.items():
            values[row] = value
            mask[row] = False
        out[position] = pa.array(values, pa.float64(), mask=mask)
    return out
