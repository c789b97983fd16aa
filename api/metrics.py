"""Prometheus metrics (``/metrics``, text format) from the stored results, collected at scrape time
(cached ``CACHE_SECONDS``), and the API's own request counts and latencies.

Per pool (label ``pool``):

======================================================  ==========================================
``rotation_data_sessions_behind``                       last closed session minus the latest stored
``rotation_data_latest_session_timestamp_seconds``      the latest stored prices session (midnight UTC)
``rotation_pool_status{status}``                        1 for the latest target's state (ok/stale/failed/missing)
``rotation_factor_coverage``                            mean factor coverage of the latest screen
``rotation_effective_factors``                          factors selected by the latest screen
``rotation_fuse_passed{asset,check,severity}``          1 passed / 0 failed, latest evaluation
``rotation_strategy_sharpe`` / ``_max_drawdown``        the live strategy's, latest backtest
``rotation_capacity_utilisation``                       the largest ADV utilisation of the book
``rotation_target_published_timestamp_seconds``         when the latest target was stored (instance)
``rotation_target_session_timestamp_seconds``           the session of the latest stored target
``rotation_target_sessions_behind``                     last closed session minus the latest target's
``rotation_target_due_timestamp_seconds``               close of the last closed session + the publish
                                                        deadline (``ROTATION_API_PUBLISH_DEADLINE_MIN``)
======================================================  ==========================================

Besides: ``rotation_dagster_failed_runs_24h`` (runs of the instance that failed in the last 24 hours),
``rotation_store_up`` (1/0) with ``rotation_store_check_seconds``, ``rotation_metrics_collect_errors_total``,
``rotation_api_requests_total{route,method,status}`` and ``rotation_api_request_duration_seconds{route}``.
"""

from __future__ import annotations

import logging
import threading
import time

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

__all__ = ["StoredResultsCollector", "api_registry", "CACHE_SECONDS"]

log = logging.getLogger(__name__)
CACHE_SECONDS = 5.0


def _ts(day: str) -> float:
    return pd.Timestamp(day, tz="UTC").timestamp()


