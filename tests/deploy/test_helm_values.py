"""deploy/helm/values.yaml (K8s run launcher) and deploy/helm/values-celery-k8s.yaml (Celery run launcher) use
only keys the official Dagster chart (dagster/dagster) declares, name the pinned Dagster release's images, and
carry no secret.

The schema is the chart's own ``values.schema.json``, unchanged:
``tests/deploy/fixtures/dagster-helm-pre1.12.9-bdb8547.values.schema.json`` (github.com/dagster-io/dagster,
``helm/dagster/values.schema.json`` at commit bdb8547fab497826eeec292bc160b549a0a329ef, Apache-2.0). It is
not the 1.13.27 release's copy, which could not be read here, but an older one (before 1.12.9); the
``.SOURCE.md`` file next to it says so and how to replace it.

Two checks:

* **as the chart has it** -- the schema as generated, with two changes that follow from how Helm uses it:
  ``required`` is dropped (Helm validates a values file merged onto the chart's own values.yaml, which
  supplies everything required), and references to Kubernetes' schemas (kubernetesjsonschema.dev) are
  cut, leaving the types written next to them (those values are Kubernetes objects the chart passes on).
  The chart closes many sections (``additionalProperties: false``: the webserver, the daemon, the run
  launchers' configs, the Celery worker queues), so a misspelt key there fails.
* **strict** -- the same, with every object that declares properties closed: a misspelt key fails anywhere,
  also at the top level and in the user deployments, which the chart leaves open.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "deploy" / "fixtures"
SCHEMA_FILE = FIXTURES / "dagster-helm-pre1.12.9-bdb8547.values.schema.json"
SOURCE_FILE = FIXTURES / "dagster-helm-pre1.12.9-bdb8547.SOURCE.md"
VALUES_FILES = {
    "k8s": ROOT / "deploy" / "helm" / "values.yaml",
    "celery-k8s": ROOT / "deploy" / "helm" / "values-celery-k8s.yaml",
}
SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
VALUES = {name: yaml.safe_load(path.read_text(encoding="utf-8")) for name, path in VALUES_FILES.items()}


def _prepare(node, strict: bool):
    """The schema with ``required`` dropped and external references cut; with ``strict`` every object closed."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "required" and isinstance(value, list):
                continue
            if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                continue
            out[key] = _prepare(value, strict)
        if strict and out.get("type") == "object" and out.get("properties") and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_prepare(item, strict) for item in node]
    return node


VALIDATORS = {strict: jsonschema.Draft7Validator(_prepare(SCHEMA, strict)) for strict in (False, True)}


def _errors(values: dict, strict: bool) -> list[str]:
    """Every violation, the branches of an ``anyOf`` included (the null branch of an optional section aside)."""
    out: list[str] = []

    def add(error) -> None:
        if error.context:
            for sub in error.context:
                if not (sub.validator == "type" and sub.validator_value == "null"):
                    add(sub)
            return
        out.append(f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}")

    for error in VALIDATORS[strict].iter_errors(values):
        add(error)
    return out


def _dagster_pin() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (pin,) = [d.split("==", 1)[1] for d in project["dependencies"] if re.match(r"dagster==", d)]
    return pin


