"""Observability: structured logs (:mod:`rotation_platform.observability.logs`)."""

from rotation_platform.observability.logs import bind, configure, ensure_configured, log_context, redact_text

__all__ = ["bind", "configure", "ensure_configured", "log_context", "redact_text"]
