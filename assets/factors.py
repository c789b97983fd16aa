"""Per pool and session: the point-in-time factor cross-section (row t uses data through t - lag)."""

from collections.abc import Iterator

import dagster as dg
import numpy as np

from assets._metadata import check_evaluations, check_spec, metadata_tail, per_partition, pool_value
from resources.platform import PlatformResource
from rotation_platform.production import fuses


OUTS = {
    "factor_panel": dg.AssetOut(
        group_name="factors", code_version="1", is_required=False,
        description="Every factor of the pool's funds at the session (index session x symbol, one column per "
                    "factor); values use data through the previous session (factors.lag)."),
}
CHECKS = [
    check_spec("t_plus_one", "factor_panel", "Fuse 1: static scan of the factor code and a runtime proof "
                                             "that no value moves when data after t - lag changes."),
    check_spec("coverage", "factor_panel", "Fuse 2: factor coverage >= fuses.min_coverage and no drop "
                                           "larger than fuses.max_coverage_drop against the previous session."),
    check_spec("zero_variance", "factor_panel", "Fuse 7: no factor constant over its history; at most "
                                                "fuses.max_flat_factor_share flat across funds."),
]


def emit_factor_panel(context: dg.AssetExecutionContext, platform: PlatformResource, groups: list) -> Iterator[object]:
    frames, checks = [], {"t_plus_one": {}, "coverage": {}, "zero_variance": {}}
    lag = platform.config.factors.lag
    for pool, run, sessions, keys in groups:
        frame = run.factor_frame()
        coverage = run.coverage
        values = np.asarray(run.factors.values)

        def row(t, run=run, coverage=coverage, values=values, width=frame.shape[1]):
            block = values[int(run.panel.sessions.get_loc(t))]
            return {"coverage": float(coverage.loc[t]), "funds_with_values": int(np.isfinite(block).any(axis=1).sum()),
                    "factors": int(width), "lag": int(lag)}

        per_partition(context, "factor_panel", pool, metadata_tail(keys, sessions), row)
        frames.append(frame)
        checks["t_plus_one"][pool] = fuses.t_plus_one(run)
        checks["coverage"][pool] = fuses.coverage(run)
        checks["zero_variance"][pool] = fuses.zero_variance(run)
    yield dg.Output(pool_value(groups, frames), output_name="factor_panel")
    yield from check_evaluations(context, "factor_panel", groups, checks)

