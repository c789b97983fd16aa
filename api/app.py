"""The FastAPI application: ``create_app(config_path=None)``.

Routes (docs/api.md): ``/health``, ``/ready``, ``/metrics`` without a key; under ``/v1`` with an API key
(``Authorization: Bearer rk_...`` or ``X-API-Key``) and its role -- ``viewer``: metrics, verdicts,
findings, snapshots; ``trader``: + orders; ``admin``: + ``POST /v1/runs``. OpenAPI docs at ``/docs``.
Every request with a key takes a token from the key's bucket (429 + ``Retry-After`` when empty); every
orders read and every launch -- allowed or refused -- is appended to the audit log.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, Field

from api.audit import AuditLog
from api.keys import ApiKey, KeyStore, role_allows
from api.ratelimit import TokenBuckets
from api.settings import ApiSettings
from api.views import AnswerCache

__all__ = ["create_app", "AppState"]

log = logging.getLogger("api")
AUDITED = ("/v1/pools/{pool}/orders", "/v1/runs")
SESSION_RE = r"^\d{4}-\d{2}-\d{2}$"


@dataclass
class AppState:
    config: Any
    config_path: str
    settings: ApiSettings
    store: Any
    instance: Any
    keys: KeyStore
    audit: AuditLog
    buckets: TokenBuckets
    answers: Any = None  # views.AnswerCache of the orders answers (JSON bytes; at most 1 s old)
    orders_stored: Any = None  # views.AnswerCache of their stored values' part (while those are unchanged)
    local_store: bool = False  # the embedded files: stats are cheap enough for the event loop
    check_keys: dict = field(default_factory=dict)
    run_end_keys: dict = field(default_factory=dict)
    jobs: dict = field(default_factory=dict)


def _instance():
    import dagster as dg

    root = Path(__file__).resolve().parents[1]
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(root / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        import shutil

        shutil.copy(root / "configs" / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.get()


#: the pool chain's steps, in order (the fuses are listed in this order, then by name)
STEPS = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest", "capacity_report",
         "target_portfolio")


def definition_check_keys(config_path: str) -> list:
    """Every asset check of the Dagster definitions (the composition root, ``definitions.py``) built from
    ``config_path``: the fuses whose evaluations the verdicts read."""
    import importlib
    import sys

    from api.settings import without_api_env

    with without_api_env():  # importing the Dagster layer loads the environment's platform config
        saved = os.environ.get("ROTATION_CONFIG")
        os.environ["ROTATION_CONFIG"] = config_path
        try:
            module = sys.modules.get("definitions") or importlib.import_module("definitions")
            keys = module.defs.resolve_asset_graph().asset_check_keys
        finally:
            if saved is None:
                os.environ.pop("ROTATION_CONFIG", None)
            else:
                os.environ["ROTATION_CONFIG"] = saved
    order = {step: i for i, step in enumerate(STEPS)}
    return sorted(keys, key=lambda k: (order.get(k.asset_key.path[-1], len(order)), k.asset_key.to_user_string(),
                                       k.name))


def build_state(config_path: str | None = None, *, instance=None, env=None) -> AppState:
    from api.settings import platform_env
    from rotation_platform.config import default_config_path, load_config
    from rotation_platform.storage import RetryPolicy, open_store
    from rotation_platform.storage.provenance import RUN_END_ASSET

    path = str(Path(config_path or default_config_path()).resolve())
    config = load_config(path, env=platform_env(env))
    check_keys = definition_check_keys(path)
    from assets.partitions import group_of
    settings = ApiSettings.from_env(config.storage.data_dir, env)
    store = open_store(config.storage, retry=RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0))
    from rotation_platform.storage.files import FileStore

    state = AppState(config=config, config_path=path, settings=settings, store=store,
                     local_store=isinstance(store, FileStore),
                     instance=instance if instance is not None else _instance(),
                     keys=KeyStore(settings.keys_file, settings.pepper), audit=AuditLog(settings.audit_log),
                     buckets=TokenBuckets(settings.rate, settings.burst), answers=AnswerCache(ttl=1.0),
                     orders_stored=AnswerCache(ttl=float("inf")))
    for pool in config.pool_names:
        group = group_of(config, pool)
        mine = {group.key(step) for step in STEPS}
        state.check_keys[pool] = [k for k in check_keys if k.asset_key in mine]
        state.run_end_keys[pool] = group.key(RUN_END_ASSET)
        state.jobs[pool] = "daily" if group.main else group.daily_job
    return state


def presented_key(headers) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    header = headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else headers.get("x-api-key")


ORDERS_PATH = re.compile(r"/v1/pools/([^/]+)/orders")
ORDERS_QUERY = re.compile(rb"(?:session=(\d{4}-\d{2}-\d{2}))?")


class KeptOrders:
    """Answers an orders read whose answer is kept (:class:`~api.views.AnswerCache`) before the framework
    sees it: the same checks as the route -- a valid key of a trader or admin, the pool's latest session
    or the one asked for, the stored values unchanged (:func:`~api.views.stored_version`), a token of the
    key's bucket -- and the same bytes and headers. Everything else (no kept answer, any refusal, an
    unusual query string, a database store) goes on to the route, which answers it as before; nothing is
    taken from the key's bucket unless the answer is given here. The audit line and the metrics are
    :class:`Observe`'s, outside this."""

    def __init__(self, app, state: AppState, route, lookup):
        self.app, self.state, self.route, self.lookup = app, state, route, lookup

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and self.state.local_store:
            match = ORDERS_PATH.fullmatch(scope["path"])
            query = ORDERS_QUERY.fullmatch(scope["query_string"]) if match else None
            if query is not None:
                body = self._kept(scope, match.group(1), query.group(1))
                if body is not None:
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def _kept(self, scope, pool: str, session: bytes | None) -> bytes | None:
        from starlette.datastructures import Headers

        state = self.state
        key = state.keys.verify(presented_key(Headers(scope=scope)))
        if key is None or not role_allows(key.role, "trader"):
            return None
        try:
            day, version = self.lookup(pool, session.decode() if session else None)
        except Exception:  # noqa: BLE001 - the route answers it (404, 400, 503)
            return None
        body = state.answers.get((pool, day), version)
        if body is None or state.buckets.take(key.id) > 0:
            return None
        scope["route"] = self.route  # what Observe labels and audits the request by
        scope.setdefault("state", {})["api_key"] = key
        return body


