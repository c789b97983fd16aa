"""Kept orders answers given before the framework (``api.app.KeptOrders``): the same bytes, headers,
checks, audit lines and metrics as the route's answer; anything it does not answer goes on to the route."""

from __future__ import annotations

import json

from tests.api.conftest import add_key, bearer
from tests.orchestration.conftest import SESSION

ORDERS = "/v1/pools/QDII/orders"


def _counting_route(client, monkeypatch) -> list:
    """Counts the requests the orders route itself answers (each asks the answer cache)."""
    answers = client.app.state.platform.answers
    routed = []
    real = answers.aget_or_make

    async def counting(key, version, make):
        routed.append(key)
        return await real(key, version, make)

    monkeypatch.setattr(answers, "aget_or_make", counting)
    return routed


def _audit(api_env) -> list[dict]:
    return [json.loads(x) for x in open(api_env["ROTATION_API_AUDIT_LOG"]).read().splitlines()]


def test_a_kept_answer_is_the_routes_answer(make_client, api_env, monkeypatch):
    client = make_client()
    routed = _counting_route(client, monkeypatch)
    trader_id, trader = add_key(client, "trader")
    first = client.get(ORDERS, headers=bearer(trader))
    kept = [client.get(ORDERS, headers=bearer(trader)) for _ in range(3)]
    assert routed == [("QDII", SESSION)]  # the route made it once; the next three were answered before it
    for r in kept:
        assert r.status_code == 200 and r.content == first.content
        assert {k: v for k, v in r.headers.items() if k != "date"} == \
            {k: v for k, v in first.headers.items() if k != "date"}
    # the session asked for by name is the same answer; an admin key may read orders too
    _, admin = add_key(client, "admin")
    assert client.get(f"{ORDERS}?session={SESSION}", headers={"X-API-Key": admin}).content == first.content
    assert len(routed) == 1
    # every read audited and counted under the route, kept or not
    assert [(r["key_id"], r["path"], r["status"]) for r in _audit(api_env)][:4] == [(trader_id, ORDERS, 200)] * 4
    metrics = client.get("/metrics").text
    line = next(x for x in metrics.splitlines()
                if x.startswith("rotation_api_requests_total{") and 'route="/v1/pools/{pool}/orders"' in x
                and 'status="200"' in x)
    assert float(line.rsplit(" ", 1)[1]) == 5.0


def test_refusals_and_unusual_requests_go_to_the_route(make_client, api_env, monkeypatch):
    client = make_client(ROTATION_API_RATE="0.01", ROTATION_API_BURST="5")
    routed = _counting_route(client, monkeypatch)
    trader_id, trader = add_key(client, "trader")
    _, viewer = add_key(client, "viewer")
    assert client.get(ORDERS, headers=bearer(trader)).status_code == 200  # made and kept
    # a viewer, no key, a forged key: refused by the route, as without a kept answer
    assert client.get(ORDERS, headers=bearer(viewer)).status_code == 403
    assert client.get(ORDERS).status_code == 401
    assert client.get(ORDERS, headers=bearer(trader[:-2] + "xx")).status_code == 401
    assert client.get(ORDERS, headers=bearer(trader)).status_code == 200  # kept: the second token
    # a bad session, an unknown pool, another query parameter: the route's answers
    assert client.get(f"{ORDERS}?session=2024-12-32", headers=bearer(trader)).status_code == 400
    assert client.get(f"{ORDERS}?session=latest", headers=bearer(trader)).status_code == 422
    assert client.get("/v1/pools/NOPE/orders", headers=bearer(trader)).status_code == 404
    # the key's five tokens are taken now (every answer with a key takes one): the kept answer is not given, the route answers 429
    limited = client.get(ORDERS, headers=bearer(trader))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert routed.count(("QDII", SESSION)) == 1
    # a revoked key is refused at once, kept answer or not
    client.app.state.platform.keys.revoke(trader_id)
    assert client.get(ORDERS, headers=bearer(trader)).status_code == 401
    statuses = [(r["key_id"] is not None, r["status"]) for r in _audit(api_env)]
    assert statuses == [(True, 200), (True, 403), (False, 401), (False, 401), (True, 200), (True, 400), (True, 422),
                        (True, 404), (True, 429), (False, 401)]


def test_a_database_store_is_always_answered_by_the_route(make_client, api_env, monkeypatch):
    client = make_client()
    client.app.state.platform.local_store = False  # as for MySQL or InfluxDB: no stats on the event loop
    routed = _counting_route(client, monkeypatch)
    _, trader = add_key(client, "trader")
    got = [client.get(ORDERS, headers=bearer(trader)) for _ in range(3)]
    assert [r.status_code for r in got] == [200] * 3 and len({r.content for r in got}) == 1
    assert len(routed) == 3


def test_the_stored_part_is_kept_and_the_verdicts_are_read_again_each_second(make_client, monkeypatch):
    """After the 1 s limit the answer is judged again from the instance (fuses, the pool's state) while
    what it takes from the stored values is not read again until they change."""
    from api import views

    client = make_client()
    state = client.app.state.platform
    clock = [1000.0]
    state.answers._clock = lambda: clock[0]
    _, trader = add_key(client, "trader")
    reads, judged = [], []
    real_stored, real_judged = views.orders_stored, views.orders_judged
    monkeypatch.setattr(views, "orders_stored", lambda *a: reads.append(a[1]) or real_stored(*a))
    monkeypatch.setattr(views, "orders_judged", lambda *a: judged.append(1) or real_judged(*a))
    first = client.get(ORDERS, headers=bearer(trader))
    clock[0] += 0.5
    assert client.get(ORDERS, headers=bearer(trader)).content == first.content
    assert (reads, len(judged)) == (["QDII"], 1)  # within the second: the kept answer
    clock[0] += 1.0
    assert client.get(ORDERS, headers=bearer(trader)).content == first.content
    assert (reads, len(judged)) == (["QDII"], 2)  # judged again, the stored part kept
    # judged from the instance: a failed fuse recorded now would show at that point
    monkeypatch.setattr(views, "check_evaluations", lambda *a: [
        {"asset": "target_portfolio", "check": "weights_valid", "status": "failed", "passed": False,
         "severity": "ERROR", "description": "weights do not sum to 1", "run_id": "r", "evaluated_at": None,
         "metadata": {}}])
    clock[0] += 1.5
    blocked = client.get(ORDERS, headers=bearer(trader)).json()
    assert blocked["status"] == "blocked" and "weights do not sum to 1" in blocked["reason"]
    assert blocked["fuses"] == {"failed": ["target_portfolio:weights_valid"]}
    assert blocked["targets"] == first.json()["targets"] and reads == ["QDII"]
