"""The deployment files keep the servers private: only the authenticating proxy publishes a port (on
127.0.0.1 unless told otherwise), every password comes from the environment and is required, Redis asks
for one, the image runs as a fixed non-root uid, and the proxy's template is complete."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
DOCKERFILE = (ROOT / "Dockerfile").read_text()
TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"
_REQUIRED = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
_DEFAULT = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):-(?P<default>[^}]*)\}")


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_only_the_proxy_publishes_a_port_on_loopback_by_default() -> None:
    services = COMPOSE["services"]
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert list(published) == ["proxy"], published
    (port,) = published["proxy"]
    parts = re.fullmatch(r"(\$\{[^}]+\}):(\$\{[^}]+\}):(\d+)", port)
    assert parts, f"{port!r}: publish as BIND:PORT:CONTAINER_PORT with the bind address given"
    bind, host_port, container_port = parts.groups()
    assert _DEFAULT.fullmatch(bind)["name"] == "ROTATION_UI_BIND"
    assert _DEFAULT.fullmatch(bind)["default"] == "127.0.0.1"
    assert _DEFAULT.fullmatch(host_port)["name"] == "ROTATION_UI_PORT"
    assert container_port == _environment(services["proxy"])["ROTATION_UI_LISTEN"]
    for name, svc in services.items():
        assert "network_mode" not in svc, name  # host networking would publish every port
        assert svc.get("networks"), f"{name} must name its networks"


def test_servers_sit_on_an_internal_network() -> None:
    services, networks = COMPOSE["services"], COMPOSE["networks"]
    internal = {name for name, net in networks.items() if (net or {}).get("internal")}
    for name in ("postgres", "influxdb", "mysql", "redis", "daemon"):
        assert set(services[name]["networks"]) <= internal, name
    assert set(services["proxy"]["networks"]).isdisjoint(internal)  # it reaches only the webserver
    assert set(services["proxy"]["networks"]) & set(services["webserver"]["networks"])
    for name in ("user_code", "webserver"):
        assert set(services[name]["networks"]) & internal, name


def test_every_password_is_required_from_the_environment() -> None:
    checked = 0
    blocks = [COMPOSE["x-rotation-env"]] + [_environment(s) for s in COMPOSE["services"].values()]
    for env in blocks:
        for key, value in env.items():
            if re.search(r"PASSWORD|TOKEN|AUTH|SECRET", key) and not key.endswith("RANDOM_ROOT_PASSWORD"):
                optional = key.startswith("ROTATION_NOTIFICATIONS__")  # alerts are optional channels
                pattern = r"^\$\{[A-Z0-9_]+:-\}$" if optional else _REQUIRED.pattern
                assert re.match(pattern, str(value)), f"{key}={value!r} must come from the environment"
                checked += 1
    assert checked >= 10
    assert _REQUIRED.match(COMPOSE["secrets"]["ui_htpasswd"]["file"])
    assert not list((ROOT / "deploy").rglob("*htpasswd*"))  # no credentials in the deployment files


def test_redis_requires_the_platform_password() -> None:
    redis = COMPOSE["services"]["redis"]
    script = redis["command"][-1]
    assert re.search(r"^requirepass \$\$REDISCLI_AUTH$", script, re.M)
    assert "redis-server -" in script  # the password reaches the server on stdin, not on its command line
    assert _environment(redis)["REDISCLI_AUTH"] == COMPOSE["x-rotation-env"]["ROTATION_STORAGE__REDIS_PASSWORD"]


def test_image_runs_as_a_fixed_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users, "the Dockerfile must switch to a non-root USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and (not gid or int(gid) >= 1000)
    assert f"--uid {uid}" in DOCKERFILE
    chowned = re.search(r"chown -R \S+ (.+)$", DOCKERFILE, re.M).group(1)
    for folder in ('"$DAGSTER_HOME"', '"$NUMBA_CACHE_DIR"', "/opt/dagster/data"):
        assert folder in chowned
    proxy = COMPOSE["services"]["proxy"]
    assert "unprivileged" in proxy["image"] and proxy["read_only"] is True
    for name, svc in COMPOSE["services"].items():
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert not svc.get("privileged"), name


def test_proxy_template_is_what_compose_renders() -> None:
    proxy = COMPOSE["services"]["proxy"]
    env = _environment(proxy)
    mounted = {v.split(":")[0]: v.split(":")[1] for v in proxy["volumes"]}
    assert mounted["./deploy/nginx/nginx.conf.template"] == "/etc/nginx/templates/nginx.conf.template"
    text = TEMPLATE.read_text()
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    assert placeholders == {"ROTATION_UI_LISTEN", "ROTATION_UI_UPSTREAM", "ROTATION_UI_HTPASSWD", "ROTATION_API_UPSTREAM"}
    assert placeholders <= set(env)
    output = env["NGINX_ENVSUBST_OUTPUT_DIR"]
    command = proxy["command"]
    assert command[command.index("-c") + 1] == f"{output}/nginx.conf"
    assert env["ROTATION_UI_HTPASSWD"] == "/run/secrets/ui_htpasswd"
    assert re.search(r"^\s*auth_basic \"[^\"]+\";", text, re.M)
