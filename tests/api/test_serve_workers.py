"""``python -m api --workers N``: N worker processes, each listening on its own socket of the address
(``SO_REUSEPORT``), the connections spread over them, a worker that dies started again, SIGTERM stopping
them all; a port in use or a bad worker count refused in one line (``api/serve.py``)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import wait_until
from tests.orchestration.conftest import ROOT
from tests.ui.services import free_port


def _env(demo_store, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env.update(demo_store["env"])
    env.update({"ROTATION_API_KEYS_FILE": str(tmp_path / "keys.json"), "ROTATION_API_AUDIT_LOG": str(tmp_path / "a.jsonl"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    return env


def _children(pid: int) -> list[int]:
    try:
        return sorted(int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except FileNotFoundError:
        return []


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening socket of ``port`` of its own."""
    return bool(_own_listening(pid, port))


def _own_listening(pid: int, port: int) -> set[str]:
    """The inodes of the listening sockets of ``port`` that process ``pid`` holds."""
    mine = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    return mine & _listening_inodes(port)


def _health(port: int) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        return conn.getresponse().status
    except OSError:
        return None


def test_workers_listen_on_their_own_sockets_are_restarted_and_stop_together(demo_store, tmp_path):
    port = free_port()
    log = open(tmp_path / "api.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port), "--workers", "2", "--no-access-log"],
                            cwd=ROOT, env=_env(demo_store, tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def two_listening():
            assert proc.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            kids = [k for k in _children(proc.pid) if _listens(k, port)]  # not multiprocessing's own helper
            return kids if len(kids) == 2 else None

        first = wait_until(two_listening, "two workers listening", 120)
        assert not _listens(proc.pid, port)  # the supervisor reserves the address but takes no connections
        wait_until(lambda: _health(port) == 200, "/health answered")
        # new connections are spread over both workers: each answers some of 60 (each a connection of its own)
        served = set()
        for _ in range(60):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200
            served.add(_server_of(conn.sock, first))
            conn.close()
        assert served == set(first)
        # a worker killed is started again; the other goes on answering meanwhile
        killed = _own_listening(first[0], port)
        assert killed
        os.kill(first[0], signal.SIGKILL)
        # (a connection the kernel gave the killed worker's socket before it closed is lost with it: a
        # client retries; the test asks only once that socket has left the kernel's listening table)
        wait_until(lambda: not killed & _listening_inodes(port), "the killed worker's socket closed", 30)
        assert [_health(port) for _ in range(10)] == [200] * 10
        again = wait_until(lambda: (k := two_listening()) and first[0] not in k and k, "the killed worker started again", 120)
        assert first[1] in again
        assert "exited with code -9" in (tmp_path / "api.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0
    assert all(not Path(f"/proc/{k}").exists() for k in again)
    assert _health(port) is None


def _server_of(sock: socket.socket, workers: list[int]) -> int | None:
    """Which of ``workers`` holds the server's end of the client socket ``sock``'s connection."""
    client_port = sock.getsockname()[1]
    ends = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == client_port and fields[3] == "01":  # ESTABLISHED, server end
            ends.add(f"socket:[{fields[9]}]")
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in ends:
                    return pid
            except OSError:
                continue
    return None


@pytest.mark.parametrize("args, code, text", [
    (["--workers", "0"], 2, "--workers 0: give 1 or more worker processes"),
    (["--workers", "2"], 5, "cannot listen on 127.0.0.1:{port}"),
])
def test_bad_worker_counts_and_a_port_in_use_are_one_line(demo_store, tmp_path, args, code, text):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "api", "--port", str(port), *args], cwd=ROOT,
                             env=_env(demo_store, tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == code, out.stderr
    assert _only_line(out.stderr).startswith(f"error: {text.format(port=port)}"), out.stderr


def _only_line(stderr: str) -> str:
    """The one non-blank line of ``stderr`` (fails when there are more or none)."""
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("text, said", [
    ("pools: [\n", "line 2, column 1: YAML syntax error"),
    ("storage:\n  data_dirr: x\n", "storage.data_dirr: unknown key (not part of the configuration schema); did you mean 'data_dir'?"),
])
def test_a_bad_configuration_is_one_line(demo_store, tmp_path, text, said):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    env = {k: v for k, v in _env(demo_store, tmp_path).items() if k != "ROTATION_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "api", "--config", str(bad)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr
    line = _only_line(out.stderr)
    assert line.startswith(f"error: invalid configuration in {bad}") and said in line, out.stderr
