"""Load a :class:`PlatformConfig` from YAML, with ``ROTATION_*`` overrides and secrets from the environment.

Rules
-----
* A config file may name ``extends: <other.yaml>`` (relative to itself); the child is deep-merged over
  the parent. Lists are replaced, not merged.
* ``ROTATION_<SECTION>__<KEY>[__<KEY>...]=value`` overrides one key; the value is parsed as a YAML
  scalar or flow collection (``[1, 5, 20]``). Pools are addressed by name:
  ``ROTATION_POOLS__A_SHARE__CAPITAL__TARGET_CAPITAL=8000000``.
* Secrets (fields typed ``SecretStr``) are read only from the environment, e.g.
  ``ROTATION_STORAGE__MYSQL_PASSWORD``; a secret in YAML is an error.
* Relative paths (``data.directory``, ``storage.data_dir``, ``positions.directory``, ``summary.fx``) are relative to
  the folder of the file that wrote them (a path in a file another ``extends`` stays relative to its own file).
  Each must resolve under an allowed root (:mod:`.roots`; ``ROTATION_ALLOWED_ROOTS``).
* ``ROTATION_CONFIG`` names the config file; ``ROTATION_ENV`` and ``ROTATION_HOME`` select the
  deployment and ``ROTATION_FACTORS_WORKERS`` / ``ROTATION_FACTORS_MALLOPT`` tune the factor engine's
  runtime and ``ROTATION_DEBUG`` asks the command lines for full tracebacks (see :data:`RESERVED_ENV`);
  none of them is an override.
* Every error is a :class:`~rotation_platform.errors.ConfigError` naming the file (or environment
  variable), the key path and the reason.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from rotation_platform.config.models import PlatformConfig
from rotation_platform.config.roots import ALLOWED_ROOTS_ENV, check_paths
from rotation_platform.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "RESERVED_ENV",
    "RESERVED_PREFIXES",
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "default_config_path",
    "load_config",
    "config_hash",
    "secret_paths",
]

ENV_PREFIX = "ROTATION_"
#: Variables that select a deployment or tune the runtime; they are not configuration overrides.
RESERVED_ENV = frozenset({"ROTATION_CONFIG", "ROTATION_ENV", "ROTATION_HOME", "ROTATION_DEBUG",
                          "ROTATION_FACTORS_MALLOPT", "ROTATION_FACTORS_WORKERS", ALLOWED_ROOTS_ENV})
#: Prefixes of variables for test and CI tooling (server URLs, ports), of the REST API's own settings
#: (api/settings.py) and of the logs (rotation_platform/observability/logs.py); never overrides.
RESERVED_PREFIXES = ("ROTATION_TEST_", "ROTATION_CI_", "ROTATION_BENCH_", "ROTATION_API_", "ROTATION_LOG_")


def _is_override(var: str) -> bool:
    return var.startswith(ENV_PREFIX) and var not in RESERVED_ENV and not var.startswith(RESERVED_PREFIXES)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "demo.yaml"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("ROTATION_CONFIG") or DEFAULT_CONFIG)


# --------------------------------------------------------------------------------------- YAML reading
class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml_one(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """One YAML file as a mapping (its ``extends`` key kept)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(str(path), [("extends", "circular 'extends': " + " -> ".join(map(str, chain + (path,))))])
    if not path.is_file():
        where = str(chain[-1]) if chain else str(path)
        what = "is a folder, not a config file" if path.is_dir() else "config file not found"
        hint = None if chain else "give an existing YAML file with --config or ROTATION_CONFIG"
        raise ConfigError(where, [("extends" if chain else "<file>", f"{what}: {path}")], hint=hint)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506  # nosec B506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context and context != problem else problem
        raise ConfigError(str(path), [(where, f"YAML syntax error: {detail}")],
                          hint="fix the YAML at that line") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [("<file>", f"not UTF-8 text: {exc}")],
                          hint="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(str(path), [("<file>", f"cannot read the file: {exc.strerror or exc}")]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(str(path), [("<root>", f"expected a mapping at the top level, got {type(doc).__name__}")])
    return doc


