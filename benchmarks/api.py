"""API load benchmark: ``python -m benchmarks api``.

The API served by ``python -m api`` (``ROTATION_BENCH_API_WORKERS`` worker processes, default 2 -- this
machine has 2 cores -- each on its own socket of the port; access log off, the audit log on) on its own loopback port over a stored run of the demo configuration (every pool's
daily run of 2024-12-31, made by ``python -m jobs.main`` into a temporary folder first, not timed; or the
data folder and Dagster home named by ``ROTATION_BENCH_API_DATA`` and ``ROTATION_BENCH_API_HOME``). The load
comes from ``wrk`` in a second process (Debian package ``wrk``): ``ROTATION_BENCH_API_CONNECTIONS``
(default 200) connections for ``ROTATION_BENCH_API_SECONDS`` (default 15) seconds each case, with a trader
key set by a Lua script from the environment (never on a command line).

Cases: ``orders`` -- ``GET /v1/pools/A_SHARE/orders`` (the latest stored session, audited: one fsync'd
audit line per answer); ``health`` -- ``GET /health`` (no key, no store: the server's own floor).
Figures per case: ``qps``, ``p50_ms``, ``p95_ms`` (``baseline`` 50 ms, the target; ``ratio`` = value /
baseline), ``p99_ms`` and ``errors`` (non-2xx answers plus socket errors: connect, read, write, timeout).
The key's rate limit is lifted for the run (``ROTATION_API_RATE``/``BURST``): the figures are the cost of
serving, not of refusing. The latencies are wrk's (measured from each request's send, closed loop).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = "api"
SESSION = "2024-12-31"
POOL = "A_SHARE"
TARGET_P95_MS = 50.0
WORKERS = int(os.environ.get("ROTATION_BENCH_API_WORKERS", "2"))
CONNECTIONS = int(os.environ.get("ROTATION_BENCH_API_CONNECTIONS", "200"))
SECONDS = int(os.environ.get("ROTATION_BENCH_API_SECONDS", "15"))
KEY_VAR = "ROTATION_BENCH_API_KEY"

# sets the key header from the environment; prints the run's figures as one JSON line at the end
LUA = r"""
local key = os.getenv("%s")
if key ~= nil and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
""" % KEY_VAR


def _fig(case: str, metric: str, value: float, unit: str, **extra: object) -> dict[str, object]:
    return {"suite": SUITE, "case": case, "metric": metric, "value": value, "unit": unit, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrk() -> str:
    tool = shutil.which("wrk")
    if tool is None:
        raise SystemExit("benchmarks.api needs wrk: install Debian's package (`apt-get install -y wrk`)")
    return tool


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _stored_run(tmp: Path) -> dict[str, str]:
    """The environment of a stored demo run: the given folders, else a new run of every pool."""
    data, home = os.environ.get("ROTATION_BENCH_API_DATA"), os.environ.get("ROTATION_BENCH_API_HOME")
    env = {"ROTATION_CONFIG": str(ROOT / "configs" / "demo.yaml"), "ROTATION_DATA__SYNTHETIC__END": SESSION}
    if data and home:
        return {**env, "ROTATION_STORAGE__DATA_DIR": data, "DAGSTER_HOME": home}
    env.update({"ROTATION_STORAGE__DATA_DIR": str(tmp / "data"), "DAGSTER_HOME": str(tmp / "home")})
    (tmp / "home").mkdir()
    shutil.copy(ROOT / "configs" / "dagster.yaml", tmp / "home" / "dagster.yaml")
    out = subprocess.run([sys.executable, "-m", "jobs.main", "--session", SESSION], cwd=ROOT,
                         env={**_base_env(), **env}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmarks.api: the demo run failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return env


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _load(wrk: str, url: str, script: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([wrk, "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "10s", "-s", str(script), url],
                         env=env, capture_output=True, text=True, timeout=SECONDS + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"benchmarks.api: wrk failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return json.loads(line[4:])


def run() -> Iterator[dict[str, object]]:
    wrk = _wrk()
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    proc = None
    try:
        stored = _stored_run(tmp)
        from api.keys import KeyStore

        _, key = KeyStore(tmp / "keys.json").add("load test", "trader")
        port = _free_port()
        env = {**_base_env(), **stored, "ROTATION_API_KEYS_FILE": str(tmp / "keys.json"),
               "ROTATION_API_AUDIT_LOG": str(tmp / "audit.jsonl"), "ROTATION_API_RATE": "1000000000",
               "ROTATION_API_BURST": "1000000000"}
        log = open(tmp / "api.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(WORKERS), "--no-access-log"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit("benchmarks.api: the API exited:\n" + (tmp / "api.log").read_text()[-3000:])
            try:
                if _get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("benchmarks.api: the API did not answer /health within 120 s")
            time.sleep(0.5)
        orders = f"{base}/v1/pools/{POOL}/orders"
        status, body = _get(orders, {"Authorization": f"Bearer {key}"})
        if status != 200 or json.loads(body).get("session") != SESSION:
            raise SystemExit(f"benchmarks.api: {orders} answered {status}: {body[:300]!r}")
        script = tmp / "key.lua"
        script.write_text(LUA)
        audit_before = sum(1 for _ in open(tmp / "audit.jsonl"))
        for case, url, with_key in (("orders", orders, True), ("health", f"{base}/health", False)):
            got = _load(wrk, url, script, {**_base_env(), **({KEY_VAR: key} if with_key else {})})
            seconds = got["duration_us"] / 1e6
            errors = got["status"] + got["connect"] + got["read"] + got["write"] + got["timeout"]
            common = {"connections": CONNECTIONS, "seconds": SECONDS, "workers": WORKERS, "requests": got["requests"]}
            yield _fig(case, "qps", round(got["requests"] / seconds, 1), "requests/s", **common)
            yield _fig(case, "p50_ms", got["p50_us"] / 1000, "ms", **common)
            yield _fig(case, "p95_ms", got["p95_us"] / 1000, "ms", baseline=TARGET_P95_MS,
                       ratio=round(got["p95_us"] / 1000 / TARGET_P95_MS, 3), **common)
            yield _fig(case, "p99_ms", got["p99_us"] / 1000, "ms", **common)
            yield _fig(case, "errors", errors, "requests", non_2xx=got["status"], socket=errors - got["status"], **common)
            if case == "orders":  # every answered read is in the audit log
                audited = sum(1 for _ in open(tmp / "audit.jsonl")) - audit_before
                yield _fig(case, "audited_per_request", round(audited / max(1, got["requests"]), 4), "ratio",
                           audited=audited, **common)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
