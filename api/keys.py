"""API keys: stored hashed in a JSON key file, checked in constant time, revocable.

A key reads ``rk_<id>_<secret>``: ``id`` (8 hex digits) names it in the file, the audit log and the
metrics; ``secret`` (43 URL-safe characters, 256 random bits) is shown once, when the key is made, and
stored nowhere. The file keeps per key ``{"id", "name", "role", "scheme", "salt", "hash", "created",
"revoked"}``:

* ``sha256-salt`` -- ``sha256(salt || secret)`` with a random 16-byte salt per key;
* ``hmac-sha256`` -- ``HMAC-SHA256(pepper, salt || secret)`` when ``ROTATION_API_PEPPER`` is set (a
  stolen key file alone then lets nobody test guesses). Such a key is refused when the pepper is missing.

The file is written to a temporary file and renamed into place (mode 0600); the API rereads it when its
modification time changes, so ``python -m api keys revoke`` applies to the next request.
Roles nest: ``viewer`` < ``trader`` < ``admin``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROLES", "ApiKey", "KeyStore", "KeyFileError", "role_allows"]

ROLES = ("viewer", "trader", "admin")
_KEY = re.compile(r"^rk_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")


class KeyFileError(ValueError):
    """The key file cannot be read or names an unknown key/role."""


def role_allows(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    created: str
    revoked: str | None = None


def _digest(scheme: str, salt: bytes, secret: str, pepper: str | None) -> str:
    data = salt + secret.encode()
    if scheme == "hmac-sha256":
        return hmac.new(pepper.encode(), data, hashlib.sha256).hexdigest()  # type: ignore[union-attr]
    return hashlib.sha256(data).hexdigest()


class KeyStore:
    def __init__(self, path: str | Path, pepper: str | None = None):
        self.path = Path(path)
        self._pepper = pepper
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._entries: dict[str, dict] = {}

    # ------------------------------------------------------------------------------------- the file
    def _load(self) -> dict[str, dict]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._entries = None, {}
            return self._entries
        if mtime == self._mtime:
            return self._entries
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            entries = {e["id"]: e for e in doc["keys"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{self.path}: not a key file ({type(exc).__name__}: {exc}); restore it or "
                               "make a new one with `python -m api keys add`") from None
        self._mtime, self._entries = mtime, entries
        return entries

    def _save(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "keys": list(entries.values())}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._mtime = None

    # ------------------------------------------------------------------------------------ commands
    def add(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key: its record and the full key text (shown once, stored nowhere)."""
        if role not in ROLES:
            raise KeyFileError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not name or len(name) > 80:
            raise KeyFileError("a key's name is 1 to 80 characters (who or what uses it)")
        with self._lock:
            entries = dict(self._load())
            key_id = secrets.token_hex(4)
            while key_id in entries:
                key_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_bytes(16)
            scheme = "hmac-sha256" if self._pepper else "sha256-salt"
            created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            entries[key_id] = {"id": key_id, "name": name, "role": role, "scheme": scheme, "salt": salt.hex(),
                               "hash": _digest(scheme, salt, secret, self._pepper), "created": created,
                               "revoked": None}
            self._save(entries)
        return ApiKey(key_id, name, role, created), f"rk_{key_id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            entries = dict(self._load())
            if key_id not in entries:
                raise KeyFileError(f"no key {key_id!r} in {self.path}; `python -m api keys list` shows the ids")
            if not entries[key_id].get("revoked"):
                entries[key_id] = {**entries[key_id],
                                   "revoked": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
                self._save(entries)
            return self._record(entries[key_id])

    def list(self) -> list[ApiKey]:
        with self._lock:
            return [self._record(e) for e in self._load().values()]

    @staticmethod
    def _record(e: dict) -> ApiKey:
        return ApiKey(e["id"], e.get("name", ""), e["role"], e.get("created", ""), e.get("revoked"))

    # ------------------------------------------------------------------------------------- checking
    def verify(self, presented: str | None) -> ApiKey | None:
        """The key's record when ``presented`` is a valid, unrevoked key; None otherwise."""
        m = _KEY.match(presented or "")
        if m is None:
            return None
        key_id, secret = m.groups()
        with self._lock:
            entry = self._load().get(key_id)
        if entry is None or entry.get("revoked") or entry.get("role") not in ROLES:
            return None
        scheme = entry.get("scheme")
        if scheme not in ("sha256-salt", "hmac-sha256") or (scheme == "hmac-sha256" and not self._pepper):
            return None
        expected = _digest(scheme, bytes.fromhex(entry["salt"]), secret, self._pepper)
        if not hmac.compare_digest(expected, entry["hash"]):
            return None
        return self._record(entry)
