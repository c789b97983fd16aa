"""Frames with named index levels encode exactly as ``pyarrow.Table.from_pandas(preserve_index=True)``,
whether they are the first of their shape (converted from scratch) or a later one (the cached schema)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rotation_platform.storage import codec


def _frame(seed: int, n_funds: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product([[pd.Timestamp("2024-01-02") + pd.Timedelta(days=seed)],
                                        [f"F{i}" for i in range(n_funds)]], names=["session", "symbol"])
    frame = pd.DataFrame(rng.random((n_funds, 5)), index=index, columns=[f"x{i}" for i in range(5)])
    frame.iloc[0, 1] = np.nan
    frame["flag"] = rng.random(n_funds) > 0.5
    frame["label"] = [f"s{i}" for i in range(n_funds)]
    frame.iloc[1, -1] = None
    frame["when"] = pd.Timestamp("2024-02-01")
    frame["count"] = np.arange(n_funds, dtype=np.int64)
    return frame


@pytest.mark.parametrize("seed", range(4))  # the first builds the cached schema, the others reuse it
def test_multiindex_frames_match_pyarrow(seed) -> None:
    _assert_matches_pyarrow(_frame(seed))


def _assert_matches_pyarrow(frame: pd.DataFrame) -> None:
    """The frame's table is pyarrow's own, metadata included; its file is the same bytes and reads back."""
    want = pa.Table.from_pandas(frame, preserve_index=True)
    got = codec._frame_table(frame)
    assert got.equals(want) and got.schema.equals(want.schema, check_metadata=True)
    pd.testing.assert_frame_equal(got.to_pandas(), frame)
    suffix, data = codec.encode_file(frame)
    assert data == codec._parquet_bytes(want)
    pd.testing.assert_frame_equal(codec.decode_file(suffix, data), frame)


def _one_row(seed: int) -> pd.DataFrame:
    """A backtest-like row: one session, many float columns, a text column, a flag, a count."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(1, 30)), columns=[f"m{i}" for i in range(30)],
                         index=pd.DatetimeIndex([pd.Timestamp("2024-01-02") + pd.Timedelta(days=seed)], name="session"))
    frame.iloc[0, 3] = np.nan
    frame["params"] = pd.Series([f"top{seed}"], dtype="str", index=frame.index)
    frame["ok"] = bool(seed % 2)
    frame["n"] = np.int64(seed)
    return frame


@pytest.mark.parametrize("seed", range(4))  # a single named index: the same, first and later
def test_single_index_frames_match_pyarrow(seed) -> None:
    _assert_matches_pyarrow(_one_row(seed))


@pytest.mark.parametrize("values, dtype", [(["a", "b"], object), ([None, None], object), (["a", None], object),
                                           (["a", "b"], "category"), (["a", "a"], "category")])
def test_columns_typed_by_their_values_are_converted_from_scratch_every_time(values, dtype) -> None:
    """pyarrow takes an object column's type and pandas type from its values (all missing: a null column
    of pandas type ``empty``) and a categorical column's metadata from its categories, so a frame with one
    never reuses the schema of an earlier frame: the bytes do not depend on what the process wrote before."""
    def frame(vals):
        index = pd.MultiIndex.from_product([[pd.Timestamp("2024-01-02")], ["F0", "F1"]], names=["session", "symbol"])
        out = pd.DataFrame({"x": [1.0, 2.0], "note": pd.Series(vals, dtype=dtype, index=index)}, index=index)
        assert out["note"].dtype == dtype
        return out

    codec._frame_table(frame(["earlier", "value"]))  # would have set a cached schema for the shape
    got = codec._frame_table(frame(values))
    want = pa.Table.from_pandas(frame(values), preserve_index=True)
    assert got.equals(want) and got.schema.equals(want.schema, check_metadata=True)


def test_same_columns_other_dtypes_are_not_mixed_up() -> None:
    codec._frame_table(_frame(0))
    other = _frame(1)
    other["count"] = other["count"].astype(float) + 0.5
    got = codec._frame_table(other)
    assert got.schema.field("count").type == pa.float64()
    pd.testing.assert_frame_equal(got.to_pandas(), other)


@pytest.mark.parametrize("seed", range(3))  # one dtype throughout: converted from one transposed block
def test_uniform_float_frames_match_pyarrow(seed) -> None:
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product([[pd.Timestamp("2024-01-02") + pd.Timedelta(days=seed)],
                                        [f"F{i}" for i in range(16)]], names=["session", "symbol"])
    frame = pd.DataFrame(rng.normal(size=(16, 40)), index=index, columns=[f"f{i}" for i in range(40)])
    frame.iloc[3, 7] = np.nan
    frame.iloc[:, 5] = np.inf
    want = pa.Table.from_pandas(frame, preserve_index=True)
    got = codec._frame_table(frame)
    assert got.equals(want) and got.schema.equals(want.schema, check_metadata=True)
    pd.testing.assert_frame_equal(got.to_pandas(), frame)


def test_small_tables_are_written_plain_and_large_ones_compressed() -> None:
    import io

    import pyarrow.parquet as pq

    def codecs(frame):
        suffix, data = codec.encode_file(frame)
        pd.testing.assert_frame_equal(codec.decode_file(suffix, data), frame)
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        return {meta.row_group(0).column(j).compression for j in range(meta.num_columns)}

    small = _frame(0)
    assert codecs(small) == {"UNCOMPRESSED"}
    rows = codec.SMALL_TABLE_BYTES // 8 // 5 + 10
    big = pd.DataFrame(np.random.default_rng(1).normal(size=(rows, 5)), columns=[f"x{i}" for i in range(5)],
                       index=pd.RangeIndex(rows, name="row"))
    assert codecs(big) == {"ZSTD"}
