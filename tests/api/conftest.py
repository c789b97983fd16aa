"""The API's tests: the demo configuration's daily runs of 2024-12-31 stored once in a temporary data
folder and Dagster instance (as ``python -m jobs.main --session 2024-12-31`` would), then an app per test
on that store with its own key file and audit log."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from rotation_platform.config import CONFIG_DIR
from tests.orchestration.conftest import ROOT, SESSION, fresh_defs, run_daily, run_summary
from tests.storage_backends.conftest import mysql_server, run_tag  # noqa: F401 - fixtures reused here

DEMO_POOLS = ("A_SHARE", "QDII", "OTHER")


def demo_environment(tmp: Path) -> dict[str, str]:
    return {"ROTATION_CONFIG": str(CONFIG_DIR / "demo.yaml"), "ROTATION_STORAGE__DATA_DIR": str(tmp / "data"),
            "ROTATION_DATA__SYNTHETIC__END": SESSION, "DAGSTER_HOME": str(tmp / "home")}


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Iterator[dict[str, object]]:
    """Every demo pool's daily run of 2024-12-31 and the session summary and snapshot, stored once."""
    tmp = tmp_path_factory.mktemp("api-demo")
    env = demo_environment(tmp)
    (tmp / "home").mkdir()
    shutil.copy(ROOT / "configs" / "dagster.yaml", tmp / "home" / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        defs = fresh_defs()
        with dg.DagsterInstance.get() as instance:
            for pool in DEMO_POOLS:
                assert run_daily(defs, instance, pool, [SESSION]).success, pool
            assert run_summary(defs, instance, [SESSION]).success
    yield {"tmp": tmp, "env": env, "data": tmp / "data", "home": tmp / "home"}


@pytest.fixture()
def api_env(demo_store, tmp_path, monkeypatch) -> dict[str, str]:
    """The demo store's environment with this test's key file and audit log."""
    env = dict(demo_store["env"])  # type: ignore[arg-type]
    env.update({"ROTATION_API_KEYS_FILE": str(tmp_path / "keys.json"),
                "ROTATION_API_AUDIT_LOG": str(tmp_path / "audit.jsonl")})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("ROTATION_API_PEPPER", "ROTATION_API_RATE", "ROTATION_API_BURST", "ROTATION_API_DAGSTER_URL",
              "ROTATION_API_REQUIRE_DAEMON", "ROTATION_API_MAX_SESSIONS_BEHIND"):
        monkeypatch.delenv(k, raising=False)
    return env


@pytest.fixture()
def make_client(api_env, monkeypatch) -> Iterator[Callable[..., object]]:
    """``make_client(**env)`` -> a TestClient of a new app (``env``: more variables for it)."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    clients = []

    def make(**more: str):
        for k, v in more.items():
            monkeypatch.setenv(k, v)
        client = TestClient(create_app())
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.app.state.platform.store.close()
        c.app.state.platform.instance.dispose()


def add_key(client, role: str, name: str = "test") -> tuple[str, str]:
    """A new key of ``role`` in the app's key file: (id, full key)."""
    key, text = client.app.state.platform.keys.add(name, role)
    return key.id, text


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def stub_graphql(run_prefix: str = "run-") -> Iterator[tuple[str, list[dict]]]:
    """A stand-in for the Dagster webserver's GraphQL endpoint on a free loopback port: every ``launchRun``
    of the job ``daily`` succeeds with a queued run ``<run_prefix><n>``, any other job is not found. Yields
    its URL and what it was sent (each request's path and body, in order)."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            seen.append({"path": self.path, **body})
            answer = {"data": {"launchRun": {"__typename": "LaunchRunSuccess",
                                             "run": {"runId": f"{run_prefix}{len(seen)}", "status": "QUEUED"}}}}
            if body["variables"]["executionParams"]["selector"]["jobName"] != "daily":
                answer = {"data": {"launchRun": {"__typename": "PipelineNotFoundError", "message": "no such job"}}}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def wait_until(probe: Callable[[], object], what: str, seconds: float = 60.0):
    """``probe()``'s first true answer, asked every 0.3 s; fails naming ``what`` after ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what} within {seconds:.0f}s")
