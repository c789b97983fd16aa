"""The deployment's reverse proxy for real: Debian's nginx with deploy/nginx/nginx.conf.template (rendered
for a loopback port, a test upstream and a test htpasswd, as the nginx image renders it) in front of a
real Dagster webserver on the project's definitions. No credentials, no UI; the right ones, the UI, its
GraphQL API and its GraphQL websocket."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from rotation_platform.config import CONFIG_DIR
from tests.ui.services import dagster_services, free_port, graphql

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"
USER, PASSWORD = "ops", "proxy-test-pw-7d1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if not found:
        pytest.fail("nginx is not installed; `bash .ci/services.sh start` installs Debian's nginx", pytrace=False)
    return found


def _htpasswd(path: Path) -> None:
    """An apr1 (Apache MD5) entry, as `htpasswd -m` or `openssl passwd -apr1` make it."""
    hashed = subprocess.run(["openssl", "passwd", "-apr1", "-stdin"], input=PASSWORD, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert hashed.startswith("$apr1$")
    path.write_text(f"{USER}:{hashed}\n")


def render(template: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst step does: replace ``${NAME}`` of the variables that are set."""
    out = template
    for name, value in values.items():
        out = out.replace("${" + name + "}", value)
    left = re.findall(r"\$\{[A-Z_]+\}", out)
    assert not left, f"placeholders left unrendered: {left}"
    return out


class _ApiStandIn(BaseHTTPRequestHandler):
    """Stands in for the REST API behind the proxy: answers with the path and the headers it received."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"path": self.path, "authorization": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """(proxy port, webserver port) with nginx started by this fixture and stopped by its PID."""
    nginx = _nginx()
    home = tmp_path_factory.mktemp("proxy_dagster_home")
    shutil.copy(ROOT / "configs" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_") or k == "ROTATION_ENV"}
    env.update({"DAGSTER_HOME": str(home), "ROTATION_CONFIG": str(CONFIG_DIR / "demo.yaml"),
                "ROTATION_STORAGE__DATA_DIR": str(home / "data"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    api = ThreadingHTTPServer(("127.0.0.1", 0), _ApiStandIn)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    with dagster_services(env, home) as web_port:
        prefix = tmp_path_factory.mktemp("nginx")
        _htpasswd(prefix / "htpasswd")
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(render(TEMPLATE.read_text(), {"ROTATION_UI_LISTEN": f"127.0.0.1:{port}",
                                                      "ROTATION_UI_UPSTREAM": f"127.0.0.1:{web_port}",
                                                      "ROTATION_UI_HTPASSWD": str(prefix / "htpasswd"),
                                                      "ROTATION_API_UPSTREAM": f"127.0.0.1:{api.server_port}"}))
        # run the workers as this user (root would hand them to 'nobody', who cannot read tmp_path)
        globals_ = f"daemon off; user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else "daemon off;"
        command = [nginx, "-p", f"{prefix}/", "-e", "stderr", "-c", str(conf), "-g", globals_]
        check = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        log = open(prefix / "nginx.log", "w")
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError("nginx did not start:\n" + (prefix / "nginx.log").read_text()[-2000:])
                    time.sleep(0.2)
            yield port, web_port
        finally:
            api.shutdown()
            proc.terminate()  # the master this fixture started (SIGTERM: fast shutdown of its workers)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            log.close()


def _auth(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _get(port: int, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_no_credentials_or_wrong_ones_get_401(proxy) -> None:
    port, _ = proxy
    status, headers, body = _get(port, "/")
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="rotation platform"'
    assert b"Dagster" not in body
    assert _get(port, "/", _auth(password="wrong"))[0] == 401
    assert _get(port, "/", _auth(user="nobody"))[0] == 401
    query = json.dumps({"query": "{ version }"}).encode()
    assert _get(port, "/graphql", {"Content-Type": "application/json"}, query)[0] == 401
    assert "nginx/" not in headers.get("Server", "")  # server_tokens off


def test_credentials_reach_the_webserver(proxy) -> None:
    port, web_port = proxy
    status, headers, body = _get(port, "/", _auth())
    assert status == 200 and b"Dagster" in body
    assert headers["X-Frame-Options"] == "DENY"
    query = json.dumps({"query": "{ version }"}).encode()
    status, _, body = _get(port, "/graphql", {**_auth(), "Content-Type": "application/json"}, query)
    assert status == 200
    assert json.loads(body)["data"] == graphql(web_port, "{ version }") == {"version": dg.__version__}


def _handshake(port: int, headers: dict[str, str]) -> tuple[socket.socket, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /graphql HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: graphql-ws",
             *(f"{k}: {v}" for k, v in headers.items())]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455
    if text.startswith("HTTP/1.1 101"):
        fields = dict(line.split(": ", 1) for line in text.split("\r\n")[1:])
        assert {k.lower(): v for k, v in fields.items()}["sec-websocket-accept"] == accept
    return sock, text


def _send_text(sock: socket.socket, text: str) -> None:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _recv_text(sock: socket.socket) -> str:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the websocket closed"
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    assert first & 0x0F == 0x1, f"expected a text frame, got opcode {first & 0x0F}"
    return exactly(length).decode()


def test_graphql_websocket_is_proxied_behind_auth(proxy) -> None:
    port, _ = proxy
    sock, head = _handshake(port, {})
    sock.close()
    assert head.startswith("HTTP/1.1 401")
    sock, head = _handshake(port, _auth())
    try:
        assert head.startswith("HTTP/1.1 101"), head
        _send_text(sock, json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(_recv_text(sock))["type"] == "connection_ack"  # the webserver's answer, through nginx
    finally:
        sock.close()


def test_the_rest_api_is_reached_with_its_own_key_not_basic_auth(proxy) -> None:
    """/v1/, /docs and /openapi.json go to the API without basic auth; its bearer key passes through untouched.
    Everything else still needs the proxy's credentials."""
    port, _ = proxy
    status, _, body = _get(port, "/v1/pools/A_SHARE/orders", {"Authorization": "Bearer rk_test_key"})
    assert status == 200
    assert json.loads(body) == {"path": "/v1/pools/A_SHARE/orders", "authorization": "Bearer rk_test_key"}
    for path in ("/docs", "/openapi.json"):
        status, _, body = _get(port, path)
        assert status == 200 and json.loads(body)["path"] == path
    assert _get(port, "/v1-not-the-api")[0] == 401
    assert _get(port, "/docs/../graphql")[0] in (401, 404)
