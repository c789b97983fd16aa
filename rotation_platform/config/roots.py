"""The folders a configuration may read prices from and write data to.

``data.directory``, ``storage.data_dir`` and ``positions.directory`` must resolve (symbolic links
followed) to a folder under one of the allowed roots:

* always the folder of the loaded config file;
* ``ROTATION_ALLOWED_ROOTS`` set (absolute folders separated by ``os.pathsep``): those folders and
  nothing else -- the deployment sets it to its data volume, so nothing outside it and the config
  folder can be named;
* ``ROTATION_ALLOWED_ROOTS`` unset: the repository (its ``data/`` is the default ``storage.data_dir``),
  the real fund data beside the checkout (``../shared/data``, which ``configs/cn_etf.yaml`` reads) and
  the system temp folder (scratch runs and tests).

A path outside them is a :class:`~rotation_platform.errors.ConfigError` naming the key, the path (and
the override variable that set it) and the roots.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from rotation_platform.errors import ConfigError

__all__ = ["ALLOWED_ROOTS_ENV", "REPO_ROOT", "SHARED_DATA", "allowed_roots", "check_paths"]

ALLOWED_ROOTS_ENV = "ROTATION_ALLOWED_ROOTS"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def allowed_roots(config_file: str | os.PathLike, env: Mapping[str, str]) -> list[Path]:
    """The roots for a config file under an environment (see the module docstring), resolved."""
    roots = [Path(config_file).resolve().parent]
    given = env.get(ALLOWED_ROOTS_ENV, "")
    entries = [e for e in given.split(os.pathsep) if e.strip()]
    if entries:
        for entry in entries:
            if not Path(entry).is_absolute():
                raise ConfigError(f"environment variable {ALLOWED_ROOTS_ENV}",
                                  [(ALLOWED_ROOTS_ENV, f"{entry!r} is not an absolute folder; give absolute "
                                                       f"folders separated by {os.pathsep!r}")])
            roots.append(Path(entry).resolve())
    else:
        roots += [REPO_ROOT, SHARED_DATA.resolve(), Path(tempfile.gettempdir()).resolve()]
    out: list[Path] = []
    for root in roots:
        if root not in out:
            out.append(root)
    return out


def check_paths(doc: Mapping, keys: tuple[tuple[str, str], ...], config_file: str | os.PathLike,
                env: Mapping[str, str], prefix: str = "ROTATION_") -> None:
    """Refuse any path of ``keys`` in the merged config ``doc`` that resolves outside the roots.
    Relative paths left in ``doc`` (from overrides) are relative to the working folder."""
    roots = None
    problems = []
    for section, key in keys:
        node = doc.get(section)
        given = node.get(key) if isinstance(node, Mapping) else None
        # one path, or a mapping of names to paths (summary.fx)
        items = [(f"{section}.{key}.{name}", v) for name, v in given.items()] if isinstance(given, Mapping) \
            else [(f"{section}.{key}", given)]
        for where, value in items:
            if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
                continue
            roots = roots or allowed_roots(config_file, env)
            resolved = Path(value).resolve()
            if any(resolved.is_relative_to(root) for root in roots):
                continue
            var = f"{prefix}{section.upper()}__{key.upper()}"
            source = f" (set by {var})" if var in env else ""
            shown = str(resolved) if str(resolved) == str(value) else f"{value} -> {resolved}"
            problems.append((where, f"{shown}{source} is outside the allowed folders {', '.join(map(str, roots))}"))
    if problems:
        raise ConfigError(str(config_file), problems,
                          hint=f"move it under one of them or list its folder in {ALLOWED_ROOTS_ENV}")
