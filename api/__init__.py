"""The platform's read-only REST API: tomorrow's orders, metrics, fuse verdicts, quality findings and
snapshots of the stored results, with API keys, roles, rate limits, an audit log, health checks and
Prometheus metrics (docs/api.md).

Dependencies flow one way: ``api`` imports ``rotation_platform`` (and the Dagster layer for the check
evaluations), never the reverse. Everything is read from the configured store; nothing is recomputed.
"""

__all__ = ["create_app"]


def create_app(config_path=None, **kwargs):  # noqa: ANN001 - re-exported lazily (FastAPI is an extra)
    from api.app import create_app as _create

    return _create(config_path, **kwargs)