class Observe:
    """Counts and times every request (``requests_total``, ``latency`` by route) and appends the audited
    routes' requests to the audit log before their answer leaves: the answer's start is held until its
    audit line is synced (:meth:`AuditLog.arecord`, on the event loop). A plain ASGI middleware: no task
    or stream per request."""

    def __init__(self, app, state: AppState, requests_total, latency):
        self.app, self.state, self.requests_total, self.latency = app, state, requests_total, latency

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]
        audited = [False]

        async def audit(code: int) -> None:
            route = getattr(scope.get("route"), "path", None)
            if route not in AUDITED or audited[0]:
                return
            audited[0] = True
            extra = scope.get("state") or {}
            key: ApiKey | None = extra.get("api_key")
            client = scope.get("client")
            request = Request(scope)
            await self.state.audit.arecord(key_id=key.id if key else None, role=key.role if key else None,
                                           method=scope["method"], path=scope["path"],
                                           query=dict(request.query_params), status=code,
                                           client=client[0] if client else None, run_ids=extra.get("run_ids"))

        async def observed_send(message):
            if message["type"] == "http.response.start":
                await audit(message["status"])  # raises when the line cannot be synced: answered 500
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.requests_total.labels(route, scope["method"], str(status[0])).inc()
            self.latency.labels(route).observe(time.perf_counter() - t0)
            if not audited[0]:  # the app raised before it answered: recorded as the 500 it becomes
                await audit(status[0])


class Problem(BaseModel):
    detail: str = Field(description="what went wrong and what to do")


class LaunchProblem(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="Dagster's reason, or the fields that failed validation")


#: the error answers each route can give, declared in the OpenAPI spec (``responses=``)
_ERRORS = {400: "a session that is not a date or not a session of the pool's calendar",
           401: "no key, or an unknown, forged or revoked key", 403: "the key's role is too low",
           404: "an unknown pool, or nothing stored for the session", 429: "the key's rate limit (Retry-After)",
           503: "the store (or, for launches, the Dagster webserver) did not answer"}


def errors(*codes: int) -> dict[int, dict[str, Any]]:
    return {c: {"model": Problem, "description": _ERRORS[c]} for c in codes}


class Alive(BaseModel):
    status: str = Field(description="alive", examples=["alive"])


class LaunchRequest(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"pool": "A_SHARE", "sessions": ["2024-12-31"]}]}}

    pool: str = Field(description="the pool to run")
    sessions: list[str] = Field(min_length=1, max_length=2000,
                                description="one session (a run) or several (one single-run backfill over "
                                            "the range from the first to the last), YYYY-MM-DD")


