"""Errors of the storage layer.

Every message names the server (a URL or folder, never a secret), the asset and the partition at
fault, and what to do.
"""

from __future__ import annotations

from rotation_platform.errors import RotationError

__all__ = [
    "StorageError",
    "StorageInputError",
    "StorageNotFoundError",
    "StorageUnavailableError",
    "StorageIntegrityError",
]


class StorageError(RotationError):
    """A stored value is missing, unreadable or of an unsupported type, or a store failed."""


class StorageInputError(StorageError):
    """A value, name or partition key cannot be stored as given (nothing was written)."""


class StorageNotFoundError(StorageError):
    """Nothing is stored for the asset partition asked for."""


class StorageUnavailableError(StorageError):
    """A storage server did not answer, even after retries with backoff."""


class StorageIntegrityError(StorageError):
    """What a store holds disagrees with its own record (row count or checksum)."""
