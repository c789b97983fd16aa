"""Where the compiled numba kernels are cached, and what a process compiled or loaded.

Every kernel of the library is ``@njit(cache=True)``: compiled once, written to an on-disk cache and
loaded from it by every later process. Without a cache folder numba writes ``__pycache__`` next to the
source -- in an editable install that is the repository, so ``git clean`` throws the compiled code
away and a read-only install cannot cache at all. :func:`configure` therefore points numba at one
well-known folder (:func:`cache_dir`):

1. ``NUMBA_CACHE_DIR`` when it is set (the Docker image sets ``/opt/dagster/numba-cache``);
2. else ``<environment>/numba-cache`` -- ``.venv/numba-cache`` for ``scripts/demo.sh`` -- when Python
   runs in a virtual environment whose folder is writable: the cache lives as long as the environment
   and goes with it, as it should, since compiled code is only valid for the numba / llvmlite / Python
   versions it was compiled with;
3. else ``$XDG_CACHE_HOME/rotation-platform/numba-<numba version>-py<X.Y>`` (``~/.cache`` by default).

:func:`configure` runs when the kernel modules are imported (``rotation_platform.factors.nb`` and
``rotation_platform.research.nb``), before their first ``@njit`` decorator, so the CLI, the Dagster
webserver, daemon and code servers, executor subprocesses and the tests all share the folder. It sets
``numba.config.CACHE_DIR`` (read by numba when a ``cache=True`` kernel is decorated) and, when it was
not set, ``NUMBA_CACHE_DIR`` (so child processes agree, and numba's own re-reads of the environment
keep the value). numba keys every entry by the source file and its modification time, the argument
types and the CPU, so a stale entry is never used: an edited kernel compiles again.

:func:`kernel_stats` reports, per kernel dispatcher of the library, the signatures the process holds and
how many were loaded from the cache (hits) or compiled (misses); :func:`index_files` lists the cache's
index files (one per kernel that has been cached).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

__all__ = ["ENV_VAR", "KERNEL_MODULES", "cache_dir", "configure", "index_files", "kernel_stats"]

#: numba's environment variable for the cache folder
ENV_VAR = "NUMBA_CACHE_DIR"
#: the modules of the library that define ``cache=True`` kernels
KERNEL_MODULES = ("rotation_platform.factors.nb", "rotation_platform.research.nb",
                  "rotation_platform.research.baselines")


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _user_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    try:
        numba_version = metadata.version("numba")
    except metadata.PackageNotFoundError:  # pragma: no cover - numba is a hard dependency
        numba_version = "unknown"
    return base / "rotation-platform" / f"numba-{numba_version}-py{sys.version_info[0]}.{sys.version_info[1]}"


def cache_dir(env: dict[str, str] | None = None) -> Path:
    """The folder compiled kernels are cached in (see the module docstring for the order)."""
    environ = os.environ if env is None else env
    explicit = environ.get(ENV_VAR, "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    if sys.prefix != sys.base_prefix and _writable(Path(sys.prefix) / "numba-cache"):
        return Path(sys.prefix).resolve() / "numba-cache"
    return _user_cache()


def configure() -> Path:
    """Point numba's cache at :func:`cache_dir`; returns the folder. Idempotent; call it before the
    kernels are decorated. An explicit ``NUMBA_CACHE_DIR`` is left as it is."""
    import numba

    folder = cache_dir()
    if not os.environ.get(ENV_VAR, "").strip():
        os.environ[ENV_VAR] = str(folder)
    numba.config.CACHE_DIR = os.environ[ENV_VAR]
    return folder


def index_files(folder: Path | None = None) -> dict[str, int]:
    """The cache's index files (``*.nbi``, one per cached kernel), by path relative to ``folder``, with
    their modification time in nanoseconds (numba rewrites an index when it adds a signature)."""
    root = cache_dir() if folder is None else Path(folder)
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*.nbi"))}


def kernel_stats(modules: Iterable[str] = KERNEL_MODULES) -> dict[str, dict[str, object]]:
    """Per kernel (``module.name``) of the imported kernel modules: ``signatures`` (the argument types the
    process holds, as strings), ``hits`` (signatures loaded from the cache) and ``misses`` (compiled).
    A signature compiled only as part of a calling kernel counts where it was compiled."""
    from numba.core.registry import CPUDispatcher

    out: dict[str, dict[str, object]] = {}
    for name in modules:
        module = sys.modules.get(name)
        if module is None:
            continue
        for attr, obj in sorted(vars(module).items()):
            if isinstance(obj, CPUDispatcher) and obj.__module__ == name:
                stats = obj.stats
                out[f"{name}.{attr}"] = {"signatures": [str(s) for s in obj.signatures],
                                         "hits": int(sum(stats.cache_hits.values())),
                                         "misses": int(sum(stats.cache_misses.values()))}
    return out