def _read_config_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """``path`` with its ``extends`` chain merged, every relative path resolved against the folder of
    the file that wrote it (a ``data_dir: ../data`` in ``configs/base.yaml`` means the same folder for
    every file that extends it)."""
    path = path.resolve()
    doc = _read_yaml_one(path, chain)
    parent = doc.pop("extends", None)
    _reject_secrets_in_yaml(doc, str(path))
    _resolve_paths(doc, path.parent)
    if parent is None:
        return doc
    if not isinstance(parent, str):
        raise ConfigError(str(path), [("extends", "must be a relative file name")])
    base = _read_config_file(path.parent / parent, chain + (path,))
    return _deep_merge(base, doc)


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -------------------------------------------------------------------------------------------- secrets
def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unwrap(arg)]
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return [annotation]


def secret_paths(model: type[BaseModel] = PlatformConfig, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of every secret field (``SecretStr``) below ``model``."""
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        for arg in _unwrap(field.annotation):
            if arg is SecretStr:
                paths.append(prefix + (name,))
            elif isinstance(arg, type) and issubclass(arg, BaseModel):
                paths.extend(secret_paths(arg, prefix + (name,)))
    return paths


def _env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(p.upper() for p in path)


def _reject_secrets_in_yaml(doc: dict, file: str) -> None:
    problems = []
    for path in secret_paths():
        node: Any = doc
        for part in path:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            problems.append((".".join(path), f"secrets are read only from the environment "
                                             f"(set {_env_name(path)}); remove it from the file"))
    if problems:
        raise ConfigError(file, problems)


# -------------------------------------------------------------------------------------- env overrides
def _parse_env_value(var: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"environment variable {var}", [(var, f"cannot parse value {raw!r} as YAML: {problem}")],
                          hint="give a number, a word or a flow list such as [1, 5, 20]") from None


def _apply_override(doc: dict, parts: list[str], value: Any, var: str) -> None:
    node: Any = doc
    walked: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            # list of named items (pools): address by name, case-insensitive
            match = [item for item in node if isinstance(item, dict) and str(item.get("name", "")).lower() == part]
            if not match:
                names = [item.get("name") for item in node if isinstance(item, dict)]
                raise ConfigError(f"environment variable {var}",
                                  [(".".join(walked + [part]), f"no item named {part!r}; known: {names}")])
            if last:
                raise ConfigError(f"environment variable {var}",
                                  [(".".join(walked + [part]), "cannot replace a whole list item; name a key of it")])
            node = match[0]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"environment variable {var}",
                              [(".".join(walked), f"is a {type(node).__name__}, not a section")])
        walked.append(part)


def _apply_env(doc: dict, env: Mapping[str, str]) -> dict:
    doc = copy.deepcopy(doc)
    secrets = {_env_name(p): p for p in secret_paths()}
    for var in sorted(env):
        if not _is_override(var):
            continue
        raw = env[var]
        if var in secrets:
            _apply_override(doc, list(secrets[var]), raw, var)  # secrets are kept verbatim
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            raise ConfigError(f"environment variable {var}", [(var, "empty key segment (use '__' between keys)")])
        _apply_override(doc, parts, _parse_env_value(var, raw), var)
    return doc


# ----------------------------------------------------------------------------------------- paths
PATH_KEYS = (("data", "directory"), ("storage", "data_dir"), ("positions", "directory"), ("summary", "fx"))


def _resolve_one(value: object, base: Path) -> object:
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def _resolve_paths(doc: dict, base: Path) -> None:
    """Relative paths in a config file are relative to that file's folder (overrides: to the cwd). A key
    may hold one path or a mapping of names to paths (``summary.fx``)."""
    for section, key in PATH_KEYS:
        node = doc.get(section)
        if not isinstance(node, dict) or key not in node:
            continue
        value = node[key]
        if isinstance(value, dict):
            node[key] = {name: _resolve_one(v, base) for name, v in value.items()}
        else:
            node[key] = _resolve_one(value, base)


# ----------------------------------------------------------------------------------------- public API
def _loc_to_path(loc: tuple, doc: dict) -> str:
    """Turn a pydantic error location into a key path; list indices of named items show the name."""
    parts: list[str] = []
    node: Any = doc
    for item in loc:
        if isinstance(item, int) and isinstance(node, list):
            name = node[item].get("name") if item < len(node) and isinstance(node[item], dict) else None
            parts.append(f"[{item}]" if name is None else f"[{item}:{name}]")
            node = node[item] if item < len(node) else None
        else:
            if not isinstance(item, str) or item.startswith(("function-", "function_")):
                continue
            parts.append(("." if parts else "") + item)
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The configuration model holding the key at pydantic location ``loc`` (its last item)."""
    model: Any = PlatformConfig
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or item not in model.model_fields:
            return None
        found = None
        for arg in _unwrap(model.model_fields[item].annotation):
            for inner in [arg, *typing.get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found = inner
        model = found
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unknown_key_reason(loc: tuple) -> str:
    model = _model_at(loc)
    reason = "unknown key (not part of the configuration schema)"
    if model is None or not loc or not isinstance(loc[-1], str):
        return reason
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    if close:
        return f"{reason}; did you mean {close[0]!r}?"
    return f"{reason}; known keys here: {', '.join(model.model_fields)}"


def _norm_path(path: str) -> str:
    """A key path as ``a.b.c`` in lower case (list items by name), to match it to an override."""
    import re

    path = re.sub(r"\[\d+:([^\]]+)\]", r".\1", path)
    path = re.sub(r"\[\d+\]", "", path)
    return path.strip(".").lower()


def _override_of(key: str, env: Mapping[str, str]) -> str | None:
    """The override variable that set ``key`` (or a section above it), if one did."""
    target = _norm_path(key)
    secrets = {_env_name(p) for p in secret_paths()}
    for var in sorted(env):
        if not _is_override(var):
            continue
        path = ".".join(p.lower() for p in var[len(ENV_PREFIX):].split("__"))
        if target == path or target.startswith(path + "."):
            return var if var in secrets else f"{var}={_without_password(env[var])!r}"
    return None


def _without_password(value: str) -> str:
    """``value`` as an error may show it: a URL's password (``scheme://user:pw@host``) replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(value)
        if not parts.password:
            return value
    except ValueError:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> PlatformConfig:
    """Load and validate the platform configuration.

    ``path`` defaults to ``$ROTATION_CONFIG`` or ``configs/demo.yaml``; ``env`` defaults to ``os.environ``.
    """
    env = dict(os.environ if env is None else env)
    file = Path(path) if path is not None else default_config_path(env)
    doc = _read_config_file(file)
    doc = _apply_env(doc, env)
    check_paths(doc, PATH_KEYS, file, env, ENV_PREFIX)
    try:
        config = PlatformConfig.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            key = _loc_to_path(tuple(err["loc"]), doc)
            msg = str(err["msg"]).removeprefix("Value error, ")  # the validators' own words
            if err["type"] == "extra_forbidden":
                msg = _unknown_key_reason(tuple(err["loc"]))
            elif err["type"] == "missing":
                msg = "required key is missing"
            source = _override_of(key, env) if key else None
            if source:
                msg = f"{msg} (set by {source})"
            problems.append((key, msg))
        overridden = sorted(v for v in env if _is_override(v))
        where = str(file) + (f" (with overrides {', '.join(overridden)})" if overridden else "")
        raise ConfigError(where, problems) from None
    from rotation_platform.calendars import configure_calendars

    configure_calendars(config)  # every calendar of this process knows the config's calendar starts
    return config


def config_hash(config: PlatformConfig, without: tuple[str, ...] = ()) -> str:
    """SHA-256 of the resolved configuration, secrets and the top-level sections ``without`` excluded;
    recorded with every output."""
    data = config.model_dump(mode="json")
    for section in without:
        data.pop(section, None)
    for path in secret_paths():
        node = data
        for part in path[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
