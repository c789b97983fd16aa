"""Frames with named index levels encode exactly as ``pyarrow.Table.from_pandas(preserve_index=True)``."""

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
    frame = _frame(seed)
    want = pa.Table.from_pandas(frame, preserve_index=True)
    got = codec._frame_table(frame)
    assert got.equals(want) and got.schema.equals(want.schema, check_metadata=True)
    pd.testing.assert_frame_equal(got.to_pandas(), frame)
    suffix, data = codec.encode_file(frame)
    pd.testing.assert_frame_equal(codec.decode_file(suffix, data), frame)


def test_same_columns_other_dtypes_are_not_mixed_up() -> None:
    codec._frame_table(_frame(0))
    other = _frame(1)
    other["count"] = other["count"].astype(float) + 0.5
    got = codec._frame_table(other)
    assert got.schema.field("count").type == pa.float64()
    pd.testing.assert_frame_equal(got.to_pandas(), other)
