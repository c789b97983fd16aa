"""Schemathesis against the served OpenAPI spec: the API (``python -m api`` in its own process, on its own
port, over the stored demo run) answers every generated request of every operation without a server
error, with a status the spec lists and a body that matches its schema; without a key every ``/v1``
operation is refused (401/403).

Launches (``POST /v1/runs``) are fuzzed too, but go to a stub of the Dagster webserver's GraphQL endpoint
served by this test: nothing is really launched. The key (admin) reaches schemathesis through the
environment (``ROTATION_TEST_API_KEY``, expanded by its config file), never on a command line.

This module is also the hooks module of the keyless pass (``SCHEMATHESIS_HOOKS``): it defines the
``refused_without_key`` check, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = int(os.environ.get("ROTATION_TEST_SCHEMATHESIS_EXAMPLES", "25"))
SEED = os.environ.get("ROTATION_TEST_SCHEMATHESIS_SEED", "20241231")
KEY_VAR = "ROTATION_TEST_API_KEY"


@schemathesis.check
def refused_without_key(ctx, response, case):
    """A ``/v1`` operation asked without a key answers 401 or 403 (the keyless pass only)."""
    if case.operation.path.startswith("/v1/") and response.status_code not in (401, 403):
        raise AssertionError(f"{case.method} {case.formatted_path} answered {response.status_code} without a key")
    return None


@dataclass
class Served:
    url: str
    key: str = field(repr=False)  # never in a failure's output
    tmp: Path = Path()
    spec: dict = field(default_factory=dict, repr=False)
    launches: list = field(default_factory=list, repr=False)

    @property
    def audit(self) -> Path:
        return self.tmp / "audit.jsonl"

    @property
    def log(self) -> Path:
        return self.tmp / "api.log"


@pytest.fixture(scope="module")
def served(demo_store, tmp_path_factory):
    """``python -m api`` on a free loopback port over the demo store, launches sent to the stub; stopped by
    its process group."""
    from api.keys import KeyStore
    from tests.api.conftest import stub_graphql
    from tests.ui.services import free_port

    tmp = tmp_path_factory.mktemp("schemathesis")
    stub = contextlib.ExitStack()
    stub_url, launches = stub.enter_context(stub_graphql(run_prefix="stub-"))
    _, key = KeyStore(tmp / "keys.json").add("schemathesis", "admin")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env.update(demo_store["env"])  # type: ignore[arg-type]
    env.update({"ROTATION_API_KEYS_FILE": str(tmp / "keys.json"), "ROTATION_API_AUDIT_LOG": str(tmp / "audit.jsonl"),
                "ROTATION_API_DAGSTER_URL": stub_url,
                "ROTATION_API_RATE": "100000", "ROTATION_API_BURST": "100000",  # the fuzzing is not rate limited
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    log = open(tmp / "api.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError("the API exited:\n" + (tmp / "api.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/openapi.json", timeout=2) as r:
                    spec = json.loads(r.read())
                break
            except OSError:
                if time.time() > deadline:
                    raise AssertionError("the API did not answer /openapi.json within 90 s") from None
                time.sleep(0.5)
        yield Served(url, key, tmp, spec, launches)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
        stub.close()


def _operations(spec: dict, prefix: str = "/") -> set[str]:
    return {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops
            if path.startswith(prefix)}


def _schemathesis(served: Served, name: str, config: str, args: list[str], env: dict[str, str]) -> dict[str, dict]:
    """``schemathesis run`` with ``config`` (TOML) and ``args``; per tested operation its JUnit outcome."""
    tmp: Path = served.tmp
    (tmp / f"{name}.toml").write_text(config)
    junit = tmp / f"{name}.xml"
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(tmp / f"{name}.toml"), "run",
           f"{served.url}/openapi.json", "--max-examples", str(MAX_EXAMPLES), "--seed", SEED, "--no-shrink",
           "--report", "junit", "--report-junit-path", str(junit), "--request-timeout", "30", *args]
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "SCHEMATHESIS_"))}, **env,
                "NO_COLOR": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, cwd=tmp, env=full_env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert served.key not in text  # the key stays out of the output
    assert out.returncode == 0, f"schemathesis {name} failed (exit {out.returncode}):\n{text[-8000:]}\n" \
                                f"API log:\n{served.log.read_text()[-3000:]}"
    cases = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        cases[case.get("name")] = {"failed": [c.tag for c in case if c.tag in ("failure", "error")],
                                   "skipped": case.find("skipped") is not None}
    stateful = cases.pop("Stateful tests", None)  # the phase chaining operations, when it ran
    assert stateful is None or not stateful["failed"], stateful
    return cases


def test_no_server_error_and_every_answer_matches_the_spec(served):
    config = "\n".join([
        f'headers = {{ Authorization = "Bearer ${{{KEY_VAR}}}" }}',
        "[checks]",
        "enabled = false",  # only the checks below
        "not_a_server_error.enabled = true",
        "status_code_conformance.enabled = true",
        "content_type_conformance.enabled = true",
        "response_schema_conformance.enabled = true",
        "ignored_auth.enabled = true",  # the spec's security schemes: the same request without a key is refused
        # the pools' operations reach stored results only for a configured pool
        "[parameters]",
        'pool = "A_SHARE"',
        ""])
    cases = _schemathesis(served, "authenticated", config, [], {KEY_VAR: served.key})
    every = _operations(served.spec)
    assert every >= {"GET /v1/pools/{pool}/orders", "GET /v1/pools/{pool}/metrics", "POST /v1/runs", "GET /health"}
    assert set(cases) == every, (sorted(set(cases) ^ every))
    assert not [op for op, c in cases.items() if c["failed"] or c["skipped"]]
    # launches went to the stub, each tagged with the key that asked for it; every one audited
    assert served.launches, "no generated launch was valid enough to reach the Dagster webserver"
    key_id = served.key.split("_")[1]
    for body in served.launches:
        tags = {t["key"]: t["value"] for t in body["variables"]["executionParams"]["executionMetadata"]["tags"]}
        assert tags["rotation/launched_by"] == f"api:{key_id}" and tags["rotation/writes"].startswith("pool:")
    records = [json.loads(x) for x in served.audit.read_text().splitlines()]
    launched = [r for r in records if r["path"] == "/v1/runs" and r["status"] == 201]
    assert len(launched) == len(served.launches)
    assert {r["run_ids"][0] for r in launched} == {f"stub-{i + 1}" for i in range(len(served.launches))}
    assert any(r["path"] == "/v1/pools/A_SHARE/orders" and r["status"] == 200 for r in records)


def test_without_a_key_every_protected_operation_is_refused(served):
    # valid requests (positive mode) without a key: a malformed JSON body is answered 422 before any key is
    # looked at (FastAPI parses the body first); it reaches nothing either
    config = "\n".join(["[checks]", "enabled = false", "not_a_server_error.enabled = true",
                        "refused_without_key.enabled = true", "[parameters]", 'pool = "A_SHARE"', ""])
    launched = len(served.launches)
    cases = _schemathesis(served, "keyless", config, ["--include-path-regex", "^/v1/", "--mode", "positive"],
                          {"SCHEMATHESIS_HOOKS": "tests.api.test_schemathesis"})
    protected = _operations(served.spec, "/v1/")
    assert len(protected) >= 8 and set(cases) == protected, sorted(set(cases) ^ protected)
    assert not [op for op, c in cases.items() if c["failed"] or c["skipped"]]
    assert len(served.launches) == launched  # nothing launched without a key