class StoredResultsCollector:
    def __init__(self, app_state):
        self.state = app_state
        self._lock = threading.Lock()
        self._cached: tuple[float, list] | None = None
        self.errors = 0

    def collect(self):
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_SECONDS:
                self._cached = (time.monotonic(), self._families())
            families = self._cached[1]
        yield from families

    def _families(self) -> list:
        from api.health import freshness
        from api.views import stored_sessions
        from rotation_platform.storage.health import check_storage

        s = self.state
        config = s.config
        up = GaugeMetricFamily("rotation_store_up", "1 when every server of the configured store answers",
                               labels=["backend"])
        took = GaugeMetricFamily("rotation_store_check_seconds", "time the store health check took",
                                 labels=["backend"])
        t0 = time.perf_counter()
        statuses = check_storage(config.storage)
        ok = all(x.ok for x in statuses)
        up.add_metric([config.storage.backend], 1.0 if ok else 0.0)
        took.add_metric([config.storage.backend], time.perf_counter() - t0)
        fams = [up, took]
        errors = GaugeMetricFamily("rotation_metrics_collect_errors", "pools whose stored results could not be read "
                                   "at the last collection", labels=["pool"])
        if not ok:
            fams.append(errors)
            return fams
        behind = GaugeMetricFamily("rotation_data_sessions_behind", "sessions between the latest stored prices and "
                                   "the calendar's last closed session", labels=["pool"])
        latest = GaugeMetricFamily("rotation_data_latest_session_timestamp_seconds",
                                   "the latest stored prices session", labels=["pool"])
        status = GaugeMetricFamily("rotation_pool_status", "1 for the state of the pool's latest stored target",
                                   labels=["pool", "status"])
        coverage = GaugeMetricFamily("rotation_factor_coverage", "mean factor coverage of the latest screen",
                                     labels=["pool"])
        effective = GaugeMetricFamily("rotation_effective_factors", "factors selected by the latest screen",
                                      labels=["pool"])
        fuse = GaugeMetricFamily("rotation_fuse_passed", "1 passed, 0 failed: the latest evaluation of a fuse for "
                                 "the pool's latest target session", labels=["pool", "asset", "check", "severity"])
        sharpe = GaugeMetricFamily("rotation_strategy_sharpe", "Sharpe ratio of the live strategy", labels=["pool"])
        mdd = GaugeMetricFamily("rotation_strategy_max_drawdown", "maximum drawdown of the live strategy (negative)",
                                labels=["pool"])
        util = GaugeMetricFamily("rotation_capacity_utilisation", "largest ADV utilisation of the book",
                                 labels=["pool"])
        published = GaugeMetricFamily("rotation_target_published_timestamp_seconds",
                                      "when the latest target portfolio was stored", labels=["pool"])
        target_day = GaugeMetricFamily("rotation_target_session_timestamp_seconds",
                                       "the session of the latest stored target portfolio", labels=["pool"])
        behind_t = GaugeMetricFamily("rotation_target_sessions_behind", "sessions between the latest stored target "
                                     "and the calendar's last closed session", labels=["pool"])
        due = GaugeMetricFamily("rotation_target_due_timestamp_seconds", "when the target of the last closed "
                                "session is due: its close plus the publish deadline", labels=["pool"])
        failed_runs = GaugeMetricFamily("rotation_dagster_failed_runs_24h", "runs recorded in the Dagster instance "
                                        "that failed in the last 24 hours")
        store = s.store
        fresh = freshness(config, store)
        from rotation_platform.calendars import get_calendar

        for pool in config.pools:
            f = fresh[pool.name]
            cal = get_calendar(pool.calendar)
            close = cal.session_close(f["expected"])
            due.add_metric([pool.name], close.timestamp() + 60.0 * s.settings.publish_deadline_min)
            days = stored_sessions(store, "target_portfolio", pool.name)
            if days:
                last, exp = pd.Timestamp(days[-1]), pd.Timestamp(f["expected"])
                behind_t.add_metric([pool.name], 0.0 if last >= exp else float(len(cal.sessions(last, exp)) - 1))
        try:
            import dagster as dg

            failed_runs.add_metric([], float(s.instance.get_runs_count(dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE], updated_after=pd.Timestamp.now(tz="UTC").to_pydatetime()
                - pd.Timedelta(hours=24)))))
        except Exception as exc:  # noqa: BLE001 - reported as a missing series
            log.warning("metrics: the instance's runs could not be counted: %s", type(exc).__name__)
        for pool, f in fresh.items():
            if f["sessions_behind"] is not None:
                behind.add_metric([pool], float(f["sessions_behind"]))
                latest.add_metric([pool], _ts(f["latest"]))
        for pool in config.pool_names:
            try:
                self._pool(pool, store, stored_sessions, status, coverage, effective, fuse, sharpe, mdd, util,
                           published, target_day)
            except Exception as exc:  # noqa: BLE001 - one pool's unreadable value must not hide the others
                self.errors += 1
                errors.add_metric([pool], 1.0)
                log.warning("metrics: pool %s not collected: %s: %s", pool, type(exc).__name__, exc)
        fams += [behind_t, due, failed_runs, behind, latest, status, coverage, effective, fuse, sharpe, mdd, util, published, target_day, errors]
        return fams

    def _pool(self, pool, store, stored_sessions, status, coverage, effective, fuse, sharpe, mdd, util, published,
              target_day):
        from api.views import _read, check_evaluations, pool_state

        s = self.state
        days = stored_sessions(store, "target_portfolio", pool)
        if not days:
            status.add_metric([pool, "missing"], 1.0)
            return
        day = days[-1]
        target_day.add_metric([pool], _ts(day))
        state = pool_state(s.config, store, pool, day, instance=s.instance, run_end_key=s.run_end_keys[pool])
        for name in ("ok", "stale", "failed", "missing"):
            status.add_metric([pool, name], 1.0 if state["status"] == name else 0.0)
        screen = _read(store, "factor_screen", pool, day)
        if isinstance(screen, pd.DataFrame) and len(screen):
            coverage.add_metric([pool], float(screen["coverage"].mean()))
            effective.add_metric([pool], float(screen["selected"].astype(bool).sum()))
        frame = _read(store, "backtest", pool, day)
        if isinstance(frame, pd.DataFrame) and pd.Timestamp(day) in frame.index:
            row = frame.loc[pd.Timestamp(day)]
            sharpe.add_metric([pool], float(row["sharpe"]))
            mdd.add_metric([pool], float(row["max_drawdown"]))
            from api.views import _capacity

            cap = _capacity(_read(store, "capacity_report", pool, day), frame, day)
            if cap is not None and cap.get("max_utilisation") is not None:
                util.add_metric([pool], float(cap["max_utilisation"]))
        for c in check_evaluations(s.instance, s.check_keys[pool], pool, day):
            if c["passed"] is not None:
                fuse.add_metric([pool, c["asset"], c["check"], c["severity"]], 1.0 if c["passed"] else 0.0)
        import dagster as dg

        rec = s.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=s.run_end_keys[pool],
                                                                      asset_partitions=[f"{pool}|{day}"]),
                                                limit=1).records
        if rec:
            published.add_metric([pool], float(rec[0].timestamp))


def api_registry(app_state) -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry(auto_describe=False)
    requests = Counter("rotation_api_requests", "API requests answered", ["route", "method", "status"],
                       registry=registry)
    latency = Histogram("rotation_api_request_duration_seconds", "API request latency", ["route"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
    registry.register(StoredResultsCollector(app_state))
    return registry, requests, latency
