"""The REST API on the stored demo results: authentication, roles, revocation, rate limits, the audit
log, orders equal to the stored target, stale results marked, snapshots."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.api.conftest import DEMO_POOLS, add_key, bearer
from tests.orchestration.conftest import SESSION

VIEWER_ROUTES = ["/v1/pools", "/v1/pools/A_SHARE/metrics", "/v1/pools/A_SHARE/verdicts", "/v1/pools/A_SHARE/findings",
                 "/v1/snapshots", f"/v1/snapshots/{SESSION}/verify"]
TRADER_ROUTES = ["/v1/pools/A_SHARE/orders", f"/v1/pools/QDII/orders?session={SESSION}"]
RUN = {"pool": "A_SHARE", "sessions": [SESSION]}


def test_unauthenticated_and_unknown_keys_are_refused(make_client):
    client = make_client()
    _, good = add_key(client, "admin")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for headers in ({}, bearer("nonsense"), bearer(forged), {"X-API-Key": forged}):
        for path in VIEWER_ROUTES + TRADER_ROUTES:
            r = client.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
        assert client.post("/v1/runs", json=RUN, headers=headers).status_code == 401
    # the key works when sent whole, as a bearer token or X-API-Key
    assert client.get("/v1/pools", headers=bearer(good)).status_code == 200
    assert client.get("/v1/pools", headers={"X-API-Key": good}).status_code == 200


def test_each_role_is_allowed_and_refused_where_it_should_be(make_client, monkeypatch):
    # launches go to a webserver that is not there: an admin's launch gets past the role check (503)
    client = make_client(ROTATION_API_DAGSTER_URL="http://127.0.0.1:9")
    keys = {role: add_key(client, role)[1] for role in ("viewer", "trader", "admin")}
    for role, key in keys.items():
        for path in VIEWER_ROUTES:
            assert client.get(path, headers=bearer(key)).status_code == 200, (role, path)
        for path in TRADER_ROUTES:
            r = client.get(path, headers=bearer(key))
            assert r.status_code == (403 if role == "viewer" else 200), (role, path, r.text)
        r = client.post("/v1/runs", json=RUN, headers=bearer(key))
        if role == "admin":
            assert r.status_code == 503 and "did not answer" in r.json()["detail"], r.text
        else:
            assert r.status_code == 403 and f"has role {role}; this needs admin" in r.json()["detail"]
    r = client.get("/v1/pools/A_SHARE/orders", headers=bearer(keys["viewer"]))
    assert r.json()["detail"].endswith("has role viewer; this needs trader")


def test_a_revoked_key_is_refused_and_the_cli_shows_a_key_once(make_client, api_env, capsys):
    from api.__main__ import main

    assert main(["keys", "add", "execution desk", "--role", "trader"]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[-1]
    key_id = key.split("_")[1]
    assert out[0].startswith(f"key {key_id} (trader, execution desk) added to ")
    stored = open(api_env["ROTATION_API_KEYS_FILE"]).read()
    assert key not in stored and key.split("_", 2)[2] not in stored  # only the hash is kept
    entry = json.loads(stored)["keys"][0]
    assert entry["scheme"] == "sha256-salt" and len(entry["hash"]) == 64 and len(entry["salt"]) == 32

    client = make_client()
    assert client.get("/v1/pools/A_SHARE/orders", headers=bearer(key)).status_code == 200
    assert main(["keys", "revoke", key_id]) == 0
    assert client.get("/v1/pools/A_SHARE/orders", headers=bearer(key)).status_code == 401
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "revoked 20" in listed and key not in listed
    assert main(["keys", "revoke", "deadbeef"]) == 3
    assert "no key 'deadbeef'" in capsys.readouterr().err


def test_peppered_keys_need_the_pepper(make_client, monkeypatch):
    client = make_client(ROTATION_API_PEPPER="pepper-from-the-environment-1")
    _, key = add_key(client, "viewer")
    entry = json.loads(client.app.state.platform.keys.path.read_text())["keys"][0]
    assert entry["scheme"] == "hmac-sha256"
    assert client.get("/v1/pools", headers=bearer(key)).status_code == 200
    monkeypatch.delenv("ROTATION_API_PEPPER")
    assert make_client().get("/v1/pools", headers=bearer(key)).status_code == 401
    assert make_client(ROTATION_API_PEPPER="another").get("/v1/pools", headers=bearer(key)).status_code == 401


def test_rate_limit_answers_429_with_retry_after(make_client):
    client = make_client(ROTATION_API_RATE="0.01", ROTATION_API_BURST="3")
    _, a = add_key(client, "viewer", "a")
    _, b = add_key(client, "viewer", "b")
    codes = [client.get("/v1/pools", headers=bearer(a)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.get("/v1/pools", headers=bearer(a))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "rate limit of key" in r.json()["detail"]
    assert client.get("/v1/pools", headers=bearer(b)).status_code == 200  # per key


def test_audit_log_records_every_orders_read_and_never_the_key(make_client, api_env):
    client = make_client()
    trader_id, trader = add_key(client, "trader")
    viewer_id, viewer = add_key(client, "viewer")
    asked = [(trader, "/v1/pools/A_SHARE/orders", 200), (trader, f"/v1/pools/QDII/orders?session={SESSION}", 200),
             (viewer, "/v1/pools/A_SHARE/orders", 403), (None, "/v1/pools/OTHER/orders", 401),
             (trader, "/v1/pools/NOPE/orders", 404), (trader, "/v1/pools/A_SHARE/metrics", 200)]
    for key, path, status in asked:
        assert client.get(path, headers=bearer(key) if key else {}).status_code == status, path
    text = open(api_env["ROTATION_API_AUDIT_LOG"]).read()
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["key_id"], r["role"], r["path"], r["status"]) for r in records] == [
        (trader_id, "trader", "/v1/pools/A_SHARE/orders", 200), (trader_id, "trader", "/v1/pools/QDII/orders", 200),
        (viewer_id, "viewer", "/v1/pools/A_SHARE/orders", 403), (None, None, "/v1/pools/OTHER/orders", 401),
        (trader_id, "trader", "/v1/pools/NOPE/orders", 404)]  # the metrics read is not audited
    assert records[1]["query"] == {"session": SESSION}
    assert all(pd.Timestamp(r["time"]).tzinfo is not None for r in records)
    for key in (trader, viewer):
        assert key not in text and key.split("_", 2)[2] not in text


def test_orders_equal_the_stored_target(make_client, demo_store):
    from rotation_platform.storage import FileStore, Partition

    client = make_client()
    _, key = add_key(client, "trader")
    store = FileStore(demo_store["data"])
    for pool in DEMO_POOLS:
        body = client.get(f"/v1/pools/{pool}/orders", headers=bearer(key)).json()
        assert body["session"] == SESSION and body["status"] == "ok" and body["state"]["current"] is True
        target = store.read(("target_portfolio",), Partition.multi({"pool": pool, "session": SESSION}))
        block = target.xs(pd.Timestamp(SESSION), level="session")
        assert body["currency"] == block["currency"].iloc[0] == "CNY"
        assert body["equity"] == round(float(block["equity"].iloc[0]), 2)
        assert body["cash_after"] == round(float(block["cash_after"].iloc[0]), 2)
        assert body["trade_session"] == str(pd.Timestamp(block["trade_session"].iloc[0]).date())
        shown = {t["symbol"]: t for t in body["targets"]}
        held = block[(block["target_weight"] > 0) | (block["target_shares"] != 0) | (block["current_shares"] != 0)
                     | (block["order_shares"] != 0)]
        assert set(shown) == set(held.index) and shown
        for symbol, row in held.iterrows():
            t = shown[symbol]
            assert t["target_shares"] == int(row["target_shares"]) and t["current_shares"] == int(row["current_shares"])
            assert t["order_shares"] == int(row["order_shares"]) and t["weight"] == float(row["target_weight"])
            assert t["price"] == float(row["price"])  # raw price, raw units
            assert t["target_shares"] % int(row["lot"]) == 0
        orders = {o["symbol"]: o for o in body["orders"]}
        assert set(orders) == set(block.index[block["order_shares"] != 0])
        for symbol, o in orders.items():
            assert o["shares"] == abs(int(block.loc[symbol, "order_shares"]))
        assert body["fuses"]["failed"] == []


def test_stale_results_are_never_shown_as_current(make_client):
    # another fuse threshold changes the results' config hash: everything stored is now superseded
    client = make_client(ROTATION_FUSES__MIN_SHARPE="0.123")
    _, key = add_key(client, "trader")
    body = client.get("/v1/pools/A_SHARE/orders", headers=bearer(key)).json()
    assert body["status"] == "stale" and body["state"]["current"] is False
    assert "computed with config" in body["reason"]
    metrics = client.get("/v1/pools/A_SHARE/metrics", headers=bearer(key)).json()
    assert metrics["state"]["status"] == "stale" and metrics["state"]["current"] is False
    assert 'rotation_pool_status{pool="A_SHARE",status="stale"} 1.0' in client.get("/metrics").text


def test_metrics_verdicts_findings_and_snapshots(make_client, demo_store):
    from rotation_platform.storage import FileStore, Partition

    client = make_client()
    _, key = add_key(client, "viewer")
    h = bearer(key)
    m = client.get("/v1/pools/QDII/metrics", headers=h).json()
    frame = FileStore(demo_store["data"]).read(("backtest",), Partition.multi({"pool": "QDII", "session": SESSION}))
    row = frame.loc[pd.Timestamp(SESSION)]
    assert m["currency"] == "CNY" and m["strategy"]["sharpe"] == pytest.approx(float(row["sharpe"]))
    assert m["baselines"]["equal_weight"]["sharpe"] == pytest.approx(float(row["ew_sharpe"]))
    assert m["thresholds"]["sharpe"]["limit"] == 0.5 and m["thresholds"]["sharpe"]["ok"] is (float(row["sharpe"]) >= 0.5)

    v = client.get("/v1/pools/A_SHARE/verdicts", headers=h).json()
    by = {f"{c['asset']}:{c['check']}": c for c in v["checks"]}
    assert v["verdict"] == "passed" and v["failed"] == []
    assert by["prices:quality_gate"]["passed"] is True and by["prices:quality_gate"]["severity"] == "ERROR"
    assert by["backtest:sharpe_threshold"]["passed"] is False and "backtest:sharpe_threshold" in v["warnings"]
    assert "FAIL" in by["backtest:sharpe_threshold"]["description"]
    assert client.get("/v1/pools/A_SHARE/verdicts?session=2024-12-30", headers=h).json()["verdict"] == "not evaluated"

    f = client.get("/v1/pools/A_SHARE/findings", headers=h).json()
    assert f["gate"]["passed"] is True and f["quarantined_rows"] == [] and f["synthetic"] is True

    s = client.get("/v1/snapshots", headers=h).json()
    assert [x["session"] for x in s["snapshots"]] == [SESSION]
    assert client.get(f"/v1/snapshots/{SESSION}/verify", headers=h).json()["ok"] is True
    assert client.get("/v1/snapshots/2024-12-30/verify", headers=h).status_code == 404
    assert client.get("/v1/pools/A_SHARE/orders?session=2024-12-28", headers=h).status_code in (400, 403)
    r = client.get("/v1/pools/A_SHARE/metrics?session=2024-12-28", headers=h)
    assert r.status_code == 400 and "not a XSHG session" in r.json()["detail"]
    assert client.get("/v1/pools/A_SHARE/metrics?session=2024-12-30", headers=h).status_code == 404
    assert client.get("/docs").status_code == 200 and "/v1/pools/{pool}/orders" in client.get("/openapi.json").json()["paths"]


def test_a_tampered_snapshot_fails_verification(make_client, demo_store, tmp_path):
    import shutil

    client = make_client()
    _, key = add_key(client, "viewer")
    root = demo_store["data"] / "snapshots" / SESSION / "backtest"
    victim = next(p for p in sorted(root.iterdir()) if p.is_file())
    saved = tmp_path / victim.name
    shutil.copy(victim, saved)
    try:
        victim.write_bytes(b"not a parquet file")
        body = client.get(f"/v1/snapshots/{SESSION}/verify", headers=bearer(key)).json()
        assert body["ok"] is False and body["mismatches"][0]["asset"] == "backtest"
    finally:
        shutil.copy(saved, victim)


def test_bad_settings_are_one_line_and_secrets_are_never_shown(make_client, api_env, monkeypatch, capsys):
    from api.__main__ import main

    monkeypatch.setenv("ROTATION_API_RATE", "fast")
    assert main(["keys", "list"]) == 3
    err = capsys.readouterr().err.strip()
    assert err == "error: ROTATION_API_RATE='fast' is not a number; give e.g. ROTATION_API_RATE=10.0"
    monkeypatch.delenv("ROTATION_API_RATE")

    pepper = "pepper-that-must-stay-secret-42"
    client = make_client(ROTATION_API_PEPPER=pepper)
    _, key = add_key(client, "trader")
    state = client.app.state.platform
    assert pepper not in repr(state.settings) and "pepper=set" in repr(state.settings)
    answers = [client.get(p, headers=bearer(key)).text for p in ("/ready", "/metrics", "/v1/pools/A_SHARE/orders",
                                                                  "/v1/pools/A_SHARE/verdicts", "/openapi.json")]
    written = state.audit.path.read_text() + state.keys.path.read_text()
    for text in answers + [written]:
        assert pepper not in text and key not in text


def test_a_rewritten_target_is_shown_at_once_not_the_kept_answer(make_client, demo_store, tmp_path):
    """Orders answers are kept while the stored values they were made of are unchanged: a target written
    again (here with another cash figure) is what the next request shows, however soon it comes."""
    from rotation_platform.storage import FileStore, Partition

    data = tmp_path / "data"
    shutil.copytree(demo_store["data"], data)
    client = make_client(ROTATION_STORAGE__DATA_DIR=str(data))
    _, key = add_key(client, "trader")
    first = client.get("/v1/pools/QDII/orders", headers=bearer(key)).json()
    assert client.get("/v1/pools/QDII/orders", headers=bearer(key)).json() == first  # kept: the same answer
    store = FileStore(data)
    partition = Partition.multi({"pool": "QDII", "session": SESSION})
    target = store.read(("target_portfolio",), partition)
    changed = target.copy()
    changed.attrs = dict(target.attrs)
    changed["cash_after"] = changed["cash_after"] + 1000.0
    store.write(("target_portfolio",), partition, changed)
    second = client.get("/v1/pools/QDII/orders", headers=bearer(key)).json()
    assert second["cash_after"] == round(first["cash_after"] + 1000.0, 2)
    assert second["status"] == "ok" and second["state"]["current"] is True


def test_concurrent_orders_reads_make_the_answer_once_and_are_each_audited(make_client, api_env, monkeypatch):
    """Requests that arrive while an orders answer is being made wait for that one making; each is answered
    the same bytes and each has its own audit line, written together (group commit)."""
    import asyncio
    import threading

    import httpx

    from api import views

    client = make_client()
    _, key = add_key(client, "trader")
    audit = client.app.state.platform.audit
    release = threading.Event()
    made = []
    real = views.orders_stored

    def slow_orders_stored(store, pool, session):
        made.append(pool)
        assert release.wait(30)  # held until every request is waiting for it
        return real(store, pool, session)

    monkeypatch.setattr(views, "orders_stored", slow_orders_stored)
    answers = client.app.state.platform.answers

    async def ask_all(n: int):
        transport = httpx.ASGITransport(app=client.app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            pending = [asyncio.ensure_future(http.get("/v1/pools/QDII/orders", headers=bearer(key)))
                       for _ in range(n)]
            while not answers._flights:  # the first request is making the answer
                await asyncio.sleep(0.01)
            for _ in range(20):  # and the others have reached it
                await asyncio.sleep(0.01)
            release.set()
            return await asyncio.gather(*pending)

    before = audit.writes
    got = asyncio.run(ask_all(12))
    assert [r.status_code for r in got] == [200] * 12
    assert len({r.content for r in got}) == 1 and json.loads(got[0].content)["pool"] == "QDII"
    assert made == ["QDII"]  # made once for the twelve
    assert answers._flights == {}  # nothing left behind
    records = [json.loads(x) for x in open(api_env["ROTATION_API_AUDIT_LOG"]).read().splitlines()]
    assert [(r["path"], r["status"]) for r in records] == [("/v1/pools/QDII/orders", 200)] * 12
    assert 1 <= audit.writes - before < 12  # lines of answers given together are synced together
    # the answer is the framework's own JSON rendering of the view
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    assert got[0].content == JSONResponse(jsonable_encoder(json.loads(got[0].content))).body
    assert got[0].headers["content-type"] == "application/json"


def test_an_audit_line_that_cannot_be_written_fails_the_orders_read(make_client, api_env, tmp_path):
    """The answer leaves only once its audit line is synced: with the audit log unwritable the read is
    refused (500), never answered unaudited."""
    audit = tmp_path / "audit-as-folder"
    audit.mkdir()
    client = make_client(ROTATION_API_AUDIT_LOG=str(audit))
    _, key = add_key(client, "trader")
    from fastapi.testclient import TestClient

    with TestClient(client.app, raise_server_exceptions=False) as quiet:
        response = quiet.get("/v1/pools/QDII/orders", headers=bearer(key))
    assert response.status_code == 500 and b"target" not in response.content
    assert quiet.get("/health").status_code == 200  # the server goes on
