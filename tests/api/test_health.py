"""``/health`` and ``/ready``: each component with its status and latency; 503 when the store is
unreachable (a MySQL store behind a TCP relay the test cuts and restores) and 200 again when it is back."""

from __future__ import annotations

import socket
import threading

from tests.api.conftest import add_key, bearer


class Relay:
    """A loopback TCP relay to ``target``; :meth:`cut` refuses and drops connections, :meth:`restore`
    accepts again on the same port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.open = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        self.open = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()

    def restore(self):
        self.open = True

    def close(self):
        self.cut()
        self.sock.close()


def test_health_and_ready_on_the_demo_store(make_client):
    client = make_client()
    assert client.get("/health").json() == {"status": "alive"}
    r = client.get("/ready")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ready", body
    comps = body["components"]
    assert comps["store"]["status"] == "up" and comps["store"]["latency_ms"] >= 0
    assert comps["dagster_daemon"]["status"] == "down" and comps["dagster_daemon"]["required"] is False
    fresh = comps["freshness"]["pools"]["A_SHARE"]
    assert fresh["latest"] == "2024-12-31" and fresh["sessions_behind"] > 0  # the demo data end is fixed
    assert "broker" not in comps and "redis" not in comps  # neither is configured


def test_ready_fails_on_stale_data_or_no_daemon_when_required(make_client):
    r = make_client(ROTATION_API_MAX_SESSIONS_BEHIND="3").get("/ready")
    assert r.status_code == 503 and r.json()["components"]["freshness"]["status"] == "stale"
    r = make_client(ROTATION_API_MAX_SESSIONS_BEHIND="", ROTATION_API_REQUIRE_DAEMON="1").get("/ready")
    assert r.status_code == 503 and r.json()["components"]["dagster_daemon"]["detail"] == "no daemon heartbeat recorded"


def test_ready_turns_503_when_the_store_is_unreachable_and_back(make_client, mysql_server):
    from sqlalchemy.engine import make_url

    url = make_url(mysql_server)
    relay = Relay((url.host or "127.0.0.1", url.port or 3306))
    try:
        relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        client = make_client(ROTATION_STORAGE__BACKEND="mysql", ROTATION_STORAGE__MYSQL_URL=relayed)
        _, key = add_key(client, "trader")
        r = client.get("/ready")
        assert r.status_code == 200, r.json()
        mysql = [s for s in r.json()["components"]["store"]["servers"] if s["backend"] == "mysql"][0]
        assert mysql["ok"] and f":{relay.port}/" in mysql["server"]
        relay.cut()
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        assert r.json()["components"]["store"]["status"] == "down"
        assert "rotation_store_up{backend=\"mysql\"} 0.0" in client.get("/metrics").text
        assert client.get("/v1/pools/A_SHARE/orders", headers=bearer(key)).status_code == 503
        relay.restore()
        r = client.get("/ready")
        assert r.status_code == 200 and r.json()["components"]["store"]["status"] == "up"
    finally:
        relay.close()
