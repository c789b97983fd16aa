"""Configuration: every shipped file loads; broken configs fail with specific, located errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from rotation_platform.config import CONFIG_DIR, PlatformConfig, config_hash, load_config, secret_paths
from rotation_platform.config.models import PoolKind
from rotation_platform.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in CONFIG_DIR.glob("*.yaml") if yaml.safe_load(p.read_text()).get("pools"))


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path, env={})
    assert isinstance(config, PlatformConfig)
    assert config.pool_names == ("A_SHARE", "QDII", "OTHER")
    assert abs(sum(p.summary_weight for p in config.pools) - 1.0) < 1e-12
    a_share, qdii = config.pool("A_SHARE"), config.pool("QDII")
    assert (a_share.summary_weight, qdii.summary_weight) == (0.7, 0.3)
    assert (a_share.capital.target_capital, a_share.capital.max_single_weight, a_share.capital.max_adv_pct) == \
        (7_000_000, 0.25, 0.05)
    assert (qdii.capital.target_capital, qdii.capital.max_single_weight, qdii.capital.max_adv_pct) == \
        (3_000_000, 0.30, 0.03)
    f = config.fuses
    assert (f.min_annual_return, f.max_drawdown, f.min_sharpe, f.min_monthly_win_rate, f.max_annual_turnover,
            f.min_coverage, f.min_effective_factors) == (0.08, -0.30, 0.5, 0.45, 10.0, 0.80, 8)


def test_every_yaml_in_configs_is_valid_yaml_and_base_is_extended() -> None:
    files = sorted(CONFIG_DIR.rglob("*.yaml"))
    assert {p.name for p in files} >= {"base.yaml", "demo.yaml", "cn_etf.yaml"}
    for p in files:
        yaml.safe_load(p.read_text())
    assert len(SHIPPED) == 2


def test_real_pools_match_the_shared_funds() -> None:
    config = load_config(CONFIG_DIR / "cn_etf.yaml", env={})
    symbols = [s for p in config.pools for s in p.symbols]
    assert len(symbols) == 38 and len(set(symbols)) == 38
    assert set(config.pool("QDII").symbols) == {"513100", "513500", "513030", "159920"}
    assert config.data.source == "directory"
    assert config.data.directory == (ROOT.parent / "shared" / "data" / "cn_etf").resolve()
    assert config.pool("A_SHARE").kind is PoolKind.A_SHARE


def test_models_are_frozen_and_forbid_extra() -> None:
    config = load_config(CONFIG_DIR / "demo.yaml", env={})
    with pytest.raises(Exception):
        config.backtest.lot_size = 200  # type: ignore[misc]
    assert config.model_config["extra"] == "forbid"


def test_env_overrides_scalar_list_and_named_pool() -> None:
    env = {
        "ROTATION_BACKTEST__SLIPPAGE_BPS": "7.5",
        "ROTATION_SCREENING__HORIZONS": "[1, 10]",
        "ROTATION_POOLS__QDII__CAPITAL__TARGET_CAPITAL": "4000000",
        "ROTATION_CONFIG": "ignored-by-load_config-when-path-given",
        "ROTATION_FACTORS_WORKERS": "2",  # runtime switches are reserved, not overrides
        "ROTATION_ENV": "local",
        "ROTATION_TEST_INFLUX_URL": "http://127.0.0.1:18086",  # test tooling, not an override
    }
    config = load_config(CONFIG_DIR / "demo.yaml", env=env)
    assert config.backtest.slippage_bps == 7.5
    assert config.screening.horizons == (1, 10)
    assert config.pool("QDII").capital.target_capital == 4_000_000
    assert config_hash(config) != config_hash(load_config(CONFIG_DIR / "demo.yaml", env={}))


def test_secrets_come_from_env_only_and_never_print_or_hash() -> None:
    env = {"ROTATION_STORAGE__MYSQL_PASSWORD": "s3cr3t-pw", "ROTATION_NOTIFICATIONS__DINGTALK__SECRET": "SECabc"}
    config = load_config(CONFIG_DIR / "demo.yaml", env=env)
    assert config.storage.mysql_password.get_secret_value() == "s3cr3t-pw"
    for text in (repr(config), str(config), config.model_dump_json()):
        assert "s3cr3t-pw" not in text and "SECabc" not in text
    assert config_hash(config) == config_hash(load_config(CONFIG_DIR / "demo.yaml", env={}))
    assert ("storage", "mysql_password") in secret_paths()
    assert ("notifications", "email", "password") in secret_paths()


def test_a_refused_url_override_is_shown_without_its_password() -> None:
    env = {"ROTATION_ORCHESTRATION__CELERY__BROKER": "amqp://desk:hunter2-pw@broker:5672//"}
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG_DIR / "demo.yaml", env=env)
    text = str(info.value)
    assert "hunter2-pw" not in text
    assert "orchestration.celery.broker: URL carries a password" in text and "amqp://desk:***@broker:5672//" in text


def test_config_hash_is_stable_and_sensitive() -> None:
    a = load_config(CONFIG_DIR / "demo.yaml", env={})
    b = load_config(CONFIG_DIR / "demo.yaml", env={})
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 64
    c = load_config(CONFIG_DIR / "demo.yaml", env={"ROTATION_FACTORS__LAG": "2"})
    assert config_hash(c) != config_hash(a)


# --------------------------------------------------------------------------------- broken configs
BASE = {
    "name": "t",
    "pools": [
        {"name": "A_SHARE", "kind": "A_SHARE", "summary_weight": 0.7,
         "symbols": ["510300", "510500", "159915", "512100", "512880"],
         "capital": {"target_capital": 7_000_000, "max_single_weight": 0.25, "max_adv_pct": 0.05}},
        {"name": "QDII", "kind": "QDII", "summary_weight": 0.3,
         "symbols": ["513100", "513500", "159941", "513030", "518880"],
         "capital": {"target_capital": 3_000_000, "max_single_weight": 0.3, "max_adv_pct": 0.03}},
    ],
}


def _with(path: str, value):
    import copy

    doc = copy.deepcopy(BASE)
    node = doc
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()

# (id, file text or document, env, expected key path fragment, expected reason fragment)
BROKEN = [
    ("yaml_syntax", "name: t\npools: [\n  - {name: A\n", {}, "line ", "YAML syntax error"),
    ("top_level_list", "- 1\n- 2\n", {}, "<root>", "expected a mapping"),
    ("duplicate_key", "name: t\nname: u\n", {}, "line 2", "duplicate key 'name'"),
    ("unknown_top_key", _with("colour", "red"), {}, "colour", "unknown key"),
    ("unknown_nested_key", _with("backtest", {"comision_rate": 0.001}), {}, "backtest.comision_rate", "unknown key"),
    ("missing_pools", _with("pools", _DELETE), {}, "pools", "required key is missing"),
    ("duplicate_symbols", _with("pools.0.symbols", ["510300", "510300"]), {}, "pools[0:A_SHARE].symbols",
     "duplicate symbols"),
    ("weight_above_one", _with("pools.0.capital.max_single_weight", 1.5), {},
     "pools[0:A_SHARE].capital.max_single_weight", "less than or equal to 1"),
    ("negative_capital", _with("pools.1.capital.target_capital", -5), {}, "pools[1:QDII].capital.target_capital",
     "greater than 0"),
    ("weights_not_one", _with("pools.1.summary_weight", 0.2), {}, "<root>", "must add up to 1"),
    ("symbol_in_two_pools", _with("pools.1.symbols", ["513100", "510300"]), {}, "<root>",
     "symbol 510300 is in pools A_SHARE and QDII"),
    ("benchmark_unknown", _with("pools.0.benchmark", "999999"), {}, "pools[0:A_SHARE]", "benchmark '999999'"),
    ("bad_kind", _with("pools.0.kind", "CRYPTO"), {}, "pools[0:A_SHARE].kind", "A_SHARE"),
    ("bad_symbol", _with("pools.0.symbols", ["51 0300", "510500"]), {}, "pools[0:A_SHARE].symbols[0]",
     "should match pattern"),
    ("unknown_calendar", _with("pools.0.calendar", "XMOON"), {}, "pools[0:A_SHARE].calendar",
     "unknown exchange calendar 'XMOON'"),
    ("lag_zero", _with("factors", {"lag": 0}), {}, "factors.lag", "greater than or equal to 1"),
    ("no_horizons", _with("screening", {"horizons": []}), {}, "screening.horizons", "at least 1 item"),
    ("embargo_too_long", _with("wfo", {"train_sessions": 100, "embargo_sessions": 100}), {}, "wfo",
     "embargo_sessions must be smaller"),
    ("secret_in_yaml", _with("storage", {"mysql_password": "hunter2"}), {}, "storage.mysql_password",
     "ROTATION_STORAGE__MYSQL_PASSWORD"),
    ("password_in_url", _with("storage", {"mysql_url": "mysql+pymysql://root:pw@127.0.0.1/test"}), {},
     "storage.mysql_url", "carries a password"),
    ("directory_without_path", _with("data", {"source": "directory"}), {}, "data", "needs 'directory'"),
    ("lot_size_text", _with("backtest", {"lot_size": "a hundred"}), {}, "backtest.lot_size", "valid integer"),
    ("trade_at_midday", _with("backtest", {"trade_at": "midday"}), {}, "backtest.trade_at", "'open' or 'close'"),
    ("email_without_recipients", _with("notifications", {"email": {"enabled": True}}), {},
     "notifications.email", "no recipients"),
    ("extends_missing", "extends: nowhere.yaml\nname: t\n", {}, "extends", "config file not found"),
    ("env_bad_value", BASE, {"ROTATION_BACKTEST__LOT_SIZE": "abc"}, "backtest.lot_size", "valid integer"),
    ("env_unknown_pool", BASE, {"ROTATION_POOLS__NOPE__CAPITAL__TARGET_CAPITAL": "1"}, "pools.nope",
     "no item named 'nope'"),
    ("env_unknown_key", BASE, {"ROTATION_FACTORS__WINDOWZ": "5"}, "factors.windowz", "unknown key"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_config_gives_specific_error_and_writes_nothing(tmp_path: Path, case) -> None:
    name, content, env, key_fragment, reason_fragment = case
    path = tmp_path / f"{name}.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    err = info.value
    assert str(path) in err.file or name.startswith("env_")
    text = str(err)
    assert key_fragment in text, text
    assert reason_fragment in text, text
    if name.startswith("env_"):
        assert next(iter(env)) in text
    assert _snapshot(tmp_path) == before


def test_corpus_is_large_enough() -> None:
    assert len(BROKEN) >= 15


def test_circular_extends(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular 'extends'"):
        load_config(tmp_path / "a.yaml", env={})


def test_paths_resolve_against_the_file_that_wrote_them(tmp_path: Path) -> None:
    """``storage.data_dir: ../data`` written in a shared base file means the folder next to the base file's
    folder for every file that extends it, wherever that file lives; a path the child writes is its own."""
    shared, team = tmp_path / "shared" / "configs", tmp_path / "team" / "desk"
    shared.mkdir(parents=True)
    team.mkdir(parents=True)
    base = dict(BASE, storage={"data_dir": "../data"}, summary={"fx": {"USD": "fx/usdcny.csv"}})
    (shared / "base.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
    (team / "child.yaml").write_text(yaml.safe_dump({"extends": "../../shared/configs/base.yaml",
                                                     "positions": {"source": "directory",
                                                                   "directory": "positions"}}),
                                     encoding="utf-8")
    env = {"ROTATION_ALLOWED_ROOTS": str(tmp_path)}
    cfg = load_config(team / "child.yaml", env=env)
    assert Path(cfg.storage.data_dir) == (tmp_path / "shared" / "data").resolve()
    assert Path(cfg.summary.fx["USD"]) == (shared / "fx" / "usdcny.csv").resolve()
    assert Path(cfg.positions.directory) == (team / "positions").resolve()
    # the child overrides the base's path: its own folder counts
    (team / "child.yaml").write_text(yaml.safe_dump({"extends": "../../shared/configs/base.yaml",
                                                     "storage": {"data_dir": "store"}}), encoding="utf-8")
    assert Path(load_config(team / "child.yaml", env=env).storage.data_dir) == (team / "store").resolve()


@pytest.mark.parametrize("symbols,fix", [
    (["510300", "510500", "159915", "512100"], "lower screening.min_obs to 4"),
    (["510300", "510500"], "a pool needs at least 3 funds for the factor screen"),
])
def test_a_pool_smaller_than_min_obs_is_a_configuration_error(tmp_path: Path, symbols, fix) -> None:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["pools"][0]["symbols"] = symbols
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text = str(info.value)
    assert f"pool A_SHARE has {len(symbols)} funds but screening.min_obs is 5" in text
    assert fix in text
    doc["screening"] = {"min_obs": max(len(symbols), 3)}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    if len(symbols) >= 3:
        assert load_config(path, env={}).screening.min_obs == len(symbols)
