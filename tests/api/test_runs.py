"""``POST /v1/runs`` (admin): a run or single-run backfill launched through Dagster's GraphQL API.

Two servers: a recording GraphQL endpoint that checks the exact mutation and variables the API sends,
and a real ``dagster-webserver`` on its own port with the demo definitions, whose instance must then hold
the launched run with its partition tags."""

from __future__ import annotations

import json

import pytest

from api.launch import LAUNCH_RUN
from tests.api.conftest import add_key, bearer, stub_graphql
from tests.orchestration.conftest import SESSION


@pytest.fixture()
def graphql_server():
    with stub_graphql() as served:
        yield served


def _tags(call: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in call["variables"]["executionParams"]["executionMetadata"]["tags"]}


def test_launch_sends_the_exact_mutation_and_is_audited(make_client, graphql_server, api_env):
    url, seen = graphql_server
    client = make_client(ROTATION_API_DAGSTER_URL=url)
    admin_id, admin = add_key(client, "admin")

    r = client.post("/v1/runs", json={"pool": "A_SHARE", "sessions": [SESSION]}, headers=bearer(admin))
    assert r.status_code == 201, r.text
    assert r.json() == {"pool": "A_SHARE", "sessions": [SESSION], "job": "daily", "run_id": "run-1",
                        "status": "QUEUED"}
    call = seen[0]
    assert call["path"] == "/graphql" and call["query"] == LAUNCH_RUN
    params = call["variables"]["executionParams"]
    assert params["selector"] == {"repositoryLocationName": "rotation_platform", "repositoryName": "__repository__",
                                  "jobName": "daily"}
    assert params["runConfigData"] == {}
    assert _tags(call) == {"dagster/partition": f"A_SHARE|{SESSION}", "dagster/partition/pool": "A_SHARE",
                           "dagster/partition/session": SESSION, "rotation/writes": "pool:A_SHARE",
                           "rotation/launched_by": f"api:{admin_id}"}

    days = ["2024-12-27", "2024-12-30", "2024-12-31"]
    r = client.post("/v1/runs", json={"pool": "QDII", "sessions": list(reversed(days))}, headers=bearer(admin))
    assert r.status_code == 201 and r.json()["sessions"] == days
    assert _tags(seen[1]) == {"dagster/asset_partition_range_start": "QDII|2024-12-27",
                              "dagster/asset_partition_range_end": "QDII|2024-12-31",
                              "rotation/writes": "pool:QDII", "rotation/launched_by": f"api:{admin_id}"}

    # refused before anything is sent: a gap in a range, a weekend, an unknown pool
    r = client.post("/v1/runs", json={"pool": "QDII", "sessions": ["2024-12-27", "2024-12-31"]}, headers=bearer(admin))
    assert r.status_code == 400 and "one contiguous range" in r.json()["detail"]
    r = client.post("/v1/runs", json={"pool": "QDII", "sessions": ["2024-12-28"]}, headers=bearer(admin))
    assert r.status_code == 400 and "'2024-12-28' is not a XSHG session" in r.json()["detail"]
    assert client.post("/v1/runs", json={"pool": "NOPE", "sessions": [SESSION]}, headers=bearer(admin)).status_code == 404
    assert client.post("/v1/runs", json={"pool": "QDII", "sessions": []}, headers=bearer(admin)).status_code == 422
    assert len(seen) == 2

    records = [json.loads(x) for x in open(api_env["ROTATION_API_AUDIT_LOG"]).read().splitlines()]
    assert [(r["method"], r["path"], r["status"], r["key_id"], r["run_ids"]) for r in records[:2]] == [
        ("POST", "/v1/runs", 201, admin_id, ["run-1"]), ("POST", "/v1/runs", 201, admin_id, ["run-2"])]
    assert [r["status"] for r in records[2:]] == [400, 400, 404, 422]
    assert admin not in open(api_env["ROTATION_API_AUDIT_LOG"]).read()


def test_launch_through_a_real_webserver(make_client, demo_store, api_env, tmp_path):
    """The demo definitions in ``dagster-webserver`` on its own port and the demo store's instance: the
    launched run is in the instance with the partition tags (no daemon: it waits in the queue)."""
    import os

    import dagster as dg

    from tests.orchestration.conftest import ROOT
    from tests.ui.services import dagster_services, graphql

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env.update({k: v for k, v in demo_store["env"].items()})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with dagster_services(env, demo_store["home"]) as port:
        client = make_client(ROTATION_API_DAGSTER_URL=f"http://127.0.0.1:{port}")
        _, admin = add_key(client, "admin")
        r = client.post("/v1/runs", json={"pool": "OTHER", "sessions": [SESSION]}, headers=bearer(admin))
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        got = graphql(port, """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId jobName
            status tags { key value } } } }""", {"id": run_id})["runOrError"]
        assert got["__typename"] == "Run" and got["jobName"] == "daily"
        tags = {t["key"]: t["value"] for t in got["tags"]}
        assert tags["dagster/partition"] == f"OTHER|{SESSION}" and tags["rotation/writes"] == "pool:OTHER"
        with dg.DagsterInstance.from_config(str(demo_store["home"])) as instance:
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.tags["rotation/launched_by"].startswith("api:")
            instance.report_run_canceled(run)  # leave no queued run behind for the other tests
