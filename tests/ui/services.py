"""Start the Dagster webserver (and daemon) for a test on its own port and instance; GraphQL helpers.

Each process is started in its own process group and stopped by that group's id, so the code servers and
run workers it spawned stop with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "rotation_platform"
REPOSITORY = "__repository__"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data = json.loads(resp.read())
    if data.get("errors"):
        raise AssertionError(f"GraphQL errors: {data['errors']}")
    return data["data"]


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this test started (webserver/daemon + its children)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def dagster_services(env: dict[str, str], home: Path, *, daemon: bool = False, ready_query: str = "{ version }",
                     timeout: float = 180):
    """The webserver on a free port (and ``dagster-daemon run`` when ``daemon``), in ``ROOT`` with
    ``workspace.yaml``; yields the port once the code location has loaded."""
    port = free_port()
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        log = open(home / "webserver.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                                       "-p", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        deadline = time.time() + timeout
        while True:
            try:
                data = graphql(port, """{ workspaceOrError { ... on Workspace { locationEntries { name
                    locationOrLoadError { __typename ... on PythonError { message } } } } } }""", timeout=10)
                entries = data["workspaceOrError"]["locationEntries"]
                states = [e["locationOrLoadError"] for e in entries]
                if states and all(s and s["__typename"] == "RepositoryLocation" for s in states):
                    break
                errors = [s for s in states if s and s["__typename"] == "PythonError"]
                if errors:
                    raise AssertionError(f"code location failed to load: {errors[0]['message']}")
            except OSError:
                pass
            if any(p.poll() is not None for p in procs) or time.time() > deadline:
                raise AssertionError("dagster did not come up:\n" + (home / "webserver.log").read_text()[-3000:])
            time.sleep(1)
        if daemon:  # after the webserver has created the instance's databases (two processes racing corrupt them)
            log = open(home / "daemon.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=ROOT,
                                          env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        yield port
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()