def create_app(config_path: str | None = None, *, instance=None, env=None) -> FastAPI:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from api import views
    from api.health import readiness
    from api.launch import LaunchError, launch, launch_params
    from api.metrics import api_registry
    from rotation_platform.storage.errors import StorageError, StorageNotFoundError

    state = build_state(config_path, instance=instance, env=env)
    registry, requests_total, latency = api_registry(state)
    @asynccontextmanager
    async def lifespan(_app):
        # what is loaded by now (Dagster, pandas, the definitions: some 400,000 objects) lives as long as the
        # process: kept out of the collector's full passes, which otherwise stop every request for a quarter
        # of a second a few times a minute under load (docs/api.md, "Load")
        gc.freeze()
        yield
        gc.unfreeze()
        try:  # the store's connections go with the process
            state.store.close()
        except Exception:  # noqa: BLE001
            log.warning("closing the store failed", exc_info=False)

    app = FastAPI(title="Rotation platform API", version="1", lifespan=lifespan,
                  description="Tomorrow's orders, metrics, fuse verdicts, quality findings and snapshots of the "
                              "stored results (read-only), and run launches. Keys and roles: docs/api.md.")
    app.state.platform = state

    # declared for the OpenAPI spec (its security schemes); the headers are read below
    bearer_scheme = HTTPBearer(auto_error=False, description="Authorization: Bearer rk_<id>_<secret>")
    header_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="the key itself")

    def require(role: str):
        # on the event loop: the key file is stat'ed (read again only when it changed) and one HMAC computed
        async def dependency(request: Request, _bearer=Security(bearer_scheme),
                             _header=Security(header_scheme)) -> ApiKey:
            key = state.keys.verify(presented_key(request.headers))
            if key is None:
                raise HTTPException(401, "missing, unknown or revoked API key; send Authorization: Bearer <key>",
                                    headers={"WWW-Authenticate": "Bearer"})
            request.state.api_key = key
            wait = state.buckets.take(key.id)
            if wait > 0:
                raise HTTPException(429, f"rate limit of key {key.id}: {state.settings.rate:g}/s, burst "
                                         f"{state.settings.burst:g}", headers={"Retry-After": state.buckets.retry_after(wait)})
            if not role_allows(key.role, role):
                raise HTTPException(403, f"key {key.id} has role {key.role}; this needs {role}")
            return key
        return Depends(dependency)

    @app.exception_handler(views.NotFound)
    async def not_found(_, exc):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StorageNotFoundError)
    async def not_stored(_, exc):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StorageError)
    async def store_down(_, exc):
        return JSONResponse({"detail": f"the store did not answer: {type(exc).__name__}"}, status_code=503)

    @app.exception_handler(ValueError)
    async def bad_input(_, exc):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def resolve(pool: str, session: str | None, asset: str) -> str:
        return views.resolve_session(state.config, state.store, pool, session, asset)

    def judged(pool: str, session: str) -> dict:
        return views.pool_state(state.config, state.store, pool, session, instance=state.instance,
                                run_end_key=state.run_end_keys[pool])

    def checks(pool: str, session: str) -> list[dict]:
        return views.check_evaluations(state.instance, state.check_keys[pool], pool, session)

    session_q = Query(None, pattern=SESSION_RE, description="YYYY-MM-DD (default: the latest stored session)")

    # ------------------------------------------------------------------------------------- unauthenticated
    @app.get("/health", tags=["health"], response_model=Alive)
    async def health() -> dict:
        return {"status": "alive"}

    @app.get("/ready", tags=["health"], responses={200: {"description": "every required component is up"},
                                                   503: {"description": "a required component is down"}})
    def ready():
        ok, body = readiness(state.config, state.store, state.instance, state.settings)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------------------------- viewer
    @app.get("/v1/pools", tags=["pools"], responses=errors(401, 403, 429, 503))
    def pools(_: ApiKey = require("viewer")) -> dict:
        return {"pools": [{"pool": p.name, "calendar": p.calendar, "currency": state.config.pool_currency(p.name),
                           "sessions": len(views.stored_sessions(state.store, "target_portfolio", p.name))}
                          for p in state.config.pools]}

    @app.get("/v1/pools/{pool}/metrics", tags=["pools"], responses=errors(400, 401, 403, 404, 429, 503))
    def pool_metrics(pool: str, session: str | None = session_q, _: ApiKey = require("viewer")) -> dict:
        day = resolve(pool, session, "backtest")
        return views.metrics_view(state.config, state.store, pool, day, judged(pool, day))

    @app.get("/v1/pools/{pool}/verdicts", tags=["pools"], responses=errors(400, 401, 403, 404, 429, 503))
    def pool_verdicts(pool: str, session: str | None = session_q, _: ApiKey = require("viewer")) -> dict:
        day = resolve(pool, session, "prices")
        return views.clean(views.verdicts_view(state.config, state.store, state.instance, state.check_keys[pool],
                                               pool, day, judged(pool, day)))

    @app.get("/v1/pools/{pool}/findings", tags=["pools"], responses=errors(400, 401, 403, 404, 429, 503))
    def pool_findings(pool: str, session: str | None = session_q, _: ApiKey = require("viewer")) -> dict:
        day = resolve(pool, session, "prices")
        return views.findings_view(state.config, state.store, pool, day, judged(pool, day), checks(pool, day))

    @app.get("/v1/snapshots", tags=["snapshots"], responses=errors(401, 403, 429))
    def snapshots(_: ApiKey = require("viewer")) -> dict:
        return views.snapshots_view(state.config)

    @app.get("/v1/snapshots/{session}/verify", tags=["snapshots"], responses=errors(400, 401, 403, 404, 429))
    def verify(session: str = PathParam(pattern=SESSION_RE, description="YYYY-MM-DD"),
               _: ApiKey = require("viewer")) -> dict:
        if pd.isna(pd.to_datetime(session, format="%Y-%m-%d", errors="coerce")):
            raise ValueError(f"session={session!r} is not a date; give YYYY-MM-DD")
        return views.verify_snapshot(state.config, session)

    # ------------------------------------------------------------------------------------------- trader
    def orders_version(pool: str, session: str | None) -> tuple[str, tuple | None]:
        day = resolve(pool, session, "target_portfolio")
        return day, views.stored_version(state.store, pool, day)

    def orders_answer(pool: str, day: str, version: tuple | None) -> bytes:
        # the stored values' part is kept while they are unchanged (no time limit); the fuse verdicts and the
        # pool's state are read from the instance again for every answer made (at most once a second)
        made = time.monotonic()
        stored = state.orders_stored.get((pool, day), version)
        if stored is None:
            stored = views.orders_stored(state.store, pool, day)
            state.orders_stored.put((pool, day), version, stored, made)
        return views.encode_json(views.orders_judged(stored, judged(pool, day), checks(pool, day)))

    @app.get("/v1/pools/{pool}/orders", tags=["orders"], response_model=dict[str, Any],
             responses=errors(400, 401, 403, 404, 429, 503))
    async def orders(pool: str, session: str | None = session_q, _: ApiKey = require("trader")) -> Response:
        # the files' identities are checked on the event loop (a few stats, no decoding); a database
        # store's in a worker thread
        if state.local_store:
            day, version = orders_version(pool, session)
        else:
            day, version = await run_in_threadpool(orders_version, pool, session)
        # the same stored values and, within a second, the same instance: the answer made for them
        body = await state.answers.aget_or_make((pool, day), version,
                                                lambda: run_in_threadpool(orders_answer, pool, day, version))
        return Response(body, media_type="application/json")

    # the middleware: Observe outermost (every request counted and, where due, audited), then the kept
    # orders answers (add_middleware puts the last one added outside)
    orders_route = next(r for r in app.routes if getattr(r, "path", None) == "/v1/pools/{pool}/orders")
    app.add_middleware(KeptOrders, state=state, route=orders_route, lookup=orders_version)
    app.add_middleware(Observe, state=state, requests_total=requests_total, latency=latency)

    # -------------------------------------------------------------------------------------------- admin
    @app.post("/v1/runs", tags=["runs"], status_code=201,
              responses={**errors(400, 401, 403, 404, 429, 503),
                         422: {"model": LaunchProblem, "description": "an invalid body, or Dagster refused the launch"},
                         502: {"model": Problem, "description": "the Dagster webserver answered an error"}})
    def launch_run(body: LaunchRequest, request: Request, key: ApiKey = require("admin")) -> dict:
        if body.pool not in state.config.pool_names:
            raise views.NotFound(f"no pool {body.pool!r}; the configured pools are {', '.join(state.config.pool_names)}")
        from rotation_platform.calendars import get_calendar

        cal = get_calendar(state.config.pool(body.pool).calendar)
        days = []
        for s in body.sessions:
            t = pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")
            if pd.isna(t) or not cal.is_session(t):
                raise ValueError(f"sessions: {s!r} is not a {cal.code} session (pool {body.pool}); give YYYY-MM-DD")
            days.append(str(t.date()))
        days = sorted(set(days))
        if len(days) > 1 and len(cal.sessions(pd.Timestamp(days[0]), pd.Timestamp(days[-1]))) != len(days):
            raise ValueError(f"sessions {days[0]}..{days[-1]} leave out sessions of {cal.code}; a backfill is one "
                             "contiguous range: give every session from the first to the last")
        params = launch_params(state.settings.dagster_location, state.jobs[body.pool], body.pool, days,
                               {"rotation/launched_by": f"api:{key.id}"})
        try:
            run = launch(state.settings.dagster_url, params)
        except LaunchError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        request.state.run_ids = [run["run_id"]]
        return {"pool": body.pool, "sessions": days, "job": state.jobs[body.pool], **run}

    return app
