"""The Dagster layer loads, and the prices asset materialises in-process for each pool."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rotation_platform.config import CONFIG_DIR
from rotation_platform.data.panel import PricePanel
from rotation_platform.storage.files import read_value

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def demo_env(tmp_path, monkeypatch):
    """Demo config with storage in a temporary folder; the synthetic range is fixed for speed."""
    monkeypatch.setenv("ROTATION_CONFIG", str(CONFIG_DIR / "demo.yaml"))
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ROTATION_DATA__SYNTHETIC__END", "2024-12-31")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path


def _fresh_defs():
    for name in list(sys.modules):
        if name == "definitions" or name.split(".")[0] in {"assets", "resources", "jobs"}:
            del sys.modules[name]
    return importlib.import_module("definitions").defs


def test_definitions_validate_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_library_never_imports_dagster() -> None:
    offenders = [str(p) for p in (ROOT / "rotation_platform").rglob("*.py")
                 if any(line.strip().startswith(("import dagster", "from dagster"))
                        for line in p.read_text(encoding="utf-8").splitlines())]
    assert offenders == []


def test_prices_materialise_for_each_pool(demo_env) -> None:
    defs = _fresh_defs()
    job = defs.resolve_job_def("daily")
    with dg.DagsterInstance.get() as instance:
        for pool in ("A_SHARE", "QDII", "OTHER"):
            result = job.execute_in_process(partition_key=pool, instance=instance)
            assert result.success
            panel = result.output_for_node("prices", "prices")
            assert isinstance(panel, PricePanel) and panel.meta["synthetic"] is True
            assert panel.sessions[-1] == __import__("pandas").Timestamp("2024-12-31")
            checks = result.get_asset_check_evaluations()
            assert [c.check_name for c in checks] == ["quality_gate"] and checks[0].passed
            stored = read_value(demo_env / "data" / "prices" / pool)
            assert stored.content_hash() == panel.content_hash()
            assert stored.meta["config_hash"] == panel.meta["config_hash"]
            mats = result.asset_materializations_for_node("prices")
            meta = {m.asset_key.to_user_string(): m.metadata for m in mats}
            assert meta["prices"]["funds"].value == len(panel.symbols)
            assert "data_hash" in meta["prices"] and "config_hash" in meta["prices"]
