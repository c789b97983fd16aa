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

Runs and steps, from the instance's run records. Every one has the label ``dagster_job`` (``job`` is the
label Prometheus gives the scrape job); ``pool`` is the run's pool, empty for a job of all pools:

======================================================  ==========================================
``rotation_dagster_failed_runs_24h``                    runs that failed in the last 24 hours (no label)
``rotation_dagster_runs_24h{status}``                   runs that ended in the last 24 hours, by status
``rotation_dagster_run_retries_24h``                    of those, runs that were retries of a failed run
``rotation_dagster_run_duration_seconds{pool}``         start to end of the latest ended run
``rotation_dagster_step_duration_seconds{pool,step}``   each step of that run
``rotation_dagster_step_failures_24h{step}``            steps that failed in runs ended in the last 24 hours
``rotation_dagster_step_retries_24h{step}``             step attempts beyond the first in those runs
======================================================  ==========================================

The store layer, summed over the API and every run that left its counts in ``<data_dir>/.stats``
(:mod:`rotation_platform.storage.stats`; labels ``backend`` -- ``local``, ``influxdb``, ``mysql``,
``redis`` -- and ``op`` -- ``read``, ``write``, ``delete``): ``rotation_store_operations_total``,
``rotation_store_operation_seconds`` (histogram), ``rotation_store_bytes_total``,
``rotation_store_errors_total``; ``rotation_cache_hits_total`` and ``rotation_cache_misses_total``.

Besides: ``rotation_store_up`` (1/0) with ``rotation_store_check_seconds``, ``rotation_metrics_collect_errors``,
``rotation_api_requests_total{route,method,status}`` and ``rotation_api_request_duration_seconds{route}``.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

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
        self._steps: dict[str, list] = {}  # the step stats of ended runs (they do not change)

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
        fams = [up, took, *self._store_stats(config)]
        try:
            fams += self._runs()
        except Exception as exc:  # noqa: BLE001 - reported as missing series
            log.warning("metrics: the instance's run records could not be read: %s", type(exc).__name__)
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


    def _store_stats(self, config) -> list:
        from pathlib import Path

        from rotation_platform.storage import stats

        got = stats.totals(Path(config.storage.data_dir) / ".stats")
        labels = ["backend", "op"]
        ops = CounterMetricFamily("rotation_store_operations", "store calls (a window read is one)", labels=labels)
        secs = HistogramMetricFamily("rotation_store_operation_seconds", "time of a store call", labels=labels)
        nbytes = CounterMetricFamily("rotation_store_bytes", "bytes read or written by store calls, as the "
                                     "backend counts them (files, answers, sent batches, cache entries)",
                                     labels=labels)
        errors = CounterMetricFamily("rotation_store_errors", "store calls that failed (a missing partition is "
                                     "not a failure)", labels=labels)
        for key, op in sorted(got["ops"].items()):
            backend, name = key.split("|", 1)
            ops.add_metric([backend, name], op["count"])
            nbytes.add_metric([backend, name], op["bytes"])
            errors.add_metric([backend, name], op["errors"])
            cumulative, buckets = 0, []
            for le, n in zip([*stats.BUCKETS, float("inf")], op["buckets"]):
                cumulative += n
                buckets.append(("+Inf" if le == float("inf") else repr(le), cumulative))
            secs.add_metric([backend, name], buckets, op["seconds"])
        hits = CounterMetricFamily("rotation_cache_hits", "cache lookups answered by Redis")
        misses = CounterMetricFamily("rotation_cache_misses", "cache lookups Redis could not answer")
        hits.add_metric([], got["cache"]["hits"])
        misses.add_metric([], got["cache"]["misses"])
        return [ops, secs, nbytes, errors, hits, misses]

    def _runs(self) -> list:
        import dagster as dg

        s = self.state
        since = time.time() - 24 * 3600
        ended = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
        records = s.instance.get_run_records(filters=dg.RunsFilter(
            statuses=ended, updated_after=datetime.datetime.fromtimestamp(since, tz=datetime.timezone.utc)), limit=1000)
        runs = GaugeMetricFamily("rotation_dagster_runs_24h", "runs that ended in the last 24 hours",
                                 labels=["dagster_job", "status"])
        retried = GaugeMetricFamily("rotation_dagster_run_retries_24h", "runs that ended in the last 24 hours "
                                    "and were retries of a failed run", labels=["dagster_job"])
        run_s = GaugeMetricFamily("rotation_dagster_run_duration_seconds", "start to end of the latest ended run",
                                  labels=["dagster_job", "pool"])
        step_s = GaugeMetricFamily("rotation_dagster_step_duration_seconds", "the step's time in the latest ended "
                                   "run", labels=["dagster_job", "pool", "step"])
        step_failed = GaugeMetricFamily("rotation_dagster_step_failures_24h", "steps that failed in runs that ended "
                                        "in the last 24 hours", labels=["dagster_job", "step"])
        step_retries = GaugeMetricFamily("rotation_dagster_step_retries_24h", "step attempts beyond the first in "
                                         "runs that ended in the last 24 hours", labels=["dagster_job", "step"])
        counts: dict[tuple[str, str], int] = {}
        retries: dict[str, int] = {}
        failures: dict[tuple[str, str], int] = {}
        attempts: dict[tuple[str, str], int] = {}
        latest: dict[tuple[str, str], object] = {}
        pools = set(s.config.pool_names)
        for rec in records:  # newest first
            run = rec.dagster_run
            if rec.end_time is None or rec.end_time < since:
                continue
            job = run.job_name
            counts[(job, run.status.value)] = counts.get((job, run.status.value), 0) + 1
            if run.tags.get("dagster/retry_number") or run.tags.get("dagster/parent_run_id"):
                retries[job] = retries.get(job, 0) + 1
            head = (run.tags.get("dagster/partition") or "").split("|", 1)[0]
            pool = head if head in pools else ""
            steps = self._steps.get(run.run_id)
            if steps is None:
                steps = self._steps[run.run_id] = list(s.instance.get_run_step_stats(run.run_id))
            for st in steps:
                key = (job, st.step_key)
                if st.status is not None and st.status.value == "FAILURE":
                    failures[key] = failures.get(key, 0) + 1
                attempts[key] = attempts.get(key, 0) + max(0, (st.attempts or 1) - 1)
            if (job, pool) not in latest and rec.start_time is not None:
                latest[(job, pool)] = (rec, steps)
        live = {rec.dagster_run.run_id for rec in records}
        for run_id in [r for r in self._steps if r not in live]:
            del self._steps[run_id]
        for (job, status), n in sorted(counts.items()):
            runs.add_metric([job, status], float(n))
        for job in sorted({job for job, _ in counts}):
            retried.add_metric([job], float(retries.get(job, 0)))
        for (job, pool), (rec, steps) in sorted(latest.items()):
            run_s.add_metric([job, pool], float(rec.end_time - rec.start_time))
            for st in steps:
                if st.start_time is not None and st.end_time is not None:
                    step_s.add_metric([job, pool, st.step_key], float(st.end_time - st.start_time))
        for key in sorted(attempts):
            step_failed.add_metric(list(key), float(failures.get(key, 0)))
            step_retries.add_metric(list(key), float(attempts[key]))
        return [runs, retried, run_s, step_s, step_failed, step_retries]


def api_registry(app_state) -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry(auto_describe=False)
    requests = Counter("rotation_api_requests", "API requests answered", ["route", "method", "status"],
                       registry=registry)
    latency = Histogram("rotation_api_request_duration_seconds", "API request latency", ["route"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
    registry.register(StoredResultsCollector(app_state))
    return registry, requests, latency
