"""Launch a pool's run (one session) or single-run backfill (a range) through the Dagster webserver's
GraphQL API (``ROTATION_API_DAGSTER_URL``): the ``launchRun`` mutation on the pool's daily job with the
partition tags a launch from the UI gives -- ``dagster/partition`` (``POOL|YYYY-MM-DD``) for one session,
``dagster/asset_partition_range_start`` / ``_end`` for a range (one run computes it, docs/orchestration.md)
-- and ``rotation/writes = pool:<POOL>``, so the run queue keeps one run per pool in progress.
The daemon's run queue then starts it. Nothing is computed in the API process.
"""

from __future__ import annotations

from typing import Any

import requests

__all__ = ["LAUNCH_RUN", "LaunchError", "launch_params", "launch"]

LAUNCH_RUN = """mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on PresetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
  }
}"""


class LaunchError(RuntimeError):
    """The webserver refused the launch or did not answer (the message says which and why)."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


def launch_params(location: str, job: str, pool: str, sessions: list[str], tags: dict[str, str]) -> dict[str, Any]:
    if len(sessions) == 1:
        part = {"dagster/partition": f"{pool}|{sessions[0]}", "dagster/partition/pool": pool,
                "dagster/partition/session": sessions[0]}
    else:
        part = {"dagster/asset_partition_range_start": f"{pool}|{sessions[0]}",
                "dagster/asset_partition_range_end": f"{pool}|{sessions[-1]}"}
    # one in-progress run per pool (configs/dagster.yaml's tag_concurrency_limits), for a range too
    all_tags = {**part, "rotation/writes": f"pool:{pool}", **tags}
    return {"selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job},
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]}}


def launch(url: str, params: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send the mutation; ``{"run_id", "status"}`` of the launched run, else :class:`LaunchError`."""
    try:
        response = requests.post(f"{url}/graphql", json={"query": LAUNCH_RUN, "variables": {"executionParams": params}},
                                 timeout=timeout)
    except requests.RequestException as exc:
        raise LaunchError(f"the Dagster webserver at {url} did not answer ({type(exc).__name__}); start it "
                          "(scripts/ui.sh) or set ROTATION_API_DAGSTER_URL", 503) from None
    if response.status_code != 200:
        raise LaunchError(f"the Dagster webserver at {url} answered HTTP {response.status_code}: "
                          f"{response.text[:200]}")
    body = response.json()
    if body.get("errors"):
        raise LaunchError(f"the Dagster webserver refused the launch: {body['errors'][0].get('message')}")
    result = (body.get("data") or {}).get("launchRun") or {}
    if result.get("__typename") != "LaunchRunSuccess":
        why = result.get("message") or "; ".join(e.get("message", "") for e in result.get("errors", [])) or \
            result.get("__typename")
        raise LaunchError(f"the Dagster webserver refused the launch ({result.get('__typename')}): {why}", 422)
    run = result["run"]
    return {"run_id": run["runId"], "status": run["status"]}