def _images(node, path=""):
    """Every ``image`` mapping in the values, by its path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, dict):
                yield f"{path}{key}", value
            else:
                yield from _images(value, f"{path}{key}.")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _images(item, f"{path}{i}.")


def test_fixture_is_the_charts_schema_as_recorded() -> None:
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest in SOURCE_FILE.read_text(encoding="utf-8")
    assert SCHEMA["title"] == "DagsterHelmValues" and SCHEMA["description"] == "@generated"
    assert list(SCHEMA["properties"]) == [
        "dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
        "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
        "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
        "telemetry", "serviceAccount", "global", "retention", "additionalInstanceConfig",
    ]
    assert SCHEMA["definitions"]["RunLauncherType"]["enum"] == ["CeleryK8sRunLauncher", "K8sRunLauncher",
                                                                "CustomRunLauncher"]
    # every reference inside the file resolves
    refs = set(re.findall(r'"\$ref": "#/definitions/([^"]+)"', SCHEMA_FILE.read_text(encoding="utf-8")))
    assert refs <= set(SCHEMA["definitions"]), refs - set(SCHEMA["definitions"])
    # the chart closes these sections itself
    for name in ("Webserver", "Daemon", "CeleryK8sRunLauncherConfig", "K8sRunLauncherConfig", "CeleryWorkerQueue",
                 "RunLauncher"):
        assert SCHEMA["definitions"][name]["additionalProperties"] is False, name


@pytest.mark.parametrize("strict", [False, True], ids=["as-the-chart-has-it", "strict"])
@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_values_follow_the_chart_schema(name, strict) -> None:
    assert _errors(VALUES[name], strict) == []


def test_the_k8s_values_use_the_k8s_run_launcher() -> None:
    values = VALUES["k8s"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(values["runLauncher"]["config"]) == {"k8sRunLauncher"}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "rotation-secrets"} in launcher["envSecrets"]
    assert values["rabbitmq"]["enabled"] is False and values["redis"]["enabled"] is False
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["env"]["ROTATION_ORCHESTRATION__EXECUTOR"] in {"in_process", "multiprocess"}


def test_the_celery_values_use_the_celery_run_launcher_with_external_broker_and_backend() -> None:
    values = VALUES["celery-k8s"]
    assert values["runLauncher"]["type"] == "CeleryK8sRunLauncher"
    celery = values["runLauncher"]["config"]["celeryK8sRunLauncher"]
    assert [q["name"] for q in celery["workerQueues"]] == ["dagster"]
    assert all(q["replicaCount"] >= 1 for q in celery["workerQueues"])
    assert celery["configSource"]["task_acks_late"] is True
    assert celery["configSource"]["worker_prefetch_multiplier"] == 1
    # the broker and backend URLs (with their passwords) come from a secret, not from chart-built ones
    assert values["generateCeleryConfigSecret"] is False
    assert values["rabbitmq"]["enabled"] is False and values["redis"]["enabled"] is False


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_both_files_deploy_the_same_code_server(name) -> None:
    (deployment,) = VALUES[name]["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"][:2] == ["-m", "definitions"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert {"name": "rotation-secrets"} in deployment["envSecrets"]
    assert VALUES[name]["generatePostgresqlPasswordSecret"] is False
    (other,) = VALUES["k8s"]["dagster-user-deployments"]["deployments"]
    assert deployment["image"] == other["image"]


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_image_tags_match_the_pins(name) -> None:
    pin = _dagster_pin()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    images = dict(_images(VALUES[name]))
    dagster_images = {p: i for p, i in images.items() if i["repository"].startswith("docker.io/dagster/")}
    assert {"dagsterWebserver.image", "dagsterDaemon.image"} <= set(dagster_images)
    assert {p: i["tag"] for p, i in dagster_images.items()} == {p: pin for p in dagster_images}
    ours = {p: i["tag"] for p, i in images.items() if p not in dagster_images}
    assert ours and set(ours.values()) == {version}, ours
    # the install command in the file's header names the same chart release
    assert f"--version {pin}" in VALUES_FILES[name].read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_no_secret_in_the_values(name) -> None:
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if re.search(r"password|token|secret|auth", str(key), re.I) and not isinstance(value, (bool, list)):
                    found.append(f"{path}{key}")
                walk(value, f"{path}{key}.")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}{i}.")
        elif isinstance(node, str) and re.search(r"://[^/@\s]*:[^/@\s]+@", node):
            found.append(path.rstrip("."))  # a URL with a password

    walk(VALUES[name], "")
    assert found == []


# a misspelt key in a section the chart itself closes: fails as the chart has it
CLOSED_BY_THE_CHART = [
    ("celery-k8s", ("runLauncher", "config", "celeryK8sRunLauncher"), "workerQueue"),
    ("celery-k8s", ("runLauncher", "config", "celeryK8sRunLauncher", "workerQueues", 0), "replicas"),
    ("k8s", ("runLauncher", "config", "k8sRunLauncher"), "envSecret"),
    ("k8s", ("runLauncher",), "configs"),
    ("k8s", ("dagsterWebserver",), "imageTag"),
    ("k8s", ("dagsterDaemon",), "envSecret"),
]
# a misspelt key in a section the chart leaves open: only the strict check finds it
OPEN_IN_THE_CHART = [
    ("k8s", (), "runLauncherr"),
    ("celery-k8s", ("dagster-user-deployments", "deployments", 0), "envSecret"),
    ("celery-k8s", ("postgresql",), "postgresqlPort"),
    ("k8s", ("dagster-user-deployments",), "deployment"),
]


def _with_key(name: str, path: tuple, key: str) -> dict:
    values = copy.deepcopy(VALUES[name])
    node = values
    for part in path:
        node = node[part]
    node[key] = "x"
    return values


def _names_the_key(errors: list[str], key: str) -> bool:
    return any(repr(key) in e and "not allowed" in e for e in errors)


@pytest.mark.parametrize("name, path, key", CLOSED_BY_THE_CHART)
def test_a_misspelt_key_fails_where_the_chart_closes_the_section(name, path, key) -> None:
    for strict in (False, True):
        errors = _errors(_with_key(name, path, key), strict)
        assert _names_the_key(errors, key), errors


@pytest.mark.parametrize("name, path, key", OPEN_IN_THE_CHART)
def test_a_misspelt_key_elsewhere_fails_the_strict_check(name, path, key) -> None:
    values = _with_key(name, path, key)
    assert _errors(values, strict=False) == []  # what Helm would accept
    assert _names_the_key(_errors(values, strict=True), key)


def test_a_wrong_type_or_value_fails() -> None:
    values = copy.deepcopy(VALUES["celery-k8s"])
    values["runLauncher"]["config"]["celeryK8sRunLauncher"]["workerQueues"][0]["replicaCount"] = 0
    values["runLauncher"]["type"] = "CeleryRunLauncher"
    values["dagsterWebserver"]["image"]["pullPolicy"] = "Sometimes"
    errors = _errors(values, strict=False)
    assert any(e.startswith("runLauncher.config.celeryK8sRunLauncher.workerQueues.0.replicaCount") for e in errors)
    assert any(e.startswith("runLauncher.type") for e in errors)
    assert any(e.startswith("dagsterWebserver.image.pullPolicy") for e in errors), errors
