"""Who chooses where files go and which config runs: not a run's config (the launchpad), and no path
outside the allowed roots; no price file reached through a link out of the price folder."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from definitions import build_defs
from resources.definitions import build_resources
from resources.platform import PlatformResource
from resources.stores import StoreResource
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.config.roots import REPO_ROOT, SHARED_DATA, allowed_roots
from rotation_platform.data.sources.directory import DirectorySource
from rotation_platform.errors import ConfigError, DataSourceError

DEMO = CONFIG_DIR / "demo.yaml"
PLACES = {"base_dir", "config_path", "url", "lock_dir", "namespace", "database", "code_version"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in [v for v in os.environ if v.startswith("ROTATION_") and v != "ROTATION_ENV"]:
        monkeypatch.delenv(var)


def _resource_fields(job: dg.JobDefinition) -> dict[str, set[str]]:
    resources = job.run_config_schema.config_type.fields["resources"].config_type
    out = {}
    for name, field in resources.fields.items():
        config = field.config_type.fields.get("config")
        out[name] = set(config.config_type.fields) if config is not None else set()
    return out


@dg.asset
def probe(platform: PlatformResource, storage: StoreResource) -> dict:
    return {"config": platform.config.name}


@pytest.mark.parametrize("backend,cache", [("local", False), ("local", True), ("influxdb", True)])
def test_run_config_cannot_choose_paths_servers_or_the_config(backend, cache, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROTATION_STORAGE__BACKEND", backend)
    monkeypatch.setenv("ROTATION_STORAGE__REDIS_CACHE", str(cache).lower())
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ROTATION_STORAGE__REDIS_PASSWORD", "redis-pw")
    resources = build_resources(env="test", config_path=DEMO)
    for job in (build_defs(DEMO, env="test").resolve_job_def("daily"),
                dg.Definitions(assets=[probe], resources=resources).resolve_implicit_global_asset_job_def()):
        fields = _resource_fields(job)
        assert set(fields) >= {"platform", "io_manager", "storage"}
        for name, keys in fields.items():
            assert not keys & PLACES, f"run config may set {sorted(keys & PLACES)} of resource {name}"
            assert keys <= {"password", "token"}, (name, keys)  # secrets only, given as EnvVar
    # the values are still there, fixed by the deployment
    assert resources["platform"].config_path == str(DEMO.resolve())
    assert resources["platform"].config.name == load_config(DEMO).name
    if backend == "local" and not cache:
        assert resources["io_manager"].base_dir == str(tmp_path / "data")
    else:
        assert isinstance(resources["io_manager"].cache.password, dg.EnvVar)


def test_a_run_config_naming_base_dir_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path / "data"))
    evil = tmp_path / "evil"
    resources = build_resources(env="test", config_path=DEMO)
    for resource, key, value in (("io_manager", "base_dir", str(evil)), ("platform", "config_path", "/etc/x.yaml")):
        with pytest.raises(dg.DagsterInvalidConfigError, match=f'unexpected config entry "{key}"'):
            dg.materialize([probe], resources=resources,
                           run_config={"resources": {resource: {"config": {key: value}}}})
    assert not evil.exists()
    result = dg.materialize([probe], resources=resources)  # and without it the run works
    assert result.success and result.output_for_node("probe") == {"config": load_config(DEMO).name}
    assert (tmp_path / "data" / "probe").exists()


def _config(tmp_path: Path, **sections) -> Path:
    doc = yaml.safe_load(DEMO.read_text())
    doc.pop("extends", None)
    base = yaml.safe_load((CONFIG_DIR / "base.yaml").read_text())
    for key, value in doc.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values}
    base.setdefault("storage", {})["data_dir"] = "data"
    path = tmp_path / "conf" / "c.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(base))
    return path


def test_default_roots_keep_the_repository_configs_working() -> None:
    roots = allowed_roots(CONFIG_DIR / "cn_etf.yaml", {})
    assert CONFIG_DIR in roots and REPO_ROOT in roots and SHARED_DATA.resolve() in roots
    config = load_config(CONFIG_DIR / "cn_etf.yaml", env={})
    assert config.data.directory.resolve().is_relative_to(SHARED_DATA.resolve())
    assert load_config(DEMO, env={}).storage.data_dir.is_relative_to(REPO_ROOT)


def test_paths_outside_the_roots_are_refused_naming_key_and_roots(tmp_path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    path = _config(tmp_path, data={"source": "directory", "directory": str(allowed / "prices")})
    env = {"ROTATION_ALLOWED_ROOTS": str(allowed)}
    config = load_config(path, env=env)  # the config folder and the listed root
    assert config.data.directory == allowed / "prices" and config.storage.data_dir == path.parent / "data"

    for key, var, value in (("storage.data_dir", "ROTATION_STORAGE__DATA_DIR", str(tmp_path / "elsewhere")),
                            ("data.directory", "ROTATION_DATA__DIRECTORY", "/etc"),
                            ("positions.directory", "ROTATION_POSITIONS__DIRECTORY", str(allowed / ".." / "x"))):
        with pytest.raises(ConfigError) as info:
            load_config(path, env={**env, var: value, "ROTATION_POSITIONS__SOURCE": "directory"})
        (problem,) = info.value.problems
        assert problem[0] == key
        assert f"(set by {var})" in problem[1] and "is outside the allowed folders" in problem[1]
        assert str(path.parent) in problem[1] and str(allowed) in problem[1]
        assert "ROTATION_ALLOWED_ROOTS" in str(info.value)

    # a link inside a root that leads out of it counts where it leads
    (allowed / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(ConfigError, match=r"data.directory: .*link -> .*outside .*is outside the allowed folders"):
        load_config(path, env={**env, "ROTATION_DATA__DIRECTORY": str(allowed / "link")})
    with pytest.raises(ConfigError, match="ROTATION_ALLOWED_ROOTS: 'rel/dir' is not an absolute folder"):
        load_config(path, env={"ROTATION_ALLOWED_ROOTS": "rel/dir"})


PRICES = ("trade_date,open,high,low,close,volume,amount\n"
          "2024-01-02,1.0,1.1,0.9,1.05,1000,105000\n2024-01-03,1.05,1.1,1.0,1.08,1200,129600\n")


def test_price_files_linked_out_of_the_folder_are_refused(tmp_path) -> None:
    folder, outside = tmp_path / "prices", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "510300.csv").write_text(PRICES)
    (folder / "real").mkdir()
    (folder / "real" / "159915.csv").write_text(PRICES)
    (folder / "159915.csv").symlink_to(folder / "real" / "159915.csv")  # a link within the folder is fine
    (outside / "510500.csv").write_text(PRICES)
    (folder / "510500.csv").symlink_to(outside / "510500.csv")
    source = DirectorySource(folder)
    assert set(source.read(["510300", "159915"])) == {"510300", "159915"}
    with pytest.raises(DataSourceError) as info:
        source.read(["510300", "510500"])
    message = str(info.value)
    assert "\n" not in message
    assert str(folder / "510500.csv") in message and str(outside / "510500.csv") in message
    assert "outside the price folder" in message

    (outside / "510300_hfq_factor.csv").write_text("trade_date,hfq_factor\n2024-01-02,1.0\n")
    (folder / "510300_hfq_factor.csv").symlink_to(outside / "510300_hfq_factor.csv")
    with pytest.raises(DataSourceError, match=r"510300_hfq_factor.csv is a link to .*outside"):
        source.corporate_actions(["510300"])


def test_dingtalk_webhook_must_be_a_web_address() -> None:
    """urllib would open a file: or ftp: 'webhook' as well; the config refuses it without echoing it."""
    for url in ("file:///etc/passwd?access_token=tok-123", "ftp://robot.example/send?access_token=tok-123"):
        with pytest.raises(ConfigError, match="must be an http") as info:
            load_config(DEMO, env={"ROTATION_NOTIFICATIONS__DINGTALK__WEBHOOK": url})
        assert "tok-123" not in str(info.value)
    ok = "https://oapi.dingtalk.com/robot/send?access_token=tok-123"
    assert load_config(DEMO, env={"ROTATION_NOTIFICATIONS__DINGTALK__WEBHOOK": ok}).notifications.dingtalk.webhook
