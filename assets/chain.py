"""The pool chain as one step: prices -> factor_panel -> factor_screen -> wfo_result -> backtest ->
capacity_report -> target_portfolio, per pool and session.

Why one step, not one step per asset that loads its inputs: every value of the chain at session ``t``
reads the pool's whole history through ``t`` -- the factor panel the adjusted prices since the first
bar, the walk-forward grid every factor row, the backtest every live choice since the first
re-optimisation -- not the one upstream partition of ``t``. Loaded through the IO manager that is a
window of thousands of stored partitions per step (per pool-session on a backfill), and the history is
recomputed from the prices in a fraction of the time; kept in a resource, as the chain used to, it lives
only as long as one process, so the multiprocess and Celery executors recomputed the whole chain in
every step. As one step the chain is computed once per run on any executor, and no run state lives in a
resource (the figures: docs/performance.md, ``python -m benchmarks orchestration``).

The step can be subset (``can_subset``): materialising some of its assets computes what they need and
yields only those. ``target_portfolio`` alone -- the asset a desk reruns, e.g. after loading the day's
actual positions -- reads the stored ``wfo_result``, ``backtest`` and ``capacity_report`` of its
sessions instead of simulating the walk-forward grid and the backtest again
(:mod:`rotation_platform.production.stored_chain`), when they were computed from the same data and
configuration; otherwise it computes them and says why in the materialisation's metadata.

Blocking checks keep their meaning inside the step: when a blocking check of an asset fails with ERROR
severity, the assets after it are not computed (Dagster then fails the step, as it did when each asset
had its own step).
"""

from collections.abc import Callable, Iterator

import dagster as dg

from assets import factors, prices, research
from assets._metadata import SINGLE_RUN, asset_key_of
from assets.market_data import MARKET_DATA, MARKET_DATA_DEP
from assets.partitions import pool_session_partitions, run_groups
from resources.platform import PlatformResource
from resources.stores import StoreResource
from rotation_platform.calendars import storage_key
from rotation_platform.observability.logs import iterate_with
from rotation_platform.observability.steps import step_logs
from rotation_platform.production.pool_run import PoolRun
from rotation_platform.production.stored_chain import UPSTREAM_ASSETS, StaleUpstream, TargetFromStored
from rotation_platform.storage.base import Partition

__all__ = ["CHAIN_ASSETS", "ORDER", "STORE_POOL", "pool_chain"]

#: the Dagster concurrency pool of the steps that write the stores
STORE_POOL = "rotation_store"

#: the chain's assets in order, each with the asset it reads
ORDER = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
         "capacity_report", "target_portfolio")
UPSTREAM = {"prices": None, "price_quarantine": None, "factor_panel": "prices", "factor_screen": "factor_panel",
            "wfo_result": "factor_screen", "backtest": "wfo_result", "capacity_report": "backtest",
            "target_portfolio": "capacity_report"}
OUTS = {**prices.OUTS, **factors.OUTS, **research.OUTS}
CHECKS = [*prices.CHECKS, *factors.CHECKS, *research.CHECKS]

#: (assets an emitter yields, the emitter)
_EMITTERS: list[tuple[tuple[str, ...], Callable[..., Iterator[object]]]] = [
    (("prices", "price_quarantine"), prices.emit_prices),
    (("factor_panel",), factors.emit_factor_panel),
    (("factor_screen",), research.emit_factor_screen),
    (("wfo_result",), research.emit_wfo_result),
    (("backtest",), research.emit_backtest),
    (("capacity_report",), research.emit_capacity_report),
    (("target_portfolio",), research.emit_target_portfolio),
]


def _selected(context: dg.AssetExecutionContext) -> set[str]:
    return {key.path[-1] for key in context.selected_asset_keys}


def _stored_reader(store, pool: str):
    """``read(asset, session)``: the stored value of the pool's partition, or None."""
    from rotation_platform.storage.errors import StorageNotFoundError

    def read(asset: str, session) -> object:
        try:
            return store.read(storage_key((asset,)), Partition.multi({"pool": pool, "session": str(session.date())}))
        except StorageNotFoundError:
            return None

    return read


def chain_groups(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource,
                 selected: set[str]) -> tuple[list[tuple[str, PoolRun, object, list[str]]], dict[str, str]]:
    """``(pool, run, sessions, keys)`` for each pool of the run, and per pool how its upstream was obtained:
    a target alone reads the stored upstream values when they are current (:class:`TargetFromStored`),
    anything else computes the chain (:class:`PoolRun`)."""
    config = platform.config
    groups, how = [], {}
    store = storage.open_store() if selected == {"target_portfolio"} else None
    try:
        for pool, sessions, keys in run_groups(context):
            run: PoolRun | None = None
            how[pool] = "computed in this run"
            if store is not None:
                stored = TargetFromStored(config, pool, sessions, read=_stored_reader(store, pool))
                try:
                    stored.upstream  # noqa: B018 - reads and checks the stored values now
                    run = stored
                    how[pool] = "stored " + ", ".join(UPSTREAM_ASSETS)
                except StaleUpstream as exc:
                    how[pool] = f"computed: {exc}"
                    context.log.info(f"{pool}: the target's upstream is computed, not read: {exc}")
            groups.append((pool, run or PoolRun(config, pool, sessions), sessions, keys))
    finally:
        if store is not None:
            store.close()
    return groups, how


def _blocked(event: object) -> bool:
    return (isinstance(event, dg.AssetCheckEvaluation) and not event.passed and event.blocking
            and event.severity == dg.AssetCheckSeverity.ERROR)


@dg.multi_asset(
    name="pool_chain",
    outs=OUTS,
    check_specs=CHECKS,
    deps=[MARKET_DATA_DEP],  # the session's stored bars (read with data.history: store)
    internal_asset_deps={name: {dg.AssetKey(up)} if up else {dg.AssetKey(MARKET_DATA)} for name, up in UPSTREAM.items()},
    can_subset=True,
    pool=STORE_POOL,  # the instance's concurrency pool: steps writing the stores at once (deploy/dagster.yaml)
    partitions_def=pool_session_partitions,
    backfill_policy=SINGLE_RUN,
    description="One pool's chain for its sessions: prices, factors, screen, walk-forward, backtest, capacity and "
                "the target portfolio, computed once per run.",
)
def pool_chain(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
    with step_logs(context):  # run, step, pool and session on every log record of the step
        yield from _chain(context, platform, storage)


def _chain(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
    selected = _selected(context)
    groups, how = chain_groups(context, platform, storage, selected)
    for names, emit in _EMITTERS:
        if not selected.intersection(names):
            continue
        kwargs = {"storage": storage} if "target_portfolio" in names else {}
        blocked = False
        asset = asset_key_of(context, names[0]).to_user_string()
        for event in iterate_with(emit(context, platform, groups, **kwargs), asset=asset):  # the asset on its records
            if isinstance(event, dg.Output) and event.output_name == "target_portfolio":
                for pool, _, _, keys in groups:  # what the target was decided from, after what it shows
                    context.add_asset_metadata({"upstream": dg.MetadataValue.text(how[pool])},
                                               asset_key=asset_key_of(context, "target_portfolio"),
                                               partition_key=keys[-1])
            blocked = blocked or _blocked(event)
            yield event
        if blocked:  # a blocking check failed: nothing after this asset is computed (Dagster fails the step)
            later = [n for n in ORDER[ORDER.index(names[-1]) + 1:] if n in selected]
            if later:
                context.log.error(f"a blocking check of {names[0]} failed: {', '.join(later)} not computed")
            return


CHAIN_ASSETS = [pool_chain]
