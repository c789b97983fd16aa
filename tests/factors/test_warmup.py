"""The numba warm-up: it fills the cache folder it is given with every kernel the daily job uses, and a
real run after it compiles nothing; the cache folder is the well-known one; one signature per kernel.

The processes run with their own ``NUMBA_CACHE_DIR`` (a temporary folder), so they start from an empty
cache whatever the machine's cache holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform import numba_cache

ROOT = Path(__file__).resolve().parents[2]
SESSION = "2024-12-31"  # a closed session of the demo's synthetic data
POOL = "OTHER"  # the demo's smallest pool

#: runs a module as ``__main__`` and writes, at exit, the kernel stats and the compile events it saw
_PROBE = r"""
import atexit, json, runpy, sys
from numba.core import event
compiled = []
class Listener(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Listener())
out, module, args = sys.argv[1], sys.argv[2], sys.argv[3:]
def dump():
    from rotation_platform import numba_cache
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"kernels": numba_cache.kernel_stats(), "compiled": compiled}, f)
atexit.register(dump)
sys.argv = [module, *args]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _env(tmp: Path, cache: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "configs" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "NUMBA_"))}
    env.update({"NUMBA_CACHE_DIR": str(cache), "DAGSTER_HOME": str(home),
                "ROTATION_CONFIG": str(ROOT / "configs" / "demo.yaml"),
                "ROTATION_STORAGE__DATA_DIR": str(tmp / "data"), "ROTATION_DATA__SYNTHETIC__END": SESSION,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    return env


def _probe(out: Path, module: str, args: list[str], env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{module} {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"stdout": proc.stdout, **json.loads(out.read_text(encoding="utf-8"))}


def _index_entry(kernel: str, index: dict[str, int]) -> bool:
    """Whether the cache holds an index file for ``module.name`` (numba names it ``<file>.<name>-<line>``)."""
    module, name = kernel.rsplit(".", 1)
    package, stem = module.split(".")[-2:]
    return any(path.split("/")[-2].startswith(f"{package}_") and path.split("/")[-1].startswith(f"{stem}.{name}-")
               for path in index)


def test_warm_up_fills_the_cache_and_the_real_run_compiles_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    env = _env(tmp_path, cache)

    warm = _probe(tmp_path / "warm.json", "rotation_platform.warmup",
                  ["--pools", POOL, "--json", str(tmp_path / "report.json")], env)
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["cache_dir"] == str(cache.resolve())
    assert f"cached in {cache.resolve()}" in warm["stdout"].splitlines()[0]
    assert report["compiled"] > 0 and report["cached"] == 0
    index = numba_cache.index_files(cache)
    warmed = {k for k, s in warm["kernels"].items() if s["signatures"]}
    # an index entry for every kernel the warm-up compiled, one signature each
    assert warmed and all(_index_entry(k, index) for k in warmed), sorted(warmed)
    assert report["index_files"] == len(index) == len(warmed)
    # one signature per kernel; the lag kernel has its two declared ones (float64 and float32 panels)
    several = {k for k, s in warm["kernels"].items() if len(s["signatures"]) > 1}
    assert several <= {"rotation_platform.factors.nb.lag_scatter_nb"}, several

    real = _probe(tmp_path / "real.json", "jobs.main", ["--session", SESSION, "--pools", POOL], env)
    used = {k: s for k, s in real["kernels"].items() if s["signatures"]}
    assert used, "the real run loaded no kernel"
    # every kernel the real run used was loaded from the cache the warm-up wrote; nothing compiled
    assert real["compiled"] == []
    assert {k: s["misses"] for k, s in used.items() if s["misses"]} == {}
    assert sum(int(s["hits"]) for s in used.values()) == sum(len(s["signatures"]) for s in used.values())
    assert set(used) <= warmed
    assert all(_index_entry(k, index) for k in used)
    assert numba_cache.index_files(cache) == index  # no index rewritten, none added


def test_the_kernel_modules_point_numba_at_the_well_known_folder(tmp_path: Path) -> None:
    """Without NUMBA_CACHE_DIR the kernels are cached in the environment's numba-cache folder (exported to
    child processes); an explicit NUMBA_CACHE_DIR wins."""
    script = ("import os, sys, numba\n"
              "import rotation_platform.research.nb, rotation_platform.factors.nb\n"
              "from rotation_platform import numba_cache\n"
              "print(numba.config.CACHE_DIR); print(os.environ['NUMBA_CACHE_DIR']); print(numba_cache.cache_dir())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    default = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert default.returncode == 0, default.stderr[-3000:]
    expected = str(numba_cache.cache_dir(env={}))
    assert default.stdout.split() == [expected] * 3
    if sys.prefix != sys.base_prefix:  # the project's .venv (scripts/_env.sh)
        assert expected == str(Path(sys.prefix).resolve() / "numba-cache")

    explicit = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "NUMBA_CACHE_DIR": str(tmp_path / "elsewhere")}, timeout=600)
    assert explicit.returncode == 0, explicit.stderr[-3000:]
    assert explicit.stdout.split() == [str(tmp_path / "elsewhere")] * 2 + [str((tmp_path / "elsewhere").resolve())]


def test_cache_dir_order() -> None:
    assert numba_cache.cache_dir({"NUMBA_CACHE_DIR": "/srv/numba"}) == Path("/srv/numba")
    fallback = numba_cache.cache_dir({"NUMBA_CACHE_DIR": "  "})
    assert fallback == numba_cache.cache_dir({})
    assert fallback.name == "numba-cache" or fallback.parent.name == "rotation-platform"


def test_market_hands_the_kernels_writable_float64_arrays() -> None:
    """A read-only view of a pandas frame (copy-on-write) or another dtype would compile the simulation
    kernels for a second signature; the market normalises its arrays instead."""
    from rotation_platform.research.market import Market

    sessions = pd.bdate_range("2024-01-01", periods=4)
    close = np.array([[1.0, 2.0], [1.1, 2.1], [1.2, 2.2], [1.3, 2.3]])
    read_only = close.copy()
    read_only.flags.writeable = False
    market = Market(sessions, ("A", "B"), read_only, read_only, close.astype(np.float32), np.ones((4, 2)),
                    np.zeros((4, 2)), np.zeros((4, 2), dtype=np.int8), np.array([100, 100]))
    for name in ("trade_price", "mark", "close", "split", "dividend", "lots"):
        arr = getattr(market, name)
        assert arr.dtype == np.float64 and arr.flags.c_contiguous and arr.flags.writeable, name
    assert market.ended.dtype == np.bool_ and market.ended.flags.writeable
    np.testing.assert_array_equal(market.mark, close)


def test_lag_kernel_takes_panels_chunks_and_read_only_inputs_with_one_signature() -> None:
    from rotation_platform.factors import nb

    values = np.arange(8, dtype=np.float64).reshape(4, 2)
    rows = np.ascontiguousarray(np.broadcast_to(np.arange(4, dtype=np.int64)[:, None], (4, 2)))
    counts = np.full(2, 4, dtype=np.int64)
    whole = np.empty((4, 2))
    nb.lag_scatter_nb(values, rows, counts, 1, whole)
    wide = np.full((4, 5), -1.0)
    ro = values.copy()
    ro.flags.writeable = False
    nb.lag_scatter_nb(ro, rows, counts, 1, wide[:, 1:3])  # a fund chunk's strided view, read-only input
    np.testing.assert_array_equal(wide[:, 1:3], whole)
    assert (wide[:, [0, 3, 4]] == -1.0).all()
    np.testing.assert_array_equal(whole, [[np.nan, np.nan], [0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    assert nb.lag_scatter_nb.signatures == [tuple(nb.LAG_SCATTER_SIGNATURE.args),
                                           tuple(nb.LAG_SCATTER_SIGNATURE_F32.args)]


def test_stable_argsort_is_numpys_mergesort() -> None:
    """The research kernels' own stable sort gives numpy's mergesort permutation: ties in index order,
    NaN last (so ranks and selections are unchanged)."""
    from rotation_platform.research import nb

    rng = np.random.default_rng(15)
    for n in (0, 1, 2, 3, 7, 64, 97, 250, 1001):
        keys = rng.integers(0, max(2, n // 3), size=n + 5).astype(np.float64)  # many ties
        keys[rng.random(n + 5) < 0.1] = np.nan
        keys[rng.random(n + 5) < 0.05] = -np.inf
        np.testing.assert_array_equal(nb._stable_argsort(keys, n), np.argsort(keys[:n], kind="mergesort"))
