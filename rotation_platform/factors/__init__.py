"""Factor engine: numba factors per pool, exact T+1, proof of no lookahead.

* :mod:`.nb` -- the numba kernels (a few generic rolling kernels parameterised by window);
* :mod:`.graph` and :mod:`.formulas` -- factor formulas and their derived history needs;
* :mod:`.registry` -- the factor set (names, families, windows, directions) and ``docs/factors.md``;
* :mod:`.engine` -- :func:`compute_panel` / :func:`compute_cross_section`, the single lag step;
* :mod:`.factor_panel` -- :class:`FactorPanel`, the output;
* :mod:`.lookahead` -- :func:`verify_no_lookahead` and :func:`scan_source_for_lookahead`;
* :mod:`.reference` -- plain pandas implementations of every factor (correctness and speed baseline).
"""

from rotation_platform.factors.engine import (
    apply_lag,
    compute_cross_section,
    compute_panel,
    required_lookback,
    resolve_config,
    valid_bars,
)
from rotation_platform.factors.factor_panel import FactorPanel
from rotation_platform.factors.lookahead import (
    LookaheadReport,
    SourceFinding,
    SourceScanReport,
    scan_source,
    scan_source_for_lookahead,
    verify_no_lookahead,
)
from rotation_platform.factors.registry import (
    FACTOR_SET_VERSION,
    FAMILIES,
    REGISTRY,
    FactorError,
    FactorSpec,
    families,
    render_markdown,
    select_factors,
)

__all__ = [
    "FACTOR_SET_VERSION",
    "FAMILIES",
    "REGISTRY",
    "FactorError",
    "FactorPanel",
    "FactorSpec",
    "LookaheadReport",
    "SourceFinding",
    "SourceScanReport",
    "apply_lag",
    "compute_cross_section",
    "compute_panel",
    "families",
    "render_markdown",
    "required_lookback",
    "resolve_config",
    "scan_source",
    "scan_source_for_lookahead",
    "select_factors",
    "valid_bars",
    "verify_no_lookahead",
]
